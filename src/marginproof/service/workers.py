"""A bounded pool for CPU-heavy requests, with a quota per lane (what-if, hedge, forecast ...).

Heavy work never runs on the event loop: it goes to worker *processes* (a pricing loop holds
the GIL, so threads would still stall the loop and the engine threads). Each lane -- one
family of endpoints -- has its own quota: ``concurrency`` tasks running at once and ``queue``
more waiting. A request beyond that is refused at once with :class:`Saturated` (the service
answers 429 with ``Retry-After``), so one caller flooding one endpoint can neither stall the
service nor starve the other lanes.

Use from a route::

    pool = container.pool
    pool.add_lane("hedge", LaneQuota(concurrency=1, queue=4))   # once, at start-up
    result = await pool.run("hedge", hedge_task, args...)       # a module-level function

Task functions and their arguments must be picklable (module-level functions, plain data).
Processes come from a ``forkserver`` (started once per Python process, modules preloaded), so
a worker starts in tens of milliseconds and inherits no thread of the service; they are started
on first use. ``mode="thread"`` runs tasks in threads instead (embedded use, debugging).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import math
import multiprocessing
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

T = TypeVar("T")

PRELOAD = ["marginproof.service.tasks"]
_ctx_lock = threading.Lock()
_ctx: Any = None


def _context() -> Any:
    """The process-wide forkserver context (preloaded with the task modules)."""
    global _ctx
    with _ctx_lock:
        if _ctx is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            _ctx = ctx
        return _ctx


class Saturated(Exception):  # noqa: N818 - a condition, not an error of the caller
    """The lane is full: retry after ``retry_after_s`` seconds."""

    def __init__(self, lane: str, retry_after_s: int) -> None:
        self.lane = lane
        self.retry_after_s = retry_after_s
        super().__init__(f"{lane}: saturated, retry after {retry_after_s} s")


class PoolBroken(Exception):  # noqa: N818
    """A worker died (killed, out of memory) while running the task; the pool restarts."""


@dataclass(frozen=True, slots=True)
class LaneQuota:
    """How much of the pool one lane may use: ``concurrency`` running, ``queue`` waiting."""

    concurrency: int = 2
    queue: int = 16

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.queue < 0:
            raise ValueError("concurrency must be >= 1 and queue >= 0")


@dataclass
class _Lane:
    quota: LaneQuota
    sem: asyncio.Semaphore | None = None
    running: int = 0
    waiting: int = 0
    done: int = 0
    refused: int = 0
    mean_s: float = 0.05  # exponentially weighted task time (for Retry-After)
    longest_running_since: dict[int, float] = field(default_factory=dict)


class WorkPool:
    """Worker processes shared by lanes with separate quotas (see module docstring).

    Parameters
    ----------
    processes : int
        Worker processes (or threads) in the pool.
    lanes : mapping of lane name to :class:`LaneQuota`
    mode : ``"process"`` or ``"thread"``
    """

    def __init__(self, processes: int = 2, lanes: Mapping[str, LaneQuota] | None = None,
                 mode: Literal["process", "thread"] = "process") -> None:
        if processes < 1:
            raise ValueError("processes must be >= 1")
        self.processes = processes
        self.mode = mode
        self._lanes: dict[str, _Lane] = {k: _Lane(q) for k, q in (lanes or {}).items()}
        self._executor: cf.Executor | None = None
        self._lock = threading.Lock()
        self._ids = 0

    # -- configuration ----------------------------------------------------------------------
    def add_lane(self, name: str, quota: LaneQuota) -> None:
        """Register (or re-size) a lane."""
        lane = self._lanes.get(name)
        if lane is None:
            self._lanes[name] = _Lane(quota)
        else:
            lane.quota, lane.sem = quota, None

    def lanes(self) -> list[str]:
        return sorted(self._lanes)

    # -- running ------------------------------------------------------------------------------
    def _pool(self) -> cf.Executor:
        with self._lock:
            if self._executor is None:
                if self.mode == "thread":
                    self._executor = cf.ThreadPoolExecutor(self.processes,
                                                           thread_name_prefix="work")
                else:
                    self._executor = cf.ProcessPoolExecutor(self.processes,
                                                            mp_context=_context())
            return self._executor

    def check(self, lane_name: str) -> None:
        """Raise :class:`Saturated` now if ``lane_name`` has no room (before doing any work)."""
        lane = self._lane(lane_name)
        q = lane.quota
        if lane.running + lane.waiting >= q.concurrency + q.queue:
            lane.refused += 1
            raise Saturated(lane_name, self._retry_after(lane))

    async def run(self, lane_name: str, fn: Callable[..., T], *args: Any,
                  timeout_s: float | None = None) -> T:
        """Run ``fn(*args)`` in a worker under ``lane_name``'s quota.

        Raises
        ------
        Saturated
            The lane's running and waiting slots are all taken.
        TimeoutError
            ``timeout_s`` passed (the task is left to finish in its worker; its slot is held
            until then, so a lane of slow tasks saturates instead of piling up).
        PoolBroken
            The worker died; the pool is restarted for the next task.
        """
        lane = self._lane(lane_name)
        self.check(lane_name)
        if lane.sem is None:
            lane.sem = asyncio.Semaphore(lane.quota.concurrency)
        lane.waiting += 1
        try:
            await lane.sem.acquire()
        finally:
            lane.waiting -= 1
        lane.running += 1
        self._ids += 1
        task_id = self._ids
        t0 = time.monotonic()
        lane.longest_running_since[task_id] = t0
        released = False

        def release(_: Any = None) -> None:
            nonlocal released
            if released:
                return
            released = True
            lane.running -= 1
            lane.longest_running_since.pop(task_id, None)
            lane.done += 1
            lane.mean_s = 0.8 * lane.mean_s + 0.2 * (time.monotonic() - t0)
            assert lane.sem is not None
            lane.sem.release()

        loop = asyncio.get_running_loop()
        try:
            fut = loop.run_in_executor(self._pool(), fn, *args)
        except BaseException:
            release()
            raise
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except BrokenProcessPool as exc:
            self._reset()
            raise PoolBroken(str(exc)) from None
        finally:
            if fut.done():
                release()
            else:  # timed out or cancelled: the slot frees when the worker is done
                fut.add_done_callback(lambda f: loop.call_soon_threadsafe(release))

    def _lane(self, name: str) -> _Lane:
        lane = self._lanes.get(name)
        if lane is None:
            raise KeyError(f"no work lane {name!r} (add_lane first)")
        return lane

    def _retry_after(self, lane: _Lane) -> int:
        backlog = (lane.running + lane.waiting + 1) / lane.quota.concurrency
        return max(1, math.ceil(backlog * lane.mean_s))

    def _reset(self) -> None:
        with self._lock:
            ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=False, cancel_futures=True)

    # -- reporting ----------------------------------------------------------------------------
    def stats(self) -> dict[str, dict[str, float]]:
        """Per lane: running, waiting, done, refused, mean task time and the oldest running
        task's age (s), for ``/health`` and the metrics."""
        now = time.monotonic()
        out: dict[str, dict[str, float]] = {}
        for name, lane in sorted(self._lanes.items()):
            oldest = min(lane.longest_running_since.values(), default=now)
            out[name] = {"running": lane.running, "waiting": lane.waiting, "done": lane.done,
                         "refused": lane.refused, "mean_s": round(lane.mean_s, 6),
                         "oldest_running_s": round(now - oldest, 3)}
        return out

    def warm_up(self) -> None:
        """Start the workers now (instead of on the first task)."""
        ex = self._pool()
        list(ex.map(_noop, range(self.processes)))

    def shutdown(self) -> None:
        self._reset()


def _noop(x: int) -> int:
    return x
