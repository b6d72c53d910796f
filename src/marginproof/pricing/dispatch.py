"""Which Black-76 kernel prices a batch: numba, or the numpy twin for a one-shot small book.

By default every batch runs the compiled kernels (:mod:`marginproof.pricing._kernels`), whose
serial and parallel variants are bit-identical: the engine, the backtests and the scale-out
paths rely on that (one-by-one equals bulk, sharded equals single process, replay equals the
live run, bit for bit), and their batches differ in size.

A one-shot command on a small book (the CLI's ``margin``, ``compare``, ``whatif``) opts in,
inside :func:`small_batches`, to the numpy twin (:mod:`marginproof.pricing._numpy_kernels`)
for batches of at most ``SMALL_WORK`` evaluations. It agrees with the kernels to ~1e-15
relative, not bit for bit, and spares the process numba's import and cache load (0.7 s of a
0.5 s command, ``benchmarks/bench_cli.py``). Within the scope the choice depends only on the
batch size, so the same command on the same input always gives the same bits. Importing this
module loads neither numba nor scipy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from marginproof.pricing import _numpy_kernels
from marginproof.pricing._numpy_kernels import SMALL_WORK

# a scoped setting (like numpy.errstate), off unless a one-shot command turns it on
_SMALL_BATCHES: ContextVar[bool] = ContextVar("marginproof_small_batches", default=False)


@contextmanager
def small_batches() -> Iterator[None]:
    """Within this scope, batches of at most ``SMALL_WORK`` evaluations use the numpy twin."""
    token = _SMALL_BATCHES.set(True)
    try:
        yield
    finally:
        _SMALL_BATCHES.reset(token)


def _numpy(work: int) -> bool:
    return work <= SMALL_WORK and _SMALL_BATCHES.get()


def price_kernel(n: int) -> Any:
    """Price kernel ``(f, k, t, s, call, d, out)`` for ``n`` options."""
    if _numpy(n):
        return _numpy_kernels.price_into
    from marginproof.pricing import _kernels

    return _kernels.price_kernel(n)


def greeks_kernel(n: int) -> Any:
    """Greeks kernel ``(f, k, t, s, call, d, r, out)`` for ``n`` options."""
    if _numpy(n):
        return _numpy_kernels.greeks_into
    from marginproof.pricing import _kernels

    return _kernels.greeks_kernel(n)


def scenario_kernel(work: int) -> Any:
    """Scenario kernel ``(f, k, t, s, call, d, moves, vol_mult, vol_floor, out)`` for ``work``
    = n_options x n_scenarios evaluations."""
    if _numpy(work):
        return _numpy_kernels.scenario_into
    from marginproof.pricing import _kernels

    return _kernels.scenario_kernel(work)
