"""Monte Carlo scenarios: Student-t copula over EWMA or GARCH(1,1)-t marginals.

Risk factors: each underlying's daily log return and ATM-IV log change. For every factor the
standardised residuals ``z = x / sigma`` over a window (EWMA vol, or GARCH-t for returns) get a
Student-t marginal (GARCH's own unit-variance t, or ``scipy.stats.t.fit`` with location 0 for
EWMA). Dependence is a t copula (Embrechts, McNeil & Straumann 2002) whose correlation is the
EWMA correlation of the residuals, shrunk to stay positive definite, and whose degrees of freedom
are fitted by maximum likelihood on the pseudo-observations (or fixed by configuration).

Sampling: scrambled Sobol points (``scipy.stats.qmc``) mapped to normals and a chi-square mixing
variable, with antithetic pairs (``z`` and ``-z`` share the mixing draw); ``n_batches``
independent scrambles give the Monte Carlo standard errors. Everything is seeded.

scipy is imported inside the functions that use it: the ``dynamic`` model imports this module
for its Monte Carlo variant, and a CLI margin run under FHS need not pay 0.8 s for
``scipy.stats`` and ``scipy.optimize`` (``benchmarks/bench_cli.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from marginproof.errors import InputError
from marginproof.risk.measures import expected_shortfall, var

FloatArray = NDArray[np.float64]


def t_copula_tail_dependence(rho: float, nu: float) -> float:
    """Tail-dependence coefficient ``2 t_{nu+1}(-sqrt((nu+1)(1-rho)/(1+rho)))`` of a t copula."""
    if not (-1.0 < rho <= 1.0) or not nu > 0.0:
        raise InputError("rho/nu", f"need -1 < rho <= 1 and nu > 0, got {rho!r}, {nu!r}")
    if rho == 1.0:
        return 1.0
    x = -math.sqrt((nu + 1.0) * (1.0 - rho) / (1.0 + rho))
    from scipy import stats  # scipy is imported on first use (see the module docstring)

    return float(2.0 * stats.t.cdf(x, nu + 1.0))


def pseudo_observations(x: ArrayLike) -> FloatArray:
    """Ranks scaled to (0, 1): ``rank / (n + 1)`` per column, shape of ``x`` (n, d)."""
    from scipy import stats

    a = np.asarray(x, dtype=np.float64)
    return np.asarray(stats.rankdata(a, axis=0) / (a.shape[0] + 1.0), dtype=np.float64)


def t_copula_loglik(u: ArrayLike, corr: ArrayLike, nu: float) -> float:
    """Log-likelihood of a t copula with correlation ``corr`` and ``nu`` at pseudo-obs ``u``."""
    from scipy import stats

    uu = np.clip(np.asarray(u, dtype=np.float64), 1e-12, 1.0 - 1e-12)
    x = stats.t.ppf(uu, nu)
    joint = stats.multivariate_t(loc=np.zeros(uu.shape[1]), shape=corr, df=nu).logpdf(x)
    return float(np.sum(joint) - np.sum(stats.t.logpdf(x, nu)))


def fit_t_copula_nu(u: ArrayLike, corr: ArrayLike, bounds: tuple[float, float] = (2.5, 60.0)
                    ) -> float:
    """Maximum-likelihood degrees of freedom of a t copula with fixed correlation.

    Parameters
    ----------
    u : array_like, shape (n, d)
        Pseudo-observations in (0, 1).
    corr : array_like, shape (d, d)
    bounds : (float, float)
        Search interval for ``nu`` (scipy bounded scalar minimisation).
    """
    from scipy import optimize

    res = optimize.minimize_scalar(lambda nu: -t_copula_loglik(u, corr, nu), bounds=bounds,
                                   method="bounded", options={"xatol": 1e-3})
    return float(res.x)


@dataclass(frozen=True)
class TMarginal:
    """A Student-t marginal of standardised residuals: ``z = scale * t_nu``."""

    nu: float
    scale: float

    def ppf(self, u: FloatArray) -> FloatArray:
        from scipy import stats

        return np.asarray(self.scale * stats.t.ppf(u, self.nu), dtype=np.float64)

    @classmethod
    def unit_variance(cls, nu: float) -> TMarginal:
        """arch's standardised t: unit variance, ``scale = sqrt((nu - 2) / nu)``."""
        return cls(nu, math.sqrt((nu - 2.0) / nu))

    @classmethod
    def fit(cls, z: ArrayLike) -> TMarginal:
        """``scipy.stats.t.fit`` with the location fixed at 0 (zero-mean residuals)."""
        from scipy import stats

        df, _, scale = stats.t.fit(np.asarray(z, dtype=np.float64), floc=0.0)
        return cls(float(max(df, 2.05)), float(scale))


