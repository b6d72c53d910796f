"""The feedback loop inside the engine: settlements, a breach, a proposal, its approval."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from marginproof.apc.stage import live_margin_path
from marginproof.backtest.feedback import FeedbackLoop
from marginproof.backtest.live import LiveBacktestConfig
from marginproof.config.params import config_dir, load_toml
from marginproof.engine import EngineConfig, EntryKind, LogEntry, MarginEngine
from marginproof.models.grid import GridModel

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = int(datetime(2026, 11, 25, 7, 0, tzinfo=UTC).timestamp() * 1000)  # 1 h before settlement


def grid_params() -> dict[str, Any]:
    p = load_toml(config_dir() / "models" / "grid.toml")
    p["risk"] = {"scaling": 1.0}  # a confidence scaling the loop can propose to change
    return p


class Log:
    def __init__(self) -> None:
        self.seq, self.t = 0, T0
        self.entries: list[LogEntry] = []

    def add(self, kind: EntryKind, body: dict[str, Any], at: int | None = None) -> LogEntry:
        self.seq += 1
        self.t = self.t + 1 if at is None else at
        e = LogEntry(self.seq, kind, self.t, "test", body)
        self.entries.append(e)
        return e

    def tick(self, px: float, at: int) -> LogEntry:
        return self.add(EntryKind.TICK, {"source": "t", "stream": "index:BTC",
                                         "underlying": "BTC", "exchange_ms": at,
                                         "index_price": px}, at)


def crash_log(n_days: int = 6) -> Log:
    log = Log()
    log.tick(100_000.0, T0)
    # the market guard holds a first print with no reference until time confirms it
    log.tick(100_000.0, T0 + 10_000)
    for k in range(4):
        log.add(EntryKind.ACCOUNT, {"account_id": f"acc{k}",
                                    "positions": {"BTC_USDC-PERPETUAL": 1.0 + k},
                                    "collateral": {"USDC": 1e6}})
    px = 100_000.0
    for d in range(n_days):
        for h in range(1, 4):  # three -9 % moves a day, each within the jump filter
            px *= 0.91
            log.tick(px, T0 + d * DAY + 2 * HOUR + h * HOUR)
    return log


def engine(notice_ms: int = 2 * DAY) -> MarginEngine:
    cfg = LiveBacktestConfig(min_days=3, notice_ms=notice_ms)
    return MarginEngine(GridModel(grid_params()),
                        EngineConfig(margin_path=live_margin_path,
                                     feedback=lambda: FeedbackLoop(cfg)))


def run(eng: MarginEngine, entries: list[LogEntry]) -> list[dict[str, Any]]:
    out = []
    for e in entries:
        out.extend(ev.to_dict() for ev in eng.apply(e).events)
    return out


def test_breach_produces_an_announced_proposal_and_approval_activates_it() -> None:
    log = crash_log()
    eng = engine(notice_ms=4 * DAY)
    evs = run(eng, log.entries)
    settled = [e for e in evs if e["type"] == "backtest_settled"]
    assert len(settled) == 6 and settled[0]["n_books"] == 0  # the first only arms the books
    assert all(e["n_exceptions"] == 4 for e in settled[1:])  # 4 long books, -25 % a day
    props = [e for e in evs if e["type"] == "scaling_proposed"]
    assert len(props) == 1
    prop = props[0]
    assert prop["model"] == "grid" and prop["status"] == "open"
    assert prop["evidence"]["zone"] in ("yellow", "red")
    assert prop["effective_at_ms"] == prop["created_at_ms"] + 4 * DAY
    p = eng.feedback.backtest.proposal(prop["proposal_id"])
    assert p is not None and p.params["risk"]["scaling"] > 1.0
    # the operator approves: a params entry with the proposed set, effective as announced
    approval = log.add(EntryKind.PARAMS, {"model": "grid", "params": p.params,
                                          "params_hash": p.params_hash,
                                          "effective_at_ms": p.effective_at_ms,
                                          "changed_by": "operator:test"})
    ev = run(eng, [approval])
    assert [e["status"] for e in ev if e["type"] == "proposal_updated"] == ["approved"]
    later = log.add(EntryKind.TRANSFER, {"account_id": "acc0", "asset": "USDC", "amount": 1.0},
                    p.effective_at_ms + 1)
    ev = run(eng, [later])
    assert any(e["type"] == "params_activated" and e["params_hash"] == p.params_hash for e in ev)
    assert [e["status"] for e in ev if e["type"] == "proposal_updated"] == ["active"]
    assert eng.model.params_hash == p.params_hash


def test_replay_of_the_days_with_proposals_is_bit_identical() -> None:
    log = crash_log()
    a, b = engine(), engine()
    ev_a = run(a, log.entries)
    ev_b = run(b, log.entries)
    assert ev_a == ev_b
    assert a.state_digest() == b.state_digest()
    assert [p.to_dict() for p in a.feedback.backtest.proposals] == \
        [p.to_dict() for p in b.feedback.backtest.proposals]


def test_unapproved_proposal_expires() -> None:
    log = crash_log(5)
    eng = engine(notice_ms=HOUR)
    evs = run(eng, log.entries)
    ups = [e for e in evs if e["type"] == "proposal_updated"]
    assert ups and all(u["status"] == "expired" for u in ups)
    assert eng.model.params["risk"]["scaling"] == pytest.approx(1.0)
