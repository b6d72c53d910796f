"""Entry point of the ``marginproof`` command.

Each command group lives in its own module with a ``register(app)`` function; add a module to
``_COMMAND_MODULES`` to add its commands.
"""

from __future__ import annotations

import importlib

import typer
from typer._click import Context, HelpFormatter
from typer.core import TyperGroup


class _Group(TyperGroup):
    """Lists each command with its whole one-line summary, wrapped (click cuts it with '...')."""

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=1_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(
    cls=_Group,
    name="marginproof",
    help="Dynamic, provable margin engine for crypto derivatives.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # plain click help: rich's help panels import markdown-it (~0.1 s of a 0.3 s budget for
    # ``--help``) and print flags as ``--json <bool>``; command output still uses rich tables
    rich_markup_mode=None,
)

_COMMAND_MODULES = (
    "marginproof.cli.margin",
    "marginproof.cli.demo",
    "marginproof.cli.proofs",
    "marginproof.cli.dynamic",
    "marginproof.cli.serve",
    "marginproof.cli.reports",
    "marginproof.cli.forecast",
    "marginproof.cli.hedge",
)

for _mod in _COMMAND_MODULES:
    importlib.import_module(_mod).register(app)


if __name__ == "__main__":  # pragma: no cover
    app()
