"""Invariants of Black-76 pricing, greeks and implied vols (hypothesis)."""

import math

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from marginproof.pricing import _black76_reference as ref
from marginproof.pricing import black76_greeks, black76_price, implied_vol

fwd = st.floats(1.0, 1e6)
mny = st.floats(0.3, 3.0)
tt = st.floats(1 / (365 * 24), 3.0)
vol = st.floats(0.05, 3.0)
rate = st.floats(0.0, 0.1)


@given(fwd, mny, tt, vol, rate)
def test_put_call_parity(f: float, m: float, t: float, s: float, r: float) -> None:
    k = f * m
    d = math.exp(-r * t)
    c = float(black76_price(f, k, t, s, True, d))
    p = float(black76_price(f, k, t, s, False, d))
    assert math.isclose(c - p, d * (f - k), rel_tol=1e-9, abs_tol=1e-9 * f)


@given(fwd, mny, tt, vol)
def test_call_is_within_no_arbitrage_bounds(f: float, m: float, t: float, s: float) -> None:
    c = float(black76_price(f, f * m, t, s, True))
    assert max(f - f * m, 0.0) - 1e-9 * f <= c <= f


@given(fwd, st.floats(0.5, 2.0), st.floats(0.02, 2.0), st.floats(0.1, 1.5), st.booleans())
def test_implied_vol_round_trip(f: float, m: float, t: float, s: float, call: bool) -> None:
    p = float(black76_price(f, f * m, t, s, call))
    intrinsic = max(f - f * m, 0.0) if call else max(f * m - f, 0.0)
    assume(p - intrinsic > 1e-12 * f)
    iv = float(implied_vol(p, f, f * m, t, call))
    assert math.isclose(float(black76_price(f, f * m, t, iv, call)), p, rel_tol=1e-9,
                        abs_tol=1e-12 * f)


@given(fwd, tt, vol)
def test_call_price_falls_with_strike_and_rises_with_vol(f: float, t: float, s: float) -> None:
    ks = f * np.linspace(0.5, 2.0, 16)
    c = black76_price(f, ks, t, s, True)
    assert np.all(np.diff(c) <= 1e-9 * f)
    vs = np.linspace(0.05, 3.0, 16)
    cv = black76_price(f, f, t, vs, True)
    assert np.all(np.diff(cv) >= -1e-9 * f)


@given(fwd, mny, tt, vol, st.booleans())
def test_greeks_match_finite_differences(f: float, m: float, t: float, s: float,
                                         call: bool) -> None:
    k = f * m
    g = black76_greeks(f, k, t, s, call)
    # step scaled by the one-sd move: a fixed 1e-4 * f step has a truncation error of
    # h^2 / 6 times the third derivative, ~1e-5 at one hour to expiry (the tolerance itself)
    h = 1e-3 * f * min(1.0, s * math.sqrt(t))
    up = float(black76_price(f + h, k, t, s, call))
    dn = float(black76_price(f - h, k, t, s, call))
    assert math.isclose(g.delta[0], (up - dn) / (2 * h), abs_tol=1e-5)
    hv = 1e-5
    vu = float(black76_price(f, k, t, s + hv, call))
    vd = float(black76_price(f, k, t, s - hv, call))
    assert math.isclose(g.vega_per_vol_point[0] * 100, (vu - vd) / (2 * hv),
                        rel_tol=1e-4, abs_tol=1e-6 * f)


@given(fwd, mny, tt, vol)
def test_gamma_and_vega_are_the_same_for_calls_and_puts(f: float, m: float, t: float,
                                                        s: float) -> None:
    gc = black76_greeks(f, f * m, t, s, True)
    gp = black76_greeks(f, f * m, t, s, False)
    assert math.isclose(gc.gamma[0], gp.gamma[0], rel_tol=1e-12, abs_tol=1e-300)
    assert math.isclose(gc.vega_per_vol_point[0], gp.vega_per_vol_point[0], rel_tol=1e-12,
                        abs_tol=1e-300)


@given(fwd, mny, tt, vol, st.booleans())
def test_inverse_value_is_linear_value_over_forward(f: float, m: float, t: float, s: float,
                                                    call: bool) -> None:
    g = black76_greeks(f, f * m, t, s, call)
    coin = g.to_coin(f)
    assert math.isclose(coin.price[0], g.price[0] / f, rel_tol=1e-12, abs_tol=1e-300)
    # coin delta by finite difference of V(F)/F
    h = 1e-4 * f
    up = float(black76_price(f + h, f * m, t, s, call)) / (f + h)
    dn = float(black76_price(f - h, f * m, t, s, call)) / (f - h)
    assert math.isclose(coin.delta[0], (up - dn) / (2 * h), rel_tol=1e-4, abs_tol=1e-9)


@given(st.lists(st.tuples(fwd, mny, st.floats(0.0, 3.0), st.floats(0.0, 3.0), st.booleans(),
                          rate), min_size=1, max_size=30))
def test_compiled_kernel_matches_reference_twin(rows: list[tuple]) -> None:
    f, m, t, s, c, r = (np.array(x) for x in zip(*rows, strict=True))
    g = black76_greeks(f, f * m, t, s, c, r)
    for i in range(len(rows)):
        d = math.exp(-r[i] * max(t[i], 0.0))
        exp = ref.greeks(f[i], f[i] * m[i], t[i], s[i], bool(c[i]), d, r[i])
        got = (g.price[i], g.delta[i], g.gamma[i], g.vega_per_vol_point[i] * 100,
               g.theta_per_day[i] * 365, g.vanna_per_vol_point[i] * 100,
               g.volga_per_vol_point[i] * 1e4)
        for a, b in zip(got, exp, strict=True):
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * f[i])
