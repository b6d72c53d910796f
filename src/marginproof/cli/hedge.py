"""``hedge``: the cheapest trade that cuts an account's margin (``docs/hedge.md``)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from marginproof.cli.common import console, handle_errors, print_json

if TYPE_CHECKING:
    from marginproof.hedge.result import HedgeResult


def _fmt(x: float | None, nd: int = 2) -> str:
    if x is None:
        return "-"
    return f"{x:,.{nd}f}" if abs(x) >= 1 else f"{x:.6g}"


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send anything native code prints on file descriptor 1 (HiGHS's branch and bound can)
    to stderr while the search runs, so ``--json`` stays parseable."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no real file descriptor (captured output in tests)
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def render(r: HedgeResult) -> None:
    """Summary, trades and how the search went, as tables."""
    colour = {"suggested": "green", "target_unreachable": "yellow"}.get(r.status, "cyan")
    t = Table(title=f"cheapest hedge under {r.model} ({r.objective.replace('_', ' ')})")
    t.add_column("")
    t.add_column("value", justify="right")
    t.add_row("status", f"[{colour}]{r.status}[/]")
    t.add_row("initial margin before", f"{_fmt(r.im_before)} {r.currency}"
              + ("" if r.currency == "USD" else f" ({_fmt(r.im_before_usd)} USD)"))
    t.add_row("initial margin after (real model)", f"{_fmt(r.im_after)} {r.currency}"
              + ("" if r.currency == "USD" else f" ({_fmt(r.im_after_usd)} USD)"))
    t.add_row("reduction", f"{_fmt(r.im_reduction_usd)} USD")
    t.add_row("cost (spread + fees)", f"{_fmt(r.cost_usd)} USD ({_fmt(r.spread_usd)} + "
              f"{_fmt(r.fee_usd)})")
    if r.equity_before_usd is not None:
        t.add_row("equity before / after", f"{_fmt(r.equity_before_usd)} / "
                  f"{_fmt(r.equity_after_usd)} USD")
    if r.target is not None:
        t.add_row("target", f"{r.target['kind']} {_fmt(r.target['value'])} "
                  f"(met: {'yes' if r.target_met else 'no'})")
    console.print(t)
    console.print(r.reason, highlight=False)
    if r.trades:
        tr = Table(title="trades (venue names and units)")
        for c in ("instrument", "trade", "price", "cost USD", "limit"):
            tr.add_column(c, justify="left" if c == "instrument" else "right", no_wrap=True)
        sources: dict[str, int] = {}
        for x in r.trades:
            n = sources.setdefault(x.quote_source, len(sources) + 1)
            tr.add_row(x.instrument, f"{x.side} {abs(x.quantity):,.6g}", f"{x.price:.5g} [{n}]",
                       _fmt(x.cost_usd), _fmt(x.max_quantity))
        console.print(tr)
        for src, n in sources.items():
            console.print(f"[dim][{n}] quote: {src}[/]", highlight=False)
    s = r.solver
    gap = s.get("gap_vs_bound")
    console.print(f"[dim]solver: {s.get('name')}, {s.get('method', '-')}"
                  + (f", gap to the bound {100 * gap:.2f} %" if gap is not None else "")
                  + f"; {s.get('real_margin_calls', 0)} real-model margin calls; "
                  f"{r.timings_s.get('total_s', 0.0):.2f} s; {r.candidates.get('n')} candidates"
                  + (f" ({len(r.candidates.get('excluded', {}))} left out)"
                     if r.candidates.get("excluded") else "") + "[/]")
    for note in r.surrogate.get("notes", []):
        console.print(f"[dim]- {note}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    """Attach the command to ``app``."""

    @app.command()
    @handle_errors
    def hedge(
        portfolio: Annotated[Path, typer.Option("--portfolio", "-p", help="Portfolio JSON file")],
        market: Annotated[Path, typer.Option("--market", "-m", help="Market snapshot JSON file")],
        model: Annotated[str, typer.Option("--model", help="grid, fhs, mc, dynamic, deribit-pm "
                                           "or derive-pmrm")] = "grid",
        config: Annotated[Path | None, typer.Option(
            "--config", help="Model parameter file (TOML)")] = None,
        target: Annotated[str | None, typer.Option(
            "--target", help="Reach a target at least cost: 'equity' (IM <= equity), "
            "'excess=<USD>' (equity - IM >= USD) or 'im=<USD>'; default: minimise IM + cost")
        ] = None,
        max_instruments: Annotated[int | None, typer.Option(
            "--max-instruments", "-k", min=1, max=10, help="Trade at most k instruments")] = None,
        quotes: Annotated[Path | None, typer.Option(
            "--quotes", help="Quotes JSON (bid/ask/sizes per instrument, docs/hedge.md)")] = None,
        candidates: Annotated[str | None, typer.Option(
            "--candidates", help="Comma-separated instruments to consider (default: perps, "
            "futures and options on the account's underlyings)")] = None,
        max_options: Annotated[int | None, typer.Option(
            "--max-options", min=0, help="Option candidates, nearest the money first")] = None,
        venue: Annotated[str | None, typer.Option(
            "--venue", help="Fee schedule: deribit or derive (default by model)")] = None,
        time_limit: Annotated[float | None, typer.Option(
            "--time-limit", min=0.1, max=600.0, help="Solver budget, seconds")] = None,
        hedge_config: Annotated[Path | None, typer.Option(
            "--hedge-config", help="Fees, lots and quote model (default configs/hedge.toml)")
        ] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Machine-readable JSON")] = False,
    ) -> None:
        """The trade that cuts the margin the most for the least cost, verified with the model."""
        from marginproof.hedge.sources import load_config, load_quotes, parse_target, run_hedge
        from marginproof.io.formats import load_market, load_portfolio
        from marginproof.models.registry import get_model

        acct = load_portfolio(portfolio)
        mkt = load_market(market)
        m = get_model(model, config)
        names = [n.strip() for n in candidates.split(",") if n.strip()] if candidates else None
        with _quiet_stdout():
            r = run_hedge(m, acct.portfolio, acct.collateral, mkt, target=parse_target(target),
                          max_instruments=max_instruments,
                          quotes=load_quotes(quotes) if quotes is not None else None,
                          names=names, max_options=max_options, venue=venue,
                          time_limit_s=time_limit, config=load_config(hedge_config))
        if json_out:
            print_json(r.to_dict())
        else:
            render(r)
