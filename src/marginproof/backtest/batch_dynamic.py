"""Batch twin of the history-driven models (``fhs``, ``mc``, ``dynamic``) for many books a day.

Why: ``model.margin(portfolio, market)`` costs milliseconds per book (several small scenario
revaluations, greeks and result assembly); a daily walk-forward of 1,000 books over 3,000 days
would take hours. Scenario P&L is linear in position quantities, so per date and per set of
underlyings this provider revalues every *distinct instrument* once per scenario set with the
model's own :meth:`revalue` (unit quantity), multiplies by the sparse (books x instruments)
quantity matrix, and applies the model's measures and add-ons column by column with the same
pure functions (:mod:`marginproof.risk.measures`, :mod:`marginproof.addons`) and the same order of
operations as :meth:`DynamicModel.margin <marginproof.models.dynamic.DynamicModel.margin>`.
``tests/unit/backtest/test_batch_dynamic.py`` asserts equality with ``model.margin`` book by
book, so any change of the model's composition shows up as a failing test, not as a silently
different backtest.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix

from marginproof.addons.concentration import concentration_addon, size_ratio
from marginproof.addons.funding import funding_addon
from marginproof.addons.liquidity import sqrt_impact_cost
from marginproof.backtest.market import MarketPath
from marginproof.backtest.portfolios import DayBooks
from marginproof.backtest.providers import DayMargins
from marginproof.errors import InputError
from marginproof.instruments.portfolio import Portfolio, Position
from marginproof.instruments.resolved import ResolvedBook, resolve
from marginproof.models.result import position_greeks_usd
from marginproof.risk.history import asof_date
from marginproof.risk.measures import expected_shortfall

FloatArray = NDArray[np.float64]


def _measure(pnl: FloatArray, conf_var: float, conf_es: float, measure: str, scaling: float
             ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Columnwise ``tail_risk``: (measure, var, es), each shape (n_cols,)."""
    n_cols = pnl.shape[1]
    if pnl.shape[0] == 0:
        z = np.zeros(n_cols)
        return z, z, z
    losses = -pnl
    v = np.asarray(np.quantile(losses, conf_var, axis=0), dtype=np.float64)
    e = np.asarray(expected_shortfall(losses, conf_es), dtype=np.float64).reshape(n_cols)
    base = e if measure == "es" else v
    return np.maximum(0.0, scaling * base), v, e


