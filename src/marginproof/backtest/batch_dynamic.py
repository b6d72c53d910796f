"""Batch twin of the history-driven models (``fhs``, ``mc``, ``dynamic``) for many books a day.

Why: ``model.margin(portfolio, market)`` costs milliseconds per book (several small scenario
revaluations, greeks and result assembly); a daily walk-forward of 1,000 books over 3,000 days
would take hours. Scenario P&L is linear in position quantities, so per date this provider

1. resolves every *distinct instrument* of the day's books once, from the leg arrays (no
   per-book portfolio objects; :func:`day_instruments`);
2. revalues the instruments of each underlying once per scenario set with the model's own
   :meth:`revalue` (unit quantity). Books on different sets of underlyings use different joint
   scenario sets, but an underlying's column is often the same in several of them (same dates,
   same per-underlying filtering): its unit P&L is cached by the column's content, so it is
   computed once however many groups share it;
3. multiplies by the sparse (books x instruments) quantity matrix per underlying and applies
   the model's measures (:func:`~marginproof.models._history.var_es_columns`, one selection per
   column), APC steps, stress floor and add-ons with the same named functions and the same
   order of operations as :meth:`DynamicModel.margin
   <marginproof.models.dynamic.DynamicModel.margin>` (:func:`apc_requirement`,
   :func:`stress_floor_requirement`, :func:`binding_component`, the add-on functions).

``tests/unit/backtest/test_batch_dynamic.py`` asserts equality with ``model.margin`` book by
book (margin, VaR, ES and every component), so any change of the model's composition shows up
as a failing test, not as a silently different backtest.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix

from marginproof.addons.concentration import concentration_addon, size_ratio
from marginproof.addons.funding import funding_addon_stressed
from marginproof.addons.liquidity import sqrt_impact_cost
from marginproof.backtest.market import MarketPath
from marginproof.backtest.portfolios import DayBooks, b76_price_delta
from marginproof.backtest.providers import DayMargins
from marginproof.errors import InputError
from marginproof.instruments.resolved import ResolvedBook
from marginproof.models._history import var_es_columns
from marginproof.models.dynamic import (
    BINDING_TERMS,
    apc_requirement,
    binding_component,
    stress_floor_requirement,
)
from marginproof.models.result import position_greeks_usd
from marginproof.risk.history import asof_date
from marginproof.scenarios.sets import ScenarioSet

FloatArray = NDArray[np.float64]
COMPONENTS = ("core", "apc_adjustment", "stress_floor", "liquidity", "concentration", "funding")
LEVELS = ("stressed", "floor_10y", "stress_loss", "var_es_level")


def _measure(pnl: FloatArray, conf_var: float, conf_es: float, measure: str, scaling: float
             ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Columnwise ``tail_risk``: (measure, var, es), each shape (n_cols,)."""
    n_cols = pnl.shape[1]
    if pnl.shape[0] == 0:
        z = np.zeros(n_cols)
        return z, z, z
    v, e = var_es_columns(-pnl, conf_var, conf_es)
    base = e if measure == "es" else v
    return np.maximum(0.0, scaling * base), v, e


