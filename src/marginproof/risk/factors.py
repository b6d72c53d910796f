"""Per-underlying risk-factor paths: daily log returns, ATM-IV log changes and their EWMA vols.

A :class:`FactorPath` is computed once over the whole history of one underlying and sliced at any
as-of date: EWMA recursions are causal, so the values up to a date never depend on later data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError
from marginproof.risk.ewma import N_INIT, ewma_sigma
from marginproof.risk.history import DailySeries
from marginproof.risk.implied import DEFAULT_PROXY_SCALE, atm_iv_log_changes

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class FactorPath:
    """Risk-factor history of one underlying.

    Attributes
    ----------
    underlying : str
    dates : ndarray of datetime64[D], shape (n,)
        Return dates (the first is the day after the first close).
    log_returns : ndarray, shape (n,)
    sigma : ndarray, shape (n + 1,)
        EWMA vol path of the returns; ``sigma[t]`` is the forecast for ``log_returns[t]``.
    iv_changes : ndarray, shape (n,)
        Daily ATM-IV log changes (DVOL or proxy).
    iv_is_proxy : ndarray of bool, shape (n,)
    iv_sigma : ndarray, shape (n + 1,)
        EWMA vol path of ``iv_changes``.
    lam : float
    """

    underlying: str
    dates: NDArray[np.datetime64]
    log_returns: FloatArray
    sigma: FloatArray
    iv_changes: FloatArray
    iv_is_proxy: NDArray[np.bool_]
    iv_sigma: FloatArray
    lam: float

    def index_of(self, asof: np.datetime64) -> int:
        """Number of returns dated on or before ``asof`` (slice end)."""
        return int(np.searchsorted(self.dates, asof, side="right"))


def factor_path(underlying: str, closes: DailySeries, iv_levels: DailySeries | None,
                lam: float, n_init: int = N_INIT,
                proxy_scale: float = DEFAULT_PROXY_SCALE) -> FactorPath:
    """Build the :class:`FactorPath` of one underlying from its closes and IV levels."""
    dates, r = closes.log_returns()
    if r.shape[0] < n_init + 1:
        raise InputError(f"history.{underlying}", f"only {r.shape[0]} returns")
    sigma = ewma_sigma(r, lam, n_init)
    x, is_proxy = atm_iv_log_changes(dates, sigma, iv_levels, proxy_scale)
    iv_sigma = ewma_sigma(x, lam, n_init)
    return FactorPath(underlying, dates, r, sigma, x, is_proxy, iv_sigma, float(lam))
