"""Stress-scenario library: historical crash windows from the data and hypothetical shocks.

* Historical: every return date inside a named window (``start``..``end``, UTC days) gives one
  joint scenario of index log returns and ATM-IV log changes, unfiltered. For an integer MPOR
  ``h > 1`` the scenario is the overlapping ``h``-day move ending on that date. Only windows that
  end on or before the as-of date are used (no look-ahead), and dates on which an underlying has
  no data (SOL before 2020-08-11) are dropped.
* Hypothetical: configured relative index moves per underlying (``default_move`` for the others)
  and a multiplier on implied vols, taken as moves over the MPOR.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError
from marginproof.risk.factors import FactorPath
from marginproof.scenarios.fhs import historical_scenario_set
from marginproof.scenarios.sets import ScenarioSet

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class HistoricalWindow:
    """A named crash window (inclusive UTC days)."""

    name: str
    start: np.datetime64
    end: np.datetime64


@dataclass(frozen=True)
class HypotheticalShock:
    """A named joint shock: relative index moves and an implied-vol multiplier."""

    name: str
    moves: Mapping[str, float]
    default_move: float
    iv_mult: float


def parse_windows(items: Sequence[Mapping[str, object]], field: str
                  ) -> tuple[HistoricalWindow, ...]:
    """Windows from configuration tables ``{name, start, end}``."""
    out = []
    for i, it in enumerate(items):
        try:
            w = HistoricalWindow(str(it["name"]), np.datetime64(str(it["start"]), "D"),
                                 np.datetime64(str(it["end"]), "D"))
        except (KeyError, ValueError) as exc:
            raise InputError(f"{field}[{i}]", f"needs name, start, end dates: {exc}") from exc
        if w.end < w.start:
            raise InputError(f"{field}[{i}]", "end before start")
        out.append(w)
    return tuple(out)


def parse_shocks(items: Sequence[Mapping[str, object]], field: str
                 ) -> tuple[HypotheticalShock, ...]:
    """Shocks from configuration tables ``{name, moves = {U = m}, default_move, iv_mult}``."""
    out = []
    for i, it in enumerate(items):
        try:
            raw_moves = it.get("moves", {})
            assert isinstance(raw_moves, Mapping)
            moves = {str(k): float(v) for k, v in raw_moves.items()}
            s = HypotheticalShock(str(it["name"]), moves, float(it.get("default_move", 0.0)),  # type: ignore[arg-type]
                                  float(it.get("iv_mult", 1.0)))  # type: ignore[arg-type]
        except (KeyError, ValueError, TypeError, AssertionError) as exc:
            raise InputError(f"{field}[{i}]", f"bad shock: {exc}") from exc
        if any(m <= -1.0 for m in (*s.moves.values(), s.default_move)) or s.iv_mult <= 0.0:
            raise InputError(f"{field}[{i}]", "moves must be > -100 % and iv_mult > 0")
        out.append(s)
    return tuple(out)


def window_dates(windows: Sequence[HistoricalWindow], asof: np.datetime64
                 ) -> tuple[NDArray[np.datetime64], tuple[str, ...]]:
    """All days of the windows that end on or before ``asof``, with their window names."""
    days: list[np.datetime64] = []
    names: list[str] = []
    for w in windows:
        if w.end > asof:
            continue
        d = np.arange(w.start, w.end + np.timedelta64(1, "D"), dtype="datetime64[D]")
        days.extend(d.tolist())
        names.extend([w.name] * d.shape[0])
    return np.array(days, dtype="datetime64[D]"), tuple(names)


def historical_stress_set(paths: Mapping[str, FactorPath], underlyings: Sequence[str],
                          windows: Sequence[HistoricalWindow], asof: np.datetime64,
                          horizon_days: float = 1.0) -> ScenarioSet:
    """Scenarios of the crash windows ending on or before ``asof``.

    With an integer MPOR ``h > 1``: overlapping ``h``-day moves (``horizon_applied``); otherwise
    1-day moves (scaled by ``sqrt(h)`` downstream).
    """
    h = float(horizon_days)
    h_int = int(round(h)) if abs(h - round(h)) < 1e-9 and h >= 1.0 else 1
    parts: list[ScenarioSet] = []
    for w in windows:
        if w.end > asof:
            continue
        d = np.arange(w.start, w.end + np.timedelta64(1, "D"), dtype="datetime64[D]")
        s = historical_scenario_set(paths, underlyings, d, f"{w.name}: ", h_int)
        if len(s):
            parts.append(s)
    unds = tuple(underlyings)
    if not parts:
        return ScenarioSet(unds, (), np.zeros((0, len(unds))), np.zeros((0, len(unds))),
                           h_int > 1, {"method": "stress-historical"})
    return concat_sets(parts, {"method": "stress-historical"})


def hypothetical_stress_set(underlyings: Sequence[str], shocks: Sequence[HypotheticalShock]
                            ) -> ScenarioSet:
    """Hypothetical shocks as a set already over the MPOR."""
    unds = tuple(underlyings)
    r = np.array([[math.log1p(s.moves.get(u, s.default_move)) for u in unds] for s in shocks],
                 dtype=np.float64).reshape(len(shocks), len(unds))
    v = np.array([[math.log(s.iv_mult)] * len(unds) for s in shocks],
                 dtype=np.float64).reshape(len(shocks), len(unds))
    return ScenarioSet(unds, tuple(s.name for s in shocks), r, v, True,
                       {"method": "stress-hypothetical"})


def concat_sets(sets: Sequence[ScenarioSet], info: Mapping[str, object] | None = None
                ) -> ScenarioSet:
    """Stack sets with the same underlyings and horizon convention."""
    if not sets:
        raise InputError("scenarios", "nothing to concatenate")
    u = sets[0].underlyings
    ha = sets[0].horizon_applied
    for s in sets[1:]:
        if s.underlyings != u or s.horizon_applied != ha:
            raise InputError("scenarios", "sets differ in underlyings or horizon convention")
    return ScenarioSet(
        u, tuple(lab for s in sets for lab in s.labels),
        np.concatenate([s.log_returns for s in sets], axis=0),
        np.concatenate([s.iv_log_changes for s in sets], axis=0), ha, dict(info or {}),
    )
