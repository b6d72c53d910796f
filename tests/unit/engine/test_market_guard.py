"""The market-data guard as a class: first prints, future timestamps, slides, corroboration,
and the bound -- no sequence of ticks from one source lowers a margin by more than the band."""

from __future__ import annotations

import math
from typing import Any

import pytest
from _engine_helpers import Log, account_body
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marginproof.engine import EntryKind, MarginEngine, Tick
from marginproof.engine.core import EngineConfig, EngineOutput
from marginproof.engine.quality import QualityConfig, TickProblem, TickValidator
from marginproof.io.formats import market_to_dict
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.grid import GridModel

CFG = QualityConfig()
PERP = "BTC_USDC-PERPETUAL"  # linear: the grid IM of a position is proportional to its price


def _engine(demo: tuple[Any, MarketSnapshot], positions: dict[str, float],
            config: QualityConfig = CFG) -> tuple[MarginEngine, Log, int]:
    _, market = demo
    t0 = int(market.timestamp.timestamp() * 1000)
    lg = Log(t0)
    eng = MarginEngine(GridModel(), EngineConfig(quality=config))
    eng.apply(lg(EntryKind.MARKET, market_to_dict(market)))
    eng.apply(lg(EntryKind.ACCOUNT, account_body("a", positions, {"USDC": 1e6})))
    return eng, lg, t0


def _tick(eng: MarginEngine, lg: Log, t_ms: int, source: str = "binance",
          advance_ms: int | None = None, **values: Any) -> EngineOutput:
    tick = Tick(source, f"{source}:BTC", "BTC", t_ms, **values)
    adv = max(0, t_ms - lg.clock_ms) if advance_ms is None else advance_ms
    return eng.apply(lg(EntryKind.TICK, tick.to_dict(), advance_ms=adv))


def _problems(out: EngineOutput) -> list[str]:
    return [getattr(e, "problem", "") for e in out.events if e.type == "feed_alert"]


def _im(eng: MarginEngine) -> float:
    m = eng.account_margin("a")
    assert m is not None
    return m.initial_margin


def test_a_first_mark_far_from_the_index_is_refused_and_the_true_one_then_accepted(demo):
    eng, lg, t0 = _engine(demo, {"BTC-PERPETUAL": 100_000, PERP: -10.0})
    s = demo[1].index("BTC")
    im0 = _im(eng)
    out = _tick(eng, lg, t0 + 1000, marks={PERP: 1.0})
    assert _problems(out) == ["out_of_range"]
    assert _im(eng) >= im0
    out = _tick(eng, lg, t0 + 2000, marks={PERP: s * 1.001})  # the true print
    assert _problems(out) == [] and not eng.account_margin("a").held  # type: ignore[union-attr]
    assert eng.market.underlyings["BTC"].marks[PERP] == s * 1.001


def test_an_option_ticks_underlying_price_is_range_checked_against_the_index(demo):
    _, market = demo
    opt = sorted(k for k in market.implied_vols if k.startswith("BTC-"))[40]
    eng, lg, t0 = _engine(demo, {opt: -5.0})
    im0 = _im(eng)
    seeded = int(next(iter(market.forwards["BTC"])).timestamp() * 1000)
    out = _tick(eng, lg, t0 + 1000, forwards={str(seeded): 1.0})  # a seeded forward
    assert _problems(out) == ["jump"] and _im(eng) >= im0
    out = _tick(eng, lg, t0 + 2000, forwards={str(seeded + 3_600_000): 1.0})  # a first print
    assert _problems(out) == ["out_of_range"] and _im(eng) >= im0


