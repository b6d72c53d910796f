"""Storage adapters: the append-only input log, margin history, API keys and parameter changes.

One repository interface (:class:`marginproof.storage.base.Repository`), two implementations:
embedded SQLite in WAL mode (default) and PostgreSQL through psycopg 3 (production). Both run
the same versioned migrations (:mod:`marginproof.storage.migrations`) and the same tests.
:mod:`marginproof.storage.scenario_store` keeps scenario sets on disk for one-shot commands.

The names below are resolved on first access (PEP 562): the repository imports the engine
(numba, scipy), which a CLI command that only needs the scenario store must not pay for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from marginproof.storage.base import (
        AppendResult,
        InputLog,
        KeyRecord,
        MarginRepository,
        ParamsChange,
        Repository,
    )
    from marginproof.storage.factory import open_repository

__all__ = [
    "AppendResult",
    "InputLog",
    "KeyRecord",
    "MarginRepository",
    "ParamsChange",
    "Repository",
    "open_repository",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'marginproof.storage' has no attribute {name!r}")
    import importlib

    home = "factory" if name == "open_repository" else "base"
    value = getattr(importlib.import_module(f"marginproof.storage.{home}"), name)
    globals()[name] = value
    return value
