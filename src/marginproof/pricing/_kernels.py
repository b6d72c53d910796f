"""Compiled Black-76 kernels (numba, parallel, cached).

The plain-Python twin is :mod:`marginproof.pricing._black76_reference`; tests assert they agree.
Set ``MARGINPROOF_DISABLE_NUMBA=1`` to run these kernels as plain Python (slow, for debugging).
"""

from __future__ import annotations

import math
import os
import types
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

F = TypeVar("F", bound=Callable[..., Any])

if os.environ.get("MARGINPROOF_DISABLE_NUMBA") == "1":  # pragma: no cover - debugging aid

    def njit(*args: Any, **kwargs: Any) -> Callable[[F], F]:
        def wrap(fn: F) -> F:
            return fn

        return wrap

    prange = range
else:
    from numba import njit, prange

# Only "arcp" (division by multiplication with the reciprocal): it halves the kernel time
# (divisions dominate once log/erfc/exp are counted) at <= 4e-12 relative change; NaN/inf
# semantics and the order of operations are kept, so results stay reproducible.
_FASTMATH = {"arcp"}
SQRT2 = math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# sigma*sqrt(T) at or beyond this: the call is worth D*F (Derive's edge rule, exchange-presets)
MAX_TOTAL_VOL = 24.0
# below this total vol the option is priced at intrinsic (greeks would be 0 * inf)
MIN_TOTAL_VOL = 1e-12


@njit(cache=True, fastmath=_FASTMATH, inline="always")
def _ncdf(x: float) -> float:
    return 0.5 * math.erfc(-x / SQRT2)


