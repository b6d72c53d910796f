"""``calibrate``, ``surface``, ``fhs`` and ``apc`` commands (dynamic margin models)."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from marginproof.cli.common import console, handle_errors, print_json
from marginproof.config.params import config_dir, load_toml, params_hash, repo_root
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


def run_calibration(end: str, first_test_year: int, base_config: Path,
                    lambdas: tuple[float, ...] = LAMBDAS,
                    scalings: tuple[float, ...] = SCALINGS) -> dict[str, Any]:
    """Calibrate decay, scaling and liquidity constants; the full parameter file as a dict."""
    from marginproof.addons.liquidity import calibrate_impact, option_half_spread_vol_points
    from marginproof.calibration import calibrate_fhs
    from marginproof.feeds.history import load_market_history
    from marginproof.io import datasets
    from marginproof.risk.ewma import ewma_sigma
    from marginproof.risk.history import to_day

    end_day = to_day(end)
    hist = load_market_history()
    params = load_toml(base_config)
    risk = params["risk"]
    window = int(params["fhs"]["window"])
    mpor = float(risk["mpor_days"])
    if abs(mpor - round(mpor)) > 1e-9:
        raise InputError("risk.mpor_days", "calibration needs an integer MPOR")
    series = {u: s.upto(end_day).log_returns() for u, s in hist.closes.items()}
    res = calibrate_fhs(series, lambdas, scalings, end_day, first_test_year, window,
                        float(risk["conf_var"]), float(risk["conf_es"]), int(round(mpor)))
    # liquidity: Y from the book walk, ADV as the model defines it (30-day spot mean)
    book = datasets.load_depth_snapshot()
    bids = book[book["side"] == "bid"].sort_values("price", ascending=False)
    asks = book[book["side"] == "ask"].sort_values("price")
    tick = datasets.load_bookticker()
    mid = (tick["ask_price"] + tick["bid_price"]) / 2.0
    spread = float(((tick["ask_price"] - tick["bid_price"]) / mid).median())
    book_day = np.datetime64("2024-08-08", "D")
    _, r_btc = hist.closes["BTC"].upto(book_day).log_returns()
    sigma_d = float(ewma_sigma(r_btc, float(params["fhs"]["lambda"]))[-1])
    adv_days = int(params["addons"]["liquidity"].get("adv_days", 30))
    adv = float(np.mean(hist.volumes["BTC"].upto(book_day).values[-adv_days:]))
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

    out = dict(params)
    out["fhs"] = {**params["fhs"], "lambda": res.lam}
    out["mc"] = {**params["mc"], "lambda": res.lam}
    out["risk"] = {**risk, "scaling": res.scaling}
    liq = dict(params["addons"]["liquidity"])
    liq["y"] = round(imp.y, 4)
    liq["option_half_spread_vol_points"] = round(half_vp, 3)
    sp = dict(liq.get("spread_rel", {}))
    sp["BTC"] = float(f"{spread:.3g}")
    liq["spread_rel"] = sp
    out["addons"] = {**params["addons"], "liquidity": liq}
    data_files = [
        "spot/binance_spot_1d_from_1h.csv.gz",
        "microstructure/binance_usdm_btcusdt_2024-08-08T2354_depth_snapshot.csv.gz",
        "microstructure/binance_usdm_btcusdt_2024-08-08T2354_bookticker.csv.gz",
        "options/deribit_btc_options_eod_optionsdx_2021_2022_subset.csv.gz",
    ]
    out["meta"] = {**params.get("meta", {}), "version": f"{params['meta']['version']}-calibrated",
                   "source": "marginproof calibrate (see [provenance])"}
    out["provenance"] = {
        "command": f"marginproof calibrate --end {end} --first-test-year {first_test_year}"
                   f" --lambdas {','.join(map(str, lambdas))}"
                   f" --scalings {','.join(map(str, scalings))}",
        "base_config": str(base_config.relative_to(repo_root()))
        if base_config.is_relative_to(repo_root()) else str(base_config),
        "base_config_params_hash": params_hash(params),
        "git_commit": _git_commit(),
        "generated_utc": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "data_sha256": {p: _sha256(datasets.data_dir() / p) for p in data_files},
        "calibration_end": str(end_day),
        "method": "FHS walk-forward by calendar year; FZ0 loss (Patton-Ziegel-Chen 2019) of "
                  "unit long and short BTC/ETH/SOL, pooled; no look-ahead",
        "lambda_grid": list(lambdas), "scaling_grid": list(scalings),
        "n_obs": res.n_obs, "exception_rates": dict(res.exception_rates),
        "best_fz0": res.loss_table[(res.lam, res.scaling)],
        "folds": [{"test_year": fo.test_year, "lambda": fo.lam, "scaling": fo.scaling,
                   "train_obs": fo.train_obs, "test_obs": fo.test_obs,
                   "fz0_test": fo.fz0_test,
                   "es_level_exception_rate": fo.es_level_exception_rate,
                   "var99_exception_rate": fo.var99_exception_rate} for fo in res.folds],
        "liquidity": {"book_date": "2024-08-08", "sigma_daily": sigma_d, "adv_btc": adv,
                      "median_spread_rel": spread, "y": imp.y, "r2": imp.r2,
                      "option_half_spread_vol_points": half_vp},
    }
    return out


def register(app: typer.Typer) -> None:
    """Attach the commands to ``app``."""

    @app.command()
    @handle_errors
    def calibrate(
        end: Annotated[str, typer.Option(help="Last day of data used (UTC date)")] = "2026-05-15",
        first_test_year: Annotated[int, typer.Option(help="First walk-forward test year")] = 2021,
        config: Annotated[Path | None, typer.Option(help="Base parameter file")] = None,
        out: Annotated[Path | None, typer.Option(help="Output parameter file")] = None,
        lambdas: Annotated[str | None, typer.Option(help="EWMA decay grid, e.g. 0.94,0.97")] = None,
        scalings: Annotated[str | None, typer.Option(help="Scaling grid, e.g. 1,1.05")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Choose EWMA decay and confidence scaling by walk-forward backtest loss; write a
        parameter file with provenance (default configs/calibrated/dynamic.toml)."""
        import tomli_w

        base = config or config_dir() / "models" / "dynamic.toml"
        target = out or config_dir() / "calibrated" / "dynamic.toml"
        params = run_calibration(end, first_test_year, base, _grid(lambdas, LAMBDAS, "lambdas"),
                                 _grid(scalings, SCALINGS, "scalings"))
        target.parent.mkdir(parents=True, exist_ok=True)
        header = ("# Calibrated by `marginproof calibrate`; see [provenance]. Load with\n"
                  "# `marginproof margin --model dynamic --config "
                  f"{target.name if out else 'configs/calibrated/dynamic.toml'}`.\n")
        target.write_text(header + tomli_w.dumps(params))
        prov = params["provenance"]
        if json_out:
            print_json({"written": str(target), "lambda": params["fhs"]["lambda"],
                        "scaling": params["risk"]["scaling"], "provenance": prov})
            return
        t = Table(title="walk-forward folds (out of sample)")
        for c in ("year", "lambda", "scaling", "train obs", "test obs", "FZ0", "ES-level exc.",
                  "VaR99 exc."):
            t.add_column(c, justify="right")
        for fo in prov["folds"]:
            t.add_row(str(fo["test_year"]), f"{fo['lambda']:.2f}", f"{fo['scaling']:.2f}",
                      str(fo["train_obs"]), str(fo["test_obs"]), f"{fo['fz0_test']:.4f}",
                      f"{fo['es_level_exception_rate']:.2%}", f"{fo['var99_exception_rate']:.2%}")
        console.print(t)
        console.print(f"chosen: lambda = {params['fhs']['lambda']}, scaling = "
                      f"{params['risk']['scaling']} (FZ0 {prov['best_fz0']:.4f} on "
                      f"{prov['n_obs']} obs); liquidity Y = {params['addons']['liquidity']['y']}")
        console.print(f"wrote {target}")

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
