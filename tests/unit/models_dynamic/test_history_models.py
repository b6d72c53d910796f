"""fhs / mc / dynamic models behind the common interface."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from marginproof.config.params import config_dir, load_toml
from marginproof.demo.book import demo_account
from marginproof.errors import InputError
from marginproof.feeds.history import fhs_asof, market_on, shipped_history
from marginproof.instruments.portfolio import Portfolio
from marginproof.models.dynamic import DynamicModel
from marginproof.models.fhs import FHSModel
from marginproof.models.montecarlo import MCModel, refit_anchor
from marginproof.models.registry import available_models, get_model


@pytest.fixture(scope="module")
def demo() -> Any:
    return demo_account()


@pytest.fixture(scope="module")
def fhs_model() -> FHSModel:
    return FHSModel(history=shipped_history())


@pytest.fixture(scope="module")
def dyn_model() -> DynamicModel:
    return DynamicModel(history=shipped_history())


def test_models_are_registered() -> None:
    for name in ("fhs", "mc", "dynamic"):
        assert name in available_models()
    assert isinstance(get_model("fhs"), FHSModel)


def test_fhs_model_on_a_spot_position_is_the_spec_fhs(fhs_model: FHSModel) -> None:
    h = shipped_history()
    mkt = market_on(h, "2022-06-13", ["BTC"])
    r = fhs_model.margin(Portfolio.of({"BTC_USDT": 2.0}), mkt)
    est = fhs_asof("BTCUSDT", "2022-06-13", 2.0)
    assert r.initial_margin == pytest.approx(est.es, rel=1e-12)
    assert r.details["portfolio_measures"]["var_0.99"] == pytest.approx(est.var, rel=1e-12)
    assert r.details["asof_date"] == "2022-06-13"
    assert r.maintenance_margin == pytest.approx(0.75 * r.initial_margin)
    assert r.scenario_pnl.shape == (500, 1)


def test_fhs_result_is_traceable_and_contributions_add_up(fhs_model: FHSModel, demo: Any
                                                          ) -> None:
    acct, mkt = demo
    r = fhs_model.margin(acct.portfolio, mkt)
    assert r.model == "fhs" and len(r.params_hash) == 64
    assert r.market_timestamp == mkt.timestamp
    assert r.contributions.sum() == pytest.approx(r.initial_margin, rel=1e-10)
    assert r.components["scenario_risk"] == pytest.approx(r.initial_margin)
    rm = r.details["risk_matrix"]
    assert len(rm["rows"]) == 10 and len(rm["values"][0]) == len(rm["columns"])
    json.dumps(r.to_dict(include_scenarios=True))


def test_no_cross_offset_is_the_sum_per_underlying(demo: Any) -> None:
    acct, mkt = demo
    p = load_toml(config_dir() / "models" / "fhs.toml")
    p["risk"]["cross_underlying_offset"] = False
    sep = FHSModel(p, history=shipped_history()).margin(acct.portfolio, mkt)
    joint = FHSModel(history=shipped_history()).margin(acct.portfolio, mkt)
    assert sep.initial_margin == pytest.approx(sep.components["scenario_risk:BTC"]
                                               + sep.components["scenario_risk:ETH"])
    assert joint.initial_margin <= sep.initial_margin


def test_iv_shocks_change_option_risk(demo: Any) -> None:
    acct, mkt = demo
    p = load_toml(config_dir() / "models" / "fhs.toml")
    p["iv"]["shocks"] = False
    off = FHSModel(p, history=shipped_history()).margin(acct.portfolio, mkt)
    on = FHSModel(history=shipped_history()).margin(acct.portfolio, mkt)
    assert off.initial_margin != pytest.approx(on.initial_margin)


def test_dynamic_components_add_up_to_im(dyn_model: DynamicModel, demo: Any) -> None:
    acct, mkt = demo
    r = dyn_model.margin(acct.portfolio, mkt)
    c = r.components
    assert set(c) == {"core", "apc_adjustment", "stress_floor", "liquidity", "concentration",
                      "funding"}
    assert sum(c.values()) == pytest.approx(r.initial_margin)
    assert all(v >= 0 for k, v in c.items() if k != "apc_adjustment")
    assert r.details["apc_floor"]["n_returns"]["BTC"] == 3652
    assert set(r.details["addons"]["funding"]) == {"BTC-PERPETUAL", "ETH_USDC-PERPETUAL"}
    assert r.details["stress"]["n_historical"] > 0
    json.dumps(r.to_dict())


def test_dynamic_fhs_core_equals_the_fhs_model(dyn_model: DynamicModel, fhs_model: FHSModel,
                                               demo: Any) -> None:
    acct, mkt = demo
    assert dyn_model.margin(acct.portfolio, mkt).components["core"] == pytest.approx(
        fhs_model.margin(acct.portfolio, mkt).initial_margin)


def test_ten_year_sigma_uses_the_long_btc_file(dyn_model: DynamicModel) -> None:
    asof = np.datetime64("2022-06-13")
    s, n = dyn_model.sigma_10y("BTC", asof)
    long = shipped_history().long_closes["BTC"].upto(asof)
    _, r = long.log_returns()
    assert n == 3652 and s == np.std(r[-3652:], ddof=1)
    _, n_eth = dyn_model.sigma_10y("ETH", asof)
    assert n_eth < 3652  # shorter than ten years: uses what exists, and says so


def test_not_enough_history_is_an_input_error(fhs_model: FHSModel) -> None:
    mkt = market_on(shipped_history(), "2020-12-01", ["SOL"])
    with pytest.raises(InputError):
        fhs_model.margin(Portfolio.of({"SOL_USDT": 1.0}), mkt)


def test_unknown_underlying_is_an_input_error(fhs_model: FHSModel, demo: Any) -> None:
    _, mkt = demo
    with pytest.raises(InputError):
        fhs_model.margin(Portfolio.of({"DOGE_USDT": 1.0}), mkt.with_index(DOGE=0.1))


@pytest.mark.parametrize(("section", "key", "value"), [
    ("fhs", "lambda", 1.5), ("fhs", "window", 10), ("risk", "conf_es", 97.5),
    ("risk", "measure", "cvar"), ("apc", "stressed_weight", 0.1), ("core", "method", "hs"),
    ("addons", "liquidity", {"y": -1.0}), ("addons", "funding", {"conf": 99.0}),
])
def test_bad_parameters_name_the_field(section: str, key: str, value: object) -> None:
    p = load_toml(config_dir() / "models" / "dynamic.toml")
    p[section][key] = value
    with pytest.raises(InputError) as exc:
        DynamicModel(p, history=shipped_history())
    assert section in exc.value.field


def test_stale_history_is_refused_by_default_and_the_limit_is_a_parameter() -> None:
    from datetime import UTC, datetime

    from marginproof.market.snapshot import MarketSnapshot
    from marginproof.models._history import DEFAULT_MAX_HISTORY_LAG_DAYS

    mkt = MarketSnapshot(datetime(2026, 11, 25, tzinfo=UTC), {"BTC": 90_000.0})
    pf = Portfolio.of({"BTC_USDT": 1.0})
    with pytest.raises(InputError) as exc:  # data end 2026-05-16, as-of 2026-11-24
        FHSModel(history=shipped_history()).margin(pf, mkt)
    assert exc.value.field == "market.timestamp" and "stale" in exc.value.message
    assert f"max_history_lag_days = {DEFAULT_MAX_HISTORY_LAG_DAYS}" in exc.value.message
    p = load_toml(config_dir() / "models" / "fhs.toml")
    assert "max_history_lag_days" not in p["risk"]  # the shipped file keeps the code default
    p["risk"]["max_history_lag_days"] = 365
    r = FHSModel(p, history=shipped_history()).margin(pf, mkt)
    assert r.details["history_lag_days"] == 192
    assert "192 days" in r.details["warnings"][0]
    p["risk"]["max_history_lag_days"] = 3
    few = MarketSnapshot(datetime(2026, 5, 22, tzinfo=UTC), {"BTC": 90_000.0})  # lag 5
    with pytest.raises(InputError) as exc:
        FHSModel(p, history=shipped_history()).margin(pf, few)
    assert exc.value.field == "market.timestamp" and "= 3)" in exc.value.message
    r = FHSModel(history=shipped_history()).margin(pf, few)
    assert r.details["history_lag_days"] == 5 and len(r.details["warnings"]) == 1
    p["risk"]["max_history_lag_days"] = -1
    with pytest.raises(InputError) as exc:
        FHSModel(p, history=shipped_history())
    assert exc.value.field == "params.risk.max_history_lag_days"


@pytest.mark.parametrize("cls", [FHSModel, DynamicModel])
def test_live_vols_exempt_an_underlying_from_the_lag_limit(cls: Any) -> None:
    """Bound to a live state that carries BTC's vols (the engine's), the model margins a
    market past the limit: the live EWMA replaces the stale history's recent vol."""
    from datetime import UTC, datetime

    from marginproof.market.snapshot import MarketSnapshot
    from marginproof.risk.live import RiskFactorState, UnderlyingVol

    mkt = MarketSnapshot(datetime(2026, 11, 25, tzinfo=UTC), {"BTC": 90_000.0, "ETH": 3_000.0})
    model = cls(history=shipped_history())
    asof = np.datetime64("2026-11-24")
    s, iv = model.daily_vols("BTC", asof) if cls is FHSModel else \
        model.core_model.daily_vols("BTC", asof)
    vol = UnderlyingVol(1.5 * s, iv, s, iv, str(asof), 0, 90_000.0)
    state = RiskFactorState(int(mkt.timestamp.timestamp() * 1000), 3_600_000, 0.94,
                            {"BTC": vol})
    live = model.with_factors(state)
    r = live.margin(Portfolio.of({"BTC-PERPETUAL": 100_000.0}), mkt)
    assert r.initial_margin > 0.0 and r.details["history_lag_days"] == 192
    assert "live risk-factor state" in r.details["warnings"][0]
    with pytest.raises(InputError):  # ETH has no live vols in the state
        live.margin(Portfolio.of({"BTC-PERPETUAL": 100_000.0, "ETH_USDC-PERPETUAL": 1.0}), mkt)
    with pytest.raises(InputError):
        model.margin(Portfolio.of({"BTC-PERPETUAL": 100_000.0}), mkt)


