"""Live adapter of the scenario models ``fhs``, ``mc`` and ``dynamic``.

Per *combo* (the sorted underlyings an account holds: the batch models build a book's scenario
sets for exactly its underlyings, so ``{BTC}`` and ``{BTC, ETH}`` may use different dates) the
adapter asks the bound model for its scenario sets as of the valuation day ``T``:

* ``fhs``/``mc``: the core set (FHS filtered by the live EWMA vol; Monte Carlo drawn at the
  last draw entry and rescaled by the live vol);
* ``dynamic`` adds the stressed-period set (APC weight), the 10-year floor set (the core set
  rescaled to the 10-year vol) and the historical and hypothetical stress sets.

Each underlying's instruments are revalued once per set *content* (unit P&L columns, cached by
the column's fingerprint, the underlying's market version and the valuation time: a price tick
revalues only its underlying's instruments; a recalibration only the sets whose content
changed). An account's loss vector over the concatenated sets is one sparse product and every
segment's VaR/ES/worst loss comes from one compiled pass
(:func:`marginproof.scenarios.live_kernels.segment_tail`). Then the model's composition, in
arrays over accounts: measure (ES or VaR, scaled, per underlying without cross-underlying
offsets), APC (stressed weight, 10-year floor, static buffer), stress floor, and the
liquidity, concentration and funding add-ons from per-instrument unit greeks. The result equals
``model.margin(portfolio, snapshot)`` of the bound model (tested to 1e-9 relative).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from marginproof.addons.concentration import concentration_addon, size_ratio
from marginproof.addons.funding import INTERVALS_PER_DAY
from marginproof.addons.liquidity import sqrt_impact_cost
from marginproof.engine.adapters.base import Figures, FloatArray, IntArray, LiveAdapter, LiveContext
from marginproof.errors import MarginproofError
from marginproof.models._history import ScenarioRiskMixin
from marginproof.risk.history import asof_date
from marginproof.scenarios.live_kernels import SegmentSpec, segment_tail
from marginproof.scenarios.sets import ScenarioSet


@dataclass
class _Combo:
    """Scenario sets of one combo and the fingerprints of each underlying's columns."""

    underlyings: tuple[str, ...]
    names: tuple[str, ...]  # segment names
    sets: tuple[ScenarioSet, ...]
    fingerprints: dict[str, tuple[str, ...]]  # underlying -> one per segment
    spec: SegmentSpec
    sigma_next: dict[str, float]
    error: str = ""


def _fingerprint(sset: ScenarioSet, und: str, mpor: float, iv: bool) -> str:
    j = sset.column(und)
    h = hashlib.sha1(f"{sset.horizon_applied}:{mpor!r}:{iv}:{len(sset)}".encode())
    h.update(np.ascontiguousarray(sset.log_returns[:, j]).tobytes())
    h.update(np.ascontiguousarray(sset.iv_log_changes[:, j]).tobytes())
    return h.hexdigest()


