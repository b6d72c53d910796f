"""deribit-standard and deribit-pm adapters: formulas by hand, conventions, refusals."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from marginproof.config.params import config_dir, load_toml
from marginproof.errors import InputError, UnsupportedInstrumentError
from marginproof.instruments.portfolio import Portfolio
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.presets.deribit_pm import DeribitPMModel
from marginproof.models.presets.deribit_standard import DeribitStandardModel
from marginproof.pricing._black76_reference import price as b76
from tests.unit.presets.conftest import EXP, EXP_NAME, T0

CALL = f"BTC-{EXP_NAME}-110000-C"
PUT = f"BTC-{EXP_NAME}-90000-P"
TAU = (EXP - T0).total_seconds() / (365 * 86400)


def params(name: str) -> dict[str, Any]:
    return load_toml(config_dir() / "presets" / f"{name}.toml")


# -- deribit-standard -----------------------------------------------------------------------
def test_inverse_future_margin_is_quadratic_in_coin_size(deribit_market: MarketSnapshot) -> None:
    q_usd = 40 * 98_050.0  # 40 BTC of the perpetual
    r = DeribitStandardModel().margin(Portfolio.of({"BTC-PERPETUAL": -q_usd}), deribit_market)
    assert r.currency == "BTC"
    assert r.initial_margin == pytest.approx(40 * 0.022, rel=1e-12)  # 2.2 % at 40 BTC
    assert r.maintenance_margin == pytest.approx(40 * 0.012, rel=1e-12)


def test_short_call_uses_quoted_coin_mark(deribit_market: MarketSnapshot) -> None:
    r = DeribitStandardModel().margin(Portfolio.of({CALL: -2.0}), deribit_market)
    s, k, mark = 98_000.0, 110_000.0, 0.012
    assert r.initial_margin == pytest.approx(2 * (max(0.15 - (k - s) / s, 0.10) + mark))
    assert r.maintenance_margin == pytest.approx(2 * (0.075 + mark))


def test_short_put_prices_its_mark_from_vol_and_forward(deribit_market: MarketSnapshot) -> None:
    r = DeribitStandardModel().margin(Portfolio.of({PUT: -1.0}), deribit_market)
    mark = b76(98_400.0, 90_000.0, TAU, 0.58, False, 1.0) / 98_400.0
    s = 98_000.0
    mm = max(0.075, 0.075 * mark) + mark
    im = max(max(0.15 - (s - 90_000.0) / s, 0.10) + mark, mm)
    assert r.initial_margin == pytest.approx(im, rel=1e-12)
    assert r.maintenance_margin == pytest.approx(mm, rel=1e-12)


def test_long_options_and_settled_contracts_carry_no_margin(
        deribit_market: MarketSnapshot) -> None:
    book = Portfolio.of({CALL: 3.0, "BTC-1JAN26-100000-C": -1.0})
    r = DeribitStandardModel().margin(book, deribit_market)
    assert r.initial_margin == 0.0 and r.maintenance_margin == 0.0
    assert r.details["settled_positions"] == ["BTC-1JAN26-100000-C"]


def test_mixed_currencies_are_summed_in_usd(deribit_market: MarketSnapshot) -> None:
    m = DeribitStandardModel()
    a = m.margin(Portfolio.of({"BTC-PERPETUAL": 98_050.0}), deribit_market)
    b = m.margin(Portfolio.of({"SOL_USDC-PERPETUAL": 10.0}), deribit_market)
    both = m.margin(Portfolio.of({"BTC-PERPETUAL": 98_050.0, "SOL_USDC-PERPETUAL": 10.0}),
                    deribit_market)
    assert both.currency == "USD"
    assert both.initial_margin == pytest.approx(a.initial_margin * 98_000.0
                                                + b.initial_margin, rel=1e-12)
    assert both.details["by_currency"]["BTC"]["initial_margin"] == a.initial_margin


@pytest.mark.parametrize(("name", "field_hint"), [
    ("SOL-PERPETUAL", "linear"), (f"BTC_USDC-{EXP_NAME}-100000-C", "inverse"),
    ("XRP_USDC-PERPETUAL", "XRP"),
])
def test_standard_refuses_uncovered_instruments_naming_the_field(
        deribit_market: MarketSnapshot, name: str, field_hint: str) -> None:
    with pytest.raises(UnsupportedInstrumentError) as e:
        DeribitStandardModel().margin(Portfolio.of({"BTC-PERPETUAL": 1000.0, name: -1.0}),
                                      deribit_market)
    assert e.value.field == "positions[1].instrument"
    assert field_hint in e.value.message


def test_eth_option_under_a_btc_only_table_is_refused(deribit_market: MarketSnapshot) -> None:
    p = params("deribit-standard")
    p["options"]["underlyings"] = ["BTC"]
    with pytest.raises(UnsupportedInstrumentError) as e:
        DeribitStandardModel(p).margin(Portfolio.of({f"ETH-{EXP_NAME}-3000-P": -1.0}),
                                       deribit_market)
    assert e.value.field == "positions[0].instrument" and "ETH" in e.value.message


def test_missing_future_mark_is_an_input_error(deribit_market: MarketSnapshot) -> None:
    with pytest.raises(InputError) as e:
        DeribitStandardModel().margin(Portfolio.of({"BTC-26JUN26": 1000.0}), deribit_market)
    assert e.value.field == "mark_prices.BTC-26JUN26"


# -- deribit-pm -----------------------------------------------------------------------------
def test_inverse_option_vector_revalues_in_coin(deribit_market: MarketSnapshot) -> None:
    p = params("deribit-pm")
    p["general"]["extended_moves"] = []
    r = DeribitPMModel(p).margin(Portfolio.of({CALL: -1.0}), deribit_market)
    j = r.scenario_labels.index("move +16.0%, vol up")
    f0, f1 = 98_400.0, 98_400.0 * 1.16
    dte = TAU * 365
    vol = max(0.52 * (1 + 0.5 * (30 / dte) ** 0.13), 0.5)
    expected = -(b76(f1, 110_000.0, TAU, vol, True) / f1 - b76(f0, 110_000.0, TAU, 0.52, True)
                 / f0)
    assert r.scenario_pnl[j, 0] == pytest.approx(expected, rel=1e-12)
    assert r.initial_margin == pytest.approx(-r.scenario_pnl[:27, 0].min(), rel=1e-12)


def test_roll_shock_uses_the_annualised_branch_for_long_dated_futures(
        deribit_market: MarketSnapshot) -> None:
    far = "BTC-25DEC26"
    mkt = MarketSnapshot(T0, {"BTC": 98_000.0}, mark_prices={far: 101_000.0})
    r = DeribitPMModel().margin(Portfolio.of({far: 101_000.0 * 2}), mkt)
    tau = (EXP.replace(month=12, day=25, year=2026) - T0).total_seconds() / (365 * 86400)
    roll = r.details["by_currency"]["BTC"]["roll_shock_by_position"][far]
    assert roll == pytest.approx(2 * 0.075 * tau, rel=1e-12)


def test_mmp_and_open_orders_add_to_im_only(deribit_market: MarketSnapshot) -> None:
    book = Portfolio.of({"BTC-PERPETUAL": 98_050.0})
    base = DeribitPMModel().margin(book, deribit_market)
    extra = Portfolio(book.positions, preset_inputs={"mmp_margin": {"BTC": 0.05},
                                                     "open_orders_margin": {"BTC": 0.01}})
    r = DeribitPMModel().margin(extra, deribit_market)
    assert r.initial_margin == pytest.approx(base.initial_margin + 0.06, rel=1e-12)
    assert r.maintenance_margin == base.maintenance_margin


def test_long_spot_is_fully_paid_and_short_spot_refused(deribit_market: MarketSnapshot) -> None:
    for model in (DeribitStandardModel(), DeribitPMModel()):
        r = model.margin(Portfolio.of({"BTC_USDT": 2.0, "BTC-PERPETUAL": 98_050.0}),
                         deribit_market)
        alone = model.margin(Portfolio.of({"BTC-PERPETUAL": 98_050.0}), deribit_market)
        assert r.initial_margin == alone.initial_margin
        assert "BTC_USDT (spot, fully paid)" in r.details["settled_positions"]
        with pytest.raises(UnsupportedInstrumentError) as e:
            model.margin(Portfolio.of({"BTC_USDT": -2.0}), deribit_market)
        assert e.value.field == "positions[0].instrument"


@pytest.mark.parametrize("name", ["SOL_USDC-PERPETUAL", "SOL-PERPETUAL"])
def test_pm_refuses_products_without_parameters(deribit_market: MarketSnapshot,
                                                 name: str) -> None:
    with pytest.raises(UnsupportedInstrumentError) as e:
        DeribitPMModel().margin(Portfolio.of({name: 1.0}), deribit_market)
    assert e.value.field == "positions[0].instrument"


def test_pm_refuses_eth_option_under_btc_only_parameters(deribit_market: MarketSnapshot) -> None:
    p = params("deribit-pm")
    del p["pair"]["ETH"]
    with pytest.raises(UnsupportedInstrumentError) as e:
        DeribitPMModel(p).margin(Portfolio.of({f"ETH-{EXP_NAME}-3000-P": -1.0}),
                                 deribit_market)
    assert "ETH" in e.value.message


def test_pm_needs_an_implied_vol(deribit_market: MarketSnapshot) -> None:
    with pytest.raises(InputError) as e:
        DeribitPMModel().margin(Portfolio.of({f"BTC-{EXP_NAME}-95000-C": -1.0}),
                                deribit_market)
    assert e.value.field == f"implied_vols.BTC-{EXP_NAME}-95000-C"


def test_pm_refuses_books_above_the_delta_shock_threshold(
        deribit_market: MarketSnapshot) -> None:
    with pytest.raises(InputError) as e:
        DeribitPMModel().margin(Portfolio.of({"BTC-PERPETUAL": 30_000_000.0}), deribit_market)
    assert "delta_total_liq_shock_threshold" in e.value.message


def test_correlation_contingency_cannot_be_switched_on() -> None:
    p = params("deribit-pm")
    p["currency"]["BTC"]["correlation_set"] = True
    with pytest.raises(InputError) as e:
        DeribitPMModel(p)
    assert e.value.field == "params.currency.BTC.correlation_set"


def test_extended_table_only_adds_margin(deribit_market: MarketSnapshot) -> None:
    p = params("deribit-pm")
    book = Portfolio.of({CALL: -1.0, PUT: -1.0})
    with_ext = DeribitPMModel(p).margin(book, deribit_market)
    p["general"]["extended_moves"] = []
    without = DeribitPMModel(p).margin(book, deribit_market)
    assert with_ext.initial_margin >= without.initial_margin
    assert with_ext.params_hash != without.params_hash
    futures = Portfolio.of({"BTC-PERPETUAL": 98_050.0})
    a = DeribitPMModel().margin(futures, deribit_market)
    assert a.components["extended_loss"] == 0.0


def test_risk_matrix_and_binding_bucket_are_reported(deribit_market: MarketSnapshot) -> None:
    r = DeribitPMModel().margin(Portfolio.of({"BTC-PERPETUAL": -98_050.0}), deribit_market)
    rm = r.details["risk_matrix"]
    assert rm["columns"] == ["vol down", "vol none", "vol up"] and len(rm["rows"]) == 9
    vals = np.array(rm["values"])
    assert -vals.min() == pytest.approx(r.components["worst_case"])
    bucket = r.details["by_currency"]["BTC"]["risk_matrix_margin_details"]["worst_case_bucket"]
    assert bucket["side"] == "right" and bucket["bucket"] == 9
