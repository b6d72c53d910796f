"""Partitioned streaming of the input log: routing, per-partition merge, result digests.

Functional core of the multi-process streaming engine (shell:
:mod:`marginproof.scaleout.stream_worker`). The input log is split over bus subjects so that a
process owning partition ``p`` receives only what engine ``p`` needs:

* ``<prefix>.in.market``: every entry every engine must see -- ticks, market snapshots, feed
  status, parameter sets, and the few account entries every engine reacts to (entries that
  activate a parameter set on the log clock, malformed ``account`` entries, entries without
  a valid account id);
* ``<prefix>.in.accounts.<p>``: the other account entries (``account``, ``fill``,
  ``transfer``) of the accounts with ``partition_of(account_id, n) == p``, in batches.

Every message carries the sequence number of the previous message on its subject (``prev``),
so a lost or duplicated message is detected. A market message also carries, for each partition
that received account entries since the previous market message, the last such ``seq``
(``hwm``); an account message carries the last market ``seq`` before its entries (``mprev``).
With these watermarks, :class:`PartitionMerge` restores the log order of partition ``p``'s
entries from the two subjects without waiting on idle subjects, and an engine
(:class:`~marginproof.engine.core.MarginEngine` with ``partition=p``) skips the sequence numbers
routed elsewhere (:meth:`~marginproof.engine.core.MarginEngine.skip_to`). The engine then
computes exactly what it computes when it reads the whole log (tested bit for bit).

Message payloads are JSON objects::

    {"prev": int, "hwm": {"<p>": seq, ...}, "tp": float, "entries": [entry, ...],
     "barrier": str | None, "stop": bool, "bn": barrier number}             # market
    {"prev": int, "mprev": int, "entries": [entry, ...]}                    # accounts.<p>

    entry = {"s": seq, "k": kind, "t": logged_at_ms, "src": source, "b": body,
             "c": log clock (max logged_at_ms) before this entry}
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from marginproof.engine.core import EngineConfig, EngineOutput, MarginEngine
from marginproof.engine.entries import ACCOUNT_KINDS, EntryKind, LogEntry, parse_account
from marginproof.engine.partition import partition_of
from marginproof.errors import InputError
from marginproof.models.grid import GridModel

MARKET = "market"


def market_subject(prefix: str) -> str:
    """Subject of the entries every partition needs."""
    return f"{prefix}.in.market"


def accounts_subject(prefix: str, partition: int) -> str:
    """Subject of partition ``partition``'s account entries."""
    return f"{prefix}.in.accounts.{partition}"


def results_subject(prefix: str, partition: int) -> str:
    """Subject on which the engine of ``partition`` publishes its results."""
    return f"{prefix}.results.{partition}"


def entry_to_json(e: LogEntry, clock_before_ms: int) -> dict[str, Any]:
    """Wire form of one log entry (see module docstring)."""
    return {"s": e.seq, "k": str(e.kind), "t": e.logged_at_ms, "src": e.source,
            "b": dict(e.body), "c": clock_before_ms}


def entry_from_json(d: Mapping[str, Any]) -> tuple[LogEntry, int]:
    """``(entry, log clock before it)`` of a wire entry."""
    return (LogEntry(int(d["s"]), EntryKind(d["k"]), int(d["t"]), str(d["src"]), d["b"]),
            int(d["c"]))


@dataclass
class Routed:
    """One message to publish: ``target`` is :data:`MARKET` or a partition index."""

    target: str | int
    payload: dict[str, Any]

    @property
    def first_seq(self) -> int:
        e = self.payload["entries"]
        return int(e[0]["s"]) if e else int(self.payload["prev"])

    @property
    def last_seq(self) -> int:
        e = self.payload["entries"]
        return int(e[-1]["s"]) if e else int(self.payload["prev"])

    def msg_id(self) -> str:
        """Deterministic id (JetStream de-duplicates republished messages)."""
        if not self.payload["entries"]:
            return f"in:{self.target}:barrier:{self.payload['bn']}"
        return f"in:{self.target}:{self.first_seq}-{self.last_seq}"


