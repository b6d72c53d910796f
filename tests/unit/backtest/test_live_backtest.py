"""Continuous backtesting on the live path (backtest.live): settlements, statistics, proposals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginproof.backtest import stats as bst
from marginproof.backtest.live import (
    Holdings,
    LiveBacktest,
    LiveBacktestConfig,
    pooled_statistics,
    scaling_factor,
    unit_pnl_usd,
)
from marginproof.config.params import params_hash
from marginproof.errors import InputError
from marginproof.market.snapshot import MarketSnapshot

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
DAY = 86_400_000
PARAMS = {"risk": {"scaling": 1.0, "measure": "es"}, "maintenance": {"mm_fraction": 0.75}}


def market(t: datetime, btc: float, vol: float = 0.55) -> MarketSnapshot:
    return MarketSnapshot(timestamp=t, index_prices={"BTC": btc},
                          implied_vols={"BTC-27DEC26-90000-C": vol})


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def test_unit_pnl_conventions() -> None:
    m0 = market(T0, 90_000.0)
    m1 = market(T0 + timedelta(days=1), 99_000.0)
    pnl = unit_pnl_usd(["BTC_USDC-PERPETUAL", "BTC-PERPETUAL", "BTC-27DEC26-90000-C"], m0, m1)
    assert pnl[0] == pytest.approx(9_000.0)
    assert pnl[1] == pytest.approx((1 / 90_000 - 1 / 99_000) * 99_000)
    assert pnl[2] > 0.0
    expired = market(datetime(2026, 12, 28, 8, 0, tzinfo=UTC), 95_000.0)
    p = unit_pnl_usd(["BTC-27DEC26-90000-C"], m1, expired)
    v1 = unit_pnl_usd(["BTC-27DEC26-90000-C"], m0, m1)[0]
    assert np.isfinite(p[0]) and p[0] + v1 == pytest.approx(
        5_000.0 - unit_value(m0), rel=1e-9)
    assert np.isnan(unit_pnl_usd(["ETH_USDC-PERPETUAL"], m0, m1)[0])


def unit_value(m: MarketSnapshot) -> float:
    from marginproof.backtest.live import _unit_value_usd

    return _unit_value_usd("BTC-27DEC26-90000-C", m)[0]


def test_settlement_times_on_the_log_clock() -> None:
    c = LiveBacktestConfig(settlement_hour_utc=8)
    assert c.next_settlement_ms(ms(T0) - 1) == ms(T0)
    assert c.next_settlement_ms(ms(T0)) == ms(T0) + DAY
    with pytest.raises(InputError, match="settlement_hour_utc"):
        LiveBacktestConfig(settlement_hour_utc=24)


def run_days(bt: LiveBacktest, prices: list[float], margins: list[float], qty: float = 1.0,
             n_books: int = 1, model: str = "dynamic", params: dict | None = None
             ) -> list:
    """Settle one day per price; every book holds ``qty`` linear perps with the day's margin."""
    reports = []
    assert not bt.due(ms(T0) - 1)
    for k, (px, mg) in enumerate(zip(prices, margins, strict=True)):
        t = T0 + timedelta(days=k)
        assert bt.due(ms(t))
        h = Holdings.from_positions([{"BTC_USDC-PERPETUAL": qty}] * n_books)
        reports.append(bt.settle(k + 1, model, params or PARAMS, h, np.full(n_books, mg),
                                 market(t, px)))
    return reports


def test_exceptions_and_pooled_stats_reuse_backtest_stats() -> None:
    bt = LiveBacktest(LiveBacktestConfig(min_days=100))
    prices = [100.0, 90.0, 95.0, 80.0, 81.0]  # losses of a long: 10, -5, 15, -1
    reps = run_days(bt, prices, [12.0] * 5, n_books=3)
    assert reps[0].n_books == 0
    assert [r.n_exceptions for r in reps[1:]] == [0, 0, 3, 0]
    s = bt.model_stats("dynamic")
    assert (s["book_days"], s["exceptions"]) == (12, 3)
    pof = bst.kupiec_pof(12, 3, 0.01)
    assert s["kupiec_lr"] == pof.lr and s["zone"] == bst.traffic_light(3, 12, 0.01).zone
    assert s["books"]["n"] == 3
    one = bt.book_stats("dynamic", 0)
    assert one is not None and one["indicators"] == [0, 0, 1, 0]
    assert one["kupiec_lr"] == bst.kupiec_pof(4, 1, 0.01).lr


@settings(max_examples=100, deadline=None)
@given(st.lists(st.booleans(), min_size=2, max_size=80))
def test_pooled_christoffersen_of_one_book_is_the_sequence_test(ind: list[bool]) -> None:
    a = np.array(ind, np.int8)
    c = bst.transition_counts(a)
    got = pooled_statistics(len(a), int(a.sum()), [c.n00, c.n01, c.n10, c.n11], 0.01)
    ref = bst.christoffersen_independence(a)
    assert got["christoffersen_ind_lr"] == pytest.approx(ref.lr, abs=1e-9)
    assert got["christoffersen_cc_lr"] == pytest.approx(bst.christoffersen_cc(a, 0.01).lr,
                                                        abs=1e-9)


