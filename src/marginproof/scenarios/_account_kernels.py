"""Compiled per-account tail measures over a CSR book (numba, parallel, cached).

The plain-NumPy twin is :mod:`marginproof.scenarios._account_risk_reference`; tests assert
they agree (the kernel needs numba: it uses stack buffers from :mod:`marginproof.jit.ext`).
"""

from __future__ import annotations

import math

import numpy as np
from numba.np.numpy_support import carray

from marginproof.jit.ext import stack_empty
from marginproof.pricing._kernels import njit, prange


@njit(cache=True, fastmath=False)
def _insert_top(top: np.ndarray, k: int, v: float) -> None:
    """Insert ``v`` into ``top[:k]`` (descending) if it beats the smallest kept value."""
    if v <= top[k - 1]:
        return
    j = k - 1
    while j > 0 and top[j - 1] < v:
        top[j] = top[j - 1]
        j -= 1
    top[j] = v

# residue classes of the fast tail path (compile-time constant) and the largest k it serves
NB = 64
NB_FAST_MAX_K = 40


@njit(cache=True, fastmath=True, inline="always")
def _class_max(buf: np.ndarray, cls: np.ndarray) -> None:
    """``cls[j] = max(buf[j::NB])`` for j < NB (needs len(buf) >= NB); vectorised."""
    n = buf.shape[0]
    for j in range(NB):
        cls[j] = buf[j]
    n_full = n // NB
    for i in range(1, n_full):
        base = i * NB
        for j in range(NB):
            x = buf[base + j]
            y = cls[j]
            cls[j] = x if x > y else y
    base = n_full * NB
    for j in range(n - base):
        x = buf[base + j]
        y = cls[j]
        cls[j] = x if x > y else y


@njit(cache=True, fastmath=False, inline="always")
def _class_bound(cls: np.ndarray, k: int) -> float:
    """A value with at least ``k`` (and, if bisection allows, at most k + 8) of ``cls`` >= it."""
    lo = cls[0]
    hi = cls[0]
    for j in range(NB):
        y = cls[j]
        lo = y if y < lo else lo
        hi = y if y > hi else hi
    for _ in range(12):
        mid = 0.5 * (lo + hi)
        cnt = 0
        for j in range(NB):
            cnt += cls[j] >= mid
        if cnt >= k:
            lo = mid
            if cnt <= k + 8:
                break
        else:
            hi = mid
    return float(lo)


