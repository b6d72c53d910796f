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

from marginproof.pricing._vecmath import exp_neg_half_sq, log_pos, ncdf

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
# edge-rule constants shared with the numpy twin (one definition)
from marginproof.pricing._numpy_kernels import (  # noqa: E402
    INV_SQRT_2PI,
    MAX_TOTAL_VOL,
    MIN_TOTAL_VOL,
    SQRT2,
)


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


@njit(cache=True, fastmath=_FASTMATH, inline="always")
def _greeks_one(
    fi: float, ki: float, ti: float, si: float, ci: bool, di: float, ri: float,
    out: np.ndarray, i: Any,
) -> None:
    """Price and greeks of one option into ``out[:, i]`` with scalar libm calls (all branches:
    the edge rules and the generic case)."""
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
        out[4, i] = ri * price
        out[5, i] = 0.0
        out[6, i] = 0.0
        return
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
    out[4, i] = -di * fi * pdf * si / (2.0 * sqt) + ri * price
    out[5, i] = -di * pdf * d2 / si
    out[6, i] = vega * d1 * d2 / si


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def black76_price_kernel_libm(
    f: np.ndarray, k: np.ndarray, t: np.ndarray, s: np.ndarray, call: np.ndarray,
    d: np.ndarray, out: np.ndarray,
) -> None:
    """Black-76 prices into ``out`` through scalar libm calls (the pre-issue-9 kernel)."""
    for i in prange(f.shape[0]):
        out[i] = _price_one(f[i], k[i], t[i], s[i], call[i], d[i])


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def black76_greeks_kernel_libm(
    f: np.ndarray, k: np.ndarray, t: np.ndarray, s: np.ndarray, call: np.ndarray,
    d: np.ndarray, r: np.ndarray, out: np.ndarray,
) -> None:
    """Price and greeks into ``out`` of shape (7, n) through scalar libm calls: the kernel
    before issue 9, kept as the same-run baseline of the benchmark and as a test oracle.

    Rows: price, delta, gamma, vega (per 1.00 vol), theta (per year, F fixed),
    vanna (d delta / d vol), volga (d vega / d vol). Zero greeks where the option
    has no time value (T = 0, vol = 0, or K <= 0).
    """
    for i in prange(f.shape[0]):
        _greeks_one(f[i], k[i], t[i], s[i], call[i], d[i], r[i], out, i)


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def scenario_values_kernel_libm(
    f: np.ndarray, k: np.ndarray, t: np.ndarray, s: np.ndarray, call: np.ndarray,
    d: np.ndarray, moves: np.ndarray, vol_mult: np.ndarray, vol_floor: np.ndarray,
    out: np.ndarray,
) -> None:
    """Option values under a grid of (price move, vol multiplier) scenarios, libm version
    (the pre-issue-9 kernel, kept as baseline and test oracle).

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


# --- vectorised kernels (issue 9) ----------------------------------------------------------
# The options are cut into blocks of _BLOCK. In each block a first loop evaluates the generic
# Black-76 branch for every option with the call-free maths of _vecmath (LLVM turns it into
# 4-lane AVX2 code) and marks the price NaN where the option is an edge case (K <= 0, total vol
# outside (MIN_TOTAL_VOL, MAX_TOTAL_VOL), T <= 0) or outside the fast path's domain (F/K not a
# positive normal float, NaN inputs). A second loop over the block, still in L1, recomputes the
# marked options with the scalar libm code above, so edge cases keep their exact values.
# The block loop indexes with unsigned integers: numba then emits no negative-index wraparound,
# which would otherwise make the addresses non-affine and block vectorisation.
# error_model="numpy": no ZeroDivisionError checks (branches) on divisions; lanes that would
# divide by zero are edge cases, recomputed by the scalar pass.
_BLOCK = 512
_TINY = 2.2250738585072014e-308  # smallest positive normal float64
_HUGE = 1.7976931348623157e308


@njit(cache=True, fastmath=_FASTMATH, inline="always")
def _fmax(a: float, b: float) -> float:
    return a if a > b else b


@njit(cache=True, fastmath=_FASTMATH, inline="always")
def _fmin(a: float, b: float) -> float:
    return a if a < b else b


@njit(cache=True, fastmath=_FASTMATH, inline="always")
def _price_fast(
    fi: float, ki: float, ti: float, si: float, ci: bool, di: float
) -> tuple[float, bool, float, float, float, float, float, float]:
    """Generic-branch price without calls or branches.

    Returns (price, ok, sqt, sd, d1, d2, g1, n1) where ``ok`` is False for options the caller
    must recompute with the scalar code, ``g1 = exp(-d1^2/2)`` and ``n1 = N(+-d1)`` (the sign of
    the option's delta).
    """
    sgn = 1.0 if ci else -1.0
    sqt = math.sqrt(_fmax(ti, 0.0))
    sd = si * sqt
    x = fi / ki
    ok = (ki > 0.0) & (sd > MIN_TOTAL_VOL) & (sd < MAX_TOTAL_VOL) & (x >= _TINY) & (x <= _HUGE)
    d1 = (log_pos(x) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    g1 = exp_neg_half_sq(d1)
    # calls: F N(d1) - K N(d2); puts: K N(-d2) - F N(-d1), each tail computed directly
    n1 = ncdf(sgn * d1, g1)
    n2 = ncdf(sgn * d2, exp_neg_half_sq(d2))
    v = sgn * di * (fi * n1 - ki * n2)
    price = _fmin(_fmax(v, di * _fmax(sgn * (fi - ki), 0.0)), di * (fi if ci else ki))
    return price, ok, sqt, sd, d1, d2, g1, sgn * n1


@njit(cache=True, fastmath=_FASTMATH, error_model="numpy")
def _price_block(
    f: np.ndarray, k: np.ndarray, t: np.ndarray, s: np.ndarray, call: np.ndarray,
    d: np.ndarray, out: np.ndarray, lo: int, hi: int,
) -> None:
    base = np.uint64(lo)
    for j in range(hi - lo):
        i = base + np.uint64(j)
        p, ok, _, _, _, _, _, _ = _price_fast(f[i], k[i], t[i], s[i], call[i], d[i])
        out[i] = p if ok else math.nan
    for j in range(hi - lo):
        i = base + np.uint64(j)
        if math.isnan(out[i]):
            out[i] = _price_one(f[i], k[i], t[i], s[i], call[i], d[i])


@njit(cache=True, fastmath=_FASTMATH, error_model="numpy")
def _greeks_block(
    f: np.ndarray, k: np.ndarray, t: np.ndarray, s: np.ndarray, call: np.ndarray,
    d: np.ndarray, r: np.ndarray, out: np.ndarray, lo: int, hi: int,
) -> None:
    base = np.uint64(lo)
    for j in range(hi - lo):
        i = base + np.uint64(j)
        fi = f[i]
        si = s[i]
        di = d[i]
        price, ok, sqt, sd, d1, d2, g1, sn1 = _price_fast(fi, k[i], t[i], si, call[i], di)
        pdf = INV_SQRT_2PI * g1
        vega = di * fi * pdf * sqt
        out[0, i] = price if ok else math.nan
        out[1, i] = di * sn1
        out[2, i] = di * pdf / (fi * sd)
        out[3, i] = vega
        out[4, i] = -di * fi * pdf * si / (2.0 * sqt) + r[i] * price
        out[5, i] = -di * pdf * d2 / si
        out[6, i] = vega * d1 * d2 / si
    for j in range(hi - lo):
        i = base + np.uint64(j)
        if math.isnan(out[0, i]):
            _greeks_one(f[i], k[i], t[i], s[i], call[i], d[i], r[i], out, i)


@njit(cache=True, fastmath=_FASTMATH, error_model="numpy")
def _scenario_block(
    f: np.ndarray, k: np.ndarray, t: np.ndarray, s: np.ndarray, call: np.ndarray,
    d: np.ndarray, moves: np.ndarray, vol_mult: np.ndarray, vol_floor: np.ndarray,
    out: np.ndarray, lo: int, hi: int,
) -> None:
    base = np.uint64(lo)
    for jj in range(moves.shape[0]):
        sc = np.uint64(jj)
        for j in range(hi - lo):
            i = base + np.uint64(j)
            sv0 = s[i] * vol_mult[sc, i]
            sv = _fmax(sv0, vol_floor[sc, i])
            p, ok, _, _, _, _, _, _ = _price_fast(f[i] * (1.0 + moves[sc, i]), k[i], t[i], sv,
                                                  call[i], d[i])
            out[sc, i] = p if ok & (sv0 == sv0) else math.nan
        for j in range(hi - lo):
            i = base + np.uint64(j)
            if math.isnan(out[sc, i]):
                sv = max(s[i] * vol_mult[sc, i], vol_floor[sc, i])
                out[sc, i] = _price_one(f[i] * (1.0 + moves[sc, i]), k[i], t[i], sv, call[i],
                                        d[i])


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def black76_price_kernel(
    f: np.ndarray, k: np.ndarray, t: np.ndarray, s: np.ndarray, call: np.ndarray,
    d: np.ndarray, out: np.ndarray,
) -> None:
    """Black-76 prices into ``out``; all arrays shape (n,). Vectorised (see ``_BLOCK``)."""
    n = f.shape[0]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        _price_block(f, k, t, s, call, d, out, b * _BLOCK, min(b * _BLOCK + _BLOCK, n))


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def black76_greeks_kernel(
    f: np.ndarray, k: np.ndarray, t: np.ndarray, s: np.ndarray, call: np.ndarray,
    d: np.ndarray, r: np.ndarray, out: np.ndarray,
) -> None:
    """Price and greeks into ``out`` of shape (7, n); inputs shape (n,).

    Rows: price, delta, gamma, vega (per 1.00 vol), theta (per year, F fixed),
    vanna (d delta / d vol), volga (d vega / d vol). Zero greeks where the option
    has no time value (T = 0, vol = 0, or K <= 0). Vectorised: one log, two exp and two
    normal CDFs per option in AVX2 lanes, edge cases recomputed by the scalar code.
    """
    n = f.shape[0]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        _greeks_block(f, k, t, s, call, d, r, out, b * _BLOCK, min(b * _BLOCK + _BLOCK, n))


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def scenario_values_kernel(
    f: np.ndarray, k: np.ndarray, t: np.ndarray, s: np.ndarray, call: np.ndarray,
    d: np.ndarray, moves: np.ndarray, vol_mult: np.ndarray, vol_floor: np.ndarray,
    out: np.ndarray,
) -> None:
    """Option values under a grid of (price move, vol multiplier) scenarios (vectorised).

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
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        _scenario_block(f, k, t, s, call, d, moves, vol_mult, vol_floor, out, b * _BLOCK,
                        min(b * _BLOCK + _BLOCK, n))


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
