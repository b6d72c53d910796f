"""derive-pmrm and derive-srm adapters: input mapping, sign conventions, refusals."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from marginproof.config.params import config_dir, load_toml
from marginproof.errors import InputError, UnsupportedInstrumentError
from marginproof.instruments.portfolio import Portfolio
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.presets.derive_pmrm import (
    DerivePMRMModel,
    PMRMExpiry,
    PMRMOption,
    PMRMParams,
    PMRMPortfolio,
    evaluate_pmrm,
)
from marginproof.models.presets.derive_srm import DeriveSRMModel
from tests.unit.presets.conftest import EXP, EXP_NAME, T0

C4000 = f"ETH_USDC-{EXP_NAME}-4000-C"
P3000 = f"ETH_USDC-{EXP_NAME}-3000-P"
PERP = "ETH_USDC-PERPETUAL"


def params(name: str) -> dict[str, Any]:
    return load_toml(config_dir() / "presets" / f"{name}.toml")


def upstream_test_18_market() -> MarketSnapshot:
    """Upstream case test_18 (OTM call spread) placed on a real 08:00 expiry."""
    ts = EXP - timedelta(seconds=794852)
    return MarketSnapshot(
        ts, {"ETH": 2681.6029850999994}, forwards={"ETH": {EXP: 2682.9997436016715}},
        implied_vols={f"ETH_USDC-{EXP_NAME}-4000-C": 0.8795543651099665,
                      f"ETH_USDC-{EXP_NAME}-4200-C": 0.8833255402190362},
        rates={"ETH": 0.15000000000000002},
        preset_inputs={"stable_price": 1.00019088635, "confidences": {"vol": {
            f"ETH_USDC-{EXP_NAME}-4000-C": 0.95, f"ETH_USDC-{EXP_NAME}-4200-C": 0.95}}})


def test_pmrm_adapter_reproduces_upstream_case_through_portfolio_and_market() -> None:
    book = Portfolio.of({f"ETH_USDC-{EXP_NAME}-4000-C": -1.0,
                         f"ETH_USDC-{EXP_NAME}-4200-C": 1.0})
    r = DerivePMRMModel().margin(book, upstream_test_18_market())
    d = r.details
    assert d["derive_im_signed"] == pytest.approx(-35.75844560967082, rel=1e-9)
    assert d["derive_mm_signed"] == pytest.approx(-25.96404757080802, rel=1e-9)
    assert d["option_mtm"] == pytest.approx(-0.1944703408568294, rel=1e-9)
    # positive requirement = equity - Derive's signed balance
    assert r.initial_margin == pytest.approx(d["equity"] - d["derive_im_signed"], rel=1e-12)
    assert r.maintenance_margin == pytest.approx(d["equity"] - d["derive_mm_signed"], rel=1e-12)
    assert r.worst_scenario is not None and r.worst_scenario.label == "spot x1.18, vol up"
    assert r.scenario_pnl.sum(axis=1)[r.worst_scenario.index] == pytest.approx(
        -r.worst_scenario.loss)


def test_pmrm_cash_and_collateral_come_from_portfolio_collateral(
        derive_market: MarketSnapshot) -> None:
    book = Portfolio(Portfolio.of({C4000: -1.0}).positions,
                     collateral={"USDC": 1000.0, "USDT": 500.0})
    r = DerivePMRMModel().margin(book, derive_market)
    assert r.details["cash"] == 1000.0
    v = 500.0 * 0.9998  # stable price defaults to 1.0
    assert r.details["collateral_mtm"] == pytest.approx(v)
    assert r.details["contingencies"]["collateral_mm"] == pytest.approx(v * 0.02)
    assert "collateral:USDT" in r.position_names


def test_pmrm_perp_uses_mark_confidence_and_unrealised_pnl(
        derive_market: MarketSnapshot) -> None:
    book = Portfolio(Portfolio.of({PERP: 2.0}).positions,
                     preset_inputs={"perp_unrealised_pnl": {PERP: 10.0},
                                    "perp_unsettled_funding": {PERP: -1.0}})
    mkt = MarketSnapshot(derive_market.timestamp, derive_market.index_prices,
                         derive_market.forwards, derive_market.mark_prices,
                         preset_inputs={"confidences": {"perp": {PERP: 0.3}}})
    r = DerivePMRMModel().margin(book, mkt)
    d = r.details
    assert d["perp_value"] == 9.0 and d["min_confidence"] == 0.3
    notional = 2.0 * 3350.0
    assert d["contingencies"]["perp_confidence"] == pytest.approx(0.7 * notional)
    assert r.worst_scenario is not None
    assert r.worst_scenario.loss == pytest.approx(2.0 * 0.18 * 3351.2)  # spot x0.82


def test_pmrm_expired_option_is_kept_at_intrinsic(derive_market: MarketSnapshot) -> None:
    exp = T0 - timedelta(days=1)  # 19FEB26 08:00, settled yesterday, not yet swept
    name = "ETH_USDC-19FEB26-3000-C"
    mkt = MarketSnapshot(T0, {"ETH": 3350.0}, forwards={"ETH": {exp: 3340.0}})
    r = DerivePMRMModel().margin(Portfolio.of({name: -1.0}), mkt)
    assert r.details["option_mtm"] == pytest.approx(-340.0)


@pytest.mark.parametrize(("book", "field"), [
    ({"ETH-PERPETUAL": 100.0}, "positions[0].instrument"),
    ({f"ETH_USDC-{EXP_NAME}": 1.0}, "positions[0].instrument"),
    ({"ETH_USDC": 1.0}, "positions[0].instrument"),
    ({C4000: -1.0, f"BTC_USDC-{EXP_NAME}-90000-P": -1.0}, "positions[1].instrument"),
    ({"SOL_USDC-PERPETUAL": 1.0}, "positions[0].instrument"),
])
def test_pmrm_refuses_uncovered_books(derive_market: MarketSnapshot, book: dict[str, float],
                                      field: str) -> None:
    with pytest.raises(UnsupportedInstrumentError) as e:
        DerivePMRMModel().margin(Portfolio.of(book), derive_market)
    assert e.value.field == field


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda m: MarketSnapshot(m.timestamp, m.index_prices, {}, m.mark_prices, m.implied_vols),
     f"forwards.ETH.{EXP.isoformat().replace('+00:00', 'Z')}"),
    (lambda m: MarketSnapshot(m.timestamp, m.index_prices, m.forwards, m.mark_prices, {}),
     f"implied_vols.{C4000}"),
    (lambda m: MarketSnapshot(m.timestamp, m.index_prices, m.forwards, m.mark_prices,
                              m.implied_vols, preset_inputs={"confidences": {"vol": {C4000: 2}}}),
     f"market.preset_inputs.confidences.vol.{C4000}"),
])
def test_pmrm_missing_or_bad_market_inputs_name_the_field(
        derive_market: MarketSnapshot, mutate: Any, field: str) -> None:
    with pytest.raises(InputError) as e:
        DerivePMRMModel().margin(Portfolio.of({C4000: -1.0}), mutate(derive_market))
    assert e.value.field == field


def test_pmrm_refuses_unknown_or_negative_collateral(derive_market: MarketSnapshot) -> None:
    pos = Portfolio.of({C4000: -1.0}).positions
    with pytest.raises(InputError) as e:
        DerivePMRMModel().margin(Portfolio(pos, collateral={"DOGE": 1.0}), derive_market)
    assert e.value.field == "collateral.DOGE"
    with pytest.raises(InputError) as e:
        DerivePMRMModel().margin(Portfolio(pos, collateral={"USDT": -1.0}), derive_market)
    assert e.value.field == "collateral.USDT"


def test_pmrm_refuses_perp_inputs_for_perps_not_held(derive_market: MarketSnapshot) -> None:
    book = Portfolio(Portfolio.of({C4000: -1.0}).positions,
                     preset_inputs={"perp_unrealised_pnl": {PERP: 1.0}})
    with pytest.raises(InputError) as e:
        DerivePMRMModel().margin(book, derive_market)
    assert e.value.field == f"portfolio.preset_inputs.perp_unrealised_pnl.{PERP}"


def test_pmrm_per_underlying_override_applies_to_that_underlying_only() -> None:
    raw = params("derive-pmrm")
    raw["overrides"] = {"BTC": {"other": {"mm_perp_percent": 0.02}}}
    assert PMRMParams.from_mapping(raw, "BTC").mm_perp_percent == 0.02
    assert PMRMParams.from_mapping(raw, "ETH").mm_perp_percent == 0.015
    raw["overrides"] = {"BTC": {"other": {"typo": 1.0}}}
    with pytest.raises(InputError) as e:
        PMRMParams.from_mapping(raw, "BTC")
    assert e.value.field == "params.overrides.BTC.other.typo"


def test_pmrm_stable_depeg_raises_im_only() -> None:
    p = PMRMParams.from_mapping(params("derive-pmrm"))
    opts = (PMRMOption(3000.0, False, 0.7, -1.0),)
    pf = PMRMPortfolio(spot=3000.0, expiries=(PMRMExpiry(86400 * 10, 3000.0, opts),))
    low = PMRMPortfolio(spot=3000.0, stable_price=0.9, expiries=pf.expiries)
    a, b = evaluate_pmrm(pf, p), evaluate_pmrm(low, p)
    assert b.factor_im == pytest.approx(1.0 + 0.08 * 2.0)
    assert b.mm_requirement == pytest.approx(a.mm_requirement)
    assert b.im_requirement > a.im_requirement


def test_pmrm_basis_contingency_can_bind() -> None:
    p = PMRMParams.from_mapping(params("derive-pmrm"))
    raw = params("derive-pmrm")
    raw["scenarios"] = [{"spot_shock": 1.0, "vol_shock": "none", "dampening": 1.0}]
    only_flat = PMRMParams.from_mapping(raw)
    opts = (PMRMOption(3000.0, True, 0.7, -1.0),)
    pf = PMRMPortfolio(spot=3000.0, expiries=(PMRMExpiry(86400 * 10, 3000.0, opts),))
    out = evaluate_pmrm(pf, only_flat)
    assert out.worst_index == 1 and out.worst == out.basis_contingency < 0
    assert evaluate_pmrm(pf, p).basis_contingency == out.basis_contingency


# -- derive-srm -----------------------------------------------------------------------------
def test_srm_requirement_is_equity_minus_signed_margin(derive_market: MarketSnapshot) -> None:
    book = Portfolio(Portfolio.of({P3000: -2.0, PERP: -1.0}).positions,
                     collateral={"USDC": 5000.0, "ETH": 1.0})
    r = DeriveSRMModel().margin(book, derive_market)
    d = r.details
    assert r.initial_margin == pytest.approx(d["mark_to_market"] - d["derive_im_signed"])
    assert r.maintenance_margin == pytest.approx(d["mark_to_market"] - d["derive_mm_signed"])
    eth = d["markets"]["ETH"]
    assert eth["im_parts"]["base"] == pytest.approx(3350.0 * 0.1)
    assert eth["im_parts"]["perp"] == pytest.approx(-3351.2 * 0.065)
    assert eth["mm_parts"]["perp"] == pytest.approx(-3351.2 * 0.05)


def test_srm_margins_several_markets(derive_market: MarketSnapshot) -> None:
    book = Portfolio.of({P3000: -1.0, f"BTC_USDC-{EXP_NAME}-90000-P": -0.1})
    r = DeriveSRMModel().margin(book, derive_market)
    assert set(r.details["markets"]) == {"ETH", "BTC"}
    assert r.initial_margin == pytest.approx(sum(r.components.values()))


def test_srm_option_oracle_contingency_below_threshold(derive_market: MarketSnapshot) -> None:
    book = Portfolio.of({P3000: -2.0})
    mkt = MarketSnapshot(derive_market.timestamp, derive_market.index_prices,
                         derive_market.forwards, derive_market.mark_prices,
                         derive_market.implied_vols,
                         preset_inputs={"confidences": {"vol": {P3000: 0.3}}})
    r = DeriveSRMModel().margin(book, mkt)
    exp = r.details["markets"]["ETH"]["expiries_im"][0]
    assert exp["oracle_contingency"] == pytest.approx(-(1 - 0.3) * 0.4 * 3350.0 * 2.0)


def test_srm_refuses_collateral_it_cannot_hold(derive_market: MarketSnapshot) -> None:
    book = Portfolio(Portfolio.of({P3000: -1.0}).positions, collateral={"USDT": 10.0})
    with pytest.raises(InputError) as e:
        DeriveSRMModel().margin(book, derive_market)
    assert e.value.field == "collateral.USDT"


def test_pmrm_default_forward_split_follows_the_settlement_window() -> None:
    from marginproof.models.presets.derive_pmrm import settlement_fixed_portion

    assert settlement_fixed_portion(3000.0, 3600.0, 1800.0) == 0.0
    assert settlement_fixed_portion(3000.0, 600.0, 1800.0) == pytest.approx(2000.0)
    assert settlement_fixed_portion(3000.0, 0.0, 1800.0) == 3000.0


def test_pmrm_adapter_reproduces_upstream_post_expiry_case() -> None:
    """test_66_misc_post_expiry: an expired short call, forward fully fixed."""
    exp = EXP
    mkt = MarketSnapshot(exp, {"ETH": 2681.6029850999994},
                         forwards={"ETH": {exp: 2691.6029850999994}}, rates={"ETH": 0.22},
                         preset_inputs={"stable_price": 1.00019088635})
    r = DerivePMRMModel().margin(Portfolio.of({f"ETH_USDC-{EXP_NAME}-2500-C": -1.0}), mkt)
    assert r.details["derive_im_signed"] == pytest.approx(-205.01100002549938, rel=1e-9)
    assert r.details["derive_mm_signed"] == pytest.approx(-199.64779405529939, rel=1e-9)


def test_portfolios_with_preset_inputs_still_pickle() -> None:
    import pickle

    book = Portfolio(Portfolio.of({C4000: -1.0}).positions, collateral={"USDC": 10.0},
                     preset_inputs={"perp_unrealised_pnl": {}})
    again = pickle.loads(pickle.dumps(book))
    assert again == book and dict(again.collateral) == {"USDC": 10.0}
