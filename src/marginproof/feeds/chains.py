"""Build market snapshots from the shipped Deribit option chains."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from marginproof.errors import InputError
from marginproof.market.snapshot import MarketSnapshot


def market_from_chain(chain: pd.DataFrame, index_price_usd: float | None = None,
                      extra_index: dict[str, float] | None = None) -> MarketSnapshot:
    """Market snapshot of one Deribit BTC chain (one ``quote_date``).

    Forwards are the median ``underlying_price`` per expiry; implied vols are ``mark_iv/100``;
    the index is the forward of the nearest expiry unless ``index_price_usd`` is given; rates 0
    (Deribit marks options with r = 0 on the expiry's future).
    """
    if chain.empty:
        raise InputError("chain", "empty option chain")
    ts = datetime.fromtimestamp(int(chain["quote_unixtime"].to_numpy()[0]), tz=UTC)
    fwd: dict[datetime, float] = {}
    for _, g in chain.groupby("expiry_unix"):
        exp = datetime.fromtimestamp(int(g["expiry_unix"].to_numpy()[0]), tz=UTC)
        if exp > ts:
            fwd[exp] = float(g["underlying_price"].median())
    if not fwd:
        raise InputError("chain", "every expiry is in the past")
    nearest = min(fwd)
    index = {"BTC": float(index_price_usd if index_price_usd is not None else fwd[nearest])}
    index.update(extra_index or {})
    live = chain[chain["expiry_unix"] > ts.timestamp()]
    vols = {str(n): float(v) / 100.0 for n, v in zip(live["instrument_name"], live["mark_iv"],
                                                      strict=True)}
    return MarketSnapshot(timestamp=ts, index_prices=index, forwards={"BTC": fwd},
                          implied_vols=vols)
