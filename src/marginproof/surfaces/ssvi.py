"""SSVI surfaces (Gatheral & Jacquier 2014) with the power-law ``phi``.

``w(k, theta) = theta/2 (1 + rho phi k + sqrt((phi k + rho)^2 + 1 - rho^2))``,
``phi(theta) = eta / (theta^gamma (1 + theta)^(1 - gamma))``, ``0 < gamma <= 1/2``, with ``theta``
the ATM total variance of each expiry.

No butterfly arbitrage (sufficient): ``theta phi (1 + |rho|) < 4`` and
``theta phi^2 (1 + |rho|) <= 4`` for every ``theta``; ``eta (1 + |rho|) <= 2`` guarantees both for
this ``phi``. No calendar arbitrage: ``theta`` non-decreasing in ``T``.

Fit: one least-squares problem on total variance over every point of a chain: ``theta_j`` as
cumulative sums of non-negative increments (calendar-arbitrage free by construction), ``rho``,
``gamma`` and ``eta`` (with ``enforce=True``, ``eta = 2 u / (1 + |rho|)`` with ``u`` in (0, 1], so
the surface is butterfly-free by construction); several starts. Time interpolation: ``theta``
linear in ``T`` between expiries, flat ATM vol outside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize

from marginproof.errors import InputError
from marginproof.surfaces.svi import g_function

FloatArray = NDArray[np.float64]


def ssvi_phi(theta: ArrayLike, eta: float, gamma: float) -> FloatArray:
    """Power-law ``phi(theta)``."""
    th = np.asarray(theta, dtype=np.float64)
    return np.asarray(eta / (th ** gamma * (1.0 + th) ** (1.0 - gamma)), dtype=np.float64)


def ssvi_total_variance(k: ArrayLike, theta: ArrayLike, rho: float, eta: float, gamma: float
                        ) -> FloatArray:
    """``w(k, theta)``, broadcast over ``k`` and ``theta``."""
    kk = np.asarray(k, dtype=np.float64)
    th = np.asarray(theta, dtype=np.float64)
    ph = ssvi_phi(th, eta, gamma)
    x = ph * kk + rho
    return np.asarray(th / 2.0 * (1.0 + rho * ph * kk + np.sqrt(x * x + 1.0 - rho * rho)),
                      dtype=np.float64)


def ssvi_derivatives(k: ArrayLike, theta: float, rho: float, eta: float, gamma: float
                     ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(w, w', w'')`` in ``k`` of one SSVI slice."""
    kk = np.asarray(k, dtype=np.float64)
    ph = float(ssvi_phi(theta, eta, gamma))
    x = ph * kk + rho
    r = np.sqrt(x * x + 1.0 - rho * rho)
    w = theta / 2.0 * (1.0 + rho * ph * kk + r)
    w1 = theta * ph / 2.0 * (rho + x / r)
    w2 = theta * ph * ph / 2.0 * (1.0 - rho * rho) / r ** 3
    return w, w1, w2


@dataclass(frozen=True)
class SSVIChecks:
    """Arbitrage checks of an SSVI parameter set on given ``theta`` values."""

    butterfly_1: bool       # theta phi (1 + |rho|) < 4 for every theta
    butterfly_2: bool       # theta phi^2 (1 + |rho|) <= 4 for every theta
    eta_condition: bool     # eta (1 + |rho|) <= 2
    calendar: bool          # theta non-decreasing in T
    max_theta_phi: float
    max_theta_phi2: float

    @property
    def arbitrage_free(self) -> bool:
        return self.butterfly_1 and self.butterfly_2 and self.calendar


def ssvi_checks(thetas: ArrayLike, rho: float, eta: float, gamma: float, tol: float = 1e-12
                ) -> SSVIChecks:
    """No-arbitrage conditions of ``risk-methods.md`` section 6 (``thetas`` in expiry order)."""
    th = np.asarray(thetas, dtype=np.float64)
    ph = ssvi_phi(th, eta, gamma)
    a = th * ph * (1.0 + abs(rho))
    b = th * ph * ph * (1.0 + abs(rho))
    return SSVIChecks(bool(np.all(a < 4.0)), bool(np.all(b <= 4.0 + tol)),
                      bool(eta * (1.0 + abs(rho)) <= 2.0 + tol),
                      bool(np.all(np.diff(th) >= -tol)), float(a.max()), float(b.max()))