def test_a_future_tick_is_refused_and_does_not_poison_the_ticks_after_it(demo):
    eng, lg, t0 = _engine(demo, {PERP: -10.0})
    s = demo[1].index("BTC")
    lg.clock_ms = t0 + 10_000
    out = _tick(eng, lg, t0 + 10_000 + 3_600_000, advance_ms=0, index_price=s)
    assert _problems(out) == ["future"]
    for k in range(1, 4):  # the real ticks after it are in order and accepted
        out = _tick(eng, lg, t0 + 10_000 + 100 * k, index_price=s * (1 + 1e-4 * k))
        assert _problems(out) == [], out.events
    assert eng.market.index("BTC") == pytest.approx(s * 1.0003)
    # within the clock-skew tolerance a tick a little ahead is fine
    out = _tick(eng, lg, lg.clock_ms + CFG.max_future_ms, advance_ms=0, index_price=s)
    assert _problems(out) == []


def test_a_slide_of_moves_each_below_the_jump_limit_is_flagged(demo):
    eng, lg, t0 = _engine(demo, {PERP: 10.0})
    s = demo[1].index("BTC")
    im0 = _im(eng)
    problems = []
    for k in range(1, 6):  # 5 x -13 % in one second
        out = _tick(eng, lg, t0 + 200 * k, index_price=s * 0.87 ** k, marks={PERP: s * 0.87 ** k})
        problems += _problems(out)
    assert problems[:1] == [] or problems[0] in ("slide", "jump")
    assert "slide" in problems and len(problems) >= 4
    assert _im(eng) >= im0 * math.exp(-CFG.bound(1000)) * (1 - 1e-12)


def test_the_same_slide_over_minutes_is_the_market_and_is_followed(demo):
    eng, lg, t0 = _engine(demo, {PERP: 10.0})
    s = demo[1].index("BTC")
    for k in range(1, 6):  # -13 % a minute
        out = _tick(eng, lg, t0 + 60_000 * k, index_price=s * 0.87 ** k,
                    marks={PERP: s * 0.87 ** k})
        assert _problems(out) == []
    assert eng.market.index("BTC") == pytest.approx(s * 0.87 ** 5)


def test_a_crash_beyond_the_band_needs_a_second_source(demo):
    eng, lg, t0 = _engine(demo, {PERP: 10.0})
    s = demo[1].index("BTC")
    im0 = _im(eng)
    for k in range(3):  # one source repeating a -30 % print does not confirm itself
        out = _tick(eng, lg, t0 + 100 + k, index_price=s * 0.7)
        assert _problems(out) == ["jump"] and _im(eng) >= im0
    out = _tick(eng, lg, t0 + 200, source="deribit", index_price=s * 0.705)
    assert _problems(out) == []
    assert eng.market.index("BTC") == pytest.approx(s * 0.705)
    assert not eng.account_margin("a").held  # type: ignore[union-attr]


def test_a_first_print_with_no_reference_waits_for_time_or_a_second_source() -> None:
    t0 = 1_650_000_000_000
    v = TickValidator()
    t = Tick("binance", "binance:SOL", "SOL", t0, index_price=100.0)
    assert v.check(t, t0).problem is TickProblem.UNCONFIRMED
    again = Tick("binance", "binance:SOL", "SOL", t0 + 5_000, index_price=100.5)
    assert v.check(again, t0 + 5_000).problem is TickProblem.UNCONFIRMED  # too soon
    later = Tick("binance", "binance:SOL", "SOL", t0 + CFG.first_confirm_ms, index_price=100.2)
    assert v.check(later, t0 + CFG.first_confirm_ms).accepted
    w = TickValidator()
    assert not w.check(t, t0).accepted
    other = Tick("deribit", "deribit:SOL", "SOL", t0 + 1, index_price=100.3)
    assert w.check(other, t0 + 1).accepted


