"""A local Binance order book kept from a REST snapshot plus ``depthUpdate`` diffs.

Binance's documented procedure: drop diffs with ``u < lastUpdateId``; the first applied diff
has ``U <= lastUpdateId + 1 <= u``; afterwards each diff's ``pu`` equals the previous ``u``.
A break means lost messages: the book is invalid until it is re-seeded (and the feed alerts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from marginproof.feeds.parsers import DepthDiff


class DepthGapError(Exception):
    """A diff does not follow the previous one: messages were lost or reordered."""


@dataclass
class DepthBook:
    """Bids/asks as price -> quantity; ``mid()`` once both sides exist."""

    symbol: str
    last_id: int | None = None
    bids: dict[float, float] = field(default_factory=dict)
    asks: dict[float, float] = field(default_factory=dict)
    _synced: bool = False

    def seed(self, last_update_id: int, bids: list[tuple[float, float]],
             asks: list[tuple[float, float]]) -> None:
        self.last_id = last_update_id
        self.bids = {p: q for p, q in bids if q > 0}
        self.asks = {p: q for p, q in asks if q > 0}
        self._synced = False

    @property
    def seeded(self) -> bool:
        return self.last_id is not None

    def apply(self, d: DepthDiff) -> bool:
        """Apply a diff; False if it is older than the book; raises :class:`DepthGapError`."""
        if self.last_id is None:
            raise DepthGapError("book not seeded")
        if not self._synced:
            if d.last_id < self.last_id:
                return False
            if not d.first_id <= self.last_id + 1 <= d.last_id:
                raise DepthGapError(f"first diff [{d.first_id}, {d.last_id}] does not cover "
                               f"{self.last_id + 1}")
            self._synced = True
        elif d.prev_last_id is not None and d.prev_last_id != self.last_id:
            raise DepthGapError(f"pu {d.prev_last_id} != last u {self.last_id}")
        for side, levels in ((self.bids, d.bids), (self.asks, d.asks)):
            for p, q in levels:
                if q == 0.0:
                    side.pop(p, None)
                else:
                    side[p] = q
        self.last_id = d.last_id
        return True

    def mid(self) -> float | None:
        if not self.bids or not self.asks:
            return None
        return 0.5 * (max(self.bids) + min(self.asks))
