"""In-process bus: wildcard routing, duplicate ids dropped, failed handlers get redeliveries."""

from __future__ import annotations

import asyncio

import pytest

from marginproof.bus import InProcessBus, Message, subject_matches


@pytest.mark.parametrize(("pattern", "subject", "ok"), [
    ("mp.events.>", "mp.events.0.margin_call", True),
    ("mp.events.*.margin_call", "mp.events.3.margin_call", True),
    ("mp.events.*", "mp.events.3.margin_call", False),
    ("mp.input.tick", "mp.input.tick", True),
    ("mp.>", "mp", False),
])
def test_subject_matching_follows_nats_wildcards(pattern: str, subject: str, ok: bool) -> None:
    assert subject_matches(pattern, subject) is ok


def test_duplicates_are_dropped_and_failures_redelivered_until_handled() -> None:
    async def main() -> tuple[list[str], list[int], int]:
        bus = InProcessBus(retry_delay_s=0.001)
        got: list[str] = []
        deliveries: list[int] = []
        fails = {"n": 2}

        async def handler(m: Message) -> None:
            deliveries.append(m.delivery)
            if m.msg_id == "b" and fails["n"]:
                fails["n"] -= 1
                raise RuntimeError("transient")
            got.append(m.msg_id)

        await bus.subscribe("mp.events.>", handler, durable="t")
        for mid in ("a", "a", "b", "c"):
            await bus.publish("mp.events.0.x", b"{}", mid)
        await bus.publish("mp.other", b"{}", "z")
        await bus.drain()
        await asyncio.sleep(0.05)
        await bus.close()
        return got, deliveries, bus.duplicates

    got, deliveries, dups = asyncio.run(main())
    assert sorted(got) == ["a", "b", "c"]
    assert dups == 1
    assert max(deliveries) == 3
