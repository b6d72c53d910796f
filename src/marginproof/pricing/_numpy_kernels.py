"""Numpy twin of the compiled Black-76 kernels, for small batches (no numba, no scipy).

A cold CLI process that margins one small book would otherwise pay about 0.25 s to import
numba and 0.5 s to load the cached machine code of the kernels (measured on the demo book,
``benchmarks/bench_cli.py``), plus 0.3 s for ``scipy.special``, to price a handful of
options. Inside :func:`marginproof.pricing.dispatch.small_batches` (one-shot commands only),
batches of at most ``SMALL_WORK`` evaluations come here and larger ones go to
:mod:`marginproof.pricing._kernels`.

Same signatures (output arrays filled in place), formula and edge rules as the scalar code of
the compiled kernels (``_price_one`` / ``_greeks_one``): ``K <= 0``, total vol ``<=
MIN_TOTAL_VOL`` (intrinsic) and ``>= MAX_TOTAL_VOL`` (call worth ``D F``), prices clamped to
their no-arbitrage bounds, puts' tails from ``erfc`` of the other sign. Tests compare both.

Why the normal CDF is hand-rolled here: numpy has no ``erfc``; ``scipy.special.ndtr`` would
bring back the import this module exists to avoid. ``math.erfc`` is applied element-wise
(about 0.1 us each), which is cheap at the sizes routed here.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

SQRT2 = math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# sigma*sqrt(T) at or beyond this: the call is worth D*F (Derive's edge rule, exchange-presets)
MAX_TOTAL_VOL = 24.0
# below this total vol the option is priced at intrinsic (greeks would be 0 * inf)
MIN_TOTAL_VOL = 1e-12
#: batches of at most this many option evaluations take this module's path
SMALL_WORK = 4096

_erfc = np.frompyfunc(math.erfc, 1, 1)


def ndtr(x: FloatArray) -> FloatArray:
    """Standard normal CDF ``0.5 erfc(-x / sqrt 2)``, element-wise; shape of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    return np.asarray(0.5 * _erfc(-x / SQRT2), dtype=np.float64).reshape(x.shape)


_Parts = tuple[FloatArray, FloatArray, NDArray[np.bool_], NDArray[np.bool_], FloatArray,
               FloatArray]


