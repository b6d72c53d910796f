"""The engine margins history models on markets after the end of their history.

The batch models refuse a history that ends more than ``max_history_lag_days`` before the
as-of day; the engine binds them to its live risk-factor state, whose EWMA vols (seeded from
the history's last forecast, updated by live samples) replace the history's recent vol, so
the live path keeps margining (and the what-if of the model in force, bound to the same state).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from _engine_helpers import Log, account_body

from marginproof.engine import EntryKind, MarginEngine
from marginproof.errors import InputError
from marginproof.instruments.portfolio import Portfolio
from marginproof.io.formats import market_to_dict
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.registry import get_model

BOOK = {"BTC-PERPETUAL": 100_000.0, "ETH_USDC-PERPETUAL": -10.0}


@pytest.mark.parametrize("name", ["fhs", "dynamic"])
def test_engine_margins_a_market_months_after_the_history(name: str) -> None:
    mkt = MarketSnapshot(datetime(2026, 11, 25, 8, tzinfo=UTC),
                         {"BTC": 90_000.0, "ETH": 3_000.0})  # history ends 2026-05-16
    log = Log(int(mkt.timestamp.timestamp() * 1000))
    eng = MarginEngine(get_model(name))
    eng.apply(log(EntryKind.MARKET, market_to_dict(mkt)))
    eng.apply(log(EntryKind.ACCOUNT, account_body("a", BOOK, {"USDC": 50_000.0})))
    m = eng.account_margin("a")
    assert m is not None and not m.held and m.held_reason == ""
    assert m.initial_margin > 0.0
    assert set(eng.factors.freeze().vols) >= {"BTC", "ETH"}
    live = eng.live_model.margin(Portfolio.of(BOOK), mkt)
    assert live.initial_margin == pytest.approx(m.figure_initial_margin, rel=1e-9)
    with pytest.raises(InputError):  # the history-only model is refused
        eng.model.margin(Portfolio.of(BOOK), mkt)
