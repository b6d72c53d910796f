"""Per-account tail measures over several scenario segments in one pass (the live engine's kernel).

The engine's scenario models read, per account, one loss vector over the concatenation of
their scenario sets (``dynamic``: core | stressed periods | 10-year floor | historical stress |
hypothetical stress) and need per *segment* the worst loss, VaR (``numpy.quantile``, linear)
and ES (Acerbi-Tasche). :func:`segment_tail` gathers each position's unit-P&L row once
(instrument-major table, shape (n_instruments, n_columns)), accumulates the account's loss
vector on the stack of its chunk, then selects the top ``k`` losses of each segment (residue
classes and a bisection bound on long segments, as :mod:`._account_kernels`; plain insertion on
short ones). :func:`segment_tail_reference` is the plain-NumPy twin the tests compare with.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError
from marginproof.pricing._kernels import njit, prange
from marginproof.risk.measures import expected_shortfall, tail_count, var
from marginproof.scenarios._account_kernels import (
    NB,
    NB_FAST_MAX_K,
    _class_bound,
    _class_max,
    _insert_top,
    numpy_linear_ranks,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class SegmentSpec:
    """Column ranges and measure constants of each segment (arrays of shape (n_seg,))."""

    lo: IntArray
    hi: IntArray
    k_top: IntArray
    var_lo: IntArray
    var_hi: IntArray
    var_gamma: FloatArray
    es_m: IntArray
    es_frac: FloatArray
    es_k: FloatArray

    @classmethod
    def of(cls, sizes: Sequence[int], conf_var: float, conf_es: float) -> SegmentSpec:
        """Segments of the given sizes, laid out contiguously, with one VaR/ES convention."""
        n_seg = len(sizes)
        lo = np.zeros(n_seg, np.int64)
        hi = np.zeros(n_seg, np.int64)
        arrs = {k: np.zeros(n_seg, np.int64) for k in ("k_top", "var_lo", "var_hi", "es_m")}
        fl = {k: np.zeros(n_seg) for k in ("var_gamma", "es_frac", "es_k")}
        pos = 0
        for s, n in enumerate(sizes):
            lo[s], hi[s] = pos, pos + int(n)
            pos += int(n)
            if n == 0:
                arrs["k_top"][s] = 1
                fl["es_k"][s] = 1.0
                continue
            r_lo, r_hi, gamma = numpy_linear_ranks(int(n), conf_var)
            k = tail_count(int(n), conf_es)
            m = math.floor(k)
            frac = k - m
            k_top = min(int(n), max(r_lo, r_hi, m if frac == 0.0 else m + 1) + 1)
            arrs["k_top"][s] = max(k_top, 1)
            arrs["var_lo"][s], arrs["var_hi"][s] = r_lo, r_hi
            arrs["es_m"][s] = m
            fl["var_gamma"][s], fl["es_frac"][s], fl["es_k"][s] = gamma, frac, k
        return cls(lo, hi, arrs["k_top"], arrs["var_lo"], arrs["var_hi"], fl["var_gamma"],
                   arrs["es_m"], fl["es_frac"], fl["es_k"])

    @property
    def n_columns(self) -> int:
        return int(self.hi[-1]) if self.hi.size else 0


@dataclass(frozen=True)
class SegmentTail:
    """Per (row, segment) measures, arrays of shape (n_rows, n_seg); losses positive.

    ``worst_index`` is the scenario (within its segment) of the worst loss; empty segments
    give 0 everywhere.
    """

    worst: FloatArray
    worst_index: IntArray
    var: FloatArray
    es: FloatArray


@njit(cache=True, parallel=True, fastmath=False)
def _segment_kernel(indptr: np.ndarray, inst: np.ndarray, qty: np.ndarray, table: np.ndarray,
                    lo: np.ndarray, hi: np.ndarray, k_top: np.ndarray, var_lo: np.ndarray,
                    var_hi: np.ndarray, var_gamma: np.ndarray, es_m: np.ndarray,
                    es_frac: np.ndarray, es_k: np.ndarray, n_chunks: int, worst: np.ndarray,
                    worst_idx: np.ndarray, var_out: np.ndarray, es_out: np.ndarray) -> None:
    n_rows = indptr.shape[0] - 1
    n_cols = table.shape[1]
    n_seg = lo.shape[0]
    kmax = 1
    for s in range(n_seg):
        kmax = max(kmax, k_top[s])
    chunk = (n_rows + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        buf = np.empty(n_cols, dtype=np.float64)
        top = np.empty(kmax, dtype=np.float64)
        cls = np.empty(NB, dtype=np.float64)
        a0 = c * chunk
        a1 = min(n_rows, a0 + chunk)
        for a in range(a0, a1):
            p0 = indptr[a]
            p1 = indptr[a + 1]
            if p1 == p0:
                for s in range(n_cols):
                    buf[s] = 0.0
            else:
                q = qty[p0]
                row = table[inst[p0]]
                for s in range(n_cols):
                    buf[s] = -(q * row[s])
                for p in range(p0 + 1, p1):
                    q = qty[p]
                    row = table[inst[p]]
                    for s in range(n_cols):
                        buf[s] -= q * row[s]
            for g in range(n_seg):
                s0 = lo[g]
                s1 = hi[g]
                n = s1 - s0
                if n == 0:
                    worst[a, g] = 0.0
                    worst_idx[a, g] = 0
                    var_out[a, g] = 0.0
                    es_out[a, g] = 0.0
                    continue
                k = k_top[g]
                for j in range(k):
                    top[j] = -np.inf
                seg = buf[s0:s1]
                best = -np.inf
                best_i = 0
                if k <= NB_FAST_MAX_K and n >= 2 * NB:
                    _class_max(seg, cls)
                    thr = _class_bound(cls, k)
                    for j in range(NB):
                        if cls[j] > best:
                            best = cls[j]
                            best_i = j
                    for s in range(best_i, n, NB):
                        if seg[s] == best:
                            best_i = s
                            break
                    for j in range(NB):
                        if cls[j] >= thr:
                            for s in range(j, n, NB):
                                x = seg[s]
                                if x >= thr:
                                    _insert_top(top, k, x)
                else:
                    for s in range(n):
                        x = seg[s]
                        if x > best:
                            best = x
                            best_i = s
                        _insert_top(top, k, x)
                worst[a, g] = top[0]
                worst_idx[a, g] = best_i
                lo_v = top[var_lo[g]]
                hi_v = top[var_hi[g]]
                diff = hi_v - lo_v
                if var_gamma[g] >= 0.5:
                    var_out[a, g] = hi_v - diff * (1.0 - var_gamma[g])
                else:
                    var_out[a, g] = lo_v + diff * var_gamma[g]
                tot = 0.0
                for j in range(es_m[g]):
                    tot += top[j]
                if es_frac[g] > 0.0:
                    tot += es_frac[g] * top[es_m[g]]
                es_out[a, g] = tot / es_k[g]


def _check(indptr: object, inst: object, qty: object, table: object
           ) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    ip = np.ascontiguousarray(indptr, dtype=np.int64)
    ins = np.ascontiguousarray(inst, dtype=np.int64)
    q = np.ascontiguousarray(qty, dtype=np.float64)
    t = np.ascontiguousarray(table, dtype=np.float64)
    if t.ndim != 2:
        raise InputError("table", "must be 2-D (n_instruments, n_columns)")
    if ip.shape[0] < 1 or ip[0] != 0 or ip[-1] != ins.shape[0] or np.any(np.diff(ip) < 0):
        raise InputError("indptr", "must start at 0, be non-decreasing and end at nnz")
    if q.shape != ins.shape:
        raise InputError("quantity", "must have one entry per holding")
    if ins.size and (ins.min() < 0 or ins.max() >= t.shape[0]):
        raise InputError("instrument", f"indices must be in [0, {t.shape[0]})")
    return ip, ins, q, t


def segment_tail(indptr: object, inst: object, qty: object, table: object, spec: SegmentSpec,
                 n_chunks: int | None = None) -> SegmentTail:
    """Measures of every CSR row (account or account group) in every segment.

    Parameters
    ----------
    indptr : array_like of int, shape (n_rows + 1,)
    inst : array_like of int, shape (nnz,)
        Row of ``table`` of each holding.
    qty : array_like of float, shape (nnz,)
    table : array_like of float64, shape (n_instruments, spec.n_columns)
        Unit P&L (gains positive) of each instrument in each scenario column.
    spec : SegmentSpec
    """
    ip, ins, q, t = _check(indptr, inst, qty, table)
    if t.shape[1] != spec.n_columns:
        raise InputError("table", f"has {t.shape[1]} columns, segments need {spec.n_columns}")
    n_rows = ip.shape[0] - 1
    n_seg = spec.lo.shape[0]
    out = SegmentTail(np.zeros((n_rows, n_seg)), np.zeros((n_rows, n_seg), np.int64),
                      np.zeros((n_rows, n_seg)), np.zeros((n_rows, n_seg)))
    if n_rows == 0 or n_seg == 0:
        return out
    if n_chunks is None:
        n_chunks = 16 * max(1, (os.cpu_count() or 1))
    n_chunks = max(1, min(int(n_chunks), n_rows))
    _segment_kernel(ip, ins, q, t, spec.lo, spec.hi, spec.k_top, spec.var_lo, spec.var_hi,
                    spec.var_gamma, spec.es_m, spec.es_frac, spec.es_k, n_chunks, out.worst,
                    out.worst_index, out.var, out.es)
    return out


def segment_tail_reference(indptr: object, inst: object, qty: object, table: object,
                           sizes: Sequence[int], conf_var: float, conf_es: float) -> SegmentTail:
    """Plain-NumPy twin of :func:`segment_tail` (``numpy.quantile`` and a full sort)."""
    ip, ins, q, t = _check(indptr, inst, qty, table)
    n_rows = ip.shape[0] - 1
    bounds = np.concatenate([[0], np.cumsum(np.asarray(sizes, np.int64))])
    n_seg = len(sizes)
    w = np.zeros((n_rows, n_seg))
    wi = np.zeros((n_rows, n_seg), np.int64)
    v = np.zeros((n_rows, n_seg))
    e = np.zeros((n_rows, n_seg))
    for a in range(n_rows):
        losses = np.zeros(t.shape[1])
        for p in range(ip[a], ip[a + 1]):
            losses -= q[p] * t[ins[p]]
        for g in range(n_seg):
            seg = losses[bounds[g]:bounds[g + 1]]
            if seg.size == 0:
                continue
            wi[a, g] = int(np.argmax(seg))
            w[a, g] = float(seg[wi[a, g]])
            v[a, g] = float(var(seg, conf_var))
            e[a, g] = float(expected_shortfall(seg, conf_es))
    return SegmentTail(w, wi, v, e)
