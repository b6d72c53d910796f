"""Websocket clients for Deribit-style and Binance-style market data (shell).

Each client connects, subscribes (Deribit ``public/subscribe`` JSON-RPC; Binance
``SUBSCRIBE``), parses every frame and appends the resulting ticks to the input log through
the gateway. It reconnects with capped exponential backoff. Malformed frames are counted and
alerted; a Binance depth sequence break marks the underlying ``bad`` (the engine holds margins)
until the book is re-seeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets

from marginproof.engine.entries import EntryKind
from marginproof.engine.ticks import Tick
from marginproof.feeds.depth import DepthBook, DepthGapError
from marginproof.feeds.parsers import ParseResult, binance_underlying, parse_binance, parse_deribit
from marginproof.service.gateway import InputGateway
from marginproof.service.metrics import Metrics
from marginproof.storage.base import NewEntry

log = logging.getLogger(__name__)

DepthSnapshot = Callable[[str], dict[str, Any]]


def tick_entry(t: Tick, source: str) -> NewEntry:
    """Log entry of a tick with its dedupe key (venue sequence, else time + content)."""
    key = (f"{t.stream}:{t.seq}" if t.seq is not None
           else f"{t.stream}:{t.exchange_ms}:{t.payload_digest()[:16]}")
    return NewEntry(EntryKind.TICK, t.to_dict(), source, dedupe_key=key)


@dataclass
class FeedStats:
    """What a client saw (tests and the health endpoint read it)."""

    frames: int = 0
    ticks: int = 0
    rejected: int = 0
    duplicates: int = 0
    gaps: int = 0
    last_seen: dict[str, float] = field(default_factory=dict)  # stream -> monotonic time
    underlying_of: dict[str, str] = field(default_factory=dict)
    last_rejection: str = ""


class VenueClient(ABC):
    """Base client: connect, subscribe, parse, append; subclasses say how."""

    venue = "venue"

    def __init__(self, url: str, channels: list[str], gateway: InputGateway,
                 metrics: Metrics | None = None, name: str = "",
                 on_alert: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.url = url
        self.channels = channels
        self.gateway = gateway
        self.metrics = metrics
        self.name = name or self.venue
        self.stats = FeedStats()
        self.on_alert = on_alert
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    def subscribe_message(self) -> str:
        """The venue's subscription request for ``channels``."""

    @abstractmethod
    def parse(self, frame: str | bytes) -> ParseResult:
        """Parse one frame."""

    async def on_depth(self, res: ParseResult) -> list[Tick]:
        return []

    def _count(self, outcome: str, n: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.feed_messages.labels(self.name, outcome).inc(n)

    async def handle(self, frame: str | bytes) -> None:
        """Process one frame (public for tests)."""
        self.stats.frames += 1
        res = self.parse(frame)
        if res.rejected:
            self.stats.rejected += 1
            self.stats.last_rejection = res.rejected
            self._count("rejected")
            if self.on_alert is not None:
                self.on_alert({"type": "feed_rejected", "feed": self.name,
                               "reason": res.rejected})
            return
        if res.control:
            self._count("control")
            return
        ticks = list(res.ticks)
        if res.depth is not None:
            ticks += await self.on_depth(res)
        if not ticks:
            return
        now = time.monotonic()
        for t in ticks:
            self.stats.last_seen[t.stream] = now
            self.stats.underlying_of[t.stream] = t.underlying
        entries = [tick_entry(t, self.name) for t in ticks]
        results = await asyncio.to_thread(self.gateway.append, entries, time.perf_counter())
        dups = sum(r.duplicate for r in results)
        self.stats.ticks += len(results) - dups
        self.stats.duplicates += dups
        self._count("tick", len(results) - dups)
        if dups:
            self._count("duplicate", dups)

    async def _session(self) -> None:
        async with websockets.connect(self.url, max_size=8_000_000, open_timeout=5,
                                      ping_interval=20) as ws:
            await ws.send(self.subscribe_message())
            self.connected.set()
            async for frame in ws:
                await self.handle(frame)

    async def run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._session()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except (OSError, websockets.WebSocketException) as exc:
                log.warning("%s: %s; reconnecting in %.1fs", self.name, exc, backoff)
            self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"feed:{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class DeribitClient(VenueClient):
    """Deribit JSON-RPC over websocket (``ticker``, ``deribit_price_index``, ``markprice``)."""

    venue = "deribit"

    def subscribe_message(self) -> str:
        return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "public/subscribe",
                           "params": {"channels": self.channels}})

    def parse(self, frame: str | bytes) -> ParseResult:
        return parse_deribit(frame)


class BinanceClient(VenueClient):
    """Binance USD-M futures streams (``@bookTicker``, ``@markPrice``, ``@depth``)."""

    venue = "binance"

    def __init__(self, *args: Any, depth_snapshot: DepthSnapshot | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.depth_snapshot = depth_snapshot
        self.books: dict[str, DepthBook] = {}

    def subscribe_message(self) -> str:
        return json.dumps({"method": "SUBSCRIBE", "params": self.channels, "id": 1})

    def parse(self, frame: str | bytes) -> ParseResult:
        return parse_binance(frame)

    def _seed(self, symbol: str) -> DepthBook | None:
        if self.depth_snapshot is None:
            return None
        snap = self.depth_snapshot(symbol)
        book = DepthBook(symbol)
        book.seed(int(snap["lastUpdateId"]),
                  [(float(p), float(q)) for p, q in snap["bids"]],
                  [(float(p), float(q)) for p, q in snap["asks"]])
        self.books[symbol] = book
        return book

    async def on_depth(self, res: ParseResult) -> list[Tick]:
        d = res.depth
        assert d is not None
        book = self.books.get(d.symbol) or self._seed(d.symbol)
        if book is None:
            return []
        und, perp = binance_underlying(d.symbol)
        stream = f"binance:{d.symbol.lower()}@depthUpdate"
        try:
            if not book.apply(d):
                return []
        except DepthGapError as exc:
            self.stats.gaps += 1
            self.books.pop(d.symbol, None)  # re-seed on the next diff
            await asyncio.to_thread(self.gateway.append, [NewEntry(
                EntryKind.FEED_STATUS, {"stream": stream, "underlying": und, "status": "bad",
                                        "reason": f"depth sequence break: {exc}"}, self.name)])
            return []
        mid = book.mid()
        if mid is None:
            return []
        return [Tick("binance", stream, und, d.exchange_ms, seq=d.last_id, marks={perp: mid})]
