"""PostgreSQL adapter through psycopg 3 (production).

Every repository lives in one schema (``search_path``), created on :meth:`migrate`, so several
deployments -- or tests -- share a database without colliding. Margin history rows are written
with ``COPY``. Log sequence numbers are allocated under ``pg_advisory_xact_lock``.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from marginproof.storage.sql import _HISTORY_COLS, Clock, SqlRepository

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_LOG_LOCK = 0x6D70_6C6F_67  # "mplog": serialises input-log appends


class PostgresRepository(SqlRepository):
    """Repository in schema ``schema`` of the database at ``dsn``."""

    dialect = "postgres"

    def __init__(self, dsn: str, schema: str = "marginproof", clock: Clock | None = None) -> None:
        super().__init__(clock)
        if not _SCHEMA_RE.match(schema):
            raise ValueError(f"invalid schema name {schema!r}")
        self.dsn = dsn
        self.schema = schema
        self._sql_cache: dict[str, str] = {}

    def _connect(self) -> Any:
        conn = psycopg.connect(self.dsn, autocommit=True)
        conn.execute(f"SET search_path TO {self.schema}")
        return conn

    def _sql(self, sql: str) -> str:
        out = self._sql_cache.get(sql)
        if out is None:
            out = sql.replace("%", "%%").replace("?", "%s")
            self._sql_cache[sql] = out
        return out

    def _begin(self, conn: Any, write: bool) -> None:
        conn.execute("BEGIN")
        if write:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOG_LOCK,))

    def _commit(self, conn: Any) -> None:
        conn.execute("COMMIT")

    def _rollback(self, conn: Any) -> None:
        conn.execute("ROLLBACK")

    def _prepare_schema(self, cur: Any) -> None:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
        cur.execute(f"SET search_path TO {self.schema}")

    def _insert_history(self, cur: Any, rows: list[tuple[Any, ...]]) -> None:
        with cur.copy(f"COPY margin_history ({', '.join(_HISTORY_COLS)}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)

    def drop_schema(self) -> None:
        """Drop the whole schema (tests)."""
        self.close()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
