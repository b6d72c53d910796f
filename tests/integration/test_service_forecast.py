"""``GET /accounts/{id}/forecast`` and the ``margin_warning`` evaluator (SQLite, in-process bus)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _service_helpers import Service, demo_positions, running_service


@pytest.fixture
def svc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    monkeypatch.setenv("MARGINPROOF_FORECAST_WARNING_INTERVAL_S", "0.3")
    monkeypatch.setenv("MARGINPROOF_FORECAST_WARNING_PATHS", "200")
    monkeypatch.setenv("MARGINPROOF_FORECAST_MAX_PATHS", "3000")
    with running_service(tmp_path) as s:
        yield s


def _thin_account(svc: Service, account_id: str, cushion: float = 1.02) -> dict[str, float]:
    """The demo book with USDC set so that equity = cushion x IM (status ok, calls likely)."""
    pos, coll = demo_positions()
    r = svc.client.post("/accounts", json={"account_id": account_id, "positions": pos,
                                           "collateral": coll}, headers=svc.op())
    assert r.status_code == 202, r.text
    m = svc.wait_margin(account_id, r.json()["seq"])
    amount = cushion * m["initial_margin"] - m["equity"]
    r = svc.client.post(f"/accounts/{account_id}/transfers",
                        json={"asset": "USDC", "amount": amount}, headers=svc.op())
    return svc.wait_margin(account_id, r.json()["seq"])


def test_forecast_starts_from_the_engines_margin_and_is_deterministic(svc: Service) -> None:
    m = _thin_account(svc, "desk-f")
    q = "/accounts/desk-f/forecast?n_paths=300&horizon_hours=12&seed=4"
    a = svc.client.get(q, headers=svc.op())
    assert a.status_code == 200, a.text
    d = a.json()
    assert d["account_id"] == "desk-f" and d["model"] == m["model"] == "grid"
    assert d["params_hash"] == m["params_hash"]
    assert d["now"]["initial_margin"] == pytest.approx(m["initial_margin"], rel=1e-12)
    assert d["now"]["equity"] == pytest.approx(m["equity"], rel=1e-12)
    assert d["now"]["status"] == m["status"] == "ok"
    assert len(d["hours"]) == 13 and d["seed"] == 4
    assert 0.05 < d["p_call_within_horizon"] <= 1.0
    assert d["p_call_by_step"] == sorted(d["p_call_by_step"])
    assert {"0.05", "0.5", "0.95"} <= set(d["quantiles"]["equity"])
    b = svc.client.get(q, headers=svc.op()).json()
    assert b["forecast_hash"] == d["forecast_hash"]
    assert b["p_call_by_step"] == d["p_call_by_step"]


def test_forecast_access_and_bad_input(svc: Service) -> None:
    _thin_account(svc, "desk-a")
    _thin_account(svc, "desk-b")
    key = svc.account_key("desk-a")
    own = svc.client.get("/accounts/desk-a/forecast?n_paths=50&horizon_hours=2&levels=false",
                         headers={"X-API-Key": key})
    assert own.status_code == 200, own.text
    assert svc.client.get("/accounts/desk-b/forecast?n_paths=50",
                          headers={"X-API-Key": key}).status_code == 403
    assert svc.client.get("/accounts/desk-a/forecast").status_code == 401
    assert svc.client.get("/accounts/nobody/forecast?n_paths=50",
                          headers=svc.op()).status_code == 404
    for bad in ("n_paths=0", "n_paths=5000", "horizon_hours=-1", "method=fast",
                "horizon_hours=5&step_hours=2", "seed=-3"):
        r = svc.client.get(f"/accounts/desk-a/forecast?{bad}", headers=svc.op())
        assert r.status_code == 422, (bad, r.text)


def test_margin_warning_is_published_to_the_accounts_stream(svc: Service) -> None:
    _thin_account(svc, "desk-w", cushion=1.01)
    key = svc.account_key("desk-w")
    deadline = time.monotonic() + 60
    with svc.client.websocket_connect(f"/accounts/desk-w/stream?api_key={key}") as ws:
        while time.monotonic() < deadline:
            msg = ws.receive_json()
            if msg.get("type") == "margin_warning":
                break
        else:  # pragma: no cover - reported by the assertion
            raise AssertionError("no margin_warning within 60 s")
    assert msg["account_id"] == "desk-w" and msg["p_call"] >= msg["threshold"] == 0.05
    assert msg["model"] == "grid" and msg["forecast_hash"] and msg["horizon_hours"] == 24.0
    w = svc.client.app.state.margin_warnings  # type: ignore[attr-defined]
    assert w.state["desk-w"]["active"] is True and w.cycles >= 1
    st = svc.client.get("/accounts/desk-w/forecast?n_paths=50&horizon_hours=1&levels=false",
                        headers=svc.op()).json()
    assert st["warning_state"]["active"] is True