def day_instruments(books: DayBooks, legs: NDArray[np.int64], history: MarketPath
                    ) -> tuple[ResolvedBook, NDArray[np.int64]]:
    """The distinct instruments of ``legs`` resolved at the close of the history's last row.

    Quantity 1 each (a coin, or 1 USD of face for inverse delta-one contracts); index, forward
    and perp marks equal the close (rate 0, no basis), option vols from
    :meth:`MarketPath.option_vols` (smile-aware) -- what ``resolve`` gives on the snapshot
    :meth:`DayBooks.snapshot` builds, without per-book portfolio objects.

    Returns
    -------
    book : ResolvedBook
        One entry per distinct instrument.
    inst : ndarray of int, shape (len(legs),)
        Index of each leg's instrument in ``book``.
    """
    i = len(history) - 1
    opt = books.is_option[legs]
    dated = opt | books.is_future[legs]
    kind = np.where(opt, 3, np.where(books.is_future[legs], 1, np.where(
        books.is_spot[legs], 0, 2))).astype(np.int8)
    keys = np.column_stack([
        books.und_col[legs].astype(np.float64), kind.astype(np.float64),
        np.where(dated, books.expiry[legs].astype(np.int64), 0).astype(np.float64),
        np.where(opt, books.strike[legs], 0.0), (books.is_call[legs] & opt).astype(np.float64),
        books.is_inverse[legs].astype(np.float64)])
    _, first_pos, inst = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    f = legs[first_pos]
    kind = kind[first_pos]
    n = f.shape[0]
    col = books.und_col[f]
    present = sorted({int(c) for c in col}, key=lambda c: history.underlyings[c])
    und_names = tuple(history.underlyings[c] for c in present)
    uidx = np.searchsorted(np.array(present), col) if present else np.zeros(0, np.int64)
    s = history.closes[i, col]
    if not np.all(np.isfinite(s) & (s > 0.0)):
        raise InputError("index_prices", f"no close for the book's underlyings at "
                         f"{history.times[i]}")
    now_dt = history.known_at(i)
    now = np.datetime64(now_dt.replace(tzinfo=None), "s")
    is_opt = kind == 3
    fdated = is_opt | (kind == 1)
    t = np.zeros(n)
    t[fdated] = (books.expiry[f][fdated] - now).astype(np.float64) / (365.0 * 86400.0)
    if np.any(t[fdated] <= 0.0):
        raise InputError("positions", f"an instrument expired before {now_dt.isoformat()}")
    vol = np.full(n, np.nan)
    mark = s.copy()
    strike = np.where(is_opt, books.strike[f], np.nan)
    call = books.is_call[f] & is_opt
    if is_opt.any():
        o = np.flatnonzero(is_opt)
        vol[o] = history.option_vols(i, col[o], strike[o], books.expiry[f][o])
        if not np.all(np.isfinite(vol[o]) & (vol[o] > 0.0)):
            raise InputError("implied_vols", f"missing implied vol at {history.times[i]}")
        mark[o] = b76_price_delta(s[o], strike[o], t[o], vol[o], call[o])[0]
    exp_int = books.expiry[f].astype(np.int64)
    expiries = tuple(datetime.fromtimestamp(int(e), UTC) if d else None
                     for e, d in zip(exp_int, fdated, strict=True))
    rb = ResolvedBook(
        names=tuple(books.name(int(j)) for j in f), underlyings=und_names,
        underlying_idx=np.asarray(uidx, np.int64), kind=kind,
        is_inverse=books.is_inverse[f].copy(), is_call=call, strike=strike, t_years=t,
        expiries=expiries, forward=s.copy(), index=s.copy(), vol=vol, rate=np.zeros(n),
        quantity=np.ones(n), mark_usd=mark, timestamp=now_dt)
    return rb, np.asarray(inst, np.int64).reshape(-1)


def subset(rb: ResolvedBook, idx: NDArray[np.int64]) -> ResolvedBook:
    """Entries ``idx`` of a resolved book (underlyings restricted to those present)."""
    present = sorted({int(x) for x in rb.underlying_idx[idx]})
    remap = {old: new for new, old in enumerate(present)}
    return ResolvedBook(
        names=tuple(rb.names[int(j)] for j in idx),
        underlyings=tuple(rb.underlyings[j] for j in present),
        underlying_idx=np.array([remap[int(x)] for x in rb.underlying_idx[idx]], np.int64),
        kind=rb.kind[idx], is_inverse=rb.is_inverse[idx], is_call=rb.is_call[idx],
        strike=rb.strike[idx], t_years=rb.t_years[idx],
        expiries=tuple(rb.expiries[int(j)] for j in idx), forward=rb.forward[idx],
        index=rb.index[idx], vol=rb.vol[idx], rate=rb.rate[idx], quantity=rb.quantity[idx],
        mark_usd=rb.mark_usd[idx], timestamp=rb.timestamp)


