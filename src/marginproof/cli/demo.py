"""``demo``: margin of a realistic book from the shipped data under every model."""

from __future__ import annotations

import typer
from rich.table import Table

from marginproof.cli.common import console, handle_errors
from marginproof.demo import DEMO_DATE, demo_account
from marginproof.errors import MarginproofError
from marginproof.models.registry import available_models, get_model


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def demo(quote_date: str = typer.Option(DEMO_DATE, help="Shipped chain date")) -> None:
        """Build a book from the shipped Deribit chain and print its margin under each model."""
        acct, market = demo_account(quote_date)
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
                t.add_row(name, "", "n/a", "n/a", f"[yellow]{exc}[/]")
                continue
            ws = r.worst_scenario
            t.add_row(name, r.currency, f"{r.initial_margin:,.2f}",
                      f"{r.maintenance_margin:,.2f}", "-" if ws is None else ws.label)
        console.print(t)
