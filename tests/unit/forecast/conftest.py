"""Shared fixtures of the forecast tests: the demo account and market (shipped examples)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from marginproof.config.params import repo_root
from marginproof.instruments.portfolio import Account
from marginproof.io.formats import load_market, load_portfolio
from marginproof.market.snapshot import MarketSnapshot


@pytest.fixture(scope="session")
def demo_account() -> Account:
    return load_portfolio(repo_root() / "examples/portfolio_demo.json")


@pytest.fixture(scope="session")
def demo_market() -> MarketSnapshot:
    m = load_market(repo_root() / "examples/market_btc_2022-04-15.json")
    # a quoted funding rate for the linear ETH perp, so funding paths are exercised
    return replace(m, funding_rates={"ETH_USDC-PERPETUAL": 0.0001})