class _Day:
    """Per-day state: instruments, greeks and the unit P&L cache (see module docstring)."""

    def __init__(self, provider: HistoryBatchProvider, rb: ResolvedBook) -> None:
        self.p = provider
        self.rb = rb
        self.by_und = {u: np.flatnonzero(rb.underlying_idx == j)
                       for j, u in enumerate(rb.underlyings)}
        self.sub = {u: subset(rb, ix) for u, ix in self.by_und.items()}
        self.greeks = position_greeks_usd(rb)  # (7, n_inst) per unit
        self.cache: dict[tuple[Any, ...], FloatArray] = {}

    def unit(self, sset: ScenarioSet, u: str) -> FloatArray:
        """Unit P&L (n_scenarios, n_instruments of ``u``) under the ``u`` column of ``sset``."""
        c = sset.column(u)
        r = np.ascontiguousarray(sset.log_returns[:, c])
        v = np.ascontiguousarray(sset.iv_log_changes[:, c])
        key = (u, sset.horizon_applied, r.shape[0],
               hashlib.blake2b(r.tobytes() + v.tobytes(), digest_size=16).digest())
        out = self.cache.get(key)
        if out is None:
            one = ScenarioSet((u,), sset.labels, r[:, None], v[:, None], sset.horizon_applied)
            out = self.p.core.revalue(self.sub[u], one)
            self.cache[key] = out
        return out


