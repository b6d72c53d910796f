"""Request and response models of the HTTP API (separate from storage and core types)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_ID = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")


def _finite(v: float) -> float:
    if not math.isfinite(v):
        raise ValueError("must be finite")
    return v


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountCreate(Strict):
    """A new account (or a full replacement of one): positions and collateral."""

    account_id: str = _ID
    positions: dict[str, float] = Field(default_factory=dict, max_length=500,
                                        description="instrument -> signed quantity")
    collateral: dict[str, float] = Field(default_factory=dict, max_length=50,
                                         description="asset -> amount")

    @field_validator("positions", "collateral")
    @classmethod
    def _values(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in v.items():
            if not k or len(k) > 64:
                raise ValueError("keys must be 1..64 characters")
            _finite(x)
        return v


class FillIn(Strict):
    """A trade on the account: signed quantity delta of one instrument."""

    instrument: str = Field(min_length=1, max_length=64)
    quantity: float

    @field_validator("quantity")
    @classmethod
    def _q(cls, v: float) -> float:
        return _finite(v)


class TransferIn(Strict):
    """Collateral moved in (positive) or out (negative)."""

    asset: str = Field(min_length=1, max_length=16, pattern=r"^[A-Z0-9]+$")
    amount: float

    @field_validator("amount")
    @classmethod
    def _a(cls, v: float) -> float:
        return _finite(v)


class Accepted(BaseModel):
    """The input is in the durable log at ``seq``; margins follow asynchronously."""

    seq: int
    duplicate: bool = False


class BindingOut(BaseModel):
    underlying: str | None
    scenario_index: int | None
    scenario_label: str | None


class MarginOut(BaseModel):
    """An account's margin with its explanation."""

    account_id: str
    seq: int
    market_ts_ms: int
    model: str
    params_hash: str
    cause: str
    initial_margin: float
    maintenance_margin: float
    equity: float
    status: Literal["ok", "margin_call", "liquidation"]
    held: bool
    binding: BindingOut


class AccountOut(BaseModel):
    account_id: str
    positions: dict[str, float]
    collateral: dict[str, float]
    as_of_seq: int | None
    margin: MarginOut | None


class AccountList(BaseModel):
    accounts: list[str]


class HistoryOut(BaseModel):
    account_id: str
    margins: list[MarginOut]


class EventsOut(BaseModel):
    account_id: str
    events: list[dict[str, Any]]


class ParamsChangeIn(Strict):
    """A new parameter set, effective at a stated future time (users are told in advance)."""

    params: dict[str, Any]
    effective_at: datetime


class ParamsChangeOut(BaseModel):
    change_id: int
    model: str
    params_hash: str
    changed_by: str
    changed_at_ms: int
    effective_at_ms: int
    log_seq: int


class ParamsOut(BaseModel):
    engine_model: str
    params_hash: str
    params: dict[str, Any]
    scheduled: list[ParamsChangeOut]
    min_notice_s: float
    available_models: list[str]


class ParamsChangesOut(BaseModel):
    changes: list[ParamsChangeOut]


class TradeIn(Strict):
    instrument: str = Field(min_length=1, max_length=64)
    quantity: float

    @field_validator("quantity")
    @classmethod
    def _q(cls, v: float) -> float:
        return _finite(v)


class WhatIfIn(Strict):
    """Margin of a hypothetical portfolio or trade, under any registry model; nothing stored.

    Give ``positions`` (a whole portfolio) and/or ``account_id`` (start from that account's
    current positions) plus optional ``trades`` on top.
    """

    model: str | None = Field(default=None, min_length=1, max_length=64,
                              description="registry model; default: the model in force in "
                              "the engines, on their live state")
    params: dict[str, Any] | None = None
    account_id: str | None = Field(default=None, min_length=1, max_length=128)
    positions: dict[str, float] = Field(default_factory=dict, max_length=500)
    trades: list[TradeIn] = Field(default_factory=list, max_length=100)
    detail: bool = Field(default=False, description="include the full result (contributions, "
                         "greeks, components, model details)")

    @field_validator("positions")
    @classmethod
    def _pos(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in v.items():
            if not k or len(k) > 64:
                raise ValueError("instrument names are 1..64 characters")
            _finite(x)
        return v


class WhatIfOut(BaseModel):
    model: str
    params_hash: str
    market_timestamp: str
    currency: str
    initial_margin: float
    maintenance_margin: float
    positions: dict[str, float]
    worst_scenario: dict[str, Any] | None
    result: dict[str, Any] | None = None
    model_in_force: bool = False


class KeyCreate(Strict):
    scope: Literal["account", "operator"]
    account_id: str | None = Field(default=None, min_length=1, max_length=128)
    label: str = Field(default="", max_length=200)


class KeyOut(BaseModel):
    key_id: str
    scope: str
    account_id: str | None
    label: str
    created_at_ms: int
    created_by: str
    revoked_at_ms: int | None


class KeyCreated(KeyOut):
    key: str = Field(description="the secret: shown once, store it now")


class KeysOut(BaseModel):
    keys: list[KeyOut]


class MarketIn(Strict):
    """A full market snapshot (same fields as the market JSON file format)."""

    snapshot: dict[str, Any]


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    database: str
    schema_version: int
    bus: str
    log_seq: int
    engines: dict[str, int]
    stale_streams: list[str]
    degraded_underlyings: list[str]
