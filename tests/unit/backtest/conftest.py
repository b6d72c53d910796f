"""Fixtures of the backtest tests."""

from __future__ import annotations

import pytest

from marginproof.backtest.market import MarketPath
from tests.unit.backtest._paths import synthetic_path


@pytest.fixture(scope="module")
def path() -> MarketPath:
    return synthetic_path()
