"""Cheapest hedge (issue 22): a 20-position BTC/ETH book, 100 candidates, ``dynamic`` with
1,000 FHS scenarios.

Targets: <= 1 s for (a) minimise IM + cost and (b) reach a target at least cost; <= 5 s for (c)
the best trade in at most 3 instruments. Every time includes the verification with the real
model. The ratio is to a brute-force grid search with the real model over the same candidates,
measured in the same run on a smaller case (the two candidates the optimiser uses most), with
the IM + cost found by both. The machine load (``os.getloadavg``) is printed before and after.

Run: ``python benchmarks/bench_hedge.py [--quick] [--json out]``.
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

from marginproof.config.params import config_dir, load_toml  # noqa: E402
from marginproof.demo.book import DEMO_DATE, demo_market  # noqa: E402
from marginproof.feeds.history import shipped_history  # noqa: E402
from marginproof.hedge import Target, suggest_hedge  # noqa: E402
from marginproof.hedge.bruteforce import brute_force  # noqa: E402
from marginproof.hedge.candidates import default_candidate_names  # noqa: E402
from marginproof.hedge.sources import candidate_set, load_config  # noqa: E402
from marginproof.instruments.portfolio import Portfolio  # noqa: E402
from marginproof.io import datasets  # noqa: E402
from marginproof.models.dynamic import DynamicModel  # noqa: E402


def workload(n_candidates: int = 100, seed: int = 3) -> tuple[Any, Portfolio, Any, Any]:
    """The dynamic model (window 1,000), the 20-position book, its market and candidates."""
    market = demo_market(DEMO_DATE)
    chain = datasets.option_chain(DEMO_DATE)
    ts = market.timestamp.timestamp()
    live = chain[chain["expiry_unix"] > ts + 3 * 86400]
    s = market.index("BTC")
    live = live[np.abs(np.log(live["strike"] / s)) < 0.35]
    rng = np.random.default_rng(seed)
    names = rng.choice(sorted(live["instrument_name"].astype(str).unique()), 15, replace=False)
    pos = [(str(n), float(rng.choice([-1, 1]) * rng.integers(1, 40) / 4)) for n in names]
    pos += [("BTC-PERPETUAL", -250_000.0), ("BTC-24JUN22", 120_000.0),
            ("BTC_USDC-PERPETUAL", 1.5), ("ETH-PERPETUAL", 30_000.0),
            ("ETH_USDC-PERPETUAL", -12.0)]
    pf = Portfolio.of(pos)
    p = load_toml(config_dir() / "models" / "dynamic.toml")
    p["fhs"]["window"] = 1000
    model = DynamicModel(p, history=shipped_history())
    allnames = default_candidate_names(pf, market, max_options=200)
    cs = candidate_set(model, pf, market, load_config(), names=allnames[:n_candidates])
    return model, pf, market, cs


def timed(fn: Any, repeats: int) -> tuple[float, Any]:
    """Median wall time of ``fn()`` over ``repeats`` runs (one warm-up first) and its result."""
    out = fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return float(statistics.median(ts)), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    load0 = os.getloadavg()
    repeats = 1 if args.quick else 3
    model, pf, market, cs = workload()
    n_scen = model.margin(pf, market).scenario_pnl.shape[0]
    im0 = model.margin(pf, market).initial_margin
    print(f"workload: {len(pf)} positions (BTC/ETH), {len(cs)} candidates, dynamic with "
          f"{n_scen} core scenarios; IM {im0:,.2f} USD; load before {load0[0]:.2f}")
    res: dict[str, Any] = {"n_positions": len(pf), "n_candidates": len(cs),
                           "n_scenarios": n_scen, "im_before_usd": im0,
                           "load_before": load0[0]}
    runs = {
        "a_im_plus_cost": {},
        "b_target_half_im": {"objective": "target", "target": Target("im", 0.5 * im0)},
        "c_k1": {"max_instruments": 1},
        "c_k2": {"max_instruments": 2},
        "c_k3": {"max_instruments": 3},
    }
    goals = {"a_im_plus_cost": 1.0, "b_target_half_im": 1.0, "c_k3": 5.0}
    for key, kw in runs.items():
        t, r = timed(lambda kw=kw: suggest_hedge(model, pf, market, cs, **kw), repeats)
        gap = r.solver.get("gap_vs_bound")
        res[f"{key}_s"] = t
        res[f"{key}_im_after_usd"] = r.im_after_usd
        res[f"{key}_cost_usd"] = r.cost_usd
        res[f"{key}_legs"] = len(r.trades)
        if gap is not None:
            res[f"{key}_gap_vs_bound"] = gap
        goal = goals.get(key)
        print(f"{key:18s} {t:6.2f} s{'' if goal is None else f' (target <= {goal:g} s)':22s} "
              f"{r.status}: IM {r.im_before_usd:,.0f} -> {r.im_after_usd:,.0f} USD, cost "
              f"{r.cost_usd:,.0f} USD, {len(r.trades)} legs"
              + (f", gap to bound {100 * gap:.1f} %" if gap is not None else "")
              + f"; {r.solver.get('method')}; {r.solver.get('real_margin_calls')} real margin "
              "calls")
    # brute force on a smaller case: the two legs (c) with k = 2 picked
    r2 = suggest_hedge(model, pf, market, cs, max_instruments=2)
    legs = [cs.names.index(t.instrument) for t in r2.trades][:2] or [0, 1]
    small = cs.subset(legs)
    held = {p.instrument.name: abs(p.quantity) for p in pf.positions}
    spans = np.array([2.0 * max(held.get(c.name, 0.0), abs(t.quantity))
                      for c, t in zip(small.candidates, r2.trades, strict=False)])
    levels = 15 if args.quick else 31
    t_bf = time.perf_counter()
    bf = brute_force(model, pf, market, small, levels=levels, spans=spans)
    t_bf = time.perf_counter() - t_bf
    t_opt, ro = timed(lambda: suggest_hedge(model, pf, market, small), repeats)
    f_opt = ro.im_after_usd + ro.cost_usd
    print(f"brute force, {len(small)} candidates ({', '.join(small.names)}) x {levels} levels:"
          f" {bf.evaluations} real margin calls in {t_bf:.2f} s, IM {bf.im_usd:,.2f} + cost "
          f"{bf.cost_usd:,.2f} = {bf.objective:,.2f} USD")
    print(f"optimiser on the same candidates: {t_opt:.3f} s, IM {ro.im_after_usd:,.2f} + cost "
          f"{ro.cost_usd:,.2f} = {f_opt:,.2f} USD; speed-up {t_bf / t_opt:.0f}x, objective "
          f"{'<=' if f_opt <= bf.objective + 1e-6 else '>'} brute force")
    res.update(bruteforce_s=t_bf, bruteforce_evals=bf.evaluations,
               bruteforce_objective_usd=bf.objective, bruteforce_im_usd=bf.im_usd,
               optimiser_small_s=t_opt, optimiser_small_objective_usd=f_opt,
               optimiser_small_im_usd=ro.im_after_usd, speedup_vs_bruteforce=t_bf / t_opt)
    load1 = os.getloadavg()
    res["load_after"] = load1[0]
    print(f"load after {load1[0]:.2f} (1-min averages; {os.cpu_count()} cores, shared)")
    write_json(res, args.json)


if __name__ == "__main__":
    main()
