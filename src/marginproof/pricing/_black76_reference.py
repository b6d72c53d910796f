"""Plain-Python reference twin of the Black-76 kernels (scalar loop, ``math.erfc`` normal CDF).

Deliberately simple and slow: it is the oracle the compiled kernels are tested against and the
naive baseline the benchmarks measure against.
"""

from __future__ import annotations

import math

_SQRT2 = math.sqrt(2.0)


def ndtr(x: float) -> float:
    """Standard normal CDF ``0.5 erfc(-x / sqrt 2)`` (scipy's ``ndtr`` formula; no scipy
    import on the CLI's small-book path)."""
    return 0.5 * math.erfc(-x / _SQRT2)


def price(f: float, k: float, t: float, s: float, call: bool, d: float = 1.0) -> float:
    """Black-76 price of one option (edge rules of the exchange-presets spec)."""
    sd = s * math.sqrt(t) if t > 0 else 0.0
    if k <= 0:
        return d * f if call else 0.0
    if sd <= 1e-12:
        return d * max(f - k, 0.0) if call else d * max(k - f, 0.0)
    if sd >= 24.0:
        return d * f if call else max(d * f + d * (k - f), 0.0)
    d1 = (math.log(f / k) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    if call:
        v = d * (f * float(ndtr(d1)) - k * float(ndtr(d2)))
        return min(max(v, d * max(f - k, 0.0)), d * f)
    v = d * (k * float(ndtr(-d2)) - f * float(ndtr(-d1)))
    return min(max(v, d * max(k - f, 0.0)), d * k)


def greeks(
    f: float, k: float, t: float, s: float, call: bool, d: float = 1.0, r: float = 0.0
) -> tuple[float, float, float, float, float, float, float]:
    """(price, delta, gamma, vega, theta/yr, vanna, volga) of one option, raw units."""
    p = price(f, k, t, s, call, d)
    sqt = math.sqrt(t) if t > 0 else 0.0
    sd = s * sqt
    if k <= 0 or sd <= 1e-12 or sd >= 24.0:
        if k <= 0:
            delta = d if call else 0.0
        elif call:
            delta = d if f > k else 0.0
        else:
            delta = -d if f < k else 0.0
        return (p, delta, 0.0, 0.0, r * p, 0.0, 0.0)
    d1 = (math.log(f / k) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    pdf = math.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi)
    delta = d * float(ndtr(d1)) if call else -d * float(ndtr(-d1))
    gamma = d * pdf / (f * sd)
    vega = d * f * pdf * sqt
    theta = -d * f * pdf * s / (2 * sqt) + r * p
    vanna = -d * pdf * d2 / s
    volga = vega * d1 * d2 / s
    return (p, delta, gamma, vega, theta, vanna, volga)
