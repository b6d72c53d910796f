import math

import numpy as np
import pytest

from marginproof.config.params import config_dir, load_toml
from marginproof.errors import InputError
from marginproof.instruments import Portfolio
from marginproof.models import available_models, get_model
from marginproof.models.grid import GridModel
from tests.factories import CALL, PUT, hedged_book, naked_book, sample_market


def test_grid_margin_of_hedged_book_is_far_below_standard_margin() -> None:
    m = sample_market()
    grid = get_model("grid").margin(hedged_book(), m)
    std = get_model("standard").margin(hedged_book(), m)
    assert grid.initial_margin < 0.05 * std.initial_margin
    assert std.initial_margin > 0


def test_result_carries_traceability_fields() -> None:
    m = sample_market()
    r = get_model("grid").margin(naked_book(), m)
    assert r.model == "grid" and len(r.params_hash) == 64
    assert r.market_timestamp == m.timestamp and r.currency == "USD"
    assert r.scenario_pnl.shape == (len(r.scenario_labels), 2)
    assert r.maintenance_margin <= r.initial_margin
    with pytest.raises(ValueError):
        r.scenario_pnl[0, 0] = 1.0  # frozen arrays


def test_grid_im_is_the_worst_scenario_loss() -> None:
    r = get_model("grid").margin(naked_book(), sample_market())
    total = r.scenario_pnl.sum(axis=1)
    assert math.isclose(r.initial_margin, -total.min(), rel_tol=1e-12)
    assert math.isclose(r.contributions.sum(), r.initial_margin, rel_tol=1e-12)
    assert r.worst_scenario is not None and r.worst_scenario.index == int(np.argmin(total))


def test_grid_has_63_scenarios_by_default() -> None:
    assert len(GridModel().scenario_labels()) == 63


def test_grid_margin_is_homogeneous_in_position_size() -> None:
    m = sample_market()
    a = get_model("grid").margin(naked_book(), m).initial_margin
    b = get_model("grid").margin(naked_book().scaled(3.0), m).initial_margin
    assert math.isclose(b, 3.0 * a, rel_tol=1e-10)


def test_no_cross_underlying_offset_by_default() -> None:
    m = sample_market()
    btc = Portfolio.of([("BTC_USDC-PERPETUAL", 1.0)])
    eth = Portfolio.of([("ETH_USDC-PERPETUAL", -30.0)])
    g = get_model("grid")
    both = g.margin(btc + eth, m).initial_margin
    assert math.isclose(both, g.margin(btc, m).initial_margin + g.margin(eth, m).initial_margin)


def test_linear_perp_grid_margin_is_range_times_notional() -> None:
    r = get_model("grid").margin(Portfolio.of([("BTC_USDC-PERPETUAL", 2.0)]), sample_market())
    assert math.isclose(r.initial_margin, 2.0 * 90_000.0 * 0.16, rel_tol=1e-12)


def test_changing_a_parameter_changes_the_hash(tmp_path) -> None:
    params = load_toml(config_dir() / "models" / "grid.toml")
    params["maintenance"]["mm_fraction"] = 0.7
    g2 = GridModel(params)
    assert g2.params_hash != GridModel().params_hash
    r = g2.margin(naked_book(), sample_market())
    assert math.isclose(r.maintenance_margin, 0.7 * r.initial_margin)


def test_bad_parameter_is_named() -> None:
    params = load_toml(config_dir() / "models" / "grid.toml")
    params["grid"]["price_range"]["BTC"] = 1.5
    with pytest.raises(InputError, match="price_range.BTC"):
        GridModel(params)


def test_standard_short_call_follows_the_otm_formula() -> None:
    m = sample_market()
    r = get_model("standard").margin(Portfolio.of([("BTC-27DEC26-100000-C", -1.0)]), m)
    book_mark = get_model("grid").margin(Portfolio.of([("BTC-27DEC26-100000-C", 1.0)]), m)
    assert book_mark.initial_margin >= 0
    s, k = 90_000.0, 100_000.0
    # IM = max(0.15 - OTM/S, 0.10) * S + mark (USD per coin)
    from marginproof.instruments.resolved import resolve
    mark = resolve(Portfolio.of([("BTC-27DEC26-100000-C", -1.0)]), m).mark_usd[0]
    assert math.isclose(r.initial_margin, max(0.15 - (k - s) / s, 0.10) * s + mark)


def test_standard_futures_tiers_are_marginal() -> None:
    m = sample_market()
    q = 2_000_000.0  # USD face of the inverse perp -> notional 2e6 USD
    r = get_model("standard").margin(Portfolio.of([("BTC-PERPETUAL", q)]), m)
    assert math.isclose(r.initial_margin, 1e6 * 0.02 + 1e6 * 0.04)


def test_long_options_need_no_standard_margin() -> None:
    r = get_model("standard").margin(Portfolio.of([(CALL, 5.0), (PUT, 5.0)]), sample_market())
    assert r.initial_margin == 0.0


@pytest.mark.parametrize("name", available_models())
def test_every_model_reports_mm_not_above_im(name: str) -> None:
    try:
        r = get_model(name).margin(naked_book(), sample_market())
    except InputError:
        return  # a preset that does not cover this book must say so, which it did
    assert 0 <= r.maintenance_margin <= r.initial_margin or r.currency != "USD"
    assert r.model == name and len(r.params_hash) == 64


def test_unknown_model_is_rejected() -> None:
    with pytest.raises(InputError, match="unknown model"):
        get_model("nope")


def test_greeks_aggregate_by_underlying_and_bucket() -> None:
    r = get_model("grid").margin(hedged_book(), sample_market())
    frame = r.greeks.to_frame()
    assert set(frame["expiry_bucket"]) == {"none", "30d-90d"}
    # conversion: option delta cancels the perp delta (both in BTC)
    tot = r.greeks.by_underlying()["BTC"]
    assert abs(tot["delta_coin"]) < 0.01 * 10
    assert abs(tot["vega_usd_per_vol_point"]) < 1e-9
