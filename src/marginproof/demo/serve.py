"""``marginproof serve --demo``: the service's first start is never empty.

The demo seeds the input log (only when it holds no account yet) with the start-of-day
market of a shipped day and synthetic BTC/ETH accounts (options, perpetuals, collateral), and
adds a replay feed of that day's hourly prices, so the console shows accounts, margins and
margin calls moving under the model in force. Replayed entries carry stable dedupe keys: a
restart appends nothing twice.
"""

from __future__ import annotations

from marginproof.config.settings import FeedSpec, Settings
from marginproof.storage.sql import SqlRepository, wall_clock_ms

DEMO_DATE = "2022-04-15"


def demo_settings(s: Settings, date: str = DEMO_DATE, speed: float = 120.0) -> Settings:
    """``s`` with a replay feed of ``date`` (``speed``: replay speed-up; 120 = an hourly bar
    every 30 s) unless one is configured already."""
    if any(f.kind == "replay" for f in s.feeds):
        return s
    return s.model_copy(update={"feeds": [*s.feeds, FeedSpec(kind="replay", replay_date=date,
                                                             speed=speed)]})


def seed_demo(repo: SqlRepository, date: str = DEMO_DATE, n_accounts: int = 200) -> int:
    """Seed the log with the day's opening market and ``n_accounts`` synthetic accounts if it
    holds no account; the number of accounts added (0 when the log had accounts)."""
    from marginproof.demo.engine import append_day_and_accounts
    from marginproof.feeds.replay import replay_day

    if repo.list_accounts(limit=1):
        return 0
    entries = append_day_and_accounts(repo, replay_day(date, ("BTCUSDT", "ETHUSDT")), n_accounts)
    # listed by GET /accounts and the console like accounts created through the API
    repo.upsert_accounts([str(e.body["account_id"]) for e in entries], wall_clock_ms())
    return len(entries)