@dataclass(frozen=True)
class SSVISurface:
    """A fitted SSVI surface.

    Attributes
    ----------
    t_years : ndarray, shape (n_expiries,)
    thetas : ndarray, shape (n_expiries,)
        ATM total variance per expiry (non-decreasing).
    rho, eta, gamma : float
    checks : SSVIChecks
    rmse_vol_points : float
        Over all fitted points.
    rmse_vol_points_by_expiry : ndarray, shape (n_expiries,)
    g_min : float
        Minimum of ``g`` over every slice on the fitted ``k`` range.
    n_points : int
    """

    t_years: FloatArray
    thetas: FloatArray
    rho: float
    eta: float
    gamma: float
    checks: SSVIChecks
    rmse_vol_points: float
    rmse_vol_points_by_expiry: FloatArray
    g_min: float
    n_points: int

    def theta(self, t_years: ArrayLike) -> FloatArray:
        """ATM total variance at any ``T``: linear in ``T`` between expiries, flat ATM vol
        (``theta proportional to T``) before the first and after the last."""
        t = np.asarray(t_years, dtype=np.float64)
        ts, th = self.t_years, self.thetas
        inner = np.interp(t, ts, th)
        before = th[0] * t / ts[0]
        after = th[-1] * t / ts[-1]
        return np.asarray(np.where(t < ts[0], before, np.where(t > ts[-1], after, inner)),
                          dtype=np.float64)

    def total_variance(self, k: ArrayLike, t_years: ArrayLike) -> FloatArray:
        """``w(k, theta(T))``, broadcast."""
        return ssvi_total_variance(k, self.theta(t_years), self.rho, self.eta, self.gamma)

    def implied_vol(self, k: ArrayLike, t_years: ArrayLike) -> FloatArray:
        """Implied vol at log-moneyness ``k`` and ``T`` (inter/extrapolated)."""
        t = np.asarray(t_years, dtype=np.float64)
        if np.any(t <= 0.0):
            raise InputError("t_years", "must be positive")
        return np.asarray(np.sqrt(self.total_variance(k, t) / t), dtype=np.float64)


