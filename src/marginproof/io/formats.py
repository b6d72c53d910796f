"""File formats at the boundary: portfolio and market JSON (pydantic v2 models).

Documented in ``docs/formats.md``; JSON Schemas in ``schemas/`` are generated from these models
(``marginproof schema``). Parsing errors become :class:`InputError` naming the field.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from marginproof.errors import InputError
from marginproof.instruments.portfolio import Account, Portfolio, Position
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.presets.inputs import (
    PresetMarketInputsIn,
    PresetPortfolioInputsIn,
    dump_market_inputs,
    dump_portfolio_inputs,
)


class PositionIn(BaseModel):
    """One position line."""

    model_config = ConfigDict(extra="forbid")
    instrument: str = Field(description="Deribit-style name, e.g. BTC-27DEC26-100000-C")
    quantity: float = Field(description="Signed: coins, or USD face value for inverse futures")

    @field_validator("quantity")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be finite")
        return v


class PortfolioIn(BaseModel):
    """A portfolio file: positions and (optional) collateral balances."""

    model_config = ConfigDict(extra="forbid")
    account_id: str = Field(default="portfolio", min_length=1)
    positions: list[PositionIn]
    collateral: dict[str, float] = Field(default_factory=dict,
                                         description="asset -> amount in that asset")
    preset_inputs: PresetPortfolioInputsIn | None = Field(
        default=None, description="account inputs of the exchange presets (docs/formats.md)")


class MarketIn(BaseModel):
    """A market snapshot file (units: see ``marginproof.market.snapshot``)."""

    model_config = ConfigDict(extra="forbid")
    timestamp: datetime
    index_prices: dict[str, float]
    forwards: dict[str, dict[datetime, float]] = Field(default_factory=dict)
    mark_prices: dict[str, float] = Field(default_factory=dict)
    implied_vols: dict[str, float] = Field(default_factory=dict)
    rates: dict[str, float] = Field(default_factory=dict)
    funding_rates: dict[str, float] = Field(default_factory=dict)
    preset_inputs: PresetMarketInputsIn | None = Field(
        default=None, description="market inputs of the exchange presets (docs/formats.md)")


def _field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "input"


def _validate(model: type[BaseModel], data: Any, what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(_field(tuple(err["loc"])) or what, err["msg"]) from None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def read_json(path: str | Path) -> Any:
    """Read strict JSON (NaN/Infinity rejected), naming the file on error."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(p), "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(p), f"cannot read: {exc}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise InputError(str(p), f"malformed JSON: {exc}") from None


def portfolio_from_dict(data: Any) -> Account:
    """Validate a portfolio document and build an :class:`Account`."""
    doc: PortfolioIn = _validate(PortfolioIn, data, "portfolio")
    positions = tuple(
        Position.of(p.instrument, p.quantity, f"positions[{i}]")
        for i, p in enumerate(doc.positions)
    )
    book = Portfolio(positions, dict(doc.collateral), dump_portfolio_inputs(doc.preset_inputs))
    return Account(doc.account_id, book, dict(doc.collateral))


def market_from_dict(data: Any) -> MarketSnapshot:
    """Validate a market document and build a :class:`MarketSnapshot`."""
    doc: MarketIn = _validate(MarketIn, data, "market")
    if doc.timestamp.tzinfo is None:
        raise InputError("timestamp", "must carry a timezone (use ...Z for UTC)")
    return MarketSnapshot(
        timestamp=doc.timestamp, index_prices=doc.index_prices, forwards=doc.forwards,
        mark_prices=doc.mark_prices, implied_vols=doc.implied_vols, rates=doc.rates,
        funding_rates=doc.funding_rates, preset_inputs=dump_market_inputs(doc.preset_inputs),
    )


def market_to_dict(m: MarketSnapshot) -> dict[str, Any]:
    """Inverse of :func:`market_from_dict`."""
    return {
        "timestamp": m.timestamp.isoformat().replace("+00:00", "Z"),
        "index_prices": dict(m.index_prices),
        "forwards": {u: {e.isoformat().replace("+00:00", "Z"): f for e, f in c.items()}
                     for u, c in m.forwards.items()},
        "mark_prices": dict(m.mark_prices),
        "implied_vols": dict(m.implied_vols),
        "rates": dict(m.rates),
        "funding_rates": dict(m.funding_rates),
        **({"preset_inputs": PresetMarketInputsIn.model_validate(dict(m.preset_inputs))
            .model_dump(mode="json", exclude_defaults=True)} if m.preset_inputs else {}),
    }


def portfolio_to_dict(a: Account) -> dict[str, Any]:
    """Inverse of :func:`portfolio_from_dict`."""
    return {
        "account_id": a.account_id,
        "positions": [{"instrument": p.instrument.name, "quantity": p.quantity}
                      for p in a.portfolio.positions],
        "collateral": dict(a.collateral),
        **({"preset_inputs": dict(a.portfolio.preset_inputs)}
           if a.portfolio.preset_inputs else {}),
    }


def load_portfolio(path: str | Path) -> Account:
    """Read a portfolio JSON file."""
    return portfolio_from_dict(read_json(path))


def load_market(path: str | Path) -> MarketSnapshot:
    """Read a market JSON file."""
    return market_from_dict(read_json(path))


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schemas of the file formats, keyed by file name."""
    return {
        "portfolio.schema.json": PortfolioIn.model_json_schema(),
        "market.schema.json": MarketIn.model_json_schema(),
    }
