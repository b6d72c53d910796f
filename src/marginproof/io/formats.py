"""File formats at the boundary: portfolio and market JSON (pydantic v2 models).

Documented in ``docs/formats.md``; JSON Schemas in ``schemas/`` are generated from these models
(``marginproof schema``). Parsing errors become :class:`InputError` naming the field.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictFloat, ValidationError

from marginproof.config import limits
from marginproof.errors import InputError
from marginproof.instruments.portfolio import Account, Portfolio, Position
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.presets.inputs import (
    PresetMarketInputsIn,
    PresetPortfolioInputsIn,
    dump_market_inputs,
    dump_portfolio_inputs,
)


def _bounded(check: Any) -> Any:
    def run(v: float) -> float:
        try:
            return float(check(v, "value"))
        except InputError as exc:
            raise ValueError(exc.message) from None
    return AfterValidator(run)


# JSON numbers only (``true`` or ``"10"`` are refused, never coerced), within the documented
# limits of :mod:`marginproof.config.limits`
Quantity = Annotated[StrictFloat, _bounded(limits.check_quantity)]
Amount = Annotated[StrictFloat, _bounded(limits.check_collateral)]
Price = Annotated[StrictFloat, _bounded(limits.check_price)]
Vol = Annotated[StrictFloat, _bounded(limits.check_vol)]
Rate = Annotated[StrictFloat, _bounded(limits.check_rate)]
Funding = Annotated[StrictFloat, _bounded(lambda v, f: limits.check_rate(v, f, limits.MAX_FUNDING))]
Name = Annotated[str, Field(min_length=1, max_length=64)]


class PositionIn(BaseModel):
    """One position line."""

    model_config = ConfigDict(extra="forbid", strict=True)
    instrument: Name = Field(description="Deribit-style name, e.g. BTC-27DEC26-100000-C")
    quantity: Quantity = Field(description="Signed: coins, or USD face value for inverse "
                                           f"futures; |quantity| <= {limits.MAX_QUANTITY:g}")


class PortfolioIn(BaseModel):
    """A portfolio file: positions and (optional) collateral balances."""

    model_config = ConfigDict(extra="forbid")
    account_id: str = Field(default="portfolio", min_length=1, max_length=128)
    positions: list[PositionIn] = Field(max_length=limits.MAX_POSITIONS)
    collateral: dict[Annotated[str, Field(min_length=1, max_length=16)], Amount] = Field(
        default_factory=dict, max_length=100,
        description=f"asset -> amount in that asset; |amount| <= {limits.MAX_COLLATERAL:g}")
    preset_inputs: PresetPortfolioInputsIn | None = Field(
        default=None, description="account inputs of the exchange presets (docs/formats.md)")


class MarketIn(BaseModel):
    """A market snapshot file (units: see ``marginproof.market.snapshot``)."""

    model_config = ConfigDict(extra="forbid")
    timestamp: datetime
    index_prices: dict[str, Price]
    forwards: dict[str, dict[datetime, Price]] = Field(default_factory=dict)
    mark_prices: dict[str, Price] = Field(default_factory=dict)
    implied_vols: dict[str, Vol] = Field(default_factory=dict)
    rates: dict[str, Rate] = Field(default_factory=dict)
    funding_rates: dict[str, Funding] = Field(default_factory=dict)
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


class _JsonRefusedError(ValueError):
    """Strict-JSON refusal (raised inside the decoder's hooks)."""


def _reject_constant(name: str) -> float:
    raise _JsonRefusedError(f"{name} is not a JSON number")


def _float(text: str) -> float:
    v = float(text)
    if v in (float("inf"), float("-inf")):
        raise _JsonRefusedError(f"number {text[:20]} is out of range")
    return v


def _int(text: str) -> int:
    if len(text.lstrip("-")) > limits.MAX_INT_DIGITS:
        raise _JsonRefusedError(f"integer {text[:20]}... is out of range")
    return int(text)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _JsonRefusedError(f"duplicate key {k[:64]!r}")
        out[k] = v
    return out


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


def _text_depth(raw: bytes) -> int:
    """Deepest bracket nesting of a JSON text, brackets inside strings ignored.

    Scanned *before* decoding: the C decoder recurses once per level and only stops at the
    interpreter's recursion limit, which a library may raise (``py_ecc`` sets 100 000 on import);
    a deep body then overflows a thread's C stack (a segfault, not a ``RecursionError``).
    Linear: one regex pass over the strings, one vectorised cumulative sum.
    """
    bare = _JSON_STRING.sub(b'""', raw)
    if not bare:
        return 0
    steps = _OPEN[np.frombuffer(bare, dtype=np.uint8)].astype(np.int64)
    return int(np.cumsum(steps).max(initial=0))


def _depth_ok(obj: Any, max_depth: int) -> bool:
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            children: Any = o.values()
        elif isinstance(o, list):
            children = o
        else:
            continue
        if d > max_depth:
            return False
        stack.extend((c, d + 1) for c in children)
    return True


def loads_strict(text: str | bytes, what: str = "input",
                 max_depth: int = limits.MAX_JSON_DEPTH) -> Any:
    """Parse strict JSON: the one decoder of every file and request body.

    Refused (``InputError`` naming ``what``): malformed JSON, ``NaN``/``Infinity`` literals,
    numbers that overflow a float (``1e400``), integers of more than 19 digits, duplicate keys
    in an object (JSON leaves their meaning open: last-wins would silently drop a value) and
    nesting deeper than ``max_depth``. The messages never echo a bad value back.
    """
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if _text_depth(raw) > max_depth:
        raise InputError(what, f"JSON nested deeper than {max_depth} levels")
    try:
        obj = json.loads(text, parse_constant=_reject_constant, parse_float=_float,
                         parse_int=_int, object_pairs_hook=_no_duplicates)
    except _JsonRefusedError as exc:
        raise InputError(what, f"invalid JSON: {exc}") from None
    except RecursionError:
        raise InputError(what, f"JSON nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError:
        raise InputError(what, "is not UTF-8") from None
    except ValueError as exc:  # json.JSONDecodeError
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "malformed"
        pos = f" at line {exc.lineno} column {exc.colno}" \
            if isinstance(exc, json.JSONDecodeError) else ""
        raise InputError(what, f"malformed JSON: {msg}{pos}") from None
    if not _depth_ok(obj, max_depth):
        raise InputError(what, f"JSON nested deeper than {max_depth} levels")
    return obj


def read_json(path: str | Path) -> Any:
    """Read a strict-JSON file (see :func:`loads_strict`), naming the file on error."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(p), "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(p), f"cannot read: {exc}") from None
    return loads_strict(text, str(p))


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
