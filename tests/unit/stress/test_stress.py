"""Stress replay, hypothetical shocks and the liquidation cascade (synthetic paths)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from marginproof.backtest.market import MarketPath
from marginproof.backtest.portfolios import portfolio_set
from marginproof.backtest.providers import ConstantProvider, EwmaVarProvider
from marginproof.errors import InputError
from marginproof.stress.cascade import (
    DepthProfile,
    OrderBook,
    Population,
    order_book,
    simulate_cascade,
)
from marginproof.stress.episodes import EPISODES, SHOCKS, episode
from marginproof.stress.replay import hypothetical_shocks, replay
from tests.unit.backtest._paths import synthetic_path

TEMPLATES = portfolio_set(("singles", "adversarial", "hedged"), seed=1)


def _crash_path(n: int = 400, drop_from: int = 360) -> MarketPath:
    p = synthetic_path(n, seed=3)
    c = p.closes.copy()
    c[drop_from:] *= np.linspace(1.0, 0.5, n - drop_from)[:, None]
    return MarketPath(p.times, p.bar, p.underlyings, c, p.iv, p.iv_is_proxy)


def test_episodes_cover_the_documented_crashes() -> None:
    assert set(EPISODES) == {"covid-2020", "may-2021", "luna-2022", "ftx-2022", "yen-2024"}
    assert episode("ftx-2022").start.startswith("2022-11-06")
    with pytest.raises(InputError):
        episode("nope")


def test_infinite_margin_never_calls_or_liquidates() -> None:
    r = replay(_crash_path(), TEMPLATES, ConstantProvider(math.inf), start_row=350)
    t = r.totals()
    assert t["margin_calls"] == 0 and t["liquidations"] == 0
    assert t["loss_beyond_collateral_usd"] == 0


def test_thin_margin_liquidates_longs_in_a_crash_and_loses_beyond_collateral() -> None:
    p = _crash_path()
    c = np.repeat(p.closes[350:351], len(p), axis=0)
    c[360:] *= np.linspace(1.0, 0.5, len(p) - 360)[:, None]  # a noise-free crash
    smooth = MarketPath(p.times, p.bar, p.underlyings, c, p.iv, p.iv_is_proxy)
    r = replay(smooth, TEMPLATES, ConstantProvider(0.01), start_row=350, cushion=(0.0, 0.0))
    acc = r.accounts.set_index("account")
    assert pd.notna(acc.loc["long BTC", "liquidated_at"])
    assert pd.isna(acc.loc["short BTC", "liquidated_at"])
    assert r.totals()["loss_beyond_collateral_usd"] >= 0
    assert set(r.hourly["status"]) <= {"ok", "call", "liquidated"}


def test_ewma_margin_rises_through_the_crash() -> None:
    r = replay(_crash_path(), TEMPLATES[:2], EwmaVarProvider(n_scenarios=50), start_row=355)
    assert r.accounts["max_im_ratio"].max() > 1.0


def test_hypothetical_shocks_losses_have_the_right_sign() -> None:
    p = synthetic_path(300)
    sig = np.full(len(p.underlyings), 0.03)
    t = hypothetical_shocks(p, TEMPLATES, ConstantProvider(0.1), 280, SHOCKS, sig)
    s = t.set_index(["shock", "account"])["loss_usd"]
    assert s[("spot-50", "long BTC")] == pytest.approx(5e5, rel=1e-9)
    assert s[("spot-50", "short BTC")] == pytest.approx(-5e5, rel=1e-9)
    assert s[("spot+50", "short BTC")] == pytest.approx(5e5, rel=1e-9)
    assert s[("vol-x2", "BTC short ATM straddle 7d")] > 0
    assert s[("corr-1", "long BTC")] > 0
    assert (t["loss_beyond_collateral_usd"] >= 0).all()


def _book() -> OrderBook:
    prices = 100.0 - 0.01 * np.arange(1, 101)
    bids = pd.DataFrame({"side": "bid", "price": prices, "qty_btc": np.full(100, 10.0)})
    asks = pd.DataFrame({"side": "ask", "price": 100.0 + 0.01 * np.arange(1, 101),
                         "qty_btc": np.full(100, 10.0)})
    return order_book(depth=pd.concat([bids, asks]), scale=1.0)


def test_depth_profile_is_monotone_and_extrapolates() -> None:
    b = _book()
    usd = np.array([0.0, 1e3, 5e4, 1e5, 1e6])
    d = b.bid.distance_for(usd)
    assert d[0] == 0 and np.all(np.diff(d) > 0)
    assert b.displacement(1e5) < 0 < b.displacement(-1e5)
    assert abs(b.average_fill(0.0, 1e5)) < abs(b.displacement(1e5))
    with pytest.raises(InputError):
        DepthProfile.from_levels([], [], 1.0)


def test_higher_margin_means_smaller_cascade_and_less_bad_debt() -> None:
    n_h = 48
    F = 100.0 * np.linspace(1.0, 0.8, n_h)
    times = [str(i) for i in range(n_h)]
    pop = Population.synthetic(500, seed=1, median_notional_usd=1_000.0)
    book = _book()
    low = simulate_cascade("static", F, times, np.full(n_h, 0.02), np.full(n_h, 0.02), 0.5,
                           book, pop)
    high = simulate_cascade("dynamic", F, times, np.full(n_h, 0.2), np.full(n_h, 0.2), 0.75,
                            book, pop)
    assert low.totals["liquidated_accounts"] > high.totals["liquidated_accounts"]
    assert low.totals["bad_debt_usd"] >= high.totals["bad_debt_usd"]
    assert low.totals["max_price_impact_pct"] > high.totals["max_price_impact_pct"]
    # infinite depth: no impact at all
    deep = order_book(depth=pd.concat([
        pd.DataFrame({"side": "bid", "price": [99.99], "qty_btc": [1e15]}),
        pd.DataFrame({"side": "ask", "price": [100.01], "qty_btc": [1e15]})]), scale=1.0)
    none = simulate_cascade("deep", F, times, np.full(n_h, 0.02), np.full(n_h, 0.02), 0.5,
                            deep, pop)
    assert none.totals["max_price_impact_pct"] < 1e-3
