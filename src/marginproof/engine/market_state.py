"""Current market data per underlying, updated tick by tick, and snapshots of it.

Conventions when a tick carries only some values: an index-only tick moves the forwards and the
futures/perpetual/spot marks of its underlying by the same ratio (the basis is kept in relative
terms) unless the tick quotes them itself; implied vols are sticky (kept) until quoted again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from marginproof.engine.ticks import Tick
from marginproof.instruments.contracts import Instrument
from marginproof.instruments.names import parse_instrument
from marginproof.market.snapshot import MarketSnapshot


@lru_cache(maxsize=65536)
def instrument(name: str) -> Instrument:
    """Parsed instrument (cached: names are immutable)."""
    return parse_instrument(name)


@dataclass
class UnderlyingMarket:
    """Market data of one underlying (USD per coin; vols decimal; expiries in ms)."""

    index: float
    timestamp_ms: int
    forwards: dict[int, float] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    vols: dict[str, float] = field(default_factory=dict)
    funding: dict[str, float] = field(default_factory=dict)


@dataclass
class MarketState:
    """All underlyings' current data (mutable; owned by the engine)."""

    underlyings: dict[str, UnderlyingMarket] = field(default_factory=dict)
    version: dict[str, int] = field(default_factory=dict)
    """Per underlying, incremented whenever its data changes (cache keys of valuations)."""

    def bump(self, underlying: str) -> None:
        self.version[underlying] = self.version.get(underlying, 0) + 1

    def has(self, underlying: str) -> bool:
        return underlying in self.underlyings

    def index(self, asset: str) -> float | None:
        u = self.underlyings.get(asset)
        return None if u is None else u.index

    def apply_tick(self, tick: Tick) -> bool:
        """Apply an accepted tick; False if it cannot be applied (no index known yet)."""
        u = self.underlyings.get(tick.underlying)
        if u is None:
            if tick.index_price is None:
                return False
            u = UnderlyingMarket(index=tick.index_price, timestamp_ms=tick.exchange_ms)
            self.underlyings[tick.underlying] = u
        quoted_marks = dict(tick.marks)
        quoted_fwd = {int(k): v for k, v in tick.forwards}
        if tick.index_price is not None and tick.index_price != u.index:
            ratio = tick.index_price / u.index
            u.forwards = {e: f * ratio for e, f in u.forwards.items()}
            u.marks = {n: m * ratio for n, m in u.marks.items()}
            u.index = tick.index_price
        for name, mark in quoted_marks.items():
            if not instrument(name).is_option:
                u.marks[name] = mark
        u.forwards.update(quoted_fwd)
        u.vols.update(dict(tick.implied_vols))
        u.funding.update(dict(tick.funding_rates))
        u.timestamp_ms = max(u.timestamp_ms, tick.exchange_ms)
        self.bump(tick.underlying)
        return True

    def apply_snapshot(self, snap: MarketSnapshot) -> tuple[str, ...]:
        """Replace the data of every underlying the snapshot prices; returns them (sorted)."""
        ts = int(round(snap.timestamp.timestamp() * 1000))
        touched = []
        for und, idx in sorted(snap.index_prices.items()):
            u = UnderlyingMarket(index=idx, timestamp_ms=ts)
            curve = snap.forwards.get(und, {})
            u.forwards = {int(round(e.timestamp() * 1000)): f for e, f in curve.items()}
            for name, mark in snap.mark_prices.items():
                inst = instrument(name)
                if inst.underlying == und and not inst.is_option:
                    u.marks[name] = mark
            u.vols = {n: v for n, v in snap.implied_vols.items()
                      if instrument(n).underlying == und}
            u.funding = {n: f for n, f in snap.funding_rates.items()
                         if instrument(n).underlying == und}
            self.underlyings[und] = u
            self.bump(und)
            touched.append(und)
        return tuple(touched)

    def snapshot(self, underlying: str) -> MarketSnapshot:
        """Snapshot at the underlying's own time, with every other index for collateral."""
        u = self.underlyings[underlying]
        ts = datetime.fromtimestamp(u.timestamp_ms / 1000.0, tz=UTC)
        return MarketSnapshot(
            timestamp=ts,
            index_prices={k: v.index for k, v in sorted(self.underlyings.items())},
            forwards={underlying: {datetime.fromtimestamp(e / 1000.0, tz=UTC): f
                                   for e, f in sorted(u.forwards.items())}},
            mark_prices=dict(sorted(u.marks.items())),
            implied_vols=dict(sorted(u.vols.items())),
            funding_rates=dict(sorted(u.funding.items())),
        )

    def full_snapshot(self, at_ms: int | None = None) -> MarketSnapshot | None:
        """Snapshot of every underlying, or None if empty.

        Parameters
        ----------
        at_ms : int, optional
            Its time (the engine's valuation time); default the latest underlying time.
        """
        if not self.underlyings:
            return None
        ts_ms = max(u.timestamp_ms for u in self.underlyings.values()) if at_ms is None \
            else int(at_ms)
        return MarketSnapshot(
            timestamp=datetime.fromtimestamp(ts_ms / 1000.0, tz=UTC),
            index_prices={k: v.index for k, v in sorted(self.underlyings.items())},
            forwards={k: {datetime.fromtimestamp(e / 1000.0, tz=UTC): f
                          for e, f in sorted(v.forwards.items())}
                      for k, v in sorted(self.underlyings.items())},
            mark_prices={n: m for _, v in sorted(self.underlyings.items())
                         for n, m in sorted(v.marks.items())},
            implied_vols={n: s for _, v in sorted(self.underlyings.items())
                          for n, s in sorted(v.vols.items())},
            funding_rates={n: f for _, v in sorted(self.underlyings.items())
                           for n, f in sorted(v.funding.items())},
        )
