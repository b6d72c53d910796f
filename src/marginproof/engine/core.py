"""The incremental margin engine: ``engine.apply(entry) -> EngineOutput``, for any model.

A tick's path: **feed** (the shell appends a ``tick`` entry to the input log) -> **engine**
(this module: validate, update the market and the live risk factors, pick the accounts it
moved) -> **model** (the model's live adapter, :mod:`marginproof.engine.adapters`, computes
their figures) -> **margin path** (:mod:`marginproof.engine.margin_path`: hold-never-lower
and the path-dependent APC stages) -> **bus** (the runner publishes the returned batch and
events) -> **service**. The parts, each in its own module:

* account books (:mod:`.books`): positions and collateral, exposure queries;
* market state (:mod:`.market_state`) and live risk factors (:mod:`marginproof.risk.live`):
  index/marks/vols/forwards/funding per underlying, EWMA vols, depth, the valuation clock
  and the scenario draw, all rebuilt only from log entries;
* valuation (:mod:`.valuation`): each underlying's instruments resolved once per market move;
* model adapter (:mod:`.adapters`): scenario caches and the model's figures;
* margin path (:mod:`.margin_path`); event emission (:mod:`.emission`).

Entries:

* a **tick** on ``u`` re-margins the accounts exposed to ``u`` (positions or collateral); if
  it starts a new sampling interval it also samples ``u``'s live EWMA vol (a *recalibration*
  of ``u``'s scenario sets) and, on a new grid time, steps the valuation clock (every account
  is re-margined, once per interval);
* a **market** entry replaces the data of the underlyings it prices, sets the valuation time,
  seeds their live vols from the daily history and draws the scenario sets;
* **fill**, **transfer**, **account** re-margin that one account;
* **params** are scheduled and take effect at their stated time on the log's clock
  (``logged_at_ms``); with ``engine_model`` they switch the model in force;
* **depth** replaces an underlying's order book (liquidity add-on input); **recalibrate**
  draws the scenario sets again (seed derived from the entry) and re-margins everyone;
* **feed_status** marks an underlying degraded (held, alerted);
* **expiry settlement** (no entry of its own: a deterministic step of the entries that move
  the valuation clock or change a book): when the valuation clock reaches an option's or
  future's expiry (08:00 UTC, :func:`marginproof.instruments.names.parse_expiry`), every
  position in it settles into collateral in the instrument's settlement currency at the
  underlying's index held at that moment and is removed (``position_settled`` events); see
  :meth:`MarginEngine._settle_expired`.

Equity is collateral valued at the index less haircuts (negative balances count in full) plus
the USD value of spot and option positions (futures/perps: 0, their P&L settles into
collateral). Status: ``ok`` if equity >= IM, ``margin_call`` if MM <= equity < IM,
``liquidation`` if equity < MM; changes of status are emitted as events.

Bad data never lowers a margin: while an underlying is degraded (rejected tick, stale feed) or
a position cannot be priced, the accounts exposed keep ``IM = max(new, previous)``
(:class:`~marginproof.engine.margin_path.HoldNeverLower`) and say why (``held_reason``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.config.params import params_hash
from marginproof.engine.adapters import LiveAdapter, LiveContext, adapter_for
from marginproof.engine.books import AccountBooks, grow1, grow2
from marginproof.engine.emission import make_batch, status_events, status_of
from marginproof.engine.entries import (
    ACCOUNT_KINDS,
    EntryKind,
    LogEntry,
    parse_account,
    parse_fill,
    parse_transfer,
)
from marginproof.engine.events import (
    STATUS_NAMES,
    AccountMargin,
    Binding,
    Event,
    FeedAlert,
    MarginBatch,
    ParamsActivated,
    PositionSettled,
    Recalibrated,
)
from marginproof.engine.margin_path import MarginPath, PathBatch, default_margin_path
from marginproof.engine.market_state import MarketState, instrument
from marginproof.engine.partition import partition_of
from marginproof.engine.quality import QualityConfig, TickProblem, TickValidator
from marginproof.engine.ticks import Tick
from marginproof.engine.valuation import UnderlyingValuation
from marginproof.errors import InputError, MarginproofError
from marginproof.instruments.portfolio import CollateralPolicy
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.base import BaseMarginModel
from marginproof.models.registry import model_class
from marginproof.risk.history import asof_date
from marginproof.risk.live import LiveConfig, LiveRiskFactors, draw_seed, parse_depth

STABLE_PAR = ("USD", "USDC", "USDT")  # valued at 1 USD unless the feed quotes an index
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class EngineConfig:
    """Engine settings (not margin parameters: those are the model's).

    Attributes
    ----------
    quality : QualityConfig
    n_partitions, partition : int
        This engine owns the accounts with ``partition_of(id, n_partitions) == partition``.
    haircuts : Mapping[str, float] or None
        Collateral haircuts (default: :class:`CollateralPolicy`'s); unknown assets count 0.
    margin_path : callable(model) -> MarginPath
        The path-dependent stages after the model figure (default: hold-never-lower).
    exact : bool
        Use the per-account ``model.margin`` adapter for every model (the reference path).
    """

    quality: QualityConfig = field(default_factory=QualityConfig)
    n_partitions: int = 1
    partition: int = 0
    haircuts: Mapping[str, float] | None = None
    margin_path: Callable[[Any], MarginPath] = default_margin_path
    exact: bool = False
    feedback: Callable[[], Any] | None = None
    """Builds the feedback loop run around every entry (daily settlement, live backtest,
    scaling proposals, market-response events): :class:`marginproof.backtest.feedback.
    FeedbackLoop`. None: no feedback loop."""


@dataclass(frozen=True)
class EngineOutput:
    """What one entry produced: at most one margin batch plus discrete events."""

    seq: int
    batch: MarginBatch | None
    events: tuple[Event, ...]


_ROW_ARRAYS = {"figure_im": np.float64, "figure_mm": np.float64, "im": np.float64,
               "mm": np.float64, "equity": np.float64, "coll_value": np.float64,
               "status": np.int8, "held": np.bool_, "computed": np.bool_,
               "market_ts": np.int64, "updated_seq": np.int64, "binding_group": np.int16,
               "binding_scenario": np.int32, "binding_loss": np.float64,
               "binding_minimum": np.float64, "failed": np.bool_}


class MarginEngine:
    """Incremental margin engine over input-log entries (see module docstring).

    Parameters
    ----------
    model : BaseMarginModel
        Initial model in force (any registered model); ``params`` entries replace it or its
        parameters when they take effect.
    config : EngineConfig
    """

    # per-account outputs, capacity-grown, indexed by the books' account row (_ROW_ARRAYS)
    figure_im: NDArray[np.float64]
    figure_mm: NDArray[np.float64]
    im: NDArray[np.float64]
    mm: NDArray[np.float64]
    equity: NDArray[np.float64]
    coll_value: NDArray[np.float64]
    status: NDArray[np.int8]
    held: NDArray[np.bool_]
    computed: NDArray[np.bool_]
    market_ts: NDArray[np.int64]
    updated_seq: NDArray[np.int64]
    binding_group: NDArray[np.int16]
    binding_scenario: NDArray[np.int32]
    binding_loss: NDArray[np.float64]
    binding_minimum: NDArray[np.float64]
    failed: NDArray[np.bool_]

    def __init__(self, model: BaseMarginModel, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.feedback = self.config.feedback() if self.config.feedback is not None else None
        self.market = MarketState()
        self.validator = TickValidator(self.config.quality)
        self.haircuts = dict(self.config.haircuts if self.config.haircuts is not None
                             else CollateralPolicy().haircuts)
        self.books = AccountBooks()
        self.degraded: dict[str, str] = {}
        self.clock_ms = 0
        self.last_seq = 0
        self.pending_params: list[tuple[int, int, dict[str, Any], str, str, bool]] = []
        self.valuations: dict[str, UnderlyingValuation] = {}
        self.failures: dict[int, str] = {}
        self._unpriced_seen: dict[str, str] = {}
        self._snap: tuple[tuple[Any, ...], MarketSnapshot | None] | None = None
        cap = 16
        for name, dt in _ROW_ARRAYS.items():
            setattr(self, name, np.zeros(cap, dt))
        self.binding_group[:] = -1
        self.mark_value = np.zeros((cap, 4))
        self.unpriced = np.zeros((cap, 4), bool)
        self.holds = np.zeros((cap, 4), bool)
        self.components: dict[str, NDArray[np.float64]] = {}
        self.groups: list[str] = []
        self._group_index: dict[str, int] = {}
        self.model: BaseMarginModel = model
        self.factors = LiveRiskFactors(self._lambda(model), LiveConfig.from_params(model.params))
        self.live_model: BaseMarginModel = model.with_factors(self.factors.freeze())
        self.adapter: LiveAdapter = adapter_for(self.live_model, self.config.exact)
        self.path = self.config.margin_path(model)

    # -- compatibility views -----------------------------------------------------------------
    @property
    def acc_ids(self) -> list[str]:
        return self.books.acc_ids

    @property
    def acc_index(self) -> dict[str, int]:
        return self.books.acc_index

    @property
    def und_names(self) -> list[str]:
        return self.books.und_names

    # -- model ---------------------------------------------------------------------------------
    @staticmethod
    def _lambda(model: BaseMarginModel) -> float:
        return float(getattr(model, "ewma_lambda", 0.94))

    def _install(self, model: BaseMarginModel) -> None:
        """Make ``model`` the model in force (factor state kept; caches rebuilt)."""
        self.model = model
        self.factors.lam = self._lambda(model)
        self.factors.config = LiveConfig.from_params(model.params)
        self.factors._frozen = None
        self._seed_missing()
        self.live_model = model.with_factors(self.factors.freeze())
        self.adapter = adapter_for(self.live_model, self.config.exact)
        self.path.reconfigure(model)

    def _rebind(self) -> None:
        """Bind the model in force to the current factor state (after a factor change)."""
        state = self.factors.freeze()
        if self.live_model.live_factors is state:
            return
        self.live_model = self.model.with_factors(state)
        self.adapter.rebind(self.live_model)

    def scenario_label(self, group: str, j: int) -> str:
        """Human label of scenario ``j`` of ``group`` (an underlying, ``portfolio``, a combo)."""
        return self.adapter.label(group, j)

    @property
    def factor_state_hash(self) -> str:
        """Digest of the live risk-factor state in force."""
        return self.factors.freeze().digest()

    # -- bookkeeping ---------------------------------------------------------------------------
    def owns(self, account_id: str) -> bool:
        """Whether this engine's partition owns ``account_id``."""
        c = self.config
        return c.n_partitions == 1 or partition_of(account_id, c.n_partitions) == c.partition

    def _grow(self) -> None:
        n = len(self.books)
        for name in _ROW_ARRAYS:
            a = getattr(self, name)
            if n > a.shape[0]:
                old = a.shape[0]
                a = grow1(a, n)
                if name == "binding_group":
                    a[old:] = -1
                setattr(self, name, a)
        nu = max(len(self.books.und_names), 1)
        self.mark_value = grow2(self.mark_value, n, nu)
        self.unpriced = grow2(self.unpriced, n, nu)
        self.holds = grow2(self.holds, n, nu)
        for k, v in self.components.items():
            self.components[k] = grow1(v, n)

    def _group(self, name: str) -> int:
        g = self._group_index.get(name)
        if g is None:
            g = self._group_index[name] = len(self.groups)
            self.groups.append(name)
        return g

    def _asset_prices(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """USD value of one unit of each collateral asset after haircut, and before."""
        b = self.books
        cut = np.zeros(b.coll.shape[1])
        raw = np.zeros(b.coll.shape[1])
        for a, k in b.assets.items():
            px = self.market.index(a)
            if px is None:
                px = 1.0 if a in STABLE_PAR else None
            h = self.haircuts.get(a)
            cut[k] = 0.0 if px is None or h is None else px * (1.0 - float(h))
            raw[k] = 0.0 if px is None else px
        return cut, raw

    # -- entry point ---------------------------------------------------------------------------
    def skip_to(self, seq: int, clock_ms: int) -> None:
        """Advance past entries ``last_seq + 1 .. seq`` that were routed to other partitions.

        Only valid for entries this engine would ignore: account entries of accounts it does
        not own that activate no parameters and pass validation (the streaming router,
        :mod:`marginproof.scaleout.stream`, sends every other entry to every partition).
        Applying such an entry would only advance ``last_seq`` and the log clock, so this is
        exactly equivalent.
        """
        if seq < self.last_seq:
            raise ValueError(f"cannot skip back to {seq} from {self.last_seq}")
        self.last_seq = seq
        self.clock_ms = max(self.clock_ms, int(clock_ms))

    def apply(self, entry: LogEntry) -> EngineOutput:
        """Apply one input-log entry (in ``seq`` order) and return what it produced.

        Raises
        ------
        ValueError
            If ``entry.seq`` is not the next sequence number (entries are gap-free).
        """
        if entry.seq != self.last_seq + 1:
            raise ValueError(f"entry seq {entry.seq} after {self.last_seq}: the log has a gap")
        self.last_seq = entry.seq
        self.clock_ms = max(self.clock_ms, int(entry.logged_at_ms))
        events: list[Event] = []
        if self.feedback is not None:
            events.extend(self.feedback.before_entry(self, entry))
        activated = self._activate_params(entry, events)
        batch: MarginBatch | None = None
        try:
            kind = entry.kind
            if kind is EntryKind.TICK:
                batch = self._on_tick(entry, events)
            elif kind is EntryKind.MARKET:
                batch = self._on_market(entry, events)
            elif kind is EntryKind.FEED_STATUS:
                batch = self._on_feed_status(entry, events)
            elif kind in ACCOUNT_KINDS:
                batch = self._on_account_entry(entry, events)
            elif kind is EntryKind.PARAMS:
                self._on_params(entry)
            elif kind is EntryKind.DEPTH:
                batch = self._on_depth(entry, events)
            elif kind is EntryKind.RECALIBRATE:
                batch = self._on_recalibrate(entry, events)
        except InputError as exc:
            # a malformed entry changes nothing; it is reported, never fatal for the log
            events.append(FeedAlert(entry.seq, self.config.partition, f"log:{entry.kind}",
                                    "", "rejected_entry", f"{exc.field}: {exc.message}", None))
        if activated:
            cause = "params" if batch is None else f"params+{batch.cause}"
            batch = self._remargin(entry.seq, self._all_rows(), cause, None, events)
        if batch is not None:
            events.extend(status_events(self, batch, self.config.partition, self._margin_at))
        if self.feedback is not None:
            events.extend(self.feedback.after_entry(self, entry, events))
        return EngineOutput(entry.seq, batch, tuple(events))

    # -- parameters ----------------------------------------------------------------------------
    def _on_params(self, entry: LogEntry) -> None:
        b = entry.body
        name = b.get("model")
        switch = bool(b.get("engine_model", False))
        if not switch and name != self.model.name:
            return  # parameters of other models concern the what-if simulator only
        params = b.get("params")
        eff = b.get("effective_at_ms")
        if not isinstance(params, Mapping) or isinstance(eff, bool) or not isinstance(eff, int):
            raise InputError("params", "needs params (object) and effective_at_ms (integer)")
        if not isinstance(name, str):
            raise InputError("params.model", "must be a model name")
        model = model_class(name)(dict(params))  # validate now: a bad set is not scheduled
        LiveConfig.from_params(model.params)
        self.pending_params.append((eff, entry.seq, dict(params), str(b.get("changed_by", "")),
                                    name, switch))
        self.pending_params.sort(key=lambda p: (p[0], p[1]))

    def _activate_params(self, entry: LogEntry, events: list[Event]) -> bool:
        changed = False
        while self.pending_params and self.pending_params[0][0] <= self.clock_ms:
            eff, _, params, who, name, switch = self.pending_params.pop(0)
            if not switch and name != self.model.name:
                continue  # the model in force changed before this set took effect
            try:
                model = model_class(name)(params)
                self._install(model)
            except MarginproofError as exc:
                events.append(FeedAlert(entry.seq, self.config.partition, "params", "",
                                        "rejected_params", str(exc), None))
                continue
            events.append(ParamsActivated(entry.seq, self.config.partition, model.name,
                                          model.params_hash, eff, who))
            changed = True
        return changed

    # -- live risk factors ---------------------------------------------------------------------
    def _seed_one(self, und: str, t_ms: int) -> tuple[float, float] | None:
        """Seed ``und``'s live vols from the model's daily history (None: no history)."""
        daily = getattr(self.model, "daily_vols", None)
        u = self.market.underlyings.get(und)
        if daily is None or u is None:
            return None
        asof = asof_date(datetime.fromtimestamp(t_ms / 1000.0, tz=UTC))
        try:
            sigma, iv_sigma = daily(und, asof)
        except MarginproofError:
            return None
        if not (math.isfinite(sigma) and sigma > 0 and math.isfinite(iv_sigma) and iv_sigma > 0):
            return None
        self.factors.seed(und, sigma, iv_sigma, str(asof), t_ms, u.index, self._atm_iv(und))
        return sigma, iv_sigma

    def _seed_missing(self) -> None:
        for und in sorted(self.market.underlyings):
            if und not in self.factors.vols:
                self._seed_one(und, self.factors.valuation_ms or
                               self.market.underlyings[und].timestamp_ms)

    def _atm_iv(self, und: str) -> float | None:
        """ATM implied vol of ``und``: the quoted option nearest the forward of the first
        expiry at least 7 days after the valuation time (None without quoted vols)."""
        u = self.market.underlyings.get(und)
        if u is None or not u.vols:
            return None
        t0 = self.factors.valuation_ms or u.timestamp_ms
        best: tuple[int, float, str] | None = None
        for name in sorted(u.vols):
            inst = instrument(name)
            if inst.expiry is None or inst.strike is None:
                continue
            e = int(inst.expiry.timestamp() * 1000)
            if e - t0 < 7 * 86_400_000:
                continue
            f = u.forwards.get(e, u.index)
            d = abs(math.log(float(inst.strike) / f))
            if best is None or (e, d) < (best[0], best[1]):
                best = (e, d, name)
        return None if best is None else float(u.vols[best[2]])

    def _draw(self, entry: LogEntry, reason: str, events: list[Event]) -> None:
        seed_param = 0
        mc = self.model.params.get("mc")
        if isinstance(mc, Mapping) and isinstance(mc.get("seed"), int):
            seed_param = int(mc["seed"])
        old = self.factors.draw_seed
        new = draw_seed(seed_param, entry.seq, entry.logged_at_ms)
        self.factors.set_draw(entry.seq, new)
        inputs = hashlib.sha256(f"{seed_param}:{entry.seq}:{entry.logged_at_ms}".encode())
        events.append(Recalibrated(entry.seq, self.config.partition, "*", "draw", float(old),
                                   float(new), inputs.hexdigest(),
                                   self.factors.freeze().digest(), reason))

    def _step_valuation(self, entry: LogEntry, t_ms: int, events: list[Event]) -> bool:
        old = self.factors.valuation_ms
        if not self.factors.advance_valuation(t_ms):
            return False
        day = 86_400_000
        if old and old // day != self.factors.valuation_ms // day:
            self._draw(entry, "new as-of day", events)
        events.append(Recalibrated(entry.seq, self.config.partition, "*", "valuation",
                                   float(old), float(self.factors.valuation_ms),
                                   hashlib.sha256(str(t_ms).encode()).hexdigest(),
                                   self.factors.freeze().digest(), "sampling interval"))
        return True

    # -- market data ---------------------------------------------------------------------------
    def _on_tick(self, entry: LogEntry, events: list[Event]) -> MarginBatch | None:
        tick = Tick.from_dict(entry.body)
        und = tick.underlying
        verdict = self.validator.check(tick, int(entry.logged_at_ms))
        if not verdict.accepted:
            assert verdict.problem is not None
            events.append(FeedAlert(entry.seq, self.config.partition, tick.stream, und,
                                    str(verdict.problem), verdict.detail, tick.exchange_ms))
            if verdict.problem in (TickProblem.DUPLICATE, TickProblem.OUT_OF_ORDER):
                return None  # old or repeated information: ignoring it keeps margins as they are
            first = und not in self.degraded
            self.degraded[und] = str(verdict.problem)
            return self._hold(entry.seq, und, f"held:{verdict.problem}") if first else None
        new_und = not self.market.has(und)
        if not self.market.apply_tick(tick):
            events.append(FeedAlert(entry.seq, self.config.partition, tick.stream, und,
                                    "no_index", "no index price known yet for this underlying",
                                    tick.exchange_ms))
            return None
        self.degraded.pop(und, None)
        causes = [f"tick:{und}"]
        if new_und and self._seed_one(und, self.factors.valuation_ms or tick.exchange_ms):
            v = self.factors.vols[und]
            events.append(Recalibrated(entry.seq, self.config.partition, und, "seed", None,
                                       v.sigma_daily, self._history_hash(und),
                                       self.factors.freeze().digest(), "first tick"))
        if self.factors.valuation_ms == 0:
            self.factors.set_valuation(tick.exchange_ms)
        stepped = self._step_valuation(entry, tick.exchange_ms, events)
        if stepped:
            causes.append("valuation")
            if self._settle_expired(entry, events):
                causes.append("settlement")
        u = self.market.underlyings[und]
        sample = self.factors.observe_index(und, tick.exchange_ms, u.index, self._atm_iv(und))
        if sample is not None:
            inputs = hashlib.sha256(f"{und}:{tick.exchange_ms}:{u.index!r}".encode())
            events.append(Recalibrated(entry.seq, self.config.partition, und, "vol", sample[0],
                                       sample[1], inputs.hexdigest(),
                                       self.factors.freeze().digest(), "live EWMA sample"))
            causes.append(f"recalibration:vol:{und}")
        self._rebind()
        rows = self._all_rows() if stepped else self.books.exposed(und)
        moved = None if stepped else frozenset({und})
        return self._remargin(entry.seq, rows, "+".join(causes), moved, events)

    def _history_hash(self, und: str) -> str:
        v = self.factors.vols.get(und)
        raw = f"{self.model.params_hash}:{und}:{'' if v is None else v.seed_asof}"
        return hashlib.sha256(raw.encode()).hexdigest()

    def _on_market(self, entry: LogEntry, events: list[Event]) -> MarginBatch | None:
        from marginproof.io.formats import market_from_dict  # boundary parser, pure

        snap = market_from_dict(dict(entry.body))
        touched = self.market.apply_snapshot(snap)
        ts = int(round(snap.timestamp.timestamp() * 1000))
        self.factors.set_valuation(max(ts, self.factors.valuation_ms))
        for und in touched:
            self.degraded.pop(und, None)
            u = self.market.underlyings[und]
            self.validator.seed(f"index:{und}", u.index)
            for n, m in u.marks.items():
                self.validator.seed(f"mark:{n}", m)
            for n, v in u.vols.items():
                self.validator.seed(f"vol:{n}", v)
            for e, f in u.forwards.items():
                self.validator.seed(f"fwd:{und}:{e}", f)
            seeded = self._seed_one(und, self.factors.valuation_ms)
            if seeded is not None:
                events.append(Recalibrated(entry.seq, self.config.partition, und, "seed", None,
                                           seeded[0], self._history_hash(und),
                                           self.factors.freeze().digest(),
                                           "market snapshot: daily history"))
        self._draw(entry, "market snapshot", events)
        self._settle_expired(entry, events)
        self._rebind()
        return self._remargin(entry.seq, self._all_rows(), "market", None, events)

    def _on_feed_status(self, entry: LogEntry, events: list[Event]) -> MarginBatch | None:
        b = entry.body
        und, stream = b.get("underlying"), b.get("stream")
        status, reason = b.get("status"), b.get("reason", "")
        if not isinstance(und, str) or not und or not isinstance(stream, str):
            raise InputError("feed_status", "needs underlying and stream strings")
        if status not in ("stale", "bad"):
            raise InputError("feed_status.status", f"unknown status {status!r}")
        first = und not in self.degraded
        self.degraded[und] = f"{stream}: {status}"
        events.append(FeedAlert(entry.seq, self.config.partition, stream, und, str(status),
                                str(reason), None))
        return self._hold(entry.seq, und, f"held:{status}") if first else None

    def _on_depth(self, entry: LogEntry, events: list[Event]) -> MarginBatch | None:
        und, book = parse_depth(entry.body, self.factors.config.depth_levels)
        old = self.factors.depth.get(und)
        if old is not None and book.exchange_ms <= old.exchange_ms:
            events.append(FeedAlert(entry.seq, self.config.partition, f"depth:{und}", und,
                                    "out_of_order", f"book at {book.exchange_ms} after "
                                    f"{old.exchange_ms}", book.exchange_ms))
            return None
        self.factors.set_depth(und, book)
        if self.degraded.get(und, "").startswith(f"depth:{und}"):
            self.degraded.pop(und, None)
        events.append(Recalibrated(entry.seq, self.config.partition, und, "depth",
                                   None if old is None else old.spread_rel, book.spread_rel,
                                   book.digest(), self.factors.freeze().digest(), "depth feed"))
        self._rebind()
        return self._remargin(entry.seq, self.books.exposed(und), f"recalibration:depth:{und}",
                              frozenset({und}), events)

    def _on_recalibrate(self, entry: LogEntry, events: list[Event]) -> MarginBatch | None:
        self._draw(entry, str(entry.body.get("reason", "recalibrate entry")), events)
        self._rebind()
        return self._remargin(entry.seq, self._all_rows(), "recalibration", None, events)

    # -- accounts -------------------------------------------------------------------------------
    def _on_account_entry(self, entry: LogEntry, events: list[Event]) -> MarginBatch | None:
        changed = self._change_book(entry)
        if changed is None:
            return None
        i, touched = changed
        touched |= self._settle_expired(entry, events, [i])
        self._rebind()
        return self._remargin(entry.seq, np.array([i], np.int64), str(entry.kind),
                              frozenset(touched), events)

    # -- expiry settlement ---------------------------------------------------------------------
    def _settle_expired(self, entry: LogEntry, events: list[Event],
                        rows: Sequence[int] | None = None) -> set[str]:
        """Settle every position (of ``rows``, default all) in an option or future whose
        expiry the valuation clock has reached; returns the underlyings settled.

        A deterministic step, not a log entry: it runs inside the entries that move the
        valuation clock (``tick`` stepping it, ``market``) or put a position on a book
        (``account``, ``fill``, ``transfer``), on state rebuilt only from the log, so replay
        settles the same positions at the same prices in the same entry.

        * Clock: the engine's valuation clock (market time from the log's market entries and
          accepted ticks -- the clock the valuation already uses to call an instrument
          expired), not ``logged_at_ms``: live they differ by the feed delay (a few seconds)
          plus at most one sampling interval; for replayed history only market time places an
          expiry within the data.
        * Settlement price: the underlying's index the engine holds when that clock reaches
          the expiry (the last accepted index, the stepping tick's included), for an underlying
          with no index yet the settlement waits for one. Deribit's own delivery price (a
          30-minute TWAP of the index) is not reproduced.
        * Payoff, credited to the instrument's settlement currency (coin for inverse products,
          the quote stable coin for linear ones): an option its intrinsic value,
          ``qty * size * max(+-(S - K), 0)`` USD (divided by ``S`` for coin-settled ones); a
          future the P&L from its last mark ``M`` held by the engine (the forward at its
          expiry, else ``S``, when no mark was quoted) to ``S`` -- the engine values futures at 0
          in equity because their P&L up to the mark is already in collateral:
          ``qty * size * (S - M)`` (linear) or ``qty * size * (1/M - 1/S)`` coins (inverse,
          quantity in USD face).
        """
        t = self.factors.valuation_ms
        b = self.books
        if t <= 0 or not b.books:
            return set()
        done: set[str] = set()
        only = None if rows is None else set(rows)
        for und in sorted(b.books):
            book = b.books[und]
            u = self.market.underlyings.get(und)
            if u is None or not book.names or not book.n_rows:
                continue
            due = [n for n in book.names if _expiry_ms(n) <= t]
            if not due:
                continue
            q, _ = book.csr()
            held = np.asarray(abs(q).sum(axis=0)).ravel() > 0.0
            s = float(u.index)
            for name in due:
                if not held[book.cols[name]]:
                    continue
                inst = instrument(name)
                e_ms = _expiry_ms(name)
                ref = s
                if not inst.is_option:
                    ref = float(u.marks.get(name, u.forwards.get(e_ms, s)))
                for acc in book.accounts.tolist():
                    if only is not None and acc not in only:
                        continue
                    qty = b.positions[acc].get(name, 0.0)
                    if qty == 0.0:
                        continue
                    units = qty * inst.contract_size
                    if inst.is_option:
                        k = float(inst.strike or 0.0)
                        usd = units * max((s - k) if inst.is_call else (k - s), 0.0)
                        cash = usd / s if inst.is_inverse else usd
                    elif inst.is_inverse:
                        cash = units * (1.0 / ref - 1.0 / s)
                    else:
                        cash = units * (s - ref)
                    ccy = inst.settlement_currency
                    b.set_position(acc, name, 0.0)
                    if cash != 0.0:
                        b.set_collateral(acc, ccy, b.collateral[acc].get(ccy, 0.0) + cash)
                    events.append(PositionSettled(entry.seq, self.config.partition,
                                                  b.acc_ids[acc], name, float(qty), e_ms, s,
                                                  ref, ccy, float(cash)))
                    done.add(und)
        return done

    def _change_book(self, entry: LogEntry) -> tuple[int, set[str]] | None:
        """Apply an account-kind entry to the books: ``(row, underlyings touched)``, or None
        for an account this partition does not own (raises :class:`InputError` if malformed)."""
        acc_id = entry.account_id
        if acc_id is None or not self.owns(acc_id):
            if entry.kind is EntryKind.ACCOUNT:
                parse_account(entry.body)  # still validated: same behaviour in every partition
            return None
        b = self.books
        touched: set[str] = set()
        if entry.kind is EntryKind.ACCOUNT:
            acc_id, positions, collateral = parse_account(entry.body)
            for name in positions:
                instrument(name)
            i, _ = b.account(acc_id)
            for name in list(b.positions[i]):
                touched.add(b.set_position(i, name, 0.0)[0])
            for name, q in positions.items():
                touched.add(b.set_position(i, name, q)[0])
            b.coll[i, :] = 0.0
            b.collateral[i] = {}
            for asset, amt in collateral.items():
                b.set_collateral(i, asset, amt)
        elif entry.kind is EntryKind.FILL:
            acc_id, name, dq = parse_fill(entry.body)
            i, _ = b.account(acc_id)
            touched.add(b.set_position(i, name, b.positions[i].get(name, 0.0) + dq)[0])
        else:
            acc_id, asset, amt = parse_transfer(entry.body)
            i, _ = b.account(acc_id)
            b.set_collateral(i, asset, b.collateral[i].get(asset, 0.0) + amt)
        for und in touched:
            if self.market.has(und) and und not in self.factors.vols:
                self._seed_one(und, self.factors.valuation_ms)
        return i, touched

    def apply_accounts(self, entries: Sequence[LogEntry]) -> EngineOutput:
        """Bulk path: apply a run of consecutive ``account`` entries, re-margining once.

        Loading a book through :meth:`apply` re-margins each account as its entry arrives,
        and every such re-margin scans the books of the underlyings it touches, so loading
        ``N`` accounts one by one costs O(N^2). Here the books change exactly as
        :meth:`apply` would change them entry by entry (same validation: a malformed entry
        is refused with a ``rejected_entry`` alert and changes nothing), then every account
        the run touched is re-margined in one batch at the run's last ``seq`` (cause
        ``account``). The resulting IM, MM and equity equal those after applying the entries
        one by one (tested), but the output differs: one batch (``updated_seq`` = the last
        ``seq``) and status events against the status before the run, instead of one batch
        per entry. The path-dependent margin path steps every account at the run's last log
        time, so later margins equal the one-by-one path's exactly when the run's entries
        share one ``logged_at_ms`` (a book import); otherwise the release and speed limit
        compound over slightly different elapsed times. The runner does not use this path:
        recovery replays the log with :meth:`apply`.

        Raises
        ------
        ValueError
            (nothing applied) If the run is empty, not gap-free after ``last_seq``, holds an
            entry that is not an ``account`` entry, a feedback loop is configured (it runs
            around every entry), or a scheduled parameter set falls due within the run: use
            :meth:`apply` for those.
        """
        if not entries:
            raise ValueError("apply_accounts needs at least one entry")
        if self.feedback is not None:
            raise ValueError("apply_accounts: the feedback loop runs around every entry; "
                             "use apply")
        clock = self.clock_ms
        for k, e in enumerate(entries):
            if e.seq != self.last_seq + 1 + k:
                raise ValueError(f"entry seq {e.seq} after {self.last_seq + k}: the log has a "
                                 "gap")
            if e.kind is not EntryKind.ACCOUNT:
                raise ValueError(f"apply_accounts takes account entries only, got {e.kind}")
            clock = max(clock, int(e.logged_at_ms))
        if self.pending_params and self.pending_params[0][0] <= clock:
            raise ValueError("apply_accounts: a parameter set falls due within the run; "
                             "use apply")
        events: list[Event] = []
        rows: set[int] = set()
        touched: set[str] = set()
        for e in entries:
            self.last_seq = e.seq
            self.clock_ms = max(self.clock_ms, int(e.logged_at_ms))
            try:
                changed = self._change_book(e)
            except InputError as exc:
                events.append(FeedAlert(e.seq, self.config.partition, f"log:{e.kind}", "",
                                        "rejected_entry", f"{exc.field}: {exc.message}", None))
                continue
            if changed is not None:
                rows.add(changed[0])
                touched |= changed[1]
        if rows:
            touched |= self._settle_expired(entries[-1], events, sorted(rows))
        batch: MarginBatch | None = None
        if rows:
            self._rebind()
            batch = self._remargin(self.last_seq, np.array(sorted(rows), np.int64),
                                   str(EntryKind.ACCOUNT), frozenset(touched), events)
        if batch is not None:
            events.extend(status_events(self, batch, self.config.partition, self._margin_at))
        return EngineOutput(self.last_seq, batch, tuple(events))

    # -- re-margining ----------------------------------------------------------------------------
    def _all_rows(self) -> IntArray:
        return np.arange(len(self.books), dtype=np.int64)

    def _snapshot(self) -> MarketSnapshot | None:
        key = (tuple(sorted(self.market.version.items())), self.factors.valuation_ms)
        if self._snap is None or self._snap[0] != key:
            snap = (self.market.full_snapshot(self.factors.valuation_ms)
                    if self.market.underlyings else None)
            self._snap = (key, snap)
        return self._snap[1]

    def context(self) -> LiveContext:
        """What the adapter reads: books, valuation snapshot, factors, the bound model."""
        return LiveContext(self.books, self._snapshot(), self.factors.freeze(), self.live_model,
                           self.valuations, self.market.version)

    def _values(self, ctx: LiveContext, idx: IntArray, moved: frozenset[str] | None,
                events: list[Event], seq: int) -> None:
        """Mark values and unpriced flags per (account, underlying) of the moved underlyings."""
        b = self.books
        for und in b.und_names if moved is None else sorted(moved):
            if und not in b.books or not b.books[und].n_rows:
                continue
            k = b.und_index[und]
            book = b.books[und]
            val = ctx.valuation(und)
            self._alert_unpriced(val, events, seq)
            q, qa = book.csr()
            acc = book.accounts
            self.mark_value[acc, k] = np.asarray(q @ val.value_usd).ravel()
            self.unpriced[acc, k] = np.asarray(qa @ (~val.priced).astype(np.float64)).ravel() > 0
            self.holds[acc, k] = True

    def _alert_unpriced(self, val: UnderlyingValuation, events: list[Event], seq: int) -> None:
        for name in sorted(val.problems):
            why = val.problems[name]
            if self._unpriced_seen.get(name) != why:
                self._unpriced_seen[name] = why
                events.append(FeedAlert(seq, self.config.partition, f"valuation:{name}",
                                        val.underlying, "unpriced", f"{name}: {why}", None))
        for name in [n for n in self._unpriced_seen
                     if instrument(n).underlying == val.underlying and n not in val.problems]:
            del self._unpriced_seen[name]

    def _remargin(self, seq: int, idx: IntArray, cause: str, moved: frozenset[str] | None,
                  events: list[Event]) -> MarginBatch | None:
        if idx.size == 0:
            return None
        self._grow()
        ctx = self.context()
        self._values(ctx, idx, moved, events, seq)
        figs = self.adapter.figures(ctx, idx, moved)
        b = self.books
        nu = len(b.und_names)
        cut, raw = self._asset_prices()
        coll = b.coll[idx, : len(b.asset_names)]
        coll_val = (np.where(coll > 0.0, coll * cut[: coll.shape[1]], coll * raw[: coll.shape[1]])
                    .sum(axis=1) if coll.shape[1] else np.zeros(idx.size))
        mv = self.mark_value[idx, :nu].sum(axis=1) if nu else np.zeros(idx.size)
        degraded = np.asarray(self.unpriced[idx, :nu].any(axis=1) if nu
                              else np.zeros(idx.size, bool), dtype=bool) | figs.failed
        holds = self.holds[idx, :nu]
        for und in self.degraded:
            if und in b.und_index:
                degraded |= holds[:, b.und_index[und]]
        ts_u = np.array([self.market.underlyings[u].timestamp_ms if u in self.market.underlyings
                         else 0 for u in b.und_names], np.int64)
        mts = (np.where(holds, ts_u[None, :], 0).max(axis=1) if nu
               else np.zeros(idx.size, np.int64)).astype(np.int64)
        res = self.path.run(PathBatch(seq, self.clock_ms, mts, idx, figs.im, figs.mm,
                                      figs.components, degraded, cause, self.model.name))
        # store
        gmap = np.array([self._group(g) for g in figs.groups] + [-1], np.int16)
        self.figure_im[idx] = figs.im
        self.figure_mm[idx] = figs.mm
        self.im[idx] = res.im
        self.mm[idx] = res.mm
        self.coll_value[idx] = coll_val
        self.equity[idx] = coll_val + mv
        self.held[idx] = res.held
        self.failed[idx] = figs.failed
        self.computed[idx] = True
        self.updated_seq[idx] = seq
        self.market_ts[idx] = mts
        self.binding_group[idx] = gmap[figs.binding_group.astype(np.int64)]
        self.binding_scenario[idx] = figs.binding_scenario
        self.binding_loss[idx] = figs.binding_loss
        self.binding_minimum[idx] = figs.binding_minimum
        for k, v in figs.components.items():
            col = self.components.get(k)
            if col is None:
                col = self.components[k] = np.zeros(self.im.shape[0])
            col[idx] = v
        for k, col in self.components.items():
            if k not in figs.components:
                col[idx] = 0.0
        # only rows that fail or failed before change ``failures`` (no loop over every row)
        for r in np.flatnonzero(figs.failed).tolist():
            self.failures[int(idx[r])] = figs.reasons.get(r, "model error")
        if self.failures:
            for i in idx[~figs.failed].tolist():
                self.failures.pop(i, None)
        if figs.reasons:
            first = sorted(set(figs.reasons.values()))[:3]
            events.append(FeedAlert(seq, self.config.partition, f"model:{self.model.name}", "",
                                    "unpriced_account", f"{len(figs.reasons)} account(s) "
                                    f"could not be margined: {'; '.join(first)}", None))
        return self._batch(seq, idx, cause, int(mts.max()) if mts.size else 0)

    def _hold(self, seq: int, und: str, cause: str) -> MarginBatch | None:
        """Re-publish (unchanged, held) margins of accounts exposed to a degraded underlying."""
        if und not in self.books.books or not self.books.books[und].n_rows:
            return None
        acc = self.books.books[und].accounts
        idx = np.unique(acc[self.computed[acc]])
        if idx.size == 0:
            return None
        self.held[idx] = True
        m = self.market.underlyings.get(und)
        return self._batch(seq, idx, cause, m.timestamp_ms if m is not None else 0)

    def _batch(self, seq: int, idx: IntArray, cause: str, ts: int) -> MarginBatch:
        return make_batch(self, seq, self.config.partition, idx, cause, ts, self.model.name,
                          self.model.params_hash, tuple(self.groups), self.books.ids_array(),
                          self.components, self.factor_state_hash, self.held_reason)

    # -- queries ---------------------------------------------------------------------------------
    def held_reason(self, i: int) -> str:
        """Why account row ``i`` is held (empty if it is not)."""
        if not self.held[i]:
            return ""
        b = self.books
        parts = [f"{u} degraded ({why})" for u, why in sorted(self.degraded.items())
                 if u in b.books and i in b.books[u].row_of]
        for name in sorted(b.positions[i]):
            v = self.valuations.get(instrument(name).underlying)
            if v is not None and name in v.problems:
                parts.append(f"unpriced {name}: {v.problems[name]}")
        if i in self.failures:
            parts.append(f"model: {self.failures[i]}")
        return "; ".join(parts) or "held"

    def _margin_at(self, i: int, seq: int | None) -> AccountMargin:
        binding = None
        g = int(self.binding_group[i])
        if g >= 0:
            group = self.groups[g]
            j = int(self.binding_scenario[i])
            binding = Binding(group, j, self.scenario_label(group, j),
                              float(self.binding_loss[i]), float(self.binding_minimum[i]))
        st = int(status_of(self.equity[i:i + 1], self.im[i:i + 1], self.mm[i:i + 1])[0])
        comps = {k: float(v[i]) for k, v in sorted(self.components.items()) if v[i] != 0.0}
        return AccountMargin(self.books.acc_ids[i],
                             int(self.updated_seq[i]) if seq is None else seq,
                             int(self.market_ts[i]), self.model.name, self.model.params_hash,
                             float(self.im[i]), float(self.mm[i]), float(self.equity[i]),
                             STATUS_NAMES[st], bool(self.held[i]), binding, comps,
                             float(self.figure_im[i]), self.factor_state_hash,
                             int(self.factors.valuation_ms), self.held_reason(i))

    def account_margin(self, account_id: str, seq: int | None = None) -> AccountMargin | None:
        """Current margin of an account this engine owns (None if unknown / not computed)."""
        i = self.books.acc_index.get(account_id)
        if i is None or not self.computed[i]:
            return None
        return self._margin_at(i, seq)

    def account_positions(self, account_id: str) -> tuple[dict[str, float], dict[str, float]]:
        """``(positions, collateral)`` of an owned account (empty if unknown)."""
        i = self.books.acc_index.get(account_id)
        if i is None:
            return {}, {}
        return dict(self.books.positions[i]), dict(self.books.collateral[i])

    def valuation_snapshot(self) -> MarketSnapshot | None:
        """The market every position is valued on (all underlyings at the valuation time)."""
        return self._snapshot()

    def state_digest(self) -> str:
        """SHA-256 over every account's (id, IM, MM, equity) bytes: equal digests = equal state."""
        h = hashlib.sha256()
        for i, a in enumerate(self.books.acc_ids):
            h.update(a.encode())
            h.update(np.array([self.im[i], self.mm[i], self.equity[i]]).tobytes())
        return h.hexdigest()

    def snapshot_arrays(self) -> dict[str, Any]:
        """Copies of the per-account arrays and the hold reason of each held row (for the
        web console: take under the lock)."""
        n = len(self.books)
        return {
            "ids": list(self.books.acc_ids), "groups": list(self.groups),
            "computed": self.computed[:n].copy(), "im": self.im[:n].copy(),
            "mm": self.mm[:n].copy(), "equity": self.equity[:n].copy(),
            "held": self.held[:n].copy(), "seq": self.updated_seq[:n].copy(),
            "held_reasons": {i: self.held_reason(i) for i in np.flatnonzero(self.held[:n])
                             .tolist()},
            "market_ts": self.market_ts[:n].copy(),
            "binding_group": self.binding_group[:n].copy(),
            "binding_scenario": self.binding_scenario[:n].copy(),
            "components": {k: v[:n].copy() for k, v in self.components.items()},
            "model": self.model.name, "params_hash": self.model.params_hash,
            "factor_state_hash": self.factor_state_hash,
        }


_NO_EXPIRY = 2**62


@lru_cache(maxsize=65536)
def _expiry_ms(name: str) -> int:
    """Expiry of an instrument in ms (a huge number for spot and perpetuals)."""
    e = instrument(name).expiry
    return _NO_EXPIRY if e is None else int(e.timestamp() * 1000)


def scenario_label(model: Any, underlying: str, j: int) -> str:
    """Label of grid scenario ``j`` on ``underlying`` (kept for callers of the grid engine)."""
    from marginproof.engine.adapters.grid import scenario_label as grid_label

    return grid_label(model, underlying, j)


def ms_to_datetime(ms: int) -> datetime:
    """UTC datetime of a millisecond timestamp."""
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC)


def grid_params_hash(params: Mapping[str, Any]) -> str:
    """Hash of a grid parameter set as :class:`GridModel` computes it."""
    return params_hash({"model": "grid", "params": dict(params)})


def finite_or_none(x: float) -> float | None:
    """``x`` if finite else None (JSON output)."""
    return x if math.isfinite(x) else None
