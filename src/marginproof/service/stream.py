"""Per-account fan-out of margin updates to WebSocket clients.

One bus subscription serves every connection. With the in-process bus the published
:class:`MarginBatch` object itself arrives (no serialization): each subscribed account is
looked up in it. With a network bus only the batch summary travels; the account's row is then
read from storage. Account events (margin calls, liquidations) are forwarded as they are.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

from marginproof.bus.base import Message
from marginproof.engine.events import MarginBatch
from marginproof.engine.partition import partition_of


class Fanout:
    """Routes bus messages to the queues of the accounts that have listeners."""

    def __init__(self, repo: Any, prefix: str, n_partitions: int) -> None:
        self.repo = repo
        self.prefix = prefix
        self.n_partitions = n_partitions
        self.listeners: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._sub: Any = None

    async def start(self, bus: Any) -> None:
        self._sub = await bus.subscribe(f"{self.prefix}.events.>", self.on_message)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.stop()

    def subscribe(self, account_id: str) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self.listeners[account_id].add(q)
        return q

    def unsubscribe(self, account_id: str, q: asyncio.Queue[dict[str, Any]]) -> None:
        s = self.listeners.get(account_id)
        if s is not None:
            s.discard(q)
            if not s:
                del self.listeners[account_id]

    def _put(self, account_id: str, item: dict[str, Any]) -> None:
        for q in list(self.listeners.get(account_id, ())):
            if q.full():  # a slow client loses the oldest update, never blocks the bus
                q.get_nowait()
            q.put_nowait(item)

    async def on_message(self, msg: Message) -> None:
        if not self.listeners:
            return
        if msg.subject.endswith(".margin_batch"):
            batch = msg.obj
            if isinstance(batch, MarginBatch):
                for acc in list(self.listeners):
                    i = batch.index_of(acc)
                    if i is not None:
                        self._put(acc, {"type": "margin", **batch.row(i)})
                return
            summary = json.loads(msg.data)
            seq = int(summary.get("seq", 0))
            for acc in list(self.listeners):
                if partition_of(acc, self.n_partitions) != summary.get("partition"):
                    continue
                # the summary is published before its rows are committed (at-least-once
                # order): wait briefly for the commit, then send the row if it moved
                for _ in range(100):
                    row = await asyncio.to_thread(self.repo.latest_margin, acc)
                    if row is not None and row["seq"] >= seq:
                        break
                    last = await asyncio.to_thread(self.repo.checkpoint,
                                                   f"engine-p{summary.get('partition')}of"
                                                   f"{self.n_partitions}")
                    if last >= seq:
                        break  # committed, and this account was not in the batch
                    await asyncio.sleep(0.05)
                if row is not None and row["seq"] == seq:
                    self._put(acc, {"type": "margin", **row})
            return
        try:
            ev = json.loads(msg.data)
        except ValueError:
            return
        target = ev.get("account_id") if isinstance(ev, dict) else None
        if isinstance(target, str) and target in self.listeners:
            self._put(target, ev)
