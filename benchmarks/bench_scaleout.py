"""Batch grid re-margin on a local Dask cluster: 1 worker vs 2 workers, identical results.

Workload: 1,000,000 accounts x 5 positions over 20,000 instruments x 63 scenarios (float32),
16 partitions by stable account hash, held on the workers; a cycle ships the new instrument
scenario table and gathers a summary per partition (results stay on the workers). Each worker
runs one single-threaded process.
Run: ``python benchmarks/bench_scaleout.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _roofline import write_json  # noqa: E402

from marginproof.instruments.resolved import resolve  # noqa: E402
from marginproof.market.snapshot import MarketSnapshot  # noqa: E402
from marginproof.models.batch import instrument_unit_pnl, pad_scenarios  # noqa: E402
from marginproof.models.grid import GridModel  # noqa: E402
from marginproof.scaleout.batch import (  # noqa: E402
    account_partitions,
    build_partition,
    placement_of,
    run_dask_cycle,
    run_local,
)
from marginproof.synthetic import option_universe, random_accounts  # noqa: E402


def cycle_times(n_workers: int, parts: list, table: np.ndarray, n_scen: int, n_acc: int,
                repeats: int) -> tuple[list[float], np.ndarray, list[dict]]:
    import distributed

    with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        client.wait_for_workers(n_workers)
        futs = client.scatter(parts)
        where = placement_of(client, futs)
        # warm-up: numba cache load and first-call costs on every worker
        run_dask_cycle(client, futs, table, 0.8, n_acc, n_scen, where)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            cycle = run_dask_cycle(client, futs, table, 0.8, n_acc, n_scen, where)
            times.append(time.perf_counter() - t)
        im, _ = cycle.fetch(client)  # once, outside the timing: the identity check
    return times, im, cycle.summaries


def main() -> dict[str, float]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None, help="write results to this JSON file")
    args = ap.parse_args()
    n_acc = 200_000 if args.quick else 1_000_000
    n_inst, per, n_parts = 20_000, 5, 16
    market = MarketSnapshot(datetime(2026, 11, 25, 8, tzinfo=UTC), {"BTC": 90_000.0,
                                                                    "ETH": 3_000.0})
    uni = option_universe(market, n_inst, seed=0)
    inst = resolve(uni.portfolio, uni.market)
    up = instrument_unit_pnl(GridModel(), inst).astype(np.float32)
    table, n_scen = pad_scenarios(up), up.shape[1]
    a, i, q = random_accounts(n_acc, per, n_inst, seed=1)
    q = q.astype(np.float32)
    names = [f"acct-{k}" for k in range(n_acc)]
    part_of = account_partitions(names, n_parts)
    w = np.where(inst.is_option, 0.01 * inst.index, 0.0)
    parts = [build_partition(p, part_of, a, i, q, uni.underlying_of, w) for p in range(n_parts)]
    numba.set_num_threads(1)  # the in-process reference: one core, like one worker
    t0 = time.perf_counter()
    ref_im, _ = run_local(parts, table, 0.8, n_acc)
    t_local = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_local(parts, table, 0.8, n_acc)
    t_local = min(t_local, time.perf_counter() - t0)
    t1, im1, s1 = cycle_times(1, parts, table, n_scen, n_acc, 7)
    t2, im2, s2 = cycle_times(2, parts, table, n_scen, n_acc, 7)
    m1, m2 = statistics.median(t1), statistics.median(t2)
    identical = (im1.tobytes() == ref_im.tobytes() and im2.tobytes() == ref_im.tobytes()
                 and s1 == s2)
    res = {"accounts": n_acc, "partitions": n_parts, "cycle_1_worker_s": m1,
           "cycle_2_workers_s": m2, "speedup_2_vs_1": m1 / m2, "identical": float(identical),
           "cycle_2_workers_min_s": min(t2), "cycle_1_worker_min_s": min(t1),
           "in_process_1_thread_s": t_local, "load_avg_1min": os.getloadavg()[0]}
    print(f"Dask batch re-margin: {n_acc:,} accounts x {per} positions, {n_parts} partitions "
          f"(stable SHA-256 account hash), float32 grid kernel, 1 thread per worker")
    print(f"  in-process, 1 thread   {t_local*1e3:.0f} ms (all partitions in turn)")
    print(f"  cycle time, 1 worker   median {m1*1e3:.0f} ms, min {min(t1)*1e3:.0f} ms "
          f"(of {len(t1)})")
    print(f"  cycle time, 2 workers  median {m2*1e3:.0f} ms, min {min(t2)*1e3:.0f} ms "
          f"(of {len(t2)})")
    print(f"  speed-up 2 vs 1        {m1/m2:.2f}x median (target >= 1.6x: "
          f"{'met' if m1 / m2 >= 1.6 else 'NOT met'}); load average {os.getloadavg()[0]:.2f}")
    print("  a cycle broadcasts the padded scenario table and gathers one summary per partition "
          "(count, total IM, SHA-256 of the IM vector); per-account results stay on the workers")
    print(f"  results identical to the single-process run: {identical}")
    write_json(res, args.json)
    return res


if __name__ == "__main__":
    main()
