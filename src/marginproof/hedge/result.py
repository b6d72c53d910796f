"""Frozen results of a hedge search (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

STATUSES = ("suggested", "no_improvement", "already_met", "target_unreachable", "no_candidates")


@dataclass(frozen=True)
class HedgeTrade:
    """One suggested trade, in the venue's instrument name and units.

    Attributes
    ----------
    instrument : str
    quantity : float
        Signed (positive = buy): coins, or USD face value for inverse futures/perpetuals.
    side : str
        ``buy`` or ``sell``.
    price : float
        Size-weighted execution price over the book levels taken (venue units).
    mark : float
        The mark the account is valued at (venue units).
    spread_usd, fee_usd, cost_usd : float
        Cost against the mark, fees (fixed part included) and their sum, USD.
    max_quantity : float
        Size limit of that side (book depth allowed), same units as ``quantity``.
    lot : float
    quote_source : str
    """

    instrument: str
    quantity: float
    side: str
    price: float
    mark: float
    spread_usd: float
    fee_usd: float
    cost_usd: float
    max_quantity: float
    lot: float
    quote_source: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class HedgeResult:
    """Outcome of :func:`marginproof.hedge.suggest_hedge`.

    Every figure named ``*_after`` comes from the real ``model.margin`` on the hedged book.
    ``trades`` is empty unless ``status == "suggested"`` (or ``target_unreachable`` with a trade
    that still lowers the margin); ``reason`` says why.
    """

    status: str
    reason: str
    objective: str
    model: str
    params_hash: str
    market_timestamp: datetime
    currency: str
    trades: tuple[HedgeTrade, ...]
    im_before: float
    im_after: float
    im_before_usd: float
    im_after_usd: float
    mm_before: float
    mm_after: float
    cost_usd: float
    spread_usd: float
    fee_usd: float
    equity_before_usd: float | None = None
    equity_after_usd: float | None = None
    target: Mapping[str, Any] | None = None
    target_met: bool | None = None
    max_instruments: int | None = None
    hedged_positions: Mapping[str, float] = field(default_factory=dict)
    surrogate: Mapping[str, Any] = field(default_factory=dict)
    solver: Mapping[str, Any] = field(default_factory=dict)
    candidates: Mapping[str, Any] = field(default_factory=dict)
    timings_s: Mapping[str, float] = field(default_factory=dict)

    @property
    def im_reduction_usd(self) -> float:
        return self.im_before_usd - self.im_after_usd

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "trades"}
        d["market_timestamp"] = self.market_timestamp.isoformat()
        d["trades"] = [t.to_dict() for t in self.trades]
        d["im_reduction_usd"] = self.im_reduction_usd
        for k in ("target", "hedged_positions", "surrogate", "solver", "candidates", "timings_s"):
            v = d.get(k)
            d[k] = None if v is None else _plain(v)
        return d


def _plain(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "item") and callable(x.item):
        return x.item()
    return x
