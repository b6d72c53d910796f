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

Why not ``concurrent.futures.ProcessPoolExecutor``: it moves every task and result through two
helper threads of the service process (a queue feeder and a result manager), so a 2 ms what-if
pays several GIL hand-offs between those threads and the event loop, each up to the
interpreter's 5 ms switch interval when the loop is busy (py-spy showed the loop blocked in
the executor's wake-up pipe and the workers blocked sending results back). Here each worker
owns one duplex pipe; the event loop writes the pickled task to an idle worker and is woken by
the pipe's file descriptor (``loop.add_reader``) when the result is there: no helper thread,
no hand-off. A worker that dies fails its task with :class:`PoolBroken` and is replaced.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures as cf
import contextlib
import math
import multiprocessing
import pickle
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Literal, TypeVar

T = TypeVar("T")

# imported once by the forkserver, so every worker forks with them loaded (numba included)
PRELOAD = ["marginproof.service.tasks", "marginproof.models.registry",
           "marginproof.pricing._kernels"]
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
        self._executor: cf.Executor | None = None  # thread mode
        self._workers: _ProcessWorkers | None = None  # process mode
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
    def _threads(self) -> cf.Executor:
        with self._lock:
            if self._executor is None:
                self._executor = cf.ThreadPoolExecutor(self.processes, thread_name_prefix="work")
            return self._executor

    def _procs(self) -> _ProcessWorkers:
        with self._lock:
            if self._workers is None:
                self._workers = _ProcessWorkers(self.processes)
            return self._workers

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
            if self.mode == "thread":
                fut = loop.run_in_executor(self._threads(), fn, *args)
            else:
                fut = await self._procs().submit(loop, fn, args)
        except BrokenProcessPool as exc:
            release()
            raise PoolBroken(str(exc)) from None
        except BaseException:
            release()
            raise
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except BrokenProcessPool as exc:
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
            procs, self._workers = self._workers, None
        if ex is not None:
            ex.shutdown(wait=False, cancel_futures=True)
        if procs is not None:
            procs.close()

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

    def warm_up(self, fn: Callable[..., Any] | None = None, *args: Any) -> list[Any]:
        """Start the workers now (instead of on the first task) and run ``fn(*args)`` once in
        each process (imports, caches: the first requests then pay no start-up cost); the
        results, one per process (``None`` where ``fn`` raised)."""
        if self.mode == "thread":
            return list(self._threads().map(_noop, range(self.processes)))
        return self._procs().warm_up(fn or _noop, args if fn is not None else (0,))

    def shutdown(self) -> None:
        self._reset()


def _noop(x: int) -> int:
    return x


# -- process workers over their own pipes ---------------------------------------------------
def _worker_main(conn: Connection) -> None:
    """A worker's loop: read ``(fn, args)``, answer ``("ok", result)`` or ``("exc", error)``."""
    while True:
        try:
            msg = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            fn, args = pickle.loads(msg)
            reply: tuple[str, Any] = ("ok", fn(*args))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            reply = ("exc", exc)
        try:
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - an unpicklable result or exception
            data = pickle.dumps(("exc", RuntimeError(f"{type(exc).__name__}: {exc}")))
        try:
            conn.send_bytes(data)
        except (EOFError, OSError):
            return


class _Worker:
    """One worker process and the service's end of its pipe."""

    def __init__(self, ctx: Any) -> None:
        parent, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True,
                                name="marginproof-work")
        self.proc.start()
        child.close()
        self.conn: Connection = parent

    def alive(self) -> bool:
        return bool(self.proc.is_alive())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
        if self.proc.is_alive():
            self.proc.terminate()
        self.proc.join(timeout=5)


