"""Console hub: each tab gets what its key may see, coalesced per account."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import numpy as np

from marginproof.bus.base import Message
from marginproof.engine.events import MarginBatch
from marginproof.service.auth import Principal
from marginproof.web.hub import ConsoleHub

OP = Principal("k0", "operator", None, "ops")
ALICE = Principal("k1", "account", "alice", "alice")
BOB = Principal("k2", "account", "bob", "bob")


def _batch(seq: int, ids: tuple[str, ...], im: float) -> MarginBatch:
    n = len(ids)
    return MarginBatch(seq, 0, 1000, "grid", "h", "tick", ids, np.full(n, im), np.full(n, im * 0.8),
                       np.full(n, 100.0), np.zeros(n, np.int8), np.zeros(n, bool),
                       tuple("BTC" for _ in ids), np.zeros(n, np.int32))


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

    async def go() -> None:
        await hub.on_message(_msg("mp.events.0.margin_batch", _batch(5, ("alice", "carol"), 10)))
        await hub.on_message(_msg("mp.events.0.margin_batch", _batch(6, ("alice",), 20)))

    asyncio.run(go())
    m_op, m_alice = op.take(), alice.take()
    assert m_op is not None and m_alice is not None
    assert {r["account_id"]: r["seq"] for r in m_op["margins"]} == {"alice": 6, "carol": 5}
    assert [(r["account_id"], r["seq"], r["initial_margin"]) for r in m_alice["margins"]] == [
        ("alice", 6, 20.0)]
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
    ids = ("alice", "b", "c", "d", "e")

    asyncio.run(hub.on_message(_msg("mp.events.0.margin_batch", _batch(7, ids, 1))))
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