@dataclass
class Router:
    """Splits the input log, in ``seq`` order, into market and per-partition messages.

    Parameters
    ----------
    n_partitions : int
    batch_size : int
        Account entries per message (a partition's buffer is also flushed before every market
        message, so a message never spans a market entry).
    """

    n_partitions: int
    batch_size: int = 500
    clock_ms: int = 0
    last_seq: int = 0
    _pending_eff: list[int] = field(default_factory=list)
    _prev: dict[str | int, int] = field(default_factory=dict)
    _last_market: int = 0
    _hwm: dict[int, int] = field(default_factory=dict)
    _buffers: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    _buffer_mprev: dict[int, int] = field(default_factory=dict)
    _barriers: int = 0

    def route(self, e: LogEntry) -> list[Routed]:
        """Messages that are complete after entry ``e`` (possibly none: still buffered)."""
        if e.seq != self.last_seq + 1:
            raise ValueError(f"entry seq {e.seq} after {self.last_seq}: the log has a gap")
        self.last_seq = e.seq
        before = self.clock_ms
        self.clock_ms = max(self.clock_ms, int(e.logged_at_ms))
        # the engine activates pending parameter sets before applying an entry: every
        # partition must see the entry at which that happens (superset: any params entry)
        activates = any(eff <= self.clock_ms for eff in self._pending_eff)
        if activates:
            self._pending_eff = [eff for eff in self._pending_eff if eff > self.clock_ms]
        if e.kind is EntryKind.PARAMS:
            eff = e.body.get("effective_at_ms")
            if isinstance(eff, int) and not isinstance(eff, bool):
                self._pending_eff.append(eff)
        wire = entry_to_json(e, before)
        owner = None if activates else self.owner(e)
        if owner is not None:
            buf = self._buffers.setdefault(owner, [])
            if not buf:
                self._buffer_mprev[owner] = self._last_market
            buf.append(wire)
            self._hwm[owner] = e.seq
            return [self._flush(owner)] if len(buf) >= self.batch_size else []
        out = self.flush_accounts()
        out.append(self._market([wire]))
        return out

    def owner(self, e: LogEntry) -> int | None:
        """Partition an account entry goes to; None if every partition must see it."""
        if e.kind not in ACCOUNT_KINDS:
            return None
        acc = e.account_id
        if acc is None:
            return None
        if e.kind is EntryKind.ACCOUNT:
            try:  # a malformed account entry raises an alert in every partition's engine
                parse_account(e.body)
            except InputError:
                return None
        return partition_of(acc, self.n_partitions)

    def barrier(self, name: str, stop: bool = False) -> list[Routed]:
        """Flush everything, then an empty market message marking a point in the stream.

        Workers report when every entry before it is applied; ``stop`` asks them to exit.
        """
        out = self.flush_accounts()
        m = self._market([])
        self._barriers += 1
        m.payload.update(barrier=name, stop=stop, bn=self._barriers)
        out.append(m)
        return out

    def flush_accounts(self) -> list[Routed]:
        """Messages of every non-empty partition buffer."""
        return [self._flush(p) for p in sorted(self._buffers) if self._buffers[p]]

    def _flush(self, p: int) -> Routed:
        entries = self._buffers[p]
        self._buffers[p] = []
        r = Routed(p, {"prev": self._prev.get(p, 0), "mprev": self._buffer_mprev[p],
                       "entries": entries})
        self._prev[p] = int(entries[-1]["s"])
        return r

    def _market(self, entries: list[dict[str, Any]]) -> Routed:
        r = Routed(MARKET, {"prev": self._prev.get(MARKET, 0),
                            "hwm": {str(p): s for p, s in sorted(self._hwm.items())},
                            "entries": entries, "barrier": None, "stop": False})
        self._hwm = {}
        if entries:
            self._prev[MARKET] = int(entries[-1]["s"])
            self._last_market = int(entries[-1]["s"])
        return r


class StreamGapError(RuntimeError):
    """A message is missing on a subject (the ``prev`` chain is broken)."""


@dataclass
class PartitionMerge:
    """Restores the log order of one partition's entries from the market and account subjects.

    Feed messages with :meth:`push_market` / :meth:`push_account` in the order each subject
    delivers them (duplicates are dropped, gaps raise :class:`StreamGapError`); take them back in
    log order with :meth:`next_ready`, which returns None while the next message of the log is
    still missing.
    """

    partition: int
    applied_market: int = 0
    applied_account: int = 0
    need_account: int = 0
    _market: deque[dict[str, Any]] = field(default_factory=deque)
    _accounts: deque[dict[str, Any]] = field(default_factory=deque)
    _recv_market: int = 0
    _recv_barrier: int = 0
    _recv_account: int = 0

    def push_market(self, msg: dict[str, Any]) -> bool:
        """Queue a market message; False if it is a duplicate."""
        last = _last_seq(msg)
        if not msg["entries"]:  # barrier: numbered on their own chain
            bn = int(msg["bn"])
            if bn <= self._recv_barrier:
                return False
            if bn != self._recv_barrier + 1 or last != self._recv_market:
                raise StreamGapError(f"barrier {bn} after market {last}: received barrier "
                                f"{self._recv_barrier}, market up to {self._recv_market}")
            self._recv_barrier = bn
            self._market.append(msg)
            return True
        if last <= self._recv_market:
            return False
        if int(msg["prev"]) != self._recv_market:
            raise StreamGapError(f"market message after {msg['prev']}, received up to "
                            f"{self._recv_market}")
        self._recv_market = last
        self._market.append(msg)
        return True

    def push_account(self, msg: dict[str, Any]) -> bool:
        """Queue an account message of this partition; False if it is a duplicate."""
        last = _last_seq(msg)
        if last <= self._recv_account:
            return False
        if int(msg["prev"]) != self._recv_account:
            raise StreamGapError(f"partition {self.partition}: message after {msg['prev']}, "
                            f"received up to {self._recv_account}")
        self._recv_account = last
        self._accounts.append(msg)
        return True

    def next_ready(self) -> dict[str, Any] | None:
        """The next message in log order, or None until it has arrived.

        At most one queue head can be ready: a market message needs every account entry
        before it, an account message every market entry before it.
        """
        if self._market:
            m = self._market[0]
            need = int(m["hwm"].get(str(self.partition), self.need_account))
            if self.applied_account >= need:
                self._market.popleft()
                self.need_account = need
                if m["entries"]:
                    self.applied_market = _last_seq(m)
                return m
        if self._accounts:
            a = self._accounts[0]
            if self.applied_market >= int(a["mprev"]):
                self._accounts.popleft()
                self.applied_account = _last_seq(a)
                return a
        return None

    def backlog(self) -> int:
        """Messages received but not yet returned."""
        return len(self._market) + len(self._accounts)


