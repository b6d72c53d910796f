"""Margin forecast (issue 21): a 20-position BTC/ETH options book, 24 hourly steps, 2,000 paths.

Targets: <= 1 s under ``grid`` and <= 5 s under ``dynamic`` (registry defaults), by the
disclosed value-lattice proxy (``method="auto"`` resolves to ``proxy`` for this book, see
``marginproof.forecast.lattice``). Measured in the same run:

* the forecast time (median of repeats after a warm-up; numba threads = all cores);
* the proxy's error against full revaluation (the batch evaluators with ``method="exact"``,
  themselves tested equal to ``model.margin``) on the same simulated paths (same seed, a
  subsample of paths): max over paths of ``|IM_proxy - IM_exact| / IM_exact`` at every step
  (target <= 1 %), and step 0 bit-equal to ``model.margin``;
* the naive baseline: ``model.margin`` on the simulated market of a subsample of (path, step)
  states, the mean time per call extrapolated to paths x steps (stated as such), and the
  largest difference between the forecast's exact IM and those ``model.margin`` calls, before
  and after the first UTC rollover (after it ``model.margin`` on a later timestamp reads the
  real next day of shipped history while the forecast applies the simulated day's vol
  update, so the two differ by design: not an error of the revaluation);
* accounts per hour per core: forecasts of many accounts on a local Dask cluster whose
  workers have one thread each (``NUMBA_NUM_THREADS=1``, BLAS threads 1), 1 worker vs 2
  workers on the same account set (variants of the book: random subsets and sizes), clusters
  in the order 1, 2, 2, 1 (``--quick``: 1, 2), mean wall per count; the 1-worker throughput
  is the per-core figure. The scheduler and client share the same 2 cores.

The machine load (``os.getloadavg``) is printed before and after: on the shared 2-core machine
times are sensitive to it. Run: ``python benchmarks/bench_forecast.py [--quick] [--json out]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _roofline import write_json  # noqa: E402

from marginproof.demo.book import DEMO_DATE, demo_market  # noqa: E402
from marginproof.forecast import ForecastConfig, forecast  # noqa: E402
from marginproof.forecast.api import _step_states  # noqa: E402
from marginproof.forecast.evaluators import GenericEvaluator  # noqa: E402
from marginproof.forecast.states import expiry_hours  # noqa: E402
from marginproof.instruments.portfolio import Portfolio  # noqa: E402
from marginproof.instruments.resolved import resolve  # noqa: E402
from marginproof.io import datasets  # noqa: E402
from marginproof.market.snapshot import MarketSnapshot  # noqa: E402
from marginproof.models.registry import get_model  # noqa: E402

EQUITY_OVER_IM = 1.10  # collateral set so that equity now = 1.10 x IM now (calls are possible)
TARGET_S = {"grid": 1.0, "dynamic": 5.0}


def option_names(market: MarketSnapshot, seed: int = 3) -> list[str]:
    """Live BTC options of the shipped chain (> 3 days, |ln K/S| < 0.35), as bench_hedge."""
    chain = datasets.option_chain(DEMO_DATE)
    ts = market.timestamp.timestamp()
    live = chain[chain["expiry_unix"] > ts + 3 * 86400]
    s = market.index("BTC")
    live = live[np.abs(np.log(live["strike"] / s)) < 0.35]
    return sorted(live["instrument_name"].astype(str).unique())


LINEAR = [("BTC-PERPETUAL", -250_000.0), ("BTC-24JUN22", 120_000.0),
          ("BTC_USDC-PERPETUAL", 1.5), ("ETH-PERPETUAL", 30_000.0),
          ("ETH_USDC-PERPETUAL", -12.0)]


def book(market: MarketSnapshot, seed: int = 3) -> Portfolio:
    """The 20-position book of ``bench_hedge``: 15 BTC options and 5 BTC/ETH delta-one."""
    rng = np.random.default_rng(seed)
    names = rng.choice(option_names(market), 15, replace=False)
    pos = [(str(n), float(rng.choice([-1, 1]) * rng.integers(1, 40) / 4)) for n in names]
    return Portfolio.of(pos + LINEAR)


def variant(market: MarketSnapshot, names: list[str], k: int) -> Portfolio:
    """Account ``k`` of the scale-out set: 5-15 options and the delta-one legs, resized."""
    rng = np.random.default_rng(1000 + k)
    n_opt = int(rng.integers(5, 16))
    chosen = rng.choice(names, n_opt, replace=False)
    pos = [(str(n), float(rng.choice([-1, 1]) * rng.integers(1, 40) / 4)) for n in chosen]
    f = float(rng.uniform(0.3, 1.5))
    return Portfolio.of(pos + [(n, q * f) for n, q in LINEAR])


def collateral_for(model: Any, pf: Portfolio, market: MarketSnapshot) -> dict[str, float]:
    """USDC balance (no haircut) making equity now = EQUITY_OVER_IM x IM now."""
    cfg = ForecastConfig(horizon_hours=0.0, n_paths=1, call_levels=False)
    r = forecast(model, pf, market, cfg, collateral={"USDC": 0.0})
    return {"USDC": EQUITY_OVER_IM * r.im0 - r.equity0}


def timed(fn: Any, repeats: int) -> tuple[float, Any]:
    """Median wall time of ``fn()`` over ``repeats`` runs (one warm-up first) and its result."""
    out = fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return float(statistics.median(ts)), out


def naive_states(model: Any, pf: Portfolio, market: MarketSnapshot, fpaths: Any,
                 rows: np.ndarray, steps: list[int]) -> tuple[float, dict[int, np.ndarray]]:
    """``model.margin`` at the simulated markets of paths ``rows`` at ``steps``.

    Returns the mean seconds per call and the IM per step (rows order).
    """
    bk = resolve(pf, market)
    ev = GenericEvaluator(model, pf, bk, market)
    exp_h = expiry_hours(bk)
    rate0 = np.array([float(market.funding_rates[bk.names[j]])
                      if bk.kind[j] == 2 and bk.names[j] in market.funding_rates
                      else np.nan for j in range(len(bk))])
    out: dict[int, np.ndarray] = {}
    n = 0
    t = time.perf_counter()
    for k in steps:
        alive = exp_h > float(fpaths.hours[k]) + 1e-9
        st = _step_states(fpaths, k, bk, alive, rate0).take(rows)
        out[k] = ev.margins(st, "exact")[0]
        n += rows.size
    return (time.perf_counter() - t) / n, out


def _forecast_task(model: Any, pf: Portfolio, market: MarketSnapshot, coll: dict[str, float],
                   cfg: ForecastConfig) -> tuple[float, float]:
    """One account's forecast on a worker with one numba thread: (P(call), seconds)."""
    import numba

    numba.set_num_threads(1)
    t = time.perf_counter()
    r = forecast(model, pf, market, cfg, collateral=coll)
    return float(r.p_call), time.perf_counter() - t


