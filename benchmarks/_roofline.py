"""Machine roofline probes measured in the same run as a benchmark.

* memory bandwidth: a STREAM-like triad ``a = b + s * c`` in a parallel numba loop over arrays
  far larger than the caches (bytes counted: 3 x 8 per element; write-allocate not counted, as
  in STREAM), best of several runs;
* FLOP rate: a float64 matrix multiply through numpy's BLAS (2 n^3 flops).
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def _triad(a: np.ndarray, b: np.ndarray, c: np.ndarray, s: float) -> None:
    for i in prange(a.shape[0]):
        a[i] = b[i] + s * c[i]


def memory_bandwidth_gbs(n: int = 1 << 25, repeats: int = 6) -> float:
    """Sustained triad bandwidth in GB/s (1e9 bytes)."""
    a = np.zeros(n)
    b = np.ones(n)
    c = np.full(n, 2.0)
    _triad(a, b, c, 3.0)
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        _triad(a, b, c, 3.0)
        best = min(best, time.perf_counter() - t)
    return 3 * 8 * n / best / 1e9


def flop_rate_gflops(n: int = 1500, repeats: int = 3) -> float:
    """float64 GEMM rate in GFLOP/s."""
    rng = np.random.default_rng(0)
    x = rng.random((n, n))
    y = rng.random((n, n))
    x @ y
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        x @ y
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def best_time(fn: object, repeats: int = 5) -> float:
    """Best wall time of ``fn()`` over ``repeats`` runs (after one warm-up)."""
    f = fn  # type: ignore[assignment]
    f()  # type: ignore[operator]
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        f()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t)
    return float(best)


def write_json(res: dict[str, object], path: str | None) -> None:
    """Write a benchmark's result dict to ``path`` (for ``run_all.py``), if given."""
    if path:
        import json

        with open(path, "w") as fh:
            json.dump(res, fh, indent=2, default=float)