class ScenarioAdapter(LiveAdapter):
    """Scenario-set models, live (see module docstring)."""

    kind = "scenario"

    def __init__(self, model: ScenarioRiskMixin) -> None:
        super().__init__(model)
        self._combos: dict[tuple[Any, ...], _Combo] = {}
        self._cols: dict[tuple[str, str], tuple[tuple[int, int], int, FloatArray]] = {}
        self._csr: dict[int, tuple[int, IntArray, IntArray, IntArray, FloatArray]] = {}
        self._ent: dict[tuple[str, ...], tuple[tuple[Any, ...], IntArray,
                                               tuple[IntArray, IntArray, FloatArray,
                                                     IntArray]]] = {}
        self._labels: dict[str, tuple[str, ...]] = {}
        self._funding: dict[tuple[str, str], Any] = {}
        self._configure(model)

    def _configure(self, model: Any) -> None:
        self.m: Any = model
        self.core: ScenarioRiskMixin = getattr(model, "core_model", model)
        self.dynamic = model.name == "dynamic"
        p = model.params
        self.mm_fraction = float(p["maintenance"]["mm_fraction"])
        self.cross = bool(self.core.cross_offset)
        self.conf_var, self.conf_es = self.core.conf_var, self.core.conf_es
        self.measure = self.core.measure_name
        self.scaling = self.core.scaling
        self.mpor = self.core.mpor_days
        self.iv_shocks = self.core.iv_shocks
        if self.dynamic:
            apc, stress, add = model.apc, model.stress, model.addons
            self.w = float(apc.get("stressed_weight", 0.25))
            self.floor = bool(apc.get("floor_10y", True))
            self.buffer = float(apc.get("static_buffer", 0.0))
            self.floor_fraction = float(stress.get("floor_fraction", 0.0))
            self.liq = add.get("liquidity", {})
            self.con = add.get("concentration", {})
            self.fun = add.get("funding", {})

    def rebind(self, model: Any) -> None:
        if model.params_hash != self.m.params_hash:
            self._cols.clear()
            self._combos.clear()
            self._funding.clear()
        super().rebind(model)
        self._configure(model)

    def label(self, group: str, j: int) -> str:
        labels = self._labels.get(group)
        if labels is not None and 0 <= j < len(labels):
            return f"{group} {labels[j]}"
        return f"{group} scenario {j}"

    # -- scenario sets -------------------------------------------------------------------------
    def combo(self, ctx: LiveContext, unds: tuple[str, ...], asof: np.datetime64) -> _Combo:
        key = (str(asof), unds, ctx.factors.digest())
        c = self._combos.get(key)
        if c is not None:
            return c
        if len(self._combos) > 64:
            self._combos.clear()
        names: list[str] = []
        sets: list[ScenarioSet] = []
        error = ""
        sigma: dict[str, float] = {}
        try:
            # the stale-history limit: the bound model exempts the underlyings whose vols the
            # live state carries (its EWMA replaces the history's recent vol), so the engine
            # keeps margining after the history ends; an unseeded underlying is still refused
            self.core.history_lag_days(unds, asof)
            core = self.m.core_set(unds, asof)
            names.append("core")
            sets.append(core)
            sigma = {u: float(v) for u, v in core.info.get("sigma_next", {}).items()}
            if self.dynamic:
                if self.w > 0.0:
                    names.append("stressed")
                    sets.append(self.m.stressed_period_set(unds, asof))
                if self.floor:
                    names.append("floor")
                    sets.append(self.m.floor_set(core, asof))
                hist, hyp = self.m.stress_sets(unds, asof)
                names += ["stress_historical", "stress_hypothetical"]
                sets += [hist, hyp]
        except MarginproofError as exc:
            error = str(exc)
            names, sets = [], []
        fps = {u: tuple(_fingerprint(s, u, self.mpor, self.iv_shocks) if len(s) else "empty"
                        for s in sets) for u in unds}
        spec = SegmentSpec.of([len(s) for s in sets], self.conf_var, self.conf_es)
        c = _Combo(unds, tuple(names), tuple(sets), fps, spec, sigma, error)
        self._combos[key] = c
        if sets:
            self._labels["+".join(unds)] = sets[0].labels
        return c

    def _block(self, ctx: LiveContext, und: str, sset: ScenarioSet, fp: str) -> FloatArray:
        """Unit P&L of ``und``'s instruments under ``sset``, shape (n_names, len(sset))."""
        names = ctx.books.books[und].names
        vkey = ctx.valuation_key(und)
        hit = self._cols.get((und, fp))
        if hit is not None and hit[0] == vkey and hit[1] == len(names):
            return hit[2]
        if hit is not None and hit[0] == vkey and hit[1] < len(names):
            start, old = hit[1], hit[2]
        else:
            start, old = 0, np.zeros((0, len(sset)))
        val = ctx.values_of(und, list(names[start:])) if start else ctx.valuation(und)
        block = np.zeros((len(names) - start, len(sset)))
        if len(val.book) and len(sset):
            block[val.priced_idx] = self.core.revalue(val.book, sset).T
        table = np.ascontiguousarray(np.vstack([old, block]))
        if len(self._cols) > 4096:
            self._cols.clear()
        self._cols[(und, fp)] = (vkey, len(names), table)
        return table

    def _table(self, ctx: LiveContext, c: _Combo) -> tuple[FloatArray, dict[str, int]]:
        """Instrument-major table of the combo (rows: each underlying's names in turn)."""
        parts = []
        offsets: dict[str, int] = {}
        pos = 0
        for u in c.underlyings:
            blocks = [self._block(ctx, u, s, fp) for s, fp in zip(c.sets, c.fingerprints[u],
                                                                   strict=True)]
            n_u = len(ctx.books.books[u].names)
            parts.append(np.hstack(blocks) if blocks else np.zeros((n_u, 0)))
            offsets[u] = pos
            pos += n_u
        return np.ascontiguousarray(np.vstack(parts)), offsets

    # -- CSR of accounts -----------------------------------------------------------------------
    def _entries(self, ctx: LiveContext, rows: IntArray, c: _Combo, offsets: dict[str, int]
                 ) -> tuple[IntArray, IntArray, FloatArray, IntArray]:
        """Holdings of ``rows`` (all in combo ``c``): (row pos, table row, qty, underlying k).

        Cached per combo while the books are unchanged (``AccountBooks.version``) and the same
        rows are asked for: a price tick re-margins the same accounts on the same positions
        (the arrays are returned read-only)."""
        books = ctx.books
        hit = self._ent.get(c.underlyings)
        if (hit is not None and hit[0] == (books.version, len(books), tuple(offsets.items()))
                and hit[1].shape == rows.shape and np.array_equal(hit[1], rows)):
            return hit[2]
        out = self._entries_of(ctx, rows, c, offsets)
        for a in out:
            a.flags.writeable = False
        if len(self._ent) > 64:
            self._ent.clear()
        self._ent[c.underlyings] = ((books.version, len(books), tuple(offsets.items())),
                                    rows.copy(), out)
        return out

    def _entries_of(self, ctx: LiveContext, rows: IntArray, c: _Combo, offsets: dict[str, int]
                    ) -> tuple[IntArray, IntArray, FloatArray, IntArray]:
        books = ctx.books
        pos_of = np.full(len(books), -1, np.int64)
        pos_of[rows] = np.arange(rows.shape[0])
        rr, ii, qq, kk = [], [], [], []
        for k, u in enumerate(c.underlyings):
            b = books.books[u]
            m = b.n_entries
            acc = b.row_acc[b.e_row[:m]]
            p = pos_of[acc]
            sel = (p >= 0) & (b.e_val[:m] != 0.0)
            rr.append(p[sel])
            ii.append(b.e_col[:m][sel] + offsets[u])
            qq.append(b.e_val[:m][sel])
            kk.append(np.full(int(sel.sum()), k, np.int64))
        r = np.concatenate(rr) if rr else np.zeros(0, np.int64)
        order = np.lexsort((np.concatenate(ii) if ii else r, r))
        return (r[order], np.concatenate(ii)[order] if ii else r,
                np.concatenate(qq)[order] if qq else np.zeros(0),
                np.concatenate(kk)[order] if kk else r)

    def _measure(self, es: FloatArray, v: FloatArray) -> FloatArray:
        base = es if self.measure == "es" else v
        return np.asarray(np.maximum(0.0, self.scaling * base), dtype=np.float64)

    # -- figures -------------------------------------------------------------------------------
    def figures(self, ctx: LiveContext, rows: IntArray, moved: frozenset[str] | None
                ) -> Figures:
        books = ctx.books
        n = rows.shape[0]
        groups = ["+".join(c) for c in books.combos]
        out = Figures.zeros(n, tuple(groups))
        if ctx.snapshot is None:
            return out
        asof = asof_date(ctx.snapshot.timestamp)
        comp_names = (["core", "apc_adjustment", "stress_floor", "liquidity", "concentration",
                       "funding"] if self.dynamic else
                      (["scenario_risk"] if self.cross else []))
        for k in comp_names:
            out.components[k] = np.zeros(n)
        cid = books.combo_of[rows]
        for ci in np.unique(cid).tolist():
            unds = books.combos[ci]
            sel = np.flatnonzero(cid == ci)
            if not unds:
                continue
            c = self.combo(ctx, unds, asof)
            if c.error:
                out.failed[sel] = True
                for r in sel.tolist():
                    out.reasons[r] = c.error
                continue
            try:
                self._combo_figures(ctx, c, rows[sel], sel, asof, out, ci)
            except MarginproofError as exc:
                out.failed[sel] = True
                for r in sel.tolist():
                    out.reasons[r] = str(exc)
        out.mm = self.mm_fraction * out.im
        return out

    def _combo_figures(self, ctx: LiveContext, c: _Combo, rows: IntArray, sel: IntArray,
                       asof: np.datetime64, out: Figures, combo_id: int) -> None:
        n = rows.shape[0]
        table, offsets = self._table(ctx, c)
        er, ei, eq, ek = self._entries(ctx, rows, c, offsets)
        ip = np.concatenate([[0], np.cumsum(np.bincount(er, minlength=n))])
        tail = segment_tail(ip, ei, eq, table, c.spec)
        seg = {name: s for s, name in enumerate(c.names)}
        if self.cross:
            per = {name: self._measure(tail.es[:, s], tail.var[:, s]) for name, s in seg.items()
                   if name in ("core", "stressed", "floor")}
        else:
            per, per_u = self._per_underlying(c, table, er, ei, eq, ek, n, seg)
        m_core = per["core"]
        if not self.dynamic:
            out.im[sel] = m_core
            if self.cross:
                out.components["scenario_risk"][sel] = m_core
            else:
                for k, u in enumerate(c.underlyings):
                    key = f"scenario_risk:{u}"
                    out.components.setdefault(key, np.zeros(out.im.shape[0]))[sel] = \
                        per_u["core"][:, k]
        else:
            a = m_core
            if "stressed" in per:
                a = (1.0 - self.w) * m_core + self.w * per["stressed"]
            if "floor" in per:
                a = np.maximum(a, per["floor"])
            a = a * (1.0 + self.buffer)
            s_loss = np.zeros(n)
            for name in ("stress_historical", "stress_hypothetical"):
                s = seg[name]
                if c.spec.hi[s] > c.spec.lo[s]:
                    s_loss = np.maximum(s_loss, tail.worst[:, s])
            fs = self.floor_fraction * s_loss
            cc = np.where(fs > a, fs, a)
            liq, con, fun = self._addons(ctx, c, table, er, ei, eq, ek, n, asof, offsets)
            out.im[sel] = cc + liq + con + fun
            comps = out.components
            comps["core"][sel] = m_core
            comps["apc_adjustment"][sel] = a - m_core
            comps["stress_floor"][sel] = cc - a
            comps["liquidity"][sel] = liq
            comps["concentration"][sel] = con
            comps["funding"][sel] = fun
        has = out.im[sel] > 0.0
        out.binding_group[sel] = np.where(has, combo_id, -1).astype(np.int16)
        out.binding_scenario[sel] = np.where(has, tail.worst_index[:, 0], -1).astype(np.int32)
        out.binding_loss[sel] = np.maximum(0.0, tail.worst[:, 0])

    def _per_underlying(self, c: _Combo, table: FloatArray, er: IntArray, ei: IntArray,
                        eq: FloatArray, ek: IntArray, n: int, seg: Mapping[str, int]
                        ) -> tuple[dict[str, FloatArray], dict[str, FloatArray]]:
        """Measures without cross-underlying offsets: per (account, underlying), summed."""
        nu = len(c.underlyings)
        vr = er * nu + ek  # virtual row (account, underlying); entries are sorted by it
        order = np.argsort(vr, kind="stable")
        ip = np.concatenate([[0], np.cumsum(np.bincount(vr, minlength=n * nu))])
        tail = segment_tail(ip, ei[order], eq[order], table, c.spec)
        per: dict[str, FloatArray] = {}
        per_u: dict[str, FloatArray] = {}
        for name in ("core", "stressed", "floor"):
            if name in seg:
                s = seg[name]
                mu = self._measure(tail.es[:, s], tail.var[:, s]).reshape(n, nu)
                per_u[name] = mu
                per[name] = mu.sum(axis=1)
        return per, per_u

    # -- add-ons (dynamic) ---------------------------------------------------------------------
    def _addons(self, ctx: LiveContext, c: _Combo, table: FloatArray, er: IntArray,
                ei: IntArray, eq: FloatArray, ek: IntArray, n: int, asof: np.datetime64,
                offsets: dict[str, int]) -> tuple[FloatArray, FloatArray, FloatArray]:
        h = self.mpor
        nu = len(c.underlyings)
        greeks = np.hstack([ctx.valuation(u).greeks for u in c.underlyings])  # (7, n_rows_tab)
        is_perp = np.concatenate([ctx.valuation(u).is_perp for u in c.underlyings])
        names = [x for u in c.underlyings for x in ctx.books.books[u].names]
        und_of = [u for u in c.underlyings for _ in ctx.books.books[u].names]
        vr = er * nu + ek
        q = np.bincount(vr, weights=eq * greeks[0, ei], minlength=n * nu).reshape(n, nu)
        vega = np.bincount(vr, weights=eq * greeks[3, ei], minlength=n * nu).reshape(n, nu)
        held = np.bincount(vr, minlength=n * nu).reshape(n, nu) > 0
        liq = np.zeros(n)
        con = np.zeros(n)
        fun = np.zeros(n)
        assert ctx.snapshot is not None
        for k, u in enumerate(c.underlyings):
            rows_u = np.flatnonzero(held[:, k])
            if rows_u.size == 0:
                continue
            adv = self.m.adv(u, asof)
            price = ctx.snapshot.index(u)
            sd = float(c.sigma_next.get(u, 0.0))
            qk = q[rows_u, k]
            if self.liq.get("enabled", True):
                spreads = self.liq.get("spread_rel", {})
                s = float(spreads.get(u, spreads.get("default", 0.0)))
                y = float(self.liq.get("y", 1.0))
                cost_d = sqrt_impact_cost(qk, price, s, sd, adv, y, h)
                cost_v = np.abs(vega[rows_u, k]) * float(
                    self.liq.get("option_half_spread_vol_points", 0.0))
                liq[rows_u] += cost_d + cost_v
            if self.con.get("enabled", True):
                ratio = size_ratio(qk, adv, h)
                thr = float(self.con.get("threshold", 0.01))
                big = np.flatnonzero(ratio > thr)
                if big.size and c.spec.hi[0] > c.spec.lo[0]:
                    base = self._standalone(c, table, er, ei, eq, ek, k, rows_u[big], n)
                    con[rows_u[big]] += concentration_addon(
                        base, ratio[big], thr, float(self.con.get("slope", 1.0)))
        if self.fun.get("enabled", True):
            perp = is_perp[ei]
            if perp.any():
                notional = eq[perp] * greeks[1, ei[perp]]
                rates_l = np.zeros(len(names))
                rates_s = np.zeros(len(names))
                for t in np.unique(ei[perp]).tolist():
                    name = names[t]
                    st = self._funding_stats(und_of[t], asof)
                    cur = ctx.snapshot.funding_rates.get(name)
                    rates_l[t] = st.stressed_long_rate if cur is None else max(
                        st.stressed_long_rate, cur)
                    rates_s[t] = st.stressed_short_rate if cur is None else min(
                        st.stressed_short_rate, cur)
                nper = INTERVALS_PER_DAY * float(h)
                cost = np.where(notional >= 0.0,
                                notional * np.maximum(rates_l[ei[perp]], 0.0) * nper,
                                -notional * np.maximum(-rates_s[ei[perp]], 0.0) * nper)
                fun += np.bincount(er[perp], weights=cost, minlength=n)
        return liq, con, fun

    def _funding_stats(self, u: str, asof: np.datetime64) -> Any:
        key = (u, str(asof))
        st = self._funding.get(key)
        if st is None:
            st = self._funding[key] = self.m.funding_stats_for(u, asof)
        return st

    def _standalone(self, c: _Combo, table: FloatArray, er: IntArray, ei: IntArray,
                    eq: FloatArray, ek: IntArray, k: int, rows: IntArray, n: int
                    ) -> FloatArray:
        """Core-set measure of ``rows``' positions on underlying ``k`` alone."""
        pos = np.full(n, -1, np.int64)
        pos[rows] = np.arange(rows.shape[0])
        sel = (ek == k) & (pos[er] >= 0)
        r = pos[er[sel]]
        ip = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=rows.shape[0]))])
        lo, hi = int(c.spec.lo[0]), int(c.spec.hi[0])
        spec = SegmentSpec.of([hi - lo], self.conf_var, self.conf_es)
        t = segment_tail(ip, ei[sel], eq[sel], np.ascontiguousarray(table[:, lo:hi]), spec)
        return self._measure(t.es[:, 0], t.var[:, 0])

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "combos": len(self._combos), "column_blocks": len(self._cols)}