def dask_scaleout(model: Any, market: MarketSnapshot, n_acc: int, cfg: ForecastConfig,
                  order: tuple[int, ...] = (1, 2, 2, 1)) -> dict[str, Any]:
    """Forecast ``n_acc`` accounts on clusters of single-thread workers, in ``order``
    (1, 2, 2, 1: drifting background load hits both alike); walls summed per count."""
    import distributed

    names = option_names(market)
    accts = [variant(market, names, k) for k in range(n_acc)]
    colls = [collateral_for(model, pf, market) for pf in accts]
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS"):
        os.environ[var] = "1"  # inherited by the worker processes: 1 worker = 1 core
    out: dict[str, Any] = {"dask_1w_s": 0.0, "dask_2w_s": 0.0}
    tasks: dict[int, list[float]] = {1: [], 2: []}
    p_ref: list[float] | None = None
    for n_w in order:
        with distributed.LocalCluster(n_workers=n_w, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            client.wait_for_workers(n_w)
            m_f = client.scatter(model, broadcast=True, hash=False)
            k_f = client.scatter(market, broadcast=True, hash=False)
            warm = [client.submit(_forecast_task, m_f, accts[0], k_f, colls[0], cfg,
                                  pure=False, workers=[w])
                    for w in client.scheduler_info()["workers"]]
            client.gather(warm)  # numba cache loads, first calls
            t = time.perf_counter()
            futs = [client.submit(_forecast_task, m_f, pf, k_f, c, cfg, pure=False)
                    for pf, c in zip(accts, colls, strict=True)]
            got = client.gather(futs)
            wall = time.perf_counter() - t
        p = [g[0] for g in got]
        out[f"dask_{n_w}w_s"] += wall / order.count(n_w)
        tasks[n_w] += [g[1] for g in got]
        out[f"dask_{n_w}w_task_s_mean"] = float(np.mean(tasks[n_w]))
        if p_ref is None:
            p_ref = p
        out["dask_same_results"] = bool(out.get("dask_same_results", True) and p == p_ref)
    out["dask_accounts"] = n_acc
    out["dask_speedup_2_vs_1"] = out["dask_1w_s"] / out["dask_2w_s"]
    out["accounts_per_hour_per_core"] = 3600.0 * n_acc / out["dask_1w_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    load0 = os.getloadavg()
    repeats = 1 if args.quick else 3
    n_paths = 2000
    n_err = 40 if args.quick else 200  # paths of the proxy-vs-exact comparison
    n_naive = 2 if args.quick else 4  # paths per step of the model.margin baseline
    market = demo_market(DEMO_DATE)
    pf = book(market)
    cores = os.cpu_count() or 1
    print(f"workload: {len(pf)} positions (15 BTC options, 5 BTC/ETH delta-one), 24 hourly "
          f"steps x {n_paths:,} paths; equity now = {EQUITY_OVER_IM:g} x IM now; "
          f"load before {load0[0]:.2f} ({cores} cores, shared)")
    res: dict[str, Any] = {"n_positions": len(pf), "n_paths": n_paths, "n_steps": 24,
                           "load_before": load0[0]}
    for name in ("grid", "dynamic"):
        model = get_model(name)
        r0 = model.margin(pf, market)
        coll = collateral_for(model, pf, market)
        n_scen = r0.scenario_pnl.shape[0] if r0.scenario_pnl is not None else 0
        cfg = ForecastConfig(n_paths=n_paths, seed=1, call_levels=False)
        t, r = timed(lambda m=model, c=coll, g=cfg: forecast(m, pf, market, g, collateral=c,
                                                               keep_paths=True), repeats)
        goal = TARGET_S[name]
        print(f"{name:8s} forecast {t:6.2f} s (target <= {goal:g} s, "
              f"{'met' if t <= goal else 'MISSED'}); method {r.method}, {n_scen} core "
              f"scenarios; IM now {r.im0:,.0f} USD, P(call within 24 h) {r.p_call:.3f}, "
              f"P(liquidation) {r.p_liquidation:.3f}")
        res[f"{name}_s"] = t
        res[f"{name}_method"] = r.method
        res[f"{name}_core_scenarios"] = n_scen
        res[f"{name}_p_call"] = r.p_call
        res[f"{name}_im0_usd"] = r.im0
        # proxy vs full revaluation on the same paths (same seed, n_err paths)
        sub = ForecastConfig(n_paths=n_err, seed=1, call_levels=False, method="exact")
        t_ex = time.perf_counter()
        ex = forecast(model, pf, market, sub, collateral=coll, keep_paths=True)
        t_ex = time.perf_counter() - t_ex
        px = forecast(model, pf, market, ForecastConfig(n_paths=n_err, seed=1,
                                                        call_levels=False, method="proxy"),
                      collateral=coll, keep_paths=True)
        im_ex, im_px = ex.details["paths"]["im"], px.details["paths"]["im"]
        assert np.array_equal(ex.details["paths"]["equity"], px.details["paths"]["equity"])
        rel = np.abs(im_px - im_ex) / np.maximum(im_ex, 1e-9)
        err_step = rel.max(axis=0)
        exact0 = bool(np.all(im_px[:, 0] == r0.initial_margin)
                      and np.all(im_ex[:, 0] == r0.initial_margin))
        print(f"{name:8s} proxy vs full revaluation ({n_err} paths x 24 steps): max error "
              f"{100 * err_step.max():.4f} % of IM (target <= 1 %), median "
              f"{100 * float(np.median(rel[:, 1:])):.4f} %; by step (%): "
              + " ".join(f"{100 * e:.3f}" for e in err_step[1:])
              + f"; step 0 equal to model.margin: {exact0}; full revaluation of these paths "
              f"{t_ex:.2f} s")
        res[f"{name}_proxy_max_err_pct_im"] = 100 * float(err_step.max())
        res[f"{name}_proxy_err_pct_by_step"] = [100 * float(e) for e in err_step]
        res[f"{name}_step0_exact"] = exact0
        res[f"{name}_exact_{n_err}paths_s"] = t_ex
        # naive: model.margin per (path, step) on a subsample, extrapolated
        rows = np.arange(n_naive)
        steps = list(range(1, 25))
        per_call, im_naive = naive_states(model, pf, market, ex.details["paths"][
            "factor_paths"], rows, steps)
        fp = ex.details["paths"]["factor_paths"]
        d_k = {k: float(np.max(np.abs(im_naive[k] - im_ex[rows, k]) / im_ex[rows, k]))
               for k in steps}
        pre = [k for k in steps if fp.rollovers[k] == 0]
        post = [k for k in steps if fp.rollovers[k] > 0]
        diff = max(d_k[k] for k in pre) if pre else float("nan")
        diff_post = max(d_k[k] for k in post) if post else float("nan")
        naive_total = per_call * n_paths * 24
        print(f"{name:8s} naive model.margin: {per_call * 1e3:.1f} ms per call "
              f"({n_naive * 24} calls on {n_naive} paths x 24 steps), extrapolated to "
              f"{n_paths:,} x 24: {naive_total:,.0f} s; forecast is {naive_total / t:,.0f}x "
              f"faster; exact batch IM vs model.margin: max rel. diff {diff:.1e} before the "
              f"first UTC rollover ({len(pre)} steps), {diff_post:.1e} after it ({len(post)} "
              "steps: model.margin then reads the real next day of history, the forecast "
              "the simulated day's vol update)")
        res[f"{name}_naive_per_call_s"] = per_call
        res[f"{name}_naive_extrapolated_s"] = naive_total
        res[f"{name}_speedup_vs_naive"] = naive_total / t
        res[f"{name}_exact_vs_model_margin_rel"] = diff
        res[f"{name}_exact_vs_model_margin_rel_after_rollover"] = diff_post
        res[f"{name}_accounts_per_hour_in_process_per_core"] = 3600.0 / t / cores
    # Dask scale-out under grid (the cheaper model, so the run stays short)
    n_acc = 6 if args.quick else 24
    dcfg = ForecastConfig(n_paths=500 if args.quick else n_paths, seed=1, call_levels=False)
    d = dask_scaleout(get_model("grid"), market, n_acc, dcfg,
                      (1, 2) if args.quick else (1, 2, 2, 1))
    print(f"Dask, grid, {n_acc} accounts x {dcfg.n_paths:,} paths x 24 steps, 1 thread per "
          f"worker, mean wall: 1 worker {d['dask_1w_s']:.2f} s, 2 workers {d['dask_2w_s']:.2f} s, "
          f"speed-up {d['dask_speedup_2_vs_1']:.2f}x (mean task {d['dask_1w_task_s_mean']:.2f}"
          f" / {d['dask_2w_task_s_mean']:.2f} s); same results {d['dask_same_results']}; "
          f"{d['accounts_per_hour_per_core']:,.0f} accounts/hour/core "
          f"({dcfg.n_paths:,} paths)")
    res.update(d)
    res["dask_paths"] = dcfg.n_paths
    load1 = os.getloadavg()
    res["load_after"] = load1[0]
    print(f"load after {load1[0]:.2f} (1-min averages; {cores} cores, shared)")
    write_json(res, args.json)


if __name__ == "__main__":
    main()
