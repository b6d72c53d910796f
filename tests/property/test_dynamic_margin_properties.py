"""Properties of the dynamic margin models (issue 5 acceptance checks)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from marginproof.config.params import config_dir, load_toml
from marginproof.demo.book import demo_account
from marginproof.feeds.history import market_on, shipped_history
from marginproof.instruments.portfolio import Portfolio
from marginproof.models.dynamic import DynamicModel
from marginproof.models.montecarlo import MCModel
from marginproof.risk.history import DailySeries, FundingSeries, MarketHistory
from marginproof.risk.measures import expected_shortfall, var

ADDONS = ("liquidity", "concentration", "funding")


@pytest.fixture(scope="module")
def dyn() -> DynamicModel:
    return DynamicModel(history=shipped_history())


@pytest.fixture(scope="module")
def demo() -> Any:
    return demo_account()


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(1, 600), elements=st.floats(-1e6, 1e6)),
       st.sampled_from([0.9, 0.95, 0.975, 0.99, 0.995]))
def test_es_is_at_least_var_at_the_same_level(losses: np.ndarray, conf: float) -> None:
    assert expected_shortfall(losses, conf) >= var(losses, conf) - 1e-9 * (
        1 + abs(var(losses, conf)))


def _before_addons(r: Any) -> float:
    return r.initial_margin - sum(r.components[a] for a in ADDONS)


@pytest.mark.parametrize("k", [0.1, 2.0, 7.5])
def test_margin_is_homogeneous_in_size_before_addons(dyn: DynamicModel, demo: Any, k: float
                                                     ) -> None:
    acct, mkt = demo
    one = dyn.margin(acct.portfolio, mkt)
    big = dyn.margin(acct.portfolio.scaled(k), mkt)
    assert _before_addons(big) == pytest.approx(k * _before_addons(one), rel=1e-9)
    np.testing.assert_allclose(big.scenario_pnl, k * one.scenario_pnl, rtol=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.floats(-50, 50).filter(lambda x: abs(x) > 0.01),
       st.floats(-500, 500).filter(lambda x: abs(x) > 0.1),
       st.sampled_from(["2021-05-20", "2022-06-13", "2022-11-10", "2024-08-06"]))
def test_diversified_margin_is_at_most_the_sum_of_standalone(
        dyn: DynamicModel, q_btc: float, q_eth: float, day: str) -> None:
    mkt = market_on(shipped_history(), day, ["BTC", "ETH"])
    both = dyn.margin(Portfolio.of({"BTC_USDT": q_btc, "ETH_USDT": q_eth}), mkt)
    btc = dyn.margin(Portfolio.of({"BTC_USDT": q_btc}), mkt)
    eth = dyn.margin(Portfolio.of({"ETH_USDT": q_eth}), mkt)
    assert both.initial_margin <= btc.initial_margin + eth.initial_margin + 1e-6
    assert both.components["core"] <= btc.components["core"] + eth.components["core"] + 1e-6


def test_apc_floored_margin_is_at_least_unfloored() -> None:
    p = load_toml(config_dir() / "models" / "dynamic.toml")
    p["stress"]["floor_fraction"] = 0.0
    p["apc"]["stressed_weight"] = 0.0
    no_apc = dict(p, apc=dict(p["apc"], floor_10y=False))
    floored = DynamicModel(p, history=shipped_history())
    plain = DynamicModel(no_apc, history=shipped_history())
    h = shipped_history()
    books = (Portfolio.of({"BTC_USDT": 1.0, "ETH_USDT": -10.0}), Portfolio.of({"ETH_USDT": 3.0}))
    binding = 0
    for day in ("2021-01-15", "2022-06-13", "2023-07-01", "2024-08-06"):
        mkt = market_on(h, day, ["BTC", "ETH"])
        for pf in books:
            a = floored.margin(pf, mkt)
            b = plain.margin(pf, mkt)
            assert a.initial_margin >= b.initial_margin
            assert a.components["apc_adjustment"] >= 0.0
            binding += a.initial_margin > b.initial_margin
    assert binding > 0  # the floor does bind on calm days


def _alter_after(h: MarketHistory, day: np.datetime64) -> MarketHistory:
    rng = np.random.default_rng(123)

    def daily(s: DailySeries) -> DailySeries:
        v = s.values.copy()
        after = s.dates > day
        v[after] *= np.exp(rng.normal(0, 0.3, int(after.sum())))
        return DailySeries(s.dates, v)

    def fund(f: FundingSeries) -> FundingSeries:
        r = f.rates.copy()
        after = f.times >= (day + np.timedelta64(1, "D")).astype("datetime64[s]")
        r[after] = 0.003
        return FundingSeries(f.times, r)

    return replace(
        h,
        closes={u: daily(s) for u, s in h.closes.items()},
        volumes={u: daily(s) for u, s in h.volumes.items()},
        atm_iv={u: daily(s) for u, s in h.atm_iv.items()},
        funding={u: fund(f) for u, f in h.funding.items()},
        long_closes={u: daily(s) for u, s in h.long_closes.items()},
    )


@pytest.mark.parametrize("core", ["fhs", "mc"])
def test_no_look_ahead_results_unchanged_when_later_data_is_altered(demo: Any, core: str
                                                                    ) -> None:
    acct, mkt = demo  # market time 2022-04-15 04:00 UTC -> as-of 2022-04-14
    p = load_toml(config_dir() / "models" / "dynamic.toml")
    p["core"]["method"] = core
    p["mc"]["log2_points"] = 7
    h = shipped_history()
    altered = _alter_after(h, np.datetime64("2022-04-14"))
    assert not np.array_equal(altered.closes["BTC"].values, h.closes["BTC"].values)
    a = DynamicModel(p, history=h).margin(acct.portfolio, mkt)
    b = DynamicModel(p, history=altered).margin(acct.portfolio, mkt)
    assert a.initial_margin == b.initial_margin
    assert dict(a.components) == dict(b.components)
    np.testing.assert_array_equal(a.scenario_pnl, b.scenario_pnl)
    # and the data of the as-of day itself does matter
    c = DynamicModel(p, history=_alter_after(h, np.datetime64("2022-04-13"))).margin(
        acct.portfolio, mkt)
    assert c.initial_margin != a.initial_margin


def test_mc_garch_marginals_margin_is_positive_and_reproducible(demo: Any) -> None:
    acct, mkt = demo
    p = load_toml(config_dir() / "models" / "mc.toml")
    p["mc"]["log2_points"] = 7
    a = MCModel(p, history=shipped_history()).margin(acct.portfolio, mkt)
    b = MCModel(p, history=shipped_history()).margin(acct.portfolio, mkt)
    assert a.initial_margin == b.initial_margin > 0
    assert a.details["scenario_set"]["marginals"]["BTC"]["garch_refit_date"] <= "2022-04-14"