def _last_seq(msg: Mapping[str, Any]) -> int:
    e = msg["entries"]
    return int(e[-1]["s"]) if e else int(msg["prev"])


class OutputDigest:
    """SHA-256 over everything an engine partition produced, in log order.

    Margin rows (seq, cause, account ids, IM, MM, equity as IEEE bytes, status, held, binding
    underlying and scenario) and the JSON of every event. Two runs over the same log give equal
    digests only if every margin is bit-identical.
    """

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.batches = 0
        self.rows = 0
        self.events: dict[str, int] = {}

    def update(self, out: EngineOutput) -> None:
        """Add one entry's output."""
        h = self._h
        b = out.batch
        if b is not None:
            self.batches += 1
            self.rows += len(b)
            ids = b.ids_source[b.account_index]
            binding = np.array([*b.underlyings, ""], dtype=object)[
                b.binding_underlying_index.astype(np.int64)]
            h.update(f"B{b.seq}|{b.partition}|{b.market_ts_ms}|{b.params_hash}|{b.cause}|"
                     .encode())
            h.update("\x1f".join(ids.tolist()).encode())
            h.update("\x1f".join(binding.tolist()).encode())
            for a in (b.initial_margin, b.maintenance_margin, b.equity):
                h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
            h.update(np.ascontiguousarray(b.status, dtype="i1").tobytes())
            h.update(np.ascontiguousarray(b.held, dtype="?").tobytes())
            h.update(np.ascontiguousarray(b.binding_scenario, dtype="<i4").tobytes())
        for ev in out.events:
            self.events[ev.type] = self.events.get(ev.type, 0) + 1
            h.update(b"E" + json.dumps(ev.to_dict(), sort_keys=True, default=str).encode())

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def combined_digest(per_partition: Mapping[int, str]) -> str:
    """One digest over the partitions' digests (in partition order)."""
    h = hashlib.sha256()
    for p in sorted(per_partition):
        h.update(f"{p}:{per_partition[p]}\n".encode())
    return h.hexdigest()


def route_all(entries: Iterable[LogEntry], n_partitions: int, batch_size: int = 500,
              end: str | None = "end", stop: bool = True) -> list[Routed]:
    """Every message of a finite log (ending with a barrier ``end`` unless None)."""
    r = Router(n_partitions, batch_size)
    out: list[Routed] = []
    for e in entries:
        out.extend(r.route(e))
    out.extend(r.barrier(end, stop) if end is not None else r.flush_accounts())
    return out


def apply_message(engine: MarginEngine, msg: Mapping[str, Any]) -> list[EngineOutput]:
    """Apply a message's entries to a partition's engine, skipping the seqs routed elsewhere."""
    outs: list[EngineOutput] = []
    for d in msg["entries"]:
        e, clock = entry_from_json(d)
        if engine.last_seq < e.seq - 1:
            engine.skip_to(e.seq - 1, clock)
        outs.append(engine.apply(e))
    return outs


def reference_digests(entries: Iterable[LogEntry], n_partitions: int,
                      model: GridModel | None = None) -> dict[int, OutputDigest]:
    """Digests of ``n_partitions`` partition engines that each read the *whole* log in one
    process (the service's way, no routing): what the streaming workers must reproduce."""
    log = list(entries)
    out: dict[int, OutputDigest] = {}
    for p in range(n_partitions):
        eng = MarginEngine(model or GridModel(), EngineConfig(n_partitions=n_partitions,
                                                              partition=p))
        d = OutputDigest()
        for e in log:
            d.update(eng.apply(e))
        out[p] = d
    return out
