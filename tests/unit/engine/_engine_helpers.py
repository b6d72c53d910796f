"""Helpers shared by the engine tests: a gap-free log builder and account bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marginproof.engine import EntryKind, LogEntry


class Log:
    """Builds gap-free entries with a log clock that starts at the market time."""

    def __init__(self, start_ms: int) -> None:
        self.seq = 0
        self.clock_ms = start_ms

    def __call__(self, kind: EntryKind, body: Mapping[str, Any], advance_ms: int = 1) -> LogEntry:
        self.seq += 1
        self.clock_ms += advance_ms
        return LogEntry(self.seq, kind, self.clock_ms, "test", dict(body))


def account_body(account_id: str, positions: Mapping[str, float],
                 collateral: Mapping[str, float]) -> dict[str, Any]:
    return {"account_id": account_id, "positions": dict(positions),
            "collateral": dict(collateral)}
