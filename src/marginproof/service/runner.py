"""Engine runner: drives one :class:`MarginEngine` partition from the durable input log.

Crash safety. Outputs are derived only from log entries, so after a crash (``kill -9``) the
runner rebuilds its state by re-applying entries ``1..checkpoint`` silently, then processes what
was never committed: it publishes the outputs again (same deterministic event ids, so JetStream
and idempotent consumers drop the duplicates) and commits. Margin history rows, events and the
checkpoint are written in one transaction *after* publishing, so nothing is ever lost
(at-least-once) and nothing is stored twice.

Poisoned entries. An entry already in the log that the engine cannot apply (it raises, or it
would publish a non-finite margin) is *quarantined*: the engine is rebuilt from the log without
it (entries the engine refuses itself, with an ``InputError``, change nothing and need no
rebuild), a ``quarantined_entry`` alert is published and committed, and processing goes on.
The decision depends only on the log, so a restart quarantines the same entries. ``/health``
lists quarantined and refused entries and reports an engine that stopped making progress.

Bounded recovery. Every ``snapshot_every`` entries (at the first commit past each multiple), and
whenever applying entries took ``snapshot_replay_s`` seconds since the last one, the runner
stores a snapshot of its state -- the engine (:mod:`marginproof.engine.snapshot`) and
the quarantine set -- with the log's chained hash at its ``seq``, and keeps the newest
``snapshot_keep``. :meth:`recover` loads the newest snapshot that is valid -- same format, code
version, initial model and partitioning, chained hash equal to the log's at its ``seq``, blob
digest as stored -- and replays only the entries after it; a snapshot that fails a check is
ignored with a warning (then an older one, else a full replay from entry 1).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

import marginproof
from marginproof.engine import snapshot as engine_snapshot
from marginproof.engine.core import EngineConfig, EngineOutput, MarginEngine
from marginproof.engine.entries import ACCOUNT_KINDS, EntryKind, LogEntry
from marginproof.engine.events import FeedAlert
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.base import BaseMarginModel
from marginproof.service.gateway import InputGateway
from marginproof.service.metrics import Metrics
from marginproof.storage.sql import SqlRepository

log = logging.getLogger(__name__)

SyncPublish = Callable[[str, bytes, str, Any], None]
_MARKET_KINDS = frozenset({EntryKind.TICK, EntryKind.MARKET})
_REFUSED = ("rejected_entry", "quarantined_entry")


def nonfinite(out: EngineOutput) -> str:
    """What in ``out`` is not a finite number ("" if everything is)."""
    b = out.batch
    if b is not None:
        for name in ("initial_margin", "maintenance_margin", "equity"):
            a = getattr(b, name)
            if a.size and not bool(np.isfinite(a).all()):
                bad = int(np.flatnonzero(~np.isfinite(a))[0])
                return f"{name} of {b.account_ids[bad]} is {float(a[bad])!r}"
    return ""


class EngineRunner:
    """One partition's engine loop (see module docstring)."""

    def __init__(self, repo: SqlRepository, model: BaseMarginModel, config: EngineConfig,
                 publish: SyncPublish | None = None, metrics: Metrics | None = None,
                 gateway: InputGateway | None = None, prefix: str = "mp",
                 commit_every: int = 256, snapshot_every: int = 100_000,
                 snapshot_keep: int = 2, snapshot_replay_s: float = 1.0) -> None:
        self.repo = repo
        self.config = config
        self.model0 = model
        self.engine = MarginEngine(model, config)
        # log entries the engine could not apply (seq -> why): deterministic from the log
        self.quarantined: dict[int, str] = {}
        # the latest refused or quarantined entries, for /health
        self.refused: deque[dict[str, Any]] = deque(maxlen=50)
        self.last_progress = time.monotonic()
        self.last_error = ""
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
        self.snapshot_every = int(snapshot_every)  # 0: never
        self.snapshot_keep = int(snapshot_keep)
        # also snapshot once applying entries took this long since the last one (0: never),
        # so a restart replays at most about that much work whatever the entries cost; at
        # least 20x the last snapshot's own write time apart (bounded overhead)
        self.snapshot_replay_s = float(snapshot_replay_s)
        self._apply_s = 0.0  # engine time spent on entries since the last snapshot
        self.snapshot_seq = 0  # seq of the newest snapshot stored or loaded
        self.recovered_from = 0  # seq of the snapshot the last recover() started from
        self.last_snapshot: dict[str, Any] = {}

    @property
    def consumer(self) -> str:
        c = self.config
        return f"engine-p{c.partition}of{c.n_partitions}"

    # -- recovery -------------------------------------------------------------------------------
    def recover(self) -> int:
        """Rebuild state up to the checkpoint without re-emitting anything: from the newest
        valid snapshot at or before it, then entries ``snapshot + 1..checkpoint``."""
        ckpt = self.repo.checkpoint(self.consumer)
        after = self._load_snapshot(ckpt)
        self.recovered_from = after
        while after < ckpt:
            entries = self.repo.read(after, limit=5000)
            if not entries:
                raise RuntimeError(f"log ends at {after} but {self.consumer} committed {ckpt}")
            for e in entries:
                if e.seq > ckpt:
                    break
                with self.lock:
                    self.apply_guarded(e)
                after = e.seq
            self.last_progress = time.monotonic()
        self._set_committed(ckpt)
        self.market_snapshot = self.engine.market.full_snapshot()
        if self.snapshot_every and ckpt - self.snapshot_seq >= self.snapshot_every:
            self.save_snapshot()
        return ckpt

    # -- snapshots ------------------------------------------------------------------------------
    def _snapshot_due(self, last: int) -> bool:
        """Every ``snapshot_every`` entries, or after ``snapshot_replay_s`` of engine time.

        When snapshots are taken never changes an output (the engine state is the same
        either way), so the wall-clock trigger keeps replay deterministic."""
        n = self.snapshot_every
        if n and last // n > self.snapshot_seq // n:
            return True
        if self.snapshot_replay_s <= 0 or last <= self.snapshot_seq:
            return False
        write_s = float(self.last_snapshot.get("seconds", 0.0))
        return self._apply_s >= max(self.snapshot_replay_s, 20.0 * write_s)

    def _snapshot_meta(self) -> dict[str, Any]:
        c = self.config
        return {"format": engine_snapshot.FORMAT, "code": marginproof.__version__,
                "model0": self.model0.params_hash, "partition": c.partition,
                "n_partitions": c.n_partitions, "exact": c.exact}

    def save_snapshot(self) -> int:
        """Store a snapshot of the state after entry ``engine.last_seq`` (which must be
        committed); returns its size in bytes (0 if the log has no chained hash there)."""
        t0 = time.perf_counter()
        with self.lock:
            seq = self.engine.last_seq
            state = {"engine": self.engine, "quarantined": dict(self.quarantined),
                     "refused": list(self.refused)}
            blob = engine_snapshot.dump_state(state, self.config)
            params_hash = self.engine.model.params_hash
        chain = self.repo.chain_hash(seq)
        if chain is None:
            log.warning("%s: no chained hash at %d; snapshot not written", self.consumer, seq)
            return 0
        self.repo.save_snapshot(self.consumer, seq, chain, params_hash, self._snapshot_meta(),
                                blob, self.snapshot_keep)
        self.snapshot_seq = seq
        self._apply_s = 0.0
        self.last_snapshot = {"seq": seq, "bytes": len(blob),
                              "seconds": time.perf_counter() - t0}
        log.info("%s: engine snapshot at %d (%d bytes)", self.consumer, seq, len(blob))
        return len(blob)

    def _load_snapshot(self, ckpt: int) -> int:
        """Install the newest valid snapshot at or before ``ckpt``; returns its seq (0: none,
        the engine stays fresh)."""
        meta = self._snapshot_meta()
        for info in self.repo.snapshots(self.consumer):
            why = ""
            if info.seq > ckpt:
                why = f"after the checkpoint {ckpt}"
            elif {k: info.meta.get(k) for k in meta} != meta:
                why = f"made by another engine setup {dict(info.meta)} (now {meta})"
            elif self.repo.chain_hash(info.seq) != info.chain_hash:
                why = "the log's chained hash at its seq differs (the log is not the one it " \
                      "summarises)"
            if not why:
                blob = self.repo.snapshot_blob(self.consumer, info.seq)
                if blob is None or engine_snapshot.digest(blob) != info.blob_sha256:
                    why = "its blob does not match the stored SHA-256"
            if not why:
                assert blob is not None
                try:
                    state = engine_snapshot.load_state(blob, self.config)
                    engine = state["engine"]
                    if not isinstance(engine, MarginEngine) or engine.last_seq != info.seq \
                            or engine.model.params_hash != info.params_hash:
                        why = "its content does not match its record"
                except Exception as exc:  # noqa: BLE001 - any unreadable snapshot is skipped
                    why = f"unreadable: {type(exc).__name__}: {exc}"[:300]
            if why:
                log.warning("%s: ignoring engine snapshot at %d: %s", self.consumer, info.seq,
                            why)
                continue
            self.engine = engine
            self.quarantined = dict(state["quarantined"])
            self.refused = deque(state["refused"], maxlen=50)
            self.snapshot_seq = info.seq
            log.info("%s: recovering from the engine snapshot at %d", self.consumer, info.seq)
            return info.seq
        return 0

    # -- poisoned entries -----------------------------------------------------------------------
    def apply_guarded(self, e: LogEntry) -> EngineOutput:
        """``engine.apply(e)``, quarantining an entry the engine cannot apply (caller holds
        ``self.lock``)."""
        if e.seq in self.quarantined:
            self.engine.skip_to(e.seq, e.logged_at_ms)
            return EngineOutput(e.seq, None, (self._alert(e, self.quarantined[e.seq]),))
        try:
            out = self.engine.apply(e)
            bad = nonfinite(out)
        except Exception as exc:  # noqa: BLE001 - any failure of one entry is quarantined
            bad = f"{type(exc).__name__}: {exc}"[:500]
        if bad:
            log.error("%s: quarantining log entry %d (%s): %s", self.consumer, e.seq, e.kind, bad)
            self.quarantined[e.seq] = bad
            self._rebuild(e.seq - 1)
            self.engine.skip_to(e.seq, e.logged_at_ms)
            out = EngineOutput(e.seq, None, (self._alert(e, bad),))
        for ev in out.events:
            if isinstance(ev, FeedAlert) and ev.problem in _REFUSED:
                self.refused.append({"seq": e.seq, "kind": str(e.kind), "problem": ev.problem,
                                     "reason": ev.detail[:300]})
        return out

    def _alert(self, e: LogEntry, why: str) -> FeedAlert:
        return FeedAlert(e.seq, self.config.partition, f"log:{e.kind}", "", "quarantined_entry",
                         why, None)

    def _rebuild(self, upto: int) -> None:
        """A fresh engine over entries ``1..upto`` (quarantined ones skipped)."""
        self.engine = MarginEngine(self.model0, self.config)
        after = 0
        while after < upto:
            entries = self.repo.read(after, limit=5000)
            if not entries:
                break
            for x in entries:
                if x.seq > upto:
                    return
                self.apply_guarded(x)
                after = x.seq

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
                out = self.apply_guarded(e)
                acc = e.account_id
                if e.kind in ACCOUNT_KINDS and acc is not None and self.engine.owns(acc) \
                        and acc in self.engine.acc_index:
                    pos, coll = self.engine.account_positions(acc)
                    states[acc] = (e.seq, pos, coll)
            self._publish(out)
            t1 = time.perf_counter()
            self._apply_s += t1 - t0
            self.last_progress = time.monotonic()
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
        self.last_progress = time.monotonic()
        if self._snapshot_due(last):
            self.save_snapshot()
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
                    self.last_progress = time.monotonic()  # idle is not stalled
                    self.wake.wait(poll_s)
                    self.wake.clear()
                self.last_error = ""
            except Exception as exc:  # keep the loop alive; the entries are retried
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.exception("engine step failed; retrying")
                stop.wait(1.0)

    def stalled(self, after_s: float, log_seq: int) -> bool:
        """Entries wait and this runner has made no progress for ``after_s`` seconds."""
        return log_seq > self.committed_seq and time.monotonic() - self.last_progress > after_s

    # -- acknowledgements -----------------------------------------------------------------------
    def _set_committed(self, seq: int) -> None:
        with self._committed:
            self.committed_seq = seq
            self._committed.notify_all()

    def wait_committed(self, seq: int, timeout_s: float) -> bool:
        """Block until entry ``seq`` is committed (for acking bus notifications)."""
        with self._committed:
            return self._committed.wait_for(lambda: self.committed_seq >= seq, timeout_s)
