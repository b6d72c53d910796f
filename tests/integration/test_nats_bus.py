"""NATS JetStream: durable consumers, at-least-once delivery, idempotent handling."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from marginproof.bus import Message
from marginproof.bus.jetstream import NatsBus
from marginproof.storage.sql import SqlRepository


def _run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


async def _until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    end = asyncio.get_running_loop().time() + timeout_s
    while not cond():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError("condition not met in time")  # noqa: B904
        await asyncio.sleep(0.02)


async def _until_acked(bus: NatsBus, durable: str, timeout_s: float = 10.0) -> None:
    """Wait until consumer ``durable`` has nothing pending or unacknowledged (an ack travels to
    the server asynchronously: a fixed sleep is too short on a loaded host)."""
    end = asyncio.get_running_loop().time() + timeout_s
    while await bus.pending(durable):
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"{durable}: messages still pending")
        await asyncio.sleep(0.02)


def test_duplicate_message_ids_are_stored_once(nats_url: str, unique: str) -> None:
    async def main() -> None:
        bus = await NatsBus.connect(nats_url, stream=unique.upper(), prefix=unique)
        try:
            got: list[str] = []

            async def h(m: Message) -> None:
                got.append(m.msg_id)

            await bus.subscribe(f"{unique}.events.>", h, durable="d1")
            for mid in ("e1", "e1", "e2"):
                await bus.publish(f"{unique}.events.0.margin_call", b"{}", mid)
            await _until(lambda: len(got) >= 2)
            await asyncio.sleep(0.3)
            assert got == ["e1", "e2"]
            assert bus.duplicates == 1
        finally:
            await bus.delete_stream()
            await bus.close()

    _run(main())


def test_unacked_message_of_a_crashed_consumer_is_redelivered_to_its_successor(
        nats_url: str, unique: str) -> None:
    async def main() -> None:
        bus = await NatsBus.connect(nats_url, stream=unique.upper(), prefix=unique,
                                    ack_wait_s=1.0)
        try:
            first: list[int] = []
            crashed = asyncio.Event()

            async def crashing(m: Message) -> None:
                first.append(m.delivery)
                crashed.set()
                await asyncio.sleep(3600)  # "killed" while handling: never acks

            sub = await bus.subscribe(f"{unique}.input.>", crashing, durable="engine-p0")
            await bus.publish(f"{unique}.input.tick", b'{"seq": 1}', "in-1")
            await asyncio.wait_for(crashed.wait(), 10)
            await sub.stop()
            second: list[tuple[str, int]] = []

            async def healthy(m: Message) -> None:
                second.append((m.msg_id, m.delivery))

            await bus.subscribe(f"{unique}.input.>", healthy, durable="engine-p0")
            await _until(lambda: bool(second))
            assert second[0][0] == "in-1" and second[0][1] >= 2
            await _until_acked(bus, "engine-p0")  # the successor's ack lands
        finally:
            await bus.delete_stream()
            await bus.close()

    _run(main())


def test_durable_consumer_resumes_where_it_stopped(nats_url: str, unique: str) -> None:
    async def main() -> None:
        bus = await NatsBus.connect(nats_url, stream=unique.upper(), prefix=unique)
        try:
            got: list[str] = []

            async def h(m: Message) -> None:
                got.append(m.msg_id)

            sub = await bus.subscribe(f"{unique}.input.>", h, durable="p0")
            await bus.publish(f"{unique}.input.fill", b"{}", "in-1")
            await _until(lambda: got == ["in-1"])
            await _until_acked(bus, "p0")  # else in-1 is redelivered after the restart
            await sub.stop()
            await bus.publish(f"{unique}.input.fill", b"{}", "in-2")
            await bus.publish(f"{unique}.input.fill", b"{}", "in-3")
            await bus.subscribe(f"{unique}.input.>", h, durable="p0")
            await _until(lambda: len(got) == 3)
            assert got == ["in-1", "in-2", "in-3"]
        finally:
            await bus.delete_stream()
            await bus.close()

    _run(main())


def test_failing_handler_is_retried_and_idempotent_handling_applies_once(
        nats_url: str, unique: str, pg_repo: SqlRepository) -> None:
    async def main() -> None:
        bus = await NatsBus.connect(nats_url, stream=unique.upper(), prefix=unique)
        try:
            applied: list[str] = []
            calls = {"n": 0}

            async def h(m: Message) -> None:
                calls["n"] += 1
                if calls["n"] == 1:
                    raise RuntimeError("transient failure before the side effect")
                if pg_repo.mark_consumed("notifier", m.msg_id):
                    applied.append(m.msg_id)

            await bus.subscribe(f"{unique}.events.>", h, durable="notifier")
            await bus.publish(f"{unique}.events.0.liquidation", b"{}", "ev-1")
            await _until(lambda: applied == ["ev-1"])
            # an at-least-once redelivery of an already handled event changes nothing
            assert not pg_repo.mark_consumed("notifier", "ev-1")
            assert calls["n"] >= 2
        finally:
            await bus.delete_stream()
            await bus.close()

    _run(main())


def test_ephemeral_consumer_deleted_during_a_slow_handler_is_recreated_without_loss(
        nats_url: str, unique: str) -> None:
    """A handler that outlives the server's idle limit for an ephemeral consumer used to leave
    the subscriber pulling from a deleted consumer forever (silent timeouts): the loop must
    notice, re-create it after the last handled message, and lose or repeat nothing."""
    async def main() -> None:
        bus = await NatsBus.connect(nats_url, stream=unique.upper(), prefix=unique)
        bus.ephemeral_idle_s = 1.0
        bus.consumer_check_s = 0.3
        try:
            got: list[str] = []

            async def slow(m: Message) -> None:
                if m.msg_id == "m0":
                    await asyncio.sleep(2.5)  # > the idle limit: the server drops the consumer
                got.append(m.msg_id)

            sub = await bus.subscribe(f"{unique}.events.>", slow)
            await bus.publish(f"{unique}.events.0.margin_batch", b"{}", "m0")
            await _until(lambda: got == ["m0"])
            # the server drops the idle consumer and the loop re-creates it (a fixed wait
            # was a guess at how fast a loaded host gets there)
            await _until(lambda: sub.recreated >= 1, timeout_s=15)
            for k in (1, 2, 3):
                await bus.publish(f"{unique}.events.0.margin_batch", b"{}", f"m{k}")
            await _until(lambda: len(got) >= 4, timeout_s=15)
            await asyncio.sleep(0.3)
            assert got == ["m0", "m1", "m2", "m3"]
            assert sub.recreated >= 1
        finally:
            await bus.delete_stream()
            await bus.close()

    _run(main())
