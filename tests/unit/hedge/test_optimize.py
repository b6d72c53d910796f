"""The optimiser against brute force on small books, the naked-perp check, statuses and
verification (every figure *after* is the real model's)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from marginproof.errors import InputError
from marginproof.hedge import Target, equity_of, suggest_hedge
from marginproof.hedge.bruteforce import brute_force
from marginproof.hedge.optimize import im_usd
from marginproof.hedge.sources import candidate_set
from marginproof.hedge.surrogates import hedged_portfolio
from marginproof.instruments.portfolio import Portfolio

from .conftest import case

SMALL = {  # model -> two candidates for the brute-force comparison
    "grid": ["BTC-24JUN22-40000-P", "ETH_USDC-PERPETUAL"],
    "fhs": ["BTC-24JUN22-40000-C", "BTC-PERPETUAL"],
    "dynamic": ["BTC-6MAY22-44000-C", "BTC-PERPETUAL"],
    "deribit-pm": ["BTC-24JUN22", "BTC-6MAY22-44000-C"],
    "derive-pmrm": ["ETH_USDC-PERPETUAL", "ETH_USDC-27MAR26-3600-C"],
}


def _spans(acct: Any, cs: Any) -> np.ndarray:
    """Brute-force range: twice the held size of each candidate, else a few coins' worth."""
    held = {p.instrument.name: abs(p.quantity) for p in acct.portfolio.positions}
    return np.array([2.0 * held.get(c.name, 0.0) or 6.0 * c.unit for c in cs.candidates])


def _check_verified(r: Any, model: Any, acct: Any, mkt: Any, cs: Any) -> None:
    """The result's *after* figures are the real model's on the hedged book, within limits."""
    q = np.array([{t.instrument: t.quantity for t in r.trades}.get(c.name, 0.0)
                  for c in cs.candidates])
    for c, qi in zip(cs.candidates, q, strict=True):
        assert -c.max_sell - 1e-9 <= qi <= c.max_buy + 1e-9
        assert abs(qi / c.lot - round(qi / c.lot)) < 1e-6
    real = model.margin(hedged_portfolio(acct.portfolio, cs, q), mkt)
    assert r.im_after_usd == pytest.approx(im_usd(real, mkt), rel=1e-12)
    assert r.im_after_usd <= r.im_before_usd + 1e-9
    assert r.cost_usd == pytest.approx(sum(t.cost_usd for t in r.trades), rel=1e-12)
    assert {n: v for n, v in r.hedged_positions.items()} == {
        p.instrument.name: p.quantity for p in hedged_portfolio(acct.portfolio, cs, q).positions}


@pytest.mark.parametrize("name", list(SMALL))
def test_optimum_is_at_least_as_good_as_brute_force(name: str, models: dict[str, Any],
                                                    hedge_config: Any) -> None:
    acct, mkt = case(name)
    model = models[name]
    cs = candidate_set(model, acct.portfolio, mkt, hedge_config, names=SMALL[name])
    assert cs.names == tuple(SMALL[name])
    bf = brute_force(model, acct.portfolio, mkt, cs, levels=13, spans=_spans(acct, cs))
    r = suggest_hedge(model, acct.portfolio, mkt, cs)
    opt = r.im_after_usd + r.cost_usd
    assert opt <= bf.objective + 1e-6 * bf.objective + 1e-6
    assert r.status in ("suggested", "no_improvement")
    _check_verified(r, model, acct, mkt, cs)


@pytest.mark.parametrize("name", ["grid", "dynamic", "derive-pmrm"])
def test_one_instrument_search_matches_brute_force_over_singles(name: str, models: dict[str, Any],
                                                               hedge_config: Any) -> None:
    acct, mkt = case(name)
    model = models[name]
    cs = candidate_set(model, acct.portfolio, mkt, hedge_config, names=SMALL[name])
    spans = _spans(acct, cs)
    best = min(brute_force(model, acct.portfolio, mkt, cs.subset([i]), levels=41,
                           spans=spans[[i]]).objective for i in range(len(cs)))
    r = suggest_hedge(model, acct.portfolio, mkt, cs, max_instruments=1)
    assert len(r.trades) <= 1
    assert r.solver["proven_optimal"]
    assert r.im_after_usd + r.cost_usd <= best + 1e-6 * best + 1e-6
    _check_verified(r, model, acct, mkt, cs)


