"""Properties of the hedge search: a book plus its suggested hedge never has a higher IM (the
real model's), and every suggestion respects the size limits and lots."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marginproof.config.params import repo_root
from marginproof.feeds.history import shipped_history
from marginproof.hedge import Target, suggest_hedge
from marginproof.hedge.optimize import im_usd
from marginproof.hedge.sources import candidate_set, load_config
from marginproof.hedge.surrogates import hedged_portfolio
from marginproof.instruments.portfolio import Portfolio
from marginproof.io.formats import load_market
from marginproof.models.dynamic import DynamicModel
from marginproof.models.fhs import FHSModel
from marginproof.models.grid import GridModel

MARKET = load_market(repo_root() / "examples" / "market_btc_2022-04-15.json")
INSTRUMENTS = [("BTC-PERPETUAL", 50_000.0), ("BTC_USDC-PERPETUAL", 1.0),
               ("BTC-24JUN22", 40_000.0), ("BTC-6MAY22-44000-C", 2.0),
               ("BTC-6MAY22-36000-P", 2.0), ("BTC-24JUN22-40000-C", 2.0),
               ("BTC-24JUN22-40000-P", 2.0), ("ETH_USDC-PERPETUAL", 10.0)]
CONFIG = load_config()


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    hist = shipped_history()
    return {"grid": GridModel(), "fhs": FHSModel(history=hist),
            "dynamic": DynamicModel(history=hist)}


books = st.lists(st.tuples(st.integers(0, len(INSTRUMENTS) - 1),
                           st.floats(-3.0, 3.0).filter(lambda v: abs(v) > 0.05)),
                 min_size=1, max_size=5, unique_by=lambda t: t[0])


def _portfolio(lines: list[tuple[int, float]]) -> Portfolio:
    return Portfolio.of([(INSTRUMENTS[i][0], round(INSTRUMENTS[i][1] * f, 1))
                         for i, f in lines])


def _check(model: Any, pf: Portfolio, r: Any, cs: Any) -> None:
    assert r.im_after_usd <= r.im_before_usd + 1e-9
    q = np.array([{t.instrument: t.quantity for t in r.trades}.get(c.name, 0.0)
                  for c in cs.candidates])
    for c, qi in zip(cs.candidates, q, strict=True):
        assert -c.max_sell - 1e-9 <= qi <= c.max_buy + 1e-9
    after = im_usd(model.margin(hedged_portfolio(pf, cs, q), MARKET), MARKET)
    assert after == pytest.approx(r.im_after_usd, rel=1e-12)
    if r.status != "suggested":
        assert not r.trades or r.status == "target_unreachable"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(books, st.sampled_from(["grid", "fhs"]), st.sampled_from([None, 1, 2]),
       st.sampled_from(["im_plus_cost", "target"]))
def test_book_plus_suggested_hedge_never_has_a_higher_im(models: dict[str, Any], lines: Any,
                                                         name: str, k: int | None,
                                                         objective: str) -> None:
    pf = _portfolio(lines)
    model = models[name]
    cs = candidate_set(model, pf, MARKET, CONFIG, max_options=6)
    im0 = im_usd(model.margin(pf, MARKET), MARKET)
    target = Target("im", 0.5 * im0) if objective == "target" else None
    r = suggest_hedge(model, pf, MARKET, cs, objective, target, k, time_limit_s=2.0)
    _check(model, pf, r, cs)
    if k is not None:
        assert len(r.trades) <= k
    if r.status == "suggested" and objective == "im_plus_cost":
        assert r.im_after_usd + r.cost_usd < r.im_before_usd
    if r.status == "suggested" and objective == "target":
        assert r.im_after_usd <= 0.5 * im0 + 1e-9


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(books)
def test_dynamic_hedge_never_raises_the_im(models: dict[str, Any], lines: Any) -> None:
    pf = _portfolio(lines)
    cs = candidate_set(models["dynamic"], pf, MARKET, CONFIG, max_options=6)
    r = suggest_hedge(models["dynamic"], pf, MARKET, cs, time_limit_s=2.0)
    _check(models["dynamic"], pf, r, cs)
