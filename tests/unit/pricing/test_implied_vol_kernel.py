"""Compiled implied vol (``implied_vol``) against its plain-Python twin (``implied_vol_one``).

The compiled path is the library's own code under numba (``pricing._iv_kernel``), so the two
should agree to the last bit; the tests ask for 1e-12 relative and identical NaN patterns.
"""

from __future__ import annotations

import itertools
import math
import types

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from marginproof.pricing import black76_price, implied_vol, implied_vol_one
from marginproof.pricing.implied_vol import implied_vol_reference


def _assert_same(a: np.ndarray, b: np.ndarray) -> None:
    na, nb = np.isnan(a), np.isnan(b)
    assert np.array_equal(na, nb), f"NaN patterns differ at {np.flatnonzero(na != nb)[:10]}"
    ok = ~na
    assert np.all(a[ok] > 0)
    np.testing.assert_allclose(a[ok], b[ok], rtol=1e-12, atol=0.0)


def test_wide_grid_agrees_with_reference() -> None:
    """Deep ITM/OTM, 1 day to 5 years, 1 % to 500 % vol, calls and puts, discounted."""
    f = np.array([0.05, 1.0, 60_000.0, 2e6])
    m = np.exp(np.linspace(-4.0, 4.0, 21))  # K/F from 0.018 to 55
    t = np.array([1 / 365, 7 / 365, 30 / 365, 0.25, 1.0, 5.0])
    s = np.array([0.01, 0.05, 0.2, 0.5, 1.0, 2.0, 5.0])
    g = np.array(list(itertools.product(f, m, t, s, (True, False), (1.0, 0.93))), dtype=object)
    ff = g[:, 0].astype(float)
    kk = ff * g[:, 1].astype(float)
    tt, ss = g[:, 2].astype(float), g[:, 3].astype(float)
    cc, dd = g[:, 4].astype(bool), g[:, 5].astype(float)
    p = black76_price(ff, kk, tt, ss, cc, dd)
    a = implied_vol(p, ff, kk, tt, cc, dd)
    _assert_same(a, implied_vol_reference(p, ff, kk, tt, cc, dd))
    # where the time value is well resolved, a vol exists and is the one priced with (NaN
    # elsewhere: deep ITM at low vol the price is its intrinsic value to the last bit)
    intrinsic = dd * np.maximum(np.where(cc, ff - kk, kk - ff), 0.0)
    resolved = (p - intrinsic > 1e-6 * p) & (p > 1e-280 * ff)
    assert resolved.sum() > 0.5 * a.size
    np.testing.assert_allclose(a[resolved], ss[resolved], rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_extremes_agree_with_reference(seed: int) -> None:
    """|ln F/K| up to ~60, prices from subnormal to the upper bound and just below it."""
    rng = np.random.default_rng(seed)
    n = 20_000
    x = rng.uniform(-60, 60, n) * (rng.random(n) < 0.5) + rng.normal(0, 2, n)
    f = np.exp(rng.uniform(-5, 12, n))
    k = f * np.exp(-x)
    t = np.exp(rng.uniform(np.log(1 / 365), np.log(5), n))
    c = rng.random(n) < 0.5
    d = np.exp(-rng.uniform(0.0, 0.1, n) * t)
    hi = np.where(c, f, k)
    lo = np.maximum(np.where(c, f - k, k - f), 0)
    frac = 10.0 ** rng.uniform(-330, 0, n)
    frac = np.where(rng.random(n) < 0.2, 1 - 10.0 ** rng.uniform(-17, 0, n), frac)
    p = d * (lo + (hi - lo) * frac)
    _assert_same(implied_vol(p, f, k, t, c, d), implied_vol_reference(p, f, k, t, c, d))


def test_subnormal_price_where_the_reference_fails_is_nan() -> None:
    # the initial-guess map underflows; CPython raises in log(0), numba would carry on
    args = (1.9e-322, 71.10706498334862, 12.825466722938634, 1.183811492152418, False,
            0.9146143646996422)
    assert math.isnan(implied_vol_one(*args))
    assert np.isnan(implied_vol(*args))


def test_bounds_and_bad_inputs_are_nan() -> None:
    f, k, t, d = 100.0, 120.0, 0.5, 0.95
    rows = [
        # call: undiscounted bounds (max(F-K,0), F); put: (max(K-F,0), K)
        (0.0, f, k, t, True, d), (d * f, f, k, t, True, d), (d * f * 1.01, f, k, t, True, d),
        (-1.0, f, k, t, True, d), (d * (k - f), f, k, t, False, d),
        (d * (k - f) * 0.99, f, k, t, False, d), (d * k, f, k, t, False, d),
        (d * 10.0, f, 90.0, t, True, d),  # ITM call at its intrinsic value
        (d * 9.0, f, 90.0, t, True, d),  # below intrinsic
    ]
    good = (5.0, f, k, t, True, d)
    for j, bad in itertools.product(range(6), (math.nan, math.inf, -math.inf, 0.0, -1.0)):
        if j == 4:
            continue  # is_call is a bool
        r = list(good)
        r[j] = bad  # a zero or negative price is at/below the lower bound
        rows.append(tuple(r))
    cols = [np.array(c) for c in zip(*rows, strict=True)]
    a = implied_vol(*cols)
    ref = np.array([implied_vol_one(*r) for r in rows])
    assert np.isnan(ref).all()
    assert np.isnan(a).all()
    assert math.isfinite(implied_vol_one(*good))
    assert float(implied_vol(*good)) == implied_vol_one(*good)


def test_broadcasting_and_shapes() -> None:
    v = implied_vol(5.0, 100.0, 110.0, 0.5, True)
    assert isinstance(v, np.ndarray) and v.shape == ()
    assert float(v) == implied_vol_one(5.0, 100.0, 110.0, 0.5, True)
    p = np.array([[2.0], [5.0], [9.0]])
    k = np.array([100.0, 110.0, 120.0, 130.0])
    a = implied_vol(p, 100.0, k, 0.5, [1, 0, 1, 0], 0.99)
    assert a.shape == (3, 4)
    b = implied_vol_reference(p, 100.0, k, 0.5, [1, 0, 1, 0], 0.99)
    _assert_same(a, b)
    assert implied_vol(np.empty(0), 1.0, 1.0, 1.0, True).shape == (0,)
    # non-contiguous input views
    big = np.linspace(1.0, 20.0, 40)
    _assert_same(implied_vol(big[::2], 100.0, 110.0, 0.5, True),
                 implied_vol_reference(big[::2], 100.0, 110.0, 0.5, True))


def test_the_library_modules_are_left_alone() -> None:
    import importlib

    from marginproof.pricing import _iv_kernel  # noqa: F401 - the import builds the copy

    lbr = importlib.import_module("py_lets_be_rational.lets_be_rational")
    nd = importlib.import_module("cody_special.normaldistribution")
    for fn in (lbr.normalised_black_call, lbr.erfcx_cody, lbr.inverse_norm_cdf,
               nd.inverse_norm_cdf, nd.norm_cdf):
        assert isinstance(fn, types.FunctionType)  # still plain Python
    with pytest.raises(ValueError):
        nd.inverse_norm_cdf(0.0)  # CPython semantics kept for the reference


@settings(max_examples=300, deadline=None)
@given(st.floats(1e-3, 1e7), st.floats(-3.0, 3.0), st.floats(1 / 365, 5.0),
       st.floats(0.01, 5.0), st.booleans(), st.floats(0.0, 0.2))
def test_round_trip_black76(f: float, lm: float, t: float, s: float, call: bool,
                            r: float) -> None:
    k = f * math.exp(lm)
    d = math.exp(-r * t)
    p = float(black76_price(f, k, t, s, call, d))
    intrinsic = d * (max(f - k, 0.0) if call else max(k - f, 0.0))
    assume(p - intrinsic > 1e-9 * p and p > 1e-250 * f)
    iv = float(implied_vol(p, f, k, t, call, d))
    ref = implied_vol_one(p, f, k, t, call, d)
    assert iv == pytest.approx(ref, rel=1e-12)
    assert math.isclose(float(black76_price(f, k, t, iv, call, d)), p, rel_tol=1e-8,
                        abs_tol=1e-13 * f)
