"""Add-ons: square-root impact, book walk, Y calibration, concentration, funding."""

from __future__ import annotations

import numpy as np
import pytest

from marginproof.addons import (
    FundingStats,
    book_walk_cost,
    calibrate_impact,
    concentration_addon,
    funding_addon,
    funding_stats,
    liquidation_cost,
    option_half_spread_vol_points,
    sqrt_impact_cost,
)
from marginproof.addons.concentration import size_ratio
from marginproof.errors import InputError


def test_sqrt_impact_formula() -> None:
    q, p, s, sd, adv, y = 100.0, 50_000.0, 2e-4, 0.03, 40_000.0, 0.7
    expected = q * p * s / 2 + y * sd * p * q * np.sqrt(q / adv)
    assert float(sqrt_impact_cost(q, p, s, sd, adv, y)) == pytest.approx(expected)
    assert float(sqrt_impact_cost(q, p, s, sd, adv, y, horizon_days=2.0)) == pytest.approx(
        q * p * s / 2 + y * sd * p * q * np.sqrt(q / (2 * adv)))


def test_sqrt_impact_zero_symmetric_and_concave_per_unit() -> None:
    f = lambda q: float(sqrt_impact_cost(q, 100.0, 0.0, 0.05, 1e4, 1.0))  # noqa: E731
    assert f(0.0) == 0.0
    assert f(-50.0) == f(50.0)
    # impact per unit grows like |q|^(1/2): doubling size multiplies it by sqrt(2)
    assert (f(200.0) / 200.0) / (f(100.0) / 100.0) == pytest.approx(np.sqrt(2.0))


def test_sqrt_impact_rejects_bad_inputs() -> None:
    with pytest.raises(InputError):
        sqrt_impact_cost(1.0, 100.0, 0.0, 0.05, 0.0)
    with pytest.raises(InputError):
        sqrt_impact_cost(1.0, -1.0, 0.0, 0.05, 1.0)


BIDS = (np.array([99.0, 98.0, 97.0]), np.array([1.0, 2.0, 3.0]))
ASKS = (np.array([101.0, 102.0, 103.0]), np.array([1.0, 1.0, 1.0]))


def test_book_walk_sells_into_bids_and_buys_from_asks() -> None:
    cost, left = book_walk_cost(2.0, *BIDS, *ASKS)  # 1 @ 99, 1 @ 98 vs mid 100
    assert cost == pytest.approx(1 * 1 + 1 * 2) and left == 0.0
    cost, left = book_walk_cost(-2.5, *BIDS, *ASKS)
    assert cost == pytest.approx(1 + 2 + 0.5 * 3) and left == 0.0
    _, left = book_walk_cost(-5.0, *BIDS, *ASKS)
    assert left == pytest.approx(2.0)


def test_liquidation_cost_falls_back_without_or_beyond_the_book() -> None:
    book = (BIDS[0], BIDS[1], ASKS[0], ASKS[1])
    assert liquidation_cost(2.0, 100.0, 0.02, 0.05, 10.0, 1.0, 1.0, book) == pytest.approx(3.0)
    model = float(sqrt_impact_cost(9.0, 100.0, 0.02, 0.05, 10.0, 1.0))
    assert liquidation_cost(9.0, 100.0, 0.02, 0.05, 10.0, 1.0, 1.0, book) == pytest.approx(model)
    assert liquidation_cost(2.0, 100.0, 0.02, 0.05, 10.0, 1.0) == pytest.approx(
        float(sqrt_impact_cost(2.0, 100.0, 0.02, 0.05, 10.0, 1.0)))


def test_calibration_recovers_y_from_a_square_root_book() -> None:
    # a book whose walk cost is exactly Y sigma P q sqrt(q/ADV): marginal cost 1.5 Y sigma P
    # sqrt(q/ADV) at cumulative size q -> price levels at those marginal prices
    y, sd, adv, mid = 0.8, 0.04, 10_000.0, 100.0
    cum = np.linspace(0.01, 50.0, 5000)
    size = np.diff(np.concatenate([[0.0], cum]))
    dist = 1.5 * y * sd * mid * np.sqrt(cum / adv)
    cal = calibrate_impact(mid - dist, size, mid + dist, size, 0.0, sd, adv)
    assert cal.y == pytest.approx(y, rel=0.01) and cal.r2 > 0.999


def test_shipped_book_calibration_is_order_one() -> None:
    from marginproof.io import datasets

    b = datasets.load_depth_snapshot()
    bids = b[b["side"] == "bid"].sort_values("price", ascending=False)
    asks = b[b["side"] == "ask"].sort_values("price")
    cal = calibrate_impact(bids["price"], bids["qty_btc"], asks["price"], asks["qty_btc"],
                           1.6e-6, 0.0406, 611_373.0)  # ADV of the perp from the trade sample
    assert 0.5 < cal.y < 2.0 and cal.r2 > 0.9


def test_option_half_spread_in_vol_points() -> None:
    assert option_half_spread_vol_points([0.01], [0.012], [50_000.0], [100.0]) == \
        pytest.approx(0.001 * 50_000 / 100)
    with pytest.raises(InputError):
        option_half_spread_vol_points([0.0], [0.0], [1.0], [1.0])


def test_concentration_addon() -> None:
    assert float(concentration_addon(1000.0, 0.005, 0.01, 1.0)) == 0.0
    assert float(concentration_addon(1000.0, 0.11, 0.01, 2.0)) == pytest.approx(200.0)
    assert float(size_ratio(-50.0, 1000.0, 2.0)) == pytest.approx(0.025)


def test_funding_stats_and_paying_side() -> None:
    rates = np.r_[np.full(900, 1e-4), np.full(100, 2e-3), np.full(100, -1e-3)]
    st = funding_stats(rates, lookback=1100, n_expected=90, conf=0.99)
    assert st.expected_rate == pytest.approx(-1e-3)
    assert st.stressed_long_rate == pytest.approx(2e-3)
    assert st.stressed_short_rate == pytest.approx(-1e-3)
    exp_long, stress_long = funding_addon(10_000.0, st, 1.0)
    assert stress_long == pytest.approx(10_000 * 2e-3 * 3)
    assert exp_long == pytest.approx(10_000 * -1e-3 * 3)
    _, stress_short = funding_addon(-10_000.0, st, 2.0)
    assert stress_short == pytest.approx(10_000 * 1e-3 * 6)
    calm = FundingStats(1e-4, 1e-4, 1e-5, 10)
    assert funding_addon(-1000.0, calm, 1.0)[1] == 0.0  # shorts receive even when stressed
    assert funding_addon(1000.0, calm, 1.0, current_rate=3e-3)[1] == pytest.approx(9.0)
    with pytest.raises(InputError):
        funding_stats([], 10)