class _ProcessWorkers:
    """``n`` worker processes, each busy with at most one task, handed out first come first
    served; the event loop sends a task and is woken by the pipe when its result is there."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._ctx = _context()
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._started = 0
        self._waiters: collections.deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[_Worker]]]
        self._waiters = collections.deque()
        self._closed = False

    def warm_up(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> list[Any]:
        """Start every worker and run ``fn(*args)`` once in each (blocking; workers busy with
        a task are skipped). Requests arriving meanwhile wait for the workers as usual."""
        with self._lock:
            if self._closed:
                return []
            taken, self._idle = self._idle, []
            while self._started < self._n:
                taken.append(self._spawn_locked())
        data = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        sent = []
        for w in taken:
            try:
                w.conn.send_bytes(data)
                sent.append(w)
            except (EOFError, OSError):
                self._forget(w)
                self._release(None)
        out = []
        for w in sent:
            try:
                kind, value = pickle.loads(w.conn.recv_bytes())
            except (EOFError, OSError):
                self._forget(w)
                self._release(None)
                continue
            self._release(w)
            out.append(value if kind == "ok" else None)
        return out

    async def _acquire(self, loop: asyncio.AbstractEventLoop) -> _Worker:
        with self._lock:
            if self._closed:
                raise BrokenProcessPool("the pool is shut down")
            while self._idle:
                w = self._idle.pop()
                if w.alive():
                    return w
                self._all.discard(w)  # died while idle (killed): replace it
                self._started -= 1
                w.close()
            if self._started < self._n:
                return self._spawn_locked()
            fut: asyncio.Future[_Worker] = loop.create_future()
            self._waiters.append((loop, fut))
        try:
            return await fut
        except asyncio.CancelledError:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove((loop, fut))
            if fut.done() and not fut.cancelled():  # handed a worker just as we left
                self._release(fut.result())
            raise

    def _release(self, w: _Worker | None) -> None:
        """Give ``w`` to the oldest waiter, else back to the idle list; ``None``: a worker
        died (a new one is started for the next task)."""
        with self._lock:
            if w is None:
                self._started -= 1
            while self._waiters:
                loop, fut = self._waiters.popleft()
                if fut.cancelled():
                    continue
                if w is None:
                    if self._closed:
                        loop.call_soon_threadsafe(_fail, fut)
                        continue
                    try:
                        w = self._spawn_locked()
                    except BaseException:  # noqa: BLE001 - cannot start: that waiter fails
                        loop.call_soon_threadsafe(_fail, fut)
                        continue
                loop.call_soon_threadsafe(_hand_over, fut, w, self)
                return
            if w is not None:
                if self._closed:
                    self._all.discard(w)
                    w.close()
                else:
                    self._idle.append(w)

    async def submit(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any],
                     args: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Send ``fn(*args)`` to a worker (waiting for one to be free); the future of its
        result, which resolves even if nobody awaits it any more (the worker is then freed)."""
        data = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        w = await self._acquire(loop)
        out: asyncio.Future[Any] = loop.create_future()
        fd = w.conn.fileno()

        def finish(ok: bool, value: Any) -> None:
            if not out.done():
                if ok:
                    out.set_result(value)
                else:
                    out.set_exception(value)

        def on_readable() -> None:
            loop.remove_reader(fd)
            try:
                kind, value = pickle.loads(w.conn.recv_bytes())
            except (EOFError, OSError) as exc:  # the worker died
                self._forget(w)
                self._release(None)
                finish(False, BrokenProcessPool(f"a worker process died: {exc!r}"))
                return
            except Exception as exc:  # noqa: BLE001 - a result that does not unpickle
                self._release(w)
                finish(False, exc)
                return
            self._release(w)
            finish(kind == "ok", value)

        try:
            w.conn.send_bytes(data)  # the worker is idle and reading: this does not block
        except (EOFError, OSError) as exc:
            self._forget(w)
            self._release(None)
            raise BrokenProcessPool(f"a worker process died: {exc!r}") from None
        loop.add_reader(fd, on_readable)
        return out

    def _spawn_locked(self) -> _Worker:
        """Start one worker and count it (the caller holds ``_lock``)."""
        w = _Worker(self._ctx)
        self._all.add(w)
        self._started += 1
        return w

    def _forget(self, w: _Worker) -> None:
        with self._lock:
            self._all.discard(w)
        w.close()

    def close(self) -> None:
        """Stop every worker, busy ones included (their tasks fail with BrokenProcessPool)."""
        with self._lock:
            self._closed = True
            self._idle = []
            workers, self._all = list(self._all), set()
            waiters = list(self._waiters)
            self._waiters.clear()
        for w in workers:
            w.close()
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_fail, fut)


def _hand_over(fut: asyncio.Future[_Worker], w: _Worker, owner: _ProcessWorkers) -> None:
    if fut.cancelled():
        owner._release(w)
    else:
        fut.set_result(w)


def _fail(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(BrokenProcessPool("the pool is shut down"))
