"""Bad ticks are detected; the engine then holds (never lowers) margins and raises an alert."""

from __future__ import annotations

import pytest
from _engine_helpers import account_body
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marginproof.engine import EntryKind, MarginEngine, Tick
from marginproof.engine.quality import QualityConfig, TickProblem, TickValidator
from marginproof.models.grid import GridModel

T0 = 1_650_000_000_000


def _tick(ms: int, px: float, seq: int | None = None, source: str = "binance") -> Tick:
    return Tick(source, f"{source}:btcusdt", "BTC", ms, seq=seq, index_price=px)


def _seeded(config: QualityConfig | None = None, px: float = 40_000.0) -> TickValidator:
    v = TickValidator(config or QualityConfig())
    v.seed("index:BTC", px)  # what a market snapshot does
    return v


@pytest.mark.parametrize(("second", "problem"), [
    (_tick(T0 + 1, float("nan"), 2), TickProblem.NAN),
    (_tick(T0 + 1, -5.0, 2), TickProblem.NAN),
    (_tick(T0 + 1, 40_100.0, 1), TickProblem.DUPLICATE),
    (_tick(T0, 40_000.0), TickProblem.DUPLICATE),
    (_tick(T0 + 1, 40_100.0, 0), TickProblem.OUT_OF_ORDER),
    (_tick(T0 - 1, 40_100.0, 2), TickProblem.OUT_OF_ORDER),
    (_tick(T0 + 1, 52_000.0, 2), TickProblem.JUMP),
])
def test_validator_flags_each_kind_of_bad_tick(second: Tick, problem: TickProblem) -> None:
    v = _seeded()
    assert v.check(_tick(T0, 40_000.0, 1 if second.seq is not None else None), T0).accepted
    verdict = v.check(second, T0 + 2)
    assert verdict.problem is problem
    assert verdict.detail


def test_validator_flags_a_tick_received_too_late_but_not_a_replayed_one() -> None:
    v = _seeded(QualityConfig(max_delay_ms=1000))
    assert v.check(_tick(T0, 40_000.0), T0 + 2000).problem is TickProblem.STALE
    assert v.check(_tick(T0, 40_000.0, source="replay"), T0 + 10**9).accepted


def test_a_jump_is_quarantined_then_accepted_when_a_second_source_confirms_it() -> None:
    v = _seeded()
    assert v.check(_tick(T0, 40_000.0), T0).accepted
    assert v.check(_tick(T0 + 1, 30_000.0), T0).problem is TickProblem.JUMP
    # the same source repeating itself is no corroboration
    assert v.check(_tick(T0 + 2, 30_100.0), T0).problem is TickProblem.JUMP
    confirm = v.check(_tick(T0 + 3, 30_050.0, source="deribit"), T0)
    assert confirm.accepted and confirm.confirmed_jump
    assert v.check(_tick(T0 + 4, 30_050.0), T0).accepted


def test_a_single_bad_print_between_good_ticks_is_not_confirmed() -> None:
    v = _seeded()
    assert v.check(_tick(T0, 40_000.0), T0).accepted
    assert v.check(_tick(T0 + 1, 4_000.0), T0).problem is TickProblem.JUMP
    assert v.check(_tick(T0 + 2, 40_010.0), T0).accepted


def _engine_with_short_book(demo, log, market_entry):  # type: ignore[no-untyped-def]
    eng = MarginEngine(GridModel())
    eng.apply(market_entry(log))
    eng.apply(log(EntryKind.ACCOUNT, account_body("a", {"BTC-PERPETUAL": -80_000},
                                                  {"USDC": 100_000})))
    return eng


