"""Inputs the exchange presets need beyond the generic portfolio and market formats.

Two optional ``preset_inputs`` sections carry them (documented in ``docs/formats.md``):

* in the **market** file (:class:`PresetMarketInputsIn`): feed confidences (Derive), the
  stable-coin price, per-expiry rates and the already-fixed part of a forward during
  settlement averaging;
* in the **portfolio** file (:class:`PresetPortfolioInputsIn`): perp unrealised P&L and
  unsettled funding (Derive), Deribit's MMP, open-order and spot margins per currency.

Every default is explicit (below) and never a price or a vol: missing confidences are 1.0
(a fully trusted feed), a missing stable price is ``index_prices["USDC"]`` if given else 1.0,
missing per-expiry rates fall back to ``market.rates[underlying]`` (default 0), a missing
fixed forward portion follows Derive's settlement averaging (``F (W - T) / W`` in the last
``W = 1800`` s before expiry, else 0), and missing account amounts are 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from marginproof.errors import InputError
from marginproof.market.snapshot import MarketSnapshot

Confidence = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Rate = Annotated[float, Field(ge=-1.0, le=1.0, allow_inf_nan=False)]

DEFAULT_CONFIDENCE = 1.0
DEFAULT_STABLE_PRICE = 1.0


def _aware(curves: dict[str, dict[datetime, Any]]) -> dict[str, dict[datetime, Any]]:
    out: dict[str, dict[datetime, Any]] = {}
    for und, curve in curves.items():
        c: dict[datetime, Any] = {}
        for exp, v in curve.items():
            if exp.tzinfo is None:
                raise ValueError(f"expiry {exp.isoformat()} of {und} must carry a timezone (Z)")
            c[exp.astimezone(UTC)] = v
        out[und] = c
    return out


class ConfidencesIn(BaseModel):
    """Feed confidences in [0, 1] (Derive's oracles); each defaults to 1.0."""

    model_config = ConfigDict(extra="forbid")
    index: dict[str, Confidence] = Field(
        default_factory=dict, description="underlying or collateral asset -> spot feed confidence")
    perp: dict[str, Confidence] = Field(
        default_factory=dict, description="perpetual name -> perp price feed confidence")
    forward: dict[str, dict[datetime, Confidence]] = Field(
        default_factory=dict, description="underlying -> expiry -> forward feed confidence")
    rate: dict[str, dict[datetime, Confidence]] = Field(
        default_factory=dict, description="underlying -> expiry -> rate feed confidence")
    vol: dict[str, Confidence] = Field(
        default_factory=dict, description="option name -> vol feed confidence at its strike")

    @field_validator("forward", "rate")
    @classmethod
    def _tz(cls, v: dict[str, dict[datetime, Any]]) -> dict[str, dict[datetime, Any]]:
        return _aware(v)


class PresetMarketInputsIn(BaseModel):
    """Market-level preset inputs (the ``preset_inputs`` section of a market file)."""

    model_config = ConfigDict(extra="forbid")
    stable_price: Annotated[float, Field(gt=0.0, le=10.0, allow_inf_nan=False)] | None = Field(
        default=None, description="USDC price in USD (Derive); default index_prices.USDC or 1.0")
    confidences: ConfidencesIn = Field(default_factory=ConfidencesIn)
    rates_by_expiry: dict[str, dict[datetime, Rate]] = Field(
        default_factory=dict,
        description="underlying -> expiry -> continuously compounded rate (Derive's rate feed);"
                    " default rates[underlying] or 0")
    forward_fixed: dict[str, dict[datetime, NonNegative]] = Field(
        default_factory=dict,
        description="underlying -> expiry -> part of the forward (USD) already fixed by "
                    "settlement averaging; spot shocks move only the rest; default "
                    "F * (1800 - T) / 1800 within 1800 s of expiry, else 0")

    @field_validator("rates_by_expiry", "forward_fixed")
    @classmethod
    def _tz(cls, v: dict[str, dict[datetime, Any]]) -> dict[str, dict[datetime, Any]]:
        return _aware(v)


class PresetPortfolioInputsIn(BaseModel):
    """Account-level preset inputs (the ``preset_inputs`` section of a portfolio file)."""

    model_config = ConfigDict(extra="forbid")
    perp_unrealised_pnl: dict[str, Finite] = Field(
        default_factory=dict,
        description="perpetual name -> unrealised P&L of the position, USD (Derive); default 0")
    perp_unsettled_funding: dict[str, Finite] = Field(
        default_factory=dict,
        description="perpetual name -> funding accrued but not settled, USD (Derive); default 0")
    mmp_margin: dict[str, NonNegative] = Field(
        default_factory=dict,
        description="settlement currency -> Deribit MMP margin in that currency; default 0")
    open_orders_margin: dict[str, NonNegative] = Field(
        default_factory=dict,
        description="settlement currency -> Deribit open-orders margin; default 0")
    spot_margin: dict[str, NonNegative] = Field(
        default_factory=dict,
        description="settlement currency -> Deribit spot margin; default 0")


def _loc(prefix: str, loc: tuple[Any, ...]) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _validate(model: type[BaseModel], data: Mapping[str, Any], prefix: str) -> Any:
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(_loc(prefix, tuple(err["loc"])), err["msg"]) from None


def dump_market_inputs(doc: PresetMarketInputsIn | None) -> dict[str, Any]:
    """Plain mapping stored on :class:`MarketSnapshot` (empty when the section is absent)."""
    return {} if doc is None else doc.model_dump(exclude_defaults=True)


def dump_portfolio_inputs(doc: PresetPortfolioInputsIn | None) -> dict[str, Any]:
    """Plain mapping stored on :class:`Portfolio` (empty when the section is absent)."""
    return {} if doc is None else doc.model_dump(exclude_defaults=True)


class MarketInputs:
    """Typed, validated view of ``market.preset_inputs`` with the documented defaults."""

    def __init__(self, market: MarketSnapshot) -> None:
        self._market = market
        self._doc: PresetMarketInputsIn = _validate(
            PresetMarketInputsIn, market.preset_inputs, "market.preset_inputs")

    def stable_price(self) -> float:
        """USDC price in USD: ``stable_price``, else ``index_prices.USDC``, else 1.0."""
        if self._doc.stable_price is not None:
            return float(self._doc.stable_price)
        if "USDC" in self._market.index_prices:
            return float(self._market.index_prices["USDC"])
        return DEFAULT_STABLE_PRICE

    def index_confidence(self, asset: str) -> float:
        return float(self._doc.confidences.index.get(asset, DEFAULT_CONFIDENCE))

    def perp_confidence(self, name: str) -> float:
        return float(self._doc.confidences.perp.get(name, DEFAULT_CONFIDENCE))

    def forward_confidence(self, underlying: str, expiry: datetime) -> float:
        return float(self._doc.confidences.forward.get(underlying, {}).get(
            expiry, DEFAULT_CONFIDENCE))

    def rate_confidence(self, underlying: str, expiry: datetime) -> float:
        return float(self._doc.confidences.rate.get(underlying, {}).get(
            expiry, DEFAULT_CONFIDENCE))

    def vol_confidence(self, name: str) -> float:
        return float(self._doc.confidences.vol.get(name, DEFAULT_CONFIDENCE))

    def rate(self, underlying: str, expiry: datetime) -> float:
        """Rate of ``expiry``: ``rates_by_expiry``, else ``market.rates[underlying]`` (0)."""
        curve = self._doc.rates_by_expiry.get(underlying, {})
        if expiry in curve:
            return float(curve[expiry])
        return self._market.rate(underlying)

    def forward_fixed(self, underlying: str, expiry: datetime) -> float | None:
        """Fixed part of the forward if given (the preset applies its own default)."""
        v = self._doc.forward_fixed.get(underlying, {}).get(expiry)
        return None if v is None else float(v)


class PortfolioInputs:
    """Typed, validated view of ``portfolio.preset_inputs`` (missing amounts are 0)."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._doc: PresetPortfolioInputsIn = _validate(
            PresetPortfolioInputsIn, raw, "portfolio.preset_inputs")

    def perp_value(self, name: str) -> float:
        """Unrealised P&L plus unsettled funding of a perpetual, USD."""
        return float(self._doc.perp_unrealised_pnl.get(name, 0.0)
                     + self._doc.perp_unsettled_funding.get(name, 0.0))

    def perp_names(self) -> set[str]:
        return set(self._doc.perp_unrealised_pnl) | set(self._doc.perp_unsettled_funding)

    def mmp_margin(self, currency: str) -> float:
        return float(self._doc.mmp_margin.get(currency, 0.0))

    def open_orders_margin(self, currency: str) -> float:
        return float(self._doc.open_orders_margin.get(currency, 0.0))

    def spot_margin(self, currency: str) -> float:
        return float(self._doc.spot_margin.get(currency, 0.0))

    def deribit_currencies(self) -> set[str]:
        return (set(self._doc.mmp_margin) | set(self._doc.open_orders_margin)
                | set(self._doc.spot_margin))
