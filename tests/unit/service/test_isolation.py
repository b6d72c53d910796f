"""Service isolation pieces on their own: the worker pool's lanes, the per-key token bucket,
the runner's quarantine of poisoned log entries (a real SQLite log)."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import pytest

from marginproof.demo.book import demo_account
from marginproof.engine.core import EngineConfig, MarginEngine
from marginproof.engine.entries import EntryKind, LogEntry
from marginproof.io.formats import market_to_dict
from marginproof.models.grid import GridModel
from marginproof.service import runner as runner_mod
from marginproof.service.ratelimit import RateLimiter
from marginproof.service.runner import EngineRunner
from marginproof.service.tasks import market_from_state, market_state
from marginproof.service.workers import LaneQuota, Saturated, WorkPool
from marginproof.storage.base import NewEntry
from marginproof.storage.factory import open_repository


# -- worker pool -----------------------------------------------------------------------------
def _square(x: float) -> float:
    return x * x


def _slow(s: float) -> float:
    time.sleep(s)
    return s


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_lanes_have_separate_quotas_and_refuse_when_full(mode: str) -> None:
    pool = WorkPool(2, {"whatif": LaneQuota(1, 1), "hedge": LaneQuota(1, 0)}, mode)  # type: ignore[arg-type]

    async def main() -> None:
        slow = [asyncio.ensure_future(pool.run("whatif", _slow, 0.5)) for _ in range(2)]
        await asyncio.sleep(0.2)
        with pytest.raises(Saturated) as err:  # 1 running + 1 waiting: full
            await pool.run("whatif", _square, 3.0)
        assert err.value.retry_after_s >= 1
        assert await pool.run("hedge", _square, 3.0) == 9.0  # the other lane is not starved
        assert await asyncio.gather(*slow) == [0.5, 0.5]
        assert await pool.run("whatif", _square, 4.0) == 16.0
        st = pool.stats()
        assert st["whatif"]["refused"] == 1 and st["whatif"]["done"] == 3
        assert st["hedge"]["running"] == 0

    try:
        asyncio.run(main())
    finally:
        pool.shutdown()


def _pid() -> int:
    import os

    return os.getpid()


def _die() -> None:
    import os

    os._exit(3)


def test_warm_up_starts_every_process_and_tasks_then_run_there() -> None:
    pool = WorkPool(2, {"w": LaneQuota(2, 16)}, "process")
    try:
        pids = pool.warm_up(_pid)
        assert len(set(pids)) == 2

        async def main() -> set[int]:
            return set(await asyncio.gather(*(pool.run("w", _pid) for _ in range(12))))

        assert asyncio.run(main()) <= set(pids)  # no process started on a request
    finally:
        pool.shutdown()


def test_a_worker_that_dies_fails_its_task_and_is_replaced() -> None:
    from marginproof.service.workers import PoolBroken

    pool = WorkPool(1, {"w": LaneQuota(1, 4)}, "process")

    async def main() -> None:
        before = await pool.run("w", _pid)
        with pytest.raises(PoolBroken):
            await pool.run("w", _die)
        after = await pool.run("w", _pid)
        assert after != before
        assert await pool.run("w", _square, 5.0) == 25.0
        with pytest.raises(ZeroDivisionError):  # an exception in the task crosses intact
            await pool.run("w", divmod, 1, 0)
        assert pool.stats()["w"]["running"] == 0

    try:
        asyncio.run(main())
    finally:
        pool.shutdown()


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_a_timed_out_task_keeps_its_slot_until_it_finishes(mode: str) -> None:
    pool = WorkPool(1, {"x": LaneQuota(1, 0)}, mode)  # type: ignore[arg-type]
    pool.warm_up()

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await pool.run("x", _slow, 0.4, timeout_s=0.05)
        with pytest.raises(Saturated):
            pool.check("x")
        # a worker process imports this module on its first task: give it time, then the
        # slot frees when the task has finished
        deadline = time.monotonic() + 30
        while pool.stats()["x"]["running"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        pool.check("x")
        assert pool.stats()["x"]["done"] == 1

    try:
        asyncio.run(main())
    finally:
        pool.shutdown()


def test_markets_cross_the_process_boundary_unchanged() -> None:
    import pickle

    _, market = demo_account()
    back = market_from_state(pickle.loads(pickle.dumps(market_state(market))))
    assert market_to_dict(back) == market_to_dict(market)


# -- rate limit ------------------------------------------------------------------------------
def test_token_bucket_per_key() -> None:
    now = [0.0]
    lim = RateLimiter(2.0, 4.0, clock=lambda: now[0])
    assert [lim.take("a") for _ in range(4)] == [0.0] * 4
    wait = lim.take("a")
    assert wait == pytest.approx(0.5)
    assert lim.take("b") == 0.0  # other keys are not affected
    now[0] += 0.5
    assert lim.take("a") == 0.0
    assert lim.take("a", cost=3.0) == pytest.approx(1.5)  # refused: nothing spent
    now[0] += 1.5
    assert lim.take("a", cost=3.0) == 0.0
    assert RateLimiter.retry_after(0.01) == "1" and RateLimiter.retry_after(2.2) == "3"


# -- quarantine of poisoned entries -------------------------------------------------------------
class _Fragile(MarginEngine):
    """An engine with a latent bug: an entry marked ``poison`` makes it raise half-way
    (after changing its state), ``nan`` makes it publish a non-finite margin."""

    def apply(self, entry: LogEntry) -> Any:
        if entry.body.get("poison"):
            self.last_seq = entry.seq
            self.im[:] = 123.0  # state changed before the failure
            raise RuntimeError("latent bug")
        out = super().apply(entry)
        if entry.body.get("nan") and out.batch is not None:
            out.batch.initial_margin[:] = math.nan
        return out


def _entries() -> list[NewEntry]:
    acct, market = demo_account()
    pos = {p.instrument.name: p.quantity for p in acct.portfolio.positions}
    acc = {"account_id": "a", "positions": pos, "collateral": dict(acct.collateral)}
    fill = {"account_id": "a", "instrument": "BTC-PERPETUAL", "quantity": 100.0}
    return [NewEntry(EntryKind.MARKET, market_to_dict(market), "t"),
            NewEntry(EntryKind.ACCOUNT, acc, "t"),
            NewEntry(EntryKind.FILL, {**fill, "poison": True}, "old"),
            NewEntry(EntryKind.FILL, fill, "t"),
            NewEntry(EntryKind.FILL, {**fill, "nan": True}, "old"),
            NewEntry(EntryKind.FILL, fill, "t")]


def test_a_poisoned_entry_is_quarantined_the_engine_rebuilt_and_a_restart_agrees(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_mod, "MarginEngine", _Fragile)
    url = f"sqlite:///{tmp_path / 'q.sqlite'}"
    repo = open_repository(url)
    repo.append(_entries())
    r = EngineRunner(repo, GridModel(), EngineConfig())
    assert r.run_until_idle() == 6
    assert sorted(r.quarantined) == [3, 5]
    m = r.engine.account_margin("a")
    assert m is not None and math.isfinite(m.initial_margin) and m.initial_margin != 123.0
    # the same state as an engine that never saw the poisoned entries
    clean = MarginEngine(GridModel(), EngineConfig())
    for e in repo.read(0, limit=100):
        if e.seq in (3, 5):
            clean.skip_to(e.seq, e.logged_at_ms)
        else:
            clean.apply(e)
    assert r.engine.state_digest() == clean.state_digest()
    pos, _ = r.engine.account_positions("a")
    assert pos["BTC-PERPETUAL"] == clean.account_positions("a")[0]["BTC-PERPETUAL"]
    events = [ev for ev in repo.account_events("a", 100)]  # committed rows are finite
    assert all("NaN" not in str(ev) for ev in events)
    assert [x["problem"] for x in r.refused] == ["quarantined_entry"] * 2
    # restart: recovery quarantines the same entries, deterministically
    r2 = EngineRunner(repo, GridModel(), EngineConfig())
    assert r2.recover() == 6
    assert sorted(r2.quarantined) == [3, 5]
    assert r2.engine.state_digest() == clean.state_digest()
    latest = repo.latest_margin("a")
    assert latest is not None and math.isfinite(latest["initial_margin"])
    repo.close()


def test_a_runner_with_waiting_entries_and_no_progress_is_stalled(tmp_path: Path) -> None:
    repo = open_repository(f"sqlite:///{tmp_path / 's.sqlite'}")
    r = EngineRunner(repo, GridModel(), EngineConfig())
    repo.append(_entries()[:2])
    assert not r.stalled(10.0, repo.last_seq())  # just started
    r.last_progress -= 60
    assert r.stalled(10.0, repo.last_seq())
    r.run_until_idle()
    assert not r.stalled(10.0, repo.last_seq())
    repo.close()
