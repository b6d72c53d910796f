"""Simulated paths of the risk factors over the forecast horizon.

Construction (``docs/models/forecast.md``). The horizon is cut at every UTC midnight into day
segments. In each segment of ``L`` hours every path draws one joint one-day residual vector
``z`` from the dynamics (:meth:`FactorDynamics.draw`) and the factors move by
``X = sigma * sqrt(L / 24) * z`` over the segment, ``sigma`` the one-day vols in force on that
path; the values at the hours inside the segment follow a Brownian bridge to ``X`` whose noise
has the residuals' correlation. So the one-day move of every factor has the model's own
distribution (fat tails and dependence included) and intraday paths are continuous in time;
with normal residuals the construction is exactly a correlated Brownian motion (tested against
closed forms). At each midnight the vols are updated with the model's recursion on the day's
simulated move (the first day's move includes the part already realised since the last close),
and the model's one-day scenario shocks scale by the ratio of the new to the original vol
(``ret_scale``, ``iv_scale``). Funding rates move at each 8-hour settlement (00, 08, 16 UTC) by a
change bootstrapped from their history. Every draw comes from one seeded generator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError
from marginproof.forecast.dynamics import FactorDynamics, sqrt_psd

FloatArray = NDArray[np.float64]
FUNDING_HOURS_UTC = (0, 8, 16)
_EPS = 1e-9


@dataclass(frozen=True)
class FactorPaths:
    """Factor values at the forecast steps (and at requested knots) on every path.

    Attributes
    ----------
    underlyings : tuple of str, length n_u
    hours : ndarray, shape (n_steps + 1,)
        Hours from the market time; ``hours[0] = 0``.
    log_spot, log_iv : ndarray, shape (n_paths, n_steps + 1, n_u)
        Log change of the index and of the ATM implied vol since the market time.
    ret_scale, iv_scale : ndarray, shape (n_paths, n_steps + 1, n_u)
        Factor by which the model's one-day scenario shocks scale at each step (1 before the
        first rollover).
    sigma : ndarray, shape (n_paths, n_steps + 1, n_u)
        One-day return vol in force.
    rollovers : ndarray of int, shape (n_steps + 1,)
        UTC midnights passed.
    knot_hours : ndarray, shape (n_knots,)
    knot_log_spot : ndarray, shape (n_paths, n_knots, n_u)
        Log index change at the requested extra knots (option expiries, say).
    funding_hours : ndarray, shape (n_settlements,)
    funding_log_spot : ndarray, shape (n_paths, n_settlements, n_u)
    funding_rate_change : ndarray, shape (n_paths, n_settlements, n_u)
        Cumulative change of the 8-hour funding rate at each settlement.
    """

    underlyings: tuple[str, ...]
    hours: FloatArray
    log_spot: FloatArray
    log_iv: FloatArray
    ret_scale: FloatArray
    iv_scale: FloatArray
    sigma: FloatArray
    rollovers: NDArray[np.int64]
    knot_hours: FloatArray
    knot_log_spot: FloatArray
    funding_hours: FloatArray
    funding_log_spot: FloatArray
    funding_rate_change: FloatArray

    @property
    def n_paths(self) -> int:
        return int(self.log_spot.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.hours.shape[0] - 1)

    def subset(self, paths: NDArray[np.int64] | slice) -> FactorPaths:
        """The same paths restricted to some of them (for subsample checks)."""
        return FactorPaths(self.underlyings, self.hours, self.log_spot[paths],
                           self.log_iv[paths], self.ret_scale[paths], self.iv_scale[paths],
                           self.sigma[paths], self.rollovers, self.knot_hours,
                           self.knot_log_spot[paths], self.funding_hours,
                           self.funding_log_spot[paths], self.funding_rate_change[paths])


def hours_to_midnight(t0: datetime) -> float:
    """Hours from ``t0`` to the next UTC midnight (24 at midnight itself)."""
    t = t0.astimezone(UTC)
    secs = t.hour * 3600 + t.minute * 60 + t.second + t.microsecond * 1e-6
    return (86400.0 - secs) / 3600.0


def funding_times(t0: datetime, horizon_h: float) -> FloatArray:
    """Hours from ``t0`` of the 8-hourly funding settlements in ``(0, horizon_h]``."""
    h0 = hours_to_midnight(t0)  # next midnight
    start = h0 - 24.0
    out = [start + d * 24.0 + h for d in range(int(horizon_h // 24) + 3) for h in
           FUNDING_HOURS_UTC]
    return np.array(sorted(x for x in out if _EPS < x <= horizon_h + _EPS), dtype=np.float64)


def simulate_paths(dyn: FactorDynamics, t0: datetime, horizon_h: float, step_h: float,
                   n_paths: int, seed: int, spot0: Sequence[float] | None = None,
                   extra_knots: Sequence[float] = ()) -> FactorPaths:
    """Simulate the factors of ``dyn`` (see module docstring).

    Parameters
    ----------
    dyn : FactorDynamics
    t0 : datetime
        Market time (aware UTC).
    horizon_h, step_h : float
        Horizon and step in hours.
    n_paths, seed : int
    spot0 : sequence of float, length n_u, optional
        Index at ``t0``; with the dynamics' last close it gives the part of the first day's
        return already realised (needed by the first vol update).
    extra_knots : sequence of float
        Hours in ``(0, horizon_h]`` at which the index is also wanted (expiries).
    """
    if t0.tzinfo is None:
        raise InputError("market.timestamp", "must be timezone-aware (UTC)")
    nu = len(dyn.underlyings)
    nf = 2 * nu
    n_steps = int(round(horizon_h / step_h))
    hours = np.arange(n_steps + 1, dtype=np.float64) * float(step_h)
    first_mid = hours_to_midnight(t0)
    mids = [first_mid + 24.0 * d for d in range(int(horizon_h // 24) + 2)]
    mids = [m for m in mids if m <= horizon_h + _EPS]
    fund_h = funding_times(t0, horizon_h)
    extra = np.array([float(x) for x in extra_knots if _EPS < float(x) <= horizon_h + _EPS])
    knots = np.unique(np.round(np.concatenate([hours, np.array(mids), fund_h, extra]), 9))
    n_k = knots.shape[0]
    ss = np.random.SeedSequence(int(seed))
    g_z, g_w, g_f = (np.random.default_rng(s) for s in ss.spawn(3))
    A = sqrt_psd(dyn.corr)
    vals = np.zeros((n_paths, n_k, nf))
    sig_k = np.zeros((n_paths, n_k, nf))  # vols in force at each knot
    sig = np.broadcast_to(dyn.sigma, (n_paths, nf)).copy()
    sig_k[:, 0] = sig
    iv_on = dyn.iv_shocks
    if spot0 is None:
        offset = np.full(nu, np.nan)
    else:
        offset = np.log(np.asarray(spot0, dtype=np.float64) / dyn.last_close)
    upd_on = np.isfinite(offset)
    bounds = [0.0, *[m for m in mids if m < horizon_h - _EPS], float(horizon_h)]
    last_mid_idx = 0
    mid_set = {round(m, 9) for m in mids}
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        length = b - a
        if length <= _EPS:
            continue
        ia = int(np.searchsorted(knots, round(a, 9)))
        ib = int(np.searchsorted(knots, round(b, 9)))
        seg = knots[ia + 1: ib + 1] - a  # (m,) in (0, L]
        z = dyn.draw(g_z, n_paths)
        if not iv_on:
            z[:, nu:] = 0.0
        X = sig * math.sqrt(length / 24.0) * z  # (n_p, nf)
        dt = np.diff(np.concatenate([[0.0], seg])) / 24.0  # days
        dW = g_w.standard_normal((n_paths, seg.shape[0], nf)) @ A.T
        dW *= np.sqrt(dt)[None, :, None]
        if not iv_on:
            dW[:, :, nu:] = 0.0
        W = np.cumsum(dW, axis=1)
        frac = (seg / length)[None, :, None]
        B = X[:, None, :] * frac + sig[:, None, :] * (W - frac * W[:, -1:, :])
        vals[:, ia + 1: ib + 1] = vals[:, ia: ia + 1] + B
        sig_k[:, ia + 1: ib + 1] = sig[:, None, :]
        if round(b, 9) in mid_set:
            # rollover at b: the day's moves update the vols (the model's own recursion)
            day = vals[:, ib] - vals[:, last_mid_idx]
            new = sig.copy()
            for u in range(nu):
                if not upd_on[u]:
                    continue
                x_r = day[:, u] + (offset[u] if last_mid_idx == 0 else 0.0)
                new[:, u] = dyn.updates[u].next_sigma(sig[:, u], x_r)
                if dyn.iv_proxy_next[u]:
                    x_v = dyn.proxy_scale * np.log(new[:, u] / sig[:, u])
                else:
                    x_v = day[:, nu + u] if iv_on else np.zeros(n_paths)
                if iv_on:
                    new[:, nu + u] = dyn.updates[nu + u].next_sigma(sig[:, nu + u], x_v)
            sig = new
            sig_k[:, ib] = sig  # the as-of day changes at midnight itself
            last_mid_idx = ib
    step_idx = np.searchsorted(knots, np.round(hours, 9))
    s0 = np.where(dyn.sigma > 0, dyn.sigma, 1.0)
    scale = sig_k / s0[None, None, :]
    scale[:, :, dyn.sigma <= 0] = 1.0
    rollovers = np.array([sum(1 for m in mids if m <= h + _EPS) for h in hours], np.int64)
    fidx = np.searchsorted(knots, np.round(fund_h, 9))
    rate_change = np.zeros((n_paths, fund_h.shape[0], nu))
    for u, name in enumerate(dyn.underlyings):
        ch = dyn.funding_changes.get(name)
        if ch is not None and len(ch) and fund_h.shape[0]:
            draws = ch[g_f.integers(0, len(ch), size=(n_paths, fund_h.shape[0]))]
            rate_change[:, :, u] = np.cumsum(draws, axis=1)
    kidx = np.searchsorted(knots, np.round(extra, 9))
    return FactorPaths(
        underlyings=dyn.underlyings, hours=hours,
        log_spot=vals[:, step_idx, :nu], log_iv=vals[:, step_idx, nu:],
        ret_scale=scale[:, step_idx, :nu], iv_scale=scale[:, step_idx, nu:],
        sigma=sig_k[:, step_idx, :nu], rollovers=rollovers,
        knot_hours=extra, knot_log_spot=vals[:, kidx, :nu],
        funding_hours=fund_h, funding_log_spot=vals[:, fidx, :nu],
        funding_rate_change=rate_change)
