"""Positions, portfolios and accounts with multi-asset collateral."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from marginproof.errors import InputError
from marginproof.instruments.contracts import Instrument
from marginproof.instruments.names import parse_instrument


@dataclass(frozen=True, slots=True)
class Position:
    """A signed holding of one instrument (positive = long).

    Attributes
    ----------
    instrument : Instrument
    quantity : float
        Signed quantity (coins, or USD face value for inverse futures; see contracts).
    """

    instrument: Instrument
    quantity: float

    @classmethod
    def of(cls, name: str, quantity: float, field_name: str = "position") -> Position:
        """Build a position from an instrument name, validating the quantity."""
        inst = parse_instrument(name, f"{field_name}.instrument")
        q = float(quantity)
        if not math.isfinite(q):
            raise InputError(f"{field_name}.quantity", f"must be finite, got {quantity!r}")
        return cls(inst, q)


class FrozenMap(Mapping[str, Any]):
    """A read-only, picklable mapping (``MappingProxyType`` cannot be pickled)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = dict(data or {})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(self._data)

    def __reduce__(self) -> tuple[type[FrozenMap], tuple[dict[str, Any]]]:
        return (FrozenMap, (self._data,))


@dataclass(frozen=True, slots=True)
class Portfolio:
    """An ordered collection of positions (one per line; duplicates are allowed).

    Attributes
    ----------
    positions : tuple of Position
    collateral : Mapping[str, float]
        Balances held alongside the positions (asset -> amount, ``USDC`` signed cash). Only
        the exchange presets that margin cash and collateral read it (Derive); the file
        reader fills it from the portfolio file's ``collateral``. Empty by default.
    preset_inputs : Mapping[str, Any]
        Account-level inputs of the exchange presets (perp unrealised P&L, Deribit MMP and
        open-order margins ...), validated by the presets; see ``docs/formats.md``.
    """

    positions: tuple[Position, ...]
    collateral: Mapping[str, float] = field(default_factory=dict, hash=False)
    preset_inputs: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "collateral", FrozenMap(self.collateral))
        object.__setattr__(self, "preset_inputs", FrozenMap(self.preset_inputs))

    def __len__(self) -> int:
        return len(self.positions)

    @classmethod
    def of(cls, items: Mapping[str, float] | list[tuple[str, float]]) -> Portfolio:
        """Build from ``{name: quantity}`` or ``[(name, quantity), ...]``."""
        pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
        return cls(
            tuple(Position.of(n, q, f"positions[{i}]") for i, (n, q) in enumerate(pairs))
        )

    def scaled(self, k: float) -> Portfolio:
        """Every quantity multiplied by ``k`` (collateral and preset inputs unchanged)."""
        return Portfolio(tuple(Position(p.instrument, p.quantity * k) for p in self.positions),
                         self.collateral, self.preset_inputs)

    def __add__(self, other: Portfolio) -> Portfolio:
        """Positions of both; collateral and preset inputs of the left operand."""
        return Portfolio(self.positions + other.positions, self.collateral, self.preset_inputs)

    @property
    def underlyings(self) -> tuple[str, ...]:
        """Underlyings in first-seen order."""
        return tuple(dict.fromkeys(p.instrument.underlying for p in self.positions))


_DEFAULT_HAIRCUTS: Mapping[str, float] = MappingProxyType(
    {"USD": 0.0, "USDC": 0.0, "USDT": 0.02, "BTC": 0.05, "ETH": 0.07, "SOL": 0.15}
)


@dataclass(frozen=True, slots=True)
class CollateralPolicy:
    """Haircuts applied to collateral values (0.05 = 5 % off the market value).

    Assets without a haircut entry are refused rather than valued at a guess.
    """

    haircuts: Mapping[str, float] = field(default_factory=lambda: dict(_DEFAULT_HAIRCUTS))

    def __post_init__(self) -> None:
        for asset, h in self.haircuts.items():
            if not (0.0 <= float(h) < 1.0) or math.isnan(float(h)):
                raise InputError(f"haircuts.{asset}", f"haircut must be in [0, 1), got {h!r}")


@dataclass(frozen=True, slots=True)
class Account:
    """An account: positions plus collateral balances (asset -> amount in that asset)."""

    account_id: str
    portfolio: Portfolio
    collateral: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.account_id:
            raise InputError("account_id", "must be a non-empty string")
        for asset, amount in self.collateral.items():
            a = float(amount)
            if not math.isfinite(a):
                raise InputError(f"collateral.{asset}", f"must be finite, got {amount!r}")
