"""Invariants of the forecast: zero horizon is today, monotone in collateral, hedges hold."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginproof.engine import EntryKind, LogEntry, MarginEngine
from marginproof.forecast import ForecastConfig, forecast, gaussian_dynamics
from marginproof.instruments.portfolio import Account, Portfolio
from marginproof.io.formats import market_to_dict
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.grid import GridModel
from marginproof.models.registry import get_model

T0 = datetime(2022, 4, 15, 4, 0, 38, tzinfo=UTC)


@pytest.mark.parametrize("name", ["grid", "fhs", "dynamic", "standard"])
@pytest.mark.parametrize("method", ["exact", "proxy"])
def test_zero_horizon_is_todays_margin(name: str, method: str, demo_account: Account,
                                       demo_market: MarketSnapshot) -> None:
    model = get_model(name)
    r0 = model.margin(demo_account.portfolio, demo_market)
    res = forecast(model, demo_account.portfolio, demo_market,
                   ForecastConfig(horizon_hours=0.0, n_paths=50, method=method,
                                  call_levels=False), collateral=demo_account.collateral)
    assert res.n_steps == 0
    assert np.all(res.im_q[:, 0] == r0.initial_margin)
    assert np.all(res.mm_q[:, 0] == r0.maintenance_margin)
    assert res.im0 == r0.initial_margin
    assert res.p_call_by[0] == float(res.status0 != "ok")


def test_step_zero_equity_is_the_engines(demo_account: Account,
                                         demo_market: MarketSnapshot) -> None:
    """Equity now = the real-time engine's equity of the same account (grid, demo book)."""
    eng = MarginEngine(GridModel())
    ms = int(demo_market.timestamp.timestamp() * 1000)
    eng.apply(LogEntry(1, EntryKind.MARKET, ms, "t", market_to_dict(demo_market)))
    pos = {p.instrument.name: p.quantity for p in demo_account.portfolio.positions}
    eng.apply(LogEntry(2, EntryKind.ACCOUNT, ms + 1, "t", {
        "account_id": "a", "positions": pos, "collateral": dict(demo_account.collateral)}))
    m = eng.account_margin("a")
    assert m is not None
    res = forecast(GridModel(), demo_account.portfolio, demo_market,
                   ForecastConfig(horizon_hours=2.0, n_paths=20, call_levels=False),
                   collateral=demo_account.collateral)
    assert res.equity0 == pytest.approx(m.equity, rel=1e-12)
    assert res.im0 == pytest.approx(m.initial_margin, rel=1e-12)
    assert res.status0 == m.status


def _btc_market(price: float = 40_000.0) -> MarketSnapshot:
    return MarketSnapshot(T0, {"BTC": price})


@settings(max_examples=12, deadline=None)
@given(c1=st.floats(20_000, 200_000), extra=st.floats(1.0, 100_000), seed=st.integers(0, 99))
def test_call_probability_is_monotone_in_collateral(c1: float, extra: float, seed: int) -> None:
    pf = Portfolio.of({"BTC_USDC-PERPETUAL": 10.0, "BTC-24JUN22-40000-P": -5.0})
    mkt = MarketSnapshot(T0, {"BTC": 40_000.0}, implied_vols={"BTC-24JUN22-40000-P": 0.6})
    dyn = gaussian_dynamics(("BTC",), np.array([0.04]), np.array([0.05]))
    cfg = ForecastConfig(n_paths=300, seed=seed, call_levels=False, method="exact")
    lo = forecast(GridModel(), pf, mkt, cfg, collateral={"USDC": c1}, dynamics=dyn)
    hi = forecast(GridModel(), pf, mkt, cfg, collateral={"USDC": c1 + extra}, dynamics=dyn)
    assert np.all(hi.p_call_by <= lo.p_call_by)
    assert np.all(hi.p_liquidation_by <= lo.p_liquidation_by)
    assert np.all(hi.excess_q >= lo.excess_q - 1e-6)
    # the collateral really enters equity (USDC has no haircut): otherwise the inequalities
    # above would hold trivially, with hi == lo
    assert np.allclose(hi.equity_q - lo.equity_q, extra, rtol=1e-9, atol=1e-6)


def test_call_probability_falls_strictly_with_collateral() -> None:
    """Between 'certain call' and 'no call' the probability falls strictly (grid, normal)."""
    pf = Portfolio.of({"BTC_USDC-PERPETUAL": 10.0})
    mkt = _btc_market()
    dyn = gaussian_dynamics(("BTC",), np.array([0.04]))
    cfg = ForecastConfig(n_paths=2000, seed=5, call_levels=False, method="exact")
    im0 = GridModel().margin(pf, mkt).initial_margin
    p = [forecast(GridModel(), pf, mkt, cfg, collateral={"USDC": f * im0},
                  dynamics=dyn).p_call for f in (0.99, 1.1, 1.3, 1.6, 3.0)]
    assert p[0] == 1.0 and p[-1] == 0.0
    assert all(a > b for a, b in zip(p[:-1], p[1:], strict=True)), p


@pytest.mark.parametrize("name", ["grid", "fhs", "dynamic"])
def test_hedged_spot_vs_short_perp_has_near_zero_call_probability(name: str) -> None:
    """Long 10 BTC spot, short 10 BTC linear perp, 2 % of notional in USDC: price-only shocks."""
    pf = Portfolio.of({"BTC_USDT": 10.0, "BTC_USDC-PERPETUAL": -10.0})
    mkt = _btc_market()
    model = get_model(name)
    r0 = model.margin(pf, mkt)
    dyn = gaussian_dynamics(("BTC",), np.array([0.08]))  # violent, price only
    res = forecast(model, pf, mkt, ForecastConfig(n_paths=400, seed=3, method="exact"),
                   collateral={"USDC": 8_000.0}, dynamics=dyn)
    assert res.status0 == "ok" and r0.initial_margin < 8_000.0
    assert res.p_call <= 0.01
    # the equity of a hedged book does not move with the price
    assert np.ptp(res.equity_q[:, -1]) < 1e-6 * 400_000
    unhedged = forecast(model, Portfolio.of({"BTC_USDT": 10.0}), mkt,
                        ForecastConfig(n_paths=400, seed=3, method="exact",
                                       call_levels=False),
                        collateral={"USDC": -392_000.0}, dynamics=dyn)
    assert unhedged.p_call > 0.2  # same shocks, no hedge: calls are frequent


def test_same_seed_same_result_and_hashes(demo_account: Account,
                                          demo_market: MarketSnapshot) -> None:
    cfg = ForecastConfig(horizon_hours=6.0, n_paths=80, seed=11, call_levels=False)
    a = forecast(get_model("fhs"), demo_account.portfolio, demo_market, cfg,
                 collateral=demo_account.collateral)
    b = forecast(get_model("fhs"), demo_account.portfolio, demo_market, cfg,
                 collateral=demo_account.collateral)
    assert a.to_dict() == b.to_dict()
    assert a.seed == 11 and a.params_hash == get_model("fhs").params_hash
    c = forecast(get_model("fhs"), demo_account.portfolio, demo_market,
                 ForecastConfig(horizon_hours=6.0, n_paths=80, seed=12, call_levels=False),
                 collateral=demo_account.collateral)
    assert c.forecast_hash != a.forecast_hash
    assert not np.array_equal(c.equity_q, a.equity_q)
