"""Sample objects for tests (Strata-style ``sut()`` factories)."""

from __future__ import annotations

from datetime import UTC, datetime

from marginproof.instruments.portfolio import Portfolio
from marginproof.market.snapshot import MarketSnapshot

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
EXP = "27DEC26"
CALL = f"BTC-{EXP}-90000-C"
PUT = f"BTC-{EXP}-90000-P"
OTM_CALL = f"BTC-{EXP}-100000-C"


def sample_market(btc: float = 90_000.0, vol: float = 0.55) -> MarketSnapshot:
    """BTC at ``btc``, ETH at 3,000, flat ``vol`` for the sample options."""
    return MarketSnapshot(
        timestamp=T0,
        index_prices={"BTC": btc, "ETH": 3_000.0, "SOL": 150.0},
        implied_vols={CALL: vol, PUT: vol, OTM_CALL: vol, f"ETH-{EXP}-3000-C": 0.7,
                      f"BTC_USDC-{EXP}-90000-C": vol},
    )


def hedged_book() -> Portfolio:
    """Long inverse perp + short call + long put at the same strike (a conversion)."""
    return Portfolio.of([("BTC-PERPETUAL", 900_000.0), (CALL, -10.0), (PUT, 10.0)])


def naked_book() -> Portfolio:
    return Portfolio.of([("BTC-PERPETUAL", 900_000.0), (CALL, -10.0)])
