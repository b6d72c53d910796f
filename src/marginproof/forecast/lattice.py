"""Value lattices: the disclosed revaluation proxy of the forecast.

Why: a forecast margins ``n_paths x n_steps`` simulated markets, each with the model's full
scenario set (1,148 scenarios for ``dynamic``): full Black-76 revaluation of a 20-option book
is ~1e9 option prices. Every model revalues options *sticky-strike with one vol multiplier per
scenario*, so the value of a group of options depends on the market only through the index
ratio ``x`` and the vol multiplier ``y`` of its underlying (and the time). A lattice tabulates
the group value ``W(ln x, ln y)`` on a regular grid at each forecast step (exact Black-76 at the
nodes) and a scenario's P&L is ``W(ln x + dx, ln y + dy) - W(ln x, ln y)``, both interpolated
by bicubic convolution (Catmull-Rom, Keys 1981). Groups are the option sub-book of one
underlying for ``fhs``/``mc``/``dynamic`` (one IV multiplier per underlying) and single options
for ``grid`` (vol shocks depend on each option's expiry, with floors). Delta-one positions are
revalued exactly outside the lattice. The error against full revaluation is measured by
``benchmarks/bench_forecast.py`` and the tests; step 0 is always margined exactly.

:func:`lattice_pnl` is compiled (numba, parallel over states); :func:`lattice_pnl_reference`
is its plain numpy twin, tested equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from marginproof.pricing._kernels import njit, prange
from marginproof.pricing.black76 import black76_price

FloatArray = NDArray[np.float64]
PAD = 2  # nodes beyond the needed range on each side (cubic stencil)


@dataclass(frozen=True)
class Lattice:
    """Group values on regular (ln x, ln y) grids, one per group, at one forecast step.

    Attributes
    ----------
    values : ndarray, shape (n_groups, nx, ny)
    lx0, ly0 : ndarray, shape (n_groups,)
        Coordinates of node (0, 0).
    hx, hy : ndarray, shape (n_groups,)
        Node spacing.
    """

    values: FloatArray
    lx0: FloatArray
    ly0: FloatArray
    hx: FloatArray
    hy: FloatArray

    @property
    def n_nodes(self) -> int:
        return int(self.values.shape[1] * self.values.shape[2])


def empty_lattice() -> Lattice:
    """A lattice with no groups (books without options at a step)."""
    z = np.zeros(0)
    return Lattice(np.zeros((0, 4, 4)), z, z.copy(), np.ones(0), np.ones(0))


def _axis(lo: float, hi: float, h: float, max_nodes: int) -> tuple[float, float, int]:
    """Start, spacing and node count covering ``[lo, hi]`` with padding, node 0 at lo - PAD h."""
    span = max(hi - lo, h)
    n_in = int(math.ceil(span / h)) + 1
    if n_in + 2 * PAD > max_nodes:
        n_in = max_nodes - 2 * PAD
        h = span / (n_in - 1)
    return lo - PAD * h, h, n_in + 2 * PAD


def build_lattice(forward: FloatArray, strike: FloatArray, t_years: FloatArray,
                  vol: FloatArray, is_call: FloatArray, discount: FloatArray,
                  weight: FloatArray, group: NDArray[np.int64], n_groups: int,
                  lx_range: FloatArray, ly_range: FloatArray, hx: float, hy: float,
                  max_nodes: int = 4000) -> Lattice:
    """Tabulate ``W_g(lx, ly) = sum_i weight_i V_i(F_i e^lx, sigma_i e^ly)`` per group.

    Parameters
    ----------
    forward, strike, t_years, vol, is_call, discount, weight : ndarray, shape (n_options,)
        Options at the step (time to expiry already reduced), ``weight`` = quantity times the
        USD scale of the contract.
    group : int ndarray, shape (n_options,)
    lx_range, ly_range : ndarray, shape (n_groups, 2)
        Coordinate ranges the lookups will need.
    hx, hy : float
        Target spacing in ln x and ln y.
    """
    nxs, nys, lx0, ly0, hxs, hys = [], [], [], [], [], []
    for g in range(n_groups):
        a, h1, n1 = _axis(float(lx_range[g, 0]), float(lx_range[g, 1]), hx, max_nodes)
        b, h2, n2 = _axis(float(ly_range[g, 0]), float(ly_range[g, 1]), hy, max_nodes)
        lx0.append(a)
        hxs.append(h1)
        nxs.append(n1)
        ly0.append(b)
        hys.append(h2)
        nys.append(n2)
    nx, ny = max(nxs, default=1), max(nys, default=1)
    values = np.zeros((n_groups, nx, ny))
    for g in range(n_groups):
        sel = np.flatnonzero(group == g)
        if sel.size == 0:
            continue
        ex = np.exp(lx0[g] + hxs[g] * np.arange(nx))
        ey = np.exp(ly0[g] + hys[g] * np.arange(ny))
        f = forward[sel][:, None, None] * ex[None, :, None]
        s = vol[sel][:, None, None] * ey[None, None, :]
        shape = (sel.size, nx, ny)
        p = black76_price(np.broadcast_to(f, shape), np.broadcast_to(
            strike[sel][:, None, None], shape), np.broadcast_to(t_years[sel][:, None, None],
                                                                shape),
            np.broadcast_to(s, shape), np.broadcast_to(is_call[sel][:, None, None], shape),
            np.broadcast_to(discount[sel][:, None, None], shape))
        values[g] = np.tensordot(weight[sel], p, axes=(0, 0))
    return Lattice(values, np.array(lx0), np.array(ly0), np.array(hxs), np.array(hys))


@njit(cache=True, inline="always")
def _lookup(v: np.ndarray, g: int, lx0: float, hx: float, ly0: float, hy: float,
            lx: float, ly: float) -> float:
    """Catmull-Rom in ln x (4 nodes), linear in ln y (2 nodes)."""
    nx = v.shape[1]
    ny = v.shape[2]
    fx = (lx - lx0) / hx
    fy = (ly - ly0) / hy
    ix = min(max(int(math.floor(fx)), 1), nx - 3)
    iy = min(max(int(math.floor(fy)), 0), ny - 2)
    tx = fx - ix
    ty = fy - iy
    tx2 = tx * tx
    tx3 = tx2 * tx
    a0 = 0.5 * (-tx3 + 2.0 * tx2 - tx)
    a1 = 0.5 * (3.0 * tx3 - 5.0 * tx2 + 2.0)
    a2 = 0.5 * (-3.0 * tx3 + 4.0 * tx2 + tx)
    a3 = 0.5 * (tx3 - tx2)
    c0 = (a0 * v[g, ix - 1, iy] + a1 * v[g, ix, iy] + a2 * v[g, ix + 1, iy]
          + a3 * v[g, ix + 2, iy])
    c1 = (a0 * v[g, ix - 1, iy + 1] + a1 * v[g, ix, iy + 1] + a2 * v[g, ix + 1, iy + 1]
          + a3 * v[g, ix + 2, iy + 1])
    return float(c0 + ty * (c1 - c0))


@njit(cache=True, parallel=True, nogil=True)
def lattice_pnl(values: np.ndarray, lx0: np.ndarray, ly0: np.ndarray, hx: np.ndarray,
                hy: np.ndarray, state_lx: np.ndarray, state_ly: np.ndarray,
                kx: np.ndarray, ky: np.ndarray, dlx: np.ndarray, dly: np.ndarray,
                lyf: np.ndarray, out_col: np.ndarray, out: np.ndarray) -> None:
    """Add every group's scenario P&L to ``out``.

    Parameters
    ----------
    values, lx0, ly0, hx, hy : the :class:`Lattice` arrays (n_groups groups)
    state_lx, state_ly, kx, ky : ndarray, shape (n_states, n_groups)
        State coordinates and the scales of the scenario shocks at each state.
    dlx, dly, lyf : ndarray, shape (n_scen, n_groups)
        Shocks in ln x and ln y; ``lyf`` floors the shocked ln y (``-inf`` for none).
    out_col : int ndarray, shape (n_groups,)
        Column of ``out`` each group adds to.
    out : ndarray, shape (n_scen, n_states, n_cols)
    """
    n_states = state_lx.shape[0]
    n_groups = state_lx.shape[1]
    n_scen = dlx.shape[0]
    for s in prange(n_states):
        for g in range(n_groups):
            a, b = state_lx[s, g], state_ly[s, g]
            base = _lookup(values, g, lx0[g], hx[g], ly0[g], hy[g], a, b)
            c = out_col[g]
            for j in range(n_scen):
                y = max(b + ky[s, g] * dly[j, g], lyf[j, g])
                out[j, s, c] += _lookup(values, g, lx0[g], hx[g], ly0[g], hy[g],
                                        a + kx[s, g] * dlx[j, g], y) - base


def _weights(t: FloatArray) -> FloatArray:
    t2, t3 = t * t, t * t * t
    return np.stack([0.5 * (-t3 + 2 * t2 - t), 0.5 * (3 * t3 - 5 * t2 + 2),
                     0.5 * (-3 * t3 + 4 * t2 + t), 0.5 * (t3 - t2)], axis=-1)


def lattice_value_reference(lat: Lattice, g: int, lx: FloatArray, ly: FloatArray) -> FloatArray:
    """Plain numpy lookup of group ``g`` at arrays of coordinates (as the compiled one)."""
    v = lat.values[g]
    nx, ny = v.shape
    fx = (np.asarray(lx) - lat.lx0[g]) / lat.hx[g]
    fy = (np.asarray(ly) - lat.ly0[g]) / lat.hy[g]
    ix = np.clip(np.floor(fx).astype(np.int64), 1, nx - 3)
    iy = np.clip(np.floor(fy).astype(np.int64), 0, ny - 2)
    wx = _weights(fx - ix)
    ty = fy - iy
    c0 = np.zeros(np.shape(fx))
    c1 = np.zeros(np.shape(fx))
    for a in range(4):
        c0 += wx[..., a] * v[ix - 1 + a, iy]
        c1 += wx[..., a] * v[ix - 1 + a, iy + 1]
    return np.asarray(c0 + ty * (c1 - c0), dtype=np.float64)


def lattice_pnl_reference(lat: Lattice, state_lx: FloatArray, state_ly: FloatArray,
                          kx: FloatArray, ky: FloatArray, dlx: FloatArray, dly: FloatArray,
                          lyf: FloatArray, out_col: NDArray[np.int64], n_cols: int
                          ) -> FloatArray:
    """Numpy twin of :func:`lattice_pnl`; returns ``out`` of shape (n_scen, n_states, n_cols)."""
    n_scen, n_states = dlx.shape[0], state_lx.shape[0]
    out = np.zeros((n_scen, n_states, n_cols))
    for g in range(state_lx.shape[1]):
        base = lattice_value_reference(lat, g, state_lx[:, g], state_ly[:, g])
        lx = state_lx[None, :, g] + kx[None, :, g] * dlx[:, None, g]
        ly = np.maximum(state_ly[None, :, g] + ky[None, :, g] * dly[:, None, g],
                        lyf[:, None, g])
        out[:, :, out_col[g]] += lattice_value_reference(lat, g, lx, ly) - base[None, :]
    return out


@njit(cache=True, inline="always")
def _insert(buf: np.ndarray, s: int, k: int, v: float) -> None:
    """Insert ``v`` into the descending top-``k`` row ``buf[s]`` (kept sorted)."""
    if v <= buf[s, k - 1]:
        return
    i = k - 1
    while i > 0 and buf[s, i - 1] < v:
        buf[s, i] = buf[s, i - 1]
        i -= 1
    buf[s, i] = v


@njit(cache=True, parallel=True, nogil=True)
def tail_scan(values: np.ndarray, lx0: np.ndarray, ly0: np.ndarray, hx: np.ndarray,
              hy: np.ndarray, grp_und: np.ndarray, slx: np.ndarray, sly: np.ndarray,
              kx: np.ndarray, ky: np.ndarray, dlx: np.ndarray, dly: np.ndarray,
              lyf: np.ndarray, lin_coef: np.ndarray, r_und: np.ndarray, m_und: np.ndarray,
              top_tot: np.ndarray, top_und: np.ndarray) -> None:
    """Largest scenario losses of every state, total and per underlying (fused, no P&L array).

    Loss of scenario ``j`` at state ``s`` on underlying ``u``: minus the sum over the groups
    of ``u`` of their lattice P&L (as :func:`lattice_pnl`) minus the delta-one P&L
    ``lin_coef[s, u] * (exp(kx[s, u] r_und[j, u]) - 1)`` (``m_und[j, u]`` is that move when
    ``kx = 1``). The total is the sum over underlyings.

    Parameters
    ----------
    values, lx0, ly0, hx, hy : lattice arrays (n_groups groups; may be 0 groups)
    grp_und : int ndarray, shape (n_groups,)
    slx, sly, kx, ky : ndarray, shape (n_states, n_u)
    dlx, dly, lyf : ndarray, shape (n_scen, n_groups)
    lin_coef : ndarray, shape (n_states, n_u)
    r_und, m_und : ndarray, shape (n_scen, n_u)
    top_tot : ndarray, shape (n_states, k_tot), filled with -inf
        Descending top losses of the total (out).
    top_und : ndarray, shape (n_states, n_u, k_und), filled with -inf (k_und may be 0)
    """
    n_states = slx.shape[0]
    n_u = slx.shape[1]
    n_groups = grp_und.shape[0]
    n_scen = r_und.shape[0]
    k_tot = top_tot.shape[1]
    k_und = top_und.shape[2]
    for s in prange(n_states):
        base = np.empty(n_groups)
        for g in range(n_groups):
            u = grp_und[g]
            base[g] = _lookup(values, g, lx0[g], hx[g], ly0[g], hy[g], slx[s, u], sly[s, u])
        lu = np.empty(n_u)
        for j in range(n_scen):
            for u in range(n_u):
                c = lin_coef[s, u]
                if c == 0.0:
                    lu[u] = 0.0
                elif kx[s, u] == 1.0:
                    lu[u] = -c * m_und[j, u]
                else:
                    lu[u] = -c * math.expm1(kx[s, u] * r_und[j, u])
            for g in range(n_groups):
                u = grp_und[g]
                y = max(sly[s, u] + ky[s, u] * dly[j, g], lyf[j, g])
                lu[u] -= _lookup(values, g, lx0[g], hx[g], ly0[g], hy[g],
                                 slx[s, u] + kx[s, u] * dlx[j, g], y) - base[g]
            tot = 0.0
            for u in range(n_u):
                tot += lu[u]
            _insert(top_tot, s, k_tot, tot)
            if k_und > 0:
                for u in range(n_u):
                    _insert_row(top_und, s, u, k_und, lu[u])


@njit(cache=True, inline="always")
def _insert_row(buf: np.ndarray, s: int, u: int, k: int, v: float) -> None:
    if v <= buf[s, u, k - 1]:
        return
    i = k - 1
    while i > 0 and buf[s, u, i - 1] < v:
        buf[s, u, i] = buf[s, u, i - 1]
        i -= 1
    buf[s, u, i] = v


def tail_scan_reference(lat: Lattice | None, grp_und: NDArray[np.int64], slx: FloatArray,
                        sly: FloatArray, kx: FloatArray, ky: FloatArray, dlx: FloatArray,
                        dly: FloatArray, lyf: FloatArray, lin_coef: FloatArray,
                        r_und: FloatArray, k_tot: int, k_und: int
                        ) -> tuple[FloatArray, FloatArray]:
    """Numpy twin of :func:`tail_scan`: full loss arrays, then sorted tops."""
    n_states, n_u = slx.shape
    n_scen = r_und.shape[0]
    loss = -(lin_coef[None, :, :] * np.expm1(kx[None, :, :] * r_und[:, None, :]))
    if lat is not None and grp_und.shape[0]:
        g_lx = slx[:, grp_und]
        g_ly = sly[:, grp_und]
        pnl = lattice_pnl_reference(lat, g_lx, g_ly, kx[:, grp_und], ky[:, grp_und], dlx, dly,
                                    lyf, grp_und, n_u)
        loss = loss - pnl
    tot = -np.sort(-loss.sum(axis=2), axis=0)  # (n_scen, n_states) descending
    per = -np.sort(-loss, axis=0)
    top_tot = np.full((n_states, k_tot), -np.inf)
    top_und = np.full((n_states, n_u, k_und), -np.inf)
    kk = min(k_tot, n_scen)
    top_tot[:, :kk] = tot[:kk].T
    ku = min(k_und, n_scen)
    if ku:
        top_und[:, :, :ku] = np.moveaxis(per[:ku], 0, 2)
    return top_tot, top_und


@njit(cache=True, parallel=True, nogil=True)
def grid_scan(values: np.ndarray, lx0: np.ndarray, ly0: np.ndarray, hx: np.ndarray,
              hy: np.ndarray, grp_und: np.ndarray, slx: np.ndarray, sly: np.ndarray,
              dlx_m: np.ndarray, dly_v: np.ndarray, lyf_v: np.ndarray, lin_coef: np.ndarray,
              m_und: np.ndarray, worst_tot: np.ndarray, worst_und: np.ndarray) -> None:
    """Worst loss per state on a (move x vol-shock) scenario grid (the ``grid`` model).

    Scenario ``j = m * n_vol + v``; the interpolation weights of the ``n_moves`` ln-x
    positions and of the ``n_vol`` ln-y positions of a state are computed once and shared,
    so a scenario costs 8 multiply-adds. Same lookup as :func:`_lookup` (tested equal to
    :func:`tail_scan` with ``K = 1``).

    Parameters
    ----------
    dlx_m : ndarray, shape (n_moves, n_groups)
    dly_v, lyf_v : ndarray, shape (n_vol, n_groups)
    m_und : ndarray, shape (n_moves, n_u)
        Relative move of each underlying (delta-one P&L ``lin_coef * m``).
    worst_tot : ndarray, shape (n_states,), filled with -inf (out)
    worst_und : ndarray, shape (n_states, n_u), filled with -inf (out)
    """
    n_states = slx.shape[0]
    n_u = slx.shape[1]
    n_g = grp_und.shape[0]
    n_m = dlx_m.shape[0]
    n_v = dly_v.shape[0]
    nx = values.shape[1]
    ny = values.shape[2]
    for s in prange(n_states):
        loss = np.zeros((n_m * n_v, n_u))
        for j in range(n_m):
            for u in range(n_u):
                for v in range(n_v):
                    loss[j * n_v + v, u] = -lin_coef[s, u] * m_und[j, u]
        wx = np.empty((n_m, 4))
        ixs = np.empty(n_m, np.int64)
        for g in range(n_g):
            u = grp_und[g]
            base = _lookup(values, g, lx0[g], hx[g], ly0[g], hy[g], slx[s, u], sly[s, u])
            for m in range(n_m):
                fx = (slx[s, u] + dlx_m[m, g] - lx0[g]) / hx[g]
                ix = min(max(int(math.floor(fx)), 1), nx - 3)
                tx = fx - ix
                tx2 = tx * tx
                tx3 = tx2 * tx
                wx[m, 0] = 0.5 * (-tx3 + 2.0 * tx2 - tx)
                wx[m, 1] = 0.5 * (3.0 * tx3 - 5.0 * tx2 + 2.0)
                wx[m, 2] = 0.5 * (-3.0 * tx3 + 4.0 * tx2 + tx)
                wx[m, 3] = 0.5 * (tx3 - tx2)
                ixs[m] = ix
            for v in range(n_v):
                ly = max(sly[s, u] + dly_v[v, g], lyf_v[v, g])
                fy = (ly - ly0[g]) / hy[g]
                iy = min(max(int(math.floor(fy)), 0), ny - 2)
                ty = fy - iy
                for m in range(n_m):
                    ix = ixs[m]
                    c0 = (wx[m, 0] * values[g, ix - 1, iy] + wx[m, 1] * values[g, ix, iy]
                          + wx[m, 2] * values[g, ix + 1, iy] + wx[m, 3] * values[g, ix + 2, iy])
                    c1 = (wx[m, 0] * values[g, ix - 1, iy + 1]
                          + wx[m, 1] * values[g, ix, iy + 1]
                          + wx[m, 2] * values[g, ix + 1, iy + 1]
                          + wx[m, 3] * values[g, ix + 2, iy + 1])
                    loss[m * n_v + v, u] -= c0 + ty * (c1 - c0) - base
        for j in range(n_m * n_v):
            tot = 0.0
            for u in range(n_u):
                tot += loss[j, u]
                if loss[j, u] > worst_und[s, u]:
                    worst_und[s, u] = loss[j, u]
            if tot > worst_tot[s]:
                worst_tot[s] = tot
