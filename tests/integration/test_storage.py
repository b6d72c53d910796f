"""The repository contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest

from marginproof.engine.entries import EntryKind
from marginproof.engine.events import MarginBatch
from marginproof.storage.base import KeyRecord, NewEntry
from marginproof.storage.migrations import LATEST_VERSION
from marginproof.storage.sql import SqlRepository


def _batch(seq: int, ids: tuple[str, ...], im: float) -> MarginBatch:
    n = len(ids)
    return MarginBatch(seq, 0, 1_650_000_000_000 + seq, "grid", "ab" * 32, "tick:BTC",
                       np.array(ids, dtype=object),
                       np.full(n, im), np.full(n, 0.8 * im), np.full(n, 2 * im),
                       np.zeros(n, np.int8), np.zeros(n, bool), ("BTC",),
                       np.zeros(n, np.int16), np.arange(n, dtype=np.int32),
                       np.arange(n, dtype=np.int64))


def test_migrations_are_versioned_and_idempotent(repo: SqlRepository) -> None:
    assert repo.schema_version() == LATEST_VERSION
    assert repo.migrate() == LATEST_VERSION


def test_log_assigns_gap_free_sequence_and_reads_back_in_order(repo: SqlRepository) -> None:
    res = repo.append([NewEntry(EntryKind.FILL, {"account_id": "a", "instrument": "BTC-PERPETUAL",
                                                 "quantity": i}, "api") for i in range(5)])
    assert [r.seq for r in res] == [1, 2, 3, 4, 5]
    entries = repo.read(0)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert [e.body["quantity"] for e in entries] == [0, 1, 2, 3, 4]
    assert all(e.kind is EntryKind.FILL for e in entries)
    assert [e.seq for e in repo.read(3, limit=1)] == [4]
    assert repo.last_seq() == 5
    times = [e.logged_at_ms for e in entries]
    assert times == sorted(times)


def test_dedupe_key_makes_appends_idempotent(repo: SqlRepository) -> None:
    e = NewEntry(EntryKind.TICK, {"x": 1}, "feed", dedupe_key="binance:btcusdt:42")
    (first,) = repo.append([e])
    (again,) = repo.append([e])
    assert not first.duplicate and again.duplicate and again.seq == first.seq
    assert repo.last_seq() == 1


def test_concurrent_appenders_never_create_gaps_or_duplicates(repo: SqlRepository) -> None:
    def worker(k: int) -> None:
        for i in range(20):
            repo.append([NewEntry(EntryKind.TRANSFER, {"w": k, "i": i}, f"w{k}")])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [e.seq for e in repo.read(0, limit=1000)]
    assert seqs == list(range(1, 81))


def test_commit_stores_history_and_checkpoint_atomically_and_idempotently(
        repo: SqlRepository) -> None:
    b = _batch(7, ("a", "b"), 100.0)
    ev = {"event_id": "7:0:margin_call:a", "seq": 7, "partition": 0, "type": "margin_call",
          "account_id": "a", "initial_margin": 100.0}
    assert repo.commit("engine-p0", 7, [b], [ev], {"a": (7, {"BTC-PERPETUAL": 10.0}, {})})
    assert not repo.commit("engine-p0", 7, [b], [ev])  # replay after a crash: nothing twice
    assert repo.account_state("a") == (7, {"BTC-PERPETUAL": 10.0}, {})
    assert repo.account_state("zz") is None
    assert repo.checkpoint("engine-p0") == 7
    assert repo.checkpoint("other") == 0
    latest = repo.latest_margin("a")
    assert latest is not None
    assert latest["initial_margin"] == 100.0 and latest["status"] == "ok"
    assert latest["model"] == "grid" and latest["market_ts_ms"] == 1_650_000_000_007
    repo.commit("engine-p0", 9, [_batch(9, ("a",), 0.1 + 0.2)])
    hist = repo.margin_history("a")
    assert [h["seq"] for h in hist] == [9, 7]
    assert hist[0]["initial_margin"] == 0.1 + 0.2  # float64 stored bit-exactly
    assert [e["event_id"] for e in repo.account_events("a")] == ["7:0:margin_call:a"]


def test_history_digest_changes_with_any_stored_bit(repo: SqlRepository) -> None:
    repo.commit("c", 1, [_batch(1, ("a",), 1.0)])
    d1 = repo.history_digest()
    repo.commit("c", 2, [_batch(2, ("a",), np.nextafter(1.0, 2.0))])
    assert repo.history_digest() != d1


def test_held_margins_keep_their_reason(repo: SqlRepository) -> None:
    b = _batch(3, ("a", "b", "c"), 10.0)
    held = np.array([True, False, True])
    b = dataclasses.replace(b, held=held, held_reasons={0: "unpriced BTC-X: no vol"})
    repo.commit("c", 3, [b])
    rows = {a: repo.latest_margin(a) for a in ("a", "b", "c")}
    assert rows["a"] is not None and rows["a"]["held"]
    assert rows["a"]["held_reason"] == "unpriced BTC-X: no vol"
    assert rows["b"] is not None and rows["b"]["held_reason"] is None
    assert rows["c"] is not None and rows["c"]["held_reason"] == "held"  # held, no detail
    assert repo.margin_history("a")[0]["held_reason"] == "unpriced BTC-X: no vol"
    assert b.row(0)["held_reason"] == "unpriced BTC-X: no vol" and b.row(1)["held_reason"] is None


def test_a_version_3_database_migrates_and_its_rows_still_load(tmp_path: Path) -> None:
    import sqlite3

    from marginproof.storage.migrations import MIGRATIONS
    from marginproof.storage.sqlite import SqliteRepository

    path = tmp_path / "v3.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                 " applied_at_ms BIGINT NOT NULL)")
    for m in MIGRATIONS[:3]:
        for stmt in m.statements("sqlite"):
            conn.execute(stmt)
        conn.execute("INSERT INTO schema_version VALUES (?, ?, 0)", (m.version, m.name))
    conn.execute("INSERT INTO margin_batches VALUES (0, 5, 1, 'grid', 'h', 'tick:BTC', 1)")
    conn.execute("INSERT INTO margin_history (account_id, seq, partition_id, initial_margin, "
                 "maintenance_margin, equity, status, held, binding_underlying, "
                 "binding_scenario) VALUES ('old', 5, 0, 1.0, 0.8, 2.0, 0, 1, '', -1)")
    conn.commit()
    conn.close()
    repo = SqliteRepository(path)
    try:
        assert repo.migrate() == LATEST_VERSION
        row = repo.latest_margin("old")
        assert row is not None and row["held"] and row["held_reason"] is None
        repo.commit("c", 6, [dataclasses.replace(_batch(6, ("old",), 1.0),
                                                 held=np.array([True]),
                                                 held_reasons={0: "BTC degraded (stale)"})])
        row = repo.latest_margin("old")
        assert row is not None and row["held_reason"] == "BTC degraded (stale)"
    finally:
        repo.close()


def test_api_keys_store_only_hashes_and_can_be_revoked(repo: SqlRepository) -> None:
    rec = KeyRecord("k1", "h" * 64, "account", "acct-1", "desk", 1, "ops", None)
    repo.add_key(rec)
    assert repo.key_by_hash("h" * 64) == rec
    assert repo.key_by_hash("x" * 64) is None
    assert repo.revoke_key("k1", 5)
    assert not repo.revoke_key("k1", 6)
    got = repo.key_by_hash("h" * 64)
    assert got is not None and got.revoked_at_ms == 5


def test_params_change_is_logged_with_who_when_and_effective_time(repo: SqlRepository) -> None:
    ch = repo.record_params_change("grid", "f" * 64, {"grid": {"a": 1}}, "alice", 10**13)
    assert ch.changed_by == "alice" and ch.effective_at_ms == 10**13
    (entry,) = repo.read(0)
    assert entry.seq == ch.log_seq and entry.kind is EntryKind.PARAMS
    assert entry.body["changed_by"] == "alice" and entry.source == "operator:alice"
    assert repo.params_changes("grid") == [ch]


def test_accounts_are_listed_in_order_and_consumed_events_deduplicated(
        repo: SqlRepository) -> None:
    repo.upsert_accounts(["b", "a", "c"], 1)
    repo.upsert_account("a", 2)
    assert repo.list_accounts() == ["a", "b", "c"]
    assert repo.list_accounts(after="a", limit=1) == ["b"]
    assert repo.account_exists("c") and not repo.account_exists("z")
    assert repo.mark_consumed("notifier", "e1")
    assert not repo.mark_consumed("notifier", "e1")
    assert repo.mark_consumed("other", "e1")


def test_bad_database_url_is_an_input_error() -> None:
    from marginproof.errors import InputError
    from marginproof.storage import open_repository

    with pytest.raises(InputError, match="unsupported scheme"):
        open_repository("mysql://x")
