"""Expiry settlement: expired options and futures settle into collateral at the index the
engine holds when its valuation clock reaches the expiry; replay is bit-identical."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from _engine_helpers import Log, account_body

from marginproof.engine import EngineConfig, EntryKind, LogEntry, MarginEngine, Tick
from marginproof.engine.events import PositionSettled
from marginproof.engine.snapshot import dump_state, load_state
from marginproof.io.formats import market_to_dict
from marginproof.models.grid import GridModel

EXPIRY = datetime(2022, 4, 15, 8, tzinfo=UTC)  # 15APR22, Deribit's 08:00 UTC
EXPIRY_MS = int(EXPIRY.timestamp() * 1000)


def _entries(demo, log: Log) -> list[LogEntry]:  # type: ignore[no-untyped-def]
    market = demo[1]
    s0 = market.index("BTC")
    out = [log(EntryKind.MARKET, market_to_dict(market)),
           log(EntryKind.ACCOUNT, account_body(
               "long-call", {"BTC-15APR22-36000-C": 2.0, "BTC-24JUN22-40000-C": 1.0},
               {"BTC": 1.0})),
           log(EntryKind.ACCOUNT, account_body(
               "linear-call", {"BTC_USDC-15APR22-36000-C": 2.0}, {"USDC": 10_000.0})),
           log(EntryKind.ACCOUNT, account_body(
               "short-put", {"BTC-15APR22-30000-P": -3.0}, {"USDC": 50_000.0})),
           log(EntryKind.ACCOUNT, account_body(
               "future", {"BTC_USDC-15APR22": 1.5}, {"USDC": 20_000.0}))]
    for h, px in ((6, 1.004), (7, 1.01)):  # before expiry: nothing settles
        out.append(log(EntryKind.TICK, Tick("replay", "replay:BTC", "BTC",
                                            EXPIRY_MS - (8 - h) * 3_600_000,
                                            index_price=s0 * px).to_dict()))
    out.append(log(EntryKind.TICK, Tick("replay", "replay:BTC", "BTC", EXPIRY_MS,
                                        index_price=s0 * 1.02).to_dict()))
    out.append(log(EntryKind.TICK, Tick("replay", "replay:BTC", "BTC", EXPIRY_MS + 3_600_000,
                                        index_price=s0 * 1.03).to_dict()))
    # a fill into the expired future after expiry settles at once (at the index then held)
    out.append(log(EntryKind.FILL, {"account_id": "future", "instrument": "BTC_USDC-15APR22",
                                    "quantity": 1.0}))
    return out


def _run(entries: list[LogEntry]) -> tuple[MarginEngine, list[tuple[object, ...]]]:
    eng = MarginEngine(GridModel(), EngineConfig())
    out = []
    for e in entries:
        o = eng.apply(e)
        out.append((o.seq, [ev.to_dict() for ev in o.events],
                    None if o.batch is None else (o.batch.initial_margin.tobytes(),
                                                  o.batch.equity.tobytes())))
    return eng, out


def _settled(out: list[tuple[object, ...]]) -> dict[tuple[str, str], dict[str, object]]:
    first: dict[tuple[str, str], dict[str, object]] = {}
    for _, evs, _ in out:
        for ev in evs:  # type: ignore[attr-defined]
            if ev["type"] == PositionSettled.type:
                first.setdefault((ev["account_id"], ev["instrument"]), ev)
    return first


def test_expired_positions_settle_into_collateral(demo, log) -> None:  # type: ignore[no-untyped-def]
    entries = _entries(demo, log)
    eng, out = _run(entries)
    s = demo[1].index("BTC") * 1.02
    settled = _settled(out)
    # no settlement before the valuation clock reaches 08:00
    first = min(seq for seq, evs, _ in out for ev in evs  # type: ignore[attr-defined]
                if ev["type"] == "position_settled")
    assert first == entries[7].seq  # the tick at 08:00
    # long ITM inverse call: intrinsic in BTC
    ev = settled[("long-call", "BTC-15APR22-36000-C")]
    assert ev["currency"] == "BTC" and ev["settlement_price"] == s
    assert ev["amount"] == pytest.approx(2.0 * (s - 36_000.0) / s, rel=1e-15)
    pos, coll = eng.account_positions("long-call")
    assert "BTC-15APR22-36000-C" not in pos and pos["BTC-24JUN22-40000-C"] == 1.0
    assert coll["BTC"] == 1.0 + ev["amount"]
    # the linear (USDC) call pays USDC
    ev = settled[("linear-call", "BTC_USDC-15APR22-36000-C")]
    assert ev["currency"] == "USDC"
    assert ev["amount"] == pytest.approx(2.0 * (s - 36_000.0), rel=1e-15)
    assert eng.account_positions("linear-call") == ({}, {"USDC": 10_000.0 + ev["amount"]})
    # OTM short put: gone, no cash
    ev = settled[("short-put", "BTC-15APR22-30000-P")]
    assert ev["amount"] == 0.0
    assert eng.account_positions("short-put") == ({}, {"USDC": 50_000.0})
    # future: P&L from its last mark to the settlement price, in USDC
    ev = settled[("future", "BTC_USDC-15APR22")]
    assert ev["currency"] == "USDC"
    assert ev["amount"] == pytest.approx(1.5 * (s - ev["reference_price"]), rel=1e-12)
    # the later fill into the expired future settled at once, at the index held then
    late = [e for _, evs, _ in out[-1:] for e in evs  # type: ignore[attr-defined]
            if e["type"] == "position_settled"]
    assert len(late) == 1 and late[0]["quantity"] == 1.0
    assert late[0]["settlement_price"] == demo[1].index("BTC") * 1.03
    assert eng.account_positions("future")[0] == {}


def test_margin_is_not_held_on_an_expired_instrument(demo, log) -> None:  # type: ignore[no-untyped-def]
    eng, _ = _run(_entries(demo, log))
    for acc in ("long-call", "linear-call", "short-put", "future"):
        m = eng.account_margin(acc)
        assert m is not None
        assert "expired" not in m.held_reason, (acc, m.held_reason)
    assert eng.account_margin("short-put").initial_margin == 0.0  # type: ignore[union-attr]


def test_settlement_replays_bit_identically_also_from_a_snapshot(demo, log) -> None:  # type: ignore[no-untyped-def]
    entries = _entries(demo, log)
    a, out_a = _run(entries)
    b, out_b = _run(entries)
    assert out_a == out_b and a.state_digest() == b.state_digest()
    # snapshot just before the expiry tick, restore, apply the tail
    cfg = EngineConfig()
    eng = MarginEngine(GridModel(), cfg)
    for e in entries[:7]:
        eng.apply(e)
    eng = load_state(dump_state(eng, cfg), cfg)
    tail = []
    for e in entries[7:]:
        o = eng.apply(e)
        tail.append((o.seq, [ev.to_dict() for ev in o.events],
                     None if o.batch is None else (o.batch.initial_margin.tobytes(),
                                                   o.batch.equity.tobytes())))
    assert tail == out_a[7:]