def _parts(f: FloatArray, k: FloatArray, t: FloatArray, s: FloatArray) -> _Parts:
    """``(sqt, sd, edge, generic, d1, d2)``: ``edge`` where the scalar code branches off."""
    sqt = np.sqrt(np.where(t > 0.0, t, 0.0))
    sd = np.where(t > 0.0, s * sqt, 0.0)
    generic = (k > 0.0) & ~(sd <= MIN_TOTAL_VOL) & ~(sd >= MAX_TOTAL_VOL)
    safe_sd = np.where(generic, sd, 1.0)
    safe_k = np.where(generic, k, 1.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d1 = (np.log(f / safe_k) + 0.5 * safe_sd * safe_sd) / safe_sd
    d2 = d1 - safe_sd
    return sqt, sd, ~generic, generic, d1, d2


def _edge_price(f: FloatArray, k: FloatArray, sd: FloatArray, call: NDArray[np.bool_],
                d: FloatArray) -> FloatArray:
    """Prices of the scalar code's edge branches (meaningless where none applies)."""
    with np.errstate(invalid="ignore"):
        c = np.where(k <= 0.0, d * f, np.where(
            sd <= MIN_TOTAL_VOL, d * np.maximum(f - k, 0.0), d * f))
        p = np.where(k <= 0.0, 0.0, np.where(
            sd <= MIN_TOTAL_VOL, d * np.maximum(k - f, 0.0), np.maximum(d * f + d * (k - f), 0.0)))
    return np.asarray(np.where(call, c, p), dtype=np.float64)


def _generic(f: FloatArray, k: FloatArray, call: NDArray[np.bool_], d: FloatArray,
             d1: FloatArray, d2: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(price, delta = +-D N(+-d1), pdf)`` of the generic branch."""
    nd1, nd2 = ndtr(d1), ndtr(d2)
    # N(-x) = 1 - N(x) loses digits deep OTM: erfc of the other sign there (as _greeks_one)
    nmd1 = np.where(d1 > 0.0, ndtr(-d1), 1.0 - nd1)
    nmd2 = np.where(d2 > 0.0, ndtr(-d2), 1.0 - nd2)
    with np.errstate(invalid="ignore"):
        cv = d * (f * nd1 - k * nd2)
        cv = np.minimum(np.maximum(cv, d * np.maximum(f - k, 0.0)), d * f)
        pv = d * (k * nmd2 - f * nmd1)
        pv = np.minimum(np.maximum(pv, d * np.maximum(k - f, 0.0)), d * k)
    pdf = INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)
    return (np.asarray(np.where(call, cv, pv), dtype=np.float64),
            np.asarray(d * np.where(call, nd1, -nmd1), dtype=np.float64), pdf)


def price_into(f: FloatArray, k: FloatArray, t: FloatArray, s: FloatArray,
               call: NDArray[np.bool_], d: FloatArray, out: FloatArray) -> None:
    """Black-76 prices into ``out``; every array broadcastable to the shape of ``out``."""
    _, sd, edge, _, d1, d2 = _parts(f, k, t, s)
    price, _, _ = _generic(f, k, call, d, d1, d2)
    out[...] = np.where(edge, _edge_price(f, k, sd, call, d), price)


def greeks_into(f: FloatArray, k: FloatArray, t: FloatArray, s: FloatArray,
                call: NDArray[np.bool_], d: FloatArray, r: FloatArray, out: FloatArray) -> None:
    """Price and greeks into ``out`` of shape (7, n), as ``black76_greeks_kernel``.

    Rows: price, delta, gamma, vega (per 1.00 vol), theta (per year, F fixed), vanna, volga.
    """
    sqt, sd, edge, _, d1, d2 = _parts(f, k, t, s)
    price, delta, pdf = _generic(f, k, call, d, d1, d2)
    edge_price = _edge_price(f, k, sd, call, d)
    edge_delta = np.where(k <= 0.0, np.where(call, d, 0.0), np.where(
        call, np.where(f > k, d, 0.0), np.where(f < k, -d, 0.0)))
    safe_sd = np.where(edge, 1.0, sd)
    safe_s = np.where(edge, 1.0, s)
    safe_sqt = np.where(edge, 1.0, sqt)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        gamma = d * pdf / (f * safe_sd)
        vega = d * f * pdf * safe_sqt
        theta = -d * f * pdf * safe_s / (2.0 * safe_sqt) + r * price
        vanna = -d * pdf * d2 / safe_s
        volga = vega * d1 * d2 / safe_s
    out[0] = np.where(edge, edge_price, price)
    out[1] = np.where(edge, edge_delta, delta)
    out[2] = np.where(edge, 0.0, gamma)
    out[3] = np.where(edge, 0.0, vega)
    out[4] = np.where(edge, r * edge_price, theta)
    out[5] = np.where(edge, 0.0, vanna)
    out[6] = np.where(edge, 0.0, volga)


def scenario_into(f: FloatArray, k: FloatArray, t: FloatArray, s: FloatArray,
                  call: NDArray[np.bool_], d: FloatArray, moves: FloatArray,
                  vol_mult: FloatArray, vol_floor: FloatArray, out: FloatArray) -> None:
    """Option values under (move, vol multiplier, vol floor) scenarios, as
    ``scenario_values_kernel``: inputs shape (n,), scenario arrays and ``out`` (n_scen, n)."""
    sv = np.maximum(s * vol_mult, vol_floor)
    price_into(f * (1.0 + moves), k, t, sv, call, d, out)
