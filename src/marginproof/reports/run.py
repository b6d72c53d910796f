"""Run backtests, stress replays and model comparisons and write their reports (shell).

Each ``run_*`` function reads the shipped data, runs the pure core (:mod:`marginproof.backtest`,
:mod:`marginproof.stress`), and writes into ``out``: tidy tables (Parquet and CSV), a
machine-readable ``summary.json``, PNG figures and a self-contained ``report.html``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marginproof.backtest.batch_dynamic import HistoryBatchProvider
from marginproof.backtest.continuous import (
    BacktestConfig,
    ContinuousBacktest,
    category_summary,
    walk_forward,
)
from marginproof.backtest.market import IV_RATIO, MarketPath
from marginproof.backtest.portfolios import SETS, BookTemplate, portfolio_set
from marginproof.backtest.providers import (
    EwmaVarProvider,
    GridBatchProvider,
    MarginProvider,
    ModelProvider,
)
from marginproof.calibration.targets import (
    Evaluation,
    Targets,
    evaluate,
    kupiec_region,
    panel_from_records,
    verdict,
)
from marginproof.config.params import load_toml
from marginproof.errors import InputError
from marginproof.io import datasets
from marginproof.models.registry import BACKTEST_VARIANTS, available_models, model_class
from marginproof.reports import figures
from marginproof.reports.history import hourly_path, shipped_daily_path
from marginproof.reports.html import Report
from marginproof.stress.cascade import (
    DEFAULT_DEPTH_SCALE,
    Population,
    order_book,
    simulate_cascade,
    venue_rates,
)
from marginproof.stress.episodes import EPISODES, SHOCKS, episode
from marginproof.stress.replay import hypothetical_shocks, replay

Progress = Callable[[int, int], None]
EXTRA_MODELS = tuple(BACKTEST_VARIANTS)
NO_APC = {"stressed_weight": 0.0, "floor_10y": False, "static_buffer": 0.0,
          "release_buffer": 0.0}
UNDERLYINGS = ("BTC", "ETH", "SOL")


def model_names() -> tuple[str, ...]:
    """Registry models and presets plus the backtest-only variants."""
    return (*available_models(), *EXTRA_MODELS)


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(
            out.get(k), Mapping) else v
    return out


def make_provider(name: str, config: Path | None = None
                  ) -> tuple[MarginProvider, dict[str, Any]]:
    """Provider for a model name and its provenance (params hash, variant).

    ``ewma-var``: the reference EWMA-VaR model; ``dynamic-no-apc``: ``dynamic`` with its APC
    section switched off; history models go through the batch twin, ``grid`` through the batch
    kernel, every other registry model or preset through ``margin()`` per book.
    """
    if name == "ewma-var":
        return EwmaVarProvider(n_scenarios=200), {"model": name, "params_hash": "-",
                                                  "method": "EWMA normal VaR99, 1 day"}
    base = "dynamic" if name == "dynamic-no-apc" else name
    if base not in available_models():
        raise InputError("model", f"unknown model {name!r}; available: {', '.join(model_names())}")
    cls = model_class(base)
    model = cls(load_toml(config)) if config is not None else cls()
    if name == "dynamic-no-apc":
        params = _deep_merge(model.params, {"apc": NO_APC})
        model = cls(params)
    info: dict[str, Any] = {"model": name, "params_hash": model.params_hash}
    apc = model.params.get("apc", {}) if base == "dynamic" else {}
    if isinstance(apc, Mapping) and float(apc.get("release_buffer", 0.0)) > 0.0:
        # the posted margin of dynamic is the called margin: buffer with release per book
        info["release_buffer"] = float(apc["release_buffer"])
        info["rebuild_speed"] = float(apc.get("rebuild_speed", 0.0))
    if base == "grid":
        return GridBatchProvider(model), info
    if base in ("fhs", "mc", "dynamic"):
        return HistoryBatchProvider(model, name=name), info
    return ModelProvider(model, name=name), info


def backtest_config(info: Mapping[str, Any], horizon_days: int = 1, alpha: float = 0.01,
                    stride: int = 1) -> BacktestConfig:
    """The walk-forward settings for a provider (its release buffer, if any)."""
    return BacktestConfig(horizon_days=horizon_days, alpha=alpha,
                          release_buffer=float(info.get("release_buffer", 0.0)),
                          rebuild_speed=float(info.get("rebuild_speed", 0.0)), stride=stride)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(_jsonable(obj), indent=2, default=str) + "\n", encoding="utf-8")


def _tables(out: Path, name: str, df: pd.DataFrame) -> None:
    df.to_parquet(out / f"{name}.parquet", index=False)
    df.to_csv(out / f"{name}.csv", index=False)


def _path() -> MarketPath:
    return shipped_daily_path(UNDERLYINGS)


def _templates(sets: Sequence[str], underlyings: Sequence[str], n_random: int, seed: int
               ) -> list[BookTemplate]:
    return portfolio_set(sets, underlyings, n_random, seed)


def portfolio_book(file: Path, as_of: str | None = None, path: MarketPath | None = None
                   ) -> tuple[list[BookTemplate], list[str], str]:
    """A portfolio file (``docs/formats.md``: any instrument kind, linear or inverse) as a
    template re-struck every day (:func:`~marginproof.backtest.portfolios.
    template_from_portfolio`), read at the close of ``as_of``.

    Default ``as_of``: the last shipped day at least 2 days before the earliest expiry (the
    last shipped day for a book without expiries). Returns the template list, one line per
    position saying how it was read, and the as-of day.
    """
    from marginproof.backtest.portfolios import template_from_portfolio
    from marginproof.io.formats import load_portfolio

    acct = load_portfolio(file)
    pf = acct.portfolio
    p = path or _path()
    unknown = sorted({q.instrument.underlying for q in pf.positions} - set(p.underlyings))
    if unknown:
        raise InputError("positions", f"no shipped daily history for {', '.join(unknown)} "
                         f"(backtests cover {', '.join(p.underlyings)})")
    first = np.datetime64(p.times[0], "D")
    last = np.datetime64(p.times[-1], "D")
    if as_of is not None:
        day = np.datetime64(as_of, "D")
    else:
        exps = [q.instrument.expiry for q in pf.positions if q.instrument.expiry is not None]
        day = last
        if exps:
            day = min(last, np.datetime64(min(exps).date().isoformat(), "D")
                      - np.timedelta64(2, "D"))
    if not first <= day <= last:
        raise InputError("as-of", f"{day} is outside the shipped history ({first} .. {last})")
    row = p.index_of(str(day))
    idx = {u: float(p.closes[row, p.col(u)]) for u in p.underlyings
           if np.isfinite(p.closes[row, p.col(u)])}
    tpl, notes = template_from_portfolio(pf, idx, day, acct.account_id)
    return [tpl], notes, str(day)


def _representative(summary: pd.DataFrame) -> list[str]:
    """Books to plot: long/short BTC and the worst adversarial and random book."""
    s = summary[summary["n_obs"] > 0]
    out = [p for p in ("long BTC", "short BTC") if p in set(s["portfolio"])]
    for cat in ("adversarial", "random", "hedged"):
        g = s[s["category"] == cat]
        if len(g):
            out.append(str(g.sort_values("n_exceptions", ascending=False)["portfolio"].iloc[0]))
    return out


def _method_notes(cfg: BacktestConfig) -> list[str]:
    return [
        f"Walk-forward, no look-ahead: each UTC day T the books are struck at the close of T "
        f"and margined from data up to T; the realised loss is the change of value of the same "
        f"instruments from the close of T to the close of T+{cfg.horizon_days} "
        "(margin period of risk).",
        f"Exception: loss > margin. Tests at tail probability {cfg.alpha:g}: Kupiec POF, "
        "Christoffersen independence and conditional coverage (chi-squared p-values), Basel "
        "traffic light (binomial zones; the last-250-day zone per book is the headline).",
        f"ES tests at {cfg.es_alpha:g} where the model reports VaR and ES: Acerbi-Szekely Z1/Z2 "
        "(Z2 < -0.70 yellow, < -1.8 red), Du-Escanciano unconditional/conditional. They test "
        "the model's own loss distribution (for dynamic: the core FHS/MC VaR and ES, before "
        "APC, stress floor and add-ons), not the posted margin.",
        "Kupiec rejects in both directions: with very few exceptions a small p-value means the "
        "margin is significantly more conservative than a 99 % VaR (costly), not unsafe.",
        "Option books: linear (USDC) Deribit-style options priced with Black-76 on a flat ATM "
        f"vol: BTC DVOL where it exists, else EWMA(0.94) vol x {IV_RATIO} (the median "
        "DVOL/EWMA ratio of BTC). Perps are valued at the index; funding is not in the P&L.",
        "Procyclicality (Murphy, Vasios & Vause 2014): peak-to-trough max M / min M and the "
        "largest n-day rise of margin (ratio and USD) for n = 1, 5, 30; cost = average "
        "margin / gross notional.",
    ]


# -- backtest --------------------------------------------------------------------------------
def run_backtest(model: str, out: Path, start: str | None = None, end: str | None = None,
                 sets: Sequence[str] = SETS, underlyings: Sequence[str] = ("BTC", "ETH"),
                 n_random: int = 20, seed: int = 0, horizon_days: int = 1,
                 alpha: float = 0.01, progress: Progress | None = None,
                 templates: list[BookTemplate] | None = None,
                 config: Path | None = None) -> dict[str, Any]:
    """Walk-forward backtest of ``model``; writes the report into ``out``; returns the summary.

    ``templates`` (a portfolio file's book, :func:`portfolio_book`) replace the book sets.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = _path()
    templates = templates or _templates(sets, underlyings, n_random, seed)
    provider, info = make_provider(model, config)
    cfg = backtest_config(info, horizon_days, alpha)
    t0 = time.perf_counter()
    bt = walk_forward(path, templates, provider, cfg, start, end, True, progress,
                      time.perf_counter)
    elapsed = time.perf_counter() - t0
    rec, summ = bt.records(), bt.summary()
    if rec.empty:
        raise InputError("dates", "no as-of day to backtest in the requested range")
    cat = category_summary(summ)
    _tables(out, "records", rec)
    _tables(out, "summary", summ)
    _tables(out, "categories", cat)
    result = {
        **info, "from": str(rec["date"].min()), "to": str(rec["date"].max()),
        "n_books": len(templates), "book_days": int(len(rec)),
        "exceptions": int(rec["exception"].sum()), "horizon_days": horizon_days,
        "alpha": alpha, "elapsed_s": elapsed, "timings_s": bt.timings,
        "skipped_book_days": int(getattr(provider, "skipped", 0)),
        "categories": cat.to_dict(orient="records"),
        "books": summ.to_dict(orient="records"),
    }
    _write_json(out / "summary.json", result)
    _backtest_report(out, model, rec, summ, cat, cfg, result)
    return result


def _pct(x: Any, digits: int = 2) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "-"
    return "-" if not math.isfinite(v) else f"{100 * v:.{digits}f} %"


def _usdf(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "-"
    return "-" if not math.isfinite(v) else f"{v:,.0f}"


def _num(x: Any, digits: int = 2) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "-" if not math.isfinite(v) else f"{v:,.{digits}f}"


def human_table(df: pd.DataFrame) -> pd.DataFrame:
    """The same table in human units: USD with separators, rates and shares in %."""
    out = df.copy()
    for c in out.columns:
        lc = str(c)
        if lc.endswith("_usd") or lc.startswith("avg_margin_usd"):
            out[c] = out[c].map(_usdf)
        elif any(k in lc for k in ("rate", "to_notional", "coverage_ratio", "share", "cost")):
            out[c] = out[c].map(_pct)
        elif out[c].dtype.kind == "f":
            out[c] = out[c].map(lambda v: _num(v, 3))
    return out


def verdict_section(rep: Report, rec: pd.DataFrame, model: str, cfg: BacktestConfig,
                    targets: Targets | None = None) -> Evaluation:
    """The report's first page: the verdict and the figures behind it."""
    tg = targets or Targets(alpha=cfg.alpha)
    ev = evaluate(panel_from_records(rec), tg)
    v = verdict(ev, tg)
    colour = {"adequate": "green", "too conservative": "yellow"}.get(v.label, "red")
    rep.parts.append(f'<h2>Verdict: <span class="{colour}" style="padding:0 .4em">'
                     f"{v.label}</span></h2>")
    rep.bullets(list(v.reasons))
    n_obs = int(np.isfinite(rec["margin_usd"]).sum())
    rows = [
        ("period", f"{rec['date'].min()} .. {rec['date'].max()} "
                   f"({rec['date'].nunique():,} as-of days)"),
        ("books / book-days", f"{rec['portfolio'].nunique():,} / {n_obs:,}"),
        ("exceptions (loss > margin)", f"{int(rec['exception'].sum()):,} = "
                                       f"{_pct(ev.exception_rate)} (expected "
                                       f"{_pct(cfg.alpha, 1)})"),
        ("Kupiec not rejected (5 %, either direction)",
         f"{_pct(ev.kupiec_ok_share, 0)} of books (target >= 80 %)"),
        ("Basel zone per category (pooled book-days)",
         ", ".join(f"{c}: {d['zone']}" for c, d in ev.categories.items())),
        ("ES test: Acerbi-Szekely Z2 of the posted margin (per category)",
         ", ".join(f"{c}: {float(d['z2']):.2f}" for c, d in ev.categories.items())
         + " (rejected at 5 % below -0.70)"),
        ("cost: average margin / gross notional", _pct(ev.cost)),
        ("cost: average margin per book-day", f"{_usdf(rec['margin_usd'].mean())} USD"),
    ]
    for w in ev.windows:
        rows.append((f"crash {w.name}: median peak-to-trough / largest 5-day rise",
                     f"{w.median_peak_to_trough:.2f} / {w.median_max_5d_ratio:.2f} "
                     f"(targets 1.5 / 1.25; worst book {w.max_peak_to_trough:.2f})"))
    if "binding" in rec and rec["binding"].astype(str).str.len().gt(0).any():
        b = rec["binding"][rec["binding"].astype(str) != ""].value_counts(normalize=True)
        rows.append(("term that sets the margin (share of book-days)",
                     ", ".join(f"{k} {_pct(x, 1)}" for k, x in b.items())))
    if "comp_release_buffer" in rec:
        held = float((rec["comp_release_buffer"] > 1e-9).mean())
        rows.append(("release buffer held (share of book-days)", _pct(held, 1)))
    rep.table(pd.DataFrame(rows, columns=["", model]))
    return ev


def _backtest_report(out: Path, model: str, rec: pd.DataFrame, summ: pd.DataFrame,
                     cat: pd.DataFrame, cfg: BacktestConfig, result: Mapping[str, Any]) -> None:
    rep = Report(f"Backtest of {model}", f"{result['from']} .. {result['to']}, "
                 f"{result['n_books']} books, params hash {str(result['params_hash'])[:16]}")
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    ev = verdict_section(rep, rec, model, cfg)
    for p in _representative(summ)[:3]:
        slug = "".join(c if c.isalnum() else "_" for c in p).strip("_")
        rep.figure(figures.pnl_vs_margin(rec, p, figs / f"pnl_vs_margin_{slug}.png",
                                         cfg.horizon_days),
                   f"Realised P&L against the margin (and VaR), exceptions marked: {p}")
    books = pd.DataFrame([{"category": b.category, "cost": b.cost,
                           "exception_rate": b.n_exceptions / b.n_obs}
                          for b in ev.books if b.n_obs])
    T = int(np.median([b.n_obs for b in ev.books if b.n_obs])) if len(books) else 0
    lo, hi = kupiec_region(T, cfg.alpha) if T else (0, 0)
    pooled = pd.DataFrame([{"label": f"{model} (pooled)", "cost": ev.cost,
                            "exception_rate": ev.exception_rate, "chosen": True}])
    rep.figure(figures.cost_coverage(books, figs / "cost_coverage.png",
                                     f"{model}: cost against coverage, one point per book",
                                     pooled, cfg.alpha, (lo / T, hi / T) if T else None),
               "Cost-coverage frontier: each book's average margin / notional against its "
               "exception rate (green band: not rejected by Kupiec for the typical book's "
               "days; compare-models and calibrate put every model on it)")
    rep.figure(figures.margin_to_notional(rec, figs / "margin_level.png"),
               "Margin level over time, % of notional (procyclicality)")
    rep.figure(figures.traffic_light(summ, figs / "traffic_light.png", cfg.alpha),
               "Basel zone of each book, and pooled exception rate")
    rep.heading("Method")
    rep.bullets(_method_notes(cfg))
    rep.heading("Summary by portfolio category")
    rep.table(human_table(cat))
    smile = _smile_figure(figs)
    if smile is not None:
        rep.heading("Implied-vol input: a shipped chain and the ATM level of the backtest")
        rep.figure(smile, "Deribit mark IVs with SVI fits, and the ATM level of the backtest "
                          "on that date (option vols follow the chain's smile shape while a "
                          "chain is in force)")
    rep.heading("Per-book statistics")
    cols = ["portfolio", "category", "n_obs", "n_exceptions", "coverage_ratio", "kupiec_p",
            "christoffersen_ind_p", "christoffersen_cc_p", "zone", "zone_last_250",
            "as_z2", "as_z2_zone", "avg_margin_usd", "avg_margin_to_notional",
            "peak_to_trough", "max_5d_ratio", "max_30d_ratio"]
    rep.table(human_table(summ[[c for c in cols if c in summ.columns]]), max_rows=200)
    rep.heading("Files")
    rep.bullets(["records.parquet / .csv: one row per (day, book)",
                 "summary.parquet / .csv: one row per book", "categories.parquet / .csv",
                 "summary.json: machine-readable summary", "figures/*.png"])
    rep.write(out / "report.html")


def _smile_figure(figs: Path, quote_date: str = "2022-01-15") -> Path | None:
    """Smiles of one shipped chain with SVI fits (skipped if the chain cannot be fitted)."""
    try:
        from marginproof.surfaces.chain import fit_chain, fitted_curves, fitted_vs_market

        chain = datasets.option_chain(quote_date)
        fit = fit_chain(chain)
        pts, curves = fitted_vs_market(fit), fitted_curves(fit)
    except (ImportError, InputError):
        return None
    day = pd.Timestamp(quote_date)
    path = _path()
    try:
        atm = float(path.iv[path.index_of(str((day - pd.Timedelta(days=1)).date())),
                            path.col("BTC")])
    except InputError:
        atm = None
    return figures.smiles(pts, curves, figs / "smiles.png",
                          f"BTC smiles on {quote_date} (Deribit, 00:00 New York)", atm)


# -- stress ----------------------------------------------------------------------------------
def _sigma_daily(path: MarketPath, row: int) -> np.ndarray:
    prov = EwmaVarProvider()
    h = path.upto(row)
    return np.array([prov.sigma_next(h, c) for c in range(len(path.underlyings))])


def run_stress(model: str, episode_id: str, out: Path, sets: Sequence[str] = SETS,
               underlyings: Sequence[str] = ("BTC", "ETH"), n_random: int = 10,
               seed: int = 0,
               venues: Sequence[str] = ("standard", "fhs", "dynamic", "dynamic-no-apc"),
               depth_scale: float = DEFAULT_DEPTH_SCALE, n_accounts: int = 2000,
               progress: Progress | None = None,
               templates: list[BookTemplate] | None = None) -> dict[str, Any]:
    """Replay ``episode_id`` hour by hour through ``model``, shocks and cascades; write report.

    ``templates`` (a portfolio file's book) replace the book sets.
    """
    out.mkdir(parents=True, exist_ok=True)
    ep = episode(episode_id)
    daily = _path()
    if templates:
        underlyings = tuple(dict.fromkeys(u for t in templates for u in t.underlyings))
    hp = hourly_path(tuple(underlyings), ep.start, ep.end, daily=daily)
    templates = templates or _templates(sets, underlyings, n_random, seed)
    provider, info = make_provider(model)
    t0 = time.perf_counter()
    rp = replay(hp, templates, provider, seed=seed)
    if progress:
        progress(1, 3)
    row = daily.index_of(ep.start[:10]) - 1
    sig = _sigma_daily(daily, row)
    shocks = hypothetical_shocks(daily, templates, provider, row, SHOCKS, sig, seed=seed)
    if progress:
        progress(2, 3)
    book = order_book(depth=datasets.load_depth_snapshot(), scale=depth_scale)
    pop = Population.synthetic(n_accounts=n_accounts, seed=seed)
    casc = []
    for v in dict.fromkeys(venues):
        vp, _ = make_provider(v)
        rl, rs = venue_rates(vp, hp, "BTC")
        mmf = _mm_fraction(v)
        casc.append(simulate_cascade(v, hp.closes[:, hp.col("BTC")],
                                     [str(t) for t in hp.times], rl, rs, mmf, book, pop))
    if progress:
        progress(3, 3)
    elapsed = time.perf_counter() - t0
    _tables(out, "hourly", rp.hourly)
    _tables(out, "accounts", rp.accounts)
    _tables(out, "shocks", shocks)
    for c in casc:
        _tables(out, f"cascade_{c.venue}", c.timeline)
    result = {
        **info, "episode": ep.id, "episode_name": ep.name, "window": [ep.start, ep.end],
        "replay": rp.totals(), "elapsed_s": elapsed,
        "shocks": shocks.groupby("shock").agg(
            accounts=("account", "size"), median_loss_over_im=("loss_over_im", "median"),
            max_loss_over_im=("loss_over_im", "max"),
            loss_beyond_collateral_usd=("loss_beyond_collateral_usd", "sum")
        ).reset_index().to_dict(orient="records"),
        "cascade": {"depth_scale": depth_scale, "accounts": n_accounts,
                    "venues": [c.totals for c in casc]},
        "accounts": rp.accounts.to_dict(orient="records"),
    }
    _write_json(out / "summary.json", result)
    _stress_report(out, model, ep.id, rp, shocks, casc, result, hp)
    return result


def _mm_fraction(name: str) -> float:
    base = "dynamic" if name == "dynamic-no-apc" else name
    if base in ("ewma-var",):
        return 0.75
    m = model_class(base)()
    mm = m.params.get("maintenance", {}).get("mm_fraction") if isinstance(
        m.params.get("maintenance"), Mapping) else None
    if isinstance(mm, (int, float)):
        return float(mm)
    tiers = m.params.get("futures", {}).get("tiers") if isinstance(
        m.params.get("futures"), Mapping) else None
    if tiers:
        return float(tiers[0]["mm_rate"]) / float(tiers[0]["im_rate"])
    return 0.75


def _stress_report(out: Path, model: str, ep_id: str, rp: Any, shocks: pd.DataFrame,
                   casc: list[Any], result: Mapping[str, Any], hp: MarketPath) -> None:
    ep = EPISODES[ep_id]
    rep = Report(f"Stress replay of {model}: {ep.name}",
                 f"{ep.start} .. {ep.end} UTC, hourly; {ep.description}")
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    rep.heading("Method")
    rep.bullets([
        "Accounts = the backtest books struck at the first hour (option tenors counted from "
        "the window's end), collateral = IM x (1 + U(0, 1)), no top-ups.",
        "Every hour: IM and MM on data up to that hour; margin call while equity < IM; "
        "liquidation at the first hour with equity < MM, at that hour's close; loss beyond "
        "collateral = max(0, -equity).",
        "Hypothetical shocks are applied at the close of the day before the window.",
        f"Cascade: {result['cascade']['accounts']} synthetic perp accounts (70 % long, log-normal "
        "size) at the venue's maximum leverage less a U(0, 3) x IM cushion, liquidated into "
        "the shipped Binance BTCUSDT "
        f"book scaled by {result['cascade']['depth_scale']:g} (linear beyond its last level); "
        "permanent impact on the real hourly path.",
    ])
    rep.heading("Replay totals")
    rep.table(pd.DataFrame([result["replay"]]))
    und = "BTC" if "BTC" in hp.underlyings else hp.underlyings[0]
    rep.figure(figures.stress_margin_path({model: rp.hourly}, rp.price, und,
                                          figs / "margin_path.png",
                                          f"{model}: margin through {ep.name}"),
               "Total initial margin of all accounts each hour, liquidations marked, and the "
               "index price")
    rep.heading("Accounts")
    rep.table(rp.accounts.drop(columns=["active"]), max_rows=80)
    rep.heading("Hypothetical shocks")
    rep.figure(figures.shocks(shocks, figs / "shocks.png"), "Shock loss / initial margin")
    rep.table(pd.DataFrame(result["shocks"]))
    rep.heading("Liquidation cascade: static vs dynamic margin")
    rep.figure(figures.cascade([(c.venue, c.timeline) for c in casc], figs / "cascade.png",
                               f"Liquidation cascade through {ep.name} (BTC perps)"),
               "Price with each venue's liquidations and cumulative liquidated notional")
    rep.table(pd.DataFrame([c.totals for c in casc]))
    rep.write(out / "report.html")


# -- compare ---------------------------------------------------------------------------------
def run_compare(models: Sequence[str], out: Path, start: str | None = None,
                end: str | None = None, sets: Sequence[str] = SETS,
                underlyings: Sequence[str] = ("BTC", "ETH"), n_random: int = 20,
                seed: int = 0, horizon_days: int = 1, alpha: float = 0.01,
                progress: Progress | None = None,
                templates: list[BookTemplate] | None = None) -> dict[str, Any]:
    """Backtest every model on the same books and put them side by side.

    ``templates`` (a portfolio file's book) replace the book sets.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = _path()
    templates = templates or _templates(sets, underlyings, n_random, seed)
    cfg = BacktestConfig(horizon_days=horizon_days, alpha=alpha)
    summaries, cats, infos = [], [], []
    for j, m in enumerate(models):
        provider, info = make_provider(m)
        t0 = time.perf_counter()

        def tick(done: int, total: int, label: str = m) -> None:
            if progress:
                progress(done, total, label)  # type: ignore[call-arg]

        bt: ContinuousBacktest = walk_forward(path, templates, provider,
                                              backtest_config(info, horizon_days, alpha),
                                              start, end, False, tick)
        info["elapsed_s"] = time.perf_counter() - t0
        info["skipped_book_days"] = int(getattr(provider, "skipped", 0))
        infos.append(info)
        s = bt.summary()
        summaries.append(s)
        cats.append(category_summary(s))
        if progress:
            progress(j + 1, len(models))
    summ = pd.concat(summaries, ignore_index=True)
    cat = pd.concat(cats, ignore_index=True)
    overall = _overall(summ, infos)
    _tables(out, "summary", summ)
    _tables(out, "categories", cat)
    _tables(out, "models", overall)
    result = {"models": infos, "from": start, "to": end, "n_books": len(templates),
              "overall": overall.to_dict(orient="records"),
              "categories": cat.to_dict(orient="records")}
    _write_json(out / "summary.json", result)
    rep = Report("Model comparison", f"{len(models)} models, {len(templates)} books, "
                 f"{start or 'start'} .. {end or 'end'}")
    rep.heading("Method")
    rep.bullets(_method_notes(cfg))
    rep.heading("Models side by side")
    rep.table(overall)
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    rep.figure(figures.compare_models(cat, figs / "compare.png"),
               "Exception rate against average margin / notional, per model and category")
    rep.figure(figures.traffic_light(summ, figs / "traffic_light.png", alpha),
               "Basel zones of the books per model and category")
    rep.heading("By category")
    rep.table(cat, max_rows=200)
    rep.write(out / "report.html")
    return result


def _overall(summ: pd.DataFrame, infos: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model; books the model refused (unsupported instruments) are counted."""
    rows = []
    for info in infos:
        m = info["model"]
        g = summ[(summ["model"] == m) & (summ["n_obs"] > 0)]
        if g.empty:
            rows.append({"model": m, "books": 0, "book_days": 0,
                         "refused_book_days": info.get("skipped_book_days", 0)})
            continue
        z = g["zone_headline"].value_counts()
        rows.append({
            "model": m, "books": len(g), "book_days": int(g["n_obs"].sum()),
            "refused_book_days": info.get("skipped_book_days", 0),
            "exceptions": int(g["n_exceptions"].sum()),
            "exception_rate": float(g["n_exceptions"].sum() / g["n_obs"].sum()),
            "books_green": int(z.get("green", 0)), "books_yellow": int(z.get("yellow", 0)),
            "books_red": int(z.get("red", 0)),
            "zone_window": ("whole window (< 250 days)" if int(g["n_obs"].max()) < 250
                            else "last 250 days"),
            "worst_zone_full_period": "red" if (g["zone"] == "red").any() else
            "yellow" if (g["zone"] == "yellow").any() else "green",
            "avg_margin_to_notional": float(g["avg_margin_to_notional"].mean()),
            "median_peak_to_trough": float(g["peak_to_trough"].median()),
            "median_max_5d_ratio": float(g["max_5d_ratio"].median()),
            "median_max_30d_ratio": float(g["max_30d_ratio"].median()),
        })
    return pd.DataFrame(rows)
