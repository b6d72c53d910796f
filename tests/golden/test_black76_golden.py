"""Black-76 against published values: textbooks and Deribit's own greeks."""

import math

import numpy as np
import pytest

from marginproof.io import datasets
from marginproof.pricing import black76_greeks, black76_price, implied_vol


def test_haug_black76_nine_month_futures_option() -> None:
    # Haug, The Complete Guide to Option Pricing Formulas (2nd ed.), Black-76 example:
    # F = 19, K = 19, T = 0.75, r = 10 %, sigma = 28 %: call = put = 1.7011.
    d = math.exp(-0.10 * 0.75)
    c = black76_price(19.0, 19.0, 0.75, 0.28, True, d)
    p = black76_price(19.0, 19.0, 0.75, 0.28, False, d)
    assert round(float(c), 4) == 1.7011
    assert round(float(p), 4) == 1.7011


def test_hull_crude_oil_put_futures_option() -> None:
    # Hull, Options, Futures and Other Derivatives, Black's model example: put on crude-oil
    # futures, F = K = 20, r = 9 %, sigma = 25 %, 4 months: price 1.12.
    p = black76_price(20.0, 20.0, 4 / 12, 0.25, False, math.exp(-0.09 * 4 / 12))
    assert round(float(p), 2) == 1.12


def test_deribit_published_greeks_are_reproduced_from_mark_iv() -> None:
    # risk-methods spec section 3: Deribit's delta (USD, r = 0), vega per vol point and theta
    # per day follow from mark_iv, underlying_price, strike and exact T. Shipped chains, T > 2d.
    df = datasets.load_option_chains()
    df = df[(df["expiry_unix"] - df["quote_unixtime"]) > 2 * 86400]
    t = (df["expiry_unix"] - df["quote_unixtime"]).to_numpy() / (365 * 86400)
    g = black76_greeks(df["underlying_price"].to_numpy(), df["strike"].to_numpy(), t,
                       df["mark_iv"].to_numpy() / 100, (df["option_right"] == "call").to_numpy())
    for ours, col in ((g.delta, "delta"), (g.gamma, "gamma"), (g.vega_per_vol_point, "vega")):
        ref = df[col].to_numpy()
        assert np.all(np.abs(ours - ref) <= np.maximum(6e-5, 2e-3 * np.abs(ref))), col
    ref = df["theta"].to_numpy()
    ok = np.abs(g.theta_per_day - ref) <= np.maximum(6e-5, 2e-3 * np.abs(ref))
    assert ok.mean() > 0.97  # Deribit's snapshot theta deviates for a few short-dated wings


@pytest.mark.parametrize("f,k,t,vol,call", [
    (100.0, 300.0, 1 / 365, 0.8, True),        # deep OTM, one day: price ~1e-70 would underflow
    (60_000.0, 90_000.0, 7 / 365, 0.6, True),  # 50 % OTM weekly
    (60_000.0, 20_000.0, 0.02, 0.9, False),    # deep OTM put
    (60_000.0, 30_000.0, 0.5, 0.7, True),      # deep ITM call (through parity)
    (100.0, 100.0, 1 / (365 * 24), 0.5, False),  # one hour ATM
])
def test_implied_vol_recovers_sigma_in_hard_corners(f: float, k: float, t: float, vol: float,
                                                    call: bool) -> None:
    p = float(black76_price(f, k, t, vol, call))
    if p < 1e-300 * f:
        pytest.fail("test case must have a representable price")
    assert implied_vol(p, f, k, t, call) == pytest.approx(vol, rel=1e-8)


def test_implied_vol_outside_bounds_is_nan() -> None:
    assert np.isnan(implied_vol(0.0, 100.0, 120.0, 0.5, True))
    assert np.isnan(implied_vol(101.0, 100.0, 120.0, 0.5, True))   # above F
    assert np.isnan(implied_vol(5.0, 100.0, 90.0, 0.5, True))      # below intrinsic
