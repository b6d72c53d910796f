"""The incremental margin engine: ``engine.apply(entry) -> EngineOutput``.

State is rebuilt only from input-log entries (see :mod:`marginproof.engine.entries`):

* a **tick** on underlying ``u`` refreshes the cached unit scenario P&L of the instruments on
  ``u`` (:mod:`marginproof.engine.scenario_cache`) and re-margins only the accounts holding
  ``u`` (or holding ``u`` as collateral): one sparse (accounts x instruments) by
  (instruments x scenarios) product gives every such account's scenario P&L on ``u``;
* a **fill**, **transfer** or **account** entry re-margins that one account;
* a **params** entry is scheduled and takes effect at its stated time, measured on the log's
  clock (``logged_at_ms``), re-margining everyone.

Method (the ``grid`` model, no cross-underlying offset): per (account, underlying) the
requirement is ``max(worst scenario loss, short-option minimum)``, the account IM is their sum
and ``MM = mm_fraction * IM`` -- the same figures as :meth:`GridModel.margin` (tested).
Equity is collateral valued at the index less haircuts (negative balances count in full) plus
the USD value of spot and option positions (futures/perps: 0, their P&L settles into
collateral). Status: ``ok`` if equity >= IM, ``margin_call`` if MM <= equity < IM,
``liquidation`` if equity < MM; changes of status are emitted as events.

Bad data never lowers a margin: while an underlying is degraded (rejected tick, stale feed,
unpriceable instrument) the accounts exposed to it keep ``IM = max(new, previous)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from marginproof.config.params import params_hash
from marginproof.engine.entries import (
    ACCOUNT_KINDS,
    EntryKind,
    LogEntry,
    parse_account,
    parse_fill,
    parse_transfer,
)
from marginproof.engine.events import (
    STATUS_CALL,
    STATUS_LIQUIDATION,
    STATUS_NAMES,
    STATUS_OK,
    AccountMargin,
    Binding,
    Event,
    FeedAlert,
    LiquidationSignal,
    MarginBatch,
    MarginCall,
    MarginRestored,
    ParamsActivated,
)
from marginproof.engine.margin_path import MarginPath, PathBatch, default_margin_path
from marginproof.engine.market_state import MarketState, instrument
from marginproof.engine.partition import partition_of
from marginproof.engine.quality import QualityConfig, TickProblem, TickValidator
from marginproof.engine.scenario_cache import UnitColumns, unit_columns
from marginproof.engine.ticks import Tick
from marginproof.errors import InputError
from marginproof.instruments.portfolio import CollateralPolicy
from marginproof.models.grid import GridModel

STABLE_PAR = ("USD", "USDC", "USDT")  # valued at 1 USD unless the feed quotes an index


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
    """

    quality: QualityConfig = field(default_factory=QualityConfig)
    n_partitions: int = 1
    partition: int = 0
    haircuts: Mapping[str, float] | None = None
    margin_path: Callable[[Any], MarginPath] = default_margin_path
    """Builds the path-dependent stages run after the model figure (called once per engine;
    :meth:`MarginPath.reconfigure` on parameter changes). See :mod:`.margin_path`."""
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


def _grow1(a: NDArray[Any], n: int) -> NDArray[Any]:
    if n <= a.shape[0]:
        return a
    out = np.zeros(max(n, 2 * a.shape[0]), a.dtype)
    out[: a.shape[0]] = a
    return out


def _grow2(a: NDArray[Any], n_rows: int, n_cols: int) -> NDArray[Any]:
    r, c = a.shape
    if n_rows <= r and n_cols <= c:
        return a
    out = np.zeros((max(n_rows, 2 * r if n_rows > r else r), max(n_cols, c)), a.dtype)
    out[:r, :c] = a
    return out


