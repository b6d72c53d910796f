"""Batch grid re-margin on a local Dask cluster: 1 worker vs 2 workers, identical results.

Workload: 1,000,000 accounts x 5 positions over 20,000 instruments x 63 scenarios (float32),
16 partitions by stable account hash, held on the workers; a cycle ships the new instrument
scenario table and gathers per-account IM/MM. Each worker runs one single-threaded process.
Run: ``python benchmarks/bench_scaleout.py [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _roofline import write_json  # noqa: E402

from marginproof.instruments.resolved import resolve  # noqa: E402
from marginproof.market.snapshot import MarketSnapshot  # noqa: E402
from marginproof.models.batch import instrument_unit_pnl  # noqa: E402
from marginproof.models.grid import GridModel  # noqa: E402
from marginproof.scaleout.batch import (  # noqa: E402
    account_partitions,
    build_partition,
    run_dask,
    run_local,
)
from marginproof.synthetic import option_universe, random_accounts  # noqa: E402


def cycle_times(n_workers: int, parts: list, up: np.ndarray, n_acc: int, repeats: int
                ) -> tuple[list[float], np.ndarray]:
    import distributed

    with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None, env={"NUMBA_NUM_THREADS": "1"},
                                  ) as cluster, distributed.Client(cluster) as client:
        futs = client.scatter(parts)
        client.wait_for_workers(n_workers)
        im, _ = run_dask(client, futs, up, 0.8, n_acc)  # warm-up (numba cache load)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            im, _ = run_dask(client, futs, up, 0.8, n_acc)
            times.append(time.perf_counter() - t)
    return times, im


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
    a, i, q = random_accounts(n_acc, per, n_inst, seed=1)
    q = q.astype(np.float32)
    names = [f"acct-{k}" for k in range(n_acc)]
    part_of = account_partitions(names, n_parts)
    w = np.where(inst.is_option, 0.01 * inst.index, 0.0)
    parts = [build_partition(p, part_of, a, i, q, uni.underlying_of, w) for p in range(n_parts)]
    ref_im, _ = run_local(parts, up, 0.8, n_acc)
    t1, im1 = cycle_times(1, parts, up, n_acc, 5)
    t2, im2 = cycle_times(2, parts, up, n_acc, 5)
    m1, m2 = statistics.median(t1), statistics.median(t2)
    identical = im1.tobytes() == ref_im.tobytes() and im2.tobytes() == ref_im.tobytes()
    res = {"accounts": n_acc, "partitions": n_parts, "cycle_1_worker_s": m1,
           "cycle_2_workers_s": m2, "speedup_2_vs_1": m1 / m2, "identical": float(identical)}
    print(f"Dask batch re-margin: {n_acc:,} accounts x {per} positions, {n_parts} partitions "
          f"(stable SHA-256 account hash), float32 grid kernel, 1 thread per worker")
    print(f"  cycle time, 1 worker   median {m1*1e3:.0f} ms (of {len(t1)})")
    print(f"  cycle time, 2 workers  median {m2*1e3:.0f} ms (of {len(t2)})")
    print(f"  speed-up 2 vs 1        {m1/m2:.2f}x (target >= 1.6x)")
    print(f"  results identical to the single-process run: {identical}")
    write_json(res, args.json)
    return res


if __name__ == "__main__":
    main()
