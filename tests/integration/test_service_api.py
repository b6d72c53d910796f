"""The HTTP/WebSocket API end to end (SQLite + in-process bus; PostgreSQL + NATS below)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from _service_helpers import Service, demo_positions, running_service

from marginproof.models.grid import GridModel


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    with running_service(tmp_path) as s:
        yield s


def _create_demo(svc: Service, account_id: str = "desk-1") -> int:
    pos, coll = demo_positions()
    r = svc.client.post("/accounts", json={"account_id": account_id, "positions": pos,
                                           "collateral": coll}, headers=svc.op())
    assert r.status_code == 202, r.text
    return int(r.json()["seq"])


def test_account_margin_is_computed_explained_and_matches_the_grid_model(svc: Service) -> None:
    from marginproof.demo.book import demo_account

    seq = _create_demo(svc)
    m = svc.wait_margin("desk-1", seq)
    acct, market = demo_account()
    expected = GridModel().margin(acct.portfolio, market)
    assert m["initial_margin"] == pytest.approx(expected.initial_margin, rel=1e-12)
    assert m["model"] == "grid" and m["params_hash"] == expected.params_hash
    assert m["market_ts_ms"] == int(market.timestamp.timestamp() * 1000)
    assert m["binding"]["underlying"] in ("BTC", "ETH") and m["binding"]["scenario_label"]
    a = svc.client.get("/accounts/desk-1", headers=svc.op()).json()
    assert a["positions"]["BTC-PERPETUAL"] == -60_000.0 and a["collateral"]["USDC"] == 50_000


def test_fill_and_transfer_update_the_account_and_history(svc: Service) -> None:
    seq = _create_demo(svc)
    first = svc.wait_margin("desk-1", seq)
    r = svc.client.post("/accounts/desk-1/fills", json={"instrument": "BTC-PERPETUAL",
                                                        "quantity": -100_000},
                        headers=svc.op())
    assert r.status_code == 202
    second = svc.wait_margin("desk-1", r.json()["seq"])
    assert second["initial_margin"] > first["initial_margin"]
    r = svc.client.post("/accounts/desk-1/transfers", json={"asset": "USDC", "amount": -1000},
                        headers=svc.op())
    third = svc.wait_margin("desk-1", r.json()["seq"])
    assert third["equity"] == pytest.approx(second["equity"] - 1000.0)
    hist = svc.client.get("/accounts/desk-1/history", headers=svc.op()).json()["margins"]
    assert [h["seq"] for h in hist][:3] == [third["seq"], second["seq"], first["seq"]]


def test_margin_call_event_is_stored_with_full_explanation(svc: Service) -> None:
    r = svc.client.post("/accounts", json={"account_id": "thin", "positions":
                                           {"BTC-PERPETUAL": -200_000},
                                           "collateral": {"USDC": 100.0}}, headers=svc.op())
    svc.wait_margin("thin", r.json()["seq"])
    deadline = time.monotonic() + 10
    events: list[dict] = []  # type: ignore[type-arg]
    while not events and time.monotonic() < deadline:
        events = svc.client.get("/accounts/thin/events", headers=svc.op()).json()["events"]
        time.sleep(0.02)
    (ev,) = events
    assert ev["type"] == "liquidation" and ev["account_id"] == "thin"
    for k in ("model", "params_hash", "market_ts_ms", "binding", "shortfall_usd"):
        assert k in ev
    assert ev["binding"]["underlying"] == "BTC"


def test_whatif_prices_any_registry_model_and_stores_nothing(svc: Service) -> None:
    seq = _create_demo(svc)
    svc.wait_margin("desk-1", seq)
    log_before = svc.container.repo.last_seq()
    for model in ("grid", "standard"):
        r = svc.client.post("/whatif", json={"model": model, "account_id": "desk-1",
                                             "trades": [{"instrument": "BTC-PERPETUAL",
                                                         "quantity": 10_000}]},
                            headers=svc.op())
        assert r.status_code == 200, r.text
        assert r.json()["model"] == model and r.json()["initial_margin"] > 0
        assert r.json()["positions"]["BTC-PERPETUAL"] == -50_000.0
    r = svc.client.post("/whatif", json={"positions": {"NOT-AN-INSTRUMENT": 1}},
                        headers=svc.op())
    assert r.status_code == 422
    assert svc.container.repo.last_seq() == log_before


def test_parameter_change_is_logged_announced_and_takes_effect_at_its_time(svc: Service
                                                                          ) -> None:
    seq = _create_demo(svc)
    before = svc.wait_margin("desk-1", seq)
    params = dict(GridModel().params)
    params["grid"] = {**params["grid"], "price_range": {"default": 0.3, "BTC": 0.2,
                                                        "ETH": 0.25}}
    eff = datetime.now(UTC) + timedelta(seconds=1)
    r = svc.client.put("/parameters/grid", json={"params": params,
                                                 "effective_at": eff.isoformat()},
                       headers=svc.op())
    assert r.status_code == 202, r.text
    change = r.json()
    assert change["changed_by"] == "ops" and change["effective_at_ms"] == int(
        eff.timestamp() * 1000)
    listed = svc.client.get("/parameters", headers=svc.op()).json()
    assert [c["params_hash"] for c in listed["scheduled"]] == [change["params_hash"]]
    time.sleep(1.2)
    r = svc.client.post("/accounts/desk-1/transfers", json={"asset": "USDC", "amount": 1},
                        headers=svc.op())
    after = svc.wait_margin("desk-1", r.json()["seq"])
    assert after["params_hash"] == change["params_hash"] != before["params_hash"]
    assert after["initial_margin"] > before["initial_margin"]
    audit = svc.client.get("/parameters/changes", headers=svc.op()).json()["changes"]
    assert audit[-1]["changed_by"] == "ops"


def test_parameter_change_without_notice_or_invalid_is_refused(tmp_path: Path) -> None:
    with running_service(tmp_path, params_min_notice_s=3600.0) as svc:
        soon = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
        r = svc.client.put("/parameters/grid", json={"params": dict(GridModel().params),
                                                     "effective_at": soon}, headers=svc.op())
        assert r.status_code == 422 and "advance" in r.text
        later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
        r = svc.client.put("/parameters/grid", json={"params": {"grid": {}},
                                                     "effective_at": later}, headers=svc.op())
        assert r.status_code == 422
        assert svc.container.repo.params_changes() == []


def test_websocket_streams_only_the_own_accounts_updates(svc: Service) -> None:
    seq = _create_demo(svc)
    svc.wait_margin("desk-1", seq)
    key = svc.account_key("desk-1")
    with svc.client.websocket_connect(f"/accounts/desk-1/stream?api_key={key}") as ws:
        first = ws.receive_json()
        assert first["type"] == "margin" and first["account_id"] == "desk-1"
        r = svc.client.post("/accounts/desk-1/fills", json={"instrument": "BTC-PERPETUAL",
                                                            "quantity": 1000},
                            headers=svc.op())
        while True:
            msg = ws.receive_json()
            if msg["type"] == "margin" and msg["seq"] == r.json()["seq"]:
                break
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as exc, \
            svc.client.websocket_connect(f"/accounts/other/stream?api_key={key}") as ws:
        ws.receive_json()
    assert exc.value.code == 4403
    with pytest.raises(WebSocketDisconnect) as exc, \
            svc.client.websocket_connect("/accounts/desk-1/stream") as ws:
        ws.receive_json()
    assert exc.value.code == 4401


def test_health_metrics_and_openapi_are_public(svc: Service) -> None:
    h = svc.client.get("/health").json()
    assert h["database"] == "ok" and h["schema_version"] >= 2
    m = svc.client.get("/metrics").text
    assert "marginproof_tick_to_margin_seconds" in m and "marginproof_queue_depth" in m
    schema = svc.client.get("/openapi.json").json()
    assert "/whatif" in schema["paths"] and "APIKeyHeader" in schema["components"][
        "securitySchemes"]


def test_replay_feed_drives_the_service_through_a_shipped_day(tmp_path: Path) -> None:
    feeds = [{"kind": "replay", "replay_date": "2022-04-15", "replay_symbols": ["BTCUSDT"],
              "speed": 36_000}]  # an hourly bar every 0.1 s
    with running_service(tmp_path, seed_market=False, feeds=feeds) as svc:
        deadline = time.monotonic() + 30
        while svc.container.market() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the service margins only what it has a market for
        r = svc.client.post("/accounts", json={"account_id": "perp", "positions":
                                               {"BTC-PERPETUAL": -20_000},
                                               "collateral": {"USDC": 50_000}},
                            headers=svc.op())
        assert r.status_code == 202
        end_of_day = 1650067200000  # 2022-04-16T00:00Z: close of the last hourly bar
        deadline = time.monotonic() + 30
        m = svc.wait_margin("perp")
        while m["market_ts_ms"] < end_of_day and time.monotonic() < deadline:
            time.sleep(0.05)
            m = svc.wait_margin("perp")
        assert m["market_ts_ms"] == end_of_day and not m["held"]
        hist = svc.client.get("/accounts/perp/history?limit=1000", headers=svc.op()).json()
        assert len({h["market_ts_ms"] for h in hist["margins"]}) >= 2
        metrics = svc.client.get("/metrics").text
        assert "marginproof_tick_to_margin_seconds_count" in metrics
