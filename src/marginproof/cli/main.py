"""Entry point of the ``marginproof`` command.

Each command group lives in its own module with a ``register(app)`` function; add a module to
``_COMMAND_MODULES`` to add its commands.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="marginproof",
    help="Dynamic, provable margin engine for crypto derivatives.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
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