@pytest.mark.parametrize("bad_index", [float("nan"), float("inf"), 0.0, -1.0, 1e9])
def test_a_bad_tick_holds_margin_flags_the_account_and_alerts(demo, log, market_entry,
                                                              bad_index: float) -> None:
    eng = _engine_with_short_book(demo, log, market_entry)
    before = eng.account_margin("a")
    assert before is not None and not before.held
    ts = int(demo[1].timestamp.timestamp() * 1000) + 1000
    out = eng.apply(log(EntryKind.TICK, Tick("replay", "replay:BTC", "BTC", ts,
                                             index_price=bad_index).to_dict()))
    assert [e.type for e in out.events] == ["feed_alert"]
    after = eng.account_margin("a")
    assert after is not None
    assert after.initial_margin == before.initial_margin and after.held
    assert out.batch is not None and bool(out.batch.held[0])


def test_while_degraded_a_risk_reducing_fill_does_not_lower_margin(demo, log, market_entry):
    eng = _engine_with_short_book(demo, log, market_entry)
    before = eng.account_margin("a")
    assert before is not None
    eng.apply(log(EntryKind.FEED_STATUS, {"stream": "binance:btcusdt", "underlying": "BTC",
                                          "status": "stale", "reason": "no tick for 30 s"}))
    out = eng.apply(log(EntryKind.FILL, {"account_id": "a", "instrument": "BTC-PERPETUAL",
                                         "quantity": 70_000}))
    assert out.batch is not None
    assert out.batch.initial_margin[0] == before.initial_margin and out.batch.held[0]
    # a good tick clears the degradation and the lower margin applies
    ts = int(demo[1].timestamp.timestamp() * 1000) + 1000
    eng.apply(log(EntryKind.TICK, Tick("replay", "replay:BTC", "BTC", ts,
                                       index_price=demo[1].index("BTC")).to_dict()))
    after = eng.account_margin("a")
    assert after is not None and not after.held
    assert after.initial_margin < before.initial_margin


def test_duplicate_and_out_of_order_ticks_are_ignored_with_an_alert(demo, log, market_entry):
    eng = _engine_with_short_book(demo, log, market_entry)
    ts = int(demo[1].timestamp.timestamp() * 1000) + 1000
    s = demo[1].index("BTC")
    good = Tick("binance", "binance:btcusdt@markPrice", "BTC", ts, seq=10, index_price=s * 1.01)
    eng.apply(log(EntryKind.TICK, good.to_dict(), advance_ms=0))
    digest = eng.state_digest()
    for t in (good, Tick("binance", good.stream, "BTC", ts - 1, seq=9, index_price=s * 0.99)):
        out = eng.apply(log(EntryKind.TICK, t.to_dict(), advance_ms=0))
        assert out.batch is None and [e.type for e in out.events] == ["feed_alert"]
    assert eng.state_digest() == digest


finite_or_not = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                          st.sampled_from([float("nan"), 0.0, -1.0, 1e12]))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prices=st.lists(finite_or_not, min_size=1, max_size=8))
def test_no_sequence_of_ticks_lowers_margin_while_the_data_is_bad(demo, prices):
    from _engine_helpers import Log

    from marginproof.io.formats import market_to_dict
    acct, market = demo
    lg = Log(int(market.timestamp.timestamp() * 1000))
    eng = MarginEngine(GridModel())
    eng.apply(lg(EntryKind.MARKET, market_to_dict(market)))
    eng.apply(lg(EntryKind.ACCOUNT, account_body("a", {"BTC-PERPETUAL": -80_000}, {})))
    m0 = eng.account_margin("a")
    assert m0 is not None
    last_good = m0.initial_margin
    for k, p in enumerate(prices):
        t = Tick("replay", "replay:BTC", "BTC", lg.clock_ms + 1 + k, index_price=p)
        out = eng.apply(lg(EntryKind.TICK, t.to_dict()))
        m = eng.account_margin("a")
        assert m is not None
        accepted = not any(e.type == "feed_alert" for e in out.events)
        if not accepted:
            assert m.initial_margin >= last_good
        else:
            assert not m.held
        last_good = m.initial_margin
