"""The batch twin of the history models equals ``model.margin`` book by book (shipped data)."""

from __future__ import annotations

import numpy as np
import pytest

from marginproof.backtest.batch_dynamic import HistoryBatchProvider
from marginproof.backtest.continuous import BacktestConfig, walk_forward
from marginproof.backtest.market import MarketPath
from marginproof.backtest.portfolios import TemplateTable, instantiate, portfolio_set
from marginproof.backtest.providers import ModelProvider
from marginproof.feeds.history import load_market_history
from marginproof.models.registry import get_model, model_class
from marginproof.reports.history import shipped_daily_path
from marginproof.risk.history import DailySeries, MarketHistory

TEMPLATES = portfolio_set(("singles", "adversarial", "hedged", "random"), n_random=4, seed=2)


@pytest.fixture(scope="module")
def path() -> MarketPath:
    return shipped_daily_path(("BTC", "ETH", "SOL"))


@pytest.mark.parametrize("name,day", [("dynamic", "2022-05-10"), ("dynamic", "2024-08-05"),
                                      ("fhs", "2022-05-10"), ("fhs", "2024-08-05"),
                                      ("mc", "2022-05-10")])
def test_batch_equals_per_book_margin(path: MarketPath, name: str, day: str) -> None:
    model = get_model(name)
    row = path.index_of(day)
    books = instantiate(TemplateTable.build(TEMPLATES, path.underlyings), path, row)
    a = HistoryBatchProvider(model).day_margins(path.upto(row), books)
    b = ModelProvider(model).day_margins(path.upto(row), books)
    assert np.isfinite(a.margin).sum() == len(TEMPLATES)
    assert np.allclose(a.margin, b.margin, rtol=1e-9, atol=1e-6)
    assert b.var is not None and a.var is not None and b.es is not None and a.es is not None
    assert np.allclose(a.var, b.var, rtol=1e-9) and np.allclose(a.es, b.es, rtol=1e-9)


def _altered_history(h: MarketHistory, after: str) -> MarketHistory:
    cut = np.datetime64(after, "D")
    closes = {}
    for u, s in h.closes.items():
        v = s.values.copy()
        v[s.dates > cut] *= 0.3
        closes[u] = DailySeries(s.dates, v)
    atm = {}
    for u, s in h.atm_iv.items():
        v = s.values.copy()
        v[s.dates > cut] *= 2.0
        atm[u] = DailySeries(s.dates, v)
    return MarketHistory(closes, h.volumes, atm, h.funding, h.long_closes, h.sources)


def test_dynamic_backtest_unchanged_when_future_data_is_altered(path: MarketPath) -> None:
    hist = load_market_history()
    cls = model_class("dynamic")
    end = "2022-11-08"
    cfg = BacktestConfig(min_history_days=250)
    tpl = TEMPLATES[:8]
    runs = []
    for h in (hist, _altered_history(hist, end)):
        model = cls(None, h)  # type: ignore[call-arg]
        runs.append(walk_forward(path, tpl, HistoryBatchProvider(model), cfg,
                                 start="2022-11-06", end=end).records())
    a, b = runs
    assert len(a) == 3 * len(tpl)
    assert np.array_equal(a["margin_usd"].to_numpy(), b["margin_usd"].to_numpy())
