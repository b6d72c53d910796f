"""Engine outputs: margin batches and account/feed/parameter events.

Every account event carries the full explanation: model name, parameter hash, market timestamp,
the input-log sequence number that caused it, and the binding scenario (underlying, scenario
index and label, loss). Event ids are deterministic (``<seq>:<partition>:<type>:<subject>``), so a
re-run after a crash re-emits the same ids and consumers can drop duplicates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

STATUS_NAMES = ("ok", "margin_call", "liquidation")
STATUS_OK, STATUS_CALL, STATUS_LIQUIDATION = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Binding:
    """The scenario that binds an account's requirement (its largest underlying group)."""

    underlying: str
    scenario_index: int
    scenario_label: str
    scenario_loss_usd: float
    short_option_minimum_usd: float


@dataclass(frozen=True, slots=True)
class AccountMargin:
    """One account's margin state after an entry (USD)."""

    account_id: str
    seq: int
    market_ts_ms: int
    model: str
    params_hash: str
    initial_margin: float
    maintenance_margin: float
    equity: float
    status: str
    held: bool
    binding: Binding | None
    components: Mapping[str, float] = field(default_factory=dict)
    """The model's components of the figure (``core``, ``apc_adjustment`` ... for dynamic)."""
    figure_initial_margin: float | None = None
    """The model figure before the path-dependent steps (hold, buffer, speed limit)."""
    factor_state_hash: str = ""
    """Digest of the risk-factor state the figure was computed on."""
    valuation_ms: int = 0
    """Valuation time of the positions (the engine's valuation clock)."""
    held_reason: str = ""
    """Why the margin is held (degraded feed, unpriced positions and why); empty if not held."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["components"] = dict(self.components)
        return d


@dataclass(frozen=True, slots=True)
class _AccountEvent:
    type: ClassVar[str] = "account"
    partition: int
    margin: AccountMargin
    previous_status: str
    cause: str

    @property
    def event_id(self) -> str:
        return f"{self.margin.seq}:{self.partition}:{self.type}:{self.margin.account_id}"

    def to_dict(self) -> dict[str, Any]:
        d = {"type": self.type, "event_id": self.event_id, "partition": self.partition,
             "previous_status": self.previous_status, "cause": self.cause}
        d.update(self.margin.to_dict())
        d["shortfall_usd"] = max(0.0, self.margin.initial_margin - self.margin.equity)
        return d


@dataclass(frozen=True, slots=True)
class MarginCall(_AccountEvent):
    """Equity fell below the initial margin (but not below maintenance)."""

    type: ClassVar[str] = "margin_call"


@dataclass(frozen=True, slots=True)
class LiquidationSignal(_AccountEvent):
    """Equity fell below the maintenance margin."""

    type: ClassVar[str] = "liquidation"


@dataclass(frozen=True, slots=True)
class MarginRestored(_AccountEvent):
    """Equity is back above the initial margin."""

    type: ClassVar[str] = "margin_restored"


@dataclass(frozen=True, slots=True)
class FeedAlert:
    """A tick was rejected, or a feed went stale / unpriceable: margins are held."""

    type: ClassVar[str] = "feed_alert"
    seq: int
    partition: int
    stream: str
    underlying: str
    problem: str
    detail: str
    exchange_ms: int | None

    @property
    def event_id(self) -> str:
        return f"{self.seq}:{self.partition}:{self.type}:{self.stream}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(type=self.type, event_id=self.event_id)
        return d


@dataclass(frozen=True, slots=True)
class ParamsActivated:
    """A scheduled parameter set took effect (every account re-margined)."""

    type: ClassVar[str] = "params_activated"
    seq: int
    partition: int
    model: str
    params_hash: str
    effective_at_ms: int
    changed_by: str

    @property
    def event_id(self) -> str:
        return f"{self.seq}:{self.partition}:{self.type}:{self.params_hash}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(type=self.type, event_id=self.event_id)
        return d


@dataclass(frozen=True, slots=True)
class Recalibrated:
    """A live risk factor changed and the scenario sets that depend on it were rebuilt.

    ``factor`` is ``vol`` (EWMA of index returns), ``iv_vol``, ``draw`` (Monte Carlo scenario
    draw), ``depth``, ``valuation`` (the valuation clock stepped) or ``seed``; ``old``/``new``
    are its values (None when not a number), ``inputs_hash`` the digest of what it was computed
    from, ``state_hash`` the digest of the whole factor state after it.
    """

    type: ClassVar[str] = "recalibrated"
    seq: int
    partition: int
    underlying: str
    factor: str
    old: float | None
    new: float | None
    inputs_hash: str
    state_hash: str
    reason: str

    @property
    def event_id(self) -> str:
        return f"{self.seq}:{self.partition}:{self.type}:{self.underlying}:{self.factor}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(type=self.type, event_id=self.event_id)
        return d



@dataclass(frozen=True, slots=True)
class _LoopEvent:
    """An event of the feedback loop (backtest settlement, proposal, market response)."""

    type: ClassVar[str] = "loop"
    seq: int
    partition: int
    subject: str
    body: Mapping[str, Any] = field(default_factory=dict)

    @property
    def event_id(self) -> str:
        return f"{self.seq}:{self.partition}:{self.type}:{self.subject}"

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.body)
        d.update(type=self.type, event_id=self.event_id, seq=self.seq, partition=self.partition,
                 subject=self.subject)
        return d


@dataclass(frozen=True, slots=True)
class BacktestSettled(_LoopEvent):
    """A daily settlement compared the books' realised P&L with the margin they held."""

    type: ClassVar[str] = "backtest_settled"


