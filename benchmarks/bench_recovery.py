"""Bounded recovery (issue 18 item 7): restart time with an engine snapshot vs a full replay.

Workload: the shipped 2022-04-15 market (one ``market`` entry), ``--accounts`` synthetic
accounts (:func:`marginproof.service.workload.synthetic_accounts`), then a stream of BTC and
ETH index ticks one second apart (a seeded random walk) with a fill after every
``--tick-per-fill`` ticks, in SQLite, model ``dynamic``. For each log length ``L``:

* **live run**: the runner processes the whole log once, writing a snapshot every
  ``--snapshot-every`` entries (write time and size measured);
* **restart with a snapshot**: a new runner's ``recover()`` (find the newest valid snapshot,
  check the chained hash at its seq and the blob digest, unpickle, replay the tail);
* **full replay**: the same ``recover()`` with the snapshots deleted (only up to
  ``--full-replay-max`` entries; longer ones are extrapolated at the measured replay rate).

Restart with a snapshot costs ``load + tail / replay rate`` plus the indexed look-ups; none of
it grows with ``L`` (the state depends on the book, not the log length), so the 10-million
figure is extrapolated as ``load(L_max) + lookup(L_max) + worst tail / replay rate`` with the
worst tail ``snapshot_every + commit_every`` entries, and the measured restart times at every
``L`` show that the non-tail part stays flat. The machine load is printed before and after.

Run: ``python benchmarks/bench_recovery.py [--quick] [--json out]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _roofline import write_json  # noqa: E402

from marginproof.engine.core import EngineConfig  # noqa: E402
from marginproof.engine.entries import EntryKind  # noqa: E402
from marginproof.engine.ticks import Tick  # noqa: E402
from marginproof.feeds.replay import replay_day  # noqa: E402
from marginproof.models.registry import get_model  # noqa: E402
from marginproof.service.runner import EngineRunner  # noqa: E402
from marginproof.service.workload import synthetic_accounts  # noqa: E402
from marginproof.storage.base import NewEntry  # noqa: E402
from marginproof.storage.sqlite import SqliteRepository  # noqa: E402

TARGET_S = 5.0
TARGET_LEN = 10_000_000


def build_log(repo: SqliteRepository, length: int, accounts: int, tick_per_fill: int,
              seed: int = 5) -> None:
    """Append the workload (see module docstring) until the log has ``length`` entries."""
    day = replay_day("2022-04-15", ("BTCUSDT", "ETHUSDT"))
    m = day.market
    head = [day.seed_entry(), *synthetic_accounts(accounts, m)]
    repo.append(head)
    rng = np.random.default_rng(seed)
    t0 = int(m.timestamp.timestamp() * 1000)
    px = {"BTC": m.index("BTC"), "ETH": m.index("ETH")}
    n = len(head)
    k = 0
    batch: list[NewEntry] = []
    while n < length:
        und = "BTC" if k % 2 == 0 else "ETH"
        px[und] *= float(np.exp(rng.normal(0.0, 2e-4)))
        tick = Tick("replay", f"replay:{und}", und, t0 + 1000 * (k // 2 + 1),
                    index_price=px[und])
        batch.append(NewEntry(EntryKind.TICK, tick.to_dict(), "bench"))
        n += 1
        k += 1
        if k % tick_per_fill == 0 and n < length:
            acc = f"acct-{int(rng.integers(0, accounts)):06d}"
            batch.append(NewEntry(EntryKind.FILL, {"account_id": acc,
                                                   "instrument": "BTC-PERPETUAL",
                                                   "quantity": float(rng.integers(-10, 11) or 1)
                                                   * 100.0}, "bench"))
            n += 1
        if len(batch) >= 5000:
            repo.append(batch)
            batch = []
    if batch:
        repo.append(batch)


def runner(repo: SqliteRepository, every: int, replay_s: float = 0.0) -> EngineRunner:
    return EngineRunner(repo, get_model("dynamic"), EngineConfig(), snapshot_every=every,
                        snapshot_replay_s=replay_s)


def measure(length: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    repo = SqliteRepository(workdir / f"log{length}.sqlite")
    repo.migrate()
    t = time.perf_counter()
    build_log(repo, length, args.accounts, args.tick_per_fill)
    t_build = time.perf_counter() - t
    live = runner(repo, args.snapshot_every, args.snapshot_replay_s)
    writes: list[dict[str, Any]] = []
    save = live.save_snapshot

    def timed_save() -> int:
        out = save()
        writes.append(dict(live.last_snapshot))
        return out

    live.save_snapshot = timed_save  # type: ignore[method-assign]
    t = time.perf_counter()
    live.recover()
    live.run_until_idle()
    t_live = time.perf_counter() - t
    n = repo.last_seq()
    # restart from the newest snapshot
    r = runner(repo, 0)
    t = time.perf_counter()
    r.recover()
    t_restart = time.perf_counter() - t
    tail = n - r.recovered_from
    # the worst tail: the checkpoint just before a snapshot falls due = one whole interval;
    # measured from the older kept snapshot with the checkpoint moved to the newest one's seq
    snaps = repo.snapshots(r.consumer)
    t_worst, worst_tail = t_restart, tail
    if len(snaps) == 2:
        with repo._tx(write=True) as cur:
            cur.execute("UPDATE consumer_offsets SET seq = ?", (snaps[0].seq,))
            cur.execute("UPDATE engine_snapshots SET consumer = 'aside' WHERE seq = ?",
                        (snaps[0].seq,))
        rw = runner(repo, 0)
        t = time.perf_counter()
        rw.recover()
        t_worst = time.perf_counter() - t
        worst_tail = snaps[0].seq - rw.recovered_from
        with repo._tx(write=True) as cur:
            cur.execute("UPDATE consumer_offsets SET seq = ?", (n,))
            cur.execute("UPDATE engine_snapshots SET consumer = ? WHERE seq = ?",
                        (r.consumer, snaps[0].seq))
    # the load alone: the same recover() with the tail already applied (snapshot at the end)
    r.snapshot_every = 1
    r.save_snapshot()
    r2 = runner(repo, 0)
    t = time.perf_counter()
    r2.recover()
    t_load = time.perf_counter() - t
    assert r2.recovered_from == n and r2.engine.state_digest() == live.engine.state_digest()
    out: dict[str, Any] = {
        "length": n, "build_s": t_build, "live_s": t_live, "live_entries_per_s": n / t_live,
        "snapshots_written": len(writes),
        "snapshot_write_s": float(np.median([w["seconds"] for w in writes])) if writes else None,
        "snapshot_bytes": writes[-1]["bytes"] if writes else r2.last_snapshot.get("bytes"),
        "restart_s": t_restart, "restart_tail": tail, "load_s": t_load,
        "restart_worst_s": t_worst, "restart_worst_tail": worst_tail,
    }
    if n <= args.full_replay_max:
        with repo._tx(write=True) as cur:
            cur.execute("DELETE FROM engine_snapshots")
        r3 = runner(repo, 0)
        t = time.perf_counter()
        r3.recover()
        t_full = time.perf_counter() - t
        assert r3.recovered_from == 0
        assert r3.engine.state_digest() == live.engine.state_digest()
        out.update(full_replay_s=t_full, replay_entries_per_s=n / t_full)
    repo.close()
    return out


def state_scaling(n_accounts: int) -> dict[str, Any]:
    """Snapshot write/load time and size of an engine holding ``n_accounts`` accounts (the
    state depends on the book, not on the log length): market + bulk-loaded accounts."""
    from marginproof.engine.core import MarginEngine
    from marginproof.engine.entries import LogEntry
    from marginproof.engine.snapshot import digest, dump_state, load_state

    day = replay_day("2022-04-15", ("BTCUSDT", "ETHUSDT"))
    cfg = EngineConfig()
    eng = MarginEngine(get_model("dynamic"), cfg)
    t0 = int(day.market.timestamp.timestamp() * 1000)
    seed = day.seed_entry()
    eng.apply(LogEntry(1, seed.kind, t0, "bench", seed.body))
    accs = [LogEntry(2 + i, e.kind, t0, "bench", e.body)
            for i, e in enumerate(synthetic_accounts(n_accounts, day.market))]
    eng.apply_accounts(accs)
    t = time.perf_counter()
    blob = dump_state(eng, cfg)
    t_dump = time.perf_counter() - t
    t = time.perf_counter()
    digest(blob)
    t_sha = time.perf_counter() - t
    t = time.perf_counter()
    back = load_state(blob, cfg)
    t_load = time.perf_counter() - t
    assert back.state_digest() == eng.state_digest()
    return {"accounts": n_accounts, "bytes": len(blob), "dump_s": t_dump, "sha256_s": t_sha,
            "load_s": t_load}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--lengths", default=None, help="comma-separated log lengths")
    ap.add_argument("--accounts", type=int, default=100)
    ap.add_argument("--tick-per-fill", type=int, default=4)
    ap.add_argument("--snapshot-every", type=int, default=100_000)
    ap.add_argument("--snapshot-replay-s", type=float, default=1.0)
    ap.add_argument("--full-replay-max", type=int, default=10_000)
    args = ap.parse_args()
    if args.quick:
        lengths = [1_000, 3_000]
        args.accounts = min(args.accounts, 100)
    else:
        lengths = [5_000, 20_000, 50_000]
    if args.lengths:
        lengths = [int(x) for x in args.lengths.split(",")]
    load0 = os.getloadavg()
    print(f"load before {load0[0]:.2f} (1-min average; {os.cpu_count()} cores, shared); "
          f"dynamic, {args.accounts} accounts, 1 fill per {args.tick_per_fill} ticks, "
          f"snapshot every {args.snapshot_every:,} entries or "
          f"{args.snapshot_replay_s:g} s of engine time, SQLite")
    res: dict[str, Any] = {"load_before": load0[0], "accounts": args.accounts,
                           "snapshot_every": args.snapshot_every,
                           "snapshot_replay_s": args.snapshot_replay_s, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench_recovery_") as d:
        for length in lengths:
            m = measure(length, args, Path(d))
            res["runs"].append(m)
            full = (f"full replay {m['full_replay_s']:.2f} s ({m['replay_entries_per_s']:,.0f}"
                    " entries/s)" if "full_replay_s" in m else "full replay not measured")
            print(f"L={m['length']:>9,}: restart with snapshot {m['restart_s']:.3f} s (tail "
                  f"{m['restart_tail']:,} entries; load alone {m['load_s']:.3f} s; from the "
                  f"worst tail {m['restart_worst_s']:.3f} s, tail {m['restart_worst_tail']:,}"
                  f"), {full}; "
                  f"live run {m['live_entries_per_s']:,.0f} entries/s, {m['snapshots_written']}"
                  f" snapshots of {m['snapshot_bytes'] / 1e6:.1f} MB, "
                  f"{m['snapshot_write_s'] or 0.0:.3f} s each")
    res["state"] = []
    for n_acc in ([1_000] if args.quick else [1_000, 10_000, 30_000]):
        st = state_scaling(n_acc)
        res["state"].append(st)
        print(f"engine state, {n_acc:>6,} accounts (dynamic): snapshot {st['bytes'] / 1e6:7.1f} "
              f"MB, pickle {st['dump_s']:.3f} s, SHA-256 {st['sha256_s']:.3f} s, unpickle "
              f"{st['load_s']:.3f} s")
    runs = res["runs"]
    rates = [r["replay_entries_per_s"] for r in runs if "replay_entries_per_s" in r]
    rate = float(np.median(rates)) if rates else float(np.median(
        [r["live_entries_per_s"] for r in runs]))
    last = runs[-1]
    # worst tail (estimate): one snapshot interval (entries or engine time) plus a commit batch
    worst_tail = min(args.snapshot_every or 10**12,
                     int(rate * args.snapshot_replay_s) if args.snapshot_replay_s else 10**12)
    worst_tail += 256
    est = max(last["load_s"] + worst_tail / rate,
              max(r["restart_worst_s"] for r in runs))
    full_est = TARGET_LEN / rate
    res.update(replay_entries_per_s=rate, load_s=last["load_s"],
               restart_s_longest=last["restart_s"], length_longest=last["length"],
               snapshot_bytes=last["snapshot_bytes"], snapshot_write_s=last["snapshot_write_s"],
               restart_10m_worst_s=est, full_replay_10m_s=full_est,
               restart_speedup_10m=full_est / est)
    print(f"10M entries (extrapolated): restart with snapshot <= {est:.2f} s (max of the "
          f"measured worst-tail restarts and load {last['load_s']:.3f} s + worst "
          f"tail {worst_tail:,} entries at {rate:,.0f} entries/s;"
          f" target <= {TARGET_S:g} s: {'met' if est <= TARGET_S else 'NOT met'}); full replay"
          f" {full_est:,.0f} s ({full_est / est:,.0f}x)")
    load1 = os.getloadavg()
    res["load_after"] = load1[0]
    print(f"load after {load1[0]:.2f} (1-min averages; {os.cpu_count()} cores, shared)")
    write_json(res, args.json)


if __name__ == "__main__":
    main()
