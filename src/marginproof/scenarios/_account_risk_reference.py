"""Plain twin of the account-risk kernel: dense loop, ``numpy.quantile`` and sorting per account.

Slow by design (this is the naive baseline of ``benchmarks/bench_risk.py``); tests compare the
compiled kernel against it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from marginproof.risk.measures import expected_shortfall

FloatArray = NDArray[np.float64]


def account_risk_reference(indptr: NDArray[np.int64], inst: NDArray[np.integer],
                           qty: FloatArray, instrument_pnl: NDArray[np.floating],
                           conf_var: float = 0.99, conf_es: float = 0.975
                           ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(worst, var, es)`` per account, shape (n_accounts,) each."""
    n_acc = indptr.shape[0] - 1
    pnl = np.asarray(instrument_pnl)
    worst = np.empty(n_acc)
    v = np.empty(n_acc)
    e = np.empty(n_acc)
    for a in range(n_acc):
        losses = np.zeros(pnl.shape[0])
        for p in range(int(indptr[a]), int(indptr[a + 1])):
            losses -= float(qty[p]) * pnl[:, int(inst[p])].astype(np.float64)
        worst[a] = losses.max()
        v[a] = np.quantile(losses, conf_var)
        e[a] = expected_shortfall(losses, conf_es)
    return worst, v, e
