"""Tail measures of many accounts at once: worst loss, VaR and ES per account.

Input is a CSR book (``indptr`` over accounts, instrument index, quantity per holding) and the
per-instrument scenario P&L per unit, shape ``(n_scenarios, n_instruments)`` (float32 storage is
fine: the kernel accumulates in float64). Each account's loss vector is the sparse product
``-P[:, inst] @ qty``; the measures use selection of the few largest losses (an insertion
top-k in a compiled kernel), never a per-account sort or ``numpy.quantile`` loop. Conventions
are those of :mod:`marginproof.risk.measures`: VaR = ``numpy.quantile`` (linear),
ES = Acerbi-Tasche.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from marginproof.errors import InputError
from marginproof.risk.measures import tail_count
from marginproof.scenarios._account_kernels import account_tail_kernel, numpy_linear_ranks

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class AccountRisk:
    """Per-account measures, shape (n_accounts,) each (losses positive)."""

    worst_loss: FloatArray
    var: FloatArray
    es: FloatArray


def account_risk(indptr: ArrayLike, instrument: ArrayLike, quantity: ArrayLike,
                 instrument_pnl: ArrayLike, conf_var: float = 0.99, conf_es: float = 0.975,
                 n_chunks: int | None = None) -> AccountRisk:
    """Worst loss, VaR at ``conf_var`` and ES at ``conf_es`` of every account.

    Parameters
    ----------
    indptr : array_like of int, shape (n_accounts + 1,)
    instrument : array_like of int, shape (nnz,)
    quantity : array_like of float, shape (nnz,)
    instrument_pnl : array_like (float32 or float64), shape (n_scenarios, n_instruments)
        P&L per unit of each instrument in each scenario (gains positive).
    n_chunks : int, optional
        Parallel work units (default 64 per thread).

    Returns
    -------
    AccountRisk
    """
    ip = np.ascontiguousarray(indptr, dtype=np.int64)
    ins = np.asarray(instrument)
    if not np.issubdtype(ins.dtype, np.integer):
        raise InputError("instrument", "must be integer indices")
    ins = np.ascontiguousarray(ins, dtype=np.int64)  # one compiled signature per P&L dtype
    q = np.ascontiguousarray(quantity, dtype=np.float64)
    pnl = np.asarray(instrument_pnl)
    if pnl.dtype not in (np.float32, np.float64) or pnl.ndim != 2:
        raise InputError("instrument_pnl", "must be a 2-D float32/float64 array")
    n_scen, n_inst = pnl.shape
    n_acc = ip.shape[0] - 1
    if n_acc < 0 or ip[0] != 0 or np.any(np.diff(ip) < 0) or ip[-1] != ins.shape[0]:
        raise InputError("indptr", "must start at 0, be non-decreasing and end at nnz")
    if q.shape != ins.shape:
        raise InputError("quantity", "must have one entry per holding")
    if ins.size and (ins.min() < 0 or ins.max() >= n_inst):
        raise InputError("instrument", f"indices must be in [0, {n_inst})")
    if n_scen == 0:
        raise InputError("instrument_pnl", "no scenarios")
    if not np.all(np.isfinite(q)):
        raise InputError("quantity", "contains NaN or infinite values")
    lo_r, hi_r, gamma = numpy_linear_ranks(n_scen, conf_var)
    k = tail_count(n_scen, conf_es)
    if k <= 0.0:
        raise InputError("conf_es", "no tail")
    m = math.floor(k)
    frac = k - m
    k_top = min(n_scen, max(lo_r, hi_r, m if frac == 0.0 else m + 1) + 1)
    k_top = max(k_top, 1)
    pnl_t = np.ascontiguousarray(pnl.T)
    if n_chunks is None:
        n_chunks = 64 * max(1, (os.cpu_count() or 1))
    n_chunks = max(1, min(int(n_chunks), max(n_acc, 1)))
    worst = np.empty(n_acc)
    v = np.empty(n_acc)
    e = np.empty(n_acc)
    if n_acc:
        account_tail_kernel(ip, ins, q, pnl_t, int(k_top), int(lo_r), int(hi_r), float(gamma),
                            int(m), float(frac), float(k), n_chunks, worst, v, e)
    return AccountRisk(worst, v, e)
