"""Input gateway: the one way inputs enter the system (feeds, API, CLI all append here).

Appends go to the durable input log first; then engines are woken (same process) and, with a
network bus, an ``<prefix>.input.<kind>`` notification carrying the sequence number is published
for engines in other processes. Notifications are only a wake-up: engines always read the
entries from the log, so a lost notification delays nothing by more than one poll interval.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from marginproof.storage.base import AppendResult, NewEntry
from marginproof.storage.sql import SqlRepository


class InputGateway:
    """Append entries, remember when ticks arrived (latency metric) and wake the engines."""

    def __init__(self, repo: SqlRepository, prefix: str = "mp",
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.repo = repo
        self.prefix = prefix
        self._clock = clock
        self._wakers: list[threading.Event] = []
        self._times: OrderedDict[int, float] = OrderedDict()
        self._lock = threading.Lock()
        self._bus: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.duplicates = 0

    def add_waker(self, ev: threading.Event) -> None:
        self._wakers.append(ev)

    def attach_bus(self, bus: Any, loop: asyncio.AbstractEventLoop) -> None:
        """Publish input notifications on ``bus`` (network buses only)."""
        self._bus = bus
        self._loop = loop

    def append(self, entries: Sequence[NewEntry], received_at: float | None = None
               ) -> list[AppendResult]:
        """Append in order; returns where each entry landed (``duplicate`` if deduplicated)."""
        t = self._clock() if received_at is None else received_at
        res = self.repo.append(entries)
        fresh = [(r, e) for r, e in zip(res, entries, strict=True) if not r.duplicate]
        with self._lock:
            self.duplicates += len(res) - len(fresh)
            for r, _ in fresh:
                self._times[r.seq] = t
            while len(self._times) > 100_000:
                self._times.popitem(last=False)
        for w in self._wakers:
            w.set()
        if self._bus is not None and self._loop is not None and fresh:
            for r, e in fresh:
                data = json.dumps({"seq": r.seq, "kind": str(e.kind)}).encode()
                asyncio.run_coroutine_threadsafe(
                    self._bus.publish(f"{self.prefix}.input.{e.kind}", data, f"in-{r.seq}"),
                    self._loop)
        return res

    def received_at(self, seq: int) -> float | None:
        """When entry ``seq`` was appended by this process (perf-counter seconds)."""
        with self._lock:
            return self._times.get(seq)
