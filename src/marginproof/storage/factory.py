"""Open a repository from a URL: ``sqlite:///path/file.sqlite`` or ``postgresql://...``."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit, urlunsplit

from marginproof.errors import InputError
from marginproof.storage.sql import Clock, SqlRepository


def open_repository(url: str, clock: Clock | None = None, migrate: bool = True
                    ) -> SqlRepository:
    """Repository for ``url``; PostgreSQL URLs may carry ``?schema=name`` (default marginproof).

    Raises
    ------
    InputError
        Unknown scheme.
    """
    parts = urlsplit(url)
    repo: SqlRepository
    if parts.scheme == "sqlite":
        from marginproof.storage.sqlite import SqliteRepository

        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else parts.path
        repo = SqliteRepository(path or "marginproof.sqlite", clock)
    elif parts.scheme in ("postgresql", "postgres"):
        from marginproof.storage.postgres import PostgresRepository

        q = parse_qs(parts.query)
        schema = q.pop("schema", ["marginproof"])[0]
        rest = "&".join(f"{k}={v[0]}" for k, v in q.items())
        dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, ""))
        repo = PostgresRepository(dsn, schema, clock)
    else:
        raise InputError("database_url", f"unsupported scheme {parts.scheme!r} "
                         "(sqlite:///file or postgresql://...)")
    if migrate:
        repo.migrate()
    return repo
