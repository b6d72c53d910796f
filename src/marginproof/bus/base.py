"""Bus port: publish with a message id, subscribe with a (durable) consumer name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Message:
    """A delivered message.

    Attributes
    ----------
    subject : str
    data : bytes
        Serialized payload (JSON).
    msg_id : str
        Publisher's deterministic id (idempotency key).
    obj : Any
        In-process bus only: the published object itself (no serialization on the hot path).
    delivery : int
        1 on first delivery, more on redeliveries.
    """

    subject: str
    data: bytes
    msg_id: str
    obj: Any = None
    delivery: int = 1


Handler = Callable[[Message], Awaitable[None]]


class Subscription(Protocol):
    async def stop(self) -> None: ...


class Bus(Protocol):
    """Publish/subscribe with at-least-once delivery."""

    async def publish(self, subject: str, data: bytes, msg_id: str, obj: Any = None) -> None:
        """Publish; returns once the bus has accepted (persisted) the message."""
        ...

    async def subscribe(self, subject: str, handler: Handler, durable: str | None = None
                        ) -> Subscription:
        """Deliver matching messages to ``handler``; an exception means "redeliver"."""
        ...

    async def close(self) -> None: ...


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` the rest."""
    p = pattern.split(".")
    s = subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)
