"""Fixtures for the engine core tests: the demo market and a helper to build log entries."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from _engine_helpers import Log

from marginproof.demo.book import demo_account
from marginproof.engine import EntryKind, LogEntry
from marginproof.instruments.portfolio import Account
from marginproof.io.formats import market_to_dict
from marginproof.market.snapshot import MarketSnapshot


@pytest.fixture(scope="module")
def demo() -> tuple[Account, MarketSnapshot]:
    return demo_account()


@pytest.fixture
def log(demo: tuple[Account, MarketSnapshot]) -> Log:
    return Log(int(demo[1].timestamp.timestamp() * 1000))


@pytest.fixture
def market_entry(demo: tuple[Account, MarketSnapshot]) -> Callable[[Log], LogEntry]:
    return lambda lg: lg(EntryKind.MARKET, market_to_dict(demo[1]))
