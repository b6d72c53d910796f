"""Streaming engine worker: one OS process running the engines of some partitions over NATS.

Run one process per share of the partitions, on any number of hosts::

    python -m marginproof.scaleout.stream_worker --nats nats://127.0.0.1:4222 \\
        --stream MP --prefix mp --partitions 0,2 --of 4 --report w0.json

The worker consumes ``<prefix>.in.market`` (every worker) and ``<prefix>.in.accounts.<p>`` for
each owned partition ``p`` from JetStream, restores log order per partition
(:class:`~marginproof.scaleout.stream.PartitionMerge`), applies the entries to one
:class:`~marginproof.engine.core.MarginEngine` per partition and publishes, per input message
and partition, a result message on ``<prefix>.results.<p>`` (accounts re-margined, status
counts, running SHA-256 digest of every margin row, and the margin-call / liquidation /
restoration / alert events in full). Margin rows stay in the process (a deployment writes them
to its partition's history store); the digest proves what they were.

State lives in memory and is rebuilt on start by replaying the subjects from the beginning of
the stream (the consumers are re-created), as the service replays its input log; result
messages carry deterministic ids, so JetStream drops the re-published duplicates.

``--report`` writes a JSON report (digests, counts, barrier and per-tick completion times) at
every barrier of the stream and on exit; ``--exit-on-stop`` exits at a barrier marked ``stop``.
:func:`publish_log` is the publishing side (the sequencer), used by tests and benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from marginproof.bus.base import Message
from marginproof.bus.jetstream import NatsBus
from marginproof.engine.core import EngineConfig, MarginEngine
from marginproof.engine.entries import EntryKind, LogEntry
from marginproof.engine.ticks import Tick
from marginproof.models.grid import GridModel
from marginproof.scaleout.stream import (
    MARKET,
    OutputDigest,
    PartitionMerge,
    Routed,
    accounts_subject,
    apply_message,
    combined_digest,
    market_subject,
    results_subject,
)

log = logging.getLogger(__name__)


@dataclass
class WorkerState:
    """Engines, merges and digests of the partitions one worker owns."""

    partitions: tuple[int, ...]
    n_partitions: int
    engines: dict[int, MarginEngine] = field(default_factory=dict)
    merges: dict[int, PartitionMerge] = field(default_factory=dict)
    digests: dict[int, OutputDigest] = field(default_factory=dict)
    entries: dict[int, int] = field(default_factory=dict)
    done_count: dict[tuple[str, int], int] = field(default_factory=dict)
    barriers: dict[str, float] = field(default_factory=dict)
    ticks: list[tuple[int, float, float, int]] = field(default_factory=list)
    rows_by_msg: dict[tuple[str, int], int] = field(default_factory=dict)

    @classmethod
    def build(cls, partitions: Sequence[int], n_partitions: int) -> WorkerState:
        s = cls(tuple(sorted(set(partitions))), n_partitions)
        for p in s.partitions:
            if not 0 <= p < n_partitions:
                raise ValueError(f"partition {p} not in [0, {n_partitions})")
            s.engines[p] = MarginEngine(GridModel(), EngineConfig(n_partitions=n_partitions,
                                                                  partition=p))
            s.merges[p] = PartitionMerge(p)
            s.digests[p] = OutputDigest()
            s.entries[p] = 0
        return s

    def report(self, name: str, accounts: bool = False) -> dict[str, Any]:
        """JSON-ready summary (``accounts``: also every owned account's final margins)."""
        r: dict[str, Any] = {
            "worker": name, "pid": os.getpid(), "partitions": list(self.partitions),
            "n_partitions": self.n_partitions,
            "digests": {str(p): d.hexdigest() for p, d in self.digests.items()},
            "rows": {str(p): d.rows for p, d in self.digests.items()},
            "batches": {str(p): d.batches for p, d in self.digests.items()},
            "events": {str(p): d.events for p, d in self.digests.items()},
            "entries_applied": {str(p): n for p, n in self.entries.items()},
            "last_seq": {str(p): e.last_seq for p, e in self.engines.items()},
            "barriers": self.barriers, "ticks": self.ticks,
        }
        if accounts:
            r["accounts"] = {str(p): list(e.acc_ids) for p, e in self.engines.items()}
            r["margins"] = {a: [float(e.im[i]).hex(), float(e.mm[i]).hex(),
                                float(e.equity[i]).hex(), int(e.status[i])]
                            for e in self.engines.values() for i, a in enumerate(e.acc_ids)}
        return r


class StreamWorker:
    """The async shell around :class:`WorkerState` (see module docstring)."""

    def __init__(self, bus: NatsBus, prefix: str, state: WorkerState,
                 report_path: Path | None = None, report_accounts: bool = False,
                 exit_on_stop: bool = False) -> None:
        self.bus = bus
        self.prefix = prefix
        self.state = state
        self.name = f"p{'_'.join(map(str, state.partitions))}of{state.n_partitions}"
        self.report_path = report_path
        self.report_accounts = report_accounts
        self.exit_on_stop = exit_on_stop
        self.stopped = asyncio.Event()
        self.failed: BaseException | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """(Re)create the consumers from the start of the stream and subscribe."""
        durables = {market_subject(self.prefix): f"sw-{self.name}-market"}
        for p in self.state.partitions:
            durables[accounts_subject(self.prefix, p)] = f"sw-{self.name}-acc{p}"
        for d in durables.values():
            await self.bus.delete_consumer(d)  # state is in memory: replay everything
        await self.bus.subscribe(market_subject(self.prefix), self._on_market,
                                 durable=durables[market_subject(self.prefix)])
        for p in self.state.partitions:
            await self.bus.subscribe(accounts_subject(self.prefix, p), self._account_handler(p),
                                     durable=durables[accounts_subject(self.prefix, p)])

    async def _on_market(self, msg: Message) -> None:
        payload = json.loads(msg.data)
        for m in self.state.merges.values():
            m.push_market(payload)
        await self._drain()

    def _account_handler(self, p: int) -> Any:
        async def handle(msg: Message) -> None:
            self.state.merges[p].push_account(json.loads(msg.data))
            await self._drain()
        return handle

    async def _drain(self) -> None:
        async with self._lock:
            try:
                progress = True
                while progress:
                    progress = False
                    for p, merge in self.state.merges.items():
                        while (m := merge.next_ready()) is not None:
                            progress = True
                            await self._process(p, m)
            except Exception as exc:  # an engine failure is fatal: state may be partial
                log.exception("worker %s failed", self.name)
                self.failed = exc
                self.stopped.set()
                raise

    async def _process(self, p: int, m: dict[str, Any]) -> None:
        s = self.state
        is_market = "hwm" in m
        outs = apply_message(s.engines[p], m)
        s.entries[p] += len(outs)
        dig = s.digests[p]
        rows = 0
        events: list[dict[str, Any]] = []
        for o in outs:
            dig.update(o)
            if o.batch is not None:
                rows += len(o.batch)
            events.extend(ev.to_dict() for ev in o.events)
        if outs:
            first, last = int(m["entries"][0]["s"]), int(m["entries"][-1]["s"])
            res = {"partition": p, "first_seq": first, "last_seq": last, "rows": rows,
                   "digest": dig.hexdigest(), "events": events}
            await self.bus.publish(results_subject(self.prefix, p),
                                   json.dumps(res, default=str).encode(),
                                   f"res:{p}:{first}-{last}")
        if not is_market:
            return
        key = ("b", int(m["bn"])) if not m["entries"] else ("m", int(m["entries"][-1]["s"]))
        s.done_count[key] = s.done_count.get(key, 0) + 1
        s.rows_by_msg[key] = s.rows_by_msg.get(key, 0) + rows
        if s.done_count[key] < len(s.partitions):
            return
        now = time.time()
        del s.done_count[key]
        total_rows = s.rows_by_msg.pop(key)
        if not m["entries"]:
            s.barriers[str(m["barrier"])] = now
            self.write_report()
            if m.get("stop") and self.exit_on_stop:
                self.stopped.set()
        elif any(e["k"] == EntryKind.TICK for e in m["entries"]) and "tp" in m:
            s.ticks.append((key[1], float(m["tp"]), now, total_rows))

    def write_report(self) -> None:
        if self.report_path is None:
            return
        tmp = self.report_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state.report(self.name, self.report_accounts)))
        tmp.replace(self.report_path)


