"""Continuous backtesting on the live path, and the scaling proposals it makes.

At each **daily settlement** (``settlement_hour_utc`` on the input log's clock; 08:00 UTC by
default, Deribit's daily settlement) the engine hands :meth:`LiveBacktest.settle` the books it
holds (every account's positions), the called IM of each and the market. The books and
margins of the *previous* settlement are then revalued at today's market: the realised P&L of
the book held over the day is compared with the margin it held, ``exception = loss > IM``.

Per **model** (the model in force when the margin was held) a rolling window of the last
``window_days`` settlements keeps, per day, the pooled counts (book-days, exceptions,
transitions of the books' exception indicators) and the loss/margin ratios of the exceptions;
per book, the indicators of the window. Statistics reuse :mod:`marginproof.backtest.stats`:
Kupiec's proportion-of-failures test and the Basel traffic light on the pooled book-days (so
the model-level figures treat book-days as independent trials -- books of one venue are
correlated, which makes the pooled zone *stricter*, not laxer), Christoffersen's independence
test on the pooled transition counts (the likelihood of several chains with common transition
probabilities), and per book the full :func:`~marginproof.backtest.stats.coverage_summary`.

**Feedback.** When the pooled zone of the model in force leaves green (and the window holds at
least ``min_days`` settlements), the backtest *proposes* a parameter change for models with a
confidence scaling (``[risk] scaling``: ``dynamic``, ``fhs``, ``mc``): the smallest factor ``k``
(rounded up to 0.01, at most ``max_scaling_step``) by which the window's margins would have had
to be larger for its exception count to be green (``k`` = the ``(g+1)``-th largest exception
ratio, ``g`` the green bound for the window's book-days), applied as ``scaling * k``. The
proposal carries that evidence and takes effect ``notice_ms`` after the settlement if an
operator approves it (a ``params`` entry with the proposed hash); otherwise it expires then.
Everything here is a function of the log, so replay reproduces every proposal bit for bit.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from marginproof.backtest import stats as bst
from marginproof.backtest.continuous import _ind_from_counts
from marginproof.config.params import params_hash
from marginproof.errors import InputError
from marginproof.instruments.contracts import InstrumentKind
from marginproof.instruments.names import parse_instrument
from marginproof.instruments.portfolio import Portfolio, Position
from marginproof.instruments.resolved import resolve
from marginproof.market.snapshot import MarketSnapshot

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
MS_PER_DAY = 86_400_000
MS_PER_HOUR = 3_600_000


@dataclass(frozen=True)
class LiveBacktestConfig:
    """Settings of the live backtest and its proposals.

    Attributes
    ----------
    settlement_hour_utc : int
        Hour of the daily settlement (UTC).
    window_days : int
        Rolling window (settlements) of the statistics.
    alpha : float
        Tail probability the margin is tested at (0.01: read as a 99 % VaR).
    min_days : int
        Settlements in the window before a proposal can be made.
    notice_ms : int
        Notice between a proposal and its effective time (the service's
        ``params_min_notice_s``).
    max_scaling_step : float
        Largest factor one proposal may apply to the scaling.
    propose : bool
        Whether proposals are made at all.
    """

    settlement_hour_utc: int = 8
    window_days: int = 250
    alpha: float = 0.01
    min_days: int = 5
    notice_ms: int = 3_600_000
    max_scaling_step: float = 1.5
    propose: bool = True

    def __post_init__(self) -> None:
        if not 0 <= int(self.settlement_hour_utc) <= 23:
            raise InputError("settlement_hour_utc", "must be an hour in [0, 23]")
        if int(self.window_days) < 2:
            raise InputError("window_days", "must be >= 2")
        bst._check_alpha(self.alpha)
        if int(self.min_days) < 1:
            raise InputError("min_days", "must be >= 1")
        if int(self.notice_ms) < 0:
            raise InputError("notice_ms", "must be >= 0")
        if not 1.0 < float(self.max_scaling_step) <= 10.0:
            raise InputError("max_scaling_step", "must be in (1, 10]")

    def next_settlement_ms(self, after_ms: int) -> int:
        """First settlement time strictly after ``after_ms``."""
        day0 = (int(after_ms) // MS_PER_DAY) * MS_PER_DAY
        t = day0 + int(self.settlement_hour_utc) * MS_PER_HOUR
        while t <= after_ms:
            t += MS_PER_DAY
        return t


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC).isoformat().replace("+00:00", "Z")


# -- realised P&L ----------------------------------------------------------------------------------
def _unit_value_usd(name: str, market: MarketSnapshot) -> tuple[float, float, float]:
    """``(value_usd, forward, index)`` of one unit; NaN when it cannot be priced."""
    inst = parse_instrument(name)
    if inst.underlying not in market.index_prices:
        return math.nan, math.nan, math.nan
    s = market.index(inst.underlying)
    if inst.expiry is not None and inst.expiry <= market.timestamp:
        if inst.is_option:  # settled: intrinsic value at today's index (USD per coin)
            assert inst.strike is not None
            iv = max(0.0, s - inst.strike) if inst.is_call else max(0.0, inst.strike - s)
            return iv * inst.contract_size, s, s
        return s * inst.contract_size, s, s  # an expired future settles at the index
    try:
        book = resolve(Portfolio((Position(inst, 1.0),)), market)
    except InputError:
        return math.nan, math.nan, math.nan
    return (float(book.mark_usd[0]) * inst.contract_size, float(book.forward[0]),
            float(book.index[0]))


def unit_pnl_usd(names: Sequence[str], prev: MarketSnapshot, cur: MarketSnapshot) -> FloatArray:
    """USD P&L of one unit of each instrument held from ``prev`` to ``cur``, shape (n,).

    Linear contracts, spot and options: the change of the unit's USD value (option marks as
    resolved, inverse marks converted at the forward). Inverse futures and perpetuals (one unit =
    one USD of face): coin P&L ``1/F0 - 1/F1`` at today's index. An option that expired in
    between is worth its intrinsic value at today's index; NaN where either side cannot be
    priced (the book is left out of that day). Funding payments are not included.
    """
    out = np.empty(len(names))
    for j, n in enumerate(names):
        inst = parse_instrument(n)
        v0, f0, _ = _unit_value_usd(n, prev)
        v1, f1, s1 = _unit_value_usd(n, cur)
        if inst.is_inverse and inst.kind in (InstrumentKind.FUTURE, InstrumentKind.PERPETUAL):
            out[j] = inst.contract_size * (1.0 / f0 - 1.0 / f1) * s1
        else:
            out[j] = v1 - v0
    return out


@dataclass(frozen=True)
class Holdings:
    """Every account's positions at one instant, as COO triplets (``nnz`` entries).

    ``rows`` are engine account rows, ``cols`` index ``names``.
    """

    rows: IntArray
    cols: IntArray
    qty: FloatArray
    names: tuple[str, ...]

    @classmethod
    def from_positions(cls, positions: Sequence[Mapping[str, float]]) -> Holdings:
        """From one ``{instrument: qty}`` dict per account row."""
        names: dict[str, int] = {}
        r: list[int] = []
        c: list[int] = []
        q: list[float] = []
        for i, pos in enumerate(positions):
            for n, v in pos.items():
                if v != 0.0:
                    r.append(i)
                    c.append(names.setdefault(n, len(names)))
                    q.append(float(v))
        return cls(np.array(r, np.int64), np.array(c, np.int64), np.array(q, np.float64),
                   tuple(names))

    def matrix(self, n_rows: int) -> sp.csr_matrix:
        return sp.csr_matrix((self.qty, (self.rows, self.cols)),
                             shape=(n_rows, len(self.names)))


# -- statistics ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Day:
    settle_ms: int
    params_hash: str
    n_obs: int
    n_exc: int
    trans: tuple[int, int, int, int]
    ratios: FloatArray  # loss / margin of the exceptions


class _ModelWindow:
    """Rolling window of one model: pooled days and per-book indicator ring."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.days: deque[_Day] = deque(maxlen=window)
        self.ring = np.full((16, window), -1, np.int8)
        self.n_days = 0  # settlements ever added (ring column = n_days % window)

    def _ensure(self, n: int) -> None:
        if n > self.ring.shape[0]:
            out = np.full((max(n, 2 * self.ring.shape[0]), self.window), -1, np.int8)
            out[: self.ring.shape[0]] = self.ring
            self.ring = out

    def add(self, settle_ms: int, phash: str, rows: IntArray, exc: NDArray[np.bool_],
            ratios: FloatArray) -> _Day:
        self._ensure(int(rows.max()) + 1 if rows.size else 0)
        col = self.n_days % self.window
        prev_col = (self.n_days - 1) % self.window
        self.ring[:, col] = -1
        self.ring[rows, col] = exc.astype(np.int8)
        n00 = n01 = n10 = n11 = 0
        if self.n_days > 0:
            prev = self.ring[rows, prev_col]
            cur = exc.astype(np.int8)
            seen = prev >= 0
            n00 = int(np.sum(seen & (prev == 0) & (cur == 0)))
            n01 = int(np.sum(seen & (prev == 0) & (cur == 1)))
            n10 = int(np.sum(seen & (prev == 1) & (cur == 0)))
            n11 = int(np.sum(seen & (prev == 1) & (cur == 1)))
        day = _Day(int(settle_ms), phash, int(rows.size), int(exc.sum()), (n00, n01, n10, n11),
                   np.sort(ratios)[::-1].copy())
        self.days.append(day)
        self.n_days += 1
        return day

    def pooled(self) -> tuple[int, int, list[int]]:
        """``(book-days, exceptions, [n00, n01, n10, n11])`` over the window.

        The transitions of the window's first day point back outside it and are left out.
        """
        t = sum(d.n_obs for d in self.days)
        x = sum(d.n_exc for d in self.days)
        tr = [0, 0, 0, 0]
        for d in list(self.days)[1:]:
            for k in range(4):
                tr[k] += d.trans[k]
        return t, x, tr

    def book_indicators(self, row: int) -> NDArray[np.int8]:
        """Exception indicators of one book over the window, oldest first (days observed)."""
        if row >= self.ring.shape[0] or self.n_days == 0:
            return np.zeros(0, np.int8)
        n = min(self.n_days, self.window)
        cols = [(self.n_days - n + k) % self.window for k in range(n)]
        v = self.ring[row, cols]
        return np.asarray(v[v >= 0], dtype=np.int8)


