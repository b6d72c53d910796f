"""Ports of the storage layer (Protocols) and the records they exchange."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from marginproof.engine.entries import EntryKind, LogEntry
from marginproof.engine.events import MarginBatch


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an entry landed: ``duplicate`` if its dedupe key was already in the log."""

    seq: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An entry to append (the log assigns ``seq`` and ``logged_at_ms``)."""

    kind: EntryKind
    body: Mapping[str, Any]
    source: str
    dedupe_key: str | None = None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An API key as stored: only the SHA-256 of the secret is kept."""

    key_id: str
    key_hash: str
    scope: str
    account_id: str | None
    label: str
    created_at_ms: int
    created_by: str
    revoked_at_ms: int | None


@dataclass(frozen=True, slots=True)
class ParamsChange:
    """One logged parameter change: who, when, what, and when it takes effect."""

    change_id: int
    model: str
    params_hash: str
    params: Mapping[str, Any]
    changed_by: str
    changed_at_ms: int
    effective_at_ms: int
    log_seq: int


class InputLog(Protocol):
    """Append-only, gap-free, totally ordered log of engine inputs."""

    def append(self, entries: Sequence[NewEntry]) -> list[AppendResult]:
        """Append in order, atomically; entries whose dedupe key exists are not appended."""
        ...

    def read(self, after_seq: int, limit: int = 1000,
             kinds: Sequence[EntryKind] | None = None) -> list[LogEntry]:
        """Entries with ``seq > after_seq`` in order (optionally only some kinds)."""
        ...

    def last_seq(self) -> int: ...


class MarginRepository(Protocol):
    """Margin history, emitted events and consumer checkpoints."""

    def commit(self, consumer: str, seq: int, batches: Sequence[MarginBatch] = (),
               events: Sequence[Mapping[str, Any]] = (),
               account_states: Mapping[str, tuple[int, Mapping[str, float],
                                                  Mapping[str, float]]] | None = None) -> bool:
        """Store batches, events and account states and move ``consumer``'s checkpoint to
        ``seq``, atomically. Idempotent: committing a ``seq`` again stores nothing (False).
        """
        ...

    def account_state(self, account_id: str
                      ) -> tuple[int, dict[str, float], dict[str, float]] | None: ...

    def checkpoint(self, consumer: str) -> int: ...

    def latest_margin(self, account_id: str) -> dict[str, Any] | None: ...

    def margin_history(self, account_id: str, limit: int = 100,
                       before_seq: int | None = None) -> list[dict[str, Any]]: ...

    def account_events(self, account_id: str, limit: int = 100) -> list[dict[str, Any]]: ...

    def history_digest(self, partition: int | None = None) -> str: ...

    def mark_consumed(self, consumer: str, event_id: str) -> bool:
        """Record that ``consumer`` handled ``event_id``; False if it already had."""
        ...


class Repository(InputLog, MarginRepository, Protocol):
    """Everything the service needs from storage (one database)."""

    dialect: str

    def migrate(self) -> int:
        """Apply pending migrations; returns the schema version."""
        ...

    def schema_version(self) -> int: ...

    def close(self) -> None: ...

    # accounts
    def upsert_account(self, account_id: str, created_at_ms: int) -> None: ...

    def upsert_accounts(self, account_ids: Sequence[str], created_at_ms: int) -> None: ...

    def list_accounts(self, limit: int = 1000, after: str | None = None) -> list[str]: ...

    def account_exists(self, account_id: str) -> bool: ...

    # keys
    def add_key(self, record: KeyRecord) -> None: ...

    def key_by_hash(self, key_hash: str) -> KeyRecord | None: ...

    def revoke_key(self, key_id: str, at_ms: int) -> bool: ...

    def list_keys(self) -> list[KeyRecord]: ...

    # parameters
    def record_params_change(self, model: str, params_hash: str, params: Mapping[str, Any],
                             changed_by: str, effective_at_ms: int) -> ParamsChange:
        """Append the ``params`` log entry and its audit row atomically."""
        ...

    def params_changes(self, model: str | None = None) -> list[ParamsChange]: ...