def test_pooled_transitions_equal_the_sum_over_books() -> None:
    rng = np.random.default_rng(3)
    bt = LiveBacktest(LiveBacktestConfig(min_days=1000, window_days=30))
    n_books, n_days = 4, 12
    qty = rng.choice([-1.0, 1.0], n_books)
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.05, n_days)))
    margins = rng.uniform(1.0, 8.0, (n_days, n_books))
    assert not bt.due(ms(T0) - 1)
    for k in range(n_days):
        t = T0 + timedelta(days=k)
        assert bt.due(ms(t))
        h = Holdings.from_positions([{"BTC_USDC-PERPETUAL": float(q)} for q in qty])
        bt.settle(k + 1, "fhs", PARAMS, h, margins[k], market(t, float(prices[k])))
    s = bt.model_stats("fhs")
    exc = (-(np.diff(prices)[:, None] * qty[None, :]) > margins[:-1]).astype(np.int8)
    tr = np.zeros(4, int)
    for b in range(n_books):
        c = bst.transition_counts(exc[:, b])
        tr += [c.n00, c.n01, c.n10, c.n11]
    assert s["exceptions"] == int(exc.sum()) and s["book_days"] == exc.size
    assert s.get("transitions", [0, 0, 0, 0]) == tr.tolist()


def test_breach_produces_an_announced_scaling_proposal() -> None:
    cfg = LiveBacktestConfig(min_days=5, notice_ms=5 * DAY)
    bt = LiveBacktest(cfg)
    # a long book margined at 5 loses 10 every day: every book-day is an exception (ratio 2)
    prices = [100.0 - 10.0 * k for k in range(8)]
    reps = run_days(bt, prices, [5.0] * 8, n_books=10)
    props = [r.proposal for r in reps if r.proposal is not None]
    assert len(props) == 1  # one open proposal per model at a time
    assert reps[5].proposal is props[0]  # as soon as the window has min_days settlements
    p = props[0]
    assert p.model == "dynamic" and p.status == "open"
    assert p.effective_at_ms == p.created_at_ms + cfg.notice_ms
    assert p.evidence["zone"] != "green" and p.evidence["factor"] == 1.5  # capped
    assert p.params["risk"]["scaling"] == 1.5 and PARAMS["risk"]["scaling"] == 1.0
    assert p.params_hash == params_hash({"model": "dynamic", "params": p.params})
    assert p.base_params_hash == params_hash({"model": "dynamic", "params": PARAMS})
    # approval = a params entry with the proposed hash; activation when it takes effect
    assert bt.on_params_entry(99, "dynamic", "other") is None
    assert bt.on_params_entry(100, "dynamic", p.params_hash) is p and p.status == "approved"
    assert bt.on_params_activated("dynamic", p.params_hash) is p and p.status == "active"


def test_unapproved_proposal_expires_at_its_effective_time() -> None:
    bt = LiveBacktest(LiveBacktestConfig(min_days=2, notice_ms=3_600_000))
    reps = run_days(bt, [100.0, 90.0, 80.0], [5.0] * 3, n_books=5)
    p = reps[-1].proposal
    assert p is not None
    assert bt.on_clock(p.effective_at_ms - 1) == []
    assert bt.on_clock(p.effective_at_ms) == [p] and p.status == "expired"


def test_no_proposal_for_models_without_a_scaling_or_when_green() -> None:
    bt = LiveBacktest(LiveBacktestConfig(min_days=2))
    reps = run_days(bt, [100.0, 90.0, 80.0, 70.0], [5.0] * 4, n_books=5, model="grid",
                    params={"grid": {}, "maintenance": {"mm_fraction": 0.75}})
    assert all(r.proposal is None for r in reps) and reps[-1].stats["zone"] == "red"
    bt2 = LiveBacktest(LiveBacktestConfig(min_days=2))
    reps2 = run_days(bt2, [100.0, 99.0, 98.0, 97.0], [5.0] * 4, n_books=5)
    assert all(r.proposal is None for r in reps2) and reps2[-1].stats["zone"] == "green"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 20.0, allow_nan=False), min_size=0, max_size=60),
       st.integers(0, 30))
def test_scaling_factor_makes_the_window_green(ratios: list[float], g: int) -> None:
    r = np.array(ratios)
    k = scaling_factor(r, g, 10.0)
    if k < 10.0:
        assert int(np.sum(r > k)) <= g
    if k > 1.01:
        assert int(np.sum(r > k - 0.01)) > g  # smallest such factor (to 0.01)


def test_unpriceable_books_are_left_out() -> None:
    bt = LiveBacktest(LiveBacktestConfig())
    assert not bt.due(ms(T0) - 1)
    h = Holdings.from_positions([{"BTC_USDC-PERPETUAL": 1.0}, {"ETH_USDC-PERPETUAL": 1.0}])
    assert bt.due(ms(T0))
    bt.settle(1, "dynamic", PARAMS, h, np.array([5.0, 5.0]), market(T0, 100.0))
    assert bt.due(ms(T0) + DAY)
    r = bt.settle(2, "dynamic", PARAMS, h, np.array([5.0, 5.0]),
                  market(T0 + timedelta(days=1), 90.0))
    assert (r.n_books, r.n_unpriced, r.n_exceptions) == (1, 1, 1)


def test_a_silent_log_over_several_settlements_compares_nothing_across_the_gap() -> None:
    bt = LiveBacktest(LiveBacktestConfig())
    h = Holdings.from_positions([{"BTC_USDC-PERPETUAL": 1.0}])
    assert not bt.due(ms(T0) - 1)
    bt.settle(1, "dynamic", PARAMS, h, np.array([5.0]), market(T0, 100.0), ms(T0))
    later = T0 + timedelta(days=3, hours=2)
    assert bt.due(ms(later))
    r = bt.settle(2, "dynamic", PARAMS, h, np.array([5.0]), market(later, 50.0), ms(later))
    assert r.n_books == 0 and r.settle_ms == ms(T0) + 3 * DAY
    assert bt.next_settle_ms == ms(T0) + 4 * DAY
