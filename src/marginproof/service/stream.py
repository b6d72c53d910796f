"""Per-account fan-out of margin updates to WebSocket clients.

One bus subscription serves every connection. With the in-process bus the published
:class:`MarginBatch` object itself arrives (no serialization): each subscribed account is
looked up in it. With a network bus only the batch summary travels; the account's row is then
read from storage. Account events (margin calls, liquidations) are forwarded as they are.
Waiting for a row's commit happens in the fan-out's own task, never in the bus handler: a
handler that blocks stops the subscription's pulls (and an idle ephemeral JetStream consumer is
deleted by the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from typing import Any

from marginproof.bus.base import Message
from marginproof.engine.events import MarginBatch
from marginproof.engine.partition import partition_of

log = logging.getLogger(__name__)


class Fanout:
    """Routes bus messages to the queues of the accounts that have listeners."""

    def __init__(self, repo: Any, prefix: str, n_partitions: int) -> None:
        self.repo = repo
        self.prefix = prefix
        self.n_partitions = n_partitions
        self.listeners: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._sub: Any = None
        self._pending: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._busy = False
        self._worker: asyncio.Task[None] | None = None

    async def start(self, bus: Any) -> None:
        self._worker = asyncio.create_task(self._deliver_in_order(), name="fanout-delivery")
        self._sub = await bus.subscribe(f"{self.prefix}.events.>", self.on_message)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.stop()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

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
        log.debug("to %s: %s seq %s (%d connections)", account_id, item.get("type"),
                  item.get("seq"), len(self.listeners.get(account_id, ())))
        for q in list(self.listeners.get(account_id, ())):
            if q.full():  # a slow client loses the oldest update, never blocks the bus
                q.get_nowait()
            q.put_nowait(item)

    async def on_message(self, msg: Message) -> None:
        log.debug("bus message %s (%d listening accounts)", msg.subject, len(self.listeners))
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
            if isinstance(summary, dict):
                self._pending.put_nowait(("summary", summary))  # rows: _deliver_in_order
            return
        try:
            ev = json.loads(msg.data)
        except ValueError:
            return
        target = ev.get("account_id") if isinstance(ev, dict) else None
        if isinstance(target, str) and target in self.listeners:
            if self._pending.empty() and not self._busy:
                self._put(target, ev)
            else:  # behind a summary whose row is not sent yet: keep the bus order
                self._pending.put_nowait(("event", ev))

    async def _deliver_in_order(self) -> None:
        """Send each listening account its row of every summarised batch (and the events
        queued behind one), in bus order."""
        while True:
            kind, item = await self._pending.get()
            self._busy = True
            try:
                if kind == "summary":
                    await self._deliver(item)
                elif isinstance(item.get("account_id"), str):
                    self._put(item["account_id"], item)
            except Exception:  # storage hiccup: this update is skipped, the stream goes on
                log.exception("fan-out of %s %s failed", kind, item.get("seq"))
            finally:
                self._busy = False

    async def _deliver(self, summary: dict[str, Any]) -> None:
        seq = int(summary.get("seq", 0))
        part = summary.get("partition")
        accounts = [a for a in self.listeners if partition_of(a, self.n_partitions) == part]
        if not accounts:
            return
        # The summary is published before its rows are committed (at-least-once order): wait
        # (up to ~30 s) until the engine's checkpoint passes it, once per batch, then read the
        # listeners' rows. Rows and checkpoint commit in one transaction, so a row read after
        # seeing checkpoint >= seq is the committed one. (Reading a row before the checkpoint
        # let a commit land between the two reads: the old row was taken as "not in the
        # batch" and the update was never sent.)
        consumer = f"engine-p{part}of{self.n_partitions}"
        for _ in range(600):
            if await asyncio.to_thread(self.repo.checkpoint, consumer) >= seq:
                break
            await asyncio.sleep(0.05)
        for acc in accounts:
            row = await asyncio.to_thread(self.repo.latest_margin, acc)
            log.debug("batch %d for %s: latest row seq %s", seq, acc,
                      None if row is None else row["seq"])
            if row is not None and row["seq"] == seq:
                self._put(acc, {"type": "margin", **row})
