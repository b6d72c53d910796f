"""Run every ``benchmarks/bench_*.py`` and write ``BENCHMARKS.md``.

Each benchmark runs in its own process with ``--json`` and prints its own figures; this script
measures the machine's roofline once (STREAM-like triad bandwidth, float64 GEMM FLOP rate),
collects the headline numbers into one table and appends every benchmark's full output.
Run: ``make bench`` (or ``python benchmarks/run_all.py [--quick] [--only NAME ...]``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _roofline import flop_rate_gflops, memory_bandwidth_gbs  # noqa: E402

# run with --quick unless --full: a full daily walk-forward of 1,000 books takes ~15 minutes,
# the full service load test several minutes
LAST_RUN = HERE / ".last_run.json"
LIMITS = HERE / "limits.md"
# (bench, result key, label, comparison, goal, unit): the checked-by list of issue 9
TARGETS = [
    ("bench_grid", "kernel_f32_s", "grid workload, float32 kernel", "<=", 0.06, "s"),
    ("bench_grid", "speedup_vs_naive", "grid workload vs naive per-account loop", ">=", 100, "x"),
    ("bench_grid", "fraction_roofline_dram", "grid workload, fraction of bandwidth roofline "
     "(compulsory DRAM bytes)", ">=", 0.5, ""),
    ("bench_grid", "fraction_roofline_touched", "grid workload, fraction of bandwidth roofline "
     "(every byte moved, gathered rows included)", ">=", 0.5, ""),
    ("bench_risk", "kernel_f32_s", "FHS workload", "<=", 1.8, "s"),
    ("bench_risk", "speedup_vs_naive", "FHS workload vs naive loop", ">=", 30, "x"),
    ("bench_pricing", "kernel_options_per_s", "Black-76 price + greeks", ">=", 4e7, "options/s"),
    ("bench_scaleout", "speedup_2_vs_1", "Dask batch re-margin, 2 workers vs 1", ">=", 1.6, "x"),
    ("bench_backtest", "dask_days_speedup_2_vs_1", "Dask backtest, 2 workers vs 1", ">=", 1.6,
     "x"),
    ("bench_streaming", "speedup_2_vs_1", "streaming engine processes, 2 vs 1", ">=", 1.6, "x"),
    # issue 22: cheapest hedge, 20 positions x 100 candidates x 1,000 dynamic scenarios
    ("bench_hedge", "a_im_plus_cost_s", "hedge (a) minimise IM + cost", "<=", 1.0, "s"),
    ("bench_hedge", "b_target_half_im_s", "hedge (b) reach a target at least cost", "<=", 1.0,
     "s"),
    ("bench_hedge", "c_k3_s", "hedge (c) best trade in <= 3 instruments", "<=", 5.0, "s"),
    # issue 16: live engine, 100,000 accounts x 5 positions, tick -> margin on the bus
    ("bench_live", "dynamic_p99_ms", "live tick -> margin p99, dynamic", "<=", 100, "ms"),
    ("bench_live", "grid_p99_ms", "live tick -> margin p99, grid", "<=", 30, "ms"),
    ("bench_live", "dynamic_recalibration_ratio_to_batch", "live recalibration / batch "
     "recompute, dynamic", "<=", 1.0, "x"),
    ("bench_live", "grid_recalibration_ratio_to_batch", "live recalibration / batch "
     "recompute, grid", "<=", 1.0, "x"),
    ("bench_live", "dynamic_rss_gib", "live engine RSS, 100,000 accounts (10,000 with --quick), "
     "dynamic", "<=", 2.0, "GiB"),
    # issue 20: fast CLI, cold process, median of 5, numba disk cache warm
    ("bench_cli", "help_s", "`marginproof --help`", "<=", 0.3, "s"),
    ("bench_cli", "margin_grid_s", "`marginproof margin` demo book, grid", "<=", 0.8, "s"),
    ("bench_cli", "margin_dynamic_s", "`marginproof margin` demo book, dynamic", "<=", 1.5, "s"),
    ("bench_cli", "compare_s", "`marginproof compare` demo book, every model", "<=", 3.0, "s"),
    # issue 21: margin forecast, 20 positions x 24 hourly steps x 2,000 paths
    ("bench_forecast", "grid_s", "forecast under grid", "<=", 1.0, "s"),
    ("bench_forecast", "dynamic_s", "forecast under dynamic", "<=", 5.0, "s"),
    ("bench_forecast", "grid_proxy_max_err_pct_im", "forecast proxy error under grid, every "
     "step", "<=", 1.0, "% of IM"),
    ("bench_forecast", "dynamic_proxy_max_err_pct_im", "forecast proxy error under dynamic, "
     "every step", "<=", 1.0, "% of IM"),
    # issue 18 item 7: bounded recovery, restart with an engine snapshot
    ("bench_recovery", "restart_10m_worst_s", "restart with a snapshot at 10M log entries "
     "(worst tail; extrapolated, see bench_recovery)", "<=", 5.0, "s"),
]
QUICK_BY_DEFAULT = {"bench_backtest", "bench_service", "bench_streaming"}

# headline rows: (bench, label, key of the figure, unit, key of the naive ratio, key of roofline)
HEADLINES = [
    ("bench_pricing", "Black-76 price + 6 greeks", "kernel_options_per_s", "options/s",
     "speedup_vs_naive", "fraction_of_bandwidth_roofline"),
    ("bench_pricing", "implied vol (Jaeckel, compiled)", "iv_options_per_s", "options/s",
     "iv_speedup_vs_naive", None),
    ("bench_grid", "grid margin 1e6 accts x 5 pos, 2e4 instr x 63 scen, float32",
     "kernel_f32_s", "s", "speedup_vs_naive", "fraction_roofline_dram"),
    ("bench_grid", "grid margin, float64 reference kernel", "kernel_f64_s", "s", None, None),
    ("bench_scaleout", "Dask batch re-margin, 2 workers vs 1", "speedup_2_vs_1", "x", None,
     None),
    ("bench_streaming", "streaming engine on NATS, ticks/s, 2 worker processes vs 1",
     "speedup_2_vs_1", "x", None, None),
    ("bench_scaling", "log-log slope of cost vs accounts", "slope_accounts", "", None, None),
    ("bench_risk", "FHS worst + VaR 0.99 + ES 0.975, 1e6 accts x 1,000 scen, float32",
     "kernel_f32_s", "s", "speedup_vs_naive", "fraction_roofline_dram"),
    ("bench_proofs", "sum tree build over 1e6 accounts (2 processes)", "tree_build_2p_s", "s",
     "tree_speedup_vs_naive", None),
    ("bench_proofs", "inclusion proof verify", "inclusion_verify_us", "us", None, None),
    ("bench_proofs", "inclusion proof size (binary)", "proof_binary_bytes", "B", None, None),
    ("bench_proofs", "commitments + range proofs, accounts/s", "l5_prove_accounts_per_s",
     "accounts/s", "l5_prove_speedup_vs_bits", None),
    ("bench_backtest", "walk-forward backtest of dynamic", "total_s", "s",
     "speedup_vs_naive", None),
    ("bench_backtest", "Dask backtest (blocks of days), 2 workers vs 1",
     "dask_days_speedup_2_vs_1", "x", None, None),
    ("bench_scaling", "log-log slope of cost vs scenarios", "slope_scenarios", "", None, None),
    ("bench_hedge", "cheapest hedge (a), 20 pos x 100 cand x 1,000 scen; ratio: 2-leg brute force",
     "a_im_plus_cost_s", "s", "speedup_vs_bruteforce", None),
    ("bench_hedge", "cheapest hedge (c), at most 3 instruments", "c_k3_s", "s", None, None),
    ("bench_live", "live tick -> margin p99, dynamic, 1e5 accts x 5 pos (1e4 with --quick); "
     "last column: fraction of the gather floor", "dynamic_p99_ms", "ms", None,
     "dynamic_fraction_of_floor"),
    ("bench_live", "live tick -> margin p99, grid, 1e5 accts x 5 pos (1e4 with --quick); "
     "last column: fraction of the gather floor", "grid_p99_ms", "ms", None,
     "grid_fraction_of_floor"),
    ("bench_live", "live recalibration (new vol, new sets, all re-margined), dynamic",
     "dynamic_recalibration_s", "s", None, None),
    ("bench_live", "live engine RSS, 1e5 accounts (1e4 with --quick), dynamic",
     "dynamic_rss_gib", "GiB", None, None),
    ("bench_cli", "`marginproof --help`, cold process; ratio: to `python -c pass`", "help_s",
     "s", "help_ratio_to_pass", None),
    ("bench_cli", "`marginproof margin` demo book, grid; ratio: to `python -c pass`",
     "margin_grid_s", "s", "margin_grid_ratio_to_pass", None),
    ("bench_cli", "`marginproof margin` demo book, dynamic; ratio: to `python -c pass`",
     "margin_dynamic_s", "s", "margin_dynamic_ratio_to_pass", None),
    ("bench_cli", "`marginproof compare` demo book, every model; ratio: to `python -c pass`",
     "compare_s", "s", "compare_ratio_to_pass", None),
    ("bench_forecast", "margin forecast under grid, 20 pos x 24 h x 2,000 paths; ratio: "
     "model.margin per state (subsample, extrapolated)", "grid_s", "s", "grid_speedup_vs_naive",
     None),
    ("bench_forecast", "margin forecast under dynamic, same book", "dynamic_s", "s",
     "dynamic_speedup_vs_naive", None),
    ("bench_forecast", "forecast proxy max error vs full revaluation (dynamic)",
     "dynamic_proxy_max_err_pct_im", "% of IM", None, None),
    ("bench_forecast", "forecasts per hour per core (grid, Dask 1 worker)",
     "accounts_per_hour_per_core", "accounts/h", None, None),
    ("bench_forecast", "Dask forecasts of many accounts, 2 workers vs 1",
     "dask_speedup_2_vs_1", "x", None, None),
    ("bench_recovery", "restart with an engine snapshot, worst tail, 10M entries "
     "(extrapolated); ratio: full replay", "restart_10m_worst_s", "s", "restart_speedup_10m",
     None),
    ("bench_recovery", "engine snapshot write (dynamic, 100 accounts)", "snapshot_write_s", "s",
     None, None),
]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller workloads")
    ap.add_argument("--only", nargs="*", default=None, help="bench names (e.g. bench_grid)")
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--full", action="store_true",
                    help="also run the long benchmarks (backtest, service) at full size")
    ap.add_argument("--render", action="store_true",
                    help="rewrite BENCHMARKS.md from the last run's results, run nothing")
    args = ap.parse_args()
    if args.render:
        last = json.loads(Path(LAST_RUN).read_text())
        render(last["results"], last["outputs"], last["bw"], last["fl"], last["quick"],
               args.out)
        return
    benches = sorted(p for p in HERE.glob("bench_*.py"))
    if args.only:
        benches = [p for p in benches if p.stem in args.only]
    bw = memory_bandwidth_gbs()
    fl = flop_rate_gflops()
    results: dict[str, dict[str, object]] = {}
    outputs: dict[str, str] = {}
    for p in benches:
        print(f"running {p.name} ...", flush=True)
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tf:
            jpath = tf.name
        quick = args.quick or (p.stem in QUICK_BY_DEFAULT and not args.full)
        cmd = [sys.executable, str(p), "--json", jpath] + (["--quick"] if quick else [])
        if p.stem == "bench_service":
            cmd = [c for c in cmd if c not in ("--json", jpath)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                                  cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            out = proc.stdout + (f"\n[exit code {proc.returncode}]\n{proc.stderr[-2000:]}"
                                 if proc.returncode else "")
        except subprocess.TimeoutExpired:
            out = f"[timed out after {args.timeout} s]"
        outputs[p.stem] = out.strip() + f"\n[{time.perf_counter() - t0:.0f} s wall]"
        try:
            results[p.stem] = json.loads(Path(jpath).read_text() or "{}")
        except (OSError, json.JSONDecodeError):
            results[p.stem] = {}
        print(outputs[p.stem], flush=True)
    Path(LAST_RUN).write_text(json.dumps({"results": results, "outputs": outputs, "bw": bw,
                                          "fl": fl, "quick": args.quick}))
    render(results, outputs, bw, fl, args.quick, args.out)


def render(results: dict[str, dict[str, object]], outputs: dict[str, str], bw: float,
           fl: float, quick: bool, out: str) -> None:
    """Write BENCHMARKS.md from one run's results (``--render`` redoes it from the last run)."""
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` (`benchmarks/run_all.py{' --quick' if quick else ''}`)"
        f" on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Machine: {os.cpu_count()} cores, {_cpu_model()}, Python {platform.python_version()}.",
        f"Roofline measured in this run: memory bandwidth **{bw:.1f} GB/s** (STREAM-like "
        f"triad, 2 threads), float64 GEMM **{fl:.1f} GFLOP/s** (numpy BLAS).",
        "Ratios are measured in the same run as the figure (naive baselines are measured on a "
        "subsample and extrapolated where stated). Absolute times vary with machine load.",
        "",
        "| workload | figure | unit | vs naive | fraction of bandwidth roofline |",
        "|---|---|---|---|---|",
    ]
    for bench, label, key, unit, naive, roof in HEADLINES:
        r = results.get(bench, {})
        if key not in r:
            continue
        lines.append(f"| {label} | {_fmt(r[key])} | {unit} | "
                     f"{_fmt(r[naive]) + 'x' if naive and naive in r else '-'} | "
                     f"{_fmt(r[roof]) if roof and roof in r else '-'} |")
    for bench in sorted(results):
        if bench not in {h[0] for h in HEADLINES} and results[bench]:
            for k, v in results[bench].items():
                if isinstance(v, (int, float)):
                    lines.append(f"| {bench}: {k} | {_fmt(v)} | | | |")
    lines += ["", "## Issue 9 targets (this run)", "",
              "| target | measured | met |", "|---|---|---|"]
    for bench, key, label, op, goal, unit in TARGETS:
        v = results.get(bench, {}).get(key)
        if isinstance(v, (int, float)):
            ok = v <= goal if op == "<=" else v >= goal
            lines.append(f"| {label} {op} {goal:g} {unit} | {_fmt(float(v))} {unit} | "
                         f"{'yes' if ok else '**no**'} |")
    lines += ["", LIMITS.read_text().strip() if LIMITS.exists() else "", "",
              "![scaling curves](benchmarks/scaling.png)", ""]
    for name, text in outputs.items():
        lines += [f"## {name}", "", "```", text, "```", ""]
    Path(out).write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
