"""Embedded SQLite adapter (WAL mode): the default, no server needed.

``synchronous=NORMAL`` in WAL mode keeps every committed transaction across a process crash
(``kill -9``); only an operating-system crash or power loss can drop the last commits. Set
``durable=True`` for ``synchronous=FULL``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from marginproof.storage.sql import Clock, SqlRepository


class SqliteRepository(SqlRepository):
    """Repository in one SQLite file (``:memory:`` is refused: connections are per thread)."""

    dialect = "sqlite"

    def __init__(self, path: str | Path, clock: Clock | None = None,
                 durable: bool = False) -> None:
        super().__init__(clock)
        if str(path) == ":memory:":
            raise ValueError("use a file path: every thread opens its own connection")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._durable = durable

    def _connect(self) -> Any:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=60.0,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if self._durable else 'NORMAL'}")
        conn.execute("PRAGMA busy_timeout=60000")
        return conn

    def _begin(self, conn: Any, write: bool) -> None:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def _commit(self, conn: Any) -> None:
        conn.execute("COMMIT")

    def _rollback(self, conn: Any) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