class HistoryBatchProvider:
    """Batch margins of a ``fhs``/``mc``/``dynamic`` model (see module docstring)."""

    def __init__(self, model: Any, name: str | None = None, levels: bool = False) -> None:
        """``levels=True`` computes the stressed-period and 10-year-floor measures even where
        the model's parameters switch them off (for :mod:`marginproof.calibration`)."""
        from marginproof.models._history import ScenarioRiskMixin

        if not isinstance(model, ScenarioRiskMixin):
            raise InputError("model", "the batch provider needs a history-driven scenario model")
        self.model: Any = model  # DynamicModel or a core (fhs/mc) model
        self.is_dynamic = hasattr(model, "core_model")
        self.core: Any = getattr(model, "core_model", model)
        self._name = name or model.name
        self.levels = bool(levels)
        self.skipped = 0

    @property
    def name(self) -> str:
        return self._name

    def day_margins(self, history: MarketPath, books: DayBooks) -> DayMargins:
        n = books.n_portfolios
        out = np.full(n, np.nan)
        var_o, es_o = np.full(n, np.nan), np.full(n, np.nan)
        comps = {c: np.full(n, np.nan) for c in COMPONENTS} if self.is_dynamic else None
        binding = np.full(n, -1, np.int8) if self.is_dynamic else None
        levels = {c: np.full(n, np.nan) for c in LEVELS} if self.is_dynamic else None
        act = np.flatnonzero(books.active)
        if act.size == 0:
            return DayMargins(out, var_o, es_o, None, out.copy(), comps, binding,
                              BINDING_TERMS if self.is_dynamic else (), levels)
        legs = np.flatnonzero(books.active[books.portfolio_idx])
        rb, inst = day_instruments(books, legs, history)
        day = _Day(self, rb)
        units = books.units[legs]
        pidx = books.portfolio_idx[legs]
        leg_und = books.und_col[legs]
        # books grouped by their set of underlyings
        und_sets: dict[int, set[str]] = defaultdict(set)
        for k, c in zip(pidx, leg_und, strict=True):
            und_sets[int(k)].add(history.underlyings[int(c)])
        groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for k in (int(x) for x in act):
            groups[tuple(sorted(und_sets[k]))].append(k)
        scen_cols: dict[int, FloatArray] = {}
        asof = asof_date(rb.timestamp)
        for unds, ks in groups.items():
            kk = np.array(ks, np.int64)
            sel = np.isin(pidx, kk)
            rows = np.searchsorted(kk, pidx[sel])
            Q: dict[str, csr_matrix] = {}
            for u in unds:
                ix = day.by_und[u]
                local = np.searchsorted(ix, inst[sel])
                on_u = (local < ix.shape[0]) & (ix[np.minimum(local, ix.shape[0] - 1)]
                                                == inst[sel])
                Q[u] = csr_matrix((units[sel][on_u], (rows[on_u], local[on_u])),
                                  shape=(len(kk), ix.shape[0]))
            try:
                res = self._group(day, Q, unds, asof)
            except InputError:
                # e.g. too little history for a young coin: the books are not evaluated that
                # day (NaN, excluded from the statistics), never margined at a guess
                self.skipped += len(ks)
                continue
            out[kk], var_o[kk], es_o[kk] = res["im"], res["var"], res["es"]
            if comps is not None and binding is not None:
                for c in COMPONENTS:
                    comps[c][kk] = res[c]
                binding[kk] = res["binding"]
            if levels is not None:
                for c in LEVELS:
                    levels[c][kk] = res[f"lvl_{c}"]
            for j, kb in enumerate(ks):
                scen_cols[kb] = res["losses"][:, j]
        scen = None
        if scen_cols:
            m = max(x.shape[0] for x in scen_cols.values())
            scen = np.full((m, n), np.nan)
            for k, x in scen_cols.items():
                scen[: x.shape[0], k] = x
        mm = float(self.model.params["maintenance"]["mm_fraction"]) * out
        return DayMargins(out, var_o, es_o, scen, mm, comps, binding,
                          BINDING_TERMS if self.is_dynamic else (), levels)

    # -- per group ------------------------------------------------------------------------------
    def _pnl(self, day: _Day, Q: dict[str, csr_matrix], sset: ScenarioSet
             ) -> tuple[FloatArray, dict[str, FloatArray]]:
        """Book P&L (n_scen, n_books) under ``sset`` and its part per underlying."""
        n_b = next(iter(Q.values())).shape[0]
        total = np.zeros((len(sset), n_b))
        per: dict[str, FloatArray] = {}
        for u, q in Q.items():
            p = np.asarray((q @ day.unit(sset, u).T).T, dtype=np.float64)
            per[u] = p
            total += p
        return total, per

    def _measure_of(self, total: FloatArray, per: dict[str, FloatArray]) -> FloatArray:
        """``measure_of`` for every book: cross offset or the sum over underlyings."""
        c = self.core
        args = (c.conf_var, c.conf_es, c.measure_name, c.scaling)
        if c.cross_offset:
            return _measure(total, *args)[0]
        out = np.zeros(total.shape[1])
        for p in per.values():
            out += _measure(p, *args)[0]
        return out

    def _group(self, day: _Day, Q: dict[str, csr_matrix], unds: tuple[str, ...],
               asof: np.datetime64) -> dict[str, Any]:
        mdl, c = self.model, self.core
        c.history_lag_days(unds, asof)
        core_set = c.core_set(unds, asof)
        P_core, per_core = self._pnl(day, Q, core_set)
        m_core = self._measure_of(P_core, per_core)
        _, p_var, p_es = _measure(P_core, c.conf_var, c.conf_es, c.measure_name, c.scaling)
        res: dict[str, Any] = {"var": p_var, "es": p_es, "losses": -P_core, "im": m_core}
        if not self.is_dynamic:
            return res
        apc = mdl.apc
        w = float(apc.get("stressed_weight", 0.25))
        lvl_stress = lvl_floor = None
        if w > 0.0 or self.levels:
            sset = mdl.stressed_period_set(unds, asof)
            if len(sset):  # no stressed period ended yet: no blend (DynamicModel.margin)
                lvl_stress = self._measure_of(*self._pnl(day, Q, sset))
        if bool(apc.get("floor_10y", True)) or self.levels:
            lvl_floor = self._measure_of(*self._pnl(day, Q, mdl.floor_set(core_set, asof)))
        m_stress = lvl_stress if w > 0.0 else None
        m_floor = lvl_floor if bool(apc.get("floor_10y", True)) else None
        a = apc_requirement(m_core, m_stress, m_floor, w, float(apc.get("static_buffer", 0.0)))
        hist, hyp = mdl.stress_sets(unds, asof)
        s_loss = np.zeros(P_core.shape[1])
        for st in (hist, hyp):
            if len(st):
                s_loss = np.maximum(s_loss, np.max(-self._pnl(day, Q, st)[0], axis=0))
        f = float(mdl.stress.get("floor_fraction", 0.0))
        cc = stress_floor_requirement(a, s_loss, f)
        add = self._addons(day, Q, asof, core_set, per_core, m_core)
        res.update(im=cc + add["liquidity"] + add["concentration"] + add["funding"],
                   core=m_core, apc_adjustment=a - m_core, stress_floor=cc - a, **add,
                   binding=binding_component(m_core, m_stress, m_floor, s_loss, w, f))
        nan = np.full(P_core.shape[1], np.nan)
        res["lvl_stressed"] = nan if lvl_stress is None else lvl_stress
        res["lvl_floor_10y"] = nan if lvl_floor is None else lvl_floor
        res["lvl_stress_loss"] = s_loss
        res["lvl_var_es_level"] = var_es_columns(-P_core, c.conf_es, c.conf_es)[0]
        return res

    def _addons(self, day: _Day, Q: dict[str, csr_matrix], asof: np.datetime64,
                sset: ScenarioSet, per_core: dict[str, FloatArray], m_core: FloatArray
                ) -> dict[str, FloatArray]:
        mdl, c = self.model, self.core
        h = mdl.mpor_days
        g = day.greeks
        liq, con, fun = (mdl.addons.get(x, {}) for x in ("liquidity", "concentration",
                                                          "funding"))
        sigma_next = sset.info.get("sigma_next", {})
        n_b = next(iter(Q.values())).shape[0]
        out = {"liquidity": np.zeros(n_b), "concentration": np.zeros(n_b),
               "funding": np.zeros(n_b)}
        rb = day.rb
        for u, Qu in Q.items():
            ix = day.by_und[u]
            q = np.asarray(Qu @ g[0, ix], dtype=np.float64)
            price = float(rb.index[ix[0]])
            adv = mdl.adv(u, asof)
            if liq.get("enabled", True):
                vega = np.asarray(Qu @ g[3, ix], dtype=np.float64)
                spreads = liq.get("spread_rel", {})
                s = float(spreads.get(u, spreads.get("default", 0.0)))
                sd = float(sigma_next.get(u, 0.0))
                cost_d = np.asarray(sqrt_impact_cost(q, price, s, sd, adv,
                                                     float(liq.get("y", 1.0)), h))
                out["liquidity"] += cost_d + np.abs(vega) * float(
                    liq.get("option_half_spread_vol_points", 0.0))
            if con.get("enabled", True):
                ratio = np.asarray(size_ratio(q, adv, h), dtype=np.float64)
                thr = float(con.get("threshold", 0.01))
                if np.any(ratio > thr):
                    if len(Q) == 1 and c.cross_offset:
                        base = m_core  # the whole book is on this underlying
                    else:
                        base = _measure(per_core[u], c.conf_var, c.conf_es, c.measure_name,
                                        c.scaling)[0]
                    out["concentration"] += np.asarray(concentration_addon(
                        base, ratio, thr, float(con.get("slope", 1.0))))
            if fun.get("enabled", True):
                perps = ix[rb.kind[ix] == 2]
                if perps.size:
                    st = mdl.funding_stats_for(u, asof)
                    local = np.searchsorted(ix, perps)
                    notional = Qu[:, local].multiply(g[1, perps][None, :]).tocsr()
                    cost = notional.copy()
                    cost.data = funding_addon_stressed(notional.data, st, h, None)
                    out["funding"] += np.asarray(cost.sum(axis=1)).reshape(-1)
        return out
