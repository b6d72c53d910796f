"""Each model's surrogate is the model: equal to ``model.margin`` at the linearisation point,
and (exact models) at every trade; the Derive option values reproduce the preset's table."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from marginproof.errors import InputError
from marginproof.hedge.candidates import CandidateSet
from marginproof.hedge.optimize import im_usd
from marginproof.hedge.presets import pmrm_unit_values
from marginproof.hedge.sources import candidate_set
from marginproof.hedge.surrogates import (
    SUPPORTED_MODELS,
    build_surrogate,
    hedged_portfolio,
    net_portfolio,
)
from marginproof.instruments.portfolio import Portfolio
from marginproof.models.presets.derive_pmrm import evaluate_pmrm
from marginproof.models.registry import get_model

from .conftest import CASES, case


def _trades(cs: CandidateSet, seed: int, n: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    units = np.array([c.unit for c in cs.candidates])
    caps = np.array([min(c.max_buy, c.max_sell) for c in cs.candidates]) / units
    out = []
    for _ in range(n):
        x = rng.normal(size=len(cs)) * np.minimum(caps, 3.0) * 0.3
        x[rng.random(len(cs)) < 0.5] = 0.0
        out.append(x)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_surrogate_equals_the_model_at_its_linearisation_point(name: str, models: dict[str, Any],
                                                               hedge_config: Any) -> None:
    acct, mkt = case(name)
    model = models[name]
    cs = candidate_set(model, acct.portfolio, mkt, hedge_config)
    assert len(cs) >= 3
    sur = build_surrogate(model, acct.portfolio, mkt, cs)
    m = len(cs)
    units = np.array([c.unit for c in cs.candidates])
    real0 = im_usd(model.margin(acct.portfolio, mkt), mkt)
    assert sur.im_usd.value(np.zeros(m)) == pytest.approx(real0, rel=1e-9, abs=1e-6)
    checked = 0
    for x in _trades(cs, 7):
        pf = hedged_portfolio(acct.portfolio, cs, x * units)
        try:
            real = im_usd(model.margin(pf, mkt), mkt)
        except InputError:  # e.g. deribit-pm beyond its delta threshold: a constraint says so
            assert any(c.value(x) > 0 for c in sur.constraints)
            continue
        at_x = sur if sur.relinearise is None else sur.relinearise(x)
        assert at_x.im_usd.value(x) == pytest.approx(real, rel=1e-9, abs=1e-6)
        if sur.exact:
            assert sur.im_usd.value(x) == pytest.approx(real, rel=1e-9, abs=1e-6)
        checked += 1
    assert checked >= 2


def test_exactness_flags(models: dict[str, Any], hedge_config: Any) -> None:
    for name in ("grid", "fhs", "mc"):
        acct, mkt = case(name)
        cs = candidate_set(models[name], acct.portfolio, mkt, hedge_config)
        assert build_surrogate(models[name], acct.portfolio, mkt, cs).exact
    acct, mkt = case("deribit-pm")
    cs = candidate_set(models["deribit-pm"], acct.portfolio, mkt, hedge_config)
    sur = build_surrogate(models["deribit-pm"], acct.portfolio, mkt, cs)
    assert not sur.exact and any("extended" in n for n in sur.notes)


def test_derive_unit_values_reproduce_the_preset_table(models: dict[str, Any]) -> None:
    acct, mkt = case("derive-pmrm")
    model = models["derive-pmrm"]
    pf, p, _, _ = model.inputs(net_portfolio(acct.portfolio), mkt)
    out = evaluate_pmrm(pf, p)
    spots = np.array([s.spot_shock for s in p.scenarios])
    damp = np.array([s.dampening for s in p.scenarios])
    kinds = [s.vol_shock for s in p.scenarios]
    col = 1 if pf.perp_position else 0
    for e, res in zip(pf.expiries, out.expiries, strict=True):
        base, vals, bf, sdp, sdn, _ = pmrm_unit_values(e, p, spots, kinds)
        amounts = np.array([o.amount for o in e.options])
        np.testing.assert_allclose(base[0] * amounts, res.option_values, rtol=1e-12)
        assert bf * min(base[1] @ amounts - res.mtm, base[2] @ amounts - res.mtm, 0.0) == \
            pytest.approx(res.basis_contingency, rel=1e-12, abs=1e-12)
        w = vals @ amounts
        pnl = (np.where(w >= 0, sdp, sdn) * w - res.mtm) * damp
        skew = np.array([k in ("linear", "abs") for k in kinds])
        pnl = np.where(skew, -np.abs(pnl), pnl)
        n = len(e.options)
        np.testing.assert_allclose(pnl, out.column_pnl[:, col:col + n].sum(axis=1), rtol=1e-10,
                                   atol=1e-8)
        col += n


def test_unsupported_model_and_foreign_candidate_are_refused(models: dict[str, Any],
                                                              hedge_config: Any) -> None:
    acct, mkt = case("grid")
    cs = candidate_set(models["grid"], acct.portfolio, mkt, hedge_config)
    with pytest.raises(InputError, match="scenario models"):
        build_surrogate(get_model("standard"), acct.portfolio, mkt, cs)
    assert "standard" not in SUPPORTED_MODELS
    only_eth = Portfolio.of([("ETH_USDC-PERPETUAL", 5.0)])
    with pytest.raises(InputError, match="underlying"):
        build_surrogate(models["fhs"], only_eth, mkt, cs)
    sol = candidate_set(models["grid"], only_eth, mkt, hedge_config,
                        names=["BTC-PERPETUAL", "ETH_USDC-PERPETUAL"])
    assert "BTC-PERPETUAL" in sol.excluded and sol.names == ("ETH_USDC-PERPETUAL",)
