"""``margin``, ``whatif``, ``compare``, ``explain``, ``schema`` and ``models`` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from marginproof.cli.common import console, err_console, handle_errors, print_json, small_book
from marginproof.config.limits import all_finite
from marginproof.config.params import config_dir, load_toml
from marginproof.errors import MarginproofError

if TYPE_CHECKING:  # the model stack (numba, pandas, scipy) is imported by the command that runs
    from marginproof.models.result import MarginResult

PortfolioOpt = Annotated[Path, typer.Option("--portfolio", "-p", help="Portfolio JSON file")]
MarketOpt = Annotated[Path, typer.Option("--market", "-m", help="Market snapshot JSON file")]
ModelOpt = Annotated[str, typer.Option("--model", help="Model or preset name")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Parameter file (TOML)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output")]


def _fmt(x: float) -> str:
    return f"{x:,.2f}" if abs(x) >= 1 else f"{x:.6g}"


def _signed(x: float) -> str:
    return ("+" if x > 0 else "") + _fmt(x)


def parse_trades(items: list[str]) -> dict[str, float]:
    """``["NAME=QTY", ...]`` to ``{name: summed quantity}``; a malformed item is an input error
    naming it (``--trade[i]``)."""
    import math

    from marginproof.errors import InputError
    out: dict[str, float] = {}
    for i, item in enumerate(items):
        name, sep, qty = item.rpartition("=")
        try:
            q = float(qty)
        except ValueError:
            q = math.nan
        if not sep or not name.strip() or not math.isfinite(q) or q == 0.0:
            raise InputError(f"--trade[{i}]", f"expected INSTRUMENT=QUANTITY with a finite, "
                             f"non-zero quantity, got {item!r}")
        out[name.strip()] = out.get(name.strip(), 0.0) + q
    return out


def print_warnings(r: MarginResult) -> None:
    """The result's ``details["warnings"]`` (stale history, preset caveats), one line each on
    stderr, so a table on stdout stays clean."""
    for line in r.details.get("warnings", ()) if r.details else ():
        err_console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)


def render_result(r: MarginResult) -> None:
    """Readable table of one result."""
    t = Table(title=f"{r.model} margin ({r.currency})", show_header=True)
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("initial margin", _fmt(r.initial_margin))
    t.add_row("maintenance margin", _fmt(r.maintenance_margin))
    for k, v in r.components.items():
        t.add_row(f"  {k}", _fmt(float(v)))
    ws = r.worst_scenario
    t.add_row("worst scenario", "-" if ws is None else f"{ws.label} (loss {_fmt(ws.loss)})")
    t.add_row("market time", r.market_timestamp.isoformat())
    t.add_row("params hash", r.params_hash[:16] + "...")
    console.print(t)
    for line in r.details.get("assumptions", ()) if r.details else ():
        console.print(f"[dim]{line}[/]")
    print_warnings(r)
    g = Table(title="Greeks by underlying (USD)")
    for c in ("underlying", "delta (coin)", "delta (USD)", "gamma", "vega/vol pt",
              "theta/day"):
        g.add_column(c, justify="right")
    for und, d in r.greeks.by_underlying().items():
        g.add_row(und, _fmt(d["delta_coin"]), _fmt(d["delta_usd"]),
                  f"{d['gamma_coin_per_usd']:.4g}", _fmt(d["vega_usd_per_vol_point"]),
                  _fmt(d["theta_usd_per_day"]))
    console.print(g)


def result_json(r: MarginResult) -> dict[str, Any]:
    d = r.to_dict()
    g = r.greeks.to_dict()
    d["greeks"] = g
    return d


def register(app: typer.Typer) -> None:
    """Attach the commands to ``app``."""

    @app.command()
    @handle_errors
    @small_book
    def margin(portfolio: PortfolioOpt, market: MarketOpt, model: ModelOpt = "grid",
               config: ConfigOpt = None, json_out: JsonOpt = False,
               haircuts: Annotated[Path | None, typer.Option(
                   help="Collateral haircut file (default configs/collateral.toml)")] = None,
               ) -> None:
        """Margin of a portfolio under one model or preset."""
        from marginproof.instruments.equity import account_equity
        from marginproof.instruments.portfolio import CollateralPolicy
        from marginproof.io.formats import load_market, load_portfolio
        from marginproof.models.registry import get_model
        acct = load_portfolio(portfolio)
        mkt = load_market(market)
        r = get_model(model, config).margin(acct.portfolio, mkt)
        out = result_json(r)
        # Derive's margin balance already counts collateral (MtM + cash): no second netting
        if acct.collateral and r.currency == "USD" and "derive_im_signed" not in r.details:
            table = load_toml(haircuts or config_dir() / "collateral.toml")
            policy = CollateralPolicy({str(k): float(v) for k, v in table["haircuts"].items()})
            eq = account_equity(acct.collateral, acct.portfolio, mkt, policy)
            out["collateral_value_usd"] = eq.collateral_usd
            out["position_value_usd"] = eq.positions_usd
            out["equity_usd"] = eq.total_usd
            out["excess_over_initial_margin_usd"] = eq.total_usd - r.initial_margin
            out["excess_over_maintenance_margin_usd"] = eq.total_usd - r.maintenance_margin
        bad = all_finite(out)
        if bad:  # never published, in a table or in JSON
            raise MarginproofError(f"{bad}: the result is not a finite number; nothing printed")
        if json_out:
            print_json(out)
        else:
            render_result(r)
            if "collateral_value_usd" in out:
                console.print(f"equity: {_fmt(out['equity_usd'])} USD = collateral after "
                              f"haircuts {_fmt(out['collateral_value_usd'])} + spot and option "
                              f"positions {_fmt(out['position_value_usd'])}; excess over IM: "
                              f"{_fmt(out['excess_over_initial_margin_usd'])} USD")

    @app.command()
    @handle_errors
    @small_book
    def whatif(portfolio: PortfolioOpt, market: MarketOpt,
               trade: Annotated[list[str], typer.Option(
                   "--trade", "-t", help="Trade to add, INSTRUMENT=QUANTITY (signed; repeat "
                   "for several)")],
               model: ModelOpt = "grid", config: ConfigOpt = None, json_out: JsonOpt = False,
               haircuts: Annotated[Path | None, typer.Option(
                   help="Collateral haircut file (default configs/collateral.toml)")] = None,
               ) -> None:
        """Margin before and after adding trades to a book: IM, MM, their change, equity and
        excess (nothing is stored)."""
        from marginproof.instruments.portfolio import CollateralPolicy
        from marginproof.io.formats import load_market, load_portfolio
        from marginproof.models.registry import get_model
        from marginproof.models.whatif import what_if, with_trades
        trades = parse_trades(trade)
        acct = load_portfolio(portfolio)
        mkt = load_market(market)
        table = load_toml(haircuts or config_dir() / "collateral.toml")
        policy = CollateralPolicy({str(k): float(v) for k, v in table["haircuts"].items()})
        before = acct.portfolio
        after = with_trades(before, trades)
        w = what_if(get_model(model, config), before, after, mkt, policy)
        r = w.after
        ws = r.worst_scenario
        out = {"portfolio": acct.account_id, "model": r.model, "params_hash": r.params_hash,
               "market_timestamp": r.market_timestamp.isoformat(), "currency": r.currency,
               "trades": trades,
               "before": {"initial_margin": w.before_initial_margin,
                          "maintenance_margin": w.before_maintenance_margin},
               "after": {"initial_margin": r.initial_margin,
                         "maintenance_margin": r.maintenance_margin},
               "delta_initial_margin": w.delta_initial_margin,
               "delta_maintenance_margin": w.delta_maintenance_margin,
               "worst_scenario_after": None if ws is None else ws.label,
               "collateral_value_usd": w.collateral_value_usd, "equity_usd": w.equity_usd,
               "excess_over_initial_margin_usd": w.excess_over_initial_margin_usd,
               "excess_over_maintenance_margin_usd": w.excess_over_maintenance_margin_usd}
        if r.details.get("warnings"):
            out["warnings"] = list(r.details["warnings"])
        bad = all_finite(out)
        if bad:  # never published, in a table or in JSON
            raise MarginproofError(f"{bad}: the result is not a finite number; nothing printed")
        if json_out:
            print_json(out)
            return
        print_warnings(r)
        t = Table(title=f"What-if on {acct.account_id} under {r.model} ({r.currency})")
        for c in ("measure", "before", "after", "change"):
            t.add_column(c, justify="left" if c == "measure" else "right")
        t.add_row("initial margin", _fmt(w.before_initial_margin), _fmt(r.initial_margin),
                  _signed(w.delta_initial_margin))
        t.add_row("maintenance margin", _fmt(w.before_maintenance_margin),
                  _fmt(r.maintenance_margin), _signed(w.delta_maintenance_margin))
        console.print(t)
        console.print("trades: " + ", ".join(f"{n} {_signed(q)}" for n, q in trades.items()),
                      highlight=False, soft_wrap=True)
        console.print(f"worst scenario after: {'-' if ws is None else ws.label}; market time "
                      f"{r.market_timestamp.isoformat()}; params hash {r.params_hash[:16]}...",
                      highlight=False, soft_wrap=True)
        excess = ("" if w.excess_over_initial_margin_usd is None else
                  f"; excess over IM {_fmt(w.excess_over_initial_margin_usd)} USD, over MM "
                  f"{_fmt(w.excess_over_maintenance_margin_usd or 0.0)} USD")
        console.print(f"after the trades: equity {_fmt(w.equity_usd)} USD (collateral after "
                      f"haircuts {_fmt(w.collateral_value_usd)}; trades valued at mark, no "
                      f"premium or fee cash){excess}", highlight=False, soft_wrap=True)

    @app.command()
    @handle_errors
    @small_book
    def compare(portfolio: PortfolioOpt, market: MarketOpt, json_out: JsonOpt = False) -> None:
        """IM and MM under every model and preset, with each one's worst scenario."""
        from marginproof.io.formats import load_market, load_portfolio
        from marginproof.models.registry import available_models, get_model
        acct = load_portfolio(portfolio)
        mkt = load_market(market)
        rows: list[dict[str, Any]] = []
        for name in available_models():
            try:
                r = get_model(name).margin(acct.portfolio, mkt)
            except MarginproofError as exc:  # a preset may not cover this book
                rows.append({"model": name, "error": str(exc)})
                continue
            if all_finite([r.initial_margin, r.maintenance_margin]):
                rows.append({"model": name, "error": "the result is not a finite number"})
                continue
            ws = r.worst_scenario
            rows.append({"model": name, "currency": r.currency,
                         "initial_margin": r.initial_margin,
                         "maintenance_margin": r.maintenance_margin,
                         "worst_scenario": None if ws is None else ws.label,
                         "worst_loss": None if ws is None else ws.loss,
                         "params_hash": r.params_hash})
            if r.details.get("warnings"):
                rows[-1]["warnings"] = list(r.details["warnings"])
        if json_out:
            print_json({"portfolio": acct.account_id, "market_timestamp":
                        mkt.timestamp.isoformat(), "models": rows})
            return
        t = Table(title=f"Margin of {acct.account_id} under every model")
        for c in ("model", "ccy", "IM", "MM", "worst scenario"):
            t.add_column(c, justify="right" if c in ("IM", "MM") else "left")
        for row in rows:
            if "error" not in row:
                t.add_row(row["model"], row["currency"], _fmt(row["initial_margin"]),
                          _fmt(row["maintenance_margin"]), row["worst_scenario"] or "-")
        console.print(t)
        # a model or preset that cannot margin this book (an instrument it does not list, a mark
        # it needs) has no figure: it is named below the table with the reason, never a row of n/a
        for row in rows:
            if "error" in row:
                console.print(f"[yellow]{row['model']}[/]: no margin for this book: "
                              f"{row['error']}", highlight=False, soft_wrap=True)
            for line in row.get("warnings", ()):
                who = "" if line.startswith(f"{row['model']}:") else f"{row['model']}: "
                err_console.print(f"[yellow]warning:[/] {who}{line}", highlight=False,
                                  soft_wrap=True)

    @app.command()
    @handle_errors
    @small_book
    def explain(portfolio: PortfolioOpt, market: MarketOpt, model: ModelOpt = "grid",
                config: ConfigOpt = None, json_out: JsonOpt = False) -> None:
        """Why the margin is what it is: components, binding scenario, risk matrix."""
        from marginproof.io.formats import load_market, load_portfolio
        from marginproof.models.registry import get_model
        acct = load_portfolio(portfolio)
        mkt = load_market(market)
        r = get_model(model, config).margin(acct.portfolio, mkt)
        if json_out:
            print_json(r.to_dict(include_scenarios=True))
            return
        render_result(r)
        comps = {k: float(v) for k, v in r.components.items()}
        if comps:
            binding = max(comps, key=lambda k: comps[k])
            console.print(f"binding component: [bold]{binding}[/] = {_fmt(comps[binding])}")
        rm = r.details.get("risk_matrix")
        if isinstance(rm, dict) and "values" in rm:
            t = Table(title=rm.get("title", "risk matrix (P&L, gains positive)"))
            t.add_column(rm.get("row_label", "move"))
            for c in rm["columns"]:
                t.add_column(str(c), justify="right")
            for lab, vals in zip(rm["rows"], rm["values"], strict=True):
                t.add_row(str(lab), *(_fmt(float(v)) for v in vals))
            console.print(t)
        elif len(r.scenario_labels):
            t = Table(title="scenario P&L (portfolio, gains positive)")
            t.add_column("scenario")
            t.add_column("P&L", justify="right")
            tot = r.scenario_pnl.sum(axis=1)
            for lab, v in zip(r.scenario_labels, tot, strict=True):
                t.add_row(lab, _fmt(float(v)))
            console.print(t)
        c = Table(title="contributions by position")
        c.add_column("position")
        c.add_column("contribution", justify="right")
        for name, v in zip(r.position_names, r.contributions, strict=True):
            c.add_row(name, _fmt(float(v)))
        console.print(c)

    @app.command()
    @handle_errors
    def schema(out: Annotated[Path, typer.Option(help="Directory to write to")] = Path("schemas"),
               ) -> None:
        """Write the JSON Schemas of the portfolio and market formats."""
        from marginproof.io.formats import json_schemas
        out.mkdir(parents=True, exist_ok=True)
        for fname, sch in json_schemas().items():
            (out / fname).write_text(json.dumps(sch, indent=2) + "\n")
            console.print(f"wrote {out / fname}")

    @app.command(name="models")
    def list_models() -> None:
        """List every model and preset with a one-line description (and the backtest-only
        variants): every name the other commands accept."""
        from marginproof.models.registry import BACKTEST_VARIANTS, DESCRIPTIONS, available_models
        width = max(len(n) for n in (*available_models(), *BACKTEST_VARIANTS))
        for name in available_models():
            console.print(f"{name:<{width}}  {DESCRIPTIONS.get(name, '')}", highlight=False,
                          soft_wrap=True)
        for name, text in BACKTEST_VARIANTS.items():
            console.print(f"{name:<{width}}  {text}", highlight=False, soft_wrap=True)
