"""Properties of the exchange presets.

* scaling a book by ``k > 0`` scales the requirement by ``k`` (every preset's requirement is
  homogeneous of degree 1 in position size, except Deribit's standard futures margin, whose
  per-coin increase makes it ``Q (base + Q per_coin)``: checked exactly instead);
* adding an offsetting hedge (a fraction of the book, opposite sign, as separate lines) never
  raises the requirement;
* coin and USD conventions agree at the index price.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginproof.instruments.portfolio import Portfolio
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.presets.deribit_pm import DeribitPMModel, PMPosition, position_pnl
from marginproof.models.presets.deribit_standard import DeribitStandardModel
from marginproof.models.presets.derive_pmrm import DerivePMRMModel
from marginproof.models.presets.derive_srm import DeriveSRMModel

T0 = datetime(2026, 2, 20, 8, 0, tzinfo=UTC)
E1, E2 = datetime(2026, 3, 27, 8, tzinfo=UTC), datetime(2026, 6, 26, 8, tzinfo=UTC)
DERIBIT = MarketSnapshot(
    T0, {"BTC": 98_000.0, "ETH": 3_350.0},
    forwards={"BTC": {E1: 98_400.0, E2: 99_500.0}},
    mark_prices={"BTC-PERPETUAL": 98_000.0, "BTC-27MAR26": 98_400.0, "BTC-26JUN26": 99_500.0,
                 "BTC_USDC-PERPETUAL": 98_000.0},
    implied_vols={"BTC-27MAR26-110000-C": 0.52, "BTC-27MAR26-90000-P": 0.58,
                  "BTC-26JUN26-100000-C": 0.55, "BTC-26JUN26-80000-P": 0.62})
DERIVE = MarketSnapshot(
    T0, {"ETH": 3_350.0, "BTC": 98_000.0},
    forwards={"ETH": {E1: 3_362.5, E2: 3_390.0}, "BTC": {E1: 98_400.0}},
    mark_prices={"ETH_USDC-PERPETUAL": 3_351.2},
    implied_vols={"ETH_USDC-27MAR26-4000-C": 0.68, "ETH_USDC-27MAR26-3000-P": 0.74,
                  "ETH_USDC-26JUN26-3500-C": 0.7, "ETH_USDC-26JUN26-2500-P": 0.8,
                  "BTC_USDC-27MAR26-90000-P": 0.55})
DERIBIT_NAMES = ("BTC-PERPETUAL", "BTC-27MAR26", "BTC-26JUN26", "BTC-27MAR26-110000-C",
                 "BTC-27MAR26-90000-P", "BTC-26JUN26-100000-C", "BTC-26JUN26-80000-P")
DERIVE_NAMES = ("ETH_USDC-PERPETUAL", "ETH_USDC-27MAR26-4000-C", "ETH_USDC-27MAR26-3000-P",
                "ETH_USDC-26JUN26-3500-C", "ETH_USDC-26JUN26-2500-P")
SRM_NAMES = DERIVE_NAMES + ("BTC_USDC-27MAR26-90000-P",)

sizes = st.floats(min_value=-5.0, max_value=5.0, allow_nan=False).filter(lambda x: abs(x) > 1e-3)
ks = st.floats(min_value=0.05, max_value=5.0)  # keeps deribit-pm under its delta threshold
hedges = st.floats(min_value=0.0, max_value=1.0)


def book(names: tuple[str, ...], qs: list[float]) -> Portfolio:
    return Portfolio.of([(n, q * (98_000.0 if n in ("BTC-PERPETUAL", "BTC-27MAR26",
                                                    "BTC-26JUN26") else 1.0))
                         for n, q in zip(names, qs, strict=False)])


MODELS = {
    "deribit-pm": (DeribitPMModel(), DERIBIT, DERIBIT_NAMES),
    "derive-pmrm": (DerivePMRMModel(), DERIVE, DERIVE_NAMES),
    "derive-srm": (DeriveSRMModel(), DERIVE, SRM_NAMES),
}


@pytest.mark.parametrize("preset", sorted(MODELS))
@settings(max_examples=15, deadline=None)
@given(qs=st.lists(sizes, min_size=1, max_size=7), k=ks)
def test_scaling_a_book_by_k_scales_its_requirement_by_k(preset: str, qs: list[float],
                                                          k: float) -> None:
    model, market, names = MODELS[preset]
    p = book(names, qs)
    a, b = model.margin(p, market), model.margin(p.scaled(k), market)
    assert b.initial_margin == pytest.approx(k * a.initial_margin, rel=1e-9, abs=1e-9)
    assert b.maintenance_margin == pytest.approx(k * a.maintenance_margin, rel=1e-9, abs=1e-9)


@settings(max_examples=15, deadline=None)
@given(qs=st.lists(sizes, min_size=1, max_size=4), k=ks)
def test_standard_options_scale_linearly_and_futures_follow_the_per_coin_rule(
        qs: list[float], k: float) -> None:
    m = DeribitStandardModel()
    opts = book(DERIBIT_NAMES[3:], qs)
    assert m.margin(opts.scaled(k), DERIBIT).initial_margin == pytest.approx(
        k * m.margin(opts, DERIBIT).initial_margin, rel=1e-9, abs=1e-12)
    q = abs(qs[0]) * k
    fut = Portfolio.of({"BTC-PERPETUAL": q * 98_000.0})
    assert m.margin(fut, DERIBIT).initial_margin == pytest.approx(q * (0.02 + q * 0.00005),
                                                                 rel=1e-12)


@pytest.mark.parametrize("preset", sorted(MODELS) + ["deribit-standard"])
@settings(max_examples=15, deadline=None)
@given(qs=st.lists(sizes, min_size=1, max_size=7), h=hedges)
def test_an_offsetting_hedge_never_raises_the_requirement(preset: str, qs: list[float],
                                                          h: float) -> None:
    if preset == "deribit-standard":
        model, market, names = DeribitStandardModel(), DERIBIT, DERIBIT_NAMES
    else:
        model, market, names = MODELS[preset]
    p = book(names, qs)
    hedged = p + p.scaled(-h)
    assert model.margin(hedged, market).initial_margin <= \
        model.margin(p, market).initial_margin * (1 + 1e-12) + 1e-12


@settings(max_examples=20, deadline=None)
@given(q=sizes)
def test_inverse_coin_pnl_is_worth_the_linear_usd_pnl_at_the_scenario_index(q: float) -> None:
    s = 98_000.0
    moves = 0.16 * (np.arange(9) - 4) / 4
    inv = PMPosition("BTC-PERPETUAL", "BTC", "BTC", "perpetual", True, q, s, s, 0.0)
    lin = PMPosition("BTC_USDC-PERPETUAL", "BTC", "USDC", "perpetual", False, q, s, s, 0.0)
    pair = {"price_range": 0.16}
    coin = position_pnl(inv, moves, ("none",), pair, 1.0)
    usd = position_pnl(lin, moves, ("none",), pair, 1.0)
    np.testing.assert_allclose(coin * s * (1.0 + moves), usd, rtol=1e-12, atol=1e-9)


@settings(max_examples=15, deadline=None)
@given(qs=st.lists(sizes, min_size=1, max_size=7))
def test_coin_margins_and_their_usd_report_agree_at_the_index(qs: list[float]) -> None:
    for model in (DeribitPMModel(), DeribitStandardModel()):
        r = model.margin(book(DERIBIT_NAMES, qs), DERIBIT)
        assert r.currency == "BTC"
        assert r.details["initial_margin_usd"] == pytest.approx(r.initial_margin * 98_000.0,
                                                                rel=1e-12)
        assert r.details["maintenance_margin_usd"] == pytest.approx(
            r.maintenance_margin * 98_000.0, rel=1e-12)


def test_inverse_and_linear_standard_futures_agree_at_the_index() -> None:
    m = DeribitStandardModel()
    inv = m.margin(Portfolio.of({"BTC-PERPETUAL": 3 * 98_000.0}), DERIBIT)
    lin = m.margin(Portfolio.of({"BTC_USDC-PERPETUAL": 3.0}), DERIBIT)
    assert (inv.currency, lin.currency) == ("BTC", "USDC")
    assert lin.initial_margin == pytest.approx(inv.initial_margin * 98_000.0, rel=1e-12)
