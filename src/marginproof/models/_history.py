"""Shared machinery of the history-driven models (``fhs``, ``mc``, ``dynamic``).

A :class:`HistoryModel` is built from frozen parameters and a :class:`MarketHistory` (injected, or
from a provider; the default provider reads the shipped data once per process). Everything is
computed from data dated on or before the as-of day ``T = asof_date(market.timestamp)``: the
last UTC day whose close is known at the market time. Scenario sets are cached per
``(T, underlyings)`` so that repeated ``margin()`` calls on one date only revalue the book.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError
from marginproof.instruments.resolved import ResolvedBook
from marginproof.models.base import BaseMarginModel
from marginproof.pricing import dispatch
from marginproof.risk.ewma import N_INIT, ewma_sigma
from marginproof.risk.factors import FactorPath, factor_path
from marginproof.risk.history import MarketHistory
from marginproof.risk.implied import DEFAULT_PROXY_SCALE
from marginproof.risk.measures import es_weights, tail_count
from marginproof.scenarios.revalue import scenario_pnl_usd
from marginproof.scenarios.sets import ScenarioSet, book_moves

if TYPE_CHECKING:
    from marginproof.risk.live import RiskFactorState

FloatArray = NDArray[np.float64]
HistoryProvider = Callable[[], MarketHistory]

STALE_HISTORY_WARN_DAYS = 3
"""A history whose last close is more than this many days before the as-of day ``T`` is
stale: the result says so (``details["warnings"]``, one line on stderr in the CLI). Three days
absorb a late daily close and a long weekend of a feed that only updates on working days."""

DEFAULT_MAX_HISTORY_LAG_DAYS = 31
"""Refusal limit on the history lag (days) when ``[risk] max_history_lag_days`` is absent: a
larger lag raises ``InputError`` on ``market.timestamp`` (the margin would use volatility more
than a month old). Underlyings whose recent vol is replaced by a bound live risk-factor state
are exempt (:meth:`ScenarioRiskMixin.history_lag_days`)."""


class ScenarioStore(Protocol):
    """Where a one-shot process keeps expensive scenario sets between runs (an adapter of the
    shell, e.g. :class:`marginproof.storage.scenario_store.DiskScenarioStore`)."""

    def load(self, key: str) -> ScenarioSet | None:
        """The set stored under ``key``, or None."""

    def save(self, key: str, scenarios: ScenarioSet) -> None:
        """Keep ``scenarios`` under ``key`` (best effort)."""


# a scoped setting, off unless a one-shot command provides a store (see :func:`scenario_store`)
_STORE: ContextVar[ScenarioStore | None] = ContextVar("marginproof_scenario_store", default=None)


@contextmanager
def scenario_store(store: ScenarioStore) -> Iterator[None]:
    """Within this scope, :meth:`HistoryModel.persisted` scenario sets are read from and written
    to ``store``: a Monte Carlo set (GARCH fits, copula, 16k draws: seconds, most of it
    importing ``arch``) is built once per as-of day, parameters and history, not per process.
    The key covers everything the set is a function of, so a hit returns the same arrays the
    build would."""
    token = _STORE.set(store)
    try:
        yield
    finally:
        _STORE.reset(token)


def history_digest(history: MarketHistory) -> str:
    """SHA-256 of every array and name of ``history`` (what a persisted set depends on)."""
    h = hashlib.sha256()
    for group in ("closes", "volumes", "atm_iv", "long_closes"):
        for name, ds in sorted(getattr(history, group).items()):
            h.update(f"|{group}|{name}|".encode())
            h.update(np.ascontiguousarray(ds.dates).tobytes())
            h.update(np.ascontiguousarray(ds.values).tobytes())
    for name, fs in sorted(history.funding.items()):
        h.update(f"|funding|{name}|".encode())
        h.update(np.ascontiguousarray(fs.times).tobytes())
        h.update(np.ascontiguousarray(fs.rates).tobytes())
    return h.hexdigest()


def _default_provider() -> MarketHistory:
    # Composition-root default: the shell loader of the shipped data (imported lazily so the
    # core modules never import file-reading code at import time).
    from marginproof.feeds.history_cache import shipped_history

    return shipped_history()


def _num(params: Mapping[str, Any], section: str, key: str, lo: float, hi: float,
         default: float | None = None) -> float:
    sec = params.get(section, {})
    v = sec.get(key, default) if isinstance(sec, Mapping) else default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= float(v) <= hi):
        raise InputError(f"params.{section}.{key}", f"must be a number in [{lo}, {hi}], got {v!r}")
    return float(v)


@dataclass(frozen=True)
class TailRisk:
    """Risk of one loss vector.

    Attributes
    ----------
    losses : ndarray, shape (n_scenarios,)
    var, es, worst : float
    worst_index : int
    measure : float
        The configured measure (ES or VaR) times the confidence scaling.
    """

    losses: FloatArray
    var: float
    es: float
    worst: float
    worst_index: int
    measure: float


def var_es_columns(losses: FloatArray, conf_var: float, conf_es: float
                   ) -> tuple[FloatArray, FloatArray]:
    """VaR (``numpy.quantile``, linear) and Acerbi-Tasche ES of every column, one selection.

    Parameters
    ----------
    losses : ndarray, shape (n_scenarios, n_columns)
        Finite losses, positive = loss.

    Returns
    -------
    var, es : ndarray, shape (n_columns,)
        Equal to :func:`marginproof.risk.measures.var` and ``expected_shortfall`` (same
        interpolation formula as numpy's ``_lerp``); only the largest losses are sorted, so
        the cost is one ``numpy.partition`` instead of a quantile selection plus a full sort.
    """
    a = np.asarray(losses, dtype=np.float64)
    n = a.shape[0]
    if n == 0:
        raise InputError("losses", "no scenarios")
    k = tail_count(n, conf_es)
    if k <= 0.0:
        raise InputError("conf", f"no tail: N * (1 - conf) = {k} for N = {n}")
    m = math.floor(k)
    frac = k - m
    h = (n - 1) * float(conf_var)
    lo = math.floor(h)
    g = h - lo
    need = min(n, max(m + 1, n - lo))  # ranks (from the top) the two measures read
    top = np.partition(a, n - need, axis=0)[n - need:] if need < n else a
    top = -np.sort(-top, axis=0)  # descending, shape (need, n_cols)
    # each column summed along a contiguous row (numpy's pairwise summation), so a column's
    # ES does not depend on how many other columns share the call (batch partitions equal
    # the plain run bit for bit; summing down axis 0 would switch order with n_columns)
    total = np.ascontiguousarray(top[:m].T).sum(axis=1)
    if frac > 0.0:
        total = total + frac * top[m]
    es = total / k
    x_lo = top[n - 1 - lo]
    x_hi = top[n - 2 - lo] if lo + 1 < n else x_lo
    diff = x_hi - x_lo
    v = x_hi - diff * (1.0 - g) if g >= 0.5 else x_lo + diff * g
    return np.asarray(v, dtype=np.float64), np.asarray(es, dtype=np.float64)


def tail_risk(pnl: FloatArray, conf_var: float, conf_es: float, measure: str,
              scaling: float) -> TailRisk:
    """Risk of a portfolio P&L matrix (n_scenarios, n_positions) summed over positions."""
    losses = -pnl.sum(axis=1)
    if losses.shape[0] == 0:
        return TailRisk(losses, 0.0, 0.0, 0.0, 0, 0.0)
    vv, ee = var_es_columns(losses[:, None], conf_var, conf_es)
    v, e = float(vv[0]), float(ee[0])
    j = int(np.argmax(losses))
    base = e if measure == "es" else v
    return TailRisk(losses, v, e, float(losses[j]), j, max(0.0, scaling * base))


def measure_contributions(pnl: FloatArray, losses: FloatArray, conf_var: float, conf_es: float,
                          measure: str, scaling: float) -> FloatArray:
    """Per-position share of the measure: ES tail means (Euler), or the VaR-scenario loss."""
    if losses.shape[0] == 0 or pnl.shape[1] == 0:
        return np.zeros(pnl.shape[1])
    if measure == "es":
        w = es_weights(losses, conf_es)
        return np.asarray(scaling * (w @ -pnl), dtype=np.float64)
    j = int(np.argsort(losses)[min(len(losses) - 1, int(round(conf_var * (len(losses) - 1))))])
    return np.asarray(-scaling * pnl[j], dtype=np.float64)


class HistoryModel(BaseMarginModel):
    """Base of the models that need market history (see module docstring)."""

    def __init__(self, params: Mapping[str, Any] | None = None,
                 history: MarketHistory | None = None,
                 history_provider: HistoryProvider | None = None) -> None:
        super().__init__(params)
        self._history = history
        self._provider = history_provider or _default_provider
        self._paths: dict[tuple[str, float], FactorPath] = {}
        self._cache: dict[tuple[Any, ...], Any] = {}
        self._factors: RiskFactorState | None = None
        self._live_sets: dict[tuple[Any, ...], ScenarioSet] = {}
        self._history_digest: str | None = None

    # -- live risk factors -----------------------------------------------------------------------
    def with_factors(self, factors: RiskFactorState | None) -> HistoryModel:
        """A view of this model on an explicit live risk-factor state.

        The view shares the history, factor paths and per-date caches (so binding is cheap)
        and differs in two things: the one-day core scenario set of the as-of day has each
        underlying's return (IV) column rescaled by ``sigma_live / sigma_daily(T)`` (the
        state's EWMA vol over the model's own daily EWMA forecast, which seeded it), and
        Monte Carlo draws use the state's ``draw_seed``. Nested history models (the core model
        of ``dynamic``) are bound too. With ``factors=None`` the view is the batch model.
        """
        view = copy.copy(self)
        view._factors = factors
        view._live_sets = {}
        for name, value in list(vars(view).items()):
            if isinstance(value, HistoryModel) and value is not self:
                setattr(view, name, value.with_factors(factors))
        return view

    @property
    def live_factors(self) -> RiskFactorState | None:
        return self._factors

    def scenario_seed(self, default: int) -> int:
        """Seed of scenario draws: the bound state's draw seed, else ``default`` (params)."""
        f = self._factors
        return int(f.draw_seed) if f is not None and f.draw_seq > 0 else int(default)

    @property
    def ewma_lambda(self) -> float:
        """Daily EWMA decay of the model's factor paths (0.94 when it has none)."""
        return float(getattr(self, "lam", 0.94))

    def daily_vols(self, underlying: str, asof: np.datetime64) -> tuple[float, float]:
        """The model's daily EWMA forecasts ``sigma_next(T)`` of returns and ATM-IV changes."""
        p = self.factor_paths((underlying,), self.ewma_lambda)[underlying]
        n = p.index_of(asof)
        return float(p.sigma[n]), float(p.iv_sigma[n])

    def live_scales(self, sset: ScenarioSet, asof: np.datetime64
                    ) -> tuple[FloatArray, FloatArray]:
        """Per-underlying return and IV scales of the bound state (ones when unbound)."""
        d = len(sset.underlyings)
        rs, vs = np.ones(d), np.ones(d)
        f = self._factors
        if f is None:
            return rs, vs
        for j, u in enumerate(sset.underlyings):
            v = f.vols.get(u)
            if v is None:
                continue
            s_d, iv_d = self.daily_vols(u, asof)
            rs[j] = v.sigma_daily / s_d
            vs[j] = v.iv_sigma_daily / iv_d
        return rs, vs

    def _live_core(self, base: ScenarioSet, asof: np.datetime64) -> ScenarioSet:
        """``base`` with the bound state's vol scales applied (memoised per base set)."""
        rs, vs = self.live_scales(base, asof)
        if np.all(rs == 1.0) and np.all(vs == 1.0):
            return base
        key = (id(base), rs.tobytes(), vs.tobytes())
        out = self._live_sets.get(key)
        if out is None:
            info = dict(base.info)
            sn = dict(info.get("sigma_next", {}))
            ivn = dict(info.get("iv_sigma_next", {}))
            for j, u in enumerate(base.underlyings):
                if u in sn:
                    sn[u] = float(sn[u]) * float(rs[j])
                if u in ivn:
                    ivn[u] = float(ivn[u]) * float(vs[j])
            info.update(sigma_next=sn, iv_sigma_next=ivn,
                        live_scale={u: float(rs[j]) for j, u in enumerate(base.underlyings)},
                        live_iv_scale={u: float(vs[j]) for j, u in enumerate(base.underlyings)})
            out = ScenarioSet(base.underlyings, base.labels, base.log_returns * rs[None, :],
                              base.iv_log_changes * vs[None, :], base.horizon_applied, info)
            if len(self._live_sets) > 64:
                self._live_sets.clear()
            self._live_sets[key] = out
        return out

    # -- configuration -------------------------------------------------------------------------
    def _validate(self, params: Mapping[str, Any]) -> None:
        r = params.get("risk")
        if not isinstance(r, Mapping):
            raise InputError("params.risk", "missing [risk] table")
        if r.get("measure", "es") not in ("es", "var"):
            raise InputError("params.risk.measure", "must be 'es' or 'var'")
        _num(params, "risk", "conf_es", 0.5, 0.9999)
        _num(params, "risk", "conf_var", 0.5, 0.9999)
        _num(params, "risk", "mpor_days", 1e-6, 30.0)
        _num(params, "risk", "scaling", 0.1, 10.0, 1.0)
        _num(params, "maintenance", "mm_fraction", 1e-6, 1.0)
        _num(params, "iv", "proxy_scale", 0.0, 10.0, DEFAULT_PROXY_SCALE)
        if params.get("iv", {}).get("proxy_lambda") is not None:
            _num(params, "iv", "proxy_lambda", 0.5, 0.9999)
        if not isinstance(r.get("time_decay", True), bool):
            raise InputError("params.risk.time_decay", "must be true or false")
        lag = r.get("max_history_lag_days")
        if lag is not None and (not isinstance(lag, int) or isinstance(lag, bool) or lag < 0):
            raise InputError("params.risk.max_history_lag_days", "must be an integer >= 0")

    @property
    def risk_params(self) -> Mapping[str, Any]:
        return self.params["risk"]  # type: ignore[no-any-return]

    @property
    def conf_var(self) -> float:
        return float(self.risk_params["conf_var"])

    @property
    def conf_es(self) -> float:
        return float(self.risk_params["conf_es"])

    @property
    def measure_name(self) -> str:
        return str(self.risk_params.get("measure", "es"))

    @property
    def mpor_days(self) -> float:
        return float(self.risk_params["mpor_days"])

    @property
    def scaling(self) -> float:
        return float(self.risk_params.get("scaling", 1.0))

    @property
    def iv_shocks(self) -> bool:
        return bool(self.params.get("iv", {}).get("shocks", True))

    # -- history -------------------------------------------------------------------------------
    @property
    def history(self) -> MarketHistory:
        if self._history is None:
            self._history = self._provider()
        return self._history

    def factor_paths(self, underlyings: tuple[str, ...], lam: float) -> dict[str, FactorPath]:
        """EWMA factor paths (cached per underlying and decay)."""
        iv = self.params.get("iv", {})
        series = iv.get("series", {}) if isinstance(iv, Mapping) else {}
        scale = float(iv.get("proxy_scale", DEFAULT_PROXY_SCALE)) if isinstance(
            iv, Mapping) else DEFAULT_PROXY_SCALE
        p_lam = iv.get("proxy_lambda") if isinstance(iv, Mapping) else None
        out: dict[str, FactorPath] = {}
        for u in underlyings:
            key = (u, float(lam))
            if key not in self._paths:
                name = series.get(u) if isinstance(series, Mapping) else None
                lv = self.history.atm_iv.get(str(name)) if name is not None else None
                closes = self.history.close_series(u)
                fp = factor_path(u, closes, lv, lam, proxy_scale=scale)
                if p_lam is not None and float(p_lam) != float(lam):
                    # IV proxy from a fixed-decay EWMA vol, returns filtered with ``lam``
                    x = factor_path(u, closes, lv, float(p_lam), proxy_scale=scale)
                    fp = FactorPath(u, fp.dates, fp.log_returns, fp.sigma, x.iv_changes,
                                    x.iv_is_proxy, ewma_sigma(x.iv_changes, float(lam), N_INIT),
                                    fp.lam)
                self._paths[key] = fp
            out[u] = self._paths[key]
        return out

    def cached(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        """Memo of per-date intermediates (scenario sets, fits)."""
        if key not in self._cache:
            if len(self._cache) > 512:
                self._cache.clear()
            self._cache[key] = build()
        return self._cache[key]

    def persisted(self, key: tuple[Any, ...], build: Callable[[], ScenarioSet]) -> ScenarioSet:
        """:meth:`cached`, backed by the scoped :class:`ScenarioStore` when there is one.

        The store key hashes the model class, its parameter hash, the history digest and
        ``key``; a model bound to a live risk-factor state never uses the store.
        """
        store = _STORE.get()
        if store is None or self._factors is not None:
            out: ScenarioSet = self.cached(key, build)
            return out

        def load_or_build() -> ScenarioSet:
            if self._history_digest is None:
                self._history_digest = history_digest(self.history)
            skey = hashlib.sha256(repr((type(self).__name__, self.params_hash,
                                        self._history_digest, key)).encode()).hexdigest()
            hit = store.load(skey)
            if hit is not None:
                return hit
            built = build()
            store.save(skey, built)
            return built

        found: ScenarioSet = self.cached(key, load_or_build)
        return found

    # -- scenarios -----------------------------------------------------------------------------
    @abstractmethod
    def scenario_set(self, underlyings: tuple[str, ...], asof: np.datetime64) -> ScenarioSet:
        """One-day joint scenarios of ``underlyings`` as of ``asof`` (cached by callers)."""

    def core_set(self, underlyings: tuple[str, ...], asof: np.datetime64) -> ScenarioSet:
        """The cached scenario set for a book's underlyings."""
        if not underlyings:
            return ScenarioSet((), (), np.zeros((0, 0)), np.zeros((0, 0)))
        key = ("core", str(asof), tuple(sorted(underlyings)), self.scenario_seed(0))
        full: ScenarioSet = self.cached(key, lambda: self.scenario_set(
            tuple(sorted(underlyings)), asof))
        return self._live_core(full, asof) if self._factors is not None else full

    @property
    def time_decay(self) -> bool:
        """Options are revalued ``mpor_days`` later (``[risk] time_decay``, default true)."""
        return bool(self.risk_params.get("time_decay", True))

    def revalue(self, book: ResolvedBook, sset: ScenarioSet) -> FloatArray:
        """USD P&L (n_scenarios, n_positions) of the book under a set, over the MPOR.

        Full revaluation at the end of the MPOR: moved forwards and vols and, with
        ``time_decay``, options ``h`` days closer to expiry (:func:`revalue_aged`).
        """
        if len(sset) == 0 or len(book) == 0:
            return np.zeros((len(sset), len(book)))
        moves, vol_mult = book_moves(book, sset, self.mpor_days, self.iv_shocks)
        if not self.time_decay:
            return scenario_pnl_usd(book, moves, vol_mult, None)
        return revalue_aged(book, moves, vol_mult, self.mpor_days)


def aged_book(book: ResolvedBook, horizon_days: float) -> ResolvedBook:
    """The book ``horizon_days`` later: option times to expiry shortened (floored at 0)."""
    t = np.where(book.is_option, np.maximum(book.t_years - horizon_days / 365.0, 0.0),
                 book.t_years)
    return dataclasses.replace(book, t_years=np.asarray(t, dtype=np.float64))


def time_decay_usd(book: ResolvedBook, horizon_days: float) -> FloatArray:
    """USD value change of each position over ``horizon_days`` with forward and vol unchanged
    (theta over the MPOR, exact Black-76 revaluation), shape (n_positions,)."""
    out = np.zeros(len(book))
    opt = book.is_option
    if not opt.any():
        return out
    f = np.ascontiguousarray(book.forward[opt])
    k = np.ascontiguousarray(book.strike[opt])
    s = np.ascontiguousarray(book.vol[opt])
    c = np.ascontiguousarray(book.is_call[opt])
    t0 = np.ascontiguousarray(book.t_years[opt])
    t1 = np.maximum(t0 - horizon_days / 365.0, 0.0)
    d0 = np.exp(-book.rate[opt] * t0)
    d1 = np.exp(-book.rate[opt] * t1)
    v0, v1 = np.empty(f.shape[0]), np.empty(f.shape[0])
    kern = dispatch.price_kernel(f.shape[0])
    kern(f, k, t0, s, c, d0, v0)
    kern(f, k, t1, s, c, d1, v1)
    scale = np.where(book.is_inverse[opt], book.index[opt] / f, 1.0)
    out[opt] = (v1 - v0) * scale * book.quantity[opt]
    return out


def revalue_aged(book: ResolvedBook, moves: FloatArray, vol_mult: FloatArray,
                 horizon_days: float) -> FloatArray:
    """Scenario P&L at the end of the MPOR, time decay included, shape (n_scen, n_pos).

    ``V(F', vol', t - h) - V(F, vol, t)`` = the scenario P&L of the aged book plus the decay
    :func:`time_decay_usd` (the same for every scenario).
    """
    pnl = scenario_pnl_usd(aged_book(book, horizon_days), moves, vol_mult, None)
    return np.asarray(pnl + time_decay_usd(book, horizon_days)[None, :], dtype=np.float64)


@dataclass(frozen=True)
class CoreRisk:
    """Scenario risk of a book on one date.

    Attributes
    ----------
    sset : ScenarioSet
    pnl : ndarray, shape (n_scenarios, n_positions)
    groups : Mapping[str, TailRisk]
        ``portfolio`` (cross-underlying offsets) or one entry per underlying.
    portfolio : TailRisk
        Whole-book risk (reported even without offsets).
    requirement : float
        Sum of the groups' measures (scaled).
    contributions : ndarray, shape (n_positions,)
    """

    sset: ScenarioSet
    pnl: FloatArray
    groups: Mapping[str, TailRisk]
    portfolio: TailRisk
    requirement: float
    contributions: FloatArray


class ScenarioRiskMixin(HistoryModel):
    """Risk measure, offsets and result details shared by the scenario models."""

    @property
    def cross_offset(self) -> bool:
        return bool(self.risk_params.get("cross_underlying_offset", True))

    def measure_of(self, book: ResolvedBook, pnl: FloatArray) -> tuple[float, dict[str, float]]:
        """Requirement of a P&L matrix with the model's measure and offset rule."""
        if pnl.shape[0] == 0:
            return 0.0, {}
        if self.cross_offset:
            t = tail_risk(pnl, self.conf_var, self.conf_es, self.measure_name, self.scaling)
            return t.measure, {"portfolio": t.measure}
        out: dict[str, float] = {}
        for i, u in enumerate(book.underlyings):
            m = book.underlying_idx == i
            out[u] = tail_risk(pnl[:, m], self.conf_var, self.conf_es, self.measure_name,
                               self.scaling).measure
        return float(sum(out.values())), out

    @property
    def max_history_lag_days(self) -> int:
        """``[risk] max_history_lag_days``, else :data:`DEFAULT_MAX_HISTORY_LAG_DAYS`."""
        v = self.risk_params.get("max_history_lag_days")
        return DEFAULT_MAX_HISTORY_LAG_DAYS if v is None else int(v)

    def live_vol_replaces_history(self, underlying: str) -> bool:
        """Whether the bound live risk-factor state carries ``underlying``'s vols.

        Then the vol level of the scenarios is the live EWMA (seeded from the history's last
        forecast and updated by every sampled live index and ATM-IV move, see
        :meth:`live_scales`), not the history's recent vol, so a history that ends before the
        valuation day no longer freezes the margin's volatility: the lag limit does not apply
        to that underlying (the engine and the service what-ifs on the engines' state).
        """
        f = self._factors
        return f is not None and underlying in f.vols

    def history_lag_days(self, underlyings: tuple[str, ...], asof: np.datetime64) -> int:
        """Days between the as-of day and the last close of the stalest underlying.

        A lag above :attr:`max_history_lag_days` (``[risk] max_history_lag_days``, default
        :data:`DEFAULT_MAX_HISTORY_LAG_DAYS`) raises ``InputError`` on ``market.timestamp``:
        the history feed is stale and the margin would silently use old volatility. An
        underlying whose vols come from a bound live state is exempt
        (:meth:`live_vol_replaces_history`); its lag is still reported.
        """
        lag = 0
        limit = self.max_history_lag_days
        for u in underlyings:
            s = self.history.close_series(u).upto(asof)
            if len(s) == 0:
                raise InputError("market.timestamp", f"no {u} history on or before {asof}")
            lag_u = int((asof - s.dates[-1]).astype(int))
            lag = max(lag, lag_u)
            if lag_u > limit and not self.live_vol_replaces_history(u):
                raise InputError("market.timestamp",
                                 f"history is stale: the last {u} close ({s.dates[-1]}) is "
                                 f"{lag_u} days before the as-of day {asof} "
                                 f"(max_history_lag_days = {limit})")
        return lag

    def history_lag_warning(self, underlyings: tuple[str, ...], lag: int,
                            asof: np.datetime64) -> str | None:
        """The one-line warning of a lag above :data:`STALE_HISTORY_WARN_DAYS` (else None)."""
        if lag <= STALE_HISTORY_WARN_DAYS:
            return None
        live = bool(underlyings) and all(self.live_vol_replaces_history(u) for u in underlyings)
        rule = ("vols from the live risk-factor state" if live else
                f"refused above max_history_lag_days = {self.max_history_lag_days}")
        return (f"stale history: the last close is {lag} days before the as-of day {asof} "
                f"(warned above {STALE_HISTORY_WARN_DAYS} days; {rule})")

    def core_risk(self, book: ResolvedBook, asof: np.datetime64) -> CoreRisk:
        self.history_lag_days(book.underlyings, asof)
        sset = self.core_set(book.underlyings, asof)
        pnl = self.revalue(book, sset)
        cv, ce, ms, sc = self.conf_var, self.conf_es, self.measure_name, self.scaling
        port = tail_risk(pnl, cv, ce, ms, sc)
        contrib = np.zeros(len(book))
        groups: dict[str, TailRisk] = {}
        if self.cross_offset:
            groups["portfolio"] = port
            contrib = measure_contributions(pnl, port.losses, cv, ce, ms, sc)
        else:
            for i, u in enumerate(book.underlyings):
                m = book.underlying_idx == i
                t = tail_risk(pnl[:, m], cv, ce, ms, sc)
                groups[u] = t
                contrib[m] = measure_contributions(pnl[:, m], t.losses, cv, ce, ms, sc)
        req = float(sum(t.measure for t in groups.values()))
        return CoreRisk(sset, pnl, groups, port, req, contrib)

    def risk_matrix(self, book: ResolvedBook, core: CoreRisk, n_rows: int = 10
                    ) -> dict[str, Any]:
        """The ``n_rows`` worst scenarios: factor moves (%) and P&L per underlying (USD)."""
        s = core.sset
        order = np.argsort(-core.portfolio.losses, kind="stable")[:n_rows]
        cols = ([f"{u} return %" for u in s.underlyings]
                + [f"{u} ATM-IV chg %" for u in s.underlyings]
                + [f"P&L {u}" for u in book.underlyings] + ["P&L total"])
        from marginproof.scenarios.sets import horizon_factor

        f = horizon_factor(self.mpor_days, s.horizon_applied)
        rows = []
        for j in order:
            r = list(100.0 * np.expm1(f * s.log_returns[j]))
            v = list(100.0 * np.expm1(f * s.iv_log_changes[j]))
            pu = [float(core.pnl[j, book.underlying_idx == i].sum())
                  for i in range(len(book.underlyings))]
            rows.append([float(x) for x in (*r, *v, *pu, float(core.pnl[j].sum()))])
        return {"title": f"{len(order)} worst scenarios over {self.mpor_days:g} day(s)",
                "row_label": "scenario", "rows": [s.labels[j] for j in order],
                "columns": cols, "values": rows}
