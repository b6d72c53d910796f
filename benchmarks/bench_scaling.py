"""Scaling curves of the fused CSR margin kernel: accounts 1e3..1e6 and scenarios 16..5,000.

Writes ``benchmarks/scaling.png`` (log-log, with a slope-1 reference line) and prints the
fitted log-log slopes: cost must grow linearly (slope ~1) in both accounts and scenarios.
Run: ``python benchmarks/bench_scaling.py [--quick] [--png PATH]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _roofline import best_time, write_json  # noqa: E402

from marginproof.demo.synthetic import random_accounts  # noqa: E402
from marginproof.models.batch import (  # noqa: E402
    CsrBook,
    pad_scenarios,
    segment_worst_loss_padded,
)

N_INST = 20_000


def kernel_time(n_acc: int, n_scen: int, rng: np.random.Generator) -> float:
    up = pad_scenarios(rng.standard_normal((N_INST, n_scen)).astype(np.float32))
    a, i, q = random_accounts(n_acc, 5, N_INST, seed=1)
    book = CsrBook.from_positions(a, i, q.astype(np.float32), np.zeros(N_INST, np.int64), n_acc)
    n = len(book.seg_ptr) - 1
    loss, arg, mins = np.empty(n), np.empty(n, np.int32), np.empty(n)
    w = np.zeros(len(book.qty), np.float32)
    repeats = 5 if n_acc * n_scen < 5e8 else 2
    return best_time(lambda: segment_worst_loss_padded(up, n_scen, book.seg_ptr, book.inst_idx,
                                                       book.qty, w, loss, arg, mins),
                     repeats=repeats)


def slope(x: list[float], y: list[float]) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def main() -> dict[str, object]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--png", default=str(Path(__file__).resolve().parent / "scaling.png"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    accs = [1_000, 10_000, 100_000] + ([] if args.quick else [1_000_000])
    scens = [16, 63, 250, 1_000] + ([] if args.quick else [5_000])
    n_fixed = 20_000 if args.quick else 100_000
    t_acc = [kernel_time(n, 63, rng) for n in accs]
    t_scen = [kernel_time(n_fixed, s, rng) for s in scens]
    # small sizes are dominated by fixed overhead; fit the upper part of each curve
    s_acc = slope(accs[-3:], t_acc[-3:])
    s_scen = slope(scens[-3:], t_scen[-3:])
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for a_, xs, ts, lab in (
        (ax[0], accs, t_acc, "accounts (5 positions each, 63 scenarios)"),
        (ax[1], scens, t_scen, f"scenarios ({n_fixed:,} accounts x 5 positions)"),
    ):
        a_.loglog(xs, ts, "o-", label="fused CSR kernel (float32, 2 threads)")
        ref = [ts[-1] * x / xs[-1] for x in xs]
        a_.loglog(xs, ref, "--", color="grey", label="linear (slope 1) through the last point")
        a_.set_xlabel(lab)
        a_.set_ylabel("time per margin cycle [s]")
        a_.grid(True, which="both", alpha=0.3)
        a_.legend()
    ax[0].set_title(f"Cost vs accounts: log-log slope {s_acc:.2f}")
    ax[1].set_title(f"Cost vs scenarios: log-log slope {s_scen:.2f}")
    fig.suptitle("marginproof grid/VaR kernel scaling (20,000 instruments)")
    fig.savefig(args.png, dpi=110)
    print("Scaling of the fused CSR kernel (float32)")
    for n, t in zip(accs, t_acc, strict=True):
        print(f"  accounts {n:>9,}  63 scenarios   {t*1e3:9.2f} ms")
    for s, t in zip(scens, t_scen, strict=True):
        print(f"  accounts {n_fixed:>9,}  {s:>5} scenarios {t*1e3:9.2f} ms")
    print(f"  log-log slope vs accounts  {s_acc:.2f} (1 = linear)")
    print(f"  log-log slope vs scenarios {s_scen:.2f} (1 = linear)")
    print(f"  plot: {args.png}")
    res: dict[str, object] = {"accounts": accs, "t_accounts_s": t_acc, "scenarios": scens,
                              "t_scenarios_s": t_scen, "slope_accounts": s_acc,
                              "slope_scenarios": s_scen, "png": args.png}
    write_json(res, args.json)
    return res


if __name__ == "__main__":
    main()
