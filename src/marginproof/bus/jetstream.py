"""NATS JetStream adapter: one stream, durable pull consumers, ``Nats-Msg-Id`` deduplication.

Publishing waits for JetStream's acknowledgement (the message is stored). A consumer fetches in
batches and acks each message after its handler returned; a handler exception naks it with a
delay, so it is redelivered (at-least-once). ``ack_wait`` bounds how long an unacknowledged
message (a crashed consumer) stays invisible before redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import NotFoundError

from marginproof.bus.base import Handler, Message

log = logging.getLogger(__name__)


@dataclass
class _PullSub:
    psub: Any
    stopping: asyncio.Event
    task: asyncio.Task[None] | None = None
    recreated: int = 0  # times the consumer was found gone and re-created

    async def stop(self, grace_s: float = 2.0) -> None:
        """Finish the current fetch (so no pull request is left open), then unsubscribe."""
        self.stopping.set()
        if self.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.task), grace_s)
            except (TimeoutError, asyncio.CancelledError):
                self.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.task
            except Exception:  # the loop itself failed (logged by the task's handler)
                log.debug("subscription loop ended with an error", exc_info=True)
        with contextlib.suppress(Exception):
            await self.psub.unsubscribe()


class NatsBus:
    """JetStream bus on stream ``stream`` capturing ``<prefix>.>``.

    Use :meth:`connect` (async) to build one.
    """

    ephemeral_idle_s = 60.0  # server deletes an ephemeral consumer not pulled for this long
    consumer_check_s = 2.0  # when idle, check this often that the consumer still exists

    def __init__(self, nc: Any, js: Any, stream: str, prefix: str, ack_wait_s: float,
                 max_deliver: int) -> None:
        self._nc = nc
        self._js = js
        self.stream = stream
        self.prefix = prefix
        self.ack_wait_s = ack_wait_s
        self.max_deliver = max_deliver
        self.published = 0
        self.duplicates = 0
        self._subs: list[_PullSub] = []

    @classmethod
    async def connect(cls, url: str, stream: str = "MARGINPROOF", prefix: str = "mp",
                      ack_wait_s: float = 30.0, max_deliver: int = 50,
                      duplicate_window_s: float = 600.0) -> NatsBus:
        nc = await nats.connect(url, connect_timeout=3, max_reconnect_attempts=5,
                                allow_reconnect=True)
        js = nc.jetstream()
        cfg = StreamConfig(name=stream, subjects=[f"{prefix}.>"],
                           duplicate_window=duplicate_window_s)
        try:
            await js.stream_info(stream)
            await js.update_stream(cfg)
        except NotFoundError:
            await js.add_stream(cfg)
        return cls(nc, js, stream, prefix, ack_wait_s, max_deliver)

    async def publish(self, subject: str, data: bytes, msg_id: str, obj: Any = None) -> None:
        ack = await self._js.publish(subject, data, stream=self.stream,
                                     headers={"Nats-Msg-Id": msg_id})
        if getattr(ack, "duplicate", False):
            self.duplicates += 1
        else:
            self.published += 1

    async def subscribe(self, subject: str, handler: Handler, durable: str | None = None
                        ) -> _PullSub:
        """Pull messages on ``subject`` into ``handler`` (ack after it returns).

        Without ``durable`` the consumer is ephemeral: the server deletes it after
        ``ephemeral_idle_s`` without a pull (a handler that runs longer than that, say), after
        which a pull would silently time out forever. The fetch loop therefore checks that its
        consumer still exists when idle and, if it is gone, re-creates it from the stream
        sequence after the last message it handled (nothing skipped, nothing replayed twice).
        """
        psub = await self._pull(subject, durable, None)
        sub = _PullSub(psub, asyncio.Event())
        sub.task = asyncio.create_task(self._run(sub, subject, durable, handler),
                                       name=f"nats-sub:{durable}")
        self._subs.append(sub)
        return sub

    async def _pull(self, subject: str, durable: str | None, from_seq: int | None) -> Any:
        cfg = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT,
                             ack_wait=self.ack_wait_s, max_deliver=self.max_deliver,
                             deliver_policy=DeliverPolicy.ALL, filter_subject=subject)
        if from_seq is not None:
            cfg.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            cfg.opt_start_seq = from_seq
        if durable is None:
            cfg.inactive_threshold = self.ephemeral_idle_s
        return await self._js.pull_subscribe(subject, durable=durable, stream=self.stream,
                                             config=cfg)

    async def _run(self, sub: _PullSub, subject: str, durable: str | None,
                   handler: Handler) -> None:
        last_seq = 0  # stream sequence of the last message handled
        naked: set[int] = set()  # sequences failed and awaiting redelivery
        idle_since = asyncio.get_running_loop().time()
        while not sub.stopping.is_set():
            try:
                msgs = await sub.psub.fetch(batch=64, timeout=0.5)
            except (NatsTimeout, TimeoutError):
                now = asyncio.get_running_loop().time()
                if now - idle_since >= self.consumer_check_s:
                    idle_since = now
                    if not sub.stopping.is_set() and not await self._consumer_alive(sub.psub):
                        start = min(naked, default=last_seq + 1)
                        log.warning("consumer on %s is gone (deleted or idle too long): "
                                    "re-creating it from stream sequence %d", subject, start)
                        try:
                            psub = await self._pull(subject, durable, start)
                        except Exception:  # stream gone too, or no connection: retry later
                            log.exception("could not re-create the consumer on %s", subject)
                            continue
                        with contextlib.suppress(Exception):
                            await sub.psub.unsubscribe()
                        sub.psub = psub
                        sub.recreated += 1
                continue
            except asyncio.CancelledError:
                raise
            except Exception:  # connection hiccup: back off and fetch again
                log.exception("fetch failed")
                await asyncio.sleep(0.2)
                continue
            idle_since = asyncio.get_running_loop().time()
            for m in msgs:
                mid = (m.headers or {}).get("Nats-Msg-Id", "")
                delivered = int(getattr(m.metadata, "num_delivered", 1) or 1)
                seq = int(m.metadata.sequence.stream)
                try:
                    await handler(Message(m.subject, m.data, mid, None, delivered))
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("handler failed on %s (delivery %d)", mid, delivered)
                    await m.nak(delay=0.2)
                    naked.add(seq)
                    continue
                await m.ack()
                naked.discard(seq)
                last_seq = max(last_seq, seq)

    @staticmethod
    async def _consumer_alive(psub: Any) -> bool:
        try:
            await psub.consumer_info()
        except NotFoundError:
            return False
        except Exception:  # cannot tell (connection hiccup): assume alive, check again later
            return True
        return True

    async def pending(self, durable: str) -> int:
        """Messages not yet delivered or not yet acknowledged for consumer ``durable``."""
        info = await self._js.consumer_info(self.stream, durable)
        return int(info.num_pending) + int(info.num_ack_pending)

    async def delete_consumer(self, durable: str) -> bool:
        """Remove durable consumer ``durable`` if it exists (its successor starts afresh)."""
        try:
            await self._js.delete_consumer(self.stream, durable)
        except NotFoundError:
            return False
        return True

    async def delete_stream(self) -> None:
        """Remove the stream (tests)."""
        with contextlib.suppress(NotFoundError):
            await self._js.delete_stream(self.stream)

    async def close(self) -> None:
        for s in self._subs:
            await s.stop()
        self._subs.clear()
        with contextlib.suppress(Exception):
            await self._nc.drain()
        with contextlib.suppress(Exception):
            await self._nc.close()
