"""``calibrate``, ``surface``, ``fhs`` and ``apc`` commands (dynamic margin models)."""

from __future__ import annotations

import hashlib
import math
import subprocess
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from marginproof.cli.common import console, handle_errors, print_json
from marginproof.config.params import load_toml, repo_root
from marginproof.errors import InputError

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output")]

LAMBDAS = (0.90, 0.92, 0.94, 0.96, 0.97, 0.98, 0.99)
SCALINGS = (0.90, 0.95, 1.00, 1.05, 1.10, 1.15, 1.20, 1.30)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(repo_root()), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=False)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _grid(text: str | None, default: tuple[float, ...], name: str) -> tuple[float, ...]:
    if text is None:
        return default
    try:
        vals = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise InputError(name, f"comma-separated numbers expected, got {text!r}") from exc
    if not vals:
        raise InputError(name, "empty grid")
    return vals


def register(app: typer.Typer) -> None:
    """Attach the commands to ``app``."""

    @app.command()
    @handle_errors
    def calibrate(
        out: Annotated[Path | None, typer.Option(
            help="Output parameter file (new; default out/calibration/dynamic-calibrated-"
                 "<UTC time>.toml; a file tracked by git is refused)")] = None,
        config: Annotated[Path | None, typer.Option(help="Base parameter file")] = None,
        first_test_year: Annotated[int, typer.Option(help="First walk-forward test year")] = 2021,
        lambdas: Annotated[str | None, typer.Option(help="EWMA decays, e.g. 0.99,0.999")] = None,
        scalings: Annotated[str | None, typer.Option(help="Scaling grid, e.g. 0.9,1")] = None,
        weights: Annotated[str | None, typer.Option(
            help="Stressed weights (0 or >= 0.25)")] = None,
        floors: Annotated[str | None, typer.Option(help="10-year floor: 0,1")] = None,
        fractions: Annotated[str | None, typer.Option(help="Stress-floor fractions")] = None,
        releases: Annotated[str | None, typer.Option(help="Release buffers, e.g. 0,0.25")] = None,
        portfolios: Annotated[str, typer.Option(
            help="Book sets")] = "singles,random,adversarial,hedged,inverse",
        underlyings: Annotated[str, typer.Option(help="Underlyings")] = "BTC,ETH",
        n_random: Annotated[int, typer.Option(help="Random option books")] = 20,
        stride: Annotated[int, typer.Option(
            help="Slow reference models (mc, deribit-pm, derive-*) margined every n-th day")] = 5,
        references: Annotated[str, typer.Option(
            help="Efficiency references")] = "grid,deribit-pm,deribit-standard,derive-pmrm,"
                                             "derive-srm",
        frontier_models: Annotated[str, typer.Option(
            "--frontier-models", help="Further models on the frontier ('none' for none)")] =
            "standard,fhs,mc,ewma-var",
        start: Annotated[str | None, typer.Option(help="First as-of day (default all)")] = None,
        end: Annotated[str | None, typer.Option(help="Last as-of day (default all)")] = None,
        cache: Annotated[Path, typer.Option(help="Walk-forward cache directory")] =
            Path("out/cache/calibrate"),
        json_out: JsonOpt = False,
    ) -> None:
        """Tune `dynamic` to the adequacy, efficiency and counter-cyclicality targets by
        out-of-sample walk-forward, write a new parameter file, print the evidence and the
        cost-coverage frontier of every model."""
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        from marginproof.cli.common import err_console
        from marginproof.reports.calibrate import DEFAULT_GRID, run_calibration

        def nums(text: str | None, key: str) -> tuple[float, ...]:
            return _grid(text, tuple(float(x) for x in DEFAULT_GRID[key]), key)

        grid: dict[str, tuple[Any, ...]] = {
            "lambdas": nums(lambdas, "lambdas"), "scalings": nums(scalings, "scalings"),
            "weights": nums(weights, "weights"), "fractions": nums(fractions, "fractions"),
            "releases": nums(releases, "releases"),
            "floors": tuple(bool(x) for x in nums(floors, "floors"))}
        for w in grid["weights"]:
            if 0.0 < w < 0.25:
                raise InputError("weights", "EMIR Art. 28(1)(b) needs >= 0.25 (or 0)")
        for lam in grid["lambdas"]:
            if not 0.5 <= lam <= 0.9999:
                raise InputError("lambdas", f"must be in [0.5, 0.9999], got {lam}")

        def split(text: str) -> tuple[str, ...]:
            return tuple(x.strip() for x in text.split(",") if x.strip() and x.strip() != "none")

        with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                      console=err_console, transient=True, disable=json_out) as prog:
            tasks: dict[str, Any] = {}

            def tick(label: str, done: int, total: int) -> None:
                if label not in tasks:
                    tasks[label] = prog.add_task(label, total=total)
                prog.update(tasks[label], completed=done, total=total)

            res = run_calibration(out, config, grid, first_test_year, split(portfolios),
                                  split(underlyings), n_random, 0, stride, split(references),
                                  split(frontier_models), cache, tick, None, start, end)
        if json_out:
            print_json(res)
            return
        print_calibration(res)

    _register_rest(app)