class HistoryBatchProvider:
    """Batch margins of a ``fhs``/``mc``/``dynamic`` model (see module docstring)."""

    def __init__(self, model: Any, name: str | None = None) -> None:
        from marginproof.models._history import ScenarioRiskMixin

        if not isinstance(model, ScenarioRiskMixin):
            raise InputError("model", "the batch provider needs a history-driven scenario model")
        self.model: Any = model  # DynamicModel or a core (fhs/mc) model
        self.is_dynamic = hasattr(model, "core_model")
        self.core: Any = getattr(model, "core_model", model)
        self._name = name or model.name
        self.skipped = 0

    @property
    def name(self) -> str:
        return self._name

    def _union(self, books: DayBooks, legs: NDArray[np.int64], history: MarketPath
               ) -> tuple[ResolvedBook, NDArray[np.int64], Any]:
        """Distinct instruments of ``legs`` (quantity 1), resolved, and each leg's index."""
        opt = books.is_option[legs]
        keys = np.column_stack([
            books.und_col[legs].astype(np.float64), opt.astype(np.float64),
            np.where(opt, books.expiry[legs].astype(np.int64), 0).astype(np.float64),
            np.where(opt, books.strike[legs], 0.0), books.is_call[legs].astype(np.float64)])
        _, first_pos, inst = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        firsts = legs[first_pos]
        union = Portfolio(tuple(Position(books.instrument(int(j)), 1.0) for j in firsts))
        unds = sorted({books.underlyings[int(c)] for c in books.und_col[legs]})
        vols = [(union.positions[m].instrument.name, books.underlyings[int(books.und_col[j])])
                for m, j in enumerate(firsts) if books.is_option[j]]
        snap = history.snapshot(len(history) - 1, vols, unds)
        return resolve(union, snap), np.asarray(inst, np.int64).reshape(-1), snap

    def day_margins(self, history: MarketPath, books: DayBooks) -> DayMargins:
        n = books.n_portfolios
        out = np.full(n, np.nan)
        var_o, es_o = np.full(n, np.nan), np.full(n, np.nan)
        groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for k in (int(x) for x in np.flatnonzero(books.active)):
            legs = books.portfolio_idx == k
            key = tuple(sorted({books.underlyings[int(c)] for c in books.und_col[legs]}))
            groups[key].append(int(k))
        scen_cols: dict[int, FloatArray] = {}
        for unds, ks in groups.items():
            kk = np.array(ks, np.int64)
            in_group = np.isin(books.portfolio_idx, kk)
            legs = np.flatnonzero(in_group)
            rb, inst, snap = self._union(books, legs, history)
            col = np.searchsorted(kk, books.portfolio_idx[legs])
            Q = csr_matrix((books.coins[legs], (col, inst)), shape=(len(kk), len(rb)))
            try:
                im, v, e, core_losses = self._group(rb, Q, snap, unds)
            except InputError:
                # e.g. too little history for a young coin: the books are not evaluated that
                # day (NaN, excluded from the statistics), never margined at a guess
                self.skipped += len(ks)
                continue
            out[kk], var_o[kk], es_o[kk] = im, v, e
            for j, kb in enumerate(ks):
                scen_cols[kb] = core_losses[:, j]
        scen = None
        if scen_cols:
            m = max(x.shape[0] for x in scen_cols.values())
            scen = np.full((m, n), np.nan)
            for k, x in scen_cols.items():
                scen[: x.shape[0], k] = x
        mm = float(self.model.params["maintenance"]["mm_fraction"]) * out
        return DayMargins(out, var_o, es_o, scen, mm)

    def _pnl(self, rb: ResolvedBook, Q: csr_matrix, sset: Any) -> FloatArray:
        unit = self.core.revalue(rb, sset)  # (n_scen, n_inst), unit quantities
        return np.asarray((Q @ unit.T).T, dtype=np.float64)  # (n_scen, n_books)

    def _measure_of(self, rb: ResolvedBook, Q: csr_matrix, unit: FloatArray
                    ) -> tuple[FloatArray, dict[str, FloatArray]]:
        """``measure_of`` for every book: cross offset or the sum over underlyings."""
        c = self.core
        args = (c.conf_var, c.conf_es, c.measure_name, c.scaling)
        if c.cross_offset:
            P = np.asarray((Q @ unit.T).T, dtype=np.float64)
            return _measure(P, *args)[0], {}
        total = np.zeros(Q.shape[0])
        per: dict[str, FloatArray] = {}
        for i, u in enumerate(rb.underlyings):
            m = rb.underlying_idx == i
            P = np.asarray((Q[:, m] @ unit[:, m].T).T, dtype=np.float64)
            per[u] = _measure(P, *args)[0]
            total += per[u]
        return total, per

    def _group(self, rb: ResolvedBook, Q: csr_matrix, snap: Any, unds: tuple[str, ...]
               ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        mdl, c = self.model, self.core
        asof = asof_date(snap.timestamp)
        core_set = c.core_set(rb.underlyings, asof)
        u_core = c.revalue(rb, core_set)
        m_core, _ = self._measure_of(rb, Q, u_core)
        P_core = np.asarray((Q @ u_core.T).T, dtype=np.float64)
        _, p_var, p_es = _measure(P_core, c.conf_var, c.conf_es, c.measure_name, c.scaling)
        if not self.is_dynamic:
            return m_core, p_var, p_es, -P_core
        apc = mdl.apc
        a = m_core.copy()
        w = float(apc.get("stressed_weight", 0.25))
        if w > 0.0:
            sset = mdl.stressed_period_set(unds, asof)
            m_stress, _ = self._measure_of(rb, Q, c.revalue(rb, sset))
            a = (1.0 - w) * m_core + w * m_stress
        if bool(apc.get("floor_10y", True)):
            fset = mdl.floor_set(core_set, asof)
            m_floor, _ = self._measure_of(rb, Q, c.revalue(rb, fset))
            a = np.maximum(a, m_floor)
        a = a * (1.0 + float(apc.get("static_buffer", 0.0)))
        hist, hyp = mdl.stress_sets(unds, asof)
        s_loss = np.zeros(Q.shape[0])
        for st in (hist, hyp):
            if len(st):
                s_loss = np.maximum(s_loss, np.max(-self._pnl(rb, Q, st), axis=0))
        f = float(mdl.stress.get("floor_fraction", 0.0))
        cc = np.maximum(a, f * s_loss)
        add = self._addons(rb, Q, snap, asof, core_set, u_core)
        return cc + add, p_var, p_es, -P_core

    def _addons(self, rb: ResolvedBook, Q: csr_matrix, snap: Any, asof: np.datetime64,
                sset: Any, u_core: FloatArray) -> FloatArray:
        mdl = self.model
        h = mdl.mpor_days
        g = position_greeks_usd(rb)  # (7, n_inst) per unit
        liq, con, fun = (mdl.addons.get(x, {}) for x in ("liquidity", "concentration",
                                                          "funding"))
        sigma_next = sset.info.get("sigma_next", {})
        n_b = Q.shape[0]
        total = np.zeros(n_b)
        for i, u in enumerate(rb.underlyings):
            m = rb.underlying_idx == i
            Qu = Q[:, m]
            q = np.asarray(Qu @ g[0, m], dtype=np.float64)
            vega = np.asarray(Qu @ g[3, m], dtype=np.float64)
            price = snap.index(u)
            sd = float(sigma_next.get(u, 0.0))
            adv = mdl.adv(u, asof)
            if liq.get("enabled", True):
                spreads = liq.get("spread_rel", {})
                s = float(spreads.get(u, spreads.get("default", 0.0)))
                cost_d = np.asarray(sqrt_impact_cost(q, price, s, sd, adv,
                                                     float(liq.get("y", 1.0)), h))
                total += cost_d + np.abs(vega) * float(liq.get("option_half_spread_vol_points",
                                                               0.0))
            if con.get("enabled", True):
                ratio = np.asarray(size_ratio(q, adv, h), dtype=np.float64)
                P = np.asarray((Qu @ u_core[:, m].T).T, dtype=np.float64)
                c = self.core
                base = _measure(P, c.conf_var, c.conf_es, c.measure_name, c.scaling)[0]
                total += np.asarray(concentration_addon(base, ratio,
                                                        float(con.get("threshold", 0.01)),
                                                        float(con.get("slope", 1.0))))
        if fun.get("enabled", True):
            perps = np.flatnonzero(rb.kind == 2)
            Qc = Q.tocsc()
            for j in perps:
                u = rb.underlyings[rb.underlying_idx[j]]
                st = mdl.funding_stats_for(u, asof)
                col = Qc[:, j]
                cur = snap.funding_rates.get(rb.names[j])
                for r, qty in zip(col.indices, col.data, strict=True):
                    total[r] += funding_addon(float(g[1, j] * qty), st, h, cur)[1]
        return total