async def run_worker(url: str, stream: str, prefix: str, partitions: Sequence[int],
                     n_partitions: int, report_path: Path | None = None,
                     report_accounts: bool = False, exit_on_stop: bool = False,
                     ack_wait_s: float = 120.0, warm_up: bool = True) -> dict[str, Any]:
    """Run until a stop barrier (with ``exit_on_stop``), SIGTERM or SIGINT; returns the report."""
    state = WorkerState.build(partitions, n_partitions)
    if warm_up:
        _warm_up()
    bus = await NatsBus.connect(url, stream=stream, prefix=prefix, ack_wait_s=ack_wait_s)
    w = StreamWorker(bus, prefix, state, report_path, report_accounts, exit_on_stop)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, w.stopped.set)
    try:
        await w.start()
        print(f"ready {w.name}", flush=True)
        await w.stopped.wait()
    finally:
        w.write_report()
        await bus.close()
    if w.failed is not None:
        raise RuntimeError(f"worker {w.name} failed") from w.failed
    return state.report(w.name, report_accounts)


def _warm_up() -> None:
    """Compile the pricing kernels (numba) on a throwaway engine before reporting ready."""
    eng = MarginEngine(GridModel())
    for e in synthetic_log(8, 2):
        eng.apply(e)


# -- publishing side ------------------------------------------------------------------------------
async def publish_routed(bus: NatsBus, prefix: str, msgs: Iterable[Routed]) -> int:
    """Publish routed messages in order (market messages get their send time ``tp``)."""
    n = 0
    for r in msgs:
        if r.target == MARKET:
            subject = market_subject(prefix)
            r.payload["tp"] = time.time()
        else:
            subject = accounts_subject(prefix, int(r.target))
        await bus.publish(subject, json.dumps(r.payload).encode(), r.msg_id())
        n += 1
    return n


