"""Console hub: each tab gets what its key may see, coalesced per account."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

from marginproof.bus.base import Message
from marginproof.demo.book import demo_market
from marginproof.engine.core import MarginEngine
from marginproof.engine.entries import EntryKind, LogEntry
from marginproof.engine.events import MarginBatch
from marginproof.io.formats import market_to_dict
from marginproof.models.grid import GridModel
from marginproof.service.auth import Principal
from marginproof.web.hub import ConsoleHub

OP = Principal("k0", "operator", None, "ops")
ALICE = Principal("k1", "account", "alice", "alice")
BOB = Principal("k2", "account", "bob", "bob")


class _Engine:
    """A real engine over the demo market, so batches are built as the service builds them."""

    def __init__(self) -> None:
        self.eng = MarginEngine(GridModel())
        self.seq = 0
        self.market = market_to_dict(demo_market())
        self._apply(EntryKind.MARKET, self.market)

    def _apply(self, kind: EntryKind, body: dict[str, Any]) -> MarginBatch | None:
        self.seq += 1
        return self.eng.apply(LogEntry(self.seq, kind, self.seq, "t", body)).batch

    def account(self, acc: str, qty: float) -> MarginBatch:
        b = self._apply(EntryKind.ACCOUNT, {"account_id": acc, "collateral": {"USDC": 1e4},
                                            "positions": {"BTC-PERPETUAL": qty}})
        assert b is not None
        return b

    def everyone(self) -> MarginBatch:
        b = self._apply(EntryKind.MARKET, self.market)  # re-margins every account
        assert b is not None
        return b


def _msg(subject: str, obj: Any = None, data: dict[str, Any] | None = None) -> Message:
    return Message(subject, json.dumps(data or {}).encode(), "id", obj)


def _hub(latest: dict[str, Any] | None = None) -> ConsoleHub:
    repo = SimpleNamespace(latest_margin=lambda acc: latest)
    container = SimpleNamespace(bus=None, repo=repo,
                                settings=SimpleNamespace(bus_prefix="mp", partitions=1))
    return ConsoleHub(container, max_rows=3)


def test_account_tabs_get_only_their_rows_operators_get_all_coalesced() -> None:
    hub = _hub()
    op, alice, bob = hub.attach(OP), hub.attach(ALICE), hub.attach(BOB)
    eng = _Engine()
    first, carol = eng.account("alice", 1000.0), eng.account("carol", -500.0)
    second = eng.account("alice", 3000.0)

    async def go() -> None:
        for b in (first, carol, second):
            await hub.on_message(_msg("mp.events.0.margin_batch", b))

    asyncio.run(go())
    m_op, m_alice = op.take(), alice.take()
    assert m_op is not None and m_alice is not None
    assert {r["account_id"]: r["seq"] for r in m_op["margins"]} == {"alice": second.seq,
                                                                     "carol": carol.seq}
    (row,) = m_alice["margins"]
    assert (row["account_id"], row["seq"]) == ("alice", second.seq)
    assert row["initial_margin"] == float(second.initial_margin[0]) > float(
        first.initial_margin[0])
    assert bob.take() is None
    assert op.take() is None  # taken once


def test_account_events_reach_only_their_owner_broadcasts_reach_everyone() -> None:
    hub = _hub()
    op, alice, bob = hub.attach(OP), hub.attach(ALICE), hub.attach(BOB)

    async def go() -> None:
        await hub.on_message(_msg("mp.events.0.margin_call",
                                  data={"type": "margin_call", "account_id": "alice", "seq": 9}))
        await hub.on_message(_msg("mp.events.0.feed_alert",
                                  data={"type": "feed_alert", "stream": "s", "seq": 10}))
        await hub.on_message(_msg("mp.events.announcements",
                                  data={"type": "params_scheduled", "model": "grid"}))

    asyncio.run(go())
    types = lambda c: [e["type"] for e in c.take()["events"]]  # noqa: E731
    assert types(alice) == ["margin_call", "feed_alert", "params_scheduled"]
    assert types(bob) == ["feed_alert", "params_scheduled"]
    assert types(op) == ["margin_call", "feed_alert", "params_scheduled"]


def test_large_batches_ask_operators_to_refresh_instead_of_streaming_rows() -> None:
    hub = _hub()
    op, alice = hub.attach(OP), hub.attach(ALICE)
    eng = _Engine()
    for i, acc in enumerate(("alice", "b", "c", "d", "e")):
        eng.account(acc, 100.0 * (i + 1))
    batch = eng.everyone()
    assert len(batch) == 5 > hub.max_rows
    asyncio.run(hub.on_message(_msg("mp.events.0.margin_batch", batch)))
    m = op.take()
    assert m is not None and m["refresh"] is True and m["margins"] == []
    m = alice.take()
    assert m is not None and [r["account_id"] for r in m["margins"]] == ["alice"]


def test_network_bus_summaries_read_the_account_row_from_storage() -> None:
    row = {"account_id": "alice", "seq": 12, "initial_margin": 1.0}
    hub = _hub(latest=row)
    op, alice = hub.attach(OP), hub.attach(ALICE)
    summary = {"type": "margin_batch", "seq": 12, "partition": 0}
    asyncio.run(hub.on_message(_msg("mp.events.0.margin_batch", None, summary)))
    assert alice.take()["margins"] == [row]  # type: ignore[index]
    assert op.take()["refresh"] is True  # type: ignore[index]
    hub.detach(alice)
    asyncio.run(hub.on_message(_msg("mp.events.0.margin_batch", None, summary)))
    assert alice.take() is None