def test_a_first_vol_is_checked_against_the_underlyings_vols(demo):
    _, market = demo
    v = TickValidator()
    for k, x in market.implied_vols.items():
        v.seed(f"vol:{k}", x)
    t0 = int(market.timestamp.timestamp() * 1000)
    name = "BTC-30DEC22-155000-C"
    assert f"vol:{name}" not in v._bands
    bad = Tick("deribit", "deribit:opt", "BTC", t0, implied_vols={name: 0.0002})
    assert v.check(bad, t0).problem is TickProblem.OUT_OF_RANGE
    good = Tick("deribit", "deribit:opt", "BTC", t0 + 1, implied_vols={name: 0.9})
    assert v.check(good, t0 + 1).accepted


# -- the bound, for any sequence of one source's ticks -----------------------------------------
step = st.tuples(
    st.integers(0, 30_000),                    # ms of market time since the previous tick
    st.floats(-3.0, 3.0),                      # ln(index / seed)
    st.one_of(st.none(), st.floats(-3.0, 3.0)),  # ln(mark / seed) or no mark
    st.sampled_from(["ok", "ok", "ok", "future", "old", "dup", "nan"]),
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=25))
def test_one_source_never_lowers_a_margin_below_the_guarded_bound(demo, steps) -> None:
    _run_adversary(demo, steps)


def test_the_adversary_gets_ticks_through_and_refused(demo) -> None:
    """The property above is not vacuous: in a fixed run many ticks pass, many are refused."""
    import random

    rnd = random.Random(5)
    kinds = ["ok", "ok", "ok", "future", "old", "dup", "nan"]
    steps = [(rnd.randint(0, 30_000), rnd.uniform(-0.3, 0.3),
              None if rnd.random() < 0.3 else rnd.uniform(-0.3, 0.3), rnd.choice(kinds))
             for _ in range(300)]
    accepted, refused = _run_adversary(demo, steps)
    assert accepted > 30 and refused > 30


def _run_adversary(demo: Any, steps: list[tuple[int, float, float | None, str]]
                   ) -> tuple[int, int]:
    """Random adversarial ticks from one source on a linear perpetual (grid IM proportional to
    the price it is margined at: its mark, else the index). With B = J + rho * (t - t0):
    the index stays within B of the seed, the mark's basis within B plus the first-print
    allowance, so IM >= IM0 * exp(-(2B + max_basis)) -- and IM >= IM0 * exp(-B) while no mark
    was ever accepted. Every refusal is alerted and changes no market data."""
    eng, lg, t0 = _engine(demo, {PERP: 10.0})
    s0 = demo[1].index("BTC")
    im0 = _im(eng)
    t = t0
    n_ok = n_refused = 0
    for seq, (dt, li, lm, how) in enumerate(steps, start=1):
        t += dt
        ex, tseq = t, seq
        if how == "future":
            ex = t + 3_600_000
        elif how == "old":
            ex = t - 1
        elif how == "dup":
            tseq = max(1, seq - 1)
        idx = float("nan") if how == "nan" else s0 * math.exp(li)
        marks = {} if lm is None else {PERP: s0 * math.exp(lm)}
        lg.clock_ms = t
        u = eng.market.underlyings["BTC"]
        before = (u.index, dict(u.marks))
        out = eng.apply(lg(EntryKind.TICK, Tick("binance", "binance:BTC", "BTC", ex, seq=tseq,
                                                index_price=idx, marks=marks).to_dict(),
                           advance_ms=0))
        if _problems(out):
            n_refused += 1
            assert (u.index, dict(u.marks)) == before
        else:  # accepted: what the tick said is what the engine uses
            n_ok += 1
            assert u.index == idx and all(u.marks[k] == v for k, v in marks.items())
        b = CFG.bound(t - t0) + 1e-12
        assert abs(math.log(u.index / s0)) <= b
        if PERP in u.marks:
            assert abs(math.log(u.marks[PERP] / u.index)) <= b + CFG.max_basis
            assert _im(eng) >= im0 * math.exp(-(2 * b + CFG.max_basis)) * (1 - 1e-9)
        else:
            assert _im(eng) >= im0 * math.exp(-b) * (1 - 1e-9)
    return n_ok, n_refused
