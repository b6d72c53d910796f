"""Versioned schema migrations, one list of statements per dialect.

A migration is never edited once released: changes go in a new version. ``schema_version``
records every version applied and when.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    """Version ``version``: statements for ``sqlite`` and ``postgres``."""

    version: int
    name: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]

    def statements(self, dialect: str) -> tuple[str, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgres


def _common(id_col: str, real: str) -> tuple[str, ...]:
    return (
        """CREATE TABLE input_log (
            seq BIGINT PRIMARY KEY,
            kind TEXT NOT NULL,
            logged_at_ms BIGINT NOT NULL,
            source TEXT NOT NULL,
            dedupe_key TEXT UNIQUE,
            body TEXT NOT NULL)""",
        "CREATE INDEX input_log_kind ON input_log (kind, seq)",
        """CREATE TABLE margin_batches (
            partition_id INTEGER NOT NULL,
            seq BIGINT NOT NULL,
            market_ts_ms BIGINT NOT NULL,
            model TEXT NOT NULL,
            params_hash TEXT NOT NULL,
            cause TEXT NOT NULL,
            n_accounts INTEGER NOT NULL,
            PRIMARY KEY (partition_id, seq))""",
        f"""CREATE TABLE margin_history (
            account_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            partition_id INTEGER NOT NULL,
            initial_margin {real} NOT NULL,
            maintenance_margin {real} NOT NULL,
            equity {real} NOT NULL,
            status SMALLINT NOT NULL,
            held SMALLINT NOT NULL,
            binding_underlying TEXT NOT NULL,
            binding_scenario INTEGER NOT NULL,
            PRIMARY KEY (account_id, seq))""",
        """CREATE TABLE engine_events (
            event_id TEXT PRIMARY KEY,
            seq BIGINT NOT NULL,
            partition_id INTEGER NOT NULL,
            type TEXT NOT NULL,
            account_id TEXT,
            body TEXT NOT NULL)""",
        "CREATE INDEX engine_events_account ON engine_events (account_id, seq)",
        """CREATE TABLE consumer_offsets (
            consumer TEXT PRIMARY KEY,
            seq BIGINT NOT NULL)""",
        """CREATE TABLE accounts (
            account_id TEXT PRIMARY KEY,
            created_at_ms BIGINT NOT NULL)""",
        """CREATE TABLE api_keys (
            key_id TEXT PRIMARY KEY,
            key_hash TEXT NOT NULL UNIQUE,
            scope TEXT NOT NULL,
            account_id TEXT,
            label TEXT NOT NULL,
            created_at_ms BIGINT NOT NULL,
            created_by TEXT NOT NULL,
            revoked_at_ms BIGINT)""",
        f"""CREATE TABLE params_changes (
            change_id {id_col},
            model TEXT NOT NULL,
            params_hash TEXT NOT NULL,
            params TEXT NOT NULL,
            changed_by TEXT NOT NULL,
            changed_at_ms BIGINT NOT NULL,
            effective_at_ms BIGINT NOT NULL,
            log_seq BIGINT NOT NULL)""",
    )


def _v2(real: str) -> tuple[str, ...]:
    return (
        """CREATE TABLE consumed_events (
            consumer TEXT NOT NULL,
            event_id TEXT NOT NULL,
            consumed_at_ms BIGINT NOT NULL,
            PRIMARY KEY (consumer, event_id))""",
        """CREATE TABLE account_state (
            account_id TEXT PRIMARY KEY,
            seq BIGINT NOT NULL,
            positions TEXT NOT NULL,
            collateral TEXT NOT NULL)""",
    )


def _v3(blob: str) -> tuple[str, ...]:
    return (
        # the chained hash of every entry (see sql.chain_step); NULL on rows appended before
        # this version until ``migrate`` backfills them
        "ALTER TABLE input_log ADD COLUMN chain_hash TEXT",
        f"""CREATE TABLE engine_snapshots (
            consumer TEXT NOT NULL,
            seq BIGINT NOT NULL,
            chain_hash TEXT NOT NULL,
            params_hash TEXT NOT NULL,
            blob_sha256 TEXT NOT NULL,
            meta TEXT NOT NULL,
            size_bytes BIGINT NOT NULL,
            created_at_ms BIGINT NOT NULL,
            blob {blob} NOT NULL,
            PRIMARY KEY (consumer, seq))""",
    )


def _v4() -> tuple[str, ...]:
    return (
        # why a held margin is held (``MarginEngine.held_reason``); NULL when it is not held,
        # and on rows stored before this version
        "ALTER TABLE margin_history ADD COLUMN held_reason TEXT",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1, "input log, margin history, events, offsets, accounts, keys, parameter changes",
        sqlite=_common("INTEGER PRIMARY KEY AUTOINCREMENT", "REAL"),
        postgres=_common("BIGSERIAL PRIMARY KEY", "DOUBLE PRECISION"),
    ),
    Migration(
        2, "consumed bus events (idempotent consumers) and account state",
        sqlite=_v2("REAL"),
        postgres=_v2("DOUBLE PRECISION"),
    ),
    Migration(
        3, "chained hash per input-log entry and engine snapshots (bounded recovery)",
        sqlite=_v3("BLOB"),
        postgres=_v3("BYTEA"),
    ),
    Migration(
        4, "reason of a held margin in the margin history",
        sqlite=_v4(),
        postgres=_v4(),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
