"""The feedback loop through the service: live backtest -> announced proposal -> approval."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomli_w
from fastapi.testclient import TestClient

from marginproof.bootstrap import Container, bootstrap
from marginproof.config.params import config_dir, load_toml
from marginproof.config.settings import Settings
from marginproof.demo.book import demo_market
from marginproof.engine.entries import EntryKind
from marginproof.io.formats import market_to_dict
from marginproof.service.app import create_app
from marginproof.service.auth import create_key
from marginproof.storage.base import NewEntry

HOUR = 3_600_000
DAY = 24 * HOUR


class Clock:
    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


@contextmanager
def service(tmp_path: Path, **over: Any) -> Iterator[tuple[TestClient, Container, dict[str, str],
                                                          Clock]]:
    params = load_toml(config_dir() / "models" / "grid.toml")
    params["risk"] = {"scaling": 1.0}
    pfile = tmp_path / "grid.toml"
    pfile.write_bytes(tomli_w.dumps(params).encode())
    t0 = int(demo_market().timestamp.timestamp() * 1000)
    t0 = (t0 // DAY) * DAY + 7 * HOUR  # one hour before the 08:00 settlement
    clock = Clock(t0)
    s = Settings(database_url=f"sqlite:///{tmp_path / 'fb.sqlite'}", params_min_notice_s=60.0,
                 engine_model="grid", engine_params_file=str(pfile), proposal_min_days=3,
                 proposal_notice_s=4 * 86_400.0, **over)
    c = bootstrap(s, clock_ms=clock)
    key, _ = create_key(c.repo, "operator", None, "ops", "test", clock())
    with TestClient(create_app(c)) as client:
        yield client, c, {"X-API-Key": key}, clock


def append(c: Container, kind: EntryKind, body: dict[str, Any]) -> int:
    (r,) = c.gateway.append([NewEntry(kind, body, "test")])
    return r.seq


def tick(c: Container, clock: Clock, px: float) -> int:
    return append(c, EntryKind.TICK, {"source": "t", "stream": "index:BTC", "underlying": "BTC",
                                      "exchange_ms": clock.t, "index_price": px})


def wait(c: Container, seq: int) -> None:
    for r in c.runners:
        assert r.wait_committed(seq, 30.0)


def crash(client: TestClient, c: Container, op: dict[str, str], clock: Clock, days: int) -> int:
    snap = market_to_dict(demo_market())
    r = client.post("/market", json={"snapshot": snap}, headers=op)
    assert r.status_code == 202
    wait(c, r.json()["seq"])  # accounts are checked against the market the engine holds
    for k in range(3):
        r = client.post("/accounts", json={"account_id": f"a{k}", "positions": {
            "BTC_USDC-PERPETUAL": 1.0 + k}, "collateral": {"USDC": 1e6}}, headers=op)
        assert r.status_code == 202, r.text
    px = float(snap["index_prices"]["BTC"])
    seq = 0
    t_day = clock.t
    for d in range(days):
        for h in range(3):
            clock.t = t_day + d * DAY + (2 + h) * HOUR
            px *= 0.91
            seq = tick(c, clock, px)
    wait(c, seq)
    return seq


def test_breach_is_proposed_announced_approved_and_activated(tmp_path: Path) -> None:
    with service(tmp_path) as (client, c, op, clock):
        crash(client, c, op, clock, 5)
        r = client.get("/backtest/live", headers=op)
        assert r.status_code == 200, r.text
        body = r.json()
        grid = body["partitions"][0]["models"]["grid"]
        assert grid["zone"] in ("yellow", "red") and grid["exceptions"] == 12
        assert body["settlement_hour_utc"] == 8
        acc = client.get("/backtest/live/accounts/a0", headers=op).json()
        assert acc["stats"]["grid"]["n_exceptions"] == 4
        props = client.get("/proposals", headers=op).json()["proposals"]
        assert len(props) == 1 and props[0]["status"] == "open"
        p = props[0]
        assert p["effective_at_ms"] == p["created_at_ms"] + 4 * DAY
        assert p["change"]["risk.scaling"][1] > 1.0
        # an account key can read but not approve
        ak = client.post("/keys", json={"scope": "account", "account_id": "a0", "label": "a0"},
                         headers=op).json()["key"]
        assert client.get("/proposals", headers={"X-API-Key": ak}).status_code == 200
        assert client.post(f"/proposals/{p['proposal_id']}/approve",
                           headers={"X-API-Key": ak}).status_code == 403
        assert client.get("/backtest/live/accounts/a1",
                          headers={"X-API-Key": ak}).status_code == 403
        r = client.post(f"/proposals/{p['proposal_id']}/approve", headers=op)
        assert r.status_code == 202, r.text
        ch = r.json()["change"]
        assert ch["params_hash"] == p["params_hash"] and ch["effective_at_ms"] == \
            p["effective_at_ms"]
        assert client.post(f"/proposals/{p['proposal_id']}/approve",
                           headers=op).status_code in (202, 409)
        wait(c, ch["log_seq"])
        got = client.get(f"/proposals/{p['proposal_id']}", headers=op).json()
        assert got["status"] == "approved"
        sched = client.get("/parameters", headers=op).json()["scheduled"]
        assert [s["params_hash"] for s in sched] == [p["params_hash"]]
        # at its time it takes effect
        clock.t = p["effective_at_ms"] + 1
        seq = append(c, EntryKind.TRANSFER, {"account_id": "a0", "asset": "USDC", "amount": 1.0})
        wait(c, seq)
        assert client.get(f"/proposals/{p['proposal_id']}", headers=op).json()["status"] == \
            "active"
        assert client.get("/parameters", headers=op).json()["params_hash"] == p["params_hash"]
        assert client.get("/proposals/nope", headers=op).status_code == 404


def test_auto_approve_setting(tmp_path: Path) -> None:
    with service(tmp_path, auto_approve_proposals=True) as (client, c, op, clock):
        crash(client, c, op, clock, 5)
        end = time.monotonic() + 30.0
        while True:  # the approval is appended by the engine thread's listener, then applied
            props = client.get("/proposals", headers=op).json()["proposals"]
            if props and props[0]["status"] != "open" or time.monotonic() > end:
                break
            time.sleep(0.05)
        assert len(props) == 1 and props[0]["status"] == "approved"
        changes = client.get("/parameters/changes", headers=op).json()["changes"]
        assert any(ch["params_hash"] == props[0]["params_hash"] and
                   ch["changed_by"].startswith("auto-approve") for ch in changes)


def test_bad_live_path_parameters_are_rejected_when_scheduled(tmp_path: Path) -> None:
    with service(tmp_path) as (client, c, op, clock):
        params = dict(c.engine_model().params)
        params["apc"] = {"speed_limit": {"enabled": True, "down_per_hour": 5.0}}
        r = client.put("/parameters/grid", json={"params": params,
                                                 "effective_at": "2099-01-01T00:00:00Z"},
                       headers=op)
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["params.apc.speed_limit.down_per_hour"]
