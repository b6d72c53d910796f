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
def _cr(t: float) -> tuple[float, float, float, float]:
    """Catmull-Rom weights of the 4 nodes around fractional position ``t`` in [0, 1)."""
    t2 = t * t
    t3 = t2 * t
    return (0.5 * (-t3 + 2.0 * t2 - t), 0.5 * (3.0 * t3 - 5.0 * t2 + 2.0),
            0.5 * (-3.0 * t3 + 4.0 * t2 + t), 0.5 * (t3 - t2))


@njit(cache=True, inline="always")
def _lookup(v: np.ndarray, g: int, lx0: float, hx: float, ly0: float, hy: float,
            lx: float, ly: float) -> float:
    nx = v.shape[1]
    ny = v.shape[2]
    fx = (lx - lx0) / hx
    fy = (ly - ly0) / hy
    ix = int(math.floor(fx))
    iy = int(math.floor(fy))
    ix = min(max(ix, 1), nx - 3)
    iy = min(max(iy, 1), ny - 3)
    tx = fx - ix
    ty = fy - iy
    wx0, wx1, wx2, wx3 = _cr(tx)
    wy0, wy1, wy2, wy3 = _cr(ty)
    acc = 0.0
    for a in range(4):
        wa = wx0 if a == 0 else (wx1 if a == 1 else (wx2 if a == 2 else wx3))
        row = ix - 1 + a
        acc += wa * (wy0 * v[g, row, iy - 1] + wy1 * v[g, row, iy] + wy2 * v[g, row, iy + 1]
                     + wy3 * v[g, row, iy + 2])
    return acc


@njit(cache=True, parallel=True)
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
    """Plain numpy bicubic-convolution lookup of group ``g`` at arrays of coordinates."""
    v = lat.values[g]
    nx, ny = v.shape
    fx = (np.asarray(lx) - lat.lx0[g]) / lat.hx[g]
    fy = (np.asarray(ly) - lat.ly0[g]) / lat.hy[g]
    ix = np.clip(np.floor(fx).astype(np.int64), 1, nx - 3)
    iy = np.clip(np.floor(fy).astype(np.int64), 1, ny - 3)
    wx = _weights(fx - ix)
    wy = _weights(fy - iy)
    out = np.zeros(np.shape(fx))
    for a in range(4):
        for b in range(4):
            out += wx[..., a] * wy[..., b] * v[ix - 1 + a, iy - 1 + b]
    return out


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
