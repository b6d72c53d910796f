"""``marginproof forecast`` (and ``forecast-backtest``): the next hours of an account's margin."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from marginproof.cli.common import console, handle_errors, print_json
from marginproof.config.params import config_dir, load_toml

PortfolioOpt = Annotated[Path, typer.Option("--portfolio", "-p", help="Portfolio JSON file")]
MarketOpt = Annotated[Path, typer.Option("--market", "-m", help="Market snapshot JSON file")]


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if pct:
        return f"{x:.2%}"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.4g}"


def render(r: Any) -> None:
    """Tables of a :class:`ForecastResult`."""
    from marginproof.reports.forecast import summary_rows

    h = float(r.hours[-1])
    t = Table(title=f"{r.model} margin forecast, next {h:g} h ({r.details.get('n_paths')} "
                    f"paths, seed {r.seed}, {r.method})")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("initial margin now", _fmt(r.im0))
    t.add_row("maintenance margin now", _fmt(r.mm0))
    t.add_row("equity now", _fmt(r.equity0))
    t.add_row("status now", r.status0)
    t.add_row(f"P(margin call within {h:g} h)", _fmt(r.p_call, True))
    t.add_row(f"P(liquidation within {h:g} h)", _fmt(r.p_liquidation, True))
    t.add_row(f"ES{r.es_conf:g} of excess (equity - MM) at {h:g} h", _fmt(r.excess_es))
    t.add_row("warning", "YES" if r.warn else "no")
    t.add_row("dynamics", str(r.dynamics))
    t.add_row("params hash", r.params_hash[:16] + "...")
    t.add_row("forecast hash", r.forecast_hash[:16] + "...")
    console.print(t)
    df = summary_rows(r)
    q = Table(title="by hour (USD; probabilities cumulative)")
    for c in df.columns:
        q.add_column(c, justify="right")
    from marginproof.reports.figures import _usd

    for _, row in df.iterrows():
        q.add_row(*(f"{row[c]:g}" if c == "hour" else _fmt(float(row[c]), True)
                    if c.startswith("P(") else _usd(float(row[c])) for c in df.columns))
    console.print(q)
    if r.call_levels:
        lt = Table(title="call levels: move of one underlying (others follow their conditional "
                         "expectation) at which the status changes")
        for col in ("underlying", "index", "call down", "call up", "liquidation down",
                    "liquidation up"):
            lt.add_column(col, justify="right")
        for lv in r.call_levels:
            def mv(m: float | None, lv: Any = lv) -> str:
                return "-" if m is None else f"{m:+.1%} ({lv.price(m):,.0f})"
            lt.add_row(lv.underlying, _fmt(lv.index), mv(lv.call_down), mv(lv.call_up),
                       mv(lv.liquidation_down), mv(lv.liquidation_up))
        console.print(lt)
        console.print("- : the status does not change for any move of that underlying from "
                      "-95 % to +300 %")


def register(app: typer.Typer) -> None:
    """Attach the commands to ``app``."""

    @app.command()
    @handle_errors
    def forecast(
        portfolio: PortfolioOpt, market: MarketOpt,
        model: Annotated[str, typer.Option("--model", help="Model or preset name")] = "grid",
        config: Annotated[Path | None, typer.Option("--config", help="Parameter file")] = None,
        horizon: Annotated[float, typer.Option(help="Horizon in hours")] = 24.0,
        step: Annotated[float, typer.Option(help="Step in hours")] = 1.0,
        paths: Annotated[int, typer.Option(help="Simulated paths")] = 2000,
        seed: Annotated[int, typer.Option(help="Seed (same seed, same result)")] = 0,
        method: Annotated[str, typer.Option(help="auto, exact or proxy")] = "auto",
        threshold: Annotated[float, typer.Option(help="Warning threshold on P(call)")] = 0.05,
        levels: Annotated[bool, typer.Option(help="Compute the call levels")] = True,
        haircuts: Annotated[Path | None, typer.Option(
            help="Collateral haircut file (default configs/collateral.toml)")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="JSON on stdout")] = False,
        out: Annotated[Path | None, typer.Option(
            "--out", help="Directory for the fan chart (forecast.png) and forecast.html")] = None,
    ) -> None:
        """Margin forecast: quantiles of IM, equity and excess by hour, probability of a
        margin call and of liquidation, ES of the excess, call levels."""
        from marginproof.forecast import ForecastConfig
        from marginproof.forecast import forecast as run
        from marginproof.io.formats import load_market, load_portfolio
        from marginproof.models.registry import get_model

        acct = load_portfolio(portfolio)
        mkt = load_market(market)
        mdl = get_model(model, config)
        table = load_toml(haircuts or config_dir() / "collateral.toml")
        hc = {str(k): float(v) for k, v in table["haircuts"].items()}
        cfg = ForecastConfig(horizon_hours=horizon, step_hours=step, n_paths=paths, seed=seed,
                             method=method, warn_threshold=threshold, call_levels=levels)
        r = run(mdl, acct.portfolio, mkt, cfg, collateral=acct.collateral, haircuts=hc)
        written: dict[str, str] = {}
        if out is not None:
            from marginproof.reports.forecast import forecast_page

            png, page = forecast_page(r, out)
            written = {"png": str(png), "html": str(page)}
        if json_out:
            d = r.to_dict()
            d["account_id"] = acct.account_id
            if written:
                d["files"] = written
            print_json(d)
            return
        render(r)
        for k, v in written.items():
            console.print(f"wrote {k}: {v}")


    @app.command("forecast-backtest")
    @handle_errors
    def forecast_backtest_cmd(
        model: Annotated[str, typer.Option("--model", help="Model or preset name")] = "grid",
        config: Annotated[Path | None, typer.Option("--config", help="Parameter file")] = None,
        start: Annotated[str, typer.Option(help="First origin day (UTC)")] = "2022-01-01",
        end: Annotated[str, typer.Option(help="Last day of the hourly path (UTC)")] =
            "2022-12-31",
        every: Annotated[int, typer.Option(
            help="Hours between origins (121: rotates hours and weekdays)")] = 121,
        hour: Annotated[int, typer.Option(help="UTC hour of the first origin")] = 8,
        paths: Annotated[int, typer.Option(help="Simulated paths per forecast")] = 500,
        seed: Annotated[int, typer.Option(help="Seed of the first origin (+1 per origin)")] = 0,
        threshold: Annotated[float, typer.Option(help="Warning threshold on P(call)")] = 0.05,
        sets: Annotated[str, typer.Option(help="Portfolio sets, comma-separated")] =
            "singles,hedged,adversarial,inverse",
        json_out: Annotated[bool, typer.Option("--json", help="JSON on stdout")] = False,
        out: Annotated[Path | None, typer.Option(
            "--out", help="Directory for the reliability diagram, page and records")] = None,
    ) -> None:
        """Backtest the forecast on shipped hourly BTC/ETH history: predicted P(call within
        24 h) vs realised calls of the backtest portfolios (Brier score, reliability,
        share of calls warned >= 1 h ahead)."""
        from marginproof.forecast.backtest import forecast_backtest, origins
        from marginproof.models.registry import get_model
        from marginproof.reports.history import hourly_path

        mdl = get_model(model, config)
        path = hourly_path(("BTC", "ETH"), start, f"{end}T23:00")
        rows = origins(path, every, 24, first=hour)
        res = forecast_backtest(mdl, path, rows, tuple(s for s in sets.split(",") if s),
                                n_paths=paths, seed=seed, warn_threshold=threshold)
        summ = res.summary()
        written: dict[str, str] = {}
        if out is not None:
            from marginproof.reports.forecast import backtest_page

            png, page = backtest_page(res, out)
            written = {"png": str(png), "html": str(page)}
        if json_out:
            print_json({**summ, "reliability": res.reliability.to_dict(orient="records"),
                        "files": written})
            return
        t = Table(title=f"forecast backtest, {summ['model']}, {summ['n_origins']} origins")
        t.add_column("measure")
        t.add_column("value", justify="right")
        for k in ("n_forecasts", "n_calls", "base_rate", "mean_predicted", "brier",
                  "brier_base_rate", "brier_skill", "warned_share"):
            v = summ[k]
            t.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
        console.print(t)
        rt = Table(title="reliability (realised frequency per bin of predicted P(call))")
        for c in res.reliability.columns:
            rt.add_column(c, justify="right")
        for _, row in res.reliability.iterrows():
            rt.add_row(*(str(row[c]) if c in ("bin", "n") else f"{row[c]:.3f}"
                         for c in res.reliability.columns))
        console.print(rt)
        for k, v in written.items():
            console.print(f"wrote {k}: {v}")