class _UnderlyingBook:
    """Positions on one underlying as a growable COO table (row = account, col = instrument)."""

    def __init__(self) -> None:
        self.cols: dict[str, int] = {}
        self.names: list[str] = []
        self.row_of: dict[int, int] = {}
        self.row_acc = np.zeros(16, np.int64)
        self.n_rows = 0
        self.e_row = np.zeros(64, np.int64)
        self.e_col = np.zeros(64, np.int64)
        self.e_val = np.zeros(64)
        self.n_entries = 0
        self.entry_of: dict[tuple[int, int], int] = {}
        self.row_entries: dict[int, list[int]] = {}
        self._csr: sp.csr_matrix | None = None
        self._abs_csr: sp.csr_matrix | None = None

    def row(self, acc: int) -> int:
        r = self.row_of.get(acc)
        if r is None:
            r = self.n_rows
            self.row_of[acc] = r
            self.row_acc = _grow1(self.row_acc, r + 1)
            self.row_acc[r] = acc
            self.n_rows += 1
            self.row_entries[r] = []
            self._csr = None
        return r

    def set_qty(self, acc: int, name: str, qty: float) -> bool:
        """Set a quantity; True if ``name`` is a new column."""
        new_col = name not in self.cols
        if new_col:
            self.cols[name] = len(self.names)
            self.names.append(name)
        c = self.cols[name]
        r = self.row(acc)
        k = self.entry_of.get((r, c))
        if k is None:
            k = self.n_entries
            self.e_row = _grow1(self.e_row, k + 1)
            self.e_col = _grow1(self.e_col, k + 1)
            self.e_val = _grow1(self.e_val, k + 1)
            self.e_row[k], self.e_col[k] = r, c
            self.entry_of[(r, c)] = k
            entries = self.row_entries[r]
            entries.append(k)
            entries.sort(key=lambda e: int(self.e_col[e]))  # CSR order: by column
            self.n_entries += 1
        self.e_val[k] = qty
        self._csr = None
        return new_col

    def csr(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """``(Q, |Q|)`` of shape (n_rows, n_cols), rows sorted by column (canonical)."""
        if self._csr is None or self._abs_csr is None:
            n = self.n_entries
            shape = (self.n_rows, len(self.names))
            q = sp.csr_matrix((self.e_val[:n].copy(), (self.e_row[:n], self.e_col[:n])),
                              shape=shape)
            q.sort_indices()
            self._csr = q
            self._abs_csr = abs(q)
        return self._csr, self._abs_csr


@dataclass
class _Columns:
    """Unit columns of one underlying aligned with its book's columns."""

    pnl_t: NDArray[np.float64]
    value_usd: NDArray[np.float64]
    option_units: NDArray[np.float64]
    unpriced: NDArray[np.float64]  # 1.0 where the instrument could not be priced
    market_ts_ms: int
    index: float

    @classmethod
    def of(cls, u: UnitColumns, ts: int, index: float) -> _Columns:
        return cls(u.pnl_t.copy(), u.value_usd.copy(), u.option_units.copy(),
                   (~u.priced).astype(np.float64), ts, index)

    def append(self, u: UnitColumns) -> None:
        self.pnl_t = np.vstack([self.pnl_t, u.pnl_t])
        self.value_usd = np.concatenate([self.value_usd, u.value_usd])
        self.option_units = np.concatenate([self.option_units, u.option_units])
        self.unpriced = np.concatenate([self.unpriced, (~u.priced).astype(np.float64)])


class MarginEngine:
    """Incremental grid-margin engine over input-log entries (see module docstring).

    Parameters
    ----------
    model : GridModel
        Initial model; ``params`` entries replace its parameters when they take effect.
    config : EngineConfig
    """

    def __init__(self, model: GridModel, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._set_model(model)
        self.path = self.config.margin_path(model)
        self.feedback = self.config.feedback() if self.config.feedback is not None else None
        self.market = MarketState()
        self.validator = TickValidator(self.config.quality)
        self.haircuts = dict(self.config.haircuts if self.config.haircuts is not None
                             else CollateralPolicy().haircuts)
        self.degraded: dict[str, str] = {}
        self.clock_ms = 0
        self.last_seq = 0
        self.pending_params: list[tuple[int, int, dict[str, Any], str]] = []
        self.acc_index: dict[str, int] = {}
        self.acc_ids: list[str] = []
        self.positions: list[dict[str, float]] = []
        self.collateral: list[dict[str, float]] = []
        self.und_index: dict[str, int] = {}
        self.und_names: list[str] = []
        self.books: dict[str, _UnderlyingBook] = {}
        self.columns: dict[str, _Columns] = {}
        self.assets: dict[str, int] = {}
        self.asset_names: list[str] = []
        cap = 16
        self.req = np.zeros((cap, 4))
        self.loss = np.zeros((cap, 4))
        self.minimum = np.zeros((cap, 4))
        self.mark_value = np.zeros((cap, 4))
        self.bind_j = np.zeros((cap, 4), np.int32)
        self.unpriced = np.zeros((cap, 4), bool)
        self.coll = np.zeros((cap, 4))
        self.coll_value = np.zeros(cap)
        self.figure_im = np.zeros(cap)
        self.im = np.zeros(cap)
        self.mm = np.zeros(cap)
        self.equity = np.zeros(cap)
        self.status = np.zeros(cap, np.int8)
        self.held = np.zeros(cap, bool)
        self.computed = np.zeros(cap, bool)
        self.market_ts = np.zeros(cap, np.int64)
        self.updated_seq = np.zeros(cap, np.int64)
        self._ids_arr: NDArray[np.object_] = np.zeros(0, dtype=object)

    # -- model -------------------------------------------------------------------------------
    def _set_model(self, model: GridModel) -> None:
        if bool(model.params["grid"].get("cross_underlying_offset", False)):
            raise InputError("params.grid.cross_underlying_offset",
                             "the incremental engine margins per underlying (set it to false); "
                             "use the what-if simulator for cross-margined grids")
        self.model = model
        unit, shocks = model.scenario_axes()
        self._unit_moves = unit
        self._shocks = shocks
        self._rate = float(model.params.get("minimums", {}).get("short_option_rate", 0.0))
        self._mm_fraction = float(model.params["maintenance"]["mm_fraction"])

    def scenario_label(self, underlying: str, j: int) -> str:
        """Human label of scenario ``j`` on ``underlying`` (e.g. ``BTC -16.0%, vol up``)."""
        return scenario_label(self.model, underlying, j)

    # -- bookkeeping --------------------------------------------------------------------------
    def owns(self, account_id: str) -> bool:
        """Whether this engine's partition owns ``account_id``."""
        c = self.config
        return c.n_partitions == 1 or partition_of(account_id, c.n_partitions) == c.partition

    def _account(self, account_id: str) -> int:
        i = self.acc_index.get(account_id)
        if i is None:
            i = len(self.acc_ids)
            self.acc_index[account_id] = i
            self.acc_ids.append(account_id)
            if i >= self._ids_arr.shape[0]:
                grown = np.empty(max(16, 2 * self._ids_arr.shape[0]), dtype=object)
                grown[: self._ids_arr.shape[0]] = self._ids_arr
                self._ids_arr = grown
            self._ids_arr[i] = account_id
            self.positions.append({})
            self.collateral.append({})
            n = i + 1
            nu = self.req.shape[1]
            self.req = _grow2(self.req, n, nu)
            self.loss = _grow2(self.loss, n, nu)
            self.minimum = _grow2(self.minimum, n, nu)
            self.mark_value = _grow2(self.mark_value, n, nu)
            self.bind_j = _grow2(self.bind_j, n, nu)
            self.unpriced = _grow2(self.unpriced, n, nu)
            self.coll = _grow2(self.coll, n, self.coll.shape[1])
            for name in ("coll_value", "figure_im", "im", "mm", "equity", "status", "held",
                         "computed", "market_ts", "updated_seq"):
                setattr(self, name, _grow1(getattr(self, name), n))
        return i

    def _underlying(self, und: str) -> int:
        k = self.und_index.get(und)
        if k is None:
            k = len(self.und_names)
            self.und_index[und] = k
            self.und_names.append(und)
            n = self.req.shape[0]
            self.req = _grow2(self.req, n, k + 1)
            self.loss = _grow2(self.loss, n, k + 1)
            self.minimum = _grow2(self.minimum, n, k + 1)
            self.mark_value = _grow2(self.mark_value, n, k + 1)
            self.bind_j = _grow2(self.bind_j, n, k + 1)
            self.unpriced = _grow2(self.unpriced, n, k + 1)
            self.books[und] = _UnderlyingBook()
        return k

    def _asset(self, asset: str) -> int:
        k = self.assets.get(asset)
        if k is None:
            k = len(self.asset_names)
            self.assets[asset] = k
            self.asset_names.append(asset)
            self.coll = _grow2(self.coll, self.coll.shape[0], k + 1)
        return k

    def _asset_prices(self) -> NDArray[np.float64]:
        """USD value of one unit of each collateral asset after haircut (0 if unknown)."""
        out = np.zeros(self.coll.shape[1])
        for a, k in self.assets.items():
            px = self.market.index(a)
            if px is None:
                px = 1.0 if a in STABLE_PAR else None
            h = self.haircuts.get(a)
            out[k] = 0.0 if px is None or h is None else px * (1.0 - float(h))
        return out

    def _asset_raw_prices(self) -> NDArray[np.float64]:
        out = np.zeros(self.coll.shape[1])
        for a, k in self.assets.items():
            px = self.market.index(a)
            out[k] = px if px is not None else (1.0 if a in STABLE_PAR else 0.0)
        return out

    # -- entry point -------------------------------------------------------------------------
    def skip_to(self, seq: int, clock_ms: int) -> None:
        """Advance past entries ``last_seq + 1 .. seq`` that were routed to other partitions.

        Only valid for entries this engine would ignore: account entries of accounts it does
        not own that activate no parameters and pass validation (the streaming router,
        :mod:`marginproof.scaleout.stream`, sends every other entry to every partition).
        Applying such an entry would only advance ``last_seq`` and the log clock, so this is
        exactly equivalent.

        Parameters
        ----------
        seq : int
            Last skipped sequence number (>= ``last_seq``).
        clock_ms : int
            The log clock (maximum ``logged_at_ms``) after the skipped entries.
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
            if entry.kind is EntryKind.TICK:
                batch = self._on_tick(entry, events)
            elif entry.kind is EntryKind.MARKET:
                batch = self._on_market(entry)
            elif entry.kind is EntryKind.FEED_STATUS:
                batch = self._on_feed_status(entry, events)
            elif entry.kind in ACCOUNT_KINDS:
                batch = self._on_account_entry(entry)
            elif entry.kind is EntryKind.PARAMS:
                self._on_params(entry)
        except InputError as exc:
            # a malformed entry changes nothing; it is reported, never fatal for the log
            events.append(FeedAlert(entry.seq, self.config.partition, f"log:{entry.kind}",
                                    "", "rejected_entry", f"{exc.field}: {exc.message}", None))
        if activated and batch is None:
            batch = self._recompute_all(entry.seq, "params")
        elif activated and batch is not None:
            batch = self._recompute_all(entry.seq, f"params+{batch.cause}")
        if batch is not None:
            events.extend(self._status_events(batch, entry))
        if self.feedback is not None:
            events.extend(self.feedback.after_entry(self, entry, events))
        return EngineOutput(entry.seq, batch, tuple(events))

    # -- parameters ----------------------------------------------------------------------------
    def _on_params(self, entry: LogEntry) -> None:
        b = entry.body
        if b.get("model") != "grid":
            return  # parameters of other models concern the what-if simulator only
        params = b.get("params")
        eff = b.get("effective_at_ms")
        if not isinstance(params, Mapping) or isinstance(eff, bool) or not isinstance(eff, int):
            raise InputError("params", "needs params (object) and effective_at_ms (integer)")
        GridModel(dict(params))  # validate now: a bad set is rejected, not scheduled
        self.pending_params.append((eff, entry.seq, dict(params), str(b.get("changed_by", ""))))
        self.pending_params.sort(key=lambda p: (p[0], p[1]))

    def _activate_params(self, entry: LogEntry, events: list[Event]) -> bool:
        changed = False
        while self.pending_params and self.pending_params[0][0] <= self.clock_ms:
            eff, _, params, who = self.pending_params.pop(0)
            model = GridModel(params)
            try:
                self._set_model(model)
                self.path.reconfigure(model)
            except InputError as exc:
                events.append(FeedAlert(entry.seq, self.config.partition, "params", "",
                                        "rejected_params", exc.message, None))
                continue
            events.append(ParamsActivated(entry.seq, self.config.partition, model.name,
                                          model.params_hash, eff, who))
            changed = True
        if changed:
            for und in list(self.books):
                self._refresh_columns(und)
        return changed

    # -- market data ---------------------------------------------------------------------------
    def _on_tick(self, entry: LogEntry, events: list[Event]) -> MarginBatch | None:
        tick = Tick.from_dict(entry.body)
        verdict = self.validator.check(tick, int(entry.logged_at_ms))
        if not verdict.accepted:
            assert verdict.problem is not None
            events.append(FeedAlert(entry.seq, self.config.partition, tick.stream,
                                    tick.underlying, str(verdict.problem), verdict.detail,
                                    tick.exchange_ms))
            if verdict.problem in (TickProblem.DUPLICATE, TickProblem.OUT_OF_ORDER):
                return None  # old or repeated information: ignoring it keeps margins as they are
            first = tick.underlying not in self.degraded
            self.degraded[tick.underlying] = str(verdict.problem)
            if first:
                return self._hold_underlying(entry.seq, tick.underlying,
                                             f"held:{verdict.problem}")
            return None
        if not self.market.apply_tick(tick):
            events.append(FeedAlert(entry.seq, self.config.partition, tick.stream,
                                    tick.underlying, "no_index",
                                    "no index price known yet for this underlying",
                                    tick.exchange_ms))
            return None
        self.degraded.pop(tick.underlying, None)
        return self._remargin_underlying(entry.seq, tick.underlying, f"tick:{tick.underlying}")

    def _on_market(self, entry: LogEntry) -> MarginBatch | None:
        from marginproof.io.formats import market_from_dict  # boundary parser, pure

        snap = market_from_dict(dict(entry.body))
        touched = self.market.apply_snapshot(snap)
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
        batches = [self._remargin_underlying(entry.seq, und, "market") for und in touched]
        return _merge([b for b in batches if b is not None], self, entry.seq, "market")

    def _on_feed_status(self, entry: LogEntry, events: list[Event]) -> MarginBatch | None:
        b = entry.body
        und, stream = b.get("underlying"), b.get("stream")
        status, reason = b.get("status"), b.get("reason", "")
        if not isinstance(und, str) or not und or not isinstance(stream, str):
            raise InputError("feed_status", "needs underlying and stream strings")
        if status not in ("stale", "bad"):
            raise InputError("feed_status.status", f"unknown status {status!r}")
        first = und not in self.degraded
        self.degraded[und] = str(status)
        events.append(FeedAlert(entry.seq, self.config.partition, stream, und, str(status),
                                str(reason), None))
        return self._hold_underlying(entry.seq, und, f"held:{status}") if first else None

    def _refresh_columns(self, und: str) -> None:
        book = self.books[und]
        if not self.market.has(und):
            n = len(book.names)
            uc = UnitColumns(tuple(book.names), np.zeros((n, len(self.model.scenario_labels()))),
                             np.zeros(n), np.array([instrument(x).contract_size
                                                    if instrument(x).is_option else 0.0
                                                    for x in book.names]),
                             np.zeros(n, bool), ())
            self.columns[und] = _Columns.of(uc, 0, 0.0)
            return
        snap = self.market.snapshot(und)
        uc = unit_columns(self.model, snap, book.names)
        m = self.market.underlyings[und]
        self.columns[und] = _Columns.of(uc, m.timestamp_ms, m.index)

    def _add_column(self, und: str, name: str) -> None:
        cols = self.columns.get(und)
        if cols is None:
            self._refresh_columns(und)
            return
        if self.market.has(und):
            uc = unit_columns(self.model, self.market.snapshot(und), [name])
        else:
            inst = instrument(name)
            uc = UnitColumns((name,), np.zeros((1, cols.pnl_t.shape[1])), np.zeros(1),
                             np.array([inst.contract_size if inst.is_option else 0.0]),
                             np.zeros(1, bool), ())
        cols.append(uc)

    # -- vectorised re-margin of one underlying -------------------------------------------------
    def _remargin_underlying(self, seq: int, und: str, cause: str) -> MarginBatch | None:
        accs: list[NDArray[np.int64]] = []
        if und in self.books and self.books[und].n_rows:
            self._refresh_columns(und)
            k = self.und_index[und]
            book = self.books[und]
            cols = self.columns[und]
            q, qa = book.csr()
            pnl = q @ cols.pnl_t  # (n_rows, n_scenarios)
            j = np.argmin(pnl, axis=1) if pnl.shape[1] else np.zeros(book.n_rows, np.int64)
            worst = pnl[np.arange(book.n_rows), j] if pnl.shape[1] else np.zeros(book.n_rows)
            loss = np.maximum(0.0, -worst) + 0.0  # no -0.0
            net_opt = q @ cols.option_units
            minimum = self._rate * np.maximum(0.0, -net_opt) * cols.index + 0.0
            rows_acc = book.row_acc[: book.n_rows]
            self.loss[rows_acc, k] = loss
            self.minimum[rows_acc, k] = minimum
            self.req[rows_acc, k] = np.maximum(loss, minimum)
            self.bind_j[rows_acc, k] = j
            self.mark_value[rows_acc, k] = q @ cols.value_usd
            self.unpriced[rows_acc, k] = (qa @ cols.unpriced) > 0.0
            self.market_ts[rows_acc] = np.maximum(self.market_ts[rows_acc], cols.market_ts_ms)
            accs.append(rows_acc)
        a = self.assets.get(und)
        if a is not None:
            holders = np.flatnonzero(self.coll[: len(self.acc_ids), a] != 0.0)
            accs.append(holders.astype(np.int64))
        if not accs:
            return None
        if len(accs) == 1:
            idx = np.sort(accs[0])  # rows of one book are distinct accounts
        else:
            mask = np.zeros(len(self.acc_ids), bool)
            for a_idx in accs:
                mask[a_idx] = True
            idx = np.flatnonzero(mask).astype(np.int64)
        if idx.size == 0:
            return None
        return self._finish(seq, idx, cause, self._market_ts_of(und))

    def _hold_underlying(self, seq: int, und: str, cause: str) -> MarginBatch | None:
        """Re-publish (unchanged, held) margins of accounts exposed to a degraded underlying."""
        if und not in self.books or not self.books[und].n_rows:
            return None
        book = self.books[und]
        idx = np.unique(book.row_acc[: book.n_rows][self.computed[book.row_acc[: book.n_rows]]])
        if idx.size == 0:
            return None
        self.held[idx] = True
        return self._batch(seq, idx, cause, self._market_ts_of(und))

    def _market_ts_of(self, und: str) -> int:
        m = self.market.underlyings.get(und)
        return m.timestamp_ms if m is not None else 0

    def _recompute_all(self, seq: int, cause: str) -> MarginBatch | None:
        for und in self.books:
            self._refresh_columns(und)
        batches = []
        for und in list(self.books):
            b = self._remargin_underlying(seq, und, cause)
            if b is not None:
                batches.append(b)
        n = len(self.acc_ids)
        if n:
            return self._finish(seq, np.arange(n, dtype=np.int64), cause,
                                max((self._market_ts_of(u) for u in self.und_names), default=0))
        return _merge(batches, self, seq, cause)

    # -- one account ---------------------------------------------------------------------------
    def _on_account_entry(self, entry: LogEntry) -> MarginBatch | None:
        acc_id = entry.account_id
        if acc_id is None or not self.owns(acc_id):
            if entry.kind is EntryKind.ACCOUNT:
                parse_account(entry.body)  # still validated: same behaviour in every partition
            return None
        touched: set[str] = set()
        if entry.kind is EntryKind.ACCOUNT:
            acc_id, positions, collateral = parse_account(entry.body)
            i = self._account(acc_id)
            for name in list(self.positions[i]):
                touched.add(self._set_position(i, name, 0.0))
            for name, q in positions.items():
                touched.add(self._set_position(i, name, q))
            self.coll[i, :] = 0.0
            self.collateral[i] = {}
            for asset, amt in collateral.items():
                self._set_collateral(i, asset, amt)
        elif entry.kind is EntryKind.FILL:
            acc_id, name, dq = parse_fill(entry.body)
            i = self._account(acc_id)
            touched.add(self._set_position(i, name, self.positions[i].get(name, 0.0) + dq))
        else:
            acc_id, asset, amt = parse_transfer(entry.body)
            i = self._account(acc_id)
            self._set_collateral(i, asset, self.collateral[i].get(asset, 0.0) + amt)
        for und in sorted(touched):
            self._remargin_row(i, und)
        idx = np.array([i], np.int64)
        ts = max((self._market_ts_of(u) for u in self._account_underlyings(i)), default=0)
        return self._finish(entry.seq, idx, str(entry.kind), ts)

    def _account_underlyings(self, i: int) -> list[str]:
        return [u for u in self.und_names if i in self.books[u].row_of]

    def _set_position(self, i: int, name: str, qty: float) -> str:
        inst = instrument(name)
        und = inst.underlying
        self._underlying(und)
        if qty == 0.0:
            self.positions[i].pop(name, None)
        else:
            self.positions[i][name] = qty
        if self.books[und].set_qty(i, name, qty):
            self._add_column(und, name)
        return und

    def _set_collateral(self, i: int, asset: str, amount: float) -> None:
        k = self._asset(asset)
        self.coll[i, k] = amount
        if amount == 0.0:
            self.collateral[i].pop(asset, None)
        else:
            self.collateral[i][asset] = amount

    def _remargin_row(self, i: int, und: str) -> None:
        """Scenario P&L of account ``i`` on ``und`` from the cached columns, in CSR order."""
        k = self.und_index[und]
        book = self.books[und]
        cols = self.columns[und]
        r = book.row_of[i]
        n_scen = cols.pnl_t.shape[1]
        pnl = np.zeros(n_scen)
        net_opt = 0.0
        value = 0.0
        unpriced = False
        for e in book.row_entries[r]:
            c = int(book.e_col[e])
            qv = float(book.e_val[e])
            pnl += qv * cols.pnl_t[c]
            net_opt += qv * float(cols.option_units[c])
            value += qv * float(cols.value_usd[c])
            unpriced = unpriced or (qv != 0.0 and cols.unpriced[c] > 0.0)
        j = int(np.argmin(pnl)) if n_scen else 0
        loss = max(0.0, -float(pnl[j])) if n_scen else 0.0
        minimum = self._rate * max(0.0, -net_opt) * cols.index
        self.loss[i, k] = loss
        self.minimum[i, k] = minimum
        self.req[i, k] = max(loss, minimum)
        self.bind_j[i, k] = j
        self.mark_value[i, k] = value
        self.unpriced[i, k] = unpriced
        self.market_ts[i] = max(int(self.market_ts[i]), cols.market_ts_ms)

    # -- account totals, hold rule, batches -----------------------------------------------------
    def _finish(self, seq: int, idx: NDArray[np.int64], cause: str, ts: int) -> MarginBatch:
        nu = len(self.und_names)
        req = self.req[idx, :nu]
        im_new = req.sum(axis=1) if nu else np.zeros(idx.size)
        prices = self._asset_prices()
        raw = self._asset_raw_prices()
        coll = self.coll[idx, : len(self.asset_names)]
        # haircut only on positive balances; debts count at the full index price
        coll_val = np.where(coll > 0.0, coll * prices[: coll.shape[1]],
                            coll * raw[: coll.shape[1]]).sum(axis=1) if coll.shape[1] else \
            np.zeros(idx.size)
        mv = self.mark_value[idx, :nu].sum(axis=1) if nu else np.zeros(idx.size)
        degraded_cols = np.array([u in self.degraded for u in self.und_names], bool)
        hold = np.asarray(self.unpriced[idx, :nu].any(axis=1) if nu
                          else np.zeros(idx.size, bool), dtype=bool)
        for k in np.flatnonzero(degraded_cols).tolist():
            book = self.books[self.und_names[k]]
            hold |= np.isin(idx, book.row_acc[: book.n_rows])
        mts = np.maximum(self.market_ts[idx], 0)
        res = self.path.run(PathBatch(seq, self.clock_ms, mts, idx, im_new,
                                      self._mm_fraction * im_new, {}, hold, cause,
                                      self.model.name))
        self.coll_value[idx] = coll_val
        self.figure_im[idx] = im_new
        self.im[idx] = res.im
        self.mm[idx] = res.mm
        self.equity[idx] = coll_val + mv
        self.held[idx] = res.held
        self.computed[idx] = True
        self.updated_seq[idx] = seq
        return self._batch(seq, idx, cause, ts)

    def _batch(self, seq: int, idx: NDArray[np.int64], cause: str, ts: int) -> MarginBatch:
        nu = len(self.und_names)
        im, mm, eq = self.im[idx], self.mm[idx], self.equity[idx]
        status = np.where(eq < mm, STATUS_LIQUIDATION,
                          np.where(eq < im, STATUS_CALL, STATUS_OK)).astype(np.int8)
        if nu:
            kb = np.argmax(self.req[idx, :nu], axis=1)
            has = self.req[idx, kb] > 0.0
            bj = np.where(has, self.bind_j[idx, kb], -1).astype(np.int32)
            bk = np.where(has, kb, -1).astype(np.int16)
        else:
            bj = np.full(idx.size, -1, np.int32)
            bk = np.full(idx.size, -1, np.int16)
        return MarginBatch(seq, self.config.partition, int(ts), self.model.name,
                           self.model.params_hash, cause, self._ids_array(), im.copy(),
                           mm.copy(),
                           eq.copy(), status, self.held[idx].copy(), tuple(self.und_names), bk,
                           bj, idx.copy())

    def _ids_array(self) -> NDArray[np.object_]:
        """Account ids as an object array (capacity-doubled) for fast fancy indexing.

        Batches keep a reference: slots are only ever filled, never changed, and growth
        makes a new array, so an old batch's indices stay valid.
        """
        return self._ids_arr

    def _status_events(self, batch: MarginBatch, entry: LogEntry) -> list[Event]:
        idx = batch.account_index
        old = self.status[idx]
        new = batch.status
        changed = np.flatnonzero(old != new)
        self.status[idx] = new
        out: list[Event] = []
        for c in changed.tolist():
            i = int(idx[c])
            margin = self.account_margin(self.acc_ids[i], batch.seq)
            assert margin is not None  # every account in a batch has been computed
            prev = STATUS_NAMES[int(old[c])]
            s = int(new[c])
            cls = (MarginCall if s == STATUS_CALL else
                   LiquidationSignal if s == STATUS_LIQUIDATION else MarginRestored)
            out.append(cls(self.config.partition, margin, prev, batch.cause))
        return out

    # -- queries ---------------------------------------------------------------------------------
    def account_margin(self, account_id: str, seq: int | None = None) -> AccountMargin | None:
        """Current margin of an account this engine owns (None if unknown / not computed)."""
        i = self.acc_index.get(account_id)
        if i is None or not self.computed[i]:
            return None
        nu = len(self.und_names)
        binding = None
        if nu:
            k = int(np.argmax(self.req[i, :nu]))
            if self.req[i, k] > 0.0:
                und = self.und_names[k]
                j = int(self.bind_j[i, k])
                binding = Binding(und, j, self.scenario_label(und, j), float(self.loss[i, k]),
                                  float(self.minimum[i, k]))
        status = int(np.where(self.equity[i] < self.mm[i], STATUS_LIQUIDATION,
                              np.where(self.equity[i] < self.im[i], STATUS_CALL, STATUS_OK)))
        return AccountMargin(account_id, int(self.updated_seq[i]) if seq is None else seq,
                             int(self.market_ts[i]), self.model.name, self.model.params_hash,
                             float(self.im[i]), float(self.mm[i]), float(self.equity[i]),
                             STATUS_NAMES[status], bool(self.held[i]), binding)

    def account_positions(self, account_id: str) -> tuple[dict[str, float], dict[str, float]]:
        """``(positions, collateral)`` of an owned account (empty if unknown)."""
        i = self.acc_index.get(account_id)
        if i is None:
            return {}, {}
        return dict(self.positions[i]), dict(self.collateral[i])

    def state_digest(self) -> str:
        """SHA-256 over every account's (id, IM, MM, equity) bytes: equal digests = equal state."""
        import hashlib

        h = hashlib.sha256()
        for i, a in enumerate(self.acc_ids):
            h.update(a.encode())
            h.update(np.array([self.im[i], self.mm[i], self.equity[i]]).tobytes())
        return h.hexdigest()


def scenario_label(model: GridModel, underlying: str, j: int) -> str:
    """Label of grid scenario ``j`` on ``underlying``: move of the underlying and vol shock."""
    unit, shocks = model.scenario_axes()
    ns = len(shocks)
    if not 0 <= j < len(unit) * ns:
        return f"{underlying} scenario {j}"
    u = float(unit[j // ns]) * model.price_range(underlying)
    return f"{underlying} {u:+.1%}, vol {shocks[j % ns]}"


def _merge(batches: list[MarginBatch], engine: MarginEngine, seq: int, cause: str
           ) -> MarginBatch | None:
    """One batch out of several (later rows win), re-read from the engine's arrays."""
    if not batches:
        return None
    ids = sorted({a for b in batches for a in b.account_ids}, key=engine.acc_index.__getitem__)
    idx = np.array([engine.acc_index[a] for a in ids], np.int64)
    ts = max(b.market_ts_ms for b in batches)
    return engine._batch(seq, idx, cause, ts)


def ms_to_datetime(ms: int) -> datetime:
    """UTC datetime of a millisecond timestamp."""
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC)


def grid_params_hash(params: Mapping[str, Any]) -> str:
    """Hash of a grid parameter set as :class:`GridModel` computes it."""
    return params_hash({"model": "grid", "params": dict(params)})


def finite_or_none(x: float) -> float | None:
    """``x`` if finite else None (JSON output)."""
    return x if math.isfinite(x) else None
