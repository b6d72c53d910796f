"""The demo's real-time stage on embedded defaults: SQLite log, in-process bus, shipped day.

One shipped day of hourly BTC/ETH prices is appended to an append-only SQLite input log with a
set of synthetic accounts; the incremental engine processes the log under the model in force
(``dynamic`` by default: live EWMA vols sampled hourly, FHS scenarios filtered by them, APC,
stress floor, add-ons), publishing its margin batches and margin-call / liquidation events on
the in-process bus, where a subscriber counts them. The same code runs on PostgreSQL + NATS
JetStream in production (``docs/service.md``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marginproof.bus.base import Message
from marginproof.bus.inprocess import InProcessBus
from marginproof.engine.core import EngineConfig, EngineOutput
from marginproof.engine.events import LiquidationSignal, MarginCall
from marginproof.feeds.replay import ReplayDay, replay_day
from marginproof.models.registry import get_model
from marginproof.service.runner import EngineRunner
from marginproof.service.workload import synthetic_accounts
from marginproof.storage.base import NewEntry
from marginproof.storage.factory import open_repository
from marginproof.storage.sql import SqlRepository


@dataclass(frozen=True)
class EngineDemoSummary:
    """What the engine stage did."""

    database: str
    log_entries: int
    processed: int
    ticks: int
    accounts: int
    events: dict[str, int]
    history_digest: str
    top_accounts: list[dict[str, Any]]
    model: str = ""
    params_hash: str = ""
    factor_state_hash: str = ""
    calls: list[dict[str, Any]] | None = None
    recalibrations: int = 0


def _call_row(ev: MarginCall | LiquidationSignal) -> dict[str, Any]:
    m = ev.margin
    return {"type": ev.type, "account_id": m.account_id, "seq": m.seq,
            "market_ts_ms": m.market_ts_ms, "cause": ev.cause, "initial_margin": m.initial_margin,
            "maintenance_margin": m.maintenance_margin, "equity": m.equity,
            "shortfall": max(0.0, m.initial_margin - m.equity),
            "components": dict(m.components), "held": m.held,
            "binding": None if m.binding is None else m.binding.scenario_label}


async def _run(db_path: Path, date: str, n_accounts: int, model: str) -> EngineDemoSummary:
    repo = open_repository(f"sqlite:///{db_path}")
    day = replay_day(date, ("BTCUSDT", "ETHUSDT"))
    entries = append_day_and_accounts(repo, day, n_accounts)
    ticks = day.tick_entries()
    for t in ticks:
        repo.append([t])
    bus = InProcessBus()
    counts: Counter[str] = Counter()

    async def count(msg: Message) -> None:
        counts[msg.subject.rsplit(".", 1)[-1]] += 1

    await bus.subscribe("mp.events.>", count)
    loop = asyncio.get_running_loop()

    def publish(subject: str, data: bytes, msg_id: str, obj: Any) -> None:
        asyncio.run_coroutine_threadsafe(bus.publish(subject, data, msg_id, obj), loop).result()

    runner = EngineRunner(repo, get_model(model), EngineConfig(), publish=publish)
    calls: list[dict[str, Any]] = []
    recal = [0]

    def collect(out: EngineOutput) -> None:
        for ev in out.events:
            if isinstance(ev, MarginCall | LiquidationSignal):
                calls.append(_call_row(ev))
            elif ev.type == "recalibrated":
                recal[0] += 1

    runner.listeners.append(collect)
    runner.recover()
    processed = await asyncio.to_thread(runner.run_until_idle)
    await bus.drain()
    await bus.close()
    ids = [str(e.body["account_id"]) for e in entries]
    latest = [r for r in (repo.latest_margin(a) for a in ids) if r]

    def utilisation(r: dict[str, Any]) -> float:
        eq = float(r.get("equity") or 0.0)
        return float(r["initial_margin"]) / eq if eq > 0 else float("inf")

    rows = sorted(latest, key=utilisation, reverse=True)
    top = [{"account_id": r["account_id"], "initial_margin": r["initial_margin"],
            "maintenance_margin": r["maintenance_margin"], "equity": r.get("equity"),
            "utilisation": utilisation(r), "status": r.get("status")} for r in rows[:5]]
    eng = runner.engine
    return EngineDemoSummary(str(db_path), repo.last_seq(), processed, len(ticks), len(ids),
                             dict(counts), repo.history_digest(), top, eng.model.name,
                             eng.model.params_hash, eng.factor_state_hash, calls, recal[0])


def append_day_and_accounts(repo: SqlRepository, day: ReplayDay, n_accounts: int
                            ) -> list[NewEntry]:
    """Append ``day``'s opening market and ``n_accounts`` synthetic accounts to the log; the
    account entries."""
    repo.append([day.seed_entry()])
    entries = synthetic_accounts(n_accounts, day.market)
    for i in range(0, len(entries), 1000):
        repo.append(entries[i:i + 1000])
    return entries


def run_engine_demo(db_path: Path, date: str = "2022-04-15", n_accounts: int = 2_000,
                    model: str = "dynamic") -> EngineDemoSummary:
    """Replay ``date`` through the engine on SQLite + in-process bus (fresh database)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_run(db_path, date, n_accounts, model))
