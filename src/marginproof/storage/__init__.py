"""Storage adapters: the append-only input log, margin history, API keys and parameter changes.

One repository interface (:class:`marginproof.storage.base.Repository`), two implementations:
embedded SQLite in WAL mode (default) and PostgreSQL through psycopg 3 (production). Both run
the same versioned migrations (:mod:`marginproof.storage.migrations`) and the same tests.
"""

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
