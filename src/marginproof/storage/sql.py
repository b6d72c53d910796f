"""The repository over SQL, shared by the SQLite and PostgreSQL adapters.

Statements are written with ``?`` placeholders; the PostgreSQL adapter rewrites them to ``%s``.
Each thread gets its own connection. Sequence numbers of the input log are allocated inside the
appending transaction under the database's write lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL
advisory transaction lock), so the log is gap-free and commit order equals ``seq`` order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from marginproof.engine.entries import EntryKind, LogEntry
from marginproof.engine.events import STATUS_NAMES, MarginBatch
from marginproof.storage.base import AppendResult, KeyRecord, NewEntry, ParamsChange
from marginproof.storage.migrations import MIGRATIONS

Clock = Callable[[], int]


def wall_clock_ms() -> int:
    """Milliseconds since the epoch (the log's clock; the engine never reads a clock)."""
    return time.time_ns() // 1_000_000


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


GENESIS_CHAIN = "0" * 64
"""The chained hash "before" entry 1."""


def chain_step(prev: str, seq: int, kind: str, logged_at_ms: int, source: str,
               body: str) -> str:
    """Chained hash of an input-log entry: ``SHA-256(prev || canonical entry)``, hex.

    ``prev`` is the previous entry's chained hash (:data:`GENESIS_CHAIN` for entry 1) and the
    entry is ``[seq, kind, logged_at_ms, source, body]`` as canonical JSON with ``body`` the
    stored body text, so the hash at ``seq`` commits to every entry ``1..seq``: an engine
    snapshot taken at ``seq`` is only valid on a log whose hash there is the one it recorded.
    """
    h = hashlib.sha256(bytes.fromhex(prev))
    h.update(json.dumps([int(seq), str(kind), int(logged_at_ms), source, body],
                        separators=(",", ":"), ensure_ascii=False).encode())
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A stored engine snapshot, without its blob."""

    consumer: str
    seq: int
    chain_hash: str
    params_hash: str
    blob_sha256: str
    meta: Mapping[str, Any]
    size_bytes: int
    created_at_ms: int


_HISTORY_COLS = ("account_id", "seq", "partition_id", "initial_margin", "maintenance_margin",
                 "equity", "status", "held", "binding_underlying", "binding_scenario",
                 "held_reason")


def history_rows(batch: MarginBatch) -> list[tuple[Any, ...]]:
    """Rows of ``margin_history`` for a batch (plain Python values; ``held_reason`` None
    unless the margin is held)."""
    n = len(batch)
    reasons: list[str | None] = [None] * n
    for i in batch.held.nonzero()[0].tolist():
        reasons[i] = batch.held_reason(i)
    return list(zip(batch.account_ids, [batch.seq] * n, [batch.partition] * n,
                    batch.initial_margin.tolist(), batch.maintenance_margin.tolist(),
                    batch.equity.tolist(), batch.status.tolist(),
                    batch.held.astype(int).tolist(), batch.binding_underlying,
                    batch.binding_scenario.tolist(), reasons, strict=True))


class SqlRepository(ABC):
    """Repository implementation over a DB-API connection (see module docstring)."""

    dialect: str = "sql"

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or wall_clock_ms
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    # -- adapter hooks -----------------------------------------------------------------------
    @abstractmethod
    def _connect(self) -> Any:
        """A new DB-API connection in autocommit mode."""

    @abstractmethod
    def _begin(self, conn: Any, write: bool) -> None: ...

    @abstractmethod
    def _commit(self, conn: Any) -> None: ...

    @abstractmethod
    def _rollback(self, conn: Any) -> None: ...

    def _sql(self, sql: str) -> str:
        return sql

    def _insert_history(self, cur: Any, rows: list[tuple[Any, ...]]) -> None:
        cols = ", ".join(_HISTORY_COLS)
        marks = ", ".join("?" * len(_HISTORY_COLS))
        cur.executemany(self._sql(f"INSERT INTO margin_history ({cols}) VALUES ({marks})"), rows)

    def _prepare_schema(self, cur: Any) -> None:  # noqa: B027 - optional hook
        """Adapter hook run before migrations (PostgreSQL creates its schema)."""

    # -- connections and transactions --------------------------------------------------------
    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[Any]:
        conn = self._conn()
        self._begin(conn, write)
        cur = conn.cursor()
        try:
            yield cur
        except BaseException:
            self._rollback(conn)
            raise
        else:
            self._commit(conn)
        finally:
            cur.close()

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for c in conns:
            with contextlib.suppress(Exception):  # closing is best effort
                c.close()
        self._local = threading.local()

    # -- migrations ---------------------------------------------------------------------------
    def migrate(self) -> int:
        with self._tx(write=True) as cur:
            self._prepare_schema(cur)
            cur.execute(self._sql("CREATE TABLE IF NOT EXISTS schema_version ("
                                  "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                                  "applied_at_ms BIGINT NOT NULL)"))
            cur.execute(self._sql("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
            current = int(cur.fetchone()[0])
            for m in MIGRATIONS:
                if m.version <= current:
                    continue
                for stmt in m.statements(self.dialect):
                    cur.execute(self._sql(stmt))
                cur.execute(self._sql("INSERT INTO schema_version VALUES (?, ?, ?)"),
                            (m.version, m.name, self._clock()))
                current = m.version
            if current >= 3:
                self._backfill_chain(cur)
        return current

    def _backfill_chain(self, cur: Any) -> int:
        """Compute the chained hash of entries appended before schema version 3 (in order,
        in the migrating transaction); returns how many rows were filled."""
        cur.execute(self._sql("SELECT MIN(seq) FROM input_log WHERE chain_hash IS NULL"))
        first = cur.fetchone()[0]
        if first is None:
            return 0
        prev = GENESIS_CHAIN
        if int(first) > 1:
            cur.execute(self._sql("SELECT chain_hash FROM input_log WHERE seq = ?"),
                        (int(first) - 1,))
            prev = cur.fetchone()[0]
        cur.execute(self._sql("SELECT seq, kind, logged_at_ms, source, body FROM input_log "
                              "WHERE seq >= ? ORDER BY seq"), (int(first),))
        rows = cur.fetchall()
        out = []
        for r in rows:
            prev = chain_step(prev, int(r[0]), r[1], int(r[2]), r[3], r[4])
            out.append((prev, int(r[0])))
        cur.executemany(self._sql("UPDATE input_log SET chain_hash = ? WHERE seq = ?"), out)
        return len(out)

    def schema_version(self) -> int:
        with self._tx() as cur:
            cur.execute(self._sql("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
            return int(cur.fetchone()[0])

    # -- input log ----------------------------------------------------------------------------
    def _append_in_tx(self, cur: Any, entries: Sequence[NewEntry]) -> list[AppendResult]:
        cur.execute(self._sql("SELECT seq, logged_at_ms, chain_hash FROM input_log "
                              "ORDER BY seq DESC LIMIT 1"))
        row = cur.fetchone()
        seq, last_ms = (int(row[0]), int(row[1])) if row else (0, 0)
        chain = GENESIS_CHAIN if row is None else row[2]
        if chain is None:
            raise RuntimeError("input_log has entries without a chained hash: run migrate()")
        now = max(self._clock(), last_ms)  # the log's clock never goes back
        out: list[AppendResult] = []
        for e in entries:
            if e.dedupe_key is not None:
                cur.execute(self._sql("SELECT seq FROM input_log WHERE dedupe_key = ?"),
                            (e.dedupe_key,))
                hit = cur.fetchone()
                if hit is not None:
                    out.append(AppendResult(int(hit[0]), True))
                    continue
            seq += 1
            body = _dumps(dict(e.body))
            chain = chain_step(chain, seq, str(e.kind), now, e.source, body)
            cur.execute(self._sql("INSERT INTO input_log (seq, kind, logged_at_ms, source, "
                                  "dedupe_key, body, chain_hash) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                        (seq, str(e.kind), now, e.source, e.dedupe_key, body, chain))
            out.append(AppendResult(seq, False))
        return out

    def append(self, entries: Sequence[NewEntry]) -> list[AppendResult]:
        if not entries:
            return []
        with self._tx(write=True) as cur:
            return self._append_in_tx(cur, entries)

    def read(self, after_seq: int, limit: int = 1000,
             kinds: Sequence[EntryKind] | None = None) -> list[LogEntry]:
        sql = "SELECT seq, kind, logged_at_ms, source, body FROM input_log WHERE seq > ?"
        args: list[Any] = [after_seq]
        if kinds:
            sql += " AND kind IN (" + ", ".join("?" * len(kinds)) + ")"
            args += [str(k) for k in kinds]
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        with self._tx() as cur:
            cur.execute(self._sql(sql), args)
            rows = cur.fetchall()
        return [LogEntry(int(r[0]), EntryKind(r[1]), int(r[2]), r[3], json.loads(r[4]))
                for r in rows]

    def last_seq(self) -> int:
        with self._tx() as cur:
            cur.execute(self._sql("SELECT COALESCE(MAX(seq), 0) FROM input_log"))
            return int(cur.fetchone()[0])

    def chain_hash(self, seq: int) -> str | None:
        """The log's chained hash at ``seq`` (:func:`chain_step`; None: no such entry)."""
        if seq == 0:
            return GENESIS_CHAIN
        with self._tx() as cur:
            cur.execute(self._sql("SELECT chain_hash FROM input_log WHERE seq = ?"), (seq,))
            r = cur.fetchone()
        return None if r is None else r[0]

    def verify_chain(self, upto: int | None = None, batch: int = 10_000) -> int:
        """Recompute the chained hash of entries ``1..upto`` from their stored contents (an
        audit: O(log length)); returns the first ``seq`` whose stored hash differs, else 0."""
        prev, after = GENESIS_CHAIN, 0
        while True:
            with self._tx() as cur:
                cur.execute(self._sql("SELECT seq, kind, logged_at_ms, source, body, chain_hash "
                                      "FROM input_log WHERE seq > ? ORDER BY seq LIMIT ?"),
                            (after, batch))
                rows = cur.fetchall()
            for r in rows:
                if upto is not None and int(r[0]) > upto:
                    return 0
                prev = chain_step(prev, int(r[0]), r[1], int(r[2]), r[3], r[4])
                if prev != r[5]:
                    return int(r[0])
                after = int(r[0])
            if len(rows) < batch:
                return 0

    # -- engine snapshots ---------------------------------------------------------------------
    def save_snapshot(self, consumer: str, seq: int, chain_hash: str, params_hash: str,
                      meta: Mapping[str, Any], blob: bytes, keep: int = 2) -> None:
        """Store an engine snapshot and drop all but ``consumer``'s newest ``keep``.

        One transaction: after a crash the table holds either the old snapshots or the new
        one as well, never a partial blob (the atomicity of the database's commit).
        """
        sha = hashlib.sha256(blob).hexdigest()
        with self._tx(write=True) as cur:
            cur.execute(self._sql("DELETE FROM engine_snapshots WHERE consumer = ? AND seq = ?"),
                        (consumer, seq))
            cur.execute(self._sql(
                "INSERT INTO engine_snapshots (consumer, seq, chain_hash, params_hash, "
                "blob_sha256, meta, size_bytes, created_at_ms, blob) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                (consumer, seq, chain_hash, params_hash, sha, _dumps(dict(meta)), len(blob),
                 self._clock(), blob))
            cur.execute(self._sql(
                "SELECT seq FROM engine_snapshots WHERE consumer = ? ORDER BY seq DESC"),
                (consumer,))
            old = [int(r[0]) for r in cur.fetchall()[max(int(keep), 1):]]
            for s in old:
                cur.execute(self._sql("DELETE FROM engine_snapshots WHERE consumer = ? "
                                      "AND seq = ?"), (consumer, s))

    def snapshots(self, consumer: str) -> list[SnapshotInfo]:
        """``consumer``'s stored snapshots, newest first (without blobs)."""
        with self._tx() as cur:
            cur.execute(self._sql(
                "SELECT consumer, seq, chain_hash, params_hash, blob_sha256, meta, size_bytes, "
                "created_at_ms FROM engine_snapshots WHERE consumer = ? ORDER BY seq DESC"),
                (consumer,))
            rows = cur.fetchall()
        return [SnapshotInfo(r[0], int(r[1]), r[2], r[3], r[4], json.loads(r[5]), int(r[6]),
                             int(r[7])) for r in rows]

    def snapshot_blob(self, consumer: str, seq: int) -> bytes | None:
        """The blob of ``consumer``'s snapshot at ``seq`` (unverified: check its digest)."""
        with self._tx() as cur:
            cur.execute(self._sql("SELECT blob FROM engine_snapshots WHERE consumer = ? "
                                  "AND seq = ?"), (consumer, seq))
            r = cur.fetchone()
        return None if r is None else bytes(r[0])

    # -- margins and events -------------------------------------------------------------------
    def commit(self, consumer: str, seq: int, batches: Sequence[MarginBatch] = (),
               events: Sequence[Mapping[str, Any]] = (),
               account_states: Mapping[str, tuple[int, Mapping[str, float],
                                                  Mapping[str, float]]] | None = None) -> bool:
        """Store batches, events and account states; move the checkpoint to ``seq``.

        One transaction. Returns False (and stores nothing) if ``consumer`` had already
        committed ``seq``: re-processing after a crash is idempotent.
        """
        with self._tx(write=True) as cur:
            cur.execute(self._sql("SELECT seq FROM consumer_offsets WHERE consumer = ?"),
                        (consumer,))
            row = cur.fetchone()
            if row is not None and int(row[0]) >= seq:
                return False
            for batch in batches:
                if not len(batch):
                    continue
                cur.execute(self._sql(
                    "INSERT INTO margin_batches (partition_id, seq, market_ts_ms, model, "
                    "params_hash, cause, n_accounts) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                    (batch.partition, batch.seq, batch.market_ts_ms, batch.model,
                     batch.params_hash, batch.cause, len(batch)))
                self._insert_history(cur, history_rows(batch))
            for ev in events:
                cur.execute(self._sql(
                    "INSERT INTO engine_events (event_id, seq, partition_id, type, account_id, "
                    "body) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"),
                    (ev["event_id"], int(ev["seq"]), int(ev["partition"]), ev["type"],
                     ev.get("account_id"), _dumps(dict(ev))))
            for acc, (aseq, pos, coll) in (account_states or {}).items():
                cur.execute(self._sql(
                    "INSERT INTO account_state (account_id, seq, positions, collateral) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET "
                    "seq = excluded.seq, positions = excluded.positions, "
                    "collateral = excluded.collateral"),
                    (acc, aseq, _dumps(dict(pos)), _dumps(dict(coll))))
            if row is None:
                cur.execute(self._sql("INSERT INTO consumer_offsets (consumer, seq) VALUES (?, ?)"),
                            (consumer, seq))
            else:
                cur.execute(self._sql("UPDATE consumer_offsets SET seq = ? WHERE consumer = ?"),
                            (seq, consumer))
        return True

    def account_state(self, account_id: str
                      ) -> tuple[int, dict[str, float], dict[str, float]] | None:
        """``(seq, positions, collateral)`` as of the last committed account entry."""
        with self._tx() as cur:
            cur.execute(self._sql("SELECT seq, positions, collateral FROM account_state "
                                  "WHERE account_id = ?"), (account_id,))
            r = cur.fetchone()
        return None if r is None else (int(r[0]), json.loads(r[1]), json.loads(r[2]))

    def checkpoint(self, consumer: str) -> int:
        with self._tx() as cur:
            cur.execute(self._sql("SELECT seq FROM consumer_offsets WHERE consumer = ?"),
                        (consumer,))
            row = cur.fetchone()
            return 0 if row is None else int(row[0])

    _MARGIN_SELECT = (
        "SELECT h.account_id, h.seq, h.initial_margin, h.maintenance_margin, h.equity, "
        "h.status, h.held, h.binding_underlying, h.binding_scenario, b.market_ts_ms, b.model, "
        "b.params_hash, b.cause, h.held_reason FROM margin_history h JOIN margin_batches b "
        "ON b.partition_id = h.partition_id AND b.seq = h.seq WHERE h.account_id = ?")

    @staticmethod
    def _margin_row(r: Sequence[Any]) -> dict[str, Any]:
        return {"account_id": r[0], "seq": int(r[1]), "initial_margin": float(r[2]),
                "maintenance_margin": float(r[3]), "equity": float(r[4]),
                "status": STATUS_NAMES[int(r[5])], "held": bool(r[6]),
                "binding_underlying": r[7] or None,
                "binding_scenario": None if int(r[8]) < 0 else int(r[8]),
                "market_ts_ms": int(r[9]), "model": r[10], "params_hash": r[11], "cause": r[12],
                "held_reason": r[13] if r[6] else None}  # None too on rows before v4

    def latest_margin(self, account_id: str) -> dict[str, Any] | None:
        with self._tx() as cur:
            cur.execute(self._sql(self._MARGIN_SELECT + " ORDER BY h.seq DESC LIMIT 1"),
                        (account_id,))
            r = cur.fetchone()
        return None if r is None else self._margin_row(r)

    def margin_history(self, account_id: str, limit: int = 100,
                       before_seq: int | None = None) -> list[dict[str, Any]]:
        sql = self._MARGIN_SELECT
        args: list[Any] = [account_id]
        if before_seq is not None:
            sql += " AND h.seq < ?"
            args.append(before_seq)
        sql += " ORDER BY h.seq DESC LIMIT ?"
        args.append(limit)
        with self._tx() as cur:
            cur.execute(self._sql(sql), args)
            return [self._margin_row(r) for r in cur.fetchall()]

    def account_events(self, account_id: str, limit: int = 100) -> list[dict[str, Any]]:
        with self._tx() as cur:
            cur.execute(self._sql("SELECT body FROM engine_events WHERE account_id = ? "
                                  "ORDER BY seq DESC LIMIT ?"), (account_id, limit))
            return [json.loads(r[0]) for r in cur.fetchall()]

    def history_digest(self, partition: int | None = None) -> str:
        """SHA-256 over every stored margin row (floats as IEEE bytes) in (seq, account) order."""
        h = hashlib.sha256()
        where = "" if partition is None else " WHERE partition_id = ?"
        args: tuple[Any, ...] = () if partition is None else (partition,)
        with self._tx() as cur:
            cur.execute(self._sql("SELECT partition_id, seq, market_ts_ms, model, params_hash, "
                                  "cause, n_accounts FROM margin_batches" + where +
                                  " ORDER BY seq, partition_id"), args)
            for r in cur.fetchall():
                h.update(repr(tuple(r)).encode())
            cur.execute(self._sql("SELECT account_id, seq, initial_margin, maintenance_margin, "
                                  "equity, status, held, binding_underlying, binding_scenario "
                                  "FROM margin_history" + where + " ORDER BY seq, account_id"),
                        args)
            for r in cur.fetchall():
                h.update(f"{r[0]}|{r[1]}|{r[5]}|{r[6]}|{r[7]}|{r[8]}|".encode())
                h.update(struct.pack("<3d", float(r[2]), float(r[3]), float(r[4])))
        return h.hexdigest()

    def mark_consumed(self, consumer: str, event_id: str) -> bool:
        """Record that ``consumer`` handled ``event_id``; False if it already had."""
        with self._tx(write=True) as cur:
            cur.execute(self._sql("INSERT INTO consumed_events (consumer, event_id, "
                                  "consumed_at_ms) VALUES (?, ?, ?) "
                                  "ON CONFLICT (consumer, event_id) DO NOTHING"),
                        (consumer, event_id, self._clock()))
            return bool(cur.rowcount == 1)

    # -- accounts -----------------------------------------------------------------------------
    def upsert_account(self, account_id: str, created_at_ms: int) -> None:
        with self._tx(write=True) as cur:
            cur.execute(self._sql("INSERT INTO accounts (account_id, created_at_ms) "
                                  "VALUES (?, ?) ON CONFLICT (account_id) DO NOTHING"),
                        (account_id, created_at_ms))

    def upsert_accounts(self, account_ids: Sequence[str], created_at_ms: int) -> None:
        with self._tx(write=True) as cur:
            cur.executemany(self._sql("INSERT INTO accounts (account_id, created_at_ms) "
                                      "VALUES (?, ?) ON CONFLICT (account_id) DO NOTHING"),
                            [(a, created_at_ms) for a in account_ids])

    def list_accounts(self, limit: int = 1000, after: str | None = None) -> list[str]:
        with self._tx() as cur:
            cur.execute(self._sql("SELECT account_id FROM accounts WHERE account_id > ? "
                                  "ORDER BY account_id LIMIT ?"), (after or "", limit))
            return [r[0] for r in cur.fetchall()]

    def account_exists(self, account_id: str) -> bool:
        with self._tx() as cur:
            cur.execute(self._sql("SELECT 1 FROM accounts WHERE account_id = ?"), (account_id,))
            return cur.fetchone() is not None

    # -- API keys -----------------------------------------------------------------------------
    def add_key(self, record: KeyRecord) -> None:
        with self._tx(write=True) as cur:
            cur.execute(self._sql("INSERT INTO api_keys (key_id, key_hash, scope, account_id, "
                                  "label, created_at_ms, created_by, revoked_at_ms) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                        (record.key_id, record.key_hash, record.scope, record.account_id,
                         record.label, record.created_at_ms, record.created_by,
                         record.revoked_at_ms))

    @staticmethod
    def _key(r: Sequence[Any]) -> KeyRecord:
        return KeyRecord(r[0], r[1], r[2], r[3], r[4], int(r[5]), r[6],
                         None if r[7] is None else int(r[7]))

    _KEY_COLS = ("SELECT key_id, key_hash, scope, account_id, label, created_at_ms, "
                 "created_by, revoked_at_ms FROM api_keys")

    def key_by_hash(self, key_hash: str) -> KeyRecord | None:
        with self._tx() as cur:
            cur.execute(self._sql(self._KEY_COLS + " WHERE key_hash = ?"), (key_hash,))
            r = cur.fetchone()
        return None if r is None else self._key(r)

    def revoke_key(self, key_id: str, at_ms: int) -> bool:
        with self._tx(write=True) as cur:
            cur.execute(self._sql("UPDATE api_keys SET revoked_at_ms = ? "
                                  "WHERE key_id = ? AND revoked_at_ms IS NULL"), (at_ms, key_id))
            return bool(cur.rowcount == 1)

    def list_keys(self) -> list[KeyRecord]:
        with self._tx() as cur:
            cur.execute(self._sql(self._KEY_COLS + " ORDER BY created_at_ms, key_id"))
            return [self._key(r) for r in cur.fetchall()]

    # -- parameters ---------------------------------------------------------------------------
    def record_params_change(self, model: str, params_hash: str, params: Mapping[str, Any],
                             changed_by: str, effective_at_ms: int) -> ParamsChange:
        """Append the ``params`` log entry and the audit row in one transaction."""
        body = {"model": model, "params": dict(params), "params_hash": params_hash,
                "effective_at_ms": effective_at_ms, "changed_by": changed_by}
        with self._tx(write=True) as cur:
            (res,) = self._append_in_tx(cur, [NewEntry(EntryKind.PARAMS, body,
                                                       f"operator:{changed_by}")])
            now = self._clock()
            cur.execute(self._sql("INSERT INTO params_changes (model, params_hash, params, "
                                  "changed_by, changed_at_ms, effective_at_ms, log_seq) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING change_id"),
                        (model, params_hash, _dumps(dict(params)), changed_by, now,
                         effective_at_ms, res.seq))
            change_id = int(cur.fetchone()[0])
        return ParamsChange(change_id, model, params_hash, dict(params), changed_by, now,
                            effective_at_ms, res.seq)

    def params_changes(self, model: str | None = None) -> list[ParamsChange]:
        sql = ("SELECT change_id, model, params_hash, params, changed_by, changed_at_ms, "
               "effective_at_ms, log_seq FROM params_changes")
        args: tuple[Any, ...] = ()
        if model is not None:
            sql += " WHERE model = ?"
            args = (model,)
        with self._tx() as cur:
            cur.execute(self._sql(sql + " ORDER BY change_id"), args)
            return [ParamsChange(int(r[0]), r[1], r[2], json.loads(r[3]), r[4], int(r[5]),
                                 int(r[6]), int(r[7])) for r in cur.fetchall()]