def fit_ssvi(ks: Sequence[ArrayLike], vols: Sequence[ArrayLike], t_years: Sequence[float],
             theta0: Sequence[float] | None = None, enforce: bool = True) -> SSVISurface:
    """Fit an SSVI surface to several expiries' smiles.

    Parameters
    ----------
    ks, vols : sequences of array_like
        Per expiry: log-moneyness and market implied vol (decimal), shape (n_j,).
    t_years : sequence of float
        Expiry times, strictly increasing.
    theta0 : sequence of float, optional
        Starting ATM total variances (e.g. from SVI fits); default: the market point nearest ATM.
    enforce : bool
        Parametrise ``eta <= 2 / (1 + |rho|)`` (butterfly-free by construction); otherwise the
        checks are only reported.
    """
    n = len(t_years)
    if n < 1 or len(ks) != n or len(vols) != n:
        raise InputError("surface", "need matching ks, vols and t_years per expiry")
    ts = np.asarray(t_years, dtype=np.float64)
    if np.any(ts <= 0.0) or np.any(np.diff(ts) <= 0.0):
        raise InputError("t_years", "must be positive and strictly increasing")
    kk = [np.asarray(k, dtype=np.float64) for k in ks]
    ww = [np.asarray(v, dtype=np.float64) ** 2 * t for v, t in zip(vols, ts, strict=True)]
    if theta0 is None:
        th0 = np.array([float(w[np.argmin(np.abs(k))]) for k, w in zip(kk, ww, strict=True)])
    else:
        th0 = np.asarray(theta0, dtype=np.float64)
    th0 = np.maximum.accumulate(np.maximum(th0, 1e-6))
    inc0 = np.diff(np.concatenate([[0.0], th0]))
    k_all = np.concatenate(kk)
    w_all = np.concatenate(ww)
    idx = np.concatenate([np.full(k.shape[0], j) for j, k in enumerate(kk)])
    wmax = float(w_all.max())

    def unpack(x: FloatArray) -> tuple[FloatArray, float, float, float]:
        th = np.asarray(np.cumsum(x[:n]), dtype=np.float64)
        rho, g3, gam = float(x[n]), float(x[n + 1]), float(x[n + 2])
        eta = 2.0 * g3 / (1.0 + abs(rho)) if enforce else g3
        return th, rho, eta, gam

    def resid(x: FloatArray) -> FloatArray:
        th, rho, eta, gam = unpack(x)
        return np.asarray(ssvi_total_variance(k_all, th[idx], rho, eta, gam) - w_all,
                          dtype=np.float64)

    below = (np.arange(n)[None, :] <= idx[:, None]).astype(np.float64)  # d theta_j / d inc_i

    def jac(x: FloatArray) -> FloatArray:
        th_all, rho, eta, gam = unpack(x)
        th = th_all[idx]
        ph = ssvi_phi(th, eta, gam)
        u = ph * k_all + rho
        r = np.sqrt(u * u + 1.0 - rho * rho)
        w = th / 2.0 * (1.0 + rho * ph * k_all + r)
        dw_dphi = th / 2.0 * (rho * k_all + u * k_all / r)
        dphi_dth = ph * (-gam / th + (gam - 1.0) / (1.0 + th))
        dw_dth = w / th + dw_dphi * dphi_dth
        dw_drho = th / 2.0 * (ph * k_all + ph * k_all / r)
        dphi_deta = ph / eta
        if enforce:
            e = float(x[n + 1])
            deta_de = 2.0 / (1.0 + abs(rho))
            deta_drho = -2.0 * e * float(np.sign(rho)) / (1.0 + abs(rho)) ** 2
        else:
            deta_de, deta_drho = 1.0, 0.0
        out = np.empty((k_all.shape[0], n + 3))
        out[:, :n] = dw_dth[:, None] * below
        out[:, n] = dw_drho + dw_dphi * dphi_deta * deta_drho
        out[:, n + 1] = dw_dphi * dphi_deta * deta_de
        out[:, n + 2] = dw_dphi * ph * (np.log1p(th) - np.log(th))
        return out

    lo = np.concatenate([[1e-8], np.zeros(n - 1), [-0.999, 1e-4, 1e-3]])
    hi = np.concatenate([np.full(n, 2.0 * wmax + 1.0), [0.999, 1.0 if enforce else 10.0, 0.5]])
    best: optimize.OptimizeResult | None = None
    for rho0 in (-0.3, 0.0, 0.3):
        for gam0 in (0.25, 0.45):
            for e0 in ((0.3, 0.8) if enforce else (0.5, 1.5)):
                x0 = np.concatenate([np.maximum(inc0, 0.0), [rho0, e0, gam0]])
                x0 = np.clip(x0, lo + 1e-10, hi - 1e-10)
                res = optimize.least_squares(resid, x0, jac=jac, bounds=(lo, hi),
                                             method="trf", x_scale="jac", max_nfev=1000)
                if best is None or res.cost < best.cost:
                    best = res
    assert best is not None
    th, rho, eta, gam = unpack(best.x)
    fit_w = np.maximum(ssvi_total_variance(k_all, th[idx], rho, eta, gam), 0.0)
    t_all = ts[idx]
    err = np.sqrt(fit_w / t_all) - np.sqrt(w_all / t_all)
    by = np.array([float(np.sqrt(np.mean(err[idx == j] ** 2)) * 100.0) for j in range(n)])
    gmin = float("inf")
    for j in range(n):
        grid = np.linspace(float(kk[j].min()), float(kk[j].max()), 201)
        w, w1, w2 = ssvi_derivatives(grid, float(th[j]), rho, eta, gam)
        gmin = min(gmin, float(np.min(g_function(grid, w, w1, w2))))
    return SSVISurface(ts, th, rho, eta, gam, ssvi_checks(th, rho, eta, gam),
                       float(np.sqrt(np.mean(err ** 2)) * 100.0), by, gmin,
                       int(k_all.shape[0]))
