"""Streaming engine on NATS JetStream: 1 worker process vs 2, identical results.

Workload: N synthetic accounts that all hold BTC (1-4 positions: BTC inverse/linear perpetuals,
40 BTC options of the 2022-04-15 chain, ETH perpetual; ``service.workload``), routed to 4
partitions by the stable SHA-256 account hash, then index ticks alternating BTC / ETH (every
BTC tick re-margins every account) with a few fills and transfers interleaved. The log is
published to a JetStream stream unique to the run (``<prefix>.in.market`` and
``<prefix>.in.accounts.<p>``); worker processes (``python -m
marginproof.scaleout.stream_worker``) own all 4 partitions (1 worker) or 2 each (2 workers),
one single-threaded process per worker.

Phases of one run, each ended by a barrier message that every worker reports:

* **load**: the account entries (batches of 500 per message) -> account entries/s;
* **burst**: T ticks published at once -> ticks/s and accounts re-margined/s end to end
  (first tick published -> last worker done), and tick-to-result latency under backlog;
* **paced**: K ticks at a fixed interval (1.5x the 1-worker burst time per tick, the same
  for both configurations) -> tick-to-result latency p50/p99 (publish -> every owning worker
  has applied it and published its results).

Identity: each run's per-partition digests (every margin row as IEEE bytes, every event) are
compared with the 4 partition engines reading the whole log in this process (also timed: the
same work without the bus). Speed-up = 2-worker / 1-worker throughput measured in the same
repeat. The machine has 2 cores shared with other jobs: the load average is printed.
Run: ``python benchmarks/bench_streaming.py [--quick] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _roofline import write_json  # noqa: E402

from marginproof.bus.jetstream import NatsBus  # noqa: E402
from marginproof.engine.entries import EntryKind, LogEntry  # noqa: E402
from marginproof.scaleout.stream import (  # noqa: E402
    MARKET,
    Routed,
    Router,
    accounts_subject,
    combined_digest,
    market_subject,
    reference_digests,
)
from marginproof.scaleout.stream_worker import synthetic_log  # noqa: E402

NATS_URL = os.environ.get("MARGINPROOF_BUS_URL", "nats://127.0.0.1:4222")
N_PARTITIONS = 4


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def phases(log: list[LogEntry], n_burst: int) -> list[list[Routed]]:
    """Messages of the load, burst and paced phases, each ending with its barrier."""
    r = Router(N_PARTITIONS)
    first_tick = next(i for i, e in enumerate(log) if e.kind is EntryKind.TICK)
    ticks = [i for i, e in enumerate(log) if e.kind is EntryKind.TICK]
    cut = ticks[n_burst] if n_burst < len(ticks) else len(log)
    out: list[list[Routed]] = []
    for lo, hi, name in ((0, first_tick, "loaded"), (first_tick, cut, "burst"),
                         (cut, len(log), "end")):
        msgs: list[Routed] = []
        for e in log[lo:hi]:
            msgs.extend(r.route(e))
        msgs.extend(r.barrier(name, stop=name == "end"))
        out.append(msgs)
    return out


async def publish(bus: NatsBus, prefix: str, msgs: list[Routed],
                  encoded: dict[int, bytes], interval_s: float = 0.0) -> None:
    """Publish in order; market messages stamped with their send time; optional pacing."""
    t_next = time.perf_counter()
    for r in msgs:
        if r.target == MARKET:
            is_tick = any(e["k"] == "tick" for e in r.payload["entries"])
            if interval_s and is_tick:
                await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
                t_next = max(t_next + interval_s, time.perf_counter())
            r.payload["tp"] = time.time()
            data = json.dumps(r.payload).encode()
            subject = market_subject(prefix)
        else:
            data = encoded[id(r)]
            subject = accounts_subject(prefix, int(r.target))
        await bus.publish(subject, data, r.msg_id())


def spawn(stream: str, prefix: str, parts: list[int], report: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "marginproof.scaleout.stream_worker", "--nats", NATS_URL,
         "--stream", stream, "--prefix", prefix, "--partitions", ",".join(map(str, parts)),
         "--of", str(N_PARTITIONS), "--report", str(report), "--exit-on-stop"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_barrier(reports: list[Path], name: str, procs: list[subprocess.Popen[str]],
                 timeout_s: float) -> list[dict[str, Any]]:
    end = time.monotonic() + timeout_s
    while True:
        got = []
        for r in reports:
            try:
                d = json.loads(r.read_text())
            except (OSError, json.JSONDecodeError):
                d = {}
            if name in d.get("barriers", {}):
                got.append(d)
        if len(got) == len(reports):
            return got
        for p in procs:
            if p.poll() not in (None, 0):
                raise RuntimeError(f"worker exited {p.returncode}: {p.stderr.read()[-2000:]}"
                                   if p.stderr else "worker failed")
        if time.monotonic() > end:
            raise TimeoutError(f"barrier {name} not reached in {timeout_s} s")
        time.sleep(0.02)


def run(n_workers: int, msgs: list[list[Routed]], encoded: dict[int, bytes], n_accounts: int,
        interval_s: float | None, tmp: Path, timeout_s: float) -> dict[str, Any]:
    """One run; ``interval_s`` None: pace the paced phase at 1.5x this run's burst time."""
    tag = "b" + uuid.uuid4().hex[:12]
    stream, prefix = tag.upper(), tag
    owners = [list(range(N_PARTITIONS))] if n_workers == 1 else \
        [list(range(k, N_PARTITIONS, n_workers)) for k in range(n_workers)]
    reports = [tmp / f"{tag}-w{k}.json" for k in range(n_workers)]
    procs: list[subprocess.Popen[str]] = []
    res: dict[str, Any] = {"workers": n_workers, "load_before": loadavg()}

    async def main() -> None:
        bus = await NatsBus.connect(NATS_URL, stream=stream, prefix=prefix)
        try:
            procs.extend(spawn(stream, prefix, o, r) for o, r in zip(owners, reports,
                                                                     strict=True))
            for p in procs:  # wait until subscribed
                assert p.stdout is not None
                line = await asyncio.wait_for(asyncio.to_thread(p.stdout.readline), 60)
                if not line.startswith("ready"):
                    raise RuntimeError(f"worker did not start: {line!r}")
            t0 = time.time()
            await publish(bus, prefix, msgs[0], encoded)
            got = await asyncio.to_thread(wait_barrier, reports, "loaded", procs, timeout_s)
            res["load_s"] = max(g["barriers"]["loaded"] for g in got) - t0
            t1 = time.time()
            await publish(bus, prefix, msgs[1], encoded)
            got = await asyncio.to_thread(wait_barrier, reports, "burst", procs, timeout_s)
            res["burst_s"] = max(g["barriers"]["burst"] for g in got) - t1
            n_burst = sum(1 for r in msgs[1] if r.target == MARKET
                          and any(e["k"] == "tick" for e in r.payload["entries"]))
            pace = interval_s if interval_s is not None else 1.5 * res["burst_s"] / n_burst
            res["pace_s"] = pace
            await publish(bus, prefix, msgs[2], encoded, pace)
            got = await asyncio.to_thread(wait_barrier, reports, "end", procs, timeout_s)
            res["reports"] = got
        finally:
            await bus.delete_stream()
            await bus.close()

    try:
        asyncio.run(main())
        for p in procs:
            p.wait(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    res["load_after"] = loadavg()
    got = res.pop("reports")
    # per tick: the last owning worker's completion time
    done: dict[int, list[float]] = {}
    tp: dict[int, float] = {}
    rows: dict[int, int] = {}
    for g in got:
        for seq, t_pub, t_done, n in g["ticks"]:
            done.setdefault(seq, []).append(t_done)
            tp[seq] = t_pub
            rows[seq] = rows.get(seq, 0) + n
    lat = {s: max(d) - tp[s] for s, d in done.items() if len(d) == n_workers}
    burst_seqs = {int(e["s"]) for r in msgs[1] if r.target == MARKET
                  for e in r.payload["entries"]}
    burst = [s for s in lat if s in burst_seqs]
    paced = [s for s in lat if s not in burst_seqs]
    res.update(
        accounts_per_s=n_accounts / res["load_s"],
        burst_ticks=len(burst), paced_ticks=len(paced),
        ticks_per_s=len(burst) / res["burst_s"],
        remargined_per_s=sum(rows[s] for s in burst) / res["burst_s"],
        burst_p50_ms=1e3 * pct([lat[s] for s in burst], 50),
        burst_p99_ms=1e3 * pct([lat[s] for s in burst], 99),
        paced_p50_ms=1e3 * pct([lat[s] for s in paced], 50),
        paced_p99_ms=1e3 * pct([lat[s] for s in paced], 99),
        digests={int(p): d for g in got for p, d in g["digests"].items()},
        rows=sum(sum(g["rows"].values()) for g in got))
    return res


def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None, help="write results to this JSON file")
    ap.add_argument("--accounts", type=int, default=None)
    ap.add_argument("--burst", type=int, default=None, help="ticks published at once")
    ap.add_argument("--paced", type=int, default=None, help="ticks published at a fixed rate")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    n_acc = args.accounts or (10_000 if args.quick else 100_000)
    n_burst = args.burst or (60 if args.quick else 300)
    n_paced = args.paced or (20 if args.quick else 60)
    repeats = args.repeats or (2 if args.quick else 3)
    timeout_s = 900.0
    log = synthetic_log(n_acc, n_burst + n_paced, n_fills=(n_burst + n_paced) // 10)
    msgs = phases(log, n_burst)
    encoded = {id(r): json.dumps(r.payload).encode() for ph in msgs for r in ph
               if r.target != MARKET}
    print(f"Streaming engine on NATS JetStream: {n_acc:,} accounts (all hold BTC), "
          f"{N_PARTITIONS} partitions, {len(log):,} log entries: {n_burst} burst + {n_paced} "
          f"paced ticks (BTC/ETH alternating), {sum(len(p) for p in msgs)} messages")
    print(f"  load average at start: {loadavg()} ({os.cpu_count()} cores)")
    t = time.perf_counter()
    ref = reference_digests(log, N_PARTITIONS)
    t_ref = time.perf_counter() - t
    ref_digest = combined_digest({p: d.hexdigest() for p, d in ref.items()})
    ref_rows = sum(d.rows for d in ref.values())
    print(f"  in-process reference (4 partition engines, whole log, no bus): {t_ref:.1f} s, "
          f"{ref_rows:,} margin rows, digest {ref_digest[:16]}")
    runs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    import tempfile

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for k in range(repeats):
            # 1 worker first: its burst time per tick sets the pace of both paced phases
            one = run(1, msgs, encoded, n_acc, None, tmp, timeout_s)
            pace = float(one["pace_s"])
            two = run(2, msgs, encoded, n_acc, pace, tmp, timeout_s)
            runs.append((one, two))
            for r in (one, two):
                same = combined_digest(r["digests"]) == ref_digest
                print(f"  repeat {k} {r['workers']} worker(s): load {r['accounts_per_s']:,.0f}"
                      f" accounts/s | burst {r['ticks_per_s']:.2f} ticks/s, "
                      f"{r['remargined_per_s']:,.0f} accounts re-margined/s, latency p50/p99 "
                      f"{r['burst_p50_ms']:.0f}/{r['burst_p99_ms']:.0f} ms | paced every "
                      f"{1e3 * pace:.0f} ms: p50/p99 {r['paced_p50_ms']:.0f}/"
                      f"{r['paced_p99_ms']:.0f} ms | identical {same} | load "
                      f"{r['load_before']} -> {r['load_after']}")
            print(f"  repeat {k} speed-up 2 vs 1: ticks/s "
                  f"{two['ticks_per_s'] / one['ticks_per_s']:.2f}x, account load "
                  f"{two['accounts_per_s'] / one['accounts_per_s']:.2f}x")
    best1 = max(runs, key=lambda r: r[0]["ticks_per_s"])[0]
    best2 = max(runs, key=lambda r: r[1]["ticks_per_s"])[1]
    ups = [b["ticks_per_s"] / a["ticks_per_s"] for a, b in runs]
    load_ups = [b["accounts_per_s"] / a["accounts_per_s"] for a, b in runs]
    identical = all(combined_digest(r["digests"]) == ref_digest and r["rows"] == ref_rows
                    for pair in runs for r in pair)
    res: dict[str, Any] = {
        "accounts": n_acc, "partitions": N_PARTITIONS, "burst_ticks": n_burst,
        "paced_ticks": n_paced, "reference_s": t_ref,
        "ticks_per_s_1_worker": best1["ticks_per_s"], "ticks_per_s_2_workers": best2["ticks_per_s"],
        "remargined_per_s_1_worker": best1["remargined_per_s"],
        "remargined_per_s_2_workers": best2["remargined_per_s"],
        "speedup_2_vs_1": statistics.median(ups), "speedup_2_vs_1_max": max(ups),
        "load_speedup_2_vs_1": statistics.median(load_ups),
        "accounts_per_s_1_worker": best1["accounts_per_s"],
        "accounts_per_s_2_workers": best2["accounts_per_s"],
        "paced_p50_ms_1_worker": statistics.median(a["paced_p50_ms"] for a, _ in runs),
        "paced_p99_ms_1_worker": statistics.median(a["paced_p99_ms"] for a, _ in runs),
        "paced_p50_ms_2_workers": statistics.median(b["paced_p50_ms"] for _, b in runs),
        "paced_p99_ms_2_workers": statistics.median(b["paced_p99_ms"] for _, b in runs),
        "identical": float(identical),
    }
    print(f"  best of {repeats}: 1 worker {best1['ticks_per_s']:.2f} ticks/s "
          f"({best1['remargined_per_s']:,.0f} accounts/s), 2 workers "
          f"{best2['ticks_per_s']:.2f} ticks/s ({best2['remargined_per_s']:,.0f} accounts/s)")
    print(f"  speed-up 2 vs 1 (same repeat): median {res['speedup_2_vs_1']:.2f}x, per repeat "
          f"{', '.join(f'{u:.2f}' for u in ups)}; account load "
          f"{', '.join(f'{u:.2f}' for u in load_ups)}")
    print(f"  paced tick-to-result p50/p99: 1 worker {res['paced_p50_ms_1_worker']:.0f}/"
          f"{res['paced_p99_ms_1_worker']:.0f} ms, 2 workers "
          f"{res['paced_p50_ms_2_workers']:.0f}/{res['paced_p99_ms_2_workers']:.0f} ms")
    print(f"  results identical to the single-process run (every repeat, both configurations): "
          f"{identical}")
    print(f"  load average at end: {loadavg()}")
    write_json(res, args.json)
    return res


if __name__ == "__main__":
    main()
