"""Integration fixtures: real PostgreSQL and NATS JetStream on this machine.

Each test owns its own PostgreSQL schema (created and dropped around it) and its own NATS
stream/subject names, so tests never collide. Under ``CI=true`` an unreachable service FAILS
the test; locally (no CI) it is skipped, which on this machine should not happen because both
services run here.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from marginproof.storage.sql import SqlRepository

PG_DSN = os.environ.get("MARGINPROOF_TEST_PG_DSN", "postgresql://127.0.0.1:5432/test")
NATS_URL = os.environ.get("MARGINPROOF_TEST_NATS_URL", "nats://127.0.0.1:4222")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Fail under CI, skip locally, when a service is down."""
    if _reachable(host, port):
        return
    msg = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + " (CI=true: integration services are required)")
    pytest.skip(msg)


@pytest.fixture
def pg_dsn() -> str:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return PG_DSN


@pytest.fixture
def nats_url() -> str:
    require_service("NATS", "127.0.0.1", 4222)
    return NATS_URL


@pytest.fixture
def unique() -> str:
    """A name unique to this test (schemas, streams, subjects, durables)."""
    return "t" + uuid.uuid4().hex[:16]


@pytest.fixture
def pg_repo(pg_dsn: str, unique: str) -> Iterator[SqlRepository]:
    from marginproof.storage.postgres import PostgresRepository

    repo = PostgresRepository(pg_dsn, schema=unique)
    repo.migrate()
    try:
        yield repo
    finally:
        repo.drop_schema()


@pytest.fixture
def sqlite_repo(tmp_path: Path) -> Iterator[SqlRepository]:
    from marginproof.storage.sqlite import SqliteRepository

    repo = SqliteRepository(tmp_path / "mp.sqlite")
    repo.migrate()
    try:
        yield repo
    finally:
        repo.close()


@pytest.fixture(params=["sqlite", "postgres"])
def repo(request: pytest.FixtureRequest) -> SqlRepository:
    """The same test against both backends."""
    name = "sqlite_repo" if request.param == "sqlite" else "pg_repo"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]
