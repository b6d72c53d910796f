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
from numba.np.numpy_support import carray
from numpy.typing import NDArray

from marginproof.instruments.resolved import ResolvedBook
from marginproof.jit.ext import (
    block_axpy,
    block_min_first,
    block_scale,
    prefetch_block,
    stack_empty,
)
from marginproof.models.grid import GridModel
from marginproof.scenarios.revalue import scenario_pnl_usd

# Scenario block width: the kernel handles exactly this many columns as one vector value (4
# AVX-512 or 8 AVX2 registers for float32; see _numba_ext.block_axpy); tables are padded with
# zero columns to a multiple of it.
SCENARIO_BLOCK = 64
# How many positions ahead the kernel prefetches scenario rows (measured: 4-16 equally good).
PREFETCH_AHEAD = 8


def padded_width(n_scenarios: int) -> int:
    """Columns of a padded table: ``n_scenarios`` rounded up to :data:`SCENARIO_BLOCK`."""
    return max(1, -(-n_scenarios // SCENARIO_BLOCK)) * SCENARIO_BLOCK


def pad_scenarios(unit_pnl: NDArray[np.floating], out: NDArray[np.floating] | None = None
                  ) -> NDArray[np.floating]:
    """Copy of ``unit_pnl`` padded with zero columns to a multiple of :data:`SCENARIO_BLOCK`.

    Rows start on 64-byte cache lines (a 63-scenario float32 row would otherwise straddle five
    lines instead of four).

    Parameters
    ----------
    unit_pnl : ndarray, shape (n_instruments, n_scenarios)
    out : ndarray, shape (n_instruments, n_padded), optional
        A buffer from an earlier call (or another aligned buffer) to overwrite instead of
        allocating; used when its shape and dtype match, else a new array is returned.

    Returns
    -------
    ndarray, shape (n_instruments, n_padded), same dtype, zeros beyond column n_scenarios.
    """
    n_inst, n_scen = unit_pnl.shape
    width = padded_width(n_scen)
    dtype = unit_pnl.dtype
    if out is not None and out.shape == (n_inst, width) and out.dtype == dtype:
        out[:, :n_scen] = unit_pnl
        out[:, n_scen:] = 0
        return out
    nbytes = n_inst * width * dtype.itemsize
    buf = np.zeros(nbytes + 64, np.uint8)
    off = (-buf.ctypes.data) % 64
    fresh = buf[off:off + nbytes].view(dtype).reshape(n_inst, width)
    fresh[:, :n_scen] = unit_pnl
    return fresh


@njit(cache=True, fastmath=True, inline="always")
def _segment_worst(table: NDArray[np.floating], n_scen: int, p0: int, p1: int,
                   inst_idx: NDArray[np.int32], qty: NDArray[np.floating],
                   acc: NDArray[np.floating]) -> tuple[float, int]:
    """Worst scenario P&L of positions ``p0:p1`` and its first scenario (see the kernels).

    ``acc`` (SCENARIO_BLOCK,) is a scratch buffer.
    """
    n_blocks = table.shape[1] // SCENARIO_BLOCK
    worst = table[0, 0]
    arg = -1
    for b in range(n_blocks):
        o = b * SCENARIO_BLOCK
        # 64 scenarios as one vector value (4 or 8 registers): LLVM keeps the accumulator out
        # of memory, and the block minimum and its first scenario come from a vector
        # reduction and a compare mask (see _numba_ext)
        block_scale(acc, table, inst_idx[p0], o, qty[p0])
        for p in range(p0 + 1, p1):
            block_axpy(acc, table, inst_idx[p], o, qty[p])
        bw, bi = block_min_first(acc)
        if arg < 0 or bw < worst:
            worst = bw
            arg = o + bi
    if arg >= n_scen:
        # the minimum sits in zero padding (every real scenario gains): loss is 0;
        # name the least-gaining real scenario, as the plain twin does
        arg = 0
        best = table[inst_idx[p0], 0] * qty[p0]
        for p in range(p0 + 1, p1):
            best += table[inst_idx[p], 0] * qty[p]
        for j in range(1, n_scen):
            v = table[inst_idx[p0], j] * qty[p0]
            for p in range(p0 + 1, p1):
                v += table[inst_idx[p], j] * qty[p]
            if v < best:
                best = v
                arg = j
    return worst, arg


@njit(cache=True, parallel=True, fastmath=True, nogil=True)
def segment_worst_loss_padded(
    table: NDArray[np.floating], n_scen: int, seg_ptr: NDArray[np.int64],
    inst_idx: NDArray[np.int32], qty: NDArray[np.floating], min_weight: NDArray[np.floating],
    out_loss: NDArray[np.float64], out_arg: NDArray[np.int32], out_min: NDArray[np.float64],
) -> None:
    """Worst scenario loss and short-option minimum of every segment (padded table).

    One pass over the positions per block of :data:`SCENARIO_BLOCK` scenarios (one block for
    the 63-scenario grid); the 64 accumulators are one vector value in registers, the block
    minimum a vector reduction and its first scenario the lowest bit of a compare mask
    (``_numba_ext.block_axpy`` / ``block_min_first``: numba has no vector types, and scalar
    loops over a scratch array had left the accumulator and the reductions in memory, about
    twice the instructions). Scenario rows are prefetched :data:`PREFETCH_AHEAD` positions
    ahead. Results differ from the plain twin by rounding only; the per-segment summation
    order is fixed, so runs are reproducible bit for bit.

    Parameters
    ----------
    table : ndarray, shape (n_instruments, n_padded), float32 or float64
        :func:`pad_scenarios` of the P&L of one unit of each instrument in each scenario.
    n_scen : int
        Number of real scenarios (columns beyond are zero padding).
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
    n_pos = inst_idx.shape[0]
    n_chunks = min(n_seg, 256) if n_seg > 0 else 1
    step = (n_seg + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        # stack buffers (registers after unrolling) rather than heap arrays
        acc = carray(stack_empty(SCENARIO_BLOCK, table.dtype), (SCENARIO_BLOCK,))
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
            for p in range(p0, p1):
                prefetch_block(table, inst_idx[min(p + PREFETCH_AHEAD, n_pos - 1)])
            mw = min_weight[p0] * qty[p0]
            for p in range(p0 + 1, p1):
                mw += min_weight[p] * qty[p]
            worst, arg = _segment_worst(table, n_scen, p0, p1, inst_idx, qty, acc)
            out_loss[s] = max(0.0, -float(worst))
            out_arg[s] = arg
            out_min[s] = max(0.0, -float(mw))


@njit(cache=True, parallel=True, fastmath=True, nogil=True)
def account_grid_margin_padded(
    table: NDArray[np.floating], n_scen: int, seg_ptr: NDArray[np.int64],
    seg_account: NDArray[np.int64], inst_idx: NDArray[np.int32], qty: NDArray[np.floating],
    inst_min_weight: NDArray[np.floating], out_im: NDArray[np.float64],
    out_arg: NDArray[np.int32],
) -> None:
    """Grid IM of every account in one pass: :func:`segment_worst_loss_padded` fused with the
    per-account sum (no per-position weight gather, no bincount).

    Work is cut at account boundaries, so each account is summed by one thread, its segments
    in order: the result equals ``bincount(seg_account, max(loss, min))`` bit for bit.

    Parameters
    ----------
    table : ndarray, shape (n_instruments, n_padded)
    n_scen : int
    seg_ptr : int64 array, shape (n_segments + 1,)
    seg_account : int64 array, shape (n_segments,)
        Account of each segment, non-decreasing.
    inst_idx : int32 array, shape (n_positions,)
    qty : array, shape (n_positions,), table's dtype
    inst_min_weight : array, shape (n_instruments,), table's dtype
        ``rate * index`` for options, 0 otherwise.
    out_im : float64 array, shape (n_accounts,)
    out_arg : int32 array, shape (n_segments,)
        Binding scenario of each segment.
    """
    n_seg = seg_ptr.shape[0] - 1
    n_pos = inst_idx.shape[0]
    for a in prange(out_im.shape[0]):
        out_im[a] = 0.0
    n_chunks = min(n_seg, 256) if n_seg > 0 else 1
    step = (n_seg + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        acc = carray(stack_empty(SCENARIO_BLOCK, table.dtype), (SCENARIO_BLOCK,))
        lo = min(n_seg, c * step)
        hi = min(n_seg, lo + step)
        # move both ends to account boundaries: an account belongs to the chunk holding its
        # first segment
        while 0 < lo < n_seg and seg_account[lo] == seg_account[lo - 1]:
            lo += 1
        while 0 < hi < n_seg and seg_account[hi] == seg_account[hi - 1]:
            hi += 1
        for s in range(lo, hi):
            p0 = seg_ptr[s]
            p1 = seg_ptr[s + 1]
            if p1 == p0:
                out_arg[s] = 0
                continue
            for p in range(p0, p1):
                prefetch_block(table, inst_idx[min(p + PREFETCH_AHEAD, n_pos - 1)])
            mw = inst_min_weight[inst_idx[p0]] * qty[p0]
            for p in range(p0 + 1, p1):
                mw += inst_min_weight[inst_idx[p]] * qty[p]
            worst, arg = _segment_worst(table, n_scen, p0, p1, inst_idx, qty, acc)
            out_arg[s] = arg
            out_im[seg_account[s]] += max(max(0.0, -float(worst)), max(0.0, -float(mw)))


def segment_worst_loss(
    unit_pnl: NDArray[np.floating], seg_ptr: NDArray[np.int64], inst_idx: NDArray[np.int32],
    qty: NDArray[np.floating], min_weight: NDArray[np.floating],
    out_loss: NDArray[np.float64], out_arg: NDArray[np.int32], out_min: NDArray[np.float64],
    n_scenarios: int | None = None,
) -> None:
    """Worst scenario loss and short-option minimum of every segment.

    Runs :func:`segment_worst_loss_padded`, padding ``unit_pnl`` first unless it is already
    padded (then pass ``n_scenarios``, the number of real columns).

    Parameters
    ----------
    unit_pnl : ndarray, shape (n_instruments, n_scenarios) or (n_instruments, n_padded)
        P&L of one unit of each instrument in each scenario, float32 or float64.
    seg_ptr, inst_idx, qty, min_weight, out_loss, out_arg, out_min
        As in :func:`segment_worst_loss_padded`.
    n_scenarios : int, optional
        Real scenario count when ``unit_pnl`` comes from :func:`pad_scenarios`.
    """
    if n_scenarios is None:
        n_scenarios = unit_pnl.shape[1]
    if unit_pnl.shape[1] % SCENARIO_BLOCK or not unit_pnl.flags.c_contiguous:
        unit_pnl = pad_scenarios(unit_pnl[:, :n_scenarios])
    if not 0 < n_scenarios <= unit_pnl.shape[1]:
        raise ValueError(f"n_scenarios: {n_scenarios} outside 1..{unit_pnl.shape[1]}")
    segment_worst_loss_padded(unit_pnl, n_scenarios, seg_ptr, inst_idx,
                              qty.astype(unit_pnl.dtype, copy=False),
                              min_weight.astype(unit_pnl.dtype, copy=False),
                              out_loss, out_arg, out_min)


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
                        dtype: type[np.floating] = np.float64,
                        padded: bool = False) -> NDArray[np.floating]:
    """Quantity-free scenario P&L per instrument, shape (n_instruments, n_scenarios).

    ``instruments`` is a resolved book holding each instrument once with quantity 1. With
    ``padded`` the table comes laid out for the kernel (:func:`pad_scenarios`).
    """
    if not np.all(instruments.quantity == 1.0):
        raise ValueError("instrument book must hold quantity 1 of each instrument")
    moves, vol_mult, vol_floor = model.scenario_matrices(instruments)
    pnl = scenario_pnl_usd(instruments, moves, vol_mult, vol_floor)  # (n_scen, n_inst)
    if padded:
        return pad_scenarios(pnl.T.astype(dtype, copy=False))
    return np.ascontiguousarray(pnl.T, dtype=dtype)


def grid_margin_batch(model: GridModel, instruments: ResolvedBook, book: CsrBook,
                      unit_pnl: NDArray[np.floating] | None = None,
                      n_scenarios: int | None = None) -> BatchMargin:
    """Grid IM/MM of every account in ``book`` (no cross-underlying offset).

    Parameters
    ----------
    model : GridModel
    instruments : ResolvedBook
        Every instrument once, quantity 1; ``book.inst_idx`` indexes it.
    book : CsrBook
    unit_pnl : ndarray (n_instruments, n_scenarios), optional
        Precomputed :func:`instrument_unit_pnl` (float32 for speed, float64 for reference),
        plain or from :func:`pad_scenarios` (then give ``n_scenarios``).
    n_scenarios : int, optional
        Real scenario count of a padded ``unit_pnl``.
    """
    if model.params["grid"].get("cross_underlying_offset", False):
        raise ValueError("batch kernel implements the per-underlying (no offset) grid")
    up = instrument_unit_pnl(model, instruments) if unit_pnl is None else unit_pnl
    if n_scenarios is None:
        n_scenarios = up.shape[1]
    if up.shape[1] % SCENARIO_BLOCK or not up.flags.c_contiguous:
        up = pad_scenarios(up[:, :n_scenarios])
    rate = float(model.params.get("minimums", {}).get("short_option_rate", 0.0))
    w_inst = np.where(instruments.is_option, rate * instruments.index, 0.0).astype(up.dtype)
    arg = np.empty(len(book.seg_ptr) - 1, np.int32)
    im = np.empty(book.n_accounts)
    account_grid_margin_padded(up, n_scenarios, book.seg_ptr, book.seg_account, book.inst_idx,
                               book.qty.astype(up.dtype, copy=False), w_inst, im, arg)
    mm = np.asarray(float(model.params["maintenance"]["mm_fraction"]) * im, dtype=np.float64)
    return BatchMargin(im, mm, arg, model.name, model.params_hash)
