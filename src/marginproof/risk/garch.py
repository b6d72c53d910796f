"""GARCH(1,1) with Student-t innovations via ``arch`` (Bollerslev 1986/1987).

Spec recipe: ``arch_model(100 * r, mean="Constant", vol="GARCH", p=1, q=1, dist="t",
rescale=False).fit(disp="off")`` with arch's defaults (backcast, SLSQP, ``alpha + beta <= 1``).
arch's t is standardised to unit variance, so the one-day VaR99 of a long position is
``-P (exp((mu + sigma_next t_nu^-1(0.01) sqrt((nu - 2)/nu)) / 100) - 1)``.

BTC daily fits often sit on the IGARCH boundary ``alpha + beta = 1`` with ``nu ~ 3``: the fit is
kept and flagged (``integrated``), never rejected. The optimiser is arch's; nothing hand-written.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from marginproof.errors import InputError

FloatArray = NDArray[np.float64]

IGARCH_TOL = 1e-4


@dataclass(frozen=True)
class GarchFit:
    """A fitted GARCH(1,1)-t on percent log returns.

    Attributes
    ----------
    mu, omega, alpha, beta, nu : float
        Parameters (percent units for ``mu`` and ``omega``).
    loglik : float
    sigma_next_pct : float
        One-step-ahead conditional vol in percent.
    integrated : bool
        ``alpha + beta >= 1 - 1e-4`` (IGARCH boundary).
    converged : bool
        arch's optimiser flag (0 = success).
    n_obs : int
    """

    mu: float
    omega: float
    alpha: float
    beta: float
    nu: float
    loglik: float
    sigma_next_pct: float
    integrated: bool
    converged: bool
    n_obs: int

    @property
    def sigma_next(self) -> float:
        """One-step vol as a decimal daily log-return vol."""
        return self.sigma_next_pct / 100.0

    @property
    def params(self) -> FloatArray:
        """``[mu, omega, alpha, beta, nu]`` in arch's order."""
        return np.array([self.mu, self.omega, self.alpha, self.beta, self.nu])

    def standardised_quantile(self, p: float | FloatArray) -> float | FloatArray:
        """Quantile of arch's unit-variance t: ``t_nu^-1(p) sqrt((nu - 2) / nu)``."""
        from scipy import stats  # on first use: importing the models need not load it

        q = stats.t.ppf(p, self.nu) * math.sqrt((self.nu - 2.0) / self.nu)
        return float(q) if np.ndim(q) == 0 else np.asarray(q, dtype=np.float64)

    def var_long(self, price: float, conf: float = 0.99) -> float:
        """One-day VaR of one coin long (spec formula)."""
        z = float(self.standardised_quantile(1.0 - conf))
        return -float(price) * (math.exp((self.mu + self.sigma_next_pct * z) / 100.0) - 1.0)


def _model(returns: FloatArray):  # type: ignore[no-untyped-def]
    from arch import arch_model

    return arch_model(100.0 * returns, mean="Constant", vol="GARCH", p=1, q=1, dist="t",
                      rescale=False)


def _check(returns: ArrayLike) -> FloatArray:
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or r.shape[0] < 100:
        raise InputError("returns", "GARCH needs a 1-D window of at least 100 returns")
    if not np.all(np.isfinite(r)):
        raise InputError("returns", "contains NaN or infinite values")
    return r


def fit_garch_t(returns: ArrayLike) -> GarchFit:
    """Fit GARCH(1,1)-t to daily log returns (decimal) with the spec's arch recipe.

    Parameters
    ----------
    returns : array_like, shape (n,)
        The fixed window of daily log returns (n >= 100), oldest first.
    """
    r = _check(returns)
    am = _model(r)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arch's ConvergenceWarning: reported via `converged`
        res = am.fit(disp="off")
    p = res.params
    fc = res.forecast(horizon=1, reindex=False)
    s_next = math.sqrt(float(fc.variance.to_numpy()[-1, 0]))
    alpha, beta = float(p["alpha[1]"]), float(p["beta[1]"])
    return GarchFit(
        mu=float(p["mu"]), omega=float(p["omega"]), alpha=alpha, beta=beta, nu=float(p["nu"]),
        loglik=float(res.loglikelihood), sigma_next_pct=s_next,
        integrated=alpha + beta >= 1.0 - IGARCH_TOL,
        converged=int(res.convergence_flag) == 0, n_obs=int(r.shape[0]),
    )


def garch_filter(returns: ArrayLike, fit: GarchFit) -> tuple[FloatArray, float]:
    """Conditional vols of ``returns`` under fixed parameters (refit schedule between fits).

    Parameters
    ----------
    returns : array_like, shape (n,)
        Decimal daily log returns, oldest first (arch backcasts from this window).
    fit : GarchFit

    Returns
    -------
    sigma : ndarray, shape (n,)
        Conditional vol (decimal) of each return.
    sigma_next : float
        One-step-ahead vol (decimal) after the last return.
    """
    r = _check(returns)
    am = _model(r)
    res = am.fix(fit.params)
    sigma = np.asarray(res.conditional_volatility, dtype=np.float64) / 100.0
    fc = res.forecast(horizon=1, reindex=False)
    return sigma, math.sqrt(float(fc.variance.to_numpy()[-1, 0])) / 100.0