def pooled_statistics(n_obs: int, n_exc: int, trans: Sequence[int], alpha: float
                      ) -> dict[str, Any]:
    """Kupiec, Christoffersen (pooled transitions) and the traffic light of pooled counts."""
    out: dict[str, Any] = {"book_days": n_obs, "exceptions": n_exc, "alpha": alpha}
    if n_obs == 0:
        out.update(zone="n/a")
        return out
    pof = bst.kupiec_pof(n_obs, n_exc, alpha)
    tl = bst.traffic_light(n_exc, n_obs, alpha)
    out.update(exception_rate=n_exc / n_obs, coverage_ratio=1.0 - n_exc / n_obs,
               kupiec_lr=pof.lr, kupiec_p=pof.p_value, zone=tl.zone,
               zone_cumulative_probability=tl.cumulative_probability,
               green_max=tl.green_max, yellow_max=tl.yellow_max)
    n_tr = int(sum(trans))
    if n_tr > 0:
        ind = _ind_from_counts(list(trans), n_tr + 1)
        cc = pof.lr + ind.lr
        from scipy.stats import chi2

        out.update(christoffersen_ind_lr=ind.lr, christoffersen_ind_p=ind.p_value,
                   christoffersen_cc_lr=cc, christoffersen_cc_p=float(chi2.sf(cc, 2)),
                   transitions=list(trans))
    return out


