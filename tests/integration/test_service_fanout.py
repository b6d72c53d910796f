"""The websocket fan-out over a network bus sends every committed row, whatever the timing of
the engine's commit against the fan-out's reads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from _service_helpers import demo_positions, running_service

from marginproof.service.stream import Fanout


class _CommitLandsAfterFirstRead:
    """A real repository seen as it was just before entry ``seq`` was committed, until the
    fan-out's first storage read: the engine's commit lands right after that read (the race
    window between two reads)."""

    def __init__(self, repo: Any, account_id: str, seq: int) -> None:
        self.repo = repo
        self.seq = seq
        self.committed = False
        self._before = repo.margin_history(account_id, limit=1, before_seq=seq)[0]

    def latest_margin(self, account_id: str) -> dict[str, Any] | None:
        if self.committed:
            return self.repo.latest_margin(account_id)  # type: ignore[no-any-return]
        self.committed = True
        return self._before

    def checkpoint(self, consumer: str) -> int:
        if self.committed:
            return self.repo.checkpoint(consumer)  # type: ignore[no-any-return]
        self.committed = True
        return self.seq - 1


def test_row_committed_between_the_fanouts_reads_is_still_sent(tmp_path: Path) -> None:
    with running_service(tmp_path) as svc:
        pos, coll = demo_positions()
        r = svc.client.post("/accounts", json={"account_id": "desk", "positions": pos,
                                               "collateral": coll}, headers=svc.op())
        svc.wait_margin("desk", r.json()["seq"])
        r = svc.client.post("/accounts/desk/fills", json={"instrument": "BTC-PERPETUAL",
                                                          "quantity": -5000}, headers=svc.op())
        fill_seq = r.json()["seq"]
        row = svc.wait_margin("desk", fill_seq)
        repo = svc.container.repo

    async def main() -> list[dict[str, Any]]:
        fan = Fanout(_CommitLandsAfterFirstRead(repo, "desk", fill_seq), "mp", 1)
        q = fan.subscribe("desk")
        await fan._deliver({"seq": fill_seq, "partition": 0})
        return [q.get_nowait() for _ in range(q.qsize())]

    got = asyncio.run(main())
    assert [m["seq"] for m in got] == [fill_seq] and got[0]["type"] == "margin"
    assert got[0]["initial_margin"] == row["initial_margin"]
