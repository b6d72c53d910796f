"""The incremental engine reproduces the grid model and re-margins only what moved."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from _engine_helpers import account_body

from marginproof.engine import EngineConfig, EntryKind, MarginEngine, Tick
from marginproof.engine.core import ms_to_datetime
from marginproof.engine.events import LiquidationSignal, MarginCall, MarginRestored
from marginproof.instruments.portfolio import Portfolio
from marginproof.io.formats import market_to_dict
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.grid import GridModel


def _positions(demo_acct) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return {p.instrument.name: p.quantity for p in demo_acct.portfolio.positions}


def test_engine_initial_margin_equals_grid_model_for_the_demo_book(demo, log, market_entry):
    acct, market = demo
    expected = GridModel().margin(acct.portfolio, market)
    eng = MarginEngine(GridModel())
    eng.apply(market_entry(log))
    out = eng.apply(log(EntryKind.ACCOUNT, account_body("a", _positions(acct), acct.collateral)))
    assert out.batch is not None
    assert out.batch.account_ids == ("a",)
    np.testing.assert_allclose(out.batch.initial_margin[0], expected.initial_margin, rtol=1e-12)
    np.testing.assert_allclose(out.batch.maintenance_margin[0], expected.maintenance_margin,
                               rtol=1e-12)
    m = eng.account_margin("a")
    assert m is not None and m.binding is not None
    assert m.model == "grid" and m.params_hash == expected.params_hash
    worst = max(expected.worst_scenarios, key=lambda w: w.loss)
    assert m.binding.underlying == worst.group
    assert m.binding.scenario_index == worst.index


def test_engine_matches_grid_model_on_random_books_after_an_index_tick(demo, log, market_entry):
    acct, market = demo
    names = sorted(market.implied_vols)[:40] + ["BTC-PERPETUAL", "BTC_USDT", "ETH_USDC-PERPETUAL"]
    names = [n for n in names if GridModel().margin(Portfolio.of({n: 1.0}), market)]
    rng = np.random.default_rng(7)
    books = {}
    eng = MarginEngine(GridModel())
    eng.apply(market_entry(log))
    for k in range(25):
        pick = rng.choice(len(names), size=rng.integers(1, 6), replace=False)
        books[f"acct-{k}"] = {names[i]: float(rng.integers(-5, 6) or 1) *
                              (10_000.0 if names[i] == "BTC-PERPETUAL" else 1.0) for i in pick}
        eng.apply(log(EntryKind.ACCOUNT, account_body(f"acct-{k}", books[f"acct-{k}"], {})))
    new_ts = market.timestamp + timedelta(hours=1)
    s_new = market.index("BTC") * 1.03
    tick = Tick("replay", "replay:BTC", "BTC", int(new_ts.timestamp() * 1000), index_price=s_new)
    out = eng.apply(log(EntryKind.TICK, tick.to_dict()))
    assert out.batch is not None
    ratio = s_new / market.index("BTC")
    # positions are valued at the engine's valuation clock: the tick's time on the 1-hour grid
    val_ms = (int(new_ts.timestamp() * 1000) // 3_600_000) * 3_600_000
    assert eng.factors.valuation_ms == val_ms
    moved = MarketSnapshot(
        ms_to_datetime(val_ms), {**market.index_prices, "BTC": s_new},
        {"BTC": {e: f * ratio for e, f in market.forwards["BTC"].items()}},
        {n: m * ratio for n, m in market.mark_prices.items()}, market.implied_vols)
    model = GridModel()
    for acc_id, book in books.items():
        expected = model.margin(Portfolio.of(book), moved).initial_margin
        m = eng.account_margin(acc_id)
        assert m is not None
        np.testing.assert_allclose(m.initial_margin, expected, rtol=1e-10, atol=1e-9)


def test_a_tick_remargins_only_accounts_exposed_to_its_underlying(demo, log, market_entry):
    eng = MarginEngine(GridModel())
    eng.apply(market_entry(log))
    eng.apply(log(EntryKind.ACCOUNT, account_body("btc-only", {"BTC-PERPETUAL": 50_000}, {})))
    eng.apply(log(EntryKind.ACCOUNT, account_body("eth-only", {"ETH_USDC-PERPETUAL": 3}, {})))
    eng.apply(log(EntryKind.ACCOUNT, account_body("eth-with-btc-collateral",
                                                  {"ETH_USDC-PERPETUAL": 3}, {"BTC": 1.0})))
    ts = int(demo[1].timestamp.timestamp() * 1000) + 60_000
    tick = Tick("replay", "replay:BTC", "BTC", ts, index_price=demo[1].index("BTC") * 0.99)
    out = eng.apply(log(EntryKind.TICK, tick.to_dict()))
    assert out.batch is not None
    assert set(out.batch.account_ids) == {"btc-only", "eth-with-btc-collateral"}


def test_a_fill_updates_exactly_one_account_and_matches_a_fresh_computation(demo, log,
                                                                           market_entry):
    acct, market = demo
    eng = MarginEngine(GridModel())
    eng.apply(market_entry(log))
    eng.apply(log(EntryKind.ACCOUNT, account_body("a", {"BTC-PERPETUAL": 10_000}, {})))
    eng.apply(log(EntryKind.ACCOUNT, account_body("b", {"BTC-PERPETUAL": 20_000}, {})))
    opt = sorted(market.implied_vols)[10]
    out = eng.apply(log(EntryKind.FILL, {"account_id": "a", "instrument": opt, "quantity": -2.0}))
    assert out.batch is not None and out.batch.account_ids == ("a",)
    expected = GridModel().margin(Portfolio.of({"BTC-PERPETUAL": 10_000, opt: -2.0}), market)
    np.testing.assert_allclose(out.batch.initial_margin[0], expected.initial_margin, rtol=1e-12)
    out = eng.apply(log(EntryKind.TRANSFER, {"account_id": "b", "asset": "USDC",
                                             "amount": 1000.0}))
    assert out.batch is not None and out.batch.account_ids == ("b",)
    assert out.batch.equity[0] == pytest.approx(1000.0)


def test_status_changes_emit_call_liquidation_and_restore_events_with_explanation(
        demo, log, market_entry):
    eng = MarginEngine(GridModel())
    eng.apply(market_entry(log))
    out = eng.apply(log(EntryKind.ACCOUNT, account_body("a", {"BTC-PERPETUAL": 100_000},
                                                        {"USDC": 1.0})))
    m = eng.account_margin("a")
    assert m is not None
    assert m.status == "liquidation"
    (ev,) = out.events
    assert isinstance(ev, LiquidationSignal)
    d = ev.to_dict()
    assert d["model"] == "grid" and len(d["params_hash"]) == 64
    assert d["market_ts_ms"] == int(demo[1].timestamp.timestamp() * 1000)
    assert d["binding"]["underlying"] == "BTC"
    assert "BTC" in d["binding"]["scenario_label"]
    assert d["shortfall_usd"] == pytest.approx(m.initial_margin - 1.0)
    # top up to between MM and IM: margin call
    top = 0.9 * m.initial_margin
    out = eng.apply(log(EntryKind.TRANSFER, {"account_id": "a", "asset": "USD", "amount": top}))
    assert [type(e) for e in out.events] == [MarginCall]
    out = eng.apply(log(EntryKind.TRANSFER, {"account_id": "a", "asset": "USD",
                                             "amount": m.initial_margin}))
    assert [type(e) for e in out.events] == [MarginRestored]


def test_same_entries_give_bit_identical_margins(demo, log, market_entry):
    acct, market = demo
    entries = [market_entry(log)]
    rng = np.random.default_rng(3)
    names = sorted(market.implied_vols)[:30] + ["BTC-PERPETUAL"]
    for k in range(50):
        entries.append(log(EntryKind.ACCOUNT, account_body(
            f"a{k}", {names[int(i)]: float(rng.integers(-3, 4) or 1)
                      for i in rng.choice(len(names), 3)}, {"USDC": 1e4})))
    ts = int(market.timestamp.timestamp() * 1000)
    for h in range(10):
        s = market.index("BTC") * float(np.exp(rng.normal(0, 0.01)))
        entries.append(log(EntryKind.TICK, Tick("replay", "replay:BTC", "BTC",
                                                ts + (h + 1) * 3_600_000,
                                                index_price=s).to_dict()))
        entries.append(log(EntryKind.FILL, {"account_id": f"a{h}", "instrument": names[h],
                                            "quantity": 1.0}))
    digests = []
    for _ in range(2):
        eng = MarginEngine(GridModel())
        ims = []
        for e in entries:
            out = eng.apply(e)
            if out.batch is not None:
                ims.append(out.batch.initial_margin.tobytes())
        digests.append((eng.state_digest(), ims))
    assert digests[0] == digests[1]


def test_partitions_together_compute_what_one_engine_computes(demo, log, market_entry):
    acct, market = demo
    entries = [market_entry(log)]
    for k in range(40):
        entries.append(log(EntryKind.ACCOUNT, account_body(
            f"acct-{k}", {"BTC-PERPETUAL": 1000.0 * (k + 1)}, {"BTC": 0.01 * k})))
    whole = MarginEngine(GridModel())
    parts = [MarginEngine(GridModel(), EngineConfig(n_partitions=3, partition=p))
             for p in range(3)]
    for e in entries:
        whole.apply(e)
        for p in parts:
            p.apply(e)
    seen = set()
    for k in range(40):
        owners = [p for p in parts if p.account_margin(f"acct-{k}") is not None]
        assert len(owners) == 1
        assert owners[0].account_margin(f"acct-{k}") == whole.account_margin(f"acct-{k}")
        seen.add(id(owners[0]))
    assert len(seen) == 3


def test_gap_in_the_log_is_refused(log, market_entry):
    eng = MarginEngine(GridModel())
    eng.apply(market_entry(log))
    log.seq += 1  # skip one
    with pytest.raises(ValueError, match="gap"):
        eng.apply(log(EntryKind.ACCOUNT, account_body("a", {}, {})))


def test_params_entry_takes_effect_at_its_stated_time_and_remargins_everyone(demo, log,
                                                                           market_entry):
    eng = MarginEngine(GridModel())
    eng.apply(market_entry(log))
    eng.apply(log(EntryKind.ACCOUNT, account_body("a", {"BTC-PERPETUAL": 50_000}, {})))
    before = eng.account_margin("a")
    assert before is not None
    params = dict(GridModel().params)
    params["grid"] = dict(params["grid"])
    params["grid"]["price_range"] = {"default": 0.25, "BTC": 0.32, "ETH": 0.18}
    effective = log.clock_ms + 10_000
    out = eng.apply(log(EntryKind.PARAMS, {"model": "grid", "params": params,
                                           "effective_at_ms": effective, "changed_by": "ops"}))
    assert out.batch is None and eng.account_margin("a") == before
    out = eng.apply(log(EntryKind.TRANSFER, {"account_id": "a", "asset": "USD", "amount": 1.0},
                        advance_ms=20_000))
    assert out.batch is not None
    after = eng.account_margin("a")
    assert after is not None
    assert after.params_hash == GridModel(params).params_hash != before.params_hash
    assert after.initial_margin == pytest.approx(2 * before.initial_margin, rel=1e-9)
    assert any(e.type == "params_activated" for e in out.events)


def test_malformed_entries_change_nothing_and_raise_an_alert(log, market_entry):
    eng = MarginEngine(GridModel())
    eng.apply(market_entry(log))
    eng.apply(log(EntryKind.ACCOUNT, account_body("a", {"BTC-PERPETUAL": 50_000}, {})))
    before = eng.state_digest()
    for body in ({"account_id": "a", "instrument": "NOPE", "quantity": 1},
                 {"account_id": "a", "instrument": "BTC-PERPETUAL", "quantity": "x"},
                 {"account_id": "", "instrument": "BTC-PERPETUAL", "quantity": 1}):
        out = eng.apply(log(EntryKind.FILL, body))
        assert out.batch is None
        assert out.events and out.events[0].type == "feed_alert"
    assert eng.state_digest() == before


def test_market_entry_json_round_trip_is_what_the_engine_prices(demo):
    _, market = demo
    assert market_to_dict(market)["index_prices"]["BTC"] == market.index("BTC")
