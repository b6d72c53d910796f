"""EWMA (RiskMetrics 1996) volatility, covariance and shrunk correlation.

Recursion (zero mean): ``s2[t+1] = lam * s2[t] + (1 - lam) * r[t]**2``.

Index convention (``risk-methods.md`` section 4): ``s2[t]`` is the forecast for ``r[t]`` made
after ``r[t-1]``; ``s2[0]`` (the forecast for the first return of the series) is the mean of the
first ``n_init = 30`` squared returns. The arrays returned here have one more element than the
returns: the last one is ``sigma_next``, the forecast for the day after the last return.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from marginproof.errors import InputError

FloatArray = NDArray[np.float64]

RISKMETRICS_LAMBDA = 0.94
N_INIT = 30


def _check(returns: ArrayLike, lam: float, n_init: int) -> FloatArray:
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise InputError("returns", f"must be 1-D, got shape {r.shape}")
    if not (0.0 < float(lam) < 1.0):
        raise InputError("lam", f"decay factor must be in (0, 1), got {lam!r}")
    if int(n_init) < 1:
        raise InputError("n_init", f"must be >= 1, got {n_init!r}")
    if r.shape[0] < int(n_init):
        raise InputError("returns", f"need at least n_init = {n_init} returns, got {r.shape[0]}")
    if not np.all(np.isfinite(r)):
        raise InputError("returns", "contains NaN or infinite values")
    return r


def ewma_variance(returns: ArrayLike, lam: float = RISKMETRICS_LAMBDA, n_init: int = N_INIT
                  ) -> FloatArray:
    """EWMA variance forecasts.

    Parameters
    ----------
    returns : array_like, shape (n,)
        Daily log returns from the first return of the series (no NaN).
    lam : float
        Decay factor (0.94 RiskMetrics daily, 0.97 monthly).
    n_init : int
        Number of leading squared returns averaged to seed the recursion.

    Returns
    -------
    ndarray, shape (n + 1,)
        ``out[t]`` is the variance forecast for ``returns[t]`` (made after ``returns[t-1]``);
        ``out[n]`` is the forecast for the next, unseen day.
    """
    r = _check(returns, lam, n_init)
    lam = float(lam)
    one_minus = 1.0 - lam
    out = np.empty(r.shape[0] + 1)
    s2 = float(np.mean(r[: int(n_init)] ** 2))
    out[0] = s2
    # A plain loop on Python floats: ~1 ms for 3,000 days, exactly the textbook recursion.
    for t, x in enumerate(r.tolist()):
        s2 = lam * s2 + one_minus * (x * x)
        out[t + 1] = s2
    return out


def ewma_sigma(returns: ArrayLike, lam: float = RISKMETRICS_LAMBDA, n_init: int = N_INIT
               ) -> FloatArray:
    """EWMA volatility forecasts, ``sqrt`` of :func:`ewma_variance`, shape (n + 1,).

    ``ewma_sigma(r)[-1]`` is ``sigma_next(T)`` for ``T`` = the date of the last return.
    """
    return np.sqrt(ewma_variance(returns, lam, n_init))


def ewma_sigma_next(returns: ArrayLike, lam: float = RISKMETRICS_LAMBDA, n_init: int = N_INIT
                    ) -> float:
    """``sigma_next(T)``: forecast for day ``T + 1`` after including the last return ``r_T``."""
    return float(ewma_sigma(returns, lam, n_init)[-1])


def ewma_covariance(x: ArrayLike, lam: float = RISKMETRICS_LAMBDA, n_init: int = N_INIT
                    ) -> FloatArray:
    """EWMA covariance forecast for the day after the last row (zero mean).

    ``C[t+1] = lam C[t] + (1 - lam) x[t] x[t]^T``, ``C[0]`` = mean of the first ``n_init``
    outer products.

    Parameters
    ----------
    x : array_like, shape (n, n_assets)
        Returns or standardised residuals, no NaN.

    Returns
    -------
    ndarray, shape (n_assets, n_assets)
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise InputError("x", f"must be 2-D (n, n_assets), got shape {a.shape}")
    if a.shape[1] == 0:
        raise InputError("x", "no columns")
    for j in range(a.shape[1]):
        _check(a[:, j], lam, n_init)
    n = a.shape[0]
    c0 = a[: int(n_init)].T @ a[: int(n_init)] / int(n_init)
    w = (1.0 - lam) * lam ** np.arange(n - 1, -1, -1, dtype=np.float64)
    return np.asarray(lam ** n * c0 + (a * w[:, None]).T @ a, dtype=np.float64)


def shrink_correlation(corr: ArrayLike, shrinkage: float = 0.05, min_eigenvalue: float = 1e-6
                       ) -> FloatArray:
    """Shrink a correlation matrix towards the identity until it is positive definite.

    ``R_s = (1 - d) R + d I`` with ``d >= shrinkage`` raised (doubling, capped at 1) until the
    smallest eigenvalue is at least ``min_eigenvalue``.

    Parameters
    ----------
    corr : array_like, shape (n, n)
        Symmetric matrix with unit diagonal.
    shrinkage : float
        Minimum shrinkage intensity in [0, 1].

    Returns
    -------
    ndarray, shape (n, n)
    """
    r = np.asarray(corr, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] != r.shape[1]:
        raise InputError("corr", f"must be square, got shape {r.shape}")
    if not (0.0 <= shrinkage <= 1.0):
        raise InputError("shrinkage", f"must be in [0, 1], got {shrinkage!r}")
    r = 0.5 * (r + r.T)
    eye = np.eye(r.shape[0])
    d = float(shrinkage)
    while True:
        rs = (1.0 - d) * r + d * eye
        if d >= 1.0 or float(np.linalg.eigvalsh(rs).min()) >= min_eigenvalue:
            return np.asarray(rs, dtype=np.float64)
        d = min(1.0, max(2.0 * d, 0.01))


def ewma_correlation(x: ArrayLike, lam: float = RISKMETRICS_LAMBDA, n_init: int = N_INIT,
                     shrinkage: float = 0.05) -> FloatArray:
    """EWMA correlation (from :func:`ewma_covariance`) shrunk to stay positive definite.

    Parameters
    ----------
    x : array_like, shape (n, n_assets)

    Returns
    -------
    ndarray, shape (n_assets, n_assets)
    """
    c = ewma_covariance(x, lam, n_init)
    sd = np.sqrt(np.diag(c))
    if np.any(sd <= 0.0):
        raise InputError("x", "a column has zero EWMA variance")
    return shrink_correlation(c / np.outer(sd, sd), shrinkage)