# -- proposals -------------------------------------------------------------------------------------
@dataclass
class Proposal:
    """A scaling change the backtest proposes (a parameter change awaiting approval).

    ``status``: ``open`` (announced, awaiting approval), ``approved`` (a params entry with
    ``params_hash`` was logged), ``active`` (it took effect), ``expired`` (not approved by
    ``effective_at_ms``).
    """

    proposal_id: str
    model: str
    created_seq: int
    created_at_ms: int
    effective_at_ms: int
    params: dict[str, Any]
    params_hash: str
    base_params_hash: str
    evidence: dict[str, Any]
    status: str = "open"
    approved_seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"proposal_id": self.proposal_id, "model": self.model,
                "created_seq": self.created_seq, "created_at_ms": self.created_at_ms,
                "created_at": _iso(self.created_at_ms),
                "effective_at_ms": self.effective_at_ms,
                "effective_at": _iso(self.effective_at_ms), "params_hash": self.params_hash,
                "base_params_hash": self.base_params_hash, "status": self.status,
                "approved_seq": self.approved_seq, "evidence": self.evidence,
                "change": {"risk.scaling": [self.evidence.get("scaling_from"),
                                            self.evidence.get("scaling_to")]}}


def scaling_factor(ratios: FloatArray, green_max: int, max_step: float) -> float:
    """Smallest ``k`` (up to 0.01) with at most ``green_max`` ratios above it, capped."""
    r = np.sort(np.asarray(ratios, dtype=np.float64))[::-1]
    if r.shape[0] <= green_max:
        return 1.0
    need = float(r[green_max])
    k = math.ceil(need * 100.0 - 1e-9) / 100.0
    return float(min(max(k, 1.01), max_step))


