"""Batch grid margin for many accounts: one fused compiled pass over positions in CSR layout.

Layout: positions sorted by (account, underlying); ``seg_ptr`` (n_segments + 1,) delimits the
positions of one (account, underlying) *segment*, ``seg_account`` (n_segments,) names its
account. Per instrument the grid model's unit scenario P&L ``unit_pnl`` (n_instruments,
n_scenarios) is computed once (quantity-free); an account's scenario P&L is then the sparse
product ``sum_i q_i * unit_pnl[inst_i]`` and its requirement the worst loss per segment, floored
by the short-option minimum, summed over the account's segments (no cross-underlying offset).

The compiled kernel :func:`segment_worst_loss` has a plain-Python twin
:func:`segment_worst_loss_reference`; tests assert they agree (float64 exactly up to summation
order, float32 to 1e-5 relative).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from marginproof.instruments.resolved import ResolvedBook
from marginproof.models.grid import GridModel
from marginproof.scenarios.revalue import scenario_pnl_usd


@njit(cache=True, parallel=True, fastmath=True)
def segment_worst_loss(
    unit_pnl: NDArray[np.floating], seg_ptr: NDArray[np.int64], inst_idx: NDArray[np.int32],
    qty: NDArray[np.floating], min_weight: NDArray[np.floating],
    out_loss: NDArray[np.float64], out_arg: NDArray[np.int32], out_min: NDArray[np.float64],
) -> None:
    """Worst scenario loss and short-option minimum of every segment.

    One pass over the positions; the scenario accumulator stays in registers/L1. ``fastmath``
    lets LLVM vectorise the min-reduction and contract multiply-adds (results differ from the
    plain twin by rounding only; the per-segment summation order is fixed, so runs are
    reproducible bit for bit).

    Parameters
    ----------
    unit_pnl : ndarray, shape (n_instruments, n_scenarios), float32 or float64
        P&L of one unit of each instrument in each scenario.
    seg_ptr : int64 array, shape (n_segments + 1,)
    inst_idx : int32 array, shape (n_positions,)
    qty : array, shape (n_positions,)
    min_weight : array, shape (n_positions,)
        ``rate * index`` for options, 0 otherwise: segment minimum = max(0, -sum(w q)).
    out_loss, out_min : float64 arrays, shape (n_segments,)
        Worst loss (positive, 0 if no scenario loses) and minimum.
    out_arg : int32 array, shape (n_segments,)
        Index of the binding scenario (first one reaching the worst value).
    """
    n_seg = seg_ptr.shape[0] - 1
    n_scen = unit_pnl.shape[1]
    n_chunks = min(n_seg, 256) if n_seg > 0 else 1
    step = (n_seg + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        acc = np.empty(n_scen, dtype=unit_pnl.dtype)
        lo = c * step
        hi = min(n_seg, lo + step)
        for s in range(lo, hi):
            p0 = seg_ptr[s]
            p1 = seg_ptr[s + 1]
            if p1 == p0:
                out_loss[s] = 0.0
                out_arg[s] = 0
                out_min[s] = 0.0
                continue
            q = qty[p0]
            row = unit_pnl[inst_idx[p0]]
            for j in range(n_scen):
                acc[j] = q * row[j]
            mw = min_weight[p0] * q
            for p in range(p0 + 1, p1):
                q = qty[p]
                row = unit_pnl[inst_idx[p]]
                for j in range(n_scen):
                    acc[j] += q * row[j]
                mw += min_weight[p] * q
            worst = acc[0]
            for j in range(1, n_scen):
                worst = min(worst, acc[j])
            arg = 0
            for j in range(n_scen):
                if acc[j] == worst:
                    arg = j
                    break
            out_loss[s] = max(0.0, -float(worst))
            out_arg[s] = arg
            out_min[s] = max(0.0, -float(mw))


def segment_worst_loss_reference(
    unit_pnl: NDArray[np.floating], seg_ptr: NDArray[np.int64], inst_idx: NDArray[np.int32],
    qty: NDArray[np.floating], min_weight: NDArray[np.floating],
) -> tuple[NDArray[np.float64], NDArray[np.int32], NDArray[np.float64]]:
    """Plain-Python twin of :func:`segment_worst_loss` (one segment at a time)."""
    n_seg = len(seg_ptr) - 1
    loss = np.zeros(n_seg)
    arg = np.zeros(n_seg, np.int32)
    mins = np.zeros(n_seg)
    for s in range(n_seg):
        sl = slice(int(seg_ptr[s]), int(seg_ptr[s + 1]))
        total = (qty[sl, None].astype(np.float64) * unit_pnl[inst_idx[sl]]).sum(axis=0)
        arg[s] = int(np.argmin(total))
        loss[s] = max(0.0, -float(total[arg[s]]))
        mins[s] = max(0.0, -float((min_weight[sl] * qty[sl]).sum()))
    return loss, arg, mins


@dataclass(frozen=True)
class CsrBook:
    """Positions of many accounts, sorted by (account, underlying).

    Attributes
    ----------
    seg_ptr : int64 (n_segments + 1,)
    seg_account : int64 (n_segments,)
    inst_idx : int32 (n_positions,)
    qty : float (n_positions,)
    n_accounts : int
    """

    seg_ptr: NDArray[np.int64]
    seg_account: NDArray[np.int64]
    inst_idx: NDArray[np.int32]
    qty: NDArray[np.floating]
    n_accounts: int

    @classmethod
    def from_positions(cls, account: NDArray[np.int64], inst_idx: NDArray[np.int32],
                       qty: NDArray[np.floating], inst_underlying: NDArray[np.int64],
                       n_accounts: int) -> CsrBook:
        """Build from unsorted (account, instrument, quantity) triples, shape (n_positions,)."""
        und = inst_underlying[inst_idx]
        order = np.lexsort((und, account))
        a, u = account[order], und[order]
        new = np.ones(len(a), bool)
        new[1:] = (a[1:] != a[:-1]) | (u[1:] != u[:-1])
        starts = np.flatnonzero(new)
        seg_ptr = np.append(starts, len(a)).astype(np.int64)
        return cls(seg_ptr, a[starts].astype(np.int64), inst_idx[order].astype(np.int32),
                   qty[order], n_accounts)


@dataclass(frozen=True)
class BatchMargin:
    """Per-account IM and MM (USD), shape (n_accounts,), plus per-segment binding scenarios."""

    initial_margin: NDArray[np.float64]
    maintenance_margin: NDArray[np.float64]
    segment_worst_scenario: NDArray[np.int32]
    model: str
    params_hash: str


def instrument_unit_pnl(model: GridModel, instruments: ResolvedBook,
                        dtype: type[np.floating] = np.float64) -> NDArray[np.floating]:
    """Quantity-free scenario P&L per instrument, shape (n_instruments, n_scenarios).

    ``instruments`` is a resolved book holding each instrument once with quantity 1.
    """
    if not np.all(instruments.quantity == 1.0):
        raise ValueError("instrument book must hold quantity 1 of each instrument")
    moves, vol_mult, vol_floor = model.scenario_matrices(instruments)
    pnl = scenario_pnl_usd(instruments, moves, vol_mult, vol_floor)  # (n_scen, n_inst)
    return np.ascontiguousarray(pnl.T, dtype=dtype)


def grid_margin_batch(model: GridModel, instruments: ResolvedBook, book: CsrBook,
                      unit_pnl: NDArray[np.floating] | None = None) -> BatchMargin:
    """Grid IM/MM of every account in ``book`` (no cross-underlying offset).

    Parameters
    ----------
    model : GridModel
    instruments : ResolvedBook
        Every instrument once, quantity 1; ``book.inst_idx`` indexes it.
    book : CsrBook
    unit_pnl : ndarray (n_instruments, n_scenarios), optional
        Precomputed :func:`instrument_unit_pnl` (float32 for speed, float64 for reference).
    """
    if model.params["grid"].get("cross_underlying_offset", False):
        raise ValueError("batch kernel implements the per-underlying (no offset) grid")
    up = instrument_unit_pnl(model, instruments) if unit_pnl is None else unit_pnl
    rate = float(model.params.get("minimums", {}).get("short_option_rate", 0.0))
    w_inst = np.where(instruments.is_option, rate * instruments.index, 0.0)
    min_weight = w_inst[book.inst_idx].astype(up.dtype)
    n_seg = len(book.seg_ptr) - 1
    loss = np.empty(n_seg)
    arg = np.empty(n_seg, np.int32)
    mins = np.empty(n_seg)
    segment_worst_loss(up, book.seg_ptr, book.inst_idx, book.qty.astype(up.dtype, copy=False),
                       min_weight, loss, arg, mins)
    req = np.maximum(loss, mins)
    im = np.bincount(book.seg_account, weights=req, minlength=book.n_accounts).astype(np.float64)
    mm = np.asarray(float(model.params["maintenance"]["mm_fraction"]) * im, dtype=np.float64)
    return BatchMargin(im, mm, arg, model.name, model.params_hash)
