"""Funding add-on for perpetuals: expected and stressed funding over the margin period of risk.

Rates are decimals per 8-h interval, positive = longs pay shorts. Over ``h`` days a position
pays ``3 h`` intervals. Expected: the mean rate over the recent ``n_expected`` settlements;
stressed: the ``conf`` quantile of the lookback (longs) or the ``1 - conf`` quantile (shorts),
never milder than the current rate. The add-on is the stressed payment of the paying side
(0 when even the stressed rate pays the position).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from marginproof.errors import InputError

INTERVALS_PER_DAY = 3.0


@dataclass(frozen=True)
class FundingStats:
    """Funding statistics from history (per 8-h interval)."""

    expected_rate: float
    stressed_long_rate: float
    stressed_short_rate: float
    n_obs: int


def funding_stats(rates: ArrayLike, lookback: int = 1095, n_expected: int = 90,
                  conf: float = 0.99) -> FundingStats:
    """Expected and stressed 8-h funding rates from the last ``lookback`` settlements.

    Parameters
    ----------
    rates : array_like, shape (n,)
        Historical rates, oldest first (strictly before the as-of time).
    lookback : int
        Settlements used for the stressed quantiles (1095 = one year of 8-h settlements).
    n_expected : int
        Settlements averaged for the expected rate (90 = 30 days).
    conf : float
        Quantile level of the stressed rate.
    """
    r = np.asarray(rates, dtype=np.float64)
    if r.ndim != 1 or r.shape[0] == 0:
        raise InputError("funding", "no funding history before the as-of date")
    if not (0.5 < conf < 1.0):
        raise InputError("conf", f"must be in (0.5, 1), got {conf!r}")
    w = r[-int(lookback):]
    return FundingStats(
        expected_rate=float(np.mean(r[-int(n_expected):])),
        stressed_long_rate=float(np.quantile(w, conf)),
        stressed_short_rate=float(np.quantile(w, 1.0 - conf)),
        n_obs=int(w.shape[0]),
    )


def funding_addon(notional_usd: float, stats: FundingStats, horizon_days: float = 1.0,
                  current_rate: float | None = None) -> tuple[float, float]:
    """Expected and stressed funding cost (USD) of a perp position over ``h`` days.

    Parameters
    ----------
    notional_usd : float
        Signed USD exposure (positive = long).
    stats : FundingStats
    horizon_days : float
    current_rate : float, optional
        Latest published rate; the stressed rate is never milder than it.

    Returns
    -------
    expected_cost : float
        Signed expected payment (negative = the position receives).
    stressed_cost : float
        Payment of the paying side at the stressed rate, >= 0.
    """
    if not horizon_days > 0.0:
        raise InputError("horizon_days", "must be positive")
    n = INTERVALS_PER_DAY * float(horizon_days)
    expected = notional_usd * stats.expected_rate * n
    if notional_usd >= 0.0:
        rate = stats.stressed_long_rate if current_rate is None else max(
            stats.stressed_long_rate, current_rate)
        stressed = notional_usd * max(rate, 0.0) * n
    else:
        rate = stats.stressed_short_rate if current_rate is None else min(
            stats.stressed_short_rate, current_rate)
        stressed = -notional_usd * max(-rate, 0.0) * n
    return float(expected), float(stressed)


def funding_addon_stressed(notional_usd: ArrayLike, stats: FundingStats,
                           horizon_days: float = 1.0, current_rate: float | None = None
                           ) -> NDArray[np.float64]:
    """The stressed cost of :func:`funding_addon` for many positions, broadcast (USD, >= 0)."""
    if not horizon_days > 0.0:
        raise InputError("horizon_days", "must be positive")
    x = np.asarray(notional_usd, dtype=np.float64)
    n = INTERVALS_PER_DAY * float(horizon_days)
    r_long = stats.stressed_long_rate if current_rate is None else max(
        stats.stressed_long_rate, current_rate)
    r_short = stats.stressed_short_rate if current_rate is None else min(
        stats.stressed_short_rate, current_rate)
    out = np.where(x >= 0.0, x * max(r_long, 0.0) * n, -x * max(-r_short, 0.0) * n)
    return np.asarray(out, dtype=np.float64)
