"""Instrument terms: what was agreed, independent of market data.

Quantity conventions (``contract_size`` multiplies a position's quantity into these units):

* spot, linear futures/perpetuals, all options: quantity in coins of the underlying;
* inverse futures/perpetuals: quantity in USD face value (Deribit's ``amount``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class InstrumentKind(StrEnum):
    """What kind of contract an instrument is."""

    SPOT = "spot"
    FUTURE = "future"
    PERPETUAL = "perpetual"
    OPTION = "option"


class Settlement(StrEnum):
    """Linear: P&L in the quote (USD-like) currency; inverse: P&L in the coin."""

    LINEAR = "linear"
    INVERSE = "inverse"


@dataclass(frozen=True, slots=True)
class Instrument:
    """Terms of one instrument.

    Attributes
    ----------
    name : str
        Deribit-style name, e.g. ``BTC-27DEC26-100000-C``.
    underlying : str
        Base coin, e.g. ``BTC``.
    kind, settlement : InstrumentKind, Settlement
    quote : str
        Quote/settlement currency of linear products (``USD`` for inverse ones).
    expiry : datetime or None
        Expiry (UTC) for futures and options.
    strike : float or None
        Option strike in USD.
    is_call : bool or None
    contract_size : float
        Multiplier from quantity to coins (linear, options, spot) or USD (inverse futures).
    """

    name: str
    underlying: str
    kind: InstrumentKind
    settlement: Settlement
    quote: str = "USD"
    expiry: datetime | None = None
    strike: float | None = None
    is_call: bool | None = None
    contract_size: float = 1.0

    @property
    def is_option(self) -> bool:
        return self.kind is InstrumentKind.OPTION

    @property
    def is_inverse(self) -> bool:
        return self.settlement is Settlement.INVERSE

    @property
    def is_delta_one(self) -> bool:
        return self.kind is not InstrumentKind.OPTION

    @property
    def settlement_currency(self) -> str:
        """Coin for inverse products, the quote stable coin for linear ones."""
        return self.underlying if self.is_inverse else self.quote
