"""Engine runner: drives one :class:`MarginEngine` partition from the durable input log.

Crash safety. Outputs are derived only from log entries, so after a crash (``kill -9``) the
runner rebuilds its state by re-applying entries ``1..checkpoint`` silently, then processes what
was never committed: it publishes the outputs again (same deterministic event ids, so JetStream
and idempotent consumers drop the duplicates) and commits. Margin history rows, events and the
checkpoint are written in one transaction *after* publishing, so nothing is ever lost
(at-least-once) and nothing is stored twice.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from marginproof.engine.core import EngineConfig, EngineOutput, MarginEngine
from marginproof.engine.entries import ACCOUNT_KINDS, EntryKind
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.base import BaseMarginModel
from marginproof.service.gateway import InputGateway
from marginproof.service.metrics import Metrics
from marginproof.storage.sql import SqlRepository

log = logging.getLogger(__name__)

SyncPublish = Callable[[str, bytes, str, Any], None]
_MARKET_KINDS = frozenset({EntryKind.TICK, EntryKind.MARKET})


class EngineRunner:
    """One partition's engine loop (see module docstring)."""

    def __init__(self, repo: SqlRepository, model: BaseMarginModel, config: EngineConfig,
                 publish: SyncPublish | None = None, metrics: Metrics | None = None,
                 gateway: InputGateway | None = None, prefix: str = "mp",
                 commit_every: int = 256) -> None:
        self.repo = repo
        self.config = config
        self.engine = MarginEngine(model, config)
        self.publish = publish
        self.metrics = metrics
        self.gateway = gateway
        self.prefix = prefix
        self.commit_every = commit_every
        self.lock = threading.Lock()
        self.committed_seq = 0
        self._committed = threading.Condition()
        self.market_snapshot: MarketSnapshot | None = None
        self.wake = threading.Event()
        self.latencies_s: list[float] = []
        self.listeners: list[Callable[[EngineOutput], None]] = []

    @property
    def consumer(self) -> str:
        c = self.config
        return f"engine-p{c.partition}of{c.n_partitions}"

    # -- recovery -------------------------------------------------------------------------------
    def recover(self) -> int:
        """Rebuild state from entries ``1..checkpoint`` without re-emitting anything."""
        ckpt = self.repo.checkpoint(self.consumer)
        after = 0
        while after < ckpt:
            entries = self.repo.read(after, limit=5000)
            if not entries:
                raise RuntimeError(f"log ends at {after} but {self.consumer} committed {ckpt}")
            for e in entries:
                if e.seq > ckpt:
                    break
                with self.lock:
                    self.engine.apply(e)
                after = e.seq
        self._set_committed(ckpt)
        self.market_snapshot = self.engine.market.full_snapshot()
        return ckpt

    # -- processing -----------------------------------------------------------------------------
    def _publish(self, out: EngineOutput) -> None:
        if self.publish is None:
            return
        p = self.config.partition
        if out.batch is not None:
            b = out.batch
            self.publish(f"{self.prefix}.events.{p}.margin_batch",
                         json.dumps(b.summary()).encode(), b.event_id, b)
        for ev in out.events:
            self.publish(f"{self.prefix}.events.{p}.{ev.type}",
                         json.dumps(ev.to_dict()).encode(), ev.event_id, ev)

    def step(self) -> int:
        """Process up to ``commit_every`` new entries; returns how many."""
        entries = self.repo.read(self.engine.last_seq, limit=self.commit_every)
        if not entries:
            return 0
        batches = []
        events: list[dict[str, Any]] = []
        states: dict[str, tuple[int, dict[str, float], dict[str, float]]] = {}
        market_changed = False
        m = self.metrics
        for e in entries:
            t0 = time.perf_counter()
            with self.lock:
                out = self.engine.apply(e)
                acc = e.account_id
                if e.kind in ACCOUNT_KINDS and acc is not None and self.engine.owns(acc) \
                        and acc in self.engine.acc_index:
                    pos, coll = self.engine.account_positions(acc)
                    states[acc] = (e.seq, pos, coll)
            self._publish(out)
            t1 = time.perf_counter()
            market_changed = market_changed or e.kind in _MARKET_KINDS
            if e.kind is EntryKind.TICK and out.batch is not None and self.gateway is not None:
                t_in = self.gateway.received_at(e.seq)
                if t_in is not None:
                    self.latencies_s.append(t1 - t_in)
                    if m is not None:
                        m.tick_to_margin.observe(t1 - t_in)
            if m is not None:
                m.entry_seconds.labels(str(e.kind)).observe(t1 - t0)
                m.entries.labels(str(self.config.partition)).inc()
                if out.batch is not None:
                    m.accounts_remargined.inc(len(out.batch))
                for ev in out.events:
                    m.events.labels(ev.type).inc()
            if out.batch is not None:
                batches.append(out.batch)
            events.extend(ev.to_dict() for ev in out.events)
            for fn in self.listeners:
                fn(out)
        last = entries[-1].seq
        self.repo.commit(self.consumer, last, batches, events, states)
        self._set_committed(last)
        if market_changed:
            with self.lock:
                self.market_snapshot = self.engine.market.full_snapshot()
        if m is not None:
            m.queue_depth.labels(str(self.config.partition)).set(
                max(0, self.repo.last_seq() - last))
        return len(entries)

    def run_until_idle(self) -> int:
        """Process everything in the log now; returns the number of entries."""
        n = 0
        while True:
            k = self.step()
            if k == 0:
                return n
            n += k

    def run(self, stop: threading.Event, poll_s: float = 0.2) -> None:
        """Thread target: process, then sleep until woken (or ``poll_s``), until ``stop``."""
        while not stop.is_set():
            try:
                if self.step() == 0:
                    self.wake.wait(poll_s)
                    self.wake.clear()
            except Exception:  # keep the loop alive; the entry is retried (never skipped)
                log.exception("engine step failed; retrying")
                stop.wait(1.0)

    # -- acknowledgements -----------------------------------------------------------------------
    def _set_committed(self, seq: int) -> None:
        with self._committed:
            self.committed_seq = seq
            self._committed.notify_all()

    def wait_committed(self, seq: int, timeout_s: float) -> bool:
        """Block until entry ``seq`` is committed (for acking bus notifications)."""
        with self._committed:
            return self._committed.wait_for(lambda: self.committed_seq >= seq, timeout_s)
