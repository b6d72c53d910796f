"""``demo``: margin of a realistic book from the shipped data under every model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from marginproof.cli.common import console, handle_errors
from marginproof.demo import DEMO_DATE
from marginproof.errors import MarginproofError


def _k(x: float) -> str:
    """Compact USD: 22.9k, 1.2M."""
    a = abs(x)
    return f"{x / 1e6:,.2f}M" if a >= 1e6 else f"{x / 1e3:,.1f}k" if a >= 1e3 else f"{x:,.0f}"


def _engine_stage(db: Path, accounts: int, model: str) -> None:
    from marginproof.demo.engine import run_engine_demo

    console.print(f"\n[bold]Real-time engine on embedded defaults[/]: replaying the shipped "
                  f"hourly BTC/ETH prices of {DEMO_DATE} for {accounts:,} accounts under "
                  f"'{model}' (SQLite log {db}, in-process bus) ...")
    s = run_engine_demo(db, DEMO_DATE, accounts, model)
    console.print(f"log entries {s.log_entries:,} (ticks {s.ticks}), processed {s.processed:,}; "
                  f"events on the bus: " + ", ".join(f"{k} {v:,}"
                                                     for k, v in sorted(s.events.items())))
    console.print(f"model {s.model} (params {s.params_hash[:12]}...), live risk-factor state "
                  f"{s.factor_state_hash[:12]}... after {s.recalibrations} recalibrations "
                  "(hourly EWMA vol samples, valuation steps, scenario draws)")
    calls = s.calls or []
    if calls:
        ct = Table(title=f"Margin calls and liquidations ({len(calls)}), USD: IM = core + APC + "
                   "stress + add-ons", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
        cols = ("account", "event", "IM", "equity", "core", "APC", "stress", "add-ons")
        rows = []
        for call in calls[:12]:
            comp: dict[str, float] = dict(call["components"])
            add = sum(comp.get(k, 0.0) for k in ("liquidity", "concentration", "funding"))
            ev = "call" if call["type"] == "margin_call" else "liq."
            rows.append((call["account_id"], f"{ev}/{str(call['cause']).split('+')[0]}",
                         _k(call["initial_margin"]), _k(call["equity"]),
                         _k(comp.get("core", 0.0)), _k(comp.get("apc_adjustment", 0.0)),
                         _k(comp.get("stress_floor", 0.0)), _k(add)))
        for j, col in enumerate(cols):  # every cell whole: no "..." cut on 80 columns
            ct.add_column(col, justify="left" if j < 2 else "right", no_wrap=True,
                          min_width=max([len(col)] + [len(r[j]) for r in rows]))
        for r in rows:
            ct.add_row(*r)
        console.print(ct)
        if len(calls) > 12:
            console.print(f"... and {len(calls) - 12} more")
    t = Table(title=f"Most utilised accounts after the replay ({s.model}, USD)")
    for c in ("account", "IM", "MM", "equity", "IM / equity", "status"):
        t.add_column(c, justify="left" if c in ("account", "status") else "right")
    for r in s.top_accounts:
        t.add_row(r["account_id"], f"{r['initial_margin']:,.0f}",
                  f"{r['maintenance_margin']:,.0f}", f"{(r['equity'] or 0):,.0f}",
                  f"{r['utilisation']:.2f}", str(r["status"]))
    console.print(t)
    console.print(f"margin-history digest (replayable, bit for bit): {s.history_digest[:16]}...")


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def demo(quote_date: str = typer.Option(DEMO_DATE, help="Shipped chain date"),
             engine: bool = typer.Option(True, help="Also run the real-time engine stage"),
             accounts: int = typer.Option(2_000, help="Synthetic accounts in the engine stage"),
             db: Annotated[Path, typer.Option(help="SQLite file (recreated)")] = Path(
                 "out/demo.sqlite"),
             engine_model: str = typer.Option("dynamic", "--engine-model",
                                              help="Model in force in the engine stage"),
             ) -> None:
        """Build a book from the shipped Deribit chain and print its margin under each model."""
        from marginproof.demo.book import demo_account, with_perp_marks_at_index
        from marginproof.models.registry import available_models, get_model, model_class
        acct, market = demo_account(quote_date)
        market = with_perp_marks_at_index(market)
        console.print(f"[bold]marginproof demo[/]: Deribit BTC chain of {quote_date} "
                      f"(market time {market.timestamp.isoformat()}), "
                      f"BTC index {market.index('BTC'):,.2f}, ETH {market.index('ETH'):,.2f}")
        pt = Table(title=f"Book of {acct.account_id}")
        pt.add_column("instrument")
        pt.add_column("quantity", justify="right")
        for p in acct.portfolio.positions:
            pt.add_row(p.instrument.name, f"{p.quantity:,.2f}")
        console.print(pt)
        t = Table(title="Margin under every model (embedded defaults)")
        for c in ("model", "ccy", "initial margin", "maintenance margin", "worst scenario"):
            t.add_column(c, justify="right" if "margin" in c else "left")
        for name in available_models():
            try:
                r = get_model(name).margin(acct.portfolio, market)
            except MarginproofError as exc:
                msg = str(exc) if len(str(exc)) <= 70 else str(exc)[:69] + "…"
                t.add_row(name, "", "n/a", "n/a", f"[yellow]refused: {msg}[/]")
                continue
            ws = r.worst_scenario
            t.add_row(name, r.currency, f"{r.initial_margin:,.2f}",
                      f"{r.maintenance_margin:,.2f}", "-" if ws is None else ws.label)
        console.print(t)
        if engine:
            model_class(engine_model)  # an unknown name exits 2 before any work
            _engine_stage(db, accounts, engine_model)