def test_empty_portfolio_has_zero_margin(fhs_model: FHSModel, demo: Any) -> None:
    _, mkt = demo
    r = fhs_model.margin(Portfolio(()), mkt)
    assert r.initial_margin == 0.0 and r.scenario_pnl.shape == (0, 0)


def test_refit_anchor_is_on_schedule() -> None:
    a = refit_anchor(np.datetime64("2022-04-14"), 30)
    assert a <= np.datetime64("2022-04-14")
    assert int((a - np.datetime64("1970-01-01")).astype(int)) % 30 == 0
    assert refit_anchor(a, 30) == a


def test_mc_model_is_seeded_and_reports_standard_errors(demo: Any) -> None:
    acct, mkt = demo
    p = load_toml(config_dir() / "models" / "mc.toml")
    p["mc"]["marginal"] = "ewma_t"  # the GARCH path is covered by the property tests
    p["mc"]["log2_points"] = 8
    a = MCModel(p, history=shipped_history()).margin(acct.portfolio, mkt)
    b = MCModel(p, history=shipped_history()).margin(acct.portfolio, mkt)
    assert a.initial_margin == b.initial_margin
    se = a.details["mc_standard_errors"]["es_0.975"]
    assert 0 < se < 0.2 * a.initial_margin
    assert len(a.scenario_labels) == 8 * 2 ** 8 * 2
    assert a.details["scenario_set"]["copula_factors"] == [
        "BTC", "ETH", "SOL", "BTC:iv", "ETH:iv", "SOL:iv"]
    p["mc"]["seed"] = 7
    c = MCModel(p, history=shipped_history()).margin(acct.portfolio, mkt)
    assert c.initial_margin != a.initial_margin
    assert c.initial_margin == pytest.approx(a.initial_margin, rel=0.15)


def test_margin_path_applies_the_release_buffer(dyn_model: DynamicModel) -> None:
    h = shipped_history()
    days = np.arange(np.datetime64("2022-05-01"), np.datetime64("2022-05-15"))
    mkts = [market_on(h, d, ["BTC"]) for d in days]
    base, called = dyn_model.margin_path(Portfolio.of({"BTC_USDT": 1.0}), mkts)
    assert np.all(called >= base - 1e-9) and np.all(called <= 1.25 * base + 1e-9)
    assert called[0] == pytest.approx(1.25 * base[0])
