"""The service as an attacker and a faulty caller meet it: each class of bad input is refused
with a 4xx (never a 5xx) and changes nothing; one caller cannot stall the service; refusals
and revocations of streams use the documented close codes; report links open only their own
report; accounts are accepted exactly as the CLI accepts them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import websockets
from _service_helpers import Service, demo_positions, running_service

from marginproof.engine.entries import EntryKind
from marginproof.service.app import create_app
from marginproof.storage.base import NewEntry

EX = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("hard")) as s:
        pos, coll = demo_positions()
        r = s.client.post("/accounts", json={"account_id": "alice", "positions": pos,
                                             "collateral": coll}, headers=s.op())
        assert r.status_code == 202, r.text
        s.wait_margin("alice")
        yield s


def _state(s: Service) -> tuple[Any, ...]:
    repo = s.container.repo
    return (repo.last_seq(), tuple(repo.list_accounts()), len(repo.list_keys()),
            len(repo.params_changes()))


def _raw(s: Service, method: str, url: str, text: str | bytes, key: str | None = "op",
         **headers: str) -> Any:
    h = {"content-type": "application/json", **headers}
    if key == "op":
        h["X-API-Key"] = s.operator_key
    elif key is not None:
        h["X-API-Key"] = key
    return s.client.request(method, url, content=text, headers=h)


POS = '{"instrument": "BTC-PERPETUAL", "quantity": %s}'
BAD_BODIES = {
    "nan": '{"account_id": "x1", "positions": {"BTC-PERPETUAL": NaN}}',
    "infinity": '{"account_id": "x1", "positions": {"BTC-PERPETUAL": Infinity}}',
    "minus_infinity": '{"account_id": "x1", "positions": {"BTC-PERPETUAL": -Infinity}}',
    "overflow": '{"account_id": "x1", "positions": {"BTC-PERPETUAL": 1e400}}',
    "huge_finite": '{"account_id": "x1", "positions": {"BTC-PERPETUAL": 1e308}}',
    "huge_int": '{"account_id": "x1", "positions": {"BTC-PERPETUAL": 1' + "0" * 30 + "}}",
    "duplicate_key": '{"account_id": "x1", "account_id": "x2", "positions": {}}',
    "duplicate_instrument": '{"account_id": "x1", "positions": {"BTC-PERPETUAL": 1, '
                            '"BTC-PERPETUAL": 2}}',
    "bool_as_number": '{"account_id": "x1", "positions": {"BTC-PERPETUAL": true}}',
    "string_as_number": '{"account_id": "x1", "positions": {"BTC-PERPETUAL": "10"}}',
    "list_line_coerced": '{"account_id": "x1", "positions": [' + POS % '"10"' + "]}",
    "collateral_huge": '{"account_id": "x1", "collateral": {"USDC": 1e300}}',
    "deep": '{"account_id": "x1", "positions": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "malformed": '{"account_id": "x1", ',
    "not_utf8": b'{"account_id": "\xff\xfe"}',
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_json_bodies_get_422_as_valid_json_and_change_nothing(svc: Service,
                                                                  case: str) -> None:
    before = _state(svc)
    for url in ("/accounts", "/whatif", "/accounts/alice/fills", "/console/api/whatif"):
        r = _raw(svc, "POST", url, BAD_BODIES[case])
        assert r.status_code == 422, (url, r.status_code, r.text[:200])
        body = json.loads(r.text, parse_constant=lambda c: pytest.fail(f"{c} in the reply"))
        assert "detail" in body
    assert _state(svc) == before


@pytest.mark.parametrize(("url", "body"), [
    ("/accounts/alice/fills", {"instrument": "BTC-PERPETUAL", "quantity": 1e308}),
    ("/accounts/alice/transfers", {"asset": "USDC", "amount": 1e300}),
    ("/accounts/alice/fills", {"instrument": "BTC-PERPETUAL", "quantity": True}),
    ("/whatif", {"positions": {"BTC-PERPETUAL": 1e300}}),
    ("/whatif", {"trades": [{"instrument": "BTC-PERPETUAL", "quantity": "5"}],
                 "account_id": "alice"}),
    ("/whatif", {"positions": {"BTC-PERPETUAL": 1}, "detail": "yes"}),
    ("/market", {"snapshot": {"timestamp": "2022-04-15T00:00:00Z",
                              "index_prices": {"BTC": 1e300}}}),
])
def test_absurd_finite_and_coerced_values_are_refused(svc: Service, url: str,
                                                       body: dict[str, Any]) -> None:
    before = _state(svc)
    r = svc.client.post(url, json=body, headers=svc.op())
    assert r.status_code == 422, r.text
    assert _state(svc) == before


def test_body_size_is_limited_before_the_key_is_checked(tmp_path: Path) -> None:
    with running_service(tmp_path, seed_market=False, max_body_bytes=4096) as s:
        before = _state(s)
        big = '{"account_id": "' + "a" * 10_000 + '"}'
        assert _raw(s, "POST", "/accounts", big, key=None).status_code == 413
        assert _raw(s, "POST", "/accounts", big).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
            for _ in range(10):
                yield b" " * 1000

        r = s.client.post("/accounts", content=chunks(), headers={
            "X-API-Key": s.operator_key, "content-type": "application/json"})
        assert r.status_code == 413
        r = _raw(s, "POST", "/accounts", '{"account_id": "x"}', key=None)
        assert r.status_code == 401  # refused before the body is read
        assert _raw(s, "POST", "/whatif", "{}", key="mp_bogus_key").status_code == 401
        assert _state(s) == before


@pytest.mark.parametrize("url", ["/accounts/%00", "/accounts/a%00b/margin",
                                 "/accounts?after=%00", "/console/reports/1-x/a%00.html",
                                 "/console/static/%00", "/parameters/gr%00id"])
def test_a_url_with_a_nul_byte_is_a_4xx(svc: Service, url: str) -> None:
    for headers in ({}, svc.op()):
        r = svc.client.get(url, headers=headers)
        assert 400 <= r.status_code < 500, (url, r.status_code)


def test_each_key_is_rate_limited_with_retry_after(tmp_path: Path) -> None:
    with running_service(tmp_path, rate_limit_per_s=0.5, rate_limit_burst=3) as s:
        codes = [s.client.get("/parameters", headers=s.op()).status_code for _ in range(5)]
        assert codes[:1] == [200] and 429 in codes
        r = s.client.get("/parameters", headers=s.op())
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert s.client.get("/health").status_code == 200  # public routes are not keyed


def test_a_full_whatif_lane_answers_429_and_health_stays_up(tmp_path: Path) -> None:
    with running_service(tmp_path, whatif_concurrency=1, whatif_queue=0) as s:
        pool, loop = s.container.pool, s.container.loop
        assert loop is not None
        busy = asyncio.run_coroutine_threadsafe(pool.run("whatif", time.sleep, 3.0), loop)
        deadline = time.monotonic() + 20
        while pool.stats()["whatif"]["running"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        body = {"positions": {"BTC-PERPETUAL": 1000}}
        r = s.client.post("/whatif", json=body, headers=s.op())
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        h = s.client.get("/health").json()
        assert h["workers"]["whatif"]["running"] == 1 and h["workers"]["whatif"]["refused"] >= 1
        busy.result(timeout=30)
        r = s.client.post("/whatif", json=body, headers=s.op())
        assert r.status_code == 200, r.text


def test_whatif_parameters_are_capped(svc: Service) -> None:
    params = json.loads(json.dumps(svc.container.whatif_model("mc").params, default=dict))
    params["mc"]["log2_points"] = 20
    r = svc.client.post("/whatif", json={"model": "mc", "params": params,
                                         "positions": {"BTC-PERPETUAL": 1000}},
                        headers=svc.op())
    assert r.status_code == 422 and "log2_points" in r.text


# -- accounts: what the CLI accepts, in the files' shape --------------------------------------
@pytest.mark.parametrize(("positions", "collateral", "field"), [
    ({"SOL-PERPETUAL": 10.0}, {}, "positions.SOL-PERPETUAL"),
    ({"FOO-PERPETUAL": 10.0}, {}, "positions.FOO-PERPETUAL"),
    ({"NOT-AN-INSTRUMENT": 1.0}, {}, "positions.NOT-AN-INSTRUMENT"),
    ({"BTC-1APR22-40000-C": -1.0}, {}, "positions.BTC-1APR22-40000-C"),  # expired
    ({"BTC-PERPETUAL": 100.0}, {"DOGE": -5.0}, "collateral.DOGE"),
    ({"BTC-PERPETUAL": 100.0}, {"DOGE": 5.0}, "collateral.DOGE"),
])
def test_accounts_the_service_cannot_margin_are_refused(svc: Service, positions: Any,
                                                        collateral: Any, field: str) -> None:
    before = _state(svc)
    r = svc.client.post("/accounts", json={"account_id": "refused", "positions": positions,
                                           "collateral": collateral}, headers=svc.op())
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == [field]
    assert _state(svc) == before


def test_a_known_but_unpriceable_instrument_is_accepted_as_degraded(svc: Service) -> None:
    opt = "BTC-30DEC22-155000-C"  # a strike the market has no vol or mark for
    assert opt not in svc.container.market().implied_vols  # type: ignore[union-attr]
    r = svc.client.post("/accounts", json={"account_id": "unpriced", "positions": {opt: -1.0},
                                           "collateral": {"USDC": 1000.0}}, headers=svc.op())
    assert r.status_code == 202 and r.json()["status"] == "degraded"
    assert opt in r.json()["unpriced"]


def test_a_portfolio_file_is_an_account_body_and_a_whatif_body(svc: Service) -> None:
    doc = json.loads((EX / "portfolio_demo.json").read_text())
    r = svc.client.post("/accounts", json={**doc, "account_id": "from-file"},
                        headers=svc.op())
    assert r.status_code == 202, r.text
    m = svc.wait_margin("from-file", r.json()["seq"])
    acc = svc.client.get("/accounts/from-file", headers=svc.op()).json()
    assert acc["collateral"] == doc["collateral"]
    assert {p["instrument"] for p in doc["positions"]} == set(acc["positions"])
    trade = [{"instrument": "BTC-PERPETUAL", "quantity": -10_000}]
    w = svc.client.post("/whatif", json={"portfolio": doc, "trades": trade}, headers=svc.op())
    assert w.status_code == 200, w.text
    out = w.json()
    assert out["before"]["initial_margin"] == pytest.approx(m["initial_margin"], rel=1e-9)
    assert out["delta_initial_margin"] == pytest.approx(
        out["after"]["initial_margin"] - out["before"]["initial_margin"])
    assert out["initial_margin"] == out["after"]["initial_margin"]
    assert out["equity_usd"] == pytest.approx(m["equity"], rel=1e-9)  # the engine's equity
    assert out["excess_over_initial_margin_usd"] == pytest.approx(
        out["equity_usd"] - out["initial_margin"])
    # the same through the account: identical before, and the file's label is not a base
    a = svc.client.post("/whatif", json={"account_id": "from-file", "trades": trade},
                        headers=svc.op()).json()
    assert a["before"]["initial_margin"] == pytest.approx(out["before"]["initial_margin"])
    assert a["base_account"] == "from-file" and out["base_account"] is None


def test_accounts_created_through_the_log_answer(svc: Service) -> None:
    pos, coll = demo_positions()
    (res,) = svc.container.gateway.append([NewEntry(EntryKind.ACCOUNT, {
        "account_id": "via-log", "positions": pos, "collateral": coll}, "workload")])
    svc.wait_margin("via-log", res.seq)
    r = svc.client.get("/accounts/via-log", headers=svc.op())
    assert r.status_code == 200 and r.json()["positions"] == pos
    r = svc.client.post("/accounts/via-log/fills", json={"instrument": "BTC-PERPETUAL",
                                                         "quantity": 10}, headers=svc.op())
    assert r.status_code == 202


def test_a_poisoned_entry_in_the_log_is_refused_reported_and_the_engine_goes_on(
        tmp_path: Path) -> None:
    with running_service(tmp_path) as s:
        pos, coll = demo_positions()
        s.container.gateway.append([
            NewEntry(EntryKind.ACCOUNT, {"account_id": "a", "positions": pos,
                                         "collateral": coll}, "old-version"),
            NewEntry(EntryKind.FILL, {"account_id": "a", "instrument": "BTC-PERPETUAL",
                                      "quantity": 1e308}, "old-version")])
        (res,) = s.container.gateway.append([NewEntry(EntryKind.FILL, {
            "account_id": "a", "instrument": "BTC-PERPETUAL", "quantity": 10.0}, "ops")])
        m = s.wait_margin("a", res.seq)
        assert all(isinstance(m[k], float) for k in ("initial_margin", "equity"))
        h = s.client.get("/health").json()
        assert h["status"] == "degraded"
        assert [x["seq"] for x in h["refused_entries"]] == [res.seq - 1]
        acc = s.client.get("/accounts/a", headers=s.op()).json()
        assert acc["positions"]["BTC-PERPETUAL"] == pos["BTC-PERPETUAL"] + 10.0


# -- streams: close codes on the wire, revocation --------------------------------------------
@contextlib.contextmanager
def _real_server(s: Service) -> Iterator[str]:
    """The same container served by uvicorn on a free loopback port (real handshakes)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(s.container, manage_lifecycle=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           lifespan="on"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        th.join(10)


async def _close_code(url: str, headers: dict[str, str] | None = None,
                      after: Any = None) -> int | None:
    async with websockets.connect(url, additional_headers=headers or {},
                                  open_timeout=10) as ws:
        if after is not None:
            await asyncio.to_thread(after)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None


def test_stream_refusals_are_close_codes_and_revocation_closes_open_streams(
        svc: Service) -> None:
    own = svc.account_key("alice")  # alice's own key
    svc.client.post("/accounts", json={"account_id": "bob2", "positions": {},
                                       "collateral": {"USDC": 1.0}}, headers=svc.op())
    other = svc.account_key("bob2")
    with _real_server(svc) as base:
        url = f"{base}/accounts/alice/stream"
        assert asyncio.run(_close_code(url)) == 4401
        assert asyncio.run(_close_code(url, {"X-API-Key": "mp_x_garbage"})) == 4401
        assert asyncio.run(_close_code(url, {"X-API-Key": other})) == 4403
        assert asyncio.run(_close_code(f"{base}/console/api/stream")) == 4401
        key_id = own.split("_")[1]

        def revoke() -> None:
            time.sleep(0.3)
            assert svc.client.delete(f"/keys/{key_id}", headers=svc.op()).status_code == 204

        t0 = time.monotonic()
        assert asyncio.run(_close_code(url, {"X-API-Key": own}, revoke)) == 4401
        assert time.monotonic() - t0 < 8
        assert asyncio.run(_close_code(url, {"X-API-Key": own})) == 4401  # and stays out


# -- report links ------------------------------------------------------------------------------
def test_a_report_link_opens_only_its_own_report(tmp_path: Path) -> None:
    from marginproof.web.config import WebSettings

    rep = tmp_path / "reports"
    (rep / "backtest" / "dyn").mkdir(parents=True)
    (rep / "backtest" / "dyn" / "report.html").write_text("<title>Backtest of dyn</title>")
    (rep / "backtest" / "dyn" / "chart.png").write_bytes(b"\x89PNG")
    (rep / "stress.md").write_text("# Stress")
    (rep / "secret.json").write_text('{"title": "other report"}')
    with running_service(tmp_path) as s:
        s.client.app.state.web_settings = WebSettings(reports_dir=str(rep))
        reps = {r["path"]: r["url"] for r in s.client.get(
            "/console/api/reports", headers=s.op()).json()["reports"]}
        md = reps["stress.md"]
        tok = md.split("/")[3]
        assert s.client.get(md).status_code == 200
        assert s.client.get(f"/console/reports/{tok}/secret.json").status_code == 401
        assert s.client.get(f"/console/reports/{tok}/backtest/dyn/report.html").status_code \
            == 401
        folder = reps["backtest/dyn/report.html"]
        ftok = folder.split("/")[3]
        assert s.client.get(f"/console/reports/{ftok}/backtest/dyn/chart.png").status_code == 200
        assert s.client.get(f"/console/reports/{ftok}/stress.md").status_code == 401
        assert s.client.get(f"/console/reports/{'9' * 5000}-x/stress.md").status_code == 401
