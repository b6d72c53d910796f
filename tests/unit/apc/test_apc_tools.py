"""APC tools and procyclicality metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginproof.apc import (
    apc_report,
    buffer_static,
    buffer_with_release,
    floor_var_long,
    floor_var_short,
    procyclicality_metrics,
    sigma_10y,
    stressed_weight,
)
from marginproof.errors import InputError

SERIES = st.lists(st.floats(0.01, 1e6, allow_nan=False), min_size=1, max_size=60)


def test_buffer_with_release_hand_example() -> None:
    m = np.array([100.0, 110.0, 130.0, 120.0, 90.0, 100.0])
    # A0 = 125; A1 = max(110, min(137.5, 125)) = 125; A2 = max(130, min(162.5, 125)) = 130;
    # A3 = max(120, min(150, 130)) = 130; A4 = max(90, min(112.5, 130)) = 112.5;
    # A5 = max(100, min(125, 112.5)) = 112.5
    np.testing.assert_allclose(buffer_with_release(m), [125, 125, 130, 130, 112.5, 112.5])
    np.testing.assert_allclose(buffer_static(m), 1.25 * m)


@settings(max_examples=200, deadline=None)
@given(SERIES)
def test_buffer_bounds_and_never_rises_faster_than_base(values: list[float]) -> None:
    m = np.array(values)
    a = buffer_with_release(m)
    assert np.all(a >= m * (1 - 1e-12)) and np.all(a <= 1.25 * m * (1 + 1e-12))
    inc_a = np.diff(a)
    inc_m = np.diff(m)
    assert np.all(inc_a <= np.maximum(inc_m, 0.0) + 1e-9 * np.maximum(a[1:], 1.0))


@settings(max_examples=100, deadline=None)
@given(SERIES, st.floats(0.0, 0.5))
def test_speed_limited_buffer_stays_in_bounds(values: list[float], g: float) -> None:
    m = np.array(values)
    a = buffer_with_release(m, 0.25, g)
    assert np.all(a >= m * (1 - 1e-12)) and np.all(a <= 1.25 * m * (1 + 1e-12))
    rises = a[1:] > a[:-1] * (1 + g) * (1 + 1e-12)
    assert np.all(a[1:][rises] == pytest.approx(m[1:][rises]))  # only when the base forces it


def test_zero_speed_is_the_spec_release_buffer() -> None:
    m = np.random.default_rng(0).lognormal(size=50)
    np.testing.assert_array_equal(buffer_with_release(m, 0.25, 0.0), buffer_with_release(m))


def test_stressed_weight() -> None:
    np.testing.assert_allclose(stressed_weight([100.0, 200.0], 400.0), [175.0, 250.0])
    with pytest.raises(InputError):
        stressed_weight([1.0], 1.0, 1.5)


def test_ten_year_sigma_and_floor_formula() -> None:
    r = np.random.default_rng(1).normal(0, 0.04, 4000)
    assert sigma_10y(r) == pytest.approx(np.std(r[-3652:], ddof=1))
    with pytest.raises(InputError):
        sigma_10y(r[:3000])
    z = 2.3263478740408408
    assert floor_var_long(50_000.0, 0.04) == pytest.approx(50_000 * (1 - math.exp(-z * 0.04)))
    assert floor_var_short(50_000.0, 0.04) == pytest.approx(50_000 * (math.exp(z * 0.04) - 1))


def test_procyclicality_metrics_hand_example() -> None:
    m = np.array([100.0, 150.0, 120.0, 240.0, 60.0, 90.0])
    pm = procyclicality_metrics(m, horizons=(1, 2))
    assert pm.peak_to_trough == pytest.approx(4.0)
    assert pm.max_increase_ratio[1] == pytest.approx(2.0)      # 120 -> 240
    assert pm.max_increase_abs[1] == pytest.approx(120.0)
    assert pm.max_increase_ratio[2] == pytest.approx(1.6)      # 150 -> 240
    assert pm.max_increase_abs[2] == pytest.approx(90.0)
    assert pm.cost == 1.0


def test_report_includes_cost_and_rejects_gappy_dates() -> None:
    m = np.linspace(100, 200, 40)
    rep = apc_report(m, {"static": buffer_static(m)})
    assert rep["static"]["cost_avg_A_over_M"] == pytest.approx(1.25)
    assert math.isnan(rep["base"]["max_30d_ratio"]) is False
    d = np.arange(np.datetime64("2022-01-01"), np.datetime64("2022-01-11"))
    with pytest.raises(InputError):
        procyclicality_metrics(np.ones(10), dates=d[::-1])


def test_ten_year_floor_asof_uses_the_bitstamp_coinbase_file() -> None:
    from marginproof.feeds.history import ten_year_floor_asof
    from marginproof.io import datasets

    s, floor = ten_year_floor_asof("2022-06-13")
    long = datasets.load_btc_long_daily()
    c = long[long["date"] <= "2022-06-13"]["close"].to_numpy()
    r = np.log(c[1:] / c[:-1])
    assert s == np.std(r[-3652:], ddof=1)
    assert floor == pytest.approx(floor_var_long(c[-1], s))
    with pytest.raises(InputError):
        ten_year_floor_asof("2013-01-01")  # fewer than 3652 returns before it
