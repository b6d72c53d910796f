"""``POST /accounts/{id}/hedge`` and ``POST /whatif/hedge``: verified suggestions, nothing
stored, access rules, the bounded executor's quota, what-if latency under hedge load."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _service_helpers import Service, demo_positions, running_service

from marginproof.service.routes.hedge import HedgePool


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("hedge")) as s:
        pos, coll = demo_positions()
        r = s.client.post("/accounts", json={"account_id": "desk-1", "positions": pos,
                                             "collateral": coll}, headers=s.op())
        assert r.status_code == 202
        s.wait_margin("desk-1", r.json()["seq"])
        yield s


def test_account_hedge_is_verified_and_stores_nothing(svc: Service) -> None:
    log_before = svc.container.repo.last_seq()
    r = svc.client.post("/accounts/desk-1/hedge", json={"model": "fhs", "max_instruments": 2},
                        headers=svc.op())
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["account_id"] == "desk-1" and d["status"] == "suggested"
    assert 1 <= len(d["trades"]) <= 2 and d["im_after_usd"] < d["im_before_usd"]
    # re-margin the suggestion through the what-if: the same IM
    w = svc.client.post("/whatif", json={"model": "fhs", "account_id": "desk-1",
                                         "trades": d["whatif_trades"]}, headers=svc.op())
    assert w.status_code == 200
    assert w.json()["initial_margin"] == pytest.approx(d["im_after"], rel=1e-9)
    assert svc.container.repo.last_seq() == log_before


def test_equity_target_uses_the_engine_equity(svc: Service) -> None:
    latest = svc.client.get("/accounts/desk-1/margin", headers=svc.op()).json()
    r = svc.client.post("/accounts/desk-1/hedge", json={"target": {"kind": "equity"}},
                        headers=svc.op())
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["equity_before_usd"] == pytest.approx(latest["equity"])
    assert d["status"] == "already_met"


def test_whatif_hedge_of_a_hypothetical_book(svc: Service) -> None:
    r = svc.client.post("/whatif/hedge", json={"positions": {"BTC-PERPETUAL": 100_000},
                                               "candidates": ["BTC-PERPETUAL"]},
                        headers=svc.op())
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["whatif_trades"] == [{"instrument": "BTC-PERPETUAL", "quantity": -100_000.0}]
    assert d["im_after_usd"] == 0.0


def test_access_rules_and_bad_input(svc: Service) -> None:
    key = svc.account_key("desk-1")
    own = svc.client.post("/accounts/desk-1/hedge", json={"max_instruments": 1},
                          headers={"X-API-Key": key})
    assert own.status_code == 200
    other = svc.client.post("/accounts/desk-2/hedge", json={}, headers={"X-API-Key": key})
    assert other.status_code == 403
    assert svc.client.post("/whatif/hedge", json={"positions": {"BTC-PERPETUAL": 1}}
                           ).status_code == 401
    assert svc.client.post("/accounts/nobody/hedge", json={},
                           headers=svc.op()).status_code == 404
    bad = svc.client.post("/whatif/hedge", json={"positions": {"BTC-PERPETUAL": 1},
                                                 "model": "standard"}, headers=svc.op())
    assert bad.status_code == 422 and "scenario models" in bad.text
    bad = svc.client.post("/whatif/hedge", json={"positions": {"BTC-PERPETUAL": 1},
                                                 "quotes": {"quotes": {"BTC-PERPETUAL": {
                                                     "bid": -1, "bid_size": 1}}}},
                          headers=svc.op())
    assert bad.status_code == 422 and "bid" in bad.text
    bad = svc.client.post("/whatif/hedge", json={"positions": {"BTC-PERPETUAL": 1},
                                                 "time_limit_s": 3600}, headers=svc.op())
    assert bad.status_code == 422


def test_quota_answers_429_beyond_the_requests_in_flight() -> None:
    pool = HedgePool(workers=1, quota=1, kind="thread")
    gate = threading.Event()

    async def main() -> list[object]:
        import marginproof.service.routes.hedge as h

        real = h.hedge_job

        def slow(job: dict) -> dict:  # type: ignore[type-arg]
            gate.wait(5)
            return {"ok": True, "result": {}}

        h.hedge_job = slow  # type: ignore[assignment]
        try:
            first = asyncio.ensure_future(pool.run({}, 10.0))
            await asyncio.sleep(0.05)
            second = await asyncio.gather(pool.run({}, 10.0), return_exceptions=True)
            gate.set()
            return [await first, *second]
        finally:
            h.hedge_job = real  # type: ignore[assignment]
            pool.shutdown()

    first, second = asyncio.run(main())
    assert first == {"ok": True, "result": {}}
    assert getattr(second, "status_code", None) == 429


def test_whatif_latency_is_unaffected_by_hedge_load(tmp_path: Path) -> None:
    """Hedges run in their own process: what-if latency with 2 hedges in flight stays within
    a few times the idle latency (a CPU-bound hedge on the event loop would add seconds)."""
    with running_service(tmp_path) as s:
        body = {"positions": {"BTC-PERPETUAL": -60_000, "ETH_USDC-PERPETUAL": 20}}

        def whatif_ms(n: int) -> float:
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                assert s.client.post("/whatif", json=body, headers=s.op()).status_code == 200
                out.append(1e3 * (time.perf_counter() - t0))
            return statistics.median(out)

        warm = s.client.post("/whatif/hedge", json={**body, "model": "dynamic"},
                             headers=s.op())
        assert warm.status_code == 200, warm.text
        idle = whatif_ms(30)
        done: list[int] = []

        def hedge() -> None:
            r = s.client.post("/whatif/hedge", json={**body, "model": "dynamic",
                                                     "max_instruments": 3}, headers=s.op())
            done.append(r.status_code)

        ts = [threading.Thread(target=hedge) for _ in range(2)]
        for t in ts:
            t.start()
        time.sleep(0.2)
        busy = whatif_ms(30)
        for t in ts:
            t.join(60)
        assert done == [200, 200]
        assert busy < max(5.0 * idle, idle + 25.0), (idle, busy)
