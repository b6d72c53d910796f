"""``marginproof calibrate``: tune ``dynamic`` to the targets out of sample (shell).

Steps (``docs/models/dynamic.md``, "Calibration"):

1. for every EWMA decay of the grid, one walk-forward of ``dynamic`` (scaling 1, every raw term
   recorded: :class:`~marginproof.calibration.recombine.LevelPanel`) over the backtest book set
   and all shipped days;
2. the reference models on the same books and days (``grid`` and the venue presets for the
   efficiency target; ``standard``, ``fhs``, ``mc``, ``ewma-var`` for the frontier); slow
   per-book models are margined every ``stride``-th day, labelled;
3. walk-forward selection by calendar year (:func:`~marginproof.calibration.recombine.
   select_walk_forward`): parameters chosen on the data before each year, judged on it;
4. a new parameter file (never over a file tracked by git) with the chosen parameters and a
   ``[provenance]`` table, and the evidence: targets out of sample and on the full sample,
   crash windows, the share of book-days each component binds, and the cost-coverage frontier
   of every model with ``dynamic``'s candidates on it.

Walk-forward results are cached in ``cache_dir`` under a key of the model parameters, the book
set and the data files' SHA-256, so a rerun with other selection grids takes seconds.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marginproof.backtest.batch_dynamic import HistoryBatchProvider
from marginproof.backtest.continuous import BacktestConfig, walk_forward
from marginproof.backtest.market import MarketPath
from marginproof.backtest.portfolios import BookTemplate, portfolio_set
from marginproof.calibration.recombine import (
    LevelPanel,
    Selection,
    binding_shares,
    candidate_grid,
    evaluation_dict,
    select_walk_forward,
)
from marginproof.calibration.targets import Evaluation, Panel, Targets, evaluate, panel_from_records
from marginproof.config.params import config_dir, load_toml, params_hash, repo_root
from marginproof.errors import InputError
from marginproof.io import datasets
from marginproof.models.dynamic import DynamicModel

Progress = Callable[[str, int, int], None]
#: Models the efficiency target compares with (``grid`` and the venue presets).
EFFICIENCY_REFERENCES = ("grid", "deribit-pm", "deribit-standard", "derive-pmrm", "derive-srm")
#: Further models on the frontier.
FRONTIER_MODELS = ("standard", "fhs", "mc", "ewma-var")
#: Per-book (slow) models margined every ``stride``-th day.
SLOW_MODELS = ("mc", "deribit-pm", "derive-pmrm", "derive-srm")
DATA_FILES = ("spot/binance_spot_1d_from_1h.csv.gz",
              "spot/btc_usd_daily_bitstamp_coinbase_2011_2025.csv.gz",
              "options/deribit_btc_dvol_1h_2021_2025.csv.gz",
              "options/deribit_btc_dvol_daily_2022_2025.csv.gz",
              "options/deribit_btc_options_eod_optionsdx_2021_2022_subset.csv.gz",
              "perp/binance_usdm_funding_rates.csv.gz",
              "perp/bitmex_xbtusd_funding_2016_2020.csv.gz")

DEFAULT_GRID: dict[str, tuple[Any, ...]] = {
    "lambdas": (0.97, 0.99, 0.995, 0.998, 0.999),
    "scalings": (0.8, 0.85, 0.9, 0.95, 1.0, 1.1),
    "weights": (0.0, 0.25),
    "floors": (False, True),
    "fractions": (0.0, 0.05, 0.1),
    "releases": (0.0, 0.15, 0.25),
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_fingerprint() -> dict[str, str]:
    return {p: _sha256(datasets.data_dir() / p) for p in DATA_FILES
            if (datasets.data_dir() / p).exists()}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(repo_root()), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=False)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def is_tracked(path: Path) -> bool:
    """True when ``path`` is a file git tracks in the checkout (never overwritten)."""
    try:
        p = path.resolve()
        rel = p.relative_to(repo_root())
    except ValueError:
        return False
    try:
        out = subprocess.run(["git", "-C", str(repo_root()), "ls-files", "--error-unmatch",
                              str(rel)], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return p.exists()
    return out.returncode == 0


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(
            out.get(k), Mapping) else v
    return out


class Runner:
    """Walk-forwards with an on-disk cache (see module docstring)."""

    def __init__(self, path: MarketPath, templates: Sequence[BookTemplate], cache_dir: Path | None,
                 progress: Progress | None = None) -> None:
        self.path = path
        self.templates = list(templates)
        self.cache_dir = cache_dir
        self.progress = progress
        self.fingerprint = data_fingerprint()
        self.book_key = hashlib.sha256("|".join(
            f"{t.name}:{t.category}:{t.legs}" for t in templates).encode()).hexdigest()[:16]

    def _key(self, what: str, params: Any, stride: int) -> str:
        blob = json.dumps({"what": what, "params": params, "books": self.book_key,
                           "data": self.fingerprint, "stride": stride, "v": 2},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def run(self, label: str, provider: Any, params: Any, config: BacktestConfig,
            start: str | None = None, end: str | None = None) -> pd.DataFrame:
        key = self._key(f"{label} {start} {end}", params, config.stride)
        cached = self.cache_dir / f"{key}.parquet" if self.cache_dir else None
        if cached is not None and cached.exists():
            return pd.read_parquet(cached)

        def tick(done: int, total: int) -> None:
            if self.progress:
                self.progress(label, done, total)

        bt = walk_forward(self.path, self.templates, provider, config, start, end, True, tick)
        rec = bt.records()
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            rec.to_parquet(cached, index=False)
        return rec


def _on_grid(panel: Panel, grid: Panel) -> np.ndarray:
    """``panel.margin`` on the (days, books) grid of ``grid`` (NaN where missing)."""
    out = np.full(grid.margin.shape, np.nan)
    di = np.searchsorted(grid.dates, panel.dates)
    ok = (di < grid.dates.shape[0])
    di = di[ok]
    ok_d = grid.dates[di] == panel.dates[ok]
    bi = np.array([grid.books.index(b) if b in grid.books else -1 for b in panel.books])
    src = panel.margin[ok][ok_d]
    rows = di[ok_d]
    for j, b in enumerate(bi):
        if b >= 0:
            out[rows, b] = src[:, j]
    return out


def run_calibration(out_file: Path | None = None, base_config: Path | None = None,
                    grid: Mapping[str, Sequence[Any]] | None = None, first_test_year: int = 2021,
                    sets: Sequence[str] = ("singles", "random", "adversarial", "hedged",
                                           "inverse"),
                    underlyings: Sequence[str] = ("BTC", "ETH"), n_random: int = 20, seed: int = 0,
                    stride: int = 5, references: Sequence[str] = EFFICIENCY_REFERENCES,
                    frontier_models: Sequence[str] = FRONTIER_MODELS,
                    cache_dir: Path | None = Path("out/cache/calibrate"),
                    progress: Progress | None = None, targets: Targets | None = None,
                    start: str | None = None, end: str | None = None) -> dict[str, Any]:
    """Run the calibration (module docstring); returns the summary (also written as JSON)."""
    from marginproof.reports.history import shipped_daily_path
    from marginproof.reports.run import make_provider

    targets = targets or Targets()
    g = {**DEFAULT_GRID, **(grid or {})}
    base_path = base_config or config_dir() / "models" / "dynamic.toml"
    base = load_toml(base_path)
    if out_file is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out_file = Path("out/calibration") / f"dynamic-calibrated-{stamp}.toml"
    if is_tracked(out_file):
        raise InputError("out", f"{out_file} is tracked by git: calibrate never overwrites a "
                         "shipped parameter file (choose a new path)")
    t0 = time.perf_counter()
    path = shipped_daily_path(("BTC", "ETH", "SOL"))
    templates = portfolio_set(sets, underlyings, n_random, seed)
    runner = Runner(path, templates, cache_dir, progress)
    levels: dict[float, LevelPanel] = {}
    for lam in g["lambdas"]:
        p = _deep_merge(base, {"fhs": {"lambda": float(lam)}, "mc": {"lambda": float(lam)},
                               "risk": {"scaling": 1.0}})
        model = DynamicModel(p)
        rec = runner.run(f"dynamic lambda {lam:g}", HistoryBatchProvider(model, levels=True),
                         params_hash(p), BacktestConfig(), start, end)
        levels[float(lam)] = LevelPanel.from_records(rec, float(lam))
    grid_panel = next(iter(levels.values())).panel
    ref_panels: dict[str, Panel] = {}
    ref_info: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys([*references, *frontier_models]):
        prov, info = make_provider(name)
        st = stride if name in SLOW_MODELS else 1
        rec = runner.run(name, prov, info.get("params_hash"), BacktestConfig(stride=st), start,
                         end)
        if rec.empty:
            ref_info[name] = {**info, "stride": st, "book_days": 0}
            continue
        pnl = panel_from_records(rec)
        ref_panels[name] = grid_panel.with_margin(_on_grid(pnl, grid_panel))
        ref_info[name] = {**info, "stride": st, "book_days": int(len(rec)),
                          "refused_book_days": int(getattr(prov, "skipped", 0))}
    ref_margins = {n: ref_panels[n].margin for n in references if n in ref_panels}
    cands = candidate_grid(g["lambdas"], g["scalings"], g["weights"], g["floors"],
                           g["fractions"], g["releases"])

    def sel_tick(done: int, total: int) -> None:
        if progress:
            progress("selection", done, total)

    sel = select_walk_forward(levels, cands, first_test_year, targets, ref_margins, sel_tick)
    best = sel.best
    params = _deep_merge(base, best.overrides())
    liq, liq_prov = fit_liquidity(base, best.lam)
    params["addons"] = {**params["addons"], "liquidity": liq}
    frontier = frontier_rows(sel, ref_panels, ref_info, targets, ref_margins)
    shares = binding_shares(levels[best.lam], best)
    elapsed = time.perf_counter() - t0
    prov_tab = {
        "command": "marginproof calibrate " + " ".join(
            f"--{k} {','.join(str(x) for x in v)}" for k, v in g.items())
        + f" --first-test-year {first_test_year} --stride {stride}"
        + (f" --start {start}" if start else "") + (f" --end {end}" if end else ""),
        "base_config": str(base_path), "base_config_params_hash": params_hash(base),
        "git_commit": git_commit(),
        "generated_utc": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "data_sha256": runner.fingerprint,
        "method": ("walk-forward by calendar year: each year's parameters minimise the target "
                   "loss (cost + 10 x relative target violations) over the book-days before it"
                   "; the recommendation minimises it over all book-days"),
        "books": len(templates), "book_sets": list(sets), "underlyings": list(underlyings),
        "first_test_year": first_test_year, "candidates": len(cands),
        "chosen": best.label(),
        "folds": [{"test_year": f.test_year, "chosen": f.candidate.label(),
                   "train_loss": f.train_loss, "train_days": f.train_days,
                   "test_days": f.test_days} for f in sel.folds],
        "out_of_sample": _compact(sel.oos), "full_sample": _compact(sel.best_full),
        "targets_met_out_of_sample": sel.oos.met, "targets_met_full_sample": sel.best_full.met,
        "liquidity": liq_prov,
    }
    params["meta"] = {**params.get("meta", {}),
                      "version": f"{base.get('meta', {}).get('version', '1.0')}-calibrated",
                      "source": "marginproof calibrate (see [provenance])"}
    params["provenance"] = _toml_safe(prov_tab)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    import tomli_w

    out_file.write_text("# Written by `marginproof calibrate`; see [provenance]. Load with\n"
                        f"# `marginproof margin --model dynamic --config {out_file}`.\n"
                        + tomli_w.dumps(params), encoding="utf-8")
    summary = {
        "written": str(out_file), "elapsed_s": elapsed, "chosen": best.label(),
        "candidate": best.__dict__, "folds": prov_tab["folds"],
        "out_of_sample": evaluation_dict(sel.oos), "full_sample": evaluation_dict(sel.best_full),
        "binding_shares": shares, "frontier": frontier, "references": ref_info,
        "binding_constraints": binding_constraints(sel, targets),
        "grid": {k: list(v) for k, v in g.items()},
    }
    (out_file.with_suffix(".json")).write_text(json.dumps(_jsonable(summary), indent=2) + "\n",
                                               encoding="utf-8")
    return summary


LIQUIDITY_FILES = ("microstructure/binance_usdm_btcusdt_2024-08-08T2354_depth_snapshot.csv.gz",
                   "microstructure/binance_usdm_btcusdt_2024-08-08T2354_bookticker.csv.gz")
BOOK_DAY = "2024-08-08"


def fit_liquidity(params: Mapping[str, Any], lam: float) -> tuple[dict[str, Any],
                                                                    dict[str, Any]]:
    """Liquidity add-on constants from the shipped book and chains (``addons.md``).

    ``Y``: least squares of the square-root model on the book walk of the Binance BTCUSDT
    snapshot, with the ADV and the daily vol (EWMA ``lam``, the core's) the model uses; spread:
    median relative bid-ask of the book ticker; option half spread: median over the chains.
    Returns the ``[addons.liquidity]`` table and its provenance.
    """
    from marginproof.addons.liquidity import calibrate_impact, option_half_spread_vol_points
    from marginproof.feeds.history import shipped_history
    from marginproof.risk.ewma import ewma_sigma

    hist = shipped_history()
    book = datasets.load_depth_snapshot()
    bids = book[book["side"] == "bid"].sort_values("price", ascending=False)
    asks = book[book["side"] == "ask"].sort_values("price")
    tick = datasets.load_bookticker()
    mid = (tick["ask_price"] + tick["bid_price"]) / 2.0
    spread = float(((tick["ask_price"] - tick["bid_price"]) / mid).median())
    day = np.datetime64(BOOK_DAY, "D")
    _, r_btc = hist.closes["BTC"].upto(day).log_returns()
    sigma_d = float(ewma_sigma(r_btc, float(lam))[-1])
    liq = dict(params["addons"]["liquidity"])
    adv_days = int(liq.get("adv_days", 30))
    adv = float(np.mean(hist.volumes["BTC"].upto(day).values[-adv_days:]))
    imp = calibrate_impact(bids["price"], bids["qty_btc"], asks["price"], asks["qty_btc"],
                           spread, sigma_d, adv)
    chains = datasets.load_option_chains()
    f = chains["underlying_price"]
    k = np.log(chains["strike"] / f)
    otm = ((chains["option_right"] == "put") & (chains["strike"] < f)) | (
        (chains["option_right"] == "call") & (chains["strike"] >= f))
    sel = chains[otm & (np.abs(k) < 0.2) & (chains["dte"] >= 7)]
    half_vp = option_half_spread_vol_points(sel["bid_price"], sel["ask_price"],
                                            sel["underlying_price"], sel["vega"])
    liq["y"] = round(imp.y, 4)
    liq["option_half_spread_vol_points"] = round(half_vp, 3)
    sp = dict(liq.get("spread_rel", {}))
    sp["BTC"] = float(f"{spread:.3g}")
    liq["spread_rel"] = sp
    prov = {"book_date": BOOK_DAY, "sigma_daily": sigma_d, "lambda": float(lam), "adv_btc": adv,
            "median_spread_rel": spread, "y": imp.y, "r2": imp.r2,
            "option_half_spread_vol_points": half_vp,
            "data_sha256": {p: _sha256(datasets.data_dir() / p) for p in LIQUIDITY_FILES}}
    return liq, prov


def _compact(e: Evaluation) -> dict[str, Any]:
    return {"cost": e.cost, "exception_rate": e.exception_rate,
            "kupiec_ok_share": e.kupiec_ok_share, "checks": dict(e.checks),
            "cost_ratios": dict(e.cost_ratios),
            "windows": {w.name: {"median_peak_to_trough": w.median_peak_to_trough,
                                 "median_max_5d_ratio": w.median_max_5d_ratio}
                        for w in e.windows}}


def _toml_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _toml_safe(v) for k, v in x.items() if v is not None}
    if isinstance(x, (list, tuple)):
        return [_toml_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return None if not math.isfinite(v) else v
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def frontier_rows(sel: Selection, refs: Mapping[str, Panel], info: Mapping[str, Any],
                  targets: Targets, ref_margins: Mapping[str, np.ndarray]
                  ) -> list[dict[str, Any]]:
    """Cost and coverage of every model, and of ``dynamic``'s non-dominated candidates."""
    rows = []
    for name, p in refs.items():
        e = evaluate(p, targets)
        rows.append({"model": name, "kind": "reference", "stride": info[name]["stride"],
                     "cost": e.cost, "exception_rate": e.exception_rate,
                     "kupiec_ok_share": e.kupiec_ok_share, "met": False,
                     "median_peak_to_trough_max_window": max(
                         (w.median_peak_to_trough for w in e.windows), default=math.nan)})
    for c, e in sel.frontier():
        rows.append({"model": "dynamic", "kind": "candidate", "label": c.label(),
                     "chosen": c == sel.best, "stride": 1, "cost": e.cost,
                     "exception_rate": e.exception_rate, "kupiec_ok_share": e.kupiec_ok_share,
                     "met": e.met, "median_peak_to_trough_max_window": max(
                         (w.median_peak_to_trough for w in e.windows), default=math.nan)})
    if not any(r.get("chosen") for r in rows):
        e = sel.best_full
        rows.append({"model": "dynamic", "kind": "candidate", "label": sel.best.label(),
                     "chosen": True, "stride": 1, "cost": e.cost,
                     "exception_rate": e.exception_rate, "kupiec_ok_share": e.kupiec_ok_share,
                     "met": e.met, "median_peak_to_trough_max_window": max(
                         (w.median_peak_to_trough for w in e.windows), default=math.nan)})
    return rows


def binding_constraints(sel: Selection, targets: Targets) -> list[str]:
    """Lines naming each target the chosen parameters miss, with the numbers and the best any
    candidate reaches on it (full sample)."""
    out = []
    e = sel.best_full
    for k, ok in e.checks.items():
        if ok:
            continue
        best_any = min((c_e.violations.get(k, 0.0) for _, c_e in sel.table), default=math.nan)
        out.append(f"{k}: violation {e.violations.get(k, math.nan):.3f} (relative) with the "
                   f"chosen parameters; the best candidate reaches {best_any:.3f}")
    for k, ok in sel.oos.checks.items():
        if not ok:
            out.append(f"out of sample: {k} not met (violation {sel.oos.violations[k]:.3f})")
    return out


__all__ = ["run_calibration"]
