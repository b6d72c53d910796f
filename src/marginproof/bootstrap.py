"""The composition root: ``bootstrap(settings) -> Container``. Nothing is built at import.

The container wires storage (SQLite or PostgreSQL), the engine runners (one per owned
partition), the input gateway and the metrics; :meth:`Container.start` (inside the service's
event loop) connects the bus (in-process or NATS JetStream), recovers every runner from the log,
starts their threads, the feeds and the stale-feed watchdog.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from marginproof.apc.stage import live_margin_path
from marginproof.config.settings import Settings
from marginproof.engine.core import EngineConfig
from marginproof.engine.partition import partition_of
from marginproof.engine.quality import QualityConfig
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.base import BaseMarginModel
from marginproof.models.registry import get_model, model_class
from marginproof.service.gateway import InputGateway
from marginproof.service.metrics import Metrics
from marginproof.service.ratelimit import RateLimiter
from marginproof.service.runner import EngineRunner
from marginproof.service.workers import LaneQuota, WorkPool
from marginproof.storage.factory import open_repository
from marginproof.storage.sql import SqlRepository, wall_clock_ms

log = logging.getLogger(__name__)


@dataclass
class Container:
    """Everything the service and CLI need, built by :func:`bootstrap`."""

    settings: Settings
    repo: SqlRepository
    metrics: Metrics
    gateway: InputGateway
    runners: list[EngineRunner]
    clock_ms: Callable[[], int] = wall_clock_ms
    bus: Any = None
    loop: asyncio.AbstractEventLoop | None = None
    started_at: float = field(default_factory=time.time)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _subs: list[Any] = field(default_factory=list)
    feeds: list[Any] = field(default_factory=list)
    pool: WorkPool = field(default_factory=WorkPool)
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(200.0, 400.0))
    _users: int = 0

    # -- queries ---------------------------------------------------------------------------
    def market(self) -> MarketSnapshot | None:
        """Latest market snapshot known to the engines (every partition sees every tick)."""
        for r in self.runners:
            if r.market_snapshot is not None:
                return r.market_snapshot
        return None

    def runner_for(self, account_id: str) -> EngineRunner | None:
        p = partition_of(account_id, self.settings.partitions)
        for r in self.runners:
            if r.config.partition == p:
                return r
        return None

    def engine_model(self) -> BaseMarginModel:
        """The model in force in the engines (parameters as activated from the log)."""
        return self.runners[0].engine.model if self.runners else _initial_model(self.settings)

    def engine_threads(self) -> list[threading.Thread]:
        """The engine runner threads this container started."""
        return list(self._threads)

    def live_model(self) -> BaseMarginModel:
        """The model in force bound to the engines' live risk-factor state (what-if)."""
        return self.runners[0].engine.live_model if self.runners else self.engine_model()

    def engine_label(self, group: str, j: int) -> str:
        """Label of the engine's binding scenario ``j`` of ``group`` (underlying or combo)."""
        if self.runners:
            return self.runners[0].engine.scenario_label(group, j)
        return f"{group} scenario {j}"

    def announce(self, event: dict[str, Any]) -> None:
        """Publish an announcement (parameter schedule) on the bus, from any thread."""
        import json

        if self.bus is None or self.loop is None:
            return
        subject = f"{self.settings.bus_prefix}.events.announcements"
        msg_id = f"announce-{event.get('log_seq', '')}-{event.get('type', '')}"
        coro = self.bus.publish(subject, json.dumps(event).encode(), msg_id, event)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self._tasks.append(asyncio.ensure_future(coro))
        else:
            asyncio.run_coroutine_threadsafe(coro, self.loop)

    def whatif_model(self, name: str, params: dict[str, Any] | None = None) -> BaseMarginModel:
        """Any registry model, with its shipped parameters or ``params``."""
        cls = model_class(name)
        if params is not None:
            return cls(params)
        if name == self.engine_model().name:
            return self.live_model()
        return get_model(name)

    # -- lifecycle -------------------------------------------------------------------------
    def _publish_sync(self, subject: str, data: bytes, msg_id: str, obj: Any) -> None:
        assert self.loop is not None and self.bus is not None
        fut = asyncio.run_coroutine_threadsafe(self.bus.publish(subject, data, msg_id, obj),
                                               self.loop)
        fut.result(timeout=30)

    async def start(self, engines: bool = True, feeds: bool = True) -> None:
        """Connect the bus, recover and start the engines, the feeds and the watchdog.

        Reference-counted: a second ``start`` (another ASGI client of the same app) only
        registers a user; the last matching :meth:`stop` shuts everything down.
        """
        self._users += 1
        if self._users > 1:
            return
        self.loop = asyncio.get_running_loop()
        s = self.settings
        if s.bus_url == "inprocess":
            from marginproof.bus.inprocess import InProcessBus

            self.bus = InProcessBus()
        else:
            from marginproof.bus.jetstream import NatsBus

            self.bus = await NatsBus.connect(s.bus_url, stream=s.bus_stream, prefix=s.bus_prefix,
                                             ack_wait_s=s.bus_ack_wait_s)
            self.gateway.attach_bus(self.bus, self.loop)
        for r in self.runners:
            r.publish = self._publish_sync
        if engines:
            for r in self.runners:
                ckpt = await asyncio.to_thread(r.recover)
                log.info("%s recovered at seq %d", r.consumer, ckpt)
                t = threading.Thread(target=r.run, args=(self._stop,), name=r.consumer,
                                     daemon=True)
                t.start()
                self._threads.append(t)
                if s.bus_url != "inprocess":
                    self._subs.append(await self.bus.subscribe(
                        f"{s.bus_prefix}.input.>", _input_ack_handler(r), durable=r.consumer))
        if feeds and s.feeds:
            from marginproof.feeds.runtime import start_feeds

            self.feeds = await start_feeds(s.feeds, self.gateway, self.metrics, s.stale_after_s)
        self._tasks.append(asyncio.create_task(self._gauges(), name="gauges"))
        if s.work_warm_up and s.work_mode == "process":
            threading.Thread(target=self._warm_workers, name="warm-workers", daemon=True).start()
        # the recovered engine state is long-lived: keep it out of the cyclic GC's scans
        # (fewer and shorter pauses in request latency)
        gc.collect()
        gc.freeze()

    def _warm_workers(self) -> None:
        """Start the what-if workers and build in each the models the first what-ifs use (the
        model in force with its activated parameters, ``grid`` as shipped)."""
        from marginproof.service.tasks import prime

        try:
            m = self.engine_model()
            models: list[tuple[str, dict[str, Any] | None, str]] = [
                (m.name, dict(m.params), m.params_hash)]
            if m.name != "grid":
                models.append(("grid", None, get_model("grid").params_hash))
            self.pool.warm_up(prime, tuple(models))
        except Exception:  # noqa: BLE001 - warming is an optimisation: requests start them too
            log.exception("warming the worker processes failed")

    async def _gauges(self) -> None:
        while True:
            depth = getattr(self.bus, "queue_depth", None)
            if callable(depth):
                self.metrics.bus_queue_depth.set(depth())
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        self._users -= 1
        if self._users > 0:
            return
        for f in self.feeds:
            await f.stop()
        for sub in self._subs:
            await sub.stop()
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._stop.set()
        for r in self.runners:
            r.wake.set()
        for th in self._threads:
            await asyncio.to_thread(th.join, 10)
        if self.bus is not None:
            await self.bus.close()
        self.pool.shutdown()
        self.repo.close()


