"""Shared CLI plumbing: error handling (exit code 2 on bad input) and output helpers."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from marginproof.errors import InputError, MarginproofError

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
err_console = Console(stderr=True)

EXIT_BAD_INPUT = 2


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn bad input into one line on stderr and exit code 2 (no traceback)."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            err_console.print(f"[bold red]error[/]: {exc.field}: {exc.message}", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except MarginproofError as exc:
            err_console.print(f"[bold red]error[/]: {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper


def small_book(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a one-shot command on a small book without the large-batch machinery: its small
    pricing batches take the numpy twin (:func:`marginproof.pricing.dispatch.small_batches`),
    so the process does not import and load numba for a handful of options, and Monte Carlo
    scenario sets are kept on disk between runs (:mod:`marginproof.storage.scenario_store`)."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from marginproof.config.params import cache_dir
        from marginproof.models._history import scenario_store
        from marginproof.pricing.dispatch import small_batches
        from marginproof.storage.scenario_store import DiskScenarioStore

        with small_batches(), scenario_store(DiskScenarioStore(cache_dir() / "scenarios")):
            return fn(*args, **kwargs)

    return wrapper


def print_json(obj: Any, undefined_as_null: bool = False) -> None:
    """Machine-readable output on stdout (plain, no colour), always valid JSON.

    A non-finite number is never printed (``Infinity`` and ``NaN`` are not JSON): by default it
    is an error naming the field (exit code 2); statistics that can be undefined (a rate over
    no observation) pass ``undefined_as_null`` and print ``null``.
    """
    from marginproof.config.limits import all_finite

    bad = all_finite(obj)
    if bad and not undefined_as_null:
        raise MarginproofError(f"{bad}: the result is not a finite number; nothing printed")
    if bad:
        obj = _nulls(obj)
    sys.stdout.write(json.dumps(obj, indent=2, default=str, allow_nan=False) + "\n")


def _nulls(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _nulls(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nulls(v) for v in obj]
    return obj