def sample_t_copula(corr: ArrayLike, nu: float, n_batches: int, log2_points: int, seed: int,
                    antithetic: bool = True, quasi_random: bool = True) -> FloatArray:
    """Uniforms from a t copula, batch-major.

    Each batch is one independent scramble of ``2**log2_points`` Sobol points (or pseudo-random
    draws when ``quasi_random`` is False) in ``d + 1`` dimensions: ``d`` normals via the
    inverse normal CDF, correlated by Cholesky, and one chi-square mixing variable. With
    ``antithetic`` each point is followed by its mirror (``-z``, same mixing draw): ``U`` and
    ``1 - U``.

    Returns
    -------
    ndarray, shape (n_batches * 2**log2_points * (2 if antithetic else 1), d)
    """
    from scipy import stats
    from scipy.stats import qmc

    c = np.asarray(corr, dtype=np.float64)
    d = c.shape[0]
    if c.shape != (d, d):
        raise InputError("corr", "must be square")
    if not nu > 2.0:
        raise InputError("nu", f"copula degrees of freedom must be > 2, got {nu!r}")
    chol = np.linalg.cholesky(c)
    seeds = np.random.SeedSequence(int(seed)).spawn(int(n_batches))
    n = 2 ** int(log2_points)
    out: list[FloatArray] = []
    for ss in seeds:
        rng = np.random.default_rng(ss)
        if quasi_random:
            pts = qmc.Sobol(d=d + 1, scramble=True, seed=rng).random_base2(int(log2_points))
        else:
            pts = rng.random((n, d + 1))
        pts = np.clip(pts, 1e-12, 1.0 - 1e-12)
        z = stats.norm.ppf(pts[:, :d]) @ chol.T
        w = np.sqrt(stats.chi2.ppf(pts[:, d], nu) / nu)
        t = z / w[:, None]
        if antithetic:
            t = np.stack([t, -t], axis=1).reshape(2 * n, d)
        out.append(np.asarray(stats.t.cdf(t, nu), dtype=np.float64))
    return np.concatenate(out, axis=0)


@dataclass(frozen=True)
class MCEstimate:
    """VaR/ES from Monte Carlo losses with batch standard errors."""

    var: float
    es: float
    var_se: float
    es_se: float
    n_scenarios: int
    n_batches: int


def mc_var_es(losses: ArrayLike, n_batches: int, conf_var: float = 0.99,
              conf_es: float = 0.975) -> MCEstimate:
    """Pooled VaR/ES of batch-major losses and their standard errors (batch spread / sqrt(B)).

    Parameters
    ----------
    losses : array_like, shape (n_batches * n_per_batch,)
        Batch-major (as produced by :func:`sample_t_copula`).
    """
    a = np.asarray(losses, dtype=np.float64)
    b = int(n_batches)
    if b < 2 or a.shape[0] % b:
        raise InputError("n_batches", "need >= 2 equal batches for standard errors")
    per = a.reshape(b, -1).T  # (n_per_batch, n_batches)
    vb = np.asarray(var(per, conf_var))
    eb = np.asarray(expected_shortfall(per, conf_es))
    return MCEstimate(
        var=float(var(a, conf_var)), es=float(expected_shortfall(a, conf_es)),
        var_se=float(vb.std(ddof=1) / math.sqrt(b)), es_se=float(eb.std(ddof=1) / math.sqrt(b)),
        n_scenarios=int(a.shape[0]), n_batches=b,
    )


@dataclass(frozen=True)
class FactorResiduals:
    """Standardised residuals of one risk factor and its one-step vol.

    Attributes
    ----------
    name : str
        ``BTC`` (log return) or ``BTC:iv`` (ATM-IV log change).
    dates : ndarray of datetime64[D], shape (n,)
    z : ndarray, shape (n,)
        Residuals ``x / sigma``, oldest first.
    sigma_next : float
        One-step-ahead vol of the factor (decimal, daily).
    marginal : TMarginal
        Distribution of ``z``.
    """

    name: str
    dates: NDArray[np.datetime64]
    z: FloatArray
    sigma_next: float
    marginal: TMarginal


@dataclass(frozen=True)
class CopulaFit:
    """Fitted t copula: factor names, correlation (shrunk), degrees of freedom, sample size."""

    names: tuple[str, ...]
    corr: FloatArray
    nu: float
    n_obs: int
    nu_fitted: bool


def fit_copula(factors: list[FactorResiduals], window: int, lam: float, shrinkage: float,
               nu: float | None) -> CopulaFit:
    """t copula on the last ``window`` dates common to all factors.

    Correlation: :func:`marginproof.risk.ewma.ewma_correlation` of the residuals (shrunk);
    ``nu``: maximum likelihood on pseudo-observations unless given.
    """
    from marginproof.risk.ewma import ewma_correlation

    common = factors[0].dates
    for f in factors[1:]:
        common = np.intersect1d(common, f.dates)
    common = common[-int(window):]
    if common.shape[0] < 60:
        raise InputError("market.timestamp", f"only {common.shape[0]} common dates for the copula")
    zmat = np.column_stack([f.z[np.searchsorted(f.dates, common)] for f in factors])
    if len(factors) == 1:
        return CopulaFit((factors[0].name,), np.ones((1, 1)), float(nu or 30.0),
                         int(common.shape[0]), False)
    corr = ewma_correlation(zmat, lam, min(30, zmat.shape[0]), shrinkage)
    if nu is None:
        nu_hat = fit_t_copula_nu(pseudo_observations(zmat), corr)
        return CopulaFit(tuple(f.name for f in factors), corr, nu_hat, int(common.shape[0]), True)
    return CopulaFit(tuple(f.name for f in factors), corr, float(nu), int(common.shape[0]), False)


def simulate_factors(factors: list[FactorResiduals], copula: CopulaFit, n_batches: int,
                     log2_points: int, seed: int, antithetic: bool = True,
                     quasi_random: bool = True) -> FloatArray:
    """One-day factor scenarios ``sigma_next * F^-1(U)``, shape (n_scenarios, n_factors)."""
    u = sample_t_copula(copula.corr, copula.nu, n_batches, log2_points, seed, antithetic,
                        quasi_random)
    out = np.empty_like(u)
    for j, f in enumerate(factors):
        out[:, j] = f.sigma_next * f.marginal.ppf(u[:, j])
    return out
