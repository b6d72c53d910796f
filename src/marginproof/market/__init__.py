"""Market data snapshots."""

from marginproof.market.snapshot import MarketSnapshot

__all__ = ["MarketSnapshot"]
