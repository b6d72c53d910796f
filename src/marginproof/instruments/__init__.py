"""Instruments, positions, portfolios and accounts (terms only, no market data)."""

from marginproof.instruments.contracts import Instrument, InstrumentKind, Settlement
from marginproof.instruments.names import format_instrument, parse_instrument
from marginproof.instruments.portfolio import Account, CollateralPolicy, Portfolio, Position

__all__ = [
    "Account",
    "CollateralPolicy",
    "Instrument",
    "InstrumentKind",
    "Portfolio",
    "Position",
    "Settlement",
    "format_instrument",
    "parse_instrument",
]
