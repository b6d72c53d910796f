"""The demo book: a realistic BTC/ETH account built from the shipped data.

The market is the Deribit BTC option chain of one shipped quote date (forwards, mark vols),
with the ETH index from the Binance daily close of the same day.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from marginproof.demo import DEMO_DATE as DEMO_DATE  # re-exported
from marginproof.feeds.chains import market_from_chain
from marginproof.instruments.portfolio import Account, Portfolio
from marginproof.io import datasets
from marginproof.market.snapshot import MarketSnapshot


def _pick(chain: pd.DataFrame, expiry_unix: int, right: str, target: float) -> str:
    sub = chain[(chain["expiry_unix"] == expiry_unix) & (chain["option_right"] == right)]
    i = int(np.argmin(np.abs(sub["strike"].to_numpy() - target)))
    return str(sub["instrument_name"].iloc[i])


def demo_market(quote_date: str = DEMO_DATE) -> MarketSnapshot:
    """Market snapshot of the shipped chain of ``quote_date`` plus the ETH daily close."""
    chain = datasets.option_chain(quote_date)
    ts = datasets.chain_timestamp(chain)
    daily = datasets.load_spot_daily(["ETHUSDT"])
    prev_day = (ts - timedelta(days=1)).strftime("%Y-%m-%d")
    eth = daily[daily["date"].dt.strftime("%Y-%m-%d") == prev_day]["close"]
    return market_from_chain(chain, extra_index={"ETH": float(eth.iloc[0])})


def with_perp_marks_at_index(m: MarketSnapshot) -> MarketSnapshot:
    """The market with the demo's perpetuals marked at the index (exchange presets refuse a
    perpetual without a mark; the chain file carries no perpetual quotes)."""
    marks = {"BTC-PERPETUAL": m.index("BTC"), "ETH_USDC-PERPETUAL": m.index("ETH")}
    return MarketSnapshot(m.timestamp, m.index_prices, m.forwards, {**m.mark_prices, **marks},
                          m.implied_vols, m.rates, m.funding_rates)


def demo_account(quote_date: str = DEMO_DATE) -> tuple[Account, MarketSnapshot]:
    """A hedged options book: spot + perp hedge, a collar, a long straddle, an ETH perp."""
    chain = datasets.option_chain(quote_date)
    market = demo_market(quote_date)
    ts = market.timestamp.timestamp()
    expiries = sorted(int(e) for e in chain["expiry_unix"].unique() if e > ts + 20 * 86400)
    near, far = expiries[0], expiries[min(2, len(expiries) - 1)]
    s = market.index("BTC")
    positions = [
        ("BTC_USDT", 2.0),                                   # long 2 BTC spot
        ("BTC-PERPETUAL", -60_000.0),                        # short 60k USD inverse perp
        (_pick(chain, near, "call", 1.10 * s), -5.0),        # collar: short OTM calls
        (_pick(chain, near, "put", 0.90 * s), 5.0),          #         long OTM puts
        (_pick(chain, far, "call", s), 3.0),                 # long ATM straddle, later expiry
        (_pick(chain, far, "put", s), 3.0),
        ("ETH_USDC-PERPETUAL", 20.0),                        # long 20 ETH linear perp
    ]
    acct = Account("demo-desk", Portfolio.of(positions), {"BTC": 1.0, "USDC": 50_000.0})
    return acct, market