@pytest.mark.parametrize("name", ["grid", "fhs", "dynamic"])
def test_target_costs_no_more_than_brute_force(name: str, models: dict[str, Any],
                                               hedge_config: Any) -> None:
    acct, mkt = case(name)
    model = models[name]
    cs = candidate_set(model, acct.portfolio, mkt, hedge_config, names=SMALL[name])
    im0 = im_usd(model.margin(acct.portfolio, mkt), mkt)
    level = 0.6 * im0
    bf = brute_force(model, acct.portfolio, mkt, cs, levels=13, rhs=level, w=0.0,
                     spans=_spans(acct, cs))
    r = suggest_hedge(model, acct.portfolio, mkt, cs, objective="target",
                      target=Target("im", level))
    if np.isfinite(bf.objective):
        assert r.status == "suggested" and r.target_met
        assert r.im_after_usd <= level
        assert r.cost_usd <= bf.objective + 1e-6 * bf.objective + 1e-6
    _check_verified(r, model, acct, mkt, cs)


@pytest.mark.parametrize("name", ["grid", "fhs", "dynamic"])
@pytest.mark.parametrize("face", [100_000.0, -250_000.0])
def test_a_naked_perp_is_closed_by_the_opposite_perp(name: str, face: float,
                                                     models: dict[str, Any],
                                                     hedge_config: Any) -> None:
    _, mkt = case("grid")
    model = models[name]
    pf = Portfolio.of([("BTC-PERPETUAL", face)])
    cs = candidate_set(model, pf, mkt, hedge_config, names=["BTC-PERPETUAL"])
    r = suggest_hedge(model, pf, mkt, cs)
    assert r.status == "suggested"
    assert [(t.instrument, t.quantity) for t in r.trades] == [("BTC-PERPETUAL", -face)]
    assert r.im_after_usd == 0.0 and r.hedged_positions == {}


def test_with_every_candidate_dynamic_still_closes_the_naked_perp(models: dict[str, Any],
                                                                  hedge_config: Any) -> None:
    _, mkt = case("dynamic")
    pf = Portfolio.of([("BTC-PERPETUAL", 100_000.0)])
    cs = candidate_set(models["dynamic"], pf, mkt, hedge_config)
    assert len(cs) > 10
    r = suggest_hedge(models["dynamic"], pf, mkt, cs)
    # any other hedge leaves basis or funding risk
    assert [(t.instrument, t.quantity) for t in r.trades] == [("BTC-PERPETUAL", -100_000.0)]


def test_statuses_and_reasons(models: dict[str, Any], hedge_config: Any) -> None:
    acct, mkt = case("grid")
    model = models["grid"]
    cs = candidate_set(model, acct.portfolio, mkt, hedge_config)
    eq = equity_of(acct.portfolio, dict(acct.collateral), mkt)
    met = suggest_hedge(model, acct.portfolio, mkt, cs, objective="target",
                        target=Target("equity"), equity_usd=eq)
    assert met.status == "already_met" and not met.trades and met.target_met
    # an excess larger than the equity cannot be met by trading: the closest trade is shown
    far = suggest_hedge(model, acct.portfolio, mkt, cs, objective="target",
                        target=Target("excess", 2 * eq), equity_usd=eq)
    assert far.status == "target_unreachable" and far.target_met is False
    assert far.im_after_usd < far.im_before_usd and "deposit" in far.reason
    # expensive quotes: nothing pays for itself
    dear = candidate_set(model, Portfolio.of([("ETH_USDC-PERPETUAL", 0.01)]), mkt,
                         hedge_config, names=["ETH_USDC-PERPETUAL"])
    tiny = suggest_hedge(model, Portfolio.of([("ETH_USDC-PERPETUAL", 0.01)]), mkt, dear)
    assert tiny.status in ("suggested", "no_improvement")
    if tiny.status == "no_improvement":
        assert not tiny.trades and tiny.im_after == tiny.im_before
    with pytest.raises(InputError, match="equity"):
        suggest_hedge(model, acct.portfolio, mkt, cs, objective="target",
                      target=Target("equity"))
    with pytest.raises(InputError, match="objective"):
        suggest_hedge(model, acct.portfolio, mkt, cs, objective="cheapest")
    with pytest.raises(InputError, match="empty"):
        suggest_hedge(model, Portfolio(()), mkt, cs)
    with pytest.raises(InputError, match="target.kind"):
        Target("margin")


def test_result_serialises_to_plain_json(models: dict[str, Any], hedge_config: Any) -> None:
    import json

    acct, mkt = case("fhs")
    cs = candidate_set(models["fhs"], acct.portfolio, mkt, hedge_config)
    r = suggest_hedge(models["fhs"], acct.portfolio, mkt, cs, max_instruments=2)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["status"] == "suggested" and len(d["trades"]) <= 2
    assert d["im_reduction_usd"] == pytest.approx(r.im_before_usd - r.im_after_usd)
    assert set(d["trades"][0]) >= {"instrument", "quantity", "side", "price", "cost_usd",
                                   "max_quantity", "quote_source"}
