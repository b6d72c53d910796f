"""Why a margin is held reaches the user: the API margin, the account, its history, the
account stream and the console rows carry ``held_reason`` (null when the margin is not held),
on SQLite and on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _service_helpers import Service, demo_positions, running_service

OPT = "BTC-30DEC22-155000-C"  # a strike the demo market has no vol or mark for


def _held_account(svc: Service) -> dict[str, Any]:
    deadline = time.monotonic() + 20.0
    while svc.container.market() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the seeded market is in the log; the engine applies it
    market = svc.container.market()
    assert market is not None and OPT not in market.implied_vols
    r = svc.client.post("/accounts", json={"account_id": "unpriced",
                                           "positions": {OPT: -1.0, "BTC-PERPETUAL": 1000.0},
                                           "collateral": {"USDC": 10_000.0}}, headers=svc.op())
    assert r.status_code == 202 and r.json()["status"] == "degraded", r.text
    return svc.wait_margin("unpriced", r.json()["seq"])


def _check(svc: Service) -> None:
    m = _held_account(svc)
    assert m["held"] is True
    assert OPT in m["held_reason"] and "unpriced" in m["held_reason"], m
    a = svc.client.get("/accounts/unpriced", headers=svc.op()).json()
    assert a["margin"]["held"] and a["margin"]["held_reason"] == m["held_reason"]
    hist = svc.client.get("/accounts/unpriced/history", headers=svc.op()).json()["margins"]
    assert hist[0]["held_reason"] == m["held_reason"]
    # an account that prices is not held and has no reason
    pos, coll = demo_positions()
    r = svc.client.post("/accounts", json={"account_id": "fine", "positions": pos,
                                           "collateral": coll}, headers=svc.op())
    ok = svc.wait_margin("fine", r.json()["seq"])
    assert ok["held"] is False and ok["held_reason"] is None
    # the account's own stream (first message: its latest stored margin)
    key = svc.account_key("unpriced")
    with svc.client.websocket_connect(f"/accounts/unpriced/stream?api_key={key}") as ws:
        first = ws.receive_json()
    assert first["type"] == "margin" and first["held"]
    assert OPT in first["held_reason"]


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    with running_service(tmp_path) as s:
        yield s


def test_the_api_says_why_a_margin_is_held(svc: Service) -> None:
    _check(svc)
    # the engine's in-process batch row (what the bus carries to the streams) says it too
    runner = svc.container.runners[0]
    with runner.lock:
        m = runner.engine.account_margin("unpriced")
    assert m is not None and m.held and OPT in m.held_reason


def test_the_console_shows_why_a_margin_is_held(svc: Service) -> None:
    _held_account(svc)
    ov = svc.client.get("/console/api/overview", headers=svc.op()).json()
    row = {a["account_id"]: a for a in ov["accounts"]}["unpriced"]
    assert row["held"] and OPT in row["held_reason"]
    d = svc.client.get("/console/api/accounts/unpriced/detail", headers=svc.op()).json()
    assert d["margin"]["held"] and OPT in d["margin"]["held_reason"]
    js = svc.client.get("/console/static/dom.js").text
    assert "held_reason" in svc.client.get("/console/static/account.js").text
    assert "heldText" in js


def test_the_reason_is_stored_on_postgres(tmp_path: Path, pg_dsn: str, unique: str) -> None:
    from marginproof.storage.postgres import PostgresRepository

    try:
        with running_service(tmp_path, database_url=f"{pg_dsn}?schema={unique}") as s:
            _check(s)
    finally:
        PostgresRepository(pg_dsn, unique).drop_schema()
