"""Shared fixtures of the hedge tests: the shipped example books and markets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from marginproof.config.params import repo_root
from marginproof.feeds.history import shipped_history
from marginproof.hedge.sources import HedgeConfig, load_config
from marginproof.io.formats import load_market, load_portfolio
from marginproof.models.registry import get_model, model_class

EX = Path(repo_root()) / "examples"
CASES = {  # model -> (portfolio file, market file)
    "grid": ("portfolio_demo.json", "market_btc_2022-04-15.json"),
    "fhs": ("portfolio_demo.json", "market_btc_2022-04-15.json"),
    "mc": ("portfolio_demo.json", "market_btc_2022-04-15.json"),
    "dynamic": ("portfolio_demo.json", "market_btc_2022-04-15.json"),
    "deribit-pm": ("presets/deribit_btc_options_portfolio.json",
                   "presets/deribit_btc_market.json"),
    "derive-pmrm": ("presets/derive_pmrm_portfolio.json", "presets/derive_market.json"),
}


@pytest.fixture(scope="session")
def hedge_config() -> HedgeConfig:
    return load_config()


@pytest.fixture(scope="session")
def models() -> dict[str, Any]:
    """One instance per model (history models share the shipped history, caches warm)."""
    out: dict[str, Any] = {}
    hist = shipped_history()
    for name in CASES:
        cls = model_class(name)
        out[name] = cls(history=hist) if name in ("fhs", "mc", "dynamic") else get_model(name)
    return out


def case(name: str) -> tuple[Any, Any]:
    """(account, market) of the example of ``name``."""
    p, m = CASES[name]
    return load_portfolio(EX / p), load_market(EX / m)
