"""Daily walk-forward backtest of the ``dynamic`` model: time split and ratios vs from-scratch.

Workload (issue target): every as-of day of the shipped history (2018-09 .. 2026-05, about
2,800 days) x 1,000 books (singles, adversarial, hedged and random option books on BTC, ETH and
SOL), 1-day margin period of risk. Run: ``python benchmarks/bench_backtest.py [--quick]``.

Prints, measured in this run:

* the time split of the incremental walk-forward (instantiating books, margining, settling and
  updating the running statistics) and the one-off set-up;
* the ratio vs **recomputing each day from scratch**, two readings:
  (a) continuous mode vs re-running the whole walk-forward from the first day every time a day
  is appended (what a service without incremental statistics would do): the cost of day ``d``
  is the measured per-day cost times ``d``, summed over the days;
  (b) recalibrating the model from scratch every day: a fresh model on the history truncated at
  the as-of day (EWMA factor paths, scenario sets, stress sets and caches rebuilt), measured on
  a sample of days and extrapolated (these margins are also checked equal to the walk-forward's,
  a no-look-ahead check);
* the ratio vs the **naive per-book loop** (``model.margin`` once per book per day), measured on
  a sample of books and extrapolated;
* the ratio of the running statistics update vs recomputing every book's statistics from the
  full record each day.

Not bandwidth-bound (small scenario matrices, Python-level orchestration), so no roofline
fraction is reported.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _roofline import write_json  # noqa: E402

from marginproof.backtest import stats as bs  # noqa: E402
from marginproof.backtest.batch_dynamic import HistoryBatchProvider  # noqa: E402
from marginproof.backtest.continuous import BacktestConfig, walk_forward  # noqa: E402
from marginproof.backtest.portfolios import (  # noqa: E402
    TemplateTable,
    instantiate,
    portfolio_set,
)
from marginproof.backtest.providers import ModelProvider  # noqa: E402
from marginproof.feeds.history import load_market_history  # noqa: E402
from marginproof.models.registry import model_class  # noqa: E402
from marginproof.reports.history import daily_path  # noqa: E402
from marginproof.risk.history import MarketHistory  # noqa: E402

UNDERLYINGS = ("BTC", "ETH", "SOL")


def truncated(h: MarketHistory, day: np.datetime64) -> MarketHistory:
    """The history as it was known at the close of ``day`` (every series cut there)."""
    cut = (day + np.timedelta64(1, "D")).astype("datetime64[s]")
    return MarketHistory(
        closes={u: s.upto(day) for u, s in h.closes.items()},
        volumes={u: s.upto(day) for u, s in h.volumes.items()},
        atm_iv={u: s.upto(day) for u, s in h.atm_iv.items()},
        funding={u: f.before(cut) for u, f in h.funding.items()},
        long_closes={u: s.upto(day) for u, s in h.long_closes.items()},
        sources=h.sources,
    )


def _warm_worker(path: Any, templates: list[Any], provider: Any, horizon_days: int,
                 start: str | None) -> None:
    from marginproof.backtest.continuous import margin_rows
    from marginproof.backtest.portfolios import TemplateTable

    first = path.index_of(start) if start else 400
    table = TemplateTable.build(templates, path.underlyings)
    margin_rows(path, table, provider, range(first, first + 2), horizon_days)


def dask_speedup(path: Any, templates: list[Any], model: Any, cfg: BacktestConfig,
                 start: str | None, end: str | None, summary: pd.DataFrame) -> dict[str, Any]:
    """The walk-forward on a local Dask cluster of 1 and of 2 single-thread workers.

    Two splits: by as-of days (4 blocks margined on the workers, statistics applied in the
    driver) and by books (2 partitions by name hash, each a whole walk-forward).
    """
    import distributed

    from marginproof.scaleout.backtest import run_dask, run_dask_by_days

    out: dict[str, Any] = {}
    same = True
    for workers in (1, 2):
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                      dashboard_address=None,
                                      ) as cluster, \
                distributed.Client(cluster) as client:
            # warm every worker first (imports, numba compilation of uncached kernels):
            # a fresh process pays that once, whatever runs first
            client.run(_warm_worker, path, templates, HistoryBatchProvider(model),
                       cfg.horizon_days, start)
            t = time.perf_counter()
            bt = run_dask_by_days(client, path, templates, HistoryBatchProvider(model), 4, cfg,
                                  start, end, keep_records=False)
            out[f"dask_days_{workers}w_s"] = time.perf_counter() - t
            same = same and bt.summary().equals(summary)
            t = time.perf_counter()
            (s, _), _parts = run_dask(client, path, templates, HistoryBatchProvider(model), 2,
                                      cfg, start, end, keep_records=False)
            out[f"dask_books_{workers}w_s"] = time.perf_counter() - t
            same = same and s.equals(summary)
    out["dask_days_speedup_2_vs_1"] = out["dask_days_1w_s"] / out["dask_days_2w_s"]
    out["dask_books_speedup_2_vs_1"] = out["dask_books_1w_s"] / out["dask_books_2w_s"]
    out["dask_identical"] = bool(same)
    return out


def main() -> dict[str, float]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="100 books over 2022")
    ap.add_argument("--books", type=int, default=None)
    ap.add_argument("--json", default=None, help="write results to this JSON file")
    ap.add_argument("--no-dask", dest="dask", action="store_false",
                    help="skip the 1-vs-2 Dask worker measurement")
    args = ap.parse_args()
    numba.set_num_threads(1)  # many small kernels: thread start-up dominates on 2 shared cores
    n_books = args.books or (100 if args.quick else 1000)
    start, end = ("2022-01-01", "2022-12-31") if args.quick else (None, None)

    t0 = time.perf_counter()
    path = daily_path(UNDERLYINGS)
    history = load_market_history()
    cls = model_class("dynamic")
    model = cls(None, history)  # type: ignore[call-arg]
    fixed = portfolio_set(("singles", "adversarial", "hedged"), UNDERLYINGS)
    templates = fixed + portfolio_set(("random",), UNDERLYINGS, n_books - len(fixed), seed=1)
    templates = templates[:n_books]
    setup_s = time.perf_counter() - t0

    provider = HistoryBatchProvider(model)
    cfg = BacktestConfig()
    t0, c0 = time.perf_counter(), time.process_time()
    bt = walk_forward(path, templates, provider, cfg, start, end, keep_records=False,
                      clock=time.perf_counter)
    total_s = time.perf_counter() - t0
    cpu_s = time.process_time() - c0
    n_days = bt.next_row - max(cfg.min_history_days, path.index_of(start) if start else 0)
    s = bt.summary()
    book_days = int(s["n_obs"].sum())
    tm = bt.timings

    # -- from scratch: fresh model on the truncated history, sampled days ---------------------
    first = max(cfg.min_history_days, path.index_of(start) if start else 0)
    rows = np.linspace(first + 5, bt.next_row - 2, 3 if args.quick else 5).astype(int)
    table = TemplateTable.build(templates, path.underlyings)
    scratch, incremental = [], []
    for r in rows:
        books = instantiate(table, path, int(r))
        day = path.times[r].astype("datetime64[D]")
        t = time.perf_counter()
        fresh = cls(None, truncated(history, day))  # type: ignore[call-arg]
        a = HistoryBatchProvider(fresh).day_margins(path.upto(int(r)), books)
        scratch.append(time.perf_counter() - t)
        t = time.perf_counter()
        b = provider.day_margins(path.upto(int(r)), books)
        incremental.append(time.perf_counter() - t)
        same = np.allclose(a.margin, b.margin, rtol=1e-9, equal_nan=True)
        if not same:
            raise SystemExit(f"from-scratch margins differ from the walk-forward on {day}")
    scratch_total = float(np.mean(scratch)) * n_days
    per_day = total_s / max(1, n_days)
    rerun_total = per_day * n_days * (n_days + 1) / 2.0  # day d re-runs d days

    # -- naive per-book loop -------------------------------------------------------------------
    r = int(rows[len(rows) // 2])
    books = instantiate(table, path, r)
    sub = min(40, n_books)
    sub_tpl = templates[:sub]
    sub_books = instantiate(TemplateTable.build(sub_tpl, path.underlyings), path, r)
    HistoryBatchProvider(model).day_margins(path.upto(r), books)  # warm the day's caches
    t = time.perf_counter()
    ModelProvider(model).day_margins(path.upto(r), sub_books)
    per_book = (time.perf_counter() - t) / sub
    naive_total = per_book * n_books * n_days

    # -- scale-out: the same walk-forward partitioned by book on 1 vs 2 Dask workers ----------
    dask_out = dask_speedup(path, templates, model, cfg, start, end, s) if args.dask else {}

    # -- statistics: running update vs recompute from the full record --------------------------
    T = max(1, book_days // max(1, n_books))
    rng = np.random.default_rng(0)
    exc = rng.uniform(size=T) < 0.02
    t = time.perf_counter()
    for _ in range(20):
        bs.coverage_summary(exc, 0.01)
    recompute_one_book = (time.perf_counter() - t) / 20
    recompute_total = recompute_one_book * n_books * n_days  # every book, every day
    stats_ratio = recompute_total / max(tm["settle_s"], 1e-9)

    out = {
        "books": n_books, "as_of_days": int(n_days), "book_days": book_days,
        "setup_s": setup_s, "total_s": total_s, "total_cpu_s": cpu_s,
        "load_avg_1min": float(os.getloadavg()[0]),
        "instantiate_s": tm["instantiate_s"], "margin_s": tm["margin_s"],
        "settle_and_stats_s": tm["settle_s"],
        "per_day_ms": 1e3 * total_s / max(1, n_days),
        "from_scratch_per_day_s": float(np.mean(scratch)),
        "incremental_per_day_sampled_s": float(np.mean(incremental)),
        "from_scratch_total_est_s": scratch_total,
        "speedup_vs_from_scratch": scratch_total / total_s,
        "rerun_each_day_total_est_s": rerun_total,
        "speedup_vs_rerun_each_day": rerun_total / total_s,
        "naive_per_book_call_ms": 1e3 * per_book,
        "naive_total_est_s": naive_total,
        "speedup_vs_naive": naive_total / total_s,
        "stats_recompute_total_est_s": recompute_total,
        "speedup_stats_vs_recompute": stats_ratio,
        "skipped_book_days": int(provider.skipped),
        **dask_out,
    }
    print(f"dynamic walk-forward: {n_books} books x {n_days} as-of days "
          f"({book_days:,} book-days settled, {provider.skipped:,} refused by the model: too "
          "little history)")
    print(f"  set-up (data, history)     {setup_s:8.1f} s")
    print(f"  total walk-forward         {total_s:8.1f} s wall, {cpu_s:.1f} s CPU "
          f"({out['per_day_ms']:.0f} ms per day; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores)")
    print(f"    instantiate books        {tm['instantiate_s']:8.1f} s")
    print(f"    margin (batch dynamic)   {tm['margin_s']:8.1f} s")
    print(f"    settle + running stats   {tm['settle_s']:8.1f} s")
    print(f"  (a) re-run the walk-forward from day 1 for each new day: est. "
          f"{rerun_total / 3600:.1f} h; ratio {out['speedup_vs_rerun_each_day']:.0f}x")
    print(f"  (b) recalibrate from scratch each day: {np.mean(scratch):.2f} s/day vs "
          f"{np.mean(incremental):.2f} s/day incremental (sampled {len(rows)} days, margins "
          f"equal) -> est. {scratch_total / 3600:.2f} h; ratio "
          f"{out['speedup_vs_from_scratch']:.2f}x")
    print(f"  naive model.margin per book {1e3 * per_book:7.2f} ms -> est. "
          f"{naive_total / 3600:.1f} h; ratio {out['speedup_vs_naive']:.0f}x")
    print(f"  statistics: running update vs recompute-all-each-day: est. "
          f"{recompute_total:.0f} s vs {tm['settle_s']:.1f} s; ratio {stats_ratio:.0f}x")
    if dask_out:
        d = dask_out
        print("  Dask local cluster, 1 thread per worker (cluster start-up not timed):")
        print(f"    by as-of days (4 blocks)   1 worker {d['dask_days_1w_s']:6.1f} s, 2 workers "
              f"{d['dask_days_2w_s']:6.1f} s -> {d['dask_days_speedup_2_vs_1']:.2f}x "
              f"(single process above: {total_s:.1f} s)")
        print(f"    by books (2 partitions)    1 worker {d['dask_books_1w_s']:6.1f} s, 2 workers "
              f"{d['dask_books_2w_s']:6.1f} s -> {d['dask_books_speedup_2_vs_1']:.2f}x "
              "(per-day model work repeats in each partition)")
        print(f"    tables identical to the single-process run: "
              f"{'yes' if d['dask_identical'] else 'NO'}")
    if args.json:
        write_json(out, args.json)  # type: ignore[arg-type]
    return out


if __name__ == "__main__":
    main()
