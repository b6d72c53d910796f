"""Procyclicality metrics (Murphy, Vasios & Vause 2014; BCBS-CPMI-IOSCO 2022).

Over an observation period of a daily (calendar-day) margin series ``M``:
peak-to-trough ``max M / min M``; ``n``-day procyclicality for ``n`` in {1, 5, 30}: the largest
ratio ``M_t / M_{t-n}`` and the largest absolute increase ``M_t - M_{t-n}``; the cost of an APC
tool is the average ``A / M``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from marginproof.errors import InputError

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ProcyclicalityMetrics:
    """Metrics of one margin series.

    Attributes
    ----------
    peak_to_trough : float
        ``max M / min M``.
    max_increase_ratio : Mapping[int, float]
        ``n -> max_t M_t / M_{t-n}``.
    max_increase_abs : Mapping[int, float]
        ``n -> max_t (M_t - M_{t-n})``.
    cost : float
        Average ``A / M`` against the base series (1 for the base itself).
    """

    peak_to_trough: float
    max_increase_ratio: Mapping[int, float]
    max_increase_abs: Mapping[int, float]
    cost: float

    def to_dict(self) -> dict[str, float]:
        d = {"peak_to_trough": self.peak_to_trough, "cost_avg_A_over_M": self.cost}
        for n, v in self.max_increase_ratio.items():
            d[f"max_{n}d_ratio"] = v
        for n, v in self.max_increase_abs.items():
            d[f"max_{n}d_increase"] = v
        return d


def _check_dates(dates: ArrayLike | None, n: int) -> None:
    if dates is None:
        return
    d = np.asarray(dates, dtype="datetime64[D]")
    if d.shape != (n,) or (n > 1 and not np.all(np.diff(d) == np.timedelta64(1, "D"))):
        raise InputError("dates", "metrics need a calendar-day series (consecutive days)")


def procyclicality_metrics(margin: ArrayLike, base: ArrayLike | None = None,
                           horizons: Sequence[int] = (1, 5, 30),
                           dates: ArrayLike | None = None) -> ProcyclicalityMetrics:
    """Procyclicality metrics of ``margin`` (shape (n,), positive), cost against ``base``."""
    m = np.asarray(margin, dtype=np.float64)
    if m.ndim != 1 or m.shape[0] < 2 or not np.all(np.isfinite(m)) or np.any(m <= 0.0):
        raise InputError("margin", "need a positive 1-D series of length >= 2")
    _check_dates(dates, m.shape[0])
    ratio: dict[int, float] = {}
    absinc: dict[int, float] = {}
    for n in horizons:
        n = int(n)
        if n < 1:
            raise InputError("horizons", "must be >= 1")
        if m.shape[0] <= n:
            ratio[n] = float("nan")
            absinc[n] = float("nan")
            continue
        ratio[n] = float(np.max(m[n:] / m[:-n]))
        absinc[n] = float(np.max(m[n:] - m[:-n]))
    if base is None:
        cost = 1.0
    else:
        b = np.asarray(base, dtype=np.float64)
        if b.shape != m.shape or np.any(b <= 0.0):
            raise InputError("base", "must be positive with the shape of margin")
        cost = float(np.mean(m / b))
    return ProcyclicalityMetrics(float(m.max() / m.min()), ratio, absinc, cost)


def apc_report(base: ArrayLike, tools: Mapping[str, ArrayLike],
               horizons: Sequence[int] = (1, 5, 30), dates: ArrayLike | None = None
               ) -> dict[str, dict[str, float]]:
    """Metrics of the base model and of every APC tool, each with its cost (average A/M)."""
    out = {"base": procyclicality_metrics(base, base, horizons, dates).to_dict()}
    for name, series in tools.items():
        out[name] = procyclicality_metrics(series, base, horizons, dates).to_dict()
    return out