def _pct(x: Any, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else \
        f"{100 * float(x):.{digits}f} %"


def _ratio(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.2f}"


def print_calibration(res: dict[str, Any]) -> None:
    """Rich tables of a :func:`marginproof.reports.calibrate.run_calibration` summary."""
    t = Table(title="walk-forward folds: parameters chosen on the years before, judged on the "
                    "year")
    for c in ("test year", "chosen (lambda, scaling c, stressed weight w, 10y floor, stress "
              "fraction f, release buffer)", "train loss"):
        t.add_column(c)
    for f in res["folds"]:
        t.add_row(str(f["test_year"]), f["chosen"], f"{f['train_loss']:.3f}")
    console.print(t)
    oos, full = res["out_of_sample"], res["full_sample"]
    t = Table(title="targets (out of sample = the folds' test years; full = chosen parameters "
                    "on every day)")
    for c in ("target", "out of sample", "full sample"):
        t.add_column(c, justify="left" if c == "target" else "right")

    def mark(d: dict[str, Any], k: str) -> str:
        return "[green]met[/]" if d["checks"].get(k) else "[red]not met[/]"

    t.add_row("Kupiec not rejected (>= 80 % of books)",
              f"{_pct(oos['kupiec_ok_share'], 0)} {mark(oos, 'kupiec_share')}",
              f"{_pct(full['kupiec_ok_share'], 0)} {mark(full, 'kupiec_share')}")
    t.add_row("Basel zone of every category (pooled)",
              " ".join(f"{k}:{v['zone']}" for k, v in oos["categories"].items()),
              " ".join(f"{k}:{v['zone']}" for k, v in full["categories"].items()))
    t.add_row("Acerbi-Szekely Z2 > -0.70 (worst category)",
              f"{min(v['z2'] for v in oos['categories'].values()):.2f} {mark(oos, 'es_z2')}",
              f"{min(v['z2'] for v in full['categories'].values()):.2f} {mark(full, 'es_z2')}")
    t.add_row("exception rate (1 % expected)", _pct(oos["exception_rate"]),
              _pct(full["exception_rate"]))
    t.add_row("cost: margin / gross notional", _pct(oos["cost"]), _pct(full["cost"]))
    for k in full["cost_ratios"]:
        t.add_row(f"cost / {k} (<= 0.7)",
                  f"{_ratio(oos['cost_ratios'].get(k))} {mark(oos, 'cost_vs_' + k)}",
                  f"{_ratio(full['cost_ratios'].get(k))} {mark(full, 'cost_vs_' + k)}")
    wo = {w["name"]: w for w in oos["windows"]}
    for w in full["windows"]:
        o = wo.get(w["name"])
        t.add_row(f"{w['name']}: median peak-to-trough (<= 1.5)",
                  _ratio(o["median_peak_to_trough"]) if o else "in-sample only",
                  _ratio(w["median_peak_to_trough"]))
        t.add_row(f"{w['name']}: median largest 5-day rise (<= 1.25, EMIR 28(1)(a) buffer)",
                  _ratio(o["median_max_5d_ratio"]) if o else "in-sample only",
                  _ratio(w["median_max_5d_ratio"]))
    console.print(t)
    b = res["binding_shares"]
    console.print("share of book-days each term binds (chosen parameters, full sample): "
                  + ", ".join(f"{k} {_pct(b[k], 1)}" for k in
                              ("core", "stressed_weight", "floor_10y", "stress_floor",
                               "buffer_held", "addons")))
    t = Table(title="cost-coverage frontier (every model on the same books; dynamic: the "
                    "cheapest candidate for each Kupiec pass share)")
    for c in ("model", "cost", "exceptions", "Kupiec ok", "worst window p2t", "note"):
        t.add_column(c, justify="left" if c in ("model", "note") else "right")
    for r in sorted(res["frontier"], key=lambda r: (r["cost"] or 0.0)):
        note = r.get("label", "")
        if r.get("chosen"):
            note = "[bold]chosen[/] " + note
        if r.get("stride", 1) > 1:
            note = f"every {r['stride']}th day " + note
        if r.get("met"):
            note += " (all targets)"
        t.add_row(r["model"], _pct(r["cost"]), _pct(r["exception_rate"]),
                  _pct(r["kupiec_ok_share"], 0), _ratio(r["median_peak_to_trough_max_window"]),
                  note)
    console.print(t)
    for line in res["binding_constraints"]:
        console.print(f"[yellow]binding:[/] {line}")
    console.print(f"chosen: {res['chosen']}")
    console.print(f"wrote {res['written']} (and {res['written'][:-5]}.json)")


def _register_rest(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def surface(
        date: Annotated[str | None, typer.Option(help="Quote date (default: every chain)")] = None,
        points_out: Annotated[Path | None, typer.Option(
            help="CSV of fitted vs market vols of every quote")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Fit SVI per expiry and SSVI per chain to the shipped Deribit chains; fit quality."""
        import pandas as pd

        from marginproof.io import datasets
        from marginproof.surfaces.chain import fit_chain, fitted_vs_market

        chains = datasets.load_option_chains()
        dates = [date] if date else sorted(chains["quote_date"].astype(str).unique())
        rows: list[dict[str, Any]] = []
        points = []
        for d in dates:
            sub = chains[chains["quote_date"].astype(str) == d]
            if sub.empty:
                raise InputError("date", f"no shipped chain for {d!r}")
            fit = fit_chain(sub)
            q = fit.quality()
            s = fit.ssvi
            rows.append({
                "quote_date": d, "expiries": len(fit.svi), "points": int(q["n_points"].sum()),
                "svi_rmse_vol_points_median": float(q["svi_rmse_vol_points"].median()),
                "svi_rmse_vol_points_max": float(q["svi_rmse_vol_points"].max()),
                "svi_butterfly_free": int(q["svi_butterfly_free"].sum()),
                "ssvi_rmse_vol_points": s.rmse_vol_points, "ssvi_rho": s.rho,
                "ssvi_eta": s.eta, "ssvi_gamma": s.gamma,
                "ssvi_arbitrage_free": s.checks.arbitrage_free, "ssvi_g_min": s.g_min,
                "skipped_expiries": len(fit.skipped_expiries),
                "by_expiry": q.to_dict(orient="records"),
            })
            if points_out is not None:
                points.append(fitted_vs_market(fit))
        if points_out is not None:
            pd.concat(points, ignore_index=True).to_csv(points_out, index=False)
        if json_out:
            print_json({"chains": rows})
            return
        t = Table(title="SVI / SSVI fit quality (RMSE in vol points)")
        for c in ("date", "expiries", "points", "SVI med", "SVI max", "SVI g>=0", "SSVI",
                  "SSVI arb-free", "rho", "eta", "gamma"):
            t.add_column(c, justify="right")
        for r in rows:
            t.add_row(r["quote_date"], str(r["expiries"]), str(r["points"]),
                      f"{r['svi_rmse_vol_points_median']:.2f}",
                      f"{r['svi_rmse_vol_points_max']:.2f}",
                      f"{r['svi_butterfly_free']}/{r['expiries']}",
                      f"{r['ssvi_rmse_vol_points']:.2f}", str(r["ssvi_arbitrage_free"]),
                      f"{r['ssvi_rho']:.3f}", f"{r['ssvi_eta']:.3f}", f"{r['ssvi_gamma']:.3f}")
        console.print(t)
        if points_out is not None:
            console.print(f"wrote {points_out}")

    @app.command()
    @handle_errors
    def fhs(
        symbol: Annotated[str, typer.Option(help="Binance daily symbol, e.g. BTCUSDT")],
        date: Annotated[str, typer.Option(help="As-of day T (UTC date)")],
        quantity: Annotated[float, typer.Option(help="Coins, negative = short")] = 1.0,
        lam: Annotated[float, typer.Option("--lambda", help="EWMA decay")] = 0.94,
        window: Annotated[int, typer.Option(help="Scenario window")] = 500,
        horizon_days: Annotated[float, typer.Option(help="MPOR (sqrt(h) scaling)")] = 1.0,
        json_out: JsonOpt = False,
    ) -> None:
        """FHS VaR 0.99 / ES 0.975 of a spot position as of a day (spec section 4)."""
        from marginproof.feeds.history import fhs_asof

        est = fhs_asof(symbol, date, quantity, lam=lam, window=window,
                       horizon_days=horizon_days)
        out = {"symbol": symbol, "date": date, "quantity": quantity, "lambda": lam,
               "window": window, "horizon_days": horizon_days, "sigma_next": est.sigma_next,
               "var_0.99": est.var, "es_0.975": est.es, "worst_loss": est.worst_loss}
        if json_out:
            print_json(out)
            return
        for k, v in out.items():
            console.print(f"{k:>14}: {v}")

    @app.command()
    @handle_errors
    def apc(
        underlying: Annotated[str, typer.Option(help="BTC, ETH or SOL")] = "BTC",
        start: Annotated[str, typer.Option(help="First day")] = "2022-01-01",
        end: Annotated[str, typer.Option(help="Last day")] = "2022-12-31",
        quantity: Annotated[float, typer.Option(help="Coins of spot, negative = short")] = 1.0,
        config: Annotated[Path | None, typer.Option(help="Dynamic parameter file")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Procyclicality of the base margin and of every APC tool on a spot position."""
        import numpy as np

        from marginproof.apc import apc_report, buffer_static, buffer_with_release
        from marginproof.feeds.history import market_on, shipped_history
        from marginproof.instruments.portfolio import Portfolio
        from marginproof.instruments.resolved import resolve
        from marginproof.models.dynamic import DynamicModel
        from marginproof.risk.history import asof_date, to_day

        model = DynamicModel(load_toml(config) if config else None)
        hist = shipped_history()
        days = np.arange(to_day(start), to_day(end) + np.timedelta64(1, "D"))
        if days.size < 31:
            raise InputError("start/end", "need at least 31 days")
        pf = Portfolio.of({f"{underlying}_USDT": quantity})
        base, stressed, floor = [], [], []
        for d in days:
            mkt = market_on(hist, d, [underlying])
            book = resolve(pf, mkt)
            core = model.core_model.core_risk(book, asof_date(mkt.timestamp))
            comp = model.apc_components(book, core, asof_date(mkt.timestamp))
            base.append(comp["base"])
            stressed.append(comp.get("stressed_weighted", comp["base"]))
            floor.append(max(comp["base"], comp.get("floor_10y", 0.0)))
        b = np.array(base)
        rb = float(model.apc.get("release_buffer", 0.25))
        tools = {
            "buffer_static_25": buffer_static(b, 0.25),
            f"buffer_release_{rb:g}": buffer_with_release(b, rb, 0.0),
            f"buffer_release_{rb:g}_speed_5pct": buffer_with_release(b, rb, 0.05),
            "stressed_weight_25": np.array(stressed),
            "floor_10y": np.array(floor),
        }
        rep = apc_report(b, tools, dates=days)
        if json_out:
            print_json({"underlying": underlying, "quantity": quantity, "start": start,
                        "end": end, "metrics": rep})
            return
        t = Table(title=f"procyclicality, {quantity:g} {underlying} spot, {start}..{end} "
                        "(ratios; increases in USD)")
        short = {"base": "base", "buffer_static_25": "static 25%",
                 f"buffer_release_{rb:g}": "release", f"buffer_release_{rb:g}_speed_5pct":
                 "release+5%/d", "stressed_weight_25": "stress 25%", "floor_10y": "10y floor"}
        t.add_column("metric")
        for name in rep:
            t.add_column(short.get(name, name), justify="right")
        for metric in next(iter(rep.values())):
            t.add_row(metric, *(f"{rep[n][metric]:,.0f}" if "increase" in metric
                                else f"{rep[n][metric]:.3f}" for n in rep))
        console.print(t)