@dataclass(frozen=True)
class SettlementReport:
    """What one settlement added (JSON-ready via :meth:`to_dict`)."""

    settle_ms: int
    model: str | None
    n_books: int
    n_exceptions: int
    n_unpriced: int
    stats: dict[str, Any]
    proposal: Proposal | None

    def to_dict(self) -> dict[str, Any]:
        return {"settle_ms": self.settle_ms, "settled_at": _iso(self.settle_ms),
                "model": self.model, "n_books": self.n_books,
                "n_exceptions": self.n_exceptions, "n_unpriced": self.n_unpriced,
                "stats": self.stats,
                "proposal_id": self.proposal.proposal_id if self.proposal else None}


@dataclass
class _Held:
    settle_ms: int
    model: str
    params_hash: str
    holdings: Holdings
    margin: FloatArray  # by row
    market: MarketSnapshot


@dataclass
class LiveBacktest:
    """Per-model rolling backtest of the live margins and the proposals (module docstring)."""

    config: LiveBacktestConfig = field(default_factory=LiveBacktestConfig)
    windows: dict[str, _ModelWindow] = field(default_factory=dict)
    proposals: list[Proposal] = field(default_factory=list)
    next_settle_ms: int | None = None
    reports: deque[SettlementReport] = field(default_factory=lambda: deque(maxlen=400))
    _held: _Held | None = None

    def due(self, clock_ms: int) -> bool:
        """Whether a settlement is due at log time ``clock_ms`` (first call arms the timer)."""
        if self.next_settle_ms is None:
            self.next_settle_ms = self.config.next_settlement_ms(int(clock_ms))
            return False
        return int(clock_ms) >= self.next_settle_ms

    def settle(self, seq: int, model: str, params: Mapping[str, Any], holdings: Holdings,
               margin: FloatArray, market: MarketSnapshot | None,
               clock_ms: int | None = None) -> SettlementReport:
        """Settle now (:meth:`due` said so): compare yesterday's books with their margin.

        When the log was silent over more than one settlement (``clock_ms`` past the next one
        by a day or more), the missed ones are skipped and nothing is compared across the gap
        (the books' P&L would span several days against a one-day margin).

        Parameters
        ----------
        seq : int
            The log entry at which the settlement happens (ids of proposals).
        model, params : the model in force now and its parameters.
        holdings : Holdings
            Positions held from now to the next settlement.
        margin : ndarray, shape (n_rows,)
            Called IM of every engine row now (0 for rows without one).
        market : MarketSnapshot or None
            The engine's market now (None: nothing to settle against).
        """
        assert self.next_settle_ms is not None, "call due() first"
        at = self.next_settle_ms
        gap = False
        while clock_ms is not None and at + MS_PER_DAY <= int(clock_ms):
            at += MS_PER_DAY
            gap = True
        self.next_settle_ms = self.config.next_settlement_ms(at)
        phash = params_hash({"model": model, "params": dict(params)})
        self._expire(at)
        prev = None if gap else self._held
        report = SettlementReport(at, None, 0, 0, 0, {}, None)
        if prev is not None and market is not None:
            report = self._compare(seq, prev, market, at, model, params, phash)
        if market is not None:
            self._held = _Held(at, model, phash, holdings, np.asarray(margin, np.float64).copy(),
                               market)
        self.reports.append(report)
        return report

    def _compare(self, seq: int, prev: _Held, market: MarketSnapshot, at: int, model: str,
                 params: Mapping[str, Any], phash: str) -> SettlementReport:
        h = prev.holdings
        n_rows = prev.margin.shape[0]
        if h.rows.size and int(h.rows.max()) >= n_rows:
            n_rows = int(h.rows.max()) + 1
        margin = np.zeros(n_rows)
        margin[: prev.margin.shape[0]] = prev.margin
        unit = unit_pnl_usd(h.names, prev.market, market)
        bad_col = ~np.isfinite(unit)
        q = h.matrix(n_rows)
        pnl = q @ np.where(bad_col, 0.0, unit)
        bad_row = (abs(q) @ bad_col.astype(np.float64)) > 0.0
        book = np.zeros(n_rows, bool)
        book[h.rows] = True
        rows = np.flatnonzero(book & (margin > 0.0) & ~bad_row).astype(np.int64)
        loss = -pnl[rows]
        m = margin[rows]
        exc = loss > m
        ratios = loss[exc] / m[exc]
        w = self.windows.setdefault(prev.model, _ModelWindow(self.config.window_days))
        w.add(at, prev.params_hash, rows, exc, ratios)
        stats = self.model_stats(prev.model)
        proposal = None
        if (self.config.propose and prev.model == model and stats.get("zone") not in
                ("green", "n/a") and len(w.days) >= self.config.min_days):
            proposal = self._propose(seq, at, model, params, phash, w, stats)
        return SettlementReport(at, prev.model, int(rows.size), int(exc.sum()),
                                int((book & bad_row).sum()), stats, proposal)

    def _propose(self, seq: int, at: int, model: str, params: Mapping[str, Any], phash: str,
                 w: _ModelWindow, stats: dict[str, Any]) -> Proposal | None:
        risk = params.get("risk")
        if not isinstance(risk, Mapping) or "scaling" not in risk:
            return None  # no confidence scaling to change: the evidence is in the stats
        if any(p.status in ("open", "approved") and p.model == model for p in self.proposals):
            return None
        ratios = np.concatenate([d.ratios for d in w.days]) if w.days else np.zeros(0)
        k = scaling_factor(ratios, int(stats["green_max"]), self.config.max_scaling_step)
        old = float(risk["scaling"])
        new = min(10.0, math.ceil(old * k * 1e4 - 1e-6) / 1e4)
        if new <= old:
            return None
        proposed = {key: (dict(v) if isinstance(v, Mapping) else v) for key, v in params.items()}
        proposed["risk"] = {**dict(risk), "scaling": new}
        evidence = {
            **stats, "window_days": len(w.days), "window_start": _iso(w.days[0].settle_ms),
            "window_end": _iso(w.days[-1].settle_ms),
            "daily_exceptions": [d.n_exc for d in w.days],
            "daily_books": [d.n_obs for d in w.days],
            "largest_exception_ratios": sorted(ratios.tolist(), reverse=True)[:10],
            "factor": k, "scaling_from": old, "scaling_to": new,
            "method": ("smallest k (to 0.01) with at most green_max exceptions of loss > k * "
                       "margin over the window's book-days, capped at max_scaling_step; "
                       "new risk.scaling = scaling * k rounded up to 1e-4")}
        p = Proposal(f"{seq}:{model}", model, seq, at, at + self.config.notice_ms, proposed,
                     params_hash({"model": model, "params": proposed}), phash, evidence)
        self.proposals.append(p)
        return p

    # -- lifecycle of proposals ------------------------------------------------------------------
    def _expire(self, clock_ms: int) -> list[Proposal]:
        out = []
        for p in self.proposals:
            if p.status == "open" and clock_ms >= p.effective_at_ms:
                p.status = "expired"
                out.append(p)
        return out

    def on_clock(self, clock_ms: int) -> list[Proposal]:
        """Proposals whose effective time passed unapproved (now ``expired``)."""
        return self._expire(clock_ms)

    def on_params_entry(self, seq: int, model: str, phash: str) -> Proposal | None:
        """A ``params`` entry was logged: the open proposal with this hash is approved."""
        for p in self.proposals:
            if p.status == "open" and p.model == model and p.params_hash == phash:
                p.status = "approved"
                p.approved_seq = seq
                return p
        return None

    def on_params_activated(self, model: str, phash: str) -> Proposal | None:
        """Parameters took effect: an approved proposal with this hash is now active."""
        for p in self.proposals:
            if p.status == "approved" and p.model == model and p.params_hash == phash:
                p.status = "active"
                return p
        return None

    def proposal(self, proposal_id: str) -> Proposal | None:
        return next((p for p in self.proposals if p.proposal_id == proposal_id), None)

    # -- queries ---------------------------------------------------------------------------------
    def model_stats(self, model: str) -> dict[str, Any]:
        """Pooled statistics of ``model`` over its window (``zone = n/a`` without data)."""
        w = self.windows.get(model)
        if w is None or not w.days:
            return {"model": model, "zone": "n/a", "window_days": 0, "book_days": 0,
                    "exceptions": 0}
        t, x, tr = w.pooled()
        out = pooled_statistics(t, x, tr, self.config.alpha)
        out.update(model=model, window_days=len(w.days),
                   window_start=_iso(w.days[0].settle_ms), window_end=_iso(w.days[-1].settle_ms),
                   params_hashes=sorted({d.params_hash for d in w.days}))
        ring = w.ring
        n = min(w.n_days, w.window)
        cols = [(w.n_days - n + k) % w.window for k in range(n)]
        sub = ring[:, cols]
        obs = (sub >= 0).sum(axis=1)
        exc = (sub == 1).sum(axis=1)
        zones = {"green": 0, "yellow": 0, "red": 0}
        for T in np.unique(obs[obs > 0]).tolist():
            g, y = bst.zone_bounds(int(T), self.config.alpha)
            sel = obs == T
            zones["green"] += int(np.sum(sel & (exc <= g)))
            zones["yellow"] += int(np.sum(sel & (exc > g) & (exc <= y)))
            zones["red"] += int(np.sum(sel & (exc > y)))
        out["books"] = {"n": int((obs > 0).sum()), **{f"zone_{k}": v for k, v in zones.items()}}
        return out

    def book_stats(self, model: str, row: int) -> dict[str, Any] | None:
        """:func:`~marginproof.backtest.stats.coverage_summary` of one book over the window."""
        w = self.windows.get(model)
        if w is None:
            return None
        ind = w.book_indicators(row)
        if ind.size == 0:
            return None
        return {"model": model, "indicators": ind.tolist(),
                **bst.coverage_summary(ind, self.config.alpha).to_dict()}

    def all_stats(self) -> dict[str, Any]:
        return {m: self.model_stats(m) for m in sorted(self.windows)}
