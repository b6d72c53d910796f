"""In-process bus: asyncio queues, redelivery on handler failure, duplicate-id window.

Durable names have no effect across restarts (nothing is persisted): the engine recovers from
its input log and checkpoints, not from the bus, so the embedded default loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from marginproof.bus.base import Handler, Message, subject_matches

log = logging.getLogger(__name__)


@dataclass
class _Sub:
    pattern: str
    handler: Handler
    queue: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    bus: InProcessBus | None = None

    async def stop(self) -> None:
        if self.bus is not None and self in self.bus._subs:
            self.bus._subs.remove(self)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


class InProcessBus:
    """See module docstring.

    Parameters
    ----------
    dedupe_window : int
        How many recent message ids are remembered to drop duplicate publishes.
    max_deliver : int
        Deliveries of one message before it is dropped (logged) after handler failures.
    retry_delay_s : float
    """

    def __init__(self, dedupe_window: int = 100_000, max_deliver: int = 20,
                 retry_delay_s: float = 0.05) -> None:
        self._subs: list[_Sub] = []
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._window = dedupe_window
        self.max_deliver = max_deliver
        self.retry_delay_s = retry_delay_s
        self.published = 0
        self.duplicates = 0

    def queue_depth(self) -> int:
        """Messages waiting in every subscription queue."""
        return sum(s.queue.qsize() for s in self._subs)

    async def publish(self, subject: str, data: bytes, msg_id: str, obj: Any = None) -> None:
        if msg_id in self._seen:
            self.duplicates += 1
            return
        self._seen[msg_id] = None
        if len(self._seen) > self._window:
            self._seen.popitem(last=False)
        self.published += 1
        msg = Message(subject, data, msg_id, obj)
        for s in list(self._subs):
            if subject_matches(s.pattern, subject):
                s.queue.put_nowait(msg)

    async def subscribe(self, subject: str, handler: Handler, durable: str | None = None
                        ) -> _Sub:
        sub = _Sub(subject, handler, bus=self)
        sub.task = asyncio.create_task(self._run(sub), name=f"bus-sub:{durable or subject}")
        self._subs.append(sub)
        return sub

    async def _run(self, sub: _Sub) -> None:
        while True:
            msg = await sub.queue.get()
            try:
                await sub.handler(msg)
            except asyncio.CancelledError:
                raise
            except Exception:
                if msg.delivery >= self.max_deliver:
                    log.exception("dropping %s after %d deliveries", msg.msg_id, msg.delivery)
                    continue
                await asyncio.sleep(self.retry_delay_s)
                sub.queue.put_nowait(replace(msg, delivery=msg.delivery + 1))

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait until every queue is empty (tests)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while self.queue_depth() and loop.time() < end:
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        for s in list(self._subs):
            await s.stop()
