"""Crash windows of the shipped data and hypothetical shocks.

Windows are the stress days of ``data/README.md`` (no hourly bar is missing on them), widened
by a day on each side so that the margin path shows the run-up and the aftermath. Hours are
UTC bar starts, both ends inclusive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from marginproof.errors import InputError


@dataclass(frozen=True)
class Episode:
    """A crash window replayed hour by hour."""

    id: str
    name: str
    start: str
    end: str
    description: str


EPISODES: Mapping[str, Episode] = MappingProxyType({e.id: e for e in (
    Episode("covid-2020", "Black Thursday", "2020-03-11T00:00", "2020-03-14T23:00",
            "BTC -39 % on 2020-03-12 close to close, low 3,782 on 2020-03-13"),
    Episode("may-2021", "May 2021 crash", "2021-05-18T00:00", "2021-05-20T23:00",
            "China mining ban news; BTC -31 % intraday on 2021-05-19"),
    Episode("luna-2022", "LUNA/UST collapse", "2022-05-05T00:00", "2022-05-13T23:00",
            "UST de-peg; BTC -33 % from 2022-05-05 to the 2022-05-12 low"),
    Episode("ftx-2022", "FTX collapse", "2022-11-06T00:00", "2022-11-10T23:00",
            "FTX insolvency; BTC -27 %, SOL -66 % from 2022-11-06 to the 2022-11-09 low"),
    Episode("yen-2024", "Yen carry unwind", "2024-08-02T00:00", "2024-08-06T23:00",
            "BTC -25 %, ETH -34 % peak to trough into 2024-08-05"),
)})


def episode(episode_id: str) -> Episode:
    """The episode named ``episode_id`` (``ftx-2022`` ...)."""
    try:
        return EPISODES[episode_id]
    except KeyError:
        raise InputError("episode", f"unknown episode {episode_id!r}; known: "
                         f"{', '.join(EPISODES)}") from None


@dataclass(frozen=True)
class Shock:
    """An instantaneous hypothetical shock.

    ``spot_move`` relative move of every underlying (-0.5 = -50 %); ``vol_mult`` multiplies
    the ATM vols; ``comonotonic_sigmas`` > 0 replaces the spot move by ``-k`` sigmas of each
    underlying's own daily EWMA vol scaled to ``horizon_days``, all in the same direction
    (correlation -> 1: a long/short pair loses the difference of the moves).
    """

    id: str
    name: str
    spot_move: float = 0.0
    vol_mult: float = 1.0
    comonotonic_sigmas: float = 0.0
    horizon_days: float = 10.0


SHOCKS: tuple[Shock, ...] = (
    Shock("spot-50", "spot -50 % (all underlyings)", spot_move=-0.5),
    Shock("spot+50", "spot +50 % (all underlyings)", spot_move=0.5),
    Shock("vol-x2", "implied vol x2", vol_mult=2.0),
    Shock("corr-1", "correlation -> 1: every underlying -4 sigma (10-day) together",
          comonotonic_sigmas=4.0),
    Shock("spot-50-vol-x2", "spot -50 % and implied vol x2", spot_move=-0.5, vol_mult=2.0),
)
