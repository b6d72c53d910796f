"""Joint risk-factor scenario sets and their mapping onto a resolved book.

A :class:`ScenarioSet` holds, for each scenario and underlying, a log return of the index and a
log change of the ATM implied vol. Sets are either 1-day (``horizon_applied=False``: scaled by
``sqrt(h)`` for an ``h``-day margin period of risk, the spec default) or already ``h``-day
(historical overlapping windows, hypothetical shocks: used as they are).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError
from marginproof.instruments.resolved import ResolvedBook

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ScenarioSet:
    """Joint scenarios for some underlyings.

    Attributes
    ----------
    underlyings : tuple of str, length n_underlyings
    labels : tuple of str, length n_scenarios
    log_returns : ndarray, shape (n_scenarios, n_underlyings)
        Log return of each underlying's index.
    iv_log_changes : ndarray, shape (n_scenarios, n_underlyings)
        Log change of the ATM implied vol (applied as a multiplier on every option vol).
    horizon_applied : bool
        True when the scenarios are already over the margin period of risk.
    info : Mapping[str, Any]
        Provenance and intermediates (as-of date, sigma_next, window ...).
    """

    underlyings: tuple[str, ...]
    labels: tuple[str, ...]
    log_returns: FloatArray
    iv_log_changes: FloatArray
    horizon_applied: bool = False
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        r = np.array(self.log_returns, dtype=np.float64)
        v = np.array(self.iv_log_changes, dtype=np.float64)
        n = len(self.labels)
        shape = (n, len(self.underlyings))
        if r.shape != shape or v.shape != shape:
            raise InputError("scenarios", f"arrays must have shape {shape}, got {r.shape}, "
                             f"{v.shape}")
        if not (np.all(np.isfinite(r)) and np.all(np.isfinite(v))):
            raise InputError("scenarios", "non-finite scenario values")
        r.setflags(write=False)
        v.setflags(write=False)
        object.__setattr__(self, "log_returns", r)
        object.__setattr__(self, "iv_log_changes", v)
        object.__setattr__(self, "info", MappingProxyType(dict(self.info)))

    def __len__(self) -> int:
        return len(self.labels)

    def column(self, underlying: str) -> int:
        try:
            return self.underlyings.index(underlying)
        except ValueError:
            raise InputError(
                "positions", f"no scenarios for underlying {underlying}; the set covers "
                f"{', '.join(self.underlyings)}"
            ) from None

    def subset(self, underlyings: tuple[str, ...]) -> ScenarioSet:
        """The same scenarios restricted to some underlyings."""
        cols = [self.column(u) for u in underlyings]
        return ScenarioSet(underlyings, self.labels, self.log_returns[:, cols],
                           self.iv_log_changes[:, cols], self.horizon_applied, self.info)


def horizon_factor(horizon_days: float, horizon_applied: bool) -> float:
    """``sqrt(h)`` for 1-day scenarios, 1 for scenarios already over the horizon."""
    h = float(horizon_days)
    if not (h > 0.0) or math.isinf(h):
        raise InputError("horizon_days", f"must be positive and finite, got {horizon_days!r}")
    return 1.0 if horizon_applied else math.sqrt(h)


def book_moves(book: ResolvedBook, sset: ScenarioSet, horizon_days: float,
               iv_shocks: bool = True) -> tuple[FloatArray, FloatArray]:
    """Relative index moves and vol multipliers per position.

    ``move = exp(f * r) - 1`` (full revaluation of the log return), ``vol_mult = exp(f * dlogIV)``
    with ``f = sqrt(h)`` for 1-day sets.

    Returns
    -------
    moves, vol_mult : ndarray, shape (n_scenarios, n_positions)
    """
    f = horizon_factor(horizon_days, sset.horizon_applied)
    cols = np.array([sset.column(u) for u in book.underlyings], dtype=np.int64)
    pos_cols = cols[book.underlying_idx] if len(book) else np.zeros(0, np.int64)
    moves = np.exp(f * sset.log_returns[:, pos_cols]) - 1.0
    vol_mult = (np.exp(f * sset.iv_log_changes[:, pos_cols]) if iv_shocks
                else np.ones_like(moves))
    return moves, vol_mult
