"""Start the configured feeds inside the service, plus the stale-feed watchdog (shell)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from marginproof.config.settings import FeedSpec
from marginproof.engine.entries import EntryKind
from marginproof.feeds.replay import replay_day
from marginproof.feeds.websocket import BinanceClient, DeribitClient, VenueClient
from marginproof.storage.base import NewEntry

if TYPE_CHECKING:
    from marginproof.service.gateway import InputGateway
    from marginproof.service.metrics import Metrics


@dataclass
class ReplayRunner:
    """Feeds one shipped day into the log at ``speed`` x real time (0 = at once)."""

    spec: FeedSpec
    gateway: InputGateway
    appended: int = 0
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        day = await asyncio.to_thread(replay_day, self.spec.replay_date,
                                      tuple(self.spec.replay_symbols))
        gw = self.gateway
        await asyncio.to_thread(gw.append, [day.seed_entry()])
        prev_ms = None
        for entry, tick in zip(day.tick_entries(), day.ticks, strict=True):
            if self.spec.speed > 0 and prev_ms is not None:
                await asyncio.sleep(max(0.0, (tick.exchange_ms - prev_ms) / 1000 /
                                        self.spec.speed))
            prev_ms = tick.exchange_ms
            res = await asyncio.to_thread(gw.append, [entry], time.perf_counter())
            self.appended += sum(not r.duplicate for r in res)
        self.finished.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="feed:replay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass
class StaleWatchdog:
    """Appends a ``feed_status: stale`` entry when a stream is silent for ``stale_after_s``."""

    clients: list[VenueClient]
    gateway: InputGateway
    metrics: Metrics
    stale_after_s: float
    flagged: set[str] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None

    async def check_once(self) -> list[str]:
        now = time.monotonic()
        newly: list[str] = []
        for c in self.clients:
            for stream, seen in list(c.stats.last_seen.items()):
                stale = now - seen > self.stale_after_s
                self.metrics.feed_stale.labels(stream).set(1.0 if stale else 0.0)
                if stale and stream not in self.flagged:
                    self.flagged.add(stream)
                    newly.append(stream)
                    und = c.stats.underlying_of.get(stream, "")
                    await asyncio.to_thread(self.gateway.append, [NewEntry(
                        EntryKind.FEED_STATUS,
                        {"stream": stream, "underlying": und, "status": "stale",
                         "reason": f"no tick for {now - seen:.1f} s"}, c.name)])
                elif not stale:
                    self.flagged.discard(stream)
        return newly

    async def run(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(min(1.0, self.stale_after_s / 4))

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="feed:watchdog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def start_feeds(specs: list[FeedSpec], gateway: InputGateway, metrics: Metrics,
                      stale_after_s: float) -> list[Any]:
    """Start every feed and a watchdog over the websocket ones; returns stoppable handles.

    Takes the two adapters it uses (not the container), so the feeds do not depend on the
    composition root that starts them.
    """
    handles: list[Any] = []
    clients: list[VenueClient] = []
    for spec in specs:
        if spec.kind == "replay":
            r = ReplayRunner(spec, gateway)
            r.start()
            handles.append(r)
            continue
        cls = DeribitClient if spec.kind == "deribit" else BinanceClient
        client = cls(spec.url, spec.channels, gateway, metrics,
                     spec.name or spec.kind)
        client.start()
        clients.append(client)
        handles.append(client)
    if clients:
        wd = StaleWatchdog(clients, gateway, metrics, stale_after_s)
        wd.start()
        handles.append(wd)
    return handles
