"""Backtesting: walk-forward engine, continuous statistics, portfolio sets, test statistics.

Pure core; the shell that reads the shipped data and writes reports is
:mod:`marginproof.reports`. See ``docs/backtesting.md``.
"""

from marginproof.backtest.continuous import (
    BacktestConfig,
    ContinuousBacktest,
    StatsAccumulator,
    category_summary,
    walk_forward,
)
from marginproof.backtest.market import IV_RATIO, MarketPath, iv_proxy
from marginproof.backtest.portfolios import BookTemplate, DayBooks, Leg, portfolio_set
from marginproof.backtest.providers import (
    ConstantProvider,
    DayMargins,
    EwmaVarProvider,
    GridBatchProvider,
    MarginProvider,
    ModelProvider,
)
from marginproof.backtest.stats import (
    acerbi_szekely_z1,
    acerbi_szekely_z2,
    christoffersen_cc,
    christoffersen_independence,
    coverage_summary,
    du_escanciano,
    kupiec_pof,
    simulate_z2_null,
    traffic_light,
)

__all__ = [
    "IV_RATIO", "BacktestConfig", "BookTemplate", "ConstantProvider", "ContinuousBacktest",
    "DayBooks", "DayMargins", "EwmaVarProvider", "GridBatchProvider", "Leg", "MarginProvider",
    "MarketPath", "ModelProvider", "StatsAccumulator", "acerbi_szekely_z1", "acerbi_szekely_z2",
    "category_summary", "christoffersen_cc", "christoffersen_independence", "coverage_summary",
    "du_escanciano", "iv_proxy", "kupiec_pof", "portfolio_set", "simulate_z2_null",
    "traffic_light", "walk_forward",
]