def synthetic_log(n_accounts: int, n_ticks: int, n_fills: int = 0, seed: int = 3,
                  params_change: bool = False, malformed: bool = False) -> list[LogEntry]:
    """A log over the shipped 2022-04-15 market: seed snapshot, ``n_accounts`` synthetic
    accounts (all holding BTC), then ``n_ticks`` index ticks alternating BTC / ETH (random walk,
    0.2 % steps, one per second) with ``n_fills`` fills and transfers interleaved.

    ``params_change`` adds a grid parameter set taking effect mid-stream (every engine
    re-margins every account); ``malformed`` adds rejected account and fill entries.
    """
    from marginproof.feeds.replay import replay_day
    from marginproof.service.workload import synthetic_accounts, synthetic_fills

    day = replay_day("2022-04-15", ("BTCUSDT", "ETHUSDT"))
    t0 = int(day.market.timestamp.timestamp() * 1000)
    out: list[LogEntry] = []

    def add(kind: EntryKind, body: dict[str, Any], at_ms: int, source: str = "stream") -> None:
        out.append(LogEntry(len(out) + 1, kind, at_ms, source, body))

    add(EntryKind.MARKET, dict(day.seed_entry().body), t0, "replay")
    for a in synthetic_accounts(n_accounts, day.market, seed=seed):
        add(EntryKind.ACCOUNT, dict(a.body), t0 + 1)
    if malformed:
        add(EntryKind.ACCOUNT, {"account_id": "bad-1", "positions": {"NOPE": 1.0}}, t0 + 1)
        add(EntryKind.FILL, {"account_id": "acct-000001", "instrument": "BTC-PERPETUAL",
                             "quantity": "x"}, t0 + 1)
    fills = synthetic_fills(n_fills, max(n_accounts, 1), seed=seed + 1)
    rng = np.random.default_rng(seed)
    px = {"BTC": day.market.index("BTC"), "ETH": day.market.index("ETH")}
    start = t0 + 60_000
    after_tick = [i * n_ticks // max(n_fills, 1) for i in range(n_fills)]
    for k in range(n_ticks):
        ts = start + 1000 * k
        und = "BTC" if k % 2 == 0 else "ETH"
        px[und] *= float(np.exp(rng.normal(0.0, 0.002)))
        add(EntryKind.TICK, Tick("stream", f"stream:{und}", und, ts,
                                 index_price=round(px[und], 2)).to_dict(), ts + 5)
        if params_change and k == n_ticks // 2:
            params = dict(GridModel().params)
            params["grid"] = dict(params["grid"])
            params["grid"]["price_range"] = {"default": 0.25, "BTC": 0.30, "ETH": 0.20}
            add(EntryKind.PARAMS, {"model": "grid", "params": params,
                                   "effective_at_ms": ts + 2500, "changed_by": "ops"}, ts + 6)
        for i in (i for i, t in enumerate(after_tick) if t == k):
            f = fills[i]
            add(EntryKind.FILL, dict(f.body), ts + 7)
            add(EntryKind.TRANSFER, {"account_id": f.body["account_id"], "asset": "USDC",
                                     "amount": -5_000.0}, ts + 8)
    return out


def _parse_partitions(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m marginproof.scaleout.stream_worker",
                                 description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--nats", default=os.environ.get("MARGINPROOF_BUS_URL",
                                                     "nats://127.0.0.1:4222"))
    ap.add_argument("--stream", default="MARGINPROOF_STREAMING")
    ap.add_argument("--prefix", default="mps")
    ap.add_argument("--partitions", required=True, type=_parse_partitions,
                    help="owned partitions, comma-separated (e.g. 0,2)")
    ap.add_argument("--of", dest="n_partitions", required=True, type=int,
                    help="total number of partitions")
    ap.add_argument("--report", type=Path, default=None, help="JSON report path")
    ap.add_argument("--report-accounts", action="store_true",
                    help="include every owned account's final margins in the report")
    ap.add_argument("--exit-on-stop", action="store_true",
                    help="exit at a barrier marked stop (end of a finite stream)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    rep = asyncio.run(run_worker(args.nats, args.stream, args.prefix, args.partitions,
                                 args.n_partitions, args.report, args.report_accounts,
                                 args.exit_on_stop))
    print(json.dumps({"worker": rep["worker"],
                      "digest": combined_digest({int(p): d for p, d in rep["digests"].items()}),
                      "rows": sum(rep["rows"].values())}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
