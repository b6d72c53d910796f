"""Request and response models of the HTTP API (separate from storage and core types)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from marginproof.config.limits import MAX_POSITIONS
from marginproof.io.formats import Amount, PortfolioIn, PositionIn, Quantity

_ID = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
InstrumentName = Annotated[str, Field(min_length=1, max_length=64)]
AssetName = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[A-Z0-9]+$")]
# a portfolio's positions as the files write them (a list of lines) or as a map
Positions = dict[InstrumentName, Quantity] | list[PositionIn]
Collateral = dict[AssetName, Amount]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def positions_map(positions: dict[str, float] | list[PositionIn]) -> dict[str, float]:
    """``{instrument: quantity}`` of either shape (lines of one instrument add up)."""
    if isinstance(positions, dict):
        return dict(positions)
    out: dict[str, float] = {}
    for p in positions:
        out[p.instrument] = out.get(p.instrument, 0.0) + p.quantity
    return out


class AccountCreate(Strict):
    """A new account (or a full replacement of one): a portfolio file (``docs/formats.md``).

    ``positions`` as in the files (a list of ``{instrument, quantity}``) or as a map
    ``{instrument: quantity}``; ``collateral`` asset -> amount. Every instrument must be on an
    underlying the service has a market for and every collateral asset must be valuable
    (a haircut and a price), as the CLI requires.
    """

    account_id: str = _ID
    positions: Positions = Field(default_factory=dict, max_length=MAX_POSITIONS,
                                 description="instrument -> signed quantity, or file lines")
    collateral: Collateral = Field(default_factory=dict, max_length=50,
                                   description="asset -> amount")

    def positions_map(self) -> dict[str, float]:
        return positions_map(self.positions)


class FillIn(Strict):
    """A trade on the account: signed quantity delta of one instrument."""

    instrument: InstrumentName
    quantity: Quantity


class TransferIn(Strict):
    """Collateral moved in (positive) or out (negative)."""

    asset: AssetName
    amount: Amount


class Accepted(BaseModel):
    """The input is in the durable log at ``seq``; margins follow asynchronously.

    ``status`` is ``degraded`` when a position is known but cannot be priced right now
    (``unpriced``: instrument -> why); its margin is then held, never lowered, until it can.
    """

    seq: int
    duplicate: bool = False
    status: Literal["ok", "degraded"] = "ok"
    unpriced: dict[str, str] = Field(default_factory=dict)


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
    held_reason: str | None = None
    """Why the margin is held (a degraded feed, an unpriced position and why, a model error);
    null when it is not held."""
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
    instrument: InstrumentName
    quantity: Quantity


class WhatIfIn(Strict):
    """Margin of a hypothetical book before and after some trades, under any registry model;
    nothing is stored.

    The book ("before") is the account ``account_id``'s positions and collateral (if given)
    plus ``positions`` and ``collateral`` (the portfolio-file shape: a list of ``{instrument,
    quantity}`` or a map) plus a pasted portfolio file in ``portfolio``; "after" adds the
    ``trades``. ``params`` replaces the model's parameters (capped for what-if: see
    ``docs/service.md``).
    """

    model: str | None = Field(default=None, min_length=1, max_length=64,
                              description="registry model; default: the model in force in "
                              "the engines, on their live state")
    params: dict[str, Any] | None = None
    account_id: str | None = Field(default=None, min_length=1, max_length=128)
    positions: Positions = Field(default_factory=dict, max_length=500)
    collateral: Collateral = Field(default_factory=dict, max_length=50)
    portfolio: PortfolioIn | None = Field(default=None, description="a pasted portfolio file "
                                          "(its account_id is only its label)")
    trades: list[TradeIn] = Field(default_factory=list, max_length=100)
    detail: StrictBool = Field(default=False, description="include the full result "
                               "(contributions, greeks, components, model details)")


class SideOut(BaseModel):
    initial_margin: float
    maintenance_margin: float


class BeforeOut(SideOut):
    positions: dict[str, float]


class WhatIfOut(BaseModel):
    """The margin after the trades (``initial_margin``, ``maintenance_margin``), before them,
    the change, and the book's equity and excess (USD; ``None`` for a margin in another
    currency)."""

    model: str
    params_hash: str
    market_timestamp: str
    currency: str
    initial_margin: float
    maintenance_margin: float
    positions: dict[str, float]
    worst_scenario: dict[str, Any] | None
    result: dict[str, Any] | None = None
    base_account: str | None = None
    before: BeforeOut
    after: SideOut
    delta_initial_margin: float
    delta_maintenance_margin: float
    collateral_value_usd: float
    equity_usd: float
    excess_over_initial_margin_usd: float | None
    excess_over_maintenance_margin_usd: float | None
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
    stalled_engines: list[str] = Field(default_factory=list)
    engine_errors: dict[str, str] = Field(default_factory=dict)
    refused_entries: list[dict[str, Any]] = Field(
        default_factory=list, description="log entries the engines refused or quarantined "
        "(newest first): {seq, kind, problem, reason}")
    workers: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="per worker lane: running, waiting, done, refused, "
        "mean task seconds, oldest running task seconds")
