"""``marginproof backtest | stress | compare-models``: evidence reports (HTML, PNG, JSON)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from marginproof.cli.common import console, err_console, handle_errors, print_json
from marginproof.errors import InputError

OutOpt = Annotated[Path, typer.Option("--out", help="Output directory (created)")]
FromOpt = Annotated[str | None, typer.Option("--from", help="First as-of day (YYYY-MM-DD)")]
ToOpt = Annotated[str | None, typer.Option("--to", help="Last as-of day (YYYY-MM-DD)")]
SetsOpt = Annotated[str, typer.Option(
    "--portfolios", help="Comma-separated sets: singles,random,adversarial,hedged")]
UndOpt = Annotated[str, typer.Option("--underlyings", help="Comma-separated: BTC,ETH,SOL")]
RandOpt = Annotated[int, typer.Option("--n-random", help="Number of random option books")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the random books")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary JSON on stdout")]


def _split(s: str, field: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in s.split(",") if x.strip())
    if not items:
        raise InputError(field, "must list at least one item")
    return items


@contextmanager
def _threads() -> Iterator[None]:
    # The backtest calls many small numba kernels; on 2 shared cores the parallel thread pool's
    # per-call overhead dominates (measured ~10x), so reports run the kernels single-threaded.
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


@contextmanager
def _bar(label: str, quiet: bool) -> Iterator[Callable[..., None]]:
    """A rich progress bar; ``update(done, total, label=None)`` (a label opens its own bar)."""
    if quiet:
        yield lambda done, total, label=None: None
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err_console, transient=True) as prog:
        tasks: dict[str | None, Any] = {None: prog.add_task(label, total=None)}

        def update(done: int, total: int, label: str | None = None) -> None:
            if label not in tasks:
                tasks[label] = prog.add_task(str(label), total=total)
            prog.update(tasks[label], completed=done, total=total)

        yield update


PortfolioOpt = Annotated[Path | None, typer.Option(
    "--portfolio", help="Backtest this book (a portfolio file, docs/formats.md) instead of the "
                        "book sets: re-struck daily in USD notional, moneyness and tenor")]
AsOfOpt = Annotated[str | None, typer.Option(
    "--as-of", help="Day the --portfolio book is read at (default: 2 days before its first "
                    "expiry, or the last shipped day)")]


def _user_book(portfolio: Path | None, as_of: str | None, quiet: bool) -> Any:
    if portfolio is None:
        return None
    from marginproof.reports.run import portfolio_book

    templates, notes, day = portfolio_book(portfolio, as_of)
    if not quiet:
        err_console.print(f"{templates[0].name}: read at the close of {day}, re-struck daily:")
        for n in notes:
            err_console.print(f"  {n}")
    return templates


def register(app: typer.Typer) -> None:
    """Attach the commands to ``app``."""

    @app.command()
    @handle_errors
    def backtest(model: Annotated[str, typer.Option("--model", help="Model or preset")],
                 out: OutOpt, date_from: FromOpt = None, date_to: ToOpt = None,
                 portfolios: SetsOpt = "singles,random,adversarial,hedged",
                 underlyings: UndOpt = "BTC,ETH", n_random: RandOpt = 20, seed: SeedOpt = 0,
                 horizon_days: Annotated[int, typer.Option(
                     "--horizon-days", help="Margin period of risk (days)")] = 1,
                 portfolio: PortfolioOpt = None, as_of: AsOfOpt = None,
                 config: Annotated[Path | None, typer.Option(
                     "--config", help="Parameter file of the model")] = None,
                 json_out: JsonOpt = False) -> None:
        """Walk-forward backtest over the shipped history: report.html, PNGs, JSON, Parquet."""
        from marginproof.reports.run import run_backtest

        book = _user_book(portfolio, as_of, json_out)
        with _threads(), _bar(f"backtest {model}", json_out) as progress:
            res = run_backtest(model, out, date_from, date_to, _split(portfolios, "portfolios"),
                               _split(underlyings, "underlyings"), n_random, seed,
                               horizon_days, progress=progress, templates=book, config=config)
        if json_out:
            print_json({k: v for k, v in res.items() if k != "books"}, undefined_as_null=True)
            return
        console.print(f"[bold]{model}[/] {res['from']}..{res['to']}: {res['n_books']} books, "
                      f"{res['book_days']} book-days, {res['exceptions']} exceptions, "
                      f"{res['elapsed_s']:.0f} s")
        console.print(f"  {'category':<12} {'exc %':>6}  g/y/r   margin/notional")
        for c in res["categories"]:
            zones = f"{c['books_green']}/{c['books_yellow']}/{c['books_red']}"
            console.print(f"  {c['category']:<12} {100 * c['exception_rate']:6.2f}  {zones:<7} "
                          f"{100 * c['avg_margin_to_notional']:6.2f} %")
        console.print(f"report: {out / 'report.html'}")

    @app.command()
    @handle_errors
    def stress(model: Annotated[str, typer.Option("--model", help="Model or preset")],
               episode: Annotated[str, typer.Option(
                   "--episode", help="covid-2020, may-2021, luna-2022, ftx-2022, yen-2024")],
               out: OutOpt, portfolios: SetsOpt = "singles,random,adversarial,hedged",
               underlyings: UndOpt = "BTC,ETH", n_random: RandOpt = 10, seed: SeedOpt = 0,
               venues: Annotated[str, typer.Option(
                   "--venues", help="Cascade venues (models)")] =
               "standard,fhs,dynamic,dynamic-no-apc",
               depth_scale: Annotated[float, typer.Option(
                   "--depth-scale", help="Order-book depth multiplier for the cascade")] = 0.1,
               n_accounts: Annotated[int, typer.Option(
                   "--accounts", help="Synthetic accounts in the cascade")] = 2000,
               portfolio: PortfolioOpt = None, as_of: AsOfOpt = None,
               json_out: JsonOpt = False) -> None:
        """Replay a crash hour by hour, hypothetical shocks and a liquidation cascade."""
        from marginproof.reports.run import run_stress

        if not depth_scale > 0:
            raise InputError("depth-scale", "must be positive")
        book = _user_book(portfolio, as_of, json_out)
        with _threads(), _bar(f"stress {model} {episode}", json_out) as progress:
            res = run_stress(model, episode, out, _split(portfolios, "portfolios"),
                             _split(underlyings, "underlyings"), n_random, seed,
                             _split(venues, "venues"), depth_scale, n_accounts,
                             progress=progress, templates=book)
        if json_out:
            print_json({k: v for k, v in res.items() if k != "accounts"},
                       undefined_as_null=True)
            return
        r = res["replay"]
        console.print(f"[bold]{model}[/] {res['episode_name']}: {r['accounts']} accounts, "
                      f"{r['margin_calls']} calls, {r['liquidations']} liquidated, "
                      f"{r['loss_beyond_collateral_usd']:,.0f} USD beyond collateral")
        console.print(f"  {'cascade venue':<16} {'liquidated':>10} {'USD':>13} {'impact':>7} "
                      f"{'bad debt USD':>13}")
        for v in res["cascade"]["venues"]:
            console.print(f"  {v['venue']:<16} {v['liquidated_accounts']:>10} "
                          f"{v['liquidated_usd']:>13,.0f} {v['max_price_impact_pct']:6.1f}% "
                          f"{v['bad_debt_usd']:>13,.0f}")
        console.print(f"report: {out / 'report.html'}")

    @app.command("compare-models")
    @handle_errors
    def compare_models(out: OutOpt,
                       models: Annotated[str, typer.Option(
                           "--models", help="Comma-separated models (default: all)")] = "",
                       date_from: Annotated[str, typer.Option(
                           "--from", help="First as-of day")] = "2022-01-01",
                       date_to: Annotated[str, typer.Option(
                           "--to", help="Last as-of day")] = "2022-12-31",
                       portfolios: SetsOpt = "singles,random,adversarial,hedged",
                       underlyings: UndOpt = "BTC,ETH", n_random: RandOpt = 20,
                       seed: SeedOpt = 0, portfolio: PortfolioOpt = None,
                       as_of: AsOfOpt = None, json_out: JsonOpt = False) -> None:
        """Every model and preset side by side on the same books (default window: 2022).

        The full history for every model takes hours (mc and the per-book presets); pass
        --from/--to to choose the window.
        """
        from marginproof.reports.run import model_names, run_compare

        names = _split(models, "models") if models else model_names()
        book = _user_book(portfolio, as_of, json_out)
        with _threads(), _bar("compare-models", json_out) as progress:
            res = run_compare(names, out, date_from, date_to, _split(portfolios, "portfolios"),
                              _split(underlyings, "underlyings"), n_random, seed,
                              progress=progress, templates=book)
        if json_out:
            print_json(res, undefined_as_null=True)
            return
        for o in res["overall"]:
            if not o.get("books"):
                console.print(f"{o['model']:<18} no book evaluable (refused "
                              f"{o.get('refused_book_days', 0)} book-days)")
                continue
            zones = f"{o['books_green']}/{o['books_yellow']}/{o['books_red']}"
            console.print(f"{o['model']:<18} exc {100 * o['exception_rate']:5.2f} %  g/y/r "
                          f"{zones:<8} margin/notional {100 * o['avg_margin_to_notional']:5.2f} %"
                          f"  p2t {o['median_peak_to_trough']:.2f}")
        console.print(f"report: {out / 'report.html'}")
