"""Shared CLI plumbing: error handling (exit code 2 on bad input) and output helpers."""

from __future__ import annotations

import json
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


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout (plain, no colour)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
