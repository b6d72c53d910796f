"""Golden: Deribit's published numbers.

* ``deribit-pm``: the ``private/pme/simulate`` response example of the Deribit API reference
  (BTC, 2024-06-17: BTC-PERPETUAL 0.314538364 BTC, BTC-28JUN24 -0.001187534 BTC) and a public
  mainnet ETH response (2026-02-15: ETH-PERPETUAL -0.999487053 ETH), each with the model
  parameters of its own response. Deribit prints the margins rounded (IM to 9 decimals); the
  worst case and the risk vectors are compared to 1e-12, the margins to 1e-8 relative.
* ``deribit-standard``: the IM/MM table of the Help Center article "Linear Perpetual"
  (BTC_USDC at 100,000 USDC, SOL_USDC at 200 USDC).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

import marginproof as mp
from marginproof.config.params import config_dir, load_toml
from marginproof.models.presets.deribit_pm import DeribitPMModel
from marginproof.models.presets.deribit_standard import DeribitStandardModel


def rel(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol * abs(b)


def pm_model(ccy: str, ccy_params: dict[str, Any], pair: dict[str, Any]) -> DeribitPMModel:
    raw = load_toml(config_dir() / "presets" / "deribit-pm.toml")
    raw["currency"][ccy].update(ccy_params)
    raw["pair"][ccy].update(pair)
    return DeribitPMModel(raw)


def test_btc_api_reference_example() -> None:
    model = pm_model("BTC", {"pnl_offset": 0.0, "annualised_move_risk": 0.075,
                             "min_annualised_move": 0.01}, {"price_range": 0.16})
    ts = datetime.fromtimestamp(1718619740.501, UTC)
    marks = {"BTC-PERPETUAL": 65910.57, "BTC-28JUN24": 67371.75}
    book = mp.Portfolio(
        mp.Portfolio.of({"BTC-PERPETUAL": 0.314538364 * marks["BTC-PERPETUAL"],
                         "BTC-28JUN24": -0.001187534 * marks["BTC-28JUN24"]}).positions,
        preset_inputs={"mmp_margin": {"BTC": 0.06}, "open_orders_margin": {"BTC": 0.000018212}})
    market = mp.MarketSnapshot(ts, {"BTC": 65666.19}, mark_prices=marks)
    r = model.margin(book, market)
    d = r.details["by_currency"]["BTC"]
    assert r.currency == "BTC"
    vec = d["aggregated_risk_vector"]["standard"]
    published = [-0.05968587238095239] * 3 + [-0.04272965863636364] * 3 + \
        [-0.02724789826086957] * 3 + [-0.013056284583333334] * 3 + [0.0] * 15
    assert all(abs(a - b) <= 1e-12 for a, b in zip(vec, published, strict=True))
    rm = d["risk_matrix_margin_details"]
    assert rm["worst_case"] == pytest.approx(0.05968587238095239, rel=1e-12)
    assert rm["worst_case_bucket"] == {"index": 1, "bucket": 1, "side": "left",
                                       "source": "standard"}
    assert rm["roll_shock"] == pytest.approx(0.00315725898, rel=1e-12)
    assert rm["delta_shock"] == 0.0 and rm["correlation_contingency"] == 0.0
    assert rel(d["risk_matrix_margin"], 0.06284313098, 1e-8)
    assert rel(r.initial_margin, 0.122861343, 1e-8)
    assert rel(r.maintenance_margin, 0.050274504784, 1e-8)
    assert d["aggregated_risk_vector"]["extended"] == [0.0] * 8


def test_eth_mainnet_response() -> None:
    model = pm_model("ETH", {"pnl_offset": 0.6, "annualised_move_risk": 0.05,
                             "min_annualised_move": 0.005}, {"price_range": 0.18})
    ts = datetime.fromtimestamp(1771197609.587, UTC)
    mark = 1949.49
    book = mp.Portfolio.of({"ETH-PERPETUAL": -0.999487053 * mark})
    market = mp.MarketSnapshot(ts, {"ETH": 1949.34}, mark_prices={"ETH-PERPETUAL": mark})
    r = model.margin(book, market)
    d = r.details["by_currency"]["ETH"]
    g = d
    pre = g["pre_aggregated_risk_vector"]["standard"]
    assert pre[0] == pytest.approx(0.21939959699999997, rel=1e-12)
    assert g["aggregated_risk_vector"]["standard"][0] == pytest.approx(0.13163975819999998,
                                                                       rel=1e-12)
    assert g["aggregated_risk_vector"]["standard"][-1] == pytest.approx(-0.15246412672881357,
                                                                        rel=1e-12)
    assert g["aggregated_risk_vector"]["extended"] == [0.0] * 8
    rm = d["risk_matrix_margin_details"]
    assert rm["worst_case"] == pytest.approx(0.15246412672881357, rel=1e-12)
    assert rm["worst_case_bucket"] == {"index": 25, "bucket": 9, "side": "right",
                                       "source": "standard"}
    assert rm["roll_shock"] == pytest.approx(0.004997435265, rel=1e-12)
    assert rel(d["risk_matrix_margin"], 0.157461562265, 1e-8)
    assert rel(r.initial_margin, 0.157461562, 1e-8)
    assert rel(r.maintenance_margin, 0.125969249812, 1e-8)


@pytest.mark.parametrize(("name", "price", "q", "im", "mm"), [
    ("BTC_USDC-PERPETUAL", 100_000.0, 25.0, 53_125.0, 28_125.0),
    ("BTC_USDC-PERPETUAL", 100_000.0, 350.0, 1_312_500.0, None),
    ("SOL_USDC-PERPETUAL", 200.0, 25.0, 200.625, 100.625),
    ("SOL_USDC-PERPETUAL", 200.0, 6000.0, 84_000.0, None),
])
def test_linear_perpetual_help_center_table(name: str, price: float, q: float, im: float,
                                            mm: float | None) -> None:
    und = name.split("_")[0]
    market = mp.MarketSnapshot(datetime(2026, 1, 1, tzinfo=UTC), {und: price},
                               mark_prices={name: price})
    for sign in (1.0, -1.0):
        r = DeribitStandardModel().margin(mp.Portfolio.of({name: sign * q}), market)
        assert r.currency == "USDC"
        assert r.initial_margin == pytest.approx(im, rel=1e-12)
        if mm is not None:
            assert r.maintenance_margin == pytest.approx(mm, rel=1e-12)