@njit(cache=True, fastmath=_FASTMATH, inline="always")
def _price_one(f: float, k: float, t: float, s: float, call: bool, d: float) -> float:
    sd = s * math.sqrt(t) if t > 0.0 else 0.0
    if k <= 0.0:
        return d * f if call else 0.0
    if sd <= MIN_TOTAL_VOL:
        return d * max(f - k, 0.0) if call else d * max(k - f, 0.0)
    if sd >= MAX_TOTAL_VOL:
        c = d * f
        return c if call else max(c + d * (k - f), 0.0)
    d1 = (math.log(f / k) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    if call:
        v = d * (f * _ncdf(d1) - k * _ncdf(d2))
        return min(max(v, d * max(f - k, 0.0)), d * f)
    v = d * (k * _ncdf(-d2) - f * _ncdf(-d1))
    return min(max(v, d * max(k - f, 0.0)), d * k)


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def black76_price_kernel(
    f: np.ndarray, k: np.ndarray, t: np.ndarray, s: np.ndarray, call: np.ndarray,
    d: np.ndarray, out: np.ndarray,
) -> None:
    """Black-76 prices into ``out``; all arrays shape (n,)."""
    for i in prange(f.shape[0]):
        out[i] = _price_one(f[i], k[i], t[i], s[i], call[i], d[i])


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def black76_greeks_kernel(
    f: np.ndarray, k: np.ndarray, t: np.ndarray, s: np.ndarray, call: np.ndarray,
    d: np.ndarray, r: np.ndarray, out: np.ndarray,
) -> None:
    """Price and greeks into ``out`` of shape (7, n).

    Rows: price, delta, gamma, vega (per 1.00 vol), theta (per year, F fixed),
    vanna (d delta / d vol), volga (d vega / d vol). Zero greeks where the option
    has no time value (T = 0, vol = 0, or K <= 0).
    """
    n = f.shape[0]
    for i in prange(n):
        fi = f[i]
        ki = k[i]
        ti = t[i]
        si = s[i]
        di = d[i]
        ci = call[i]
        sqt = math.sqrt(ti) if ti > 0.0 else 0.0
        sd = si * sqt
        if ki <= 0.0 or sd <= MIN_TOTAL_VOL or sd >= MAX_TOTAL_VOL:
            price = _price_one(fi, ki, ti, si, ci, di)
            if ki <= 0.0:
                delta = di if ci else 0.0
            elif ci:
                delta = di if fi > ki else 0.0
            else:
                delta = -di if fi < ki else 0.0
            out[0, i] = price
            out[1, i] = delta
            out[2, i] = 0.0
            out[3, i] = 0.0
            out[4, i] = r[i] * price
            out[5, i] = 0.0
            out[6, i] = 0.0
            continue
        # one log, two erfc, one exp per option: price and greeks share d1, d2, N(.), pdf
        d1 = (math.log(fi / ki) + 0.5 * sd * sd) / sd
        d2 = d1 - sd
        nd1 = _ncdf(d1)
        nd2 = _ncdf(d2)
        if ci:
            price = di * (fi * nd1 - ki * nd2)
            price = min(max(price, di * max(fi - ki, 0.0)), di * fi)
            out[1, i] = di * nd1
        else:
            # N(-x) = 1 - N(x) loses digits deep OTM: use erfc of the other sign there
            nmd1 = _ncdf(-d1) if d1 > 0.0 else 1.0 - nd1
            nmd2 = _ncdf(-d2) if d2 > 0.0 else 1.0 - nd2
            price = di * (ki * nmd2 - fi * nmd1)
            price = min(max(price, di * max(ki - fi, 0.0)), di * ki)
            out[1, i] = -di * nmd1
        pdf = INV_SQRT_2PI * math.exp(-0.5 * d1 * d1)
        out[0, i] = price
        out[2, i] = di * pdf / (fi * sd)
        vega = di * fi * pdf * sqt
        out[3, i] = vega
        out[4, i] = -di * fi * pdf * si / (2.0 * sqt) + r[i] * price
        out[5, i] = -di * pdf * d2 / si
        out[6, i] = vega * d1 * d2 / si


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def scenario_values_kernel(
    f: np.ndarray, k: np.ndarray, t: np.ndarray, s: np.ndarray, call: np.ndarray,
    d: np.ndarray, moves: np.ndarray, vol_mult: np.ndarray, vol_floor: np.ndarray,
    out: np.ndarray,
) -> None:
    """Option values under a grid of (price move, vol multiplier) scenarios.

    Parameters
    ----------
    f, k, t, s, call, d : ndarray, shape (n,)
    moves : ndarray, shape (n_scen, n)
        Relative forward moves (F' = F * (1 + move)).
    vol_mult : ndarray, shape (n_scen, n)
        Multiplier applied to each option's vol in each scenario.
    vol_floor : ndarray, shape (n_scen, n)
        Lower bound of the shocked vol (0 for none).
    out : ndarray, shape (n_scen, n)
    """
    n = f.shape[0]
    for i in prange(n):
        for j in range(moves.shape[0]):
            sv = max(s[i] * vol_mult[j, i], vol_floor[j, i])
            out[j, i] = _price_one(f[i] * (1.0 + moves[j, i]), k[i], t[i], sv, call[i], d[i])


# Serial twins of the parallel kernels: waking the thread pool costs far more than pricing a
# few options, so small batches (what-if, one account) run on the calling thread.
PARALLEL_MIN_WORK = 20_000

def _renamed(fn: Any, suffix: str) -> Any:
    """A copy of ``fn`` under another name: numba's on-disk cache is keyed by the qualified
    name, so a serial twin compiled from the same function would otherwise share (and
    overwrite) the parallel kernel's cache entry."""
    g = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__,
                           fn.__closure__)
    g.__qualname__ = fn.__qualname__ + suffix
    return g


if os.environ.get("MARGINPROOF_DISABLE_NUMBA") == "1":  # pragma: no cover
    black76_price_kernel_serial = black76_price_kernel
    black76_greeks_kernel_serial = black76_greeks_kernel
    scenario_values_kernel_serial = scenario_values_kernel
else:
    black76_price_kernel_serial = njit(cache=True, fastmath=_FASTMATH)(
        _renamed(black76_price_kernel.py_func, "_serial"))  # type: ignore[attr-defined]
    black76_greeks_kernel_serial = njit(cache=True, fastmath=_FASTMATH)(
        _renamed(black76_greeks_kernel.py_func, "_serial"))  # type: ignore[attr-defined]
    scenario_values_kernel_serial = njit(cache=True, fastmath=_FASTMATH)(
        _renamed(scenario_values_kernel.py_func, "_serial"))  # type: ignore[attr-defined]


def price_kernel(n: int) -> Any:
    """Parallel or serial price kernel for ``n`` options."""
    return black76_price_kernel if n >= PARALLEL_MIN_WORK else black76_price_kernel_serial


def greeks_kernel(n: int) -> Any:
    """Parallel or serial greeks kernel for ``n`` options."""
    return black76_greeks_kernel if n >= PARALLEL_MIN_WORK else black76_greeks_kernel_serial


def scenario_kernel(work: int) -> Any:
    """Parallel or serial scenario kernel for ``work`` = n_options x n_scenarios evaluations."""
    return scenario_values_kernel if work >= PARALLEL_MIN_WORK else scenario_values_kernel_serial