@njit(cache=True, parallel=True, fastmath=False)
def account_tail_kernel(
    indptr: np.ndarray, inst: np.ndarray, qty: np.ndarray, pnl_t: np.ndarray,
    k_top: int, var_lo_rank: int, var_hi_rank: int, var_gamma: float,
    es_m: int, es_frac: float, es_k: float, n_chunks: int,
    worst: np.ndarray, var_out: np.ndarray, es_out: np.ndarray,
) -> None:
    """Worst loss, VaR (numpy linear) and ES (Acerbi-Tasche) of every account.

    Parameters
    ----------
    indptr : int64 array, shape (n_accounts + 1,)
        CSR row pointers over accounts.
    inst : int32/int64 array, shape (nnz,)
        Instrument index of each holding.
    qty : float64 array, shape (nnz,)
        Quantity of each holding.
    pnl_t : float32 or float64 array, shape (n_instruments, n_scenarios)
        Per-instrument scenario P&L per unit, instrument-major (transposed).
    k_top : int
        Number of largest losses kept (>= every rank used below).
    var_lo_rank, var_hi_rank : int
        Descending ranks of numpy's ``floor`` and ``floor + 1`` order statistics.
    var_gamma : float
        numpy's interpolation weight.
    es_m, es_frac, es_k : int, float, float
        ``floor(k)``, ``k - floor(k)`` and ``k`` of the ES.
    n_chunks : int
        Parallel chunks (each allocates one loss buffer).
    worst, var_out, es_out : float64 arrays, shape (n_accounts,)
    """
    n_acc = indptr.shape[0] - 1
    n_scen = pnl_t.shape[1]
    # fast path: NB residue classes with a compile-time count (stack buffer, vector loops)
    fast = k_top <= NB_FAST_MAX_K and n_scen >= 2 * NB
    n_blocks = 64 if k_top < 64 and n_scen >= 128 else min(2 * k_top, n_scen // 2)
    chunk = (n_acc + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        buf = np.empty(n_scen, dtype=np.float64)
        top = np.empty(k_top, dtype=np.float64)
        bmax = np.empty(k_top, dtype=np.float64)
        gmax = np.empty(max(n_blocks, 1), dtype=np.float64)
        cls = carray(stack_empty(NB, np.float64), (NB,))
        a0 = c * chunk
        a1 = min(n_acc, a0 + chunk)
        for a in range(a0, a1):
            p0 = indptr[a]
            p1 = indptr[a + 1]
            if p1 == p0:
                for s in range(n_scen):
                    buf[s] = 0.0
            else:
                q = qty[p0]
                row = pnl_t[inst[p0]]
                for s in range(n_scen):
                    buf[s] = -(q * np.float64(row[s]))
                for p in range(p0 + 1, p1):
                    q = qty[p]
                    row = pnl_t[inst[p]]
                    for s in range(n_scen):
                        buf[s] -= q * np.float64(row[s])
            for j in range(k_top):
                top[j] = -np.inf
            if fast:
                # Class j = scenarios j, j + NB, ...; its maximum is a distinct loss, so any
                # value with >= k_top class maxima at or above it bounds the k_top-th largest
                # loss from below, and only those classes can hold a top-k loss. Bisect on
                # the maxima for such a bound with k_top..k_top + 8 classes above it (a few
                # per cent of the scenarios are then scanned).
                _class_max(buf, cls)
                thr = _class_bound(cls, k_top)
                for j in range(NB):
                    if cls[j] >= thr:
                        for s in range(j, n_scen, NB):
                            x = buf[s]
                            if x >= thr:
                                _insert_top(top, k_top, x)
            else:
                # Lower bound of the k_top-th largest loss: the k_top-th largest of n_blocks
                # block maxima (distinct elements, so it cannot exceed the true order
                # statistic). Only losses >= it can enter the top-k.
                thr = -np.inf
                if n_blocks > k_top:
                    # groups are the residues mod n_blocks: an element-wise running max over
                    # contiguous stripes, which vectorises
                    for j in range(n_blocks):
                        gmax[j] = buf[j]
                    n_full = n_scen // n_blocks
                    for i in range(1, n_full):
                        base = i * n_blocks
                        for j in range(n_blocks):
                            x = buf[base + j]
                            gmax[j] = x if x > gmax[j] else gmax[j]
                    base = n_full * n_blocks
                    for j in range(n_scen - base):
                        x = buf[base + j]
                        gmax[j] = x if x > gmax[j] else gmax[j]
                    for j in range(k_top):
                        bmax[j] = -np.inf
                    for j in range(n_blocks):
                        _insert_top(bmax, k_top, gmax[j])
                    thr = bmax[k_top - 1]
                for s in range(n_scen):
                    x = buf[s]
                    if x >= thr:
                        _insert_top(top, k_top, x)
            worst[a] = top[0]
            lo = top[var_lo_rank]
            hi = top[var_hi_rank]
            diff = hi - lo
            if var_gamma >= 0.5:
                var_out[a] = hi - diff * (1.0 - var_gamma)
            else:
                var_out[a] = lo + diff * var_gamma
            tot = 0.0
            for j in range(es_m):
                tot += top[j]
            if es_frac > 0.0:
                tot += es_frac * top[es_m]
            es_out[a] = tot / es_k
    return


def numpy_linear_ranks(n: int, conf: float) -> tuple[int, int, float]:
    """Descending ranks (0 = largest) and weight of ``numpy.quantile(x, conf)`` (linear)."""
    virtual = (n - 1) * conf
    prev = int(math.floor(virtual))
    prev = min(max(prev, 0), n - 1)
    nxt = min(prev + 1, n - 1)
    gamma = virtual - math.floor(virtual)
    return n - 1 - prev, n - 1 - nxt, gamma
