"""Raw SVI smiles (Gatheral 2004) and the butterfly-arbitrage check (Gatheral & Jacquier 2014).

``w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2))`` with ``k = ln(K/F)`` and total implied
variance ``w = sigma_imp^2 T``. Constraints: ``b >= 0``, ``|rho| < 1``, ``sigma > 0``,
``min w = a + b sigma sqrt(1 - rho^2) >= 0``. Butterfly arbitrage is absent where
``g(k) = (1 - k w'/(2w))^2 - (w'^2/4)(1/w + 1/4) + w''/2 >= 0``.

Fitting (``risk-methods.md`` section 6): unweighted least squares on total variance with
``scipy.optimize.least_squares`` inside bounds, from several starts; the minimum total variance
``a + b sigma sqrt(1 - rho^2)`` is a fitted parameter bounded below by 0, so the non-negativity
constraint holds exactly. The g-check is reported, not enforced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize

from marginproof.errors import InputError

FloatArray = NDArray[np.float64]

# Gatheral & Jacquier (2014), section 3.1: Axel Vogt's raw-SVI parameters, arbitrageable.
VOGT_PARAMS = (-0.0410, 0.1331, 0.3060, 0.3586, 0.4153)


@dataclass(frozen=True)
class SVIParams:
    """Raw SVI parameters ``(a, b, rho, m, sigma)``."""

    a: float
    b: float
    rho: float
    m: float
    sigma: float

    def __post_init__(self) -> None:
        if not (self.b >= 0.0 and abs(self.rho) < 1.0 and self.sigma > 0.0):
            raise InputError("svi", f"need b >= 0, |rho| < 1, sigma > 0: {self}")

    @property
    def min_total_variance(self) -> float:
        """``a + b sigma sqrt(1 - rho^2)``."""
        return self.a + self.b * self.sigma * math.sqrt(1.0 - self.rho ** 2)

    def as_tuple(self) -> tuple[float, float, float, float, float]:
        return (self.a, self.b, self.rho, self.m, self.sigma)


def svi_total_variance(k: ArrayLike, p: SVIParams) -> FloatArray:
    """``w(k)``, shape of ``k``."""
    x = np.asarray(k, dtype=np.float64) - p.m
    return np.asarray(p.a + p.b * (p.rho * x + np.sqrt(x * x + p.sigma ** 2)), dtype=np.float64)


def svi_derivatives(k: ArrayLike, p: SVIParams) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(w, w', w'')`` in ``k``."""
    x = np.asarray(k, dtype=np.float64) - p.m
    r = np.sqrt(x * x + p.sigma ** 2)
    w = p.a + p.b * (p.rho * x + r)
    w1 = p.b * (p.rho + x / r)
    w2 = p.b * p.sigma ** 2 / r ** 3
    return w, w1, w2