def _input_ack_handler(runner: EngineRunner) -> Callable[[Any], Any]:
    """Ack an input notification only once its entry is committed (at-least-once)."""
    import json

    async def handle(msg: Any) -> None:
        seq = int(json.loads(msg.data)["seq"])
        runner.wake.set()
        ok = await asyncio.to_thread(runner.wait_committed, seq, 10.0)
        if not ok:
            raise TimeoutError(f"entry {seq} not committed yet")  # nak: redelivered later

    return handle


def _initial_model(settings: Settings) -> BaseMarginModel:
    """The model in force at start: ``engine_model`` with its shipped or given parameters
    (any registered model; later changes come from ``params`` entries in the log)."""
    return get_model(settings.engine_model, settings.engine_params_file)


def bootstrap(settings: Settings | None = None, clock_ms: Callable[[], int] | None = None
              ) -> Container:
    """Build the container (storage migrated, runners constructed, nothing started)."""
    s = settings or Settings()
    clock = clock_ms or wall_clock_ms
    repo = open_repository(s.database_url, clock)
    metrics = Metrics()
    gateway = InputGateway(repo, s.bus_prefix)
    quality = QualityConfig(max_delay_ms=s.max_tick_delay_ms, max_jump=s.max_jump)
    runners = []
    feedback = _feedback_factory(s)
    for p in s.owned_partitions():
        cfg = EngineConfig(quality=quality, n_partitions=s.partitions, partition=p,
                           margin_path=live_margin_path, feedback=feedback)
        r = EngineRunner(repo, _initial_model(s), cfg, None, metrics, gateway, s.bus_prefix,
                         s.engine_commit_every, s.engine_snapshot_every, s.engine_snapshot_keep,
                         s.engine_snapshot_replay_s)
        gateway.add_waker(r.wake)
        runners.append(r)
    pool = WorkPool(s.work_processes, {"whatif": LaneQuota(s.whatif_concurrency, s.whatif_queue)},
                    s.work_mode)
    limiter = RateLimiter(s.rate_limit_per_s, s.rate_limit_burst)
    container = Container(s, repo, metrics, gateway, runners, clock, pool=pool, limiter=limiter)
    if s.auto_approve_proposals:
        from marginproof.service.routes.feedback import auto_approver

        for r in runners:
            r.listeners.append(auto_approver(container))
    return container


def _feedback_factory(s: Settings) -> Callable[[], Any]:
    """The engines' feedback loop (live backtest, proposals) from the settings."""
    from marginproof.backtest.feedback import FeedbackLoop
    from marginproof.backtest.live import LiveBacktestConfig

    notice_s = max(s.proposal_notice_s, s.params_min_notice_s)
    cfg = LiveBacktestConfig(settlement_hour_utc=s.settlement_hour_utc,
                             window_days=s.backtest_window_days, alpha=s.backtest_alpha,
                             min_days=s.proposal_min_days, notice_ms=int(notice_s * 1000))
    return lambda: FeedbackLoop(cfg)