@dataclass(frozen=True, slots=True)
class ScalingProposed(_LoopEvent):
    """The backtest left the green zone: a scaling change is proposed (with its evidence),
    announced with its effective time; it needs an operator's approval."""

    type: ClassVar[str] = "scaling_proposed"


@dataclass(frozen=True, slots=True)
class ProposalUpdated(_LoopEvent):
    """A proposal was approved (its params entry was logged), took effect, or expired."""

    type: ClassVar[str] = "proposal_updated"


@dataclass(frozen=True, slots=True)
class MarketResponseChecked(_LoopEvent):
    """A margin increase was checked against the live depth (cascade), and maybe phased."""

    type: ClassVar[str] = "market_response"



@dataclass(frozen=True, slots=True)
class PositionSettled:
    """An expired option or future settled into collateral (the position is removed).

    ``settlement_price`` is the underlying's index (USD) the engine held when its valuation
    clock reached ``expiry_ms``; ``amount`` (signed) was credited to collateral ``currency``
    (the instrument's settlement currency: the coin for inverse products, the quote stable
    coin for linear ones). Options pay their intrinsic value; futures the P&L from
    ``reference_price`` (the last mark the engine held: earlier P&L is already in collateral)
    to the settlement price.
    """

    type: ClassVar[str] = "position_settled"
    seq: int
    partition: int
    account_id: str
    instrument: str
    quantity: float
    expiry_ms: int
    settlement_price: float
    reference_price: float
    currency: str
    amount: float

    @property
    def event_id(self) -> str:
        return f"{self.seq}:{self.partition}:{self.type}:{self.account_id}:{self.instrument}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(type=self.type, event_id=self.event_id)
        return d


Event = (MarginCall | LiquidationSignal | MarginRestored | FeedAlert | ParamsActivated
         | Recalibrated | BacktestSettled | ScalingProposed | ProposalUpdated
         | MarketResponseChecked | PositionSettled)


@dataclass(frozen=True)
class MarginBatch:
    """Columnar margin updates of every account an entry moved (arrays of shape (n,)).

    ``binding_underlying_index`` indexes ``underlyings`` (-1 where an account has no
    requirement); ``account_index`` is the engine's internal row of each account.
    """

    type: ClassVar[str] = "margin_batch"
    seq: int
    partition: int
    market_ts_ms: int
    model: str
    params_hash: str
    cause: str
    ids_source: NDArray[np.object_]
    initial_margin: NDArray[np.float64]
    maintenance_margin: NDArray[np.float64]
    equity: NDArray[np.float64]
    status: NDArray[np.int8]
    held: NDArray[np.bool_]
    underlyings: tuple[str, ...]
    binding_underlying_index: NDArray[np.int16]
    binding_scenario: NDArray[np.int32]
    account_index: NDArray[np.int64]
    components: Mapping[str, NDArray[np.float64]] = field(default_factory=dict)
    """Per component, the batch's values (shape (n,)), before the path-dependent steps."""
    factor_state_hash: str = ""
    held_reasons: Mapping[int, str] = field(default_factory=dict)
    """Why each held account is held (batch position -> reason, held rows only; see
    ``MarginEngine.held_reason``)."""

    def held_reason(self, i: int) -> str | None:
        """Why the account at batch position ``i`` is held (None if it is not held)."""
        if not bool(self.held[i]):
            return None
        return self.held_reasons.get(i) or "held"

    @cached_property
    def account_ids(self) -> tuple[str, ...]:
        """Account ids, in batch order (materialised on first use, off the hot path)."""
        return tuple(self.ids_source[self.account_index].tolist())

    @property
    def binding_underlying(self) -> list[str]:
        """Binding underlying name per account (``""`` when none)."""
        names = np.array([*self.underlyings, ""], dtype=object)
        out: list[str] = names[self.binding_underlying_index.astype(np.int64)].tolist()
        return out  # index -1 picks the trailing ""

    @property
    def event_id(self) -> str:
        return f"{self.seq}:{self.partition}:{self.type}"

    def __len__(self) -> int:
        return int(self.account_index.shape[0])

    def index_of(self, account_id: str) -> int | None:
        """Position of ``account_id`` in the batch (linear scan; the service caches a map)."""
        try:
            return self.account_ids.index(account_id)
        except ValueError:
            return None

    def row(self, i: int) -> dict[str, Any]:
        """One account's update as a JSON-ready dict."""
        return {
            "account_id": self.account_ids[i], "seq": self.seq,
            "market_ts_ms": self.market_ts_ms, "model": self.model,
            "params_hash": self.params_hash, "cause": self.cause,
            "initial_margin": float(self.initial_margin[i]),
            "maintenance_margin": float(self.maintenance_margin[i]),
            "equity": float(self.equity[i]), "status": STATUS_NAMES[int(self.status[i])],
            "held": bool(self.held[i]), "held_reason": self.held_reason(i),
            "binding_underlying": (self.underlyings[int(self.binding_underlying_index[i])]
                                   if self.binding_underlying_index[i] >= 0 else ""),
            "binding_scenario": int(self.binding_scenario[i]),
        }

    def summary(self) -> dict[str, Any]:
        """Small JSON summary (what goes on a network bus; the rows go to storage)."""
        counts = np.bincount(self.status.astype(np.int64), minlength=3)
        return {"type": self.type, "event_id": self.event_id, "seq": self.seq,
                "partition": self.partition, "market_ts_ms": self.market_ts_ms,
                "model": self.model, "params_hash": self.params_hash, "cause": self.cause,
                "n_accounts": len(self), "n_ok": int(counts[0]), "n_margin_call": int(counts[1]),
                "n_liquidation": int(counts[2]), "factor_state_hash": self.factor_state_hash}