def g_function(k: ArrayLike, w: ArrayLike, w1: ArrayLike, w2: ArrayLike) -> FloatArray:
    """Gatheral-Jacquier density factor ``g(k)`` from ``w, w', w''`` (any smile)."""
    kk = np.asarray(k, dtype=np.float64)
    ww = np.asarray(w, dtype=np.float64)
    d1 = np.asarray(w1, dtype=np.float64)
    d2 = np.asarray(w2, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (1.0 - kk * d1 / (2.0 * ww)) ** 2 - (d1 ** 2 / 4.0) * (1.0 / ww + 0.25) + d2 / 2.0
    return np.asarray(np.where(ww > 0.0, g, -np.inf), dtype=np.float64)


def svi_g(k: ArrayLike, p: SVIParams) -> FloatArray:
    """``g(k)`` of a raw-SVI smile."""
    w, w1, w2 = svi_derivatives(k, p)
    return g_function(k, w, w1, w2)


def svi_butterfly_free(p: SVIParams, k_min: float = -1.5, k_max: float = 1.5,
                       n: int = 601) -> tuple[bool, float]:
    """``(min g >= 0, min g)`` on a uniform grid of ``[k_min, k_max]``."""
    g = svi_g(np.linspace(k_min, k_max, n), p)
    gmin = float(np.min(g))
    return gmin >= 0.0, gmin


@dataclass(frozen=True)
class SVIFit:
    """A fitted smile and its quality.

    Attributes
    ----------
    params : SVIParams
    t_years : float
    n_points : int
    rmse_vol_points : float
        RMSE of fitted vs market implied vol, in vol points (1 = 1 %).
    rmse_total_variance : float
    atm_vol : float
        Fitted implied vol at ``k = 0`` (decimal).
    g_min : float
        Minimum of ``g`` on the fitted ``k`` range.
    butterfly_free : bool
    k_min, k_max : float
        Fitted range.
    """

    params: SVIParams
    t_years: float
    n_points: int
    rmse_vol_points: float
    rmse_total_variance: float
    atm_vol: float
    g_min: float
    butterfly_free: bool
    k_min: float
    k_max: float

    def implied_vol(self, k: ArrayLike) -> FloatArray:
        """Fitted implied vol at log-moneyness ``k`` (SVI wings extrapolate linearly in w)."""
        w = np.maximum(svi_total_variance(k, self.params), 0.0)
        return np.asarray(np.sqrt(w / self.t_years), dtype=np.float64)


def _grid_starts(k: FloatArray, w: FloatArray, n_best: int
                 ) -> list[tuple[float, float, float, float, float]]:
    """Starting points from a (m, sigma) grid search with the linear inner problem.

    For fixed ``(m, sigma)``, ``w = a + d y + c sqrt(y^2 + 1)`` with ``y = (k - m)/sigma`` is
    linear in ``(a, d, c)`` (the quasi-explicit SVI reduction of Zeliade 2009); its
    unconstrained least-squares solution, projected onto the constraints, ranks the grid nodes.
    Returns ``(wmin, b, rho, m, sigma)`` starts for the bounded 5-parameter fit.
    """
    span = float(max(np.ptp(k), 0.1))
    ms = np.linspace(float(k.min()) - 0.25 * span, float(k.max()) + 0.25 * span, 15)
    sigs = span * np.geomspace(0.01, 1.0, 10)
    grid_m, grid_s = np.meshgrid(ms, sigs, indexing="ij")
    mm, ss = grid_m.ravel(), grid_s.ravel()
    y = (k[None, :] - mm[:, None]) / ss[:, None]                      # (g, n)
    design = np.stack([np.ones_like(y), y, np.sqrt(y * y + 1.0)], axis=2)  # (g, n, 3)
    xtx = np.einsum("gni,gnj->gij", design, design) + 1e-12 * np.eye(3)
    xtw = np.einsum("gni,n->gi", design, w)
    coef = np.linalg.solve(xtx, xtw[..., None])[..., 0]              # (g, 3): a, d, c
    sse = np.sum((np.einsum("gni,gi->gn", design, coef) - w[None, :]) ** 2, axis=1)
    out = []
    for g in np.argsort(sse)[: 3 * n_best]:
        a, d, c = (float(v) for v in coef[g])
        c = max(c, 1e-6)
        rho = float(np.clip(d / c, -0.95, 0.95))
        b = c / float(ss[g])
        wmin = max(a + c * math.sqrt(1.0 - rho * rho), 0.0)
        out.append((wmin, b, rho, float(mm[g]), float(ss[g])))
        if len(out) >= n_best:
            break
    return out


def _starts(k: FloatArray, w: FloatArray, n_grid: int = 4
            ) -> list[tuple[float, float, float, float, float]]:
    wmin = float(np.min(w))
    span = float(max(np.ptp(k), 0.1))
    fixed = [(0.8 * wmin, 0.1, rho, 0.0, 0.1 * span) for rho in (-0.5, 0.0, 0.5)]
    fixed.append((0.8 * wmin, 0.1, 0.0, float(k[np.argmin(w)]), 0.3 * span))
    return _grid_starts(k, w, n_grid) + fixed


def fit_svi(k: ArrayLike, implied_vol: ArrayLike, t_years: float, n_starts: int | None = None
            ) -> SVIFit:
    """Fit raw SVI to one expiry's smile.

    Parameters
    ----------
    k : array_like, shape (n,)
        Log-moneyness ``ln(K/F)``.
    implied_vol : array_like, shape (n,)
        Market implied vols (decimal).
    t_years : float
        Time to expiry (ACT/365).
    n_starts : int, optional
        Use only the first ``n_starts`` of the 8 deterministic starting points (4 from a grid
        search on ``(m, sigma)`` with the linear inner problem, 4 fixed).

    Returns
    -------
    SVIFit
    """
    kk = np.asarray(k, dtype=np.float64)
    iv = np.asarray(implied_vol, dtype=np.float64)
    t = float(t_years)
    if kk.shape != iv.shape or kk.ndim != 1 or kk.shape[0] < 5:
        raise InputError("smile", "need at least 5 points with matching k and vols")
    if not t > 0.0 or not np.all(np.isfinite(kk)) or not np.all(iv > 0.0):
        raise InputError("smile", "need T > 0, finite k and positive vols")
    w = iv * iv * t
    wmax = float(np.max(w))
    span = float(max(np.ptp(kk), 0.1))
    # x = (wmin_total, b, rho, m, sigma), a = wmin - b sigma sqrt(1 - rho^2)
    lo = np.array([0.0, 0.0, -0.999, float(kk.min()) - span, 1e-4])
    hi = np.array([wmax, 10.0 * max(wmax, 1e-4) / max(span, 1e-3) + 1.0, 0.999,
                   float(kk.max()) + span, 5.0 * span])

    def to_params(x: FloatArray) -> SVIParams:
        a = x[0] - x[1] * x[4] * math.sqrt(1.0 - x[2] ** 2)
        return SVIParams(float(a), float(x[1]), float(x[2]), float(x[3]), float(x[4]))

    def resid(x: FloatArray) -> FloatArray:
        return svi_total_variance(kk, to_params(x)) - w

    def jac(x: FloatArray) -> FloatArray:
        _, b, rho, m, sig = (float(v) for v in x)
        xm = kk - m
        r = np.sqrt(xm * xm + sig * sig)
        sq = math.sqrt(1.0 - rho * rho)
        out = np.empty((kk.shape[0], 5))
        out[:, 0] = 1.0
        out[:, 1] = -sig * sq + rho * xm + r
        out[:, 2] = b * sig * rho / sq + b * xm
        out[:, 3] = -b * (rho + xm / r)
        out[:, 4] = -b * sq + b * sig / r
        return out

    best: optimize.OptimizeResult | None = None
    starts = _starts(kk, w)[: n_starts or None]
    for s0 in starts:
        x0 = np.clip(np.array(s0), lo + 1e-9, hi - 1e-9)
        res = optimize.least_squares(resid, x0, jac=jac, bounds=(lo, hi), method="trf",
                                     x_scale="jac", max_nfev=200)
        if best is None or res.cost < best.cost:
            best = res
    assert best is not None
    p = to_params(best.x)
    fit_w = np.maximum(svi_total_variance(kk, p), 0.0)
    rmse_vol = float(np.sqrt(np.mean((np.sqrt(fit_w / t) - iv) ** 2)) * 100.0)
    rmse_w = float(np.sqrt(np.mean((fit_w - w) ** 2)))
    ok, gmin = svi_butterfly_free(p, float(kk.min()), float(kk.max()))
    atm = float(np.sqrt(max(float(svi_total_variance(0.0, p)), 0.0) / t))
    return SVIFit(p, t, int(kk.shape[0]), rmse_vol, rmse_w, atm, gmin, ok, float(kk.min()),
                  float(kk.max()))
