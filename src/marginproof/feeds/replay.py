"""Replay feed over the shipped hourly history (ticks at hourly closes).

The seed entry is a full market snapshot at the start of the day: the shipped Deribit BTC
option chain of that date when there is one (forwards and mark vols), and the hourly opens of
every replayed symbol as index prices. Each hour then brings one index tick per symbol (the
bar's close, stamped at the bar's end). Replayed ticks carry ``source="replay"`` (exempt from
the live-latency check) and stable dedupe keys, so a restarted replay appends nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from marginproof.engine.entries import EntryKind
from marginproof.engine.ticks import Tick
from marginproof.errors import InputError
from marginproof.feeds.chains import market_from_chain
from marginproof.io import datasets
from marginproof.io.formats import market_to_dict
from marginproof.market.snapshot import MarketSnapshot
from marginproof.storage.base import NewEntry

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class ReplayDay:
    """The seed market and the time-ordered ticks of one replayed UTC day."""

    market: MarketSnapshot
    ticks: tuple[Tick, ...]

    def seed_entry(self) -> NewEntry:
        ts = int(self.market.timestamp.timestamp() * 1000)
        return NewEntry(EntryKind.MARKET, market_to_dict(self.market), "replay",
                        dedupe_key=f"replay:market:{ts}")

    def tick_entries(self) -> list[NewEntry]:
        return [NewEntry(EntryKind.TICK, t.to_dict(), "replay",
                         dedupe_key=f"{t.stream}:{t.exchange_ms}") for t in self.ticks]


def _underlying(symbol: str) -> str:
    if not symbol.endswith("USDT"):
        raise InputError("symbol", f"{symbol!r}: hourly replay covers *USDT pairs")
    return symbol[:-4]


def replay_day(date: str = "2022-04-15", symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"),
               hours: int = 24) -> ReplayDay:
    """Seed market and hourly ticks of ``date`` (``YYYY-MM-DD``) for ``symbols``."""
    try:
        day = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise InputError("replay_date", f"{date!r} is not YYYY-MM-DD") from None
    if not 1 <= hours <= 24:
        raise InputError("hours", "must be in [1, 24]")
    bars: dict[str, Any] = {}
    for sym in symbols:
        df = datasets.load_spot_hourly(sym)
        t = df["open_time_utc"]
        sub = df[(t >= day) & (t < day + timedelta(hours=hours))]
        if sub.empty:
            raise InputError("replay_date", f"no hourly {sym} bars on {date}")
        bars[sym] = sub
    opens = {_underlying(s): float(b["open"].iloc[0]) for s, b in bars.items()}
    if date in datasets.option_chain_dates():
        chain = datasets.option_chain(date)
        extra = {u: p for u, p in opens.items() if u != "BTC"}
        chain_market = market_from_chain(chain, extra_index=extra)
        seed = MarketSnapshot(day, {**chain_market.index_prices, **({"BTC": opens["BTC"]}
                                                                    if "BTC" in opens else {})},
                              chain_market.forwards, chain_market.mark_prices,
                              chain_market.implied_vols)
    else:
        seed = MarketSnapshot(day, opens)
    ticks: list[Tick] = []
    for sym, b in bars.items():
        und = _underlying(sym)
        for t, close in zip(b["open_time_utc"], b["close"], strict=True):
            end_ms = int(t.timestamp() * 1000) + HOUR_MS
            ticks.append(Tick("replay", f"replay:{sym}", und, end_ms, index_price=float(close)))
    ticks.sort(key=lambda x: (x.exchange_ms, x.underlying))
    return ReplayDay(seed, tuple(ticks))
