"""Web console API: same keys and scopes as the service; an account key sees nothing of another
account (HTTP and WebSocket); static files and report links cannot leave their directories."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _service_helpers import Service, demo_positions, running_service
from fastapi.routing import APIRoute
from starlette.websockets import WebSocketDisconnect

from marginproof.web.config import WebSettings
from marginproof.web.router import router as web_router

BODIES: dict[str, Any] = {"/console/api/whatif": {"account_id": "alice", "trades": []}}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("webapi")
    reports = tmp / "reports"
    (reports / "stress").mkdir(parents=True)
    (reports / "stress" / "s.html").write_text("<title>S</title><p>stress</p>")
    (tmp / "outside.html").write_text("secret")
    with running_service(tmp) as s:
        s.client.app.state.web_settings = WebSettings(reports_dir=str(reports),
                                                      proofs_dir=str(tmp / "proofs"))
        pos, coll = demo_positions()
        for acc, mult in (("alice", 1.0), ("bob", 0.5)):
            r = s.client.post("/accounts", json={
                "account_id": acc, "positions": {k: v * mult for k, v in pos.items()},
                "collateral": coll}, headers=s.op())
            assert r.status_code == 202
        s.wait_margin("alice")
        s.wait_margin("bob")
        yield s


def _ops() -> list[tuple[str, str]]:
    out = []
    for r in web_router.routes:
        if isinstance(r, APIRoute) and r.path.startswith("/console/api"):
            out += [(m, r.path) for m in sorted(r.methods)]
    return out


def _call(svc: Service, method: str, path: str, key: str | None, account: str = "alice") -> Any:
    url = path.replace("{account_id}", account)
    headers = {} if key is None else {"X-API-Key": key}
    body = BODIES.get(path) if method == "POST" else None
    if body is not None and "account_id" in body:
        body = {**body, "account_id": account}
    return svc.client.request(method, url, json=body, headers=headers)


def test_the_console_api_has_the_expected_operations() -> None:
    ops = _ops()
    assert ("GET", "/console/api/overview") in ops and ("POST", "/console/api/whatif") in ops
    assert ("GET", "/console/api/proofs/mine") in ops and len(ops) >= 8


def test_every_console_endpoint_refuses_missing_garbage_and_revoked_keys(svc: Service) -> None:
    key = svc.account_key("alice")
    assert svc.client.delete(f"/keys/{key.split('_')[1]}", headers=svc.op()).status_code == 204
    seq = svc.container.repo.last_seq()
    for method, path in _ops():
        for bad in (None, key, "mp_nope_nope", "x" * 300):
            r = _call(svc, method, path, bad)
            assert r.status_code == 401, (method, path, r.status_code)
    assert svc.container.repo.last_seq() == seq


def test_an_account_key_sees_nothing_of_another_account(svc: Service) -> None:
    bob = svc.account_key("bob")
    for method, path in _ops():
        if "{account_id}" in path or path == "/console/api/whatif":
            assert _call(svc, method, path, bob, "alice").status_code == 403, path
    r = svc.client.get("/console/api/proofs/mine", params={"account_id": "alice"},
                       headers={"X-API-Key": bob})
    assert r.status_code == 403
    ov = svc.client.get("/console/api/overview", headers={"X-API-Key": bob}).json()
    assert [a["account_id"] for a in ov["accounts"]] == ["bob"] and ov["n_accounts"] == 1
    everything = str(ov) + svc.client.get("/console/api/reports", headers={
        "X-API-Key": bob}).text + svc.client.get("/console/api/me", headers={"X-API-Key": bob}).text
    assert "alice" not in everything
    # and its own account works
    assert _call(svc, "GET", "/console/api/accounts/{account_id}/detail", bob,
                 "bob").status_code == 200
    assert _call(svc, "POST", "/console/api/whatif", bob, "bob").status_code == 200


def test_operators_see_every_account_ranked_by_utilisation(svc: Service) -> None:
    ov = svc.client.get("/console/api/overview", headers=svc.op()).json()
    accs = {a["account_id"]: a for a in ov["accounts"]}
    assert {"alice", "bob"} <= set(accs)
    utils = [a["utilisation"] if a["utilisation"] is not None else float("inf")
             for a in ov["accounts"]]
    assert utils == sorted(utils, reverse=True)
    for a in ("alice", "bob"):
        m = svc.client.get(f"/accounts/{a}/margin", headers=svc.op()).json()
        assert accs[a]["initial_margin"] == pytest.approx(m["initial_margin"])
        assert accs[a]["utilisation"] == pytest.approx(m["initial_margin"] / m["equity"])


def test_drilldown_explains_the_engine_margin_and_whatif_matches_the_api(svc: Service) -> None:
    d = svc.client.get("/console/api/accounts/alice/detail", headers=svc.op()).json()
    ex = d["explanation"]
    assert ex["model"] == "grid" and ex["heatmaps"] and ex["greeks"]
    assert ex["initial_margin"] == pytest.approx(d["margin"]["initial_margin"], rel=1e-9)
    body = {"account_id": "alice", "trades": [{"instrument": "BTC-PERPETUAL", "quantity": 5000}],
            "model": "grid"}
    seq = svc.container.repo.last_seq()
    a = svc.client.post("/whatif", json=body, headers=svc.op()).json()
    b = svc.client.post("/console/api/whatif", json=body, headers=svc.op()).json()
    assert b["initial_margin"] == pytest.approx(a["initial_margin"], rel=1e-12)
    assert b["maintenance_margin"] == pytest.approx(a["maintenance_margin"], rel=1e-12)
    assert b["positions"] == a["positions"]
    assert svc.container.repo.last_seq() == seq  # nothing stored


def test_page_and_static_files_are_served_with_a_strict_policy(svc: Service) -> None:
    r = svc.client.get("/")
    assert r.status_code == 200 and "marginproof console" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    js = svc.client.get("/console/static/verify.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    for bad in ("/console/static/../router.py", "/console/static/%2e%2e/router.py",
                "/console/static/nope.js", "/console/static/"):
        assert svc.client.get(bad).status_code == 404, bad


def test_report_links_are_short_lived_capabilities_inside_the_reports_directory(
        svc: Service) -> None:
    reps = svc.client.get("/console/api/reports", headers=svc.op()).json()["reports"]
    (rep,) = reps
    r = svc.client.get(rep["url"])
    assert r.status_code == 200 and "stress" in r.text
    assert r.headers["content-security-policy"].startswith("sandbox")
    token = rep["url"].split("/")[3]
    exp, mac = token.split("-")
    assert svc.client.get(rep["url"].replace(mac, "0" * len(mac))).status_code == 401
    assert svc.client.get(rep["url"].replace(exp, str(int(time.time()) - 1))).status_code == 401
    for evil in ("stress/../../outside.html", "../outside.html"):
        r = svc.client.get(f"/console/reports/{token}/{evil}")
        assert r.status_code in (401, 404), evil


def test_the_stream_authenticates_like_the_service_and_filters_by_account(svc: Service) -> None:
    with pytest.raises(WebSocketDisconnect) as exc, \
            svc.client.websocket_connect("/console/api/stream") as ws:
        ws.receive_json()
    assert exc.value.code == 4401
    bob = svc.account_key("bob")
    with svc.client.websocket_connect("/console/api/stream",
                                      subprotocols=["mp.v1", f"mp.key.{bob}"]) as ws:
        hello = ws.receive_json()
        assert hello == {"type": "hello", "key_id": bob.split("_")[1], "scope": "account",
                         "account_id": "bob"}
        for acc in ("alice", "bob"):
            r = svc.client.post(f"/accounts/{acc}/fills", headers=svc.op(),
                                json={"instrument": "BTC-PERPETUAL", "quantity": 100.0})
            assert r.status_code == 202
        seen: list[dict[str, Any]] = []
        while not any(m["account_id"] == "bob" for m in seen):
            msg = ws.receive_json()
            assert msg["type"] == "update"
            seen += msg["margins"]
            assert "alice" not in str(msg)
    with svc.client.websocket_connect("/console/api/stream", headers={"X-API-Key": svc.operator_key}
                                      ) as ws:
        assert ws.receive_json()["scope"] == "operator"




def test_stale_feeds_and_scheduled_parameters_reach_every_console(tmp_path: Path) -> None:
    from marginproof.engine.entries import EntryKind
    from marginproof.storage.base import NewEntry

    with running_service(tmp_path, params_min_notice_s=60.0) as s:
        pos, coll = demo_positions()
        s.client.post("/accounts", json={"account_id": "alice", "positions": pos,
                                         "collateral": coll}, headers=s.op())
        s.wait_margin("alice")
        alice = s.account_key("alice")
        with s.client.websocket_connect("/console/api/stream",
                                        subprotocols=["mp.v1", f"mp.key.{alice}"]) as ws:
            assert ws.receive_json()["type"] == "hello"
            s.container.gateway.append([NewEntry(EntryKind.FEED_STATUS, {
                "stream": "deribit:ticker.BTC", "underlying": "BTC", "status": "stale",
                "reason": "no message for 30 s"}, "watchdog")])
            params = dict(s.container.engine_model().params)
            r = s.client.put("/parameters/grid", headers=s.op(), json={
                "params": params, "effective_at": "2099-01-01T00:00:00Z"})
            assert r.status_code == 202
            types: set[str] = set()
            while not {"feed_alert", "params_scheduled"} <= types:
                msg = ws.receive_json()
                types |= {e["type"] for e in msg["events"]}
        ov = s.client.get("/console/api/overview", headers={"X-API-Key": alice}).json()
        assert ov["alerts"]["degraded_underlyings"] == ["BTC"]
        (sched,) = ov["alerts"]["scheduled"]
        assert sched["model"] == "grid" and sched["effective_at_ms"] == 4070908800000
