"""Console stream: one bus subscription fans margin updates and alerts out to browser tabs.

Each connected console has a :class:`ConsoleClient` buffer. Margin rows are coalesced per
account (only the newest row of an account is sent) and flushed every ``flush_s`` seconds, so a
tick that re-margins thousands of accounts costs one message per tab, not thousands. What a tab
receives follows its key's scope: an account key only its own account's rows and events; an
operator key every account's rows (or, for batches above ``max_rows``, a ``refresh`` hint to
re-read the ranking). Feed alerts and parameter announcements go to every tab.

With the in-process bus the published :class:`MarginBatch` arrives as an object; with a network
bus only its summary travels, and an account tab reads its own row from storage (like
:class:`marginproof.service.stream.Fanout`).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

from marginproof.bus.base import Message
from marginproof.engine.events import MarginBatch
from marginproof.engine.partition import partition_of
from marginproof.service.auth import Principal

BROADCAST_TYPES = frozenset({"feed_alert", "params_scheduled", "params_activated"})


class ConsoleClient:
    """Pending updates of one console connection."""

    def __init__(self, principal: Principal, max_rows: int = 2000) -> None:
        self.principal = principal
        self.max_rows = max_rows
        self.margins: dict[str, dict[str, Any]] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=200)
        self.refresh = False
        self.ready = asyncio.Event()

    def add_margin(self, row: dict[str, Any]) -> None:
        if len(self.margins) >= self.max_rows and row["account_id"] not in self.margins:
            self.refresh = True
        else:
            self.margins[row["account_id"]] = row
        self.ready.set()

    def add_event(self, ev: dict[str, Any]) -> None:
        self.events.append(ev)
        self.ready.set()

    def ask_refresh(self) -> None:
        self.refresh = True
        self.ready.set()

    def take(self) -> dict[str, Any] | None:
        """The pending update message (``None`` if nothing is pending); clears the buffer."""
        self.ready.clear()
        if not self.margins and not self.events and not self.refresh:
            return None
        msg = {"type": "update", "margins": list(self.margins.values()),
               "events": list(self.events), "refresh": self.refresh}
        self.margins = {}
        self.events.clear()
        self.refresh = False
        return msg


class ConsoleHub:
    """Routes bus messages to :class:`ConsoleClient` buffers (see module docstring)."""

    def __init__(self, container: Any, max_rows: int = 2000) -> None:
        self.container = container
        self.max_rows = max_rows
        self.clients: set[ConsoleClient] = set()
        self._sub: Any = None
        self._bus: Any = None
        self._lock = asyncio.Lock()

    async def ensure_started(self) -> None:
        """Subscribe to the service's event subjects once the bus is up (idempotent)."""
        bus = self.container.bus
        if bus is None:
            return
        async with self._lock:
            if self._sub is None or self._bus is not bus:
                prefix = self.container.settings.bus_prefix
                self._sub = await bus.subscribe(f"{prefix}.events.>", self.on_message)
                self._bus = bus

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.stop()
            self._sub = None

    def attach(self, principal: Principal) -> ConsoleClient:
        c = ConsoleClient(principal, self.max_rows)
        self.clients.add(c)
        return c

    def detach(self, client: ConsoleClient) -> None:
        self.clients.discard(client)

    async def on_message(self, msg: Message) -> None:
        if not self.clients:
            return
        if msg.subject.endswith(".margin_batch"):
            await self._on_batch(msg)
            return
        try:
            ev = json.loads(msg.data)
        except ValueError:
            return
        if not isinstance(ev, dict):
            return
        target = ev.get("account_id")
        for c in list(self.clients):
            if isinstance(target, str):
                if c.principal.can_see(target):
                    c.add_event(ev)
            elif ev.get("type") in BROADCAST_TYPES:
                c.add_event(ev)

    async def _on_batch(self, msg: Message) -> None:
        batch = msg.obj
        if isinstance(batch, MarginBatch):
            for c in list(self.clients):
                p = c.principal
                if p.is_operator:
                    if len(batch) > self.max_rows:
                        c.ask_refresh()
                    else:
                        for k in range(len(batch)):
                            c.add_margin(batch.row(k))
                elif p.account_id is not None:
                    i = batch.index_of(p.account_id)
                    if i is not None:
                        c.add_margin(batch.row(i))
            return
        try:
            summary = json.loads(msg.data)
        except ValueError:
            return
        n_part = self.container.settings.partitions
        for c in list(self.clients):
            p = c.principal
            if p.is_operator:
                c.ask_refresh()
            elif p.account_id is not None and \
                    partition_of(p.account_id, n_part) == summary.get("partition"):
                row = await asyncio.to_thread(self.container.repo.latest_margin, p.account_id)
                if row is not None and row["seq"] == summary.get("seq"):
                    c.add_margin(row)
