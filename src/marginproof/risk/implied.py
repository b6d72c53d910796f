"""Implied-vol dynamics for vega risk: daily ATM-IV log changes, with a documented proxy.

Source: Deribit DVOL (30-day BTC implied-vol index) as the ATM-IV level of BTC. Daily log
change on day ``d`` is ``ln(IV_d / IV_{d-1})`` when both levels exist. Where they do not (before
2021-03-24, or an underlying without an IV index), the proxy is the log change of the
underlying's own EWMA vol forecast over that day, ``proxy_scale * ln(sigma_{t+1} / sigma_t)``:
the implied vol is assumed to follow the realised-vol estimate. On 2021-03-25..2025-10-15 the
DVOL log changes have a daily std of 4.7 % against 6.1 % for the proxy (correlation 0.35), hence
the default ``proxy_scale = 0.77``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError
from marginproof.risk.history import DAY, DailySeries

FloatArray = NDArray[np.float64]

DEFAULT_PROXY_SCALE = 0.77


def ewma_vol_change_proxy(sigma_path: FloatArray, proxy_scale: float = DEFAULT_PROXY_SCALE
                          ) -> FloatArray:
    """``proxy_scale * ln(sigma[t+1] / sigma[t])``, shape (n,) from a path of shape (n + 1,)."""
    s = np.asarray(sigma_path, dtype=np.float64)
    if s.ndim != 1 or s.shape[0] < 2 or np.any(s <= 0.0):
        raise InputError("sigma_path", "must be a positive 1-D path of length >= 2")
    return np.asarray(proxy_scale * np.log(s[1:] / s[:-1]), dtype=np.float64)


def atm_iv_log_changes(
    return_dates: NDArray[np.datetime64],
    sigma_path: FloatArray,
    iv_levels: DailySeries | None,
    proxy_scale: float = DEFAULT_PROXY_SCALE,
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Daily ATM-IV log changes aligned on the spot return dates.

    Parameters
    ----------
    return_dates : ndarray of datetime64[D], shape (n,)
        Dates of the underlying's daily returns.
    sigma_path : ndarray, shape (n + 1,)
        EWMA vol path of those returns (``sigma_path[t]`` forecast for return ``t``).
    iv_levels : DailySeries or None
        ATM-IV level (decimal) per day, e.g. DVOL / 100; None = proxy everywhere.
    proxy_scale : float

    Returns
    -------
    changes : ndarray, shape (n,)
    is_proxy : ndarray of bool, shape (n,)
    """
    d = np.asarray(return_dates, dtype="datetime64[D]")
    proxy = ewma_vol_change_proxy(sigma_path, proxy_scale)
    if proxy.shape[0] != d.shape[0]:
        raise InputError("sigma_path", "must have one more element than return_dates")
    out = proxy.copy()
    is_proxy = np.ones(d.shape[0], dtype=bool)
    if iv_levels is None or len(iv_levels) < 2:
        return out, is_proxy
    iv_d = iv_levels.dates
    iv_v = iv_levels.values
    if np.any(iv_v <= 0.0):
        raise InputError("atm_iv", "IV levels must be positive")
    i_cur = np.searchsorted(iv_d, d)
    i_prev = np.searchsorted(iv_d, d - DAY)
    ok = (i_cur < iv_d.shape[0]) & (i_prev < iv_d.shape[0])
    ok[ok] &= (iv_d[i_cur[ok]] == d[ok]) & (iv_d[i_prev[ok]] == d[ok] - DAY)
    out[ok] = np.log(iv_v[i_cur[ok]] / iv_v[i_prev[ok]])
    is_proxy[ok] = False
    return out, is_proxy
