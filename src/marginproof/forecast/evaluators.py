"""Margin of a book at many simulated states: batch twins of the models' ``margin``.

An evaluator returns IM and MM at every state of a step (:class:`StepStates`):

* :class:`GridEvaluator` (``grid``) and :class:`HistoryEvaluator` (``fhs``, ``mc``, ``dynamic``)
  revalue the book under the model's own scenarios at every state and apply the model's own
  measures, offsets, floors and add-ons in the same order as its ``margin`` method, vectorised
  over states. Revaluation is either exact (the model's scenario matrices and
  :func:`~marginproof.scenarios.revalue.scenario_pnl_usd` on a stacked book, or ``book_moves``'
  formula with per-state shock scales) or the value-lattice proxy
  (:mod:`marginproof.forecast.lattice`). Tests assert equality with ``model.margin`` on the
  simulated markets (``tests/unit/forecast``).
* :class:`GenericEvaluator` calls ``model.margin`` once per state (any model or preset; the
  naive baseline of the benchmark).

After a UTC-day rollover a history model's scenario set changes: its one-day shocks scale by the
ratio of the updated to the original vol (``k_ret``, ``k_iv``), the other sets (stressed periods,
crash windows, hypothetical shocks) are unchanged and the 10-year floor set is too (its returns
are the filtered returns rescaled to the 10-year vol, whatever ``sigma_next``). The one-scenario
shift of the window and the refit of the ``mc`` copula are not simulated (measured in the docs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from marginproof.addons.concentration import concentration_addon, size_ratio
from marginproof.addons.funding import funding_addon
from marginproof.addons.liquidity import sqrt_impact_cost
from marginproof.errors import InputError
from marginproof.forecast.lattice import build_lattice, empty_lattice, grid_scan, tail_scan
from marginproof.forecast.states import (
    HOURS_PER_YEAR,
    StepStates,
    portfolio_at,
    snapshot_at,
    stack_book,
)
from marginproof.instruments.portfolio import Portfolio
from marginproof.instruments.resolved import ResolvedBook
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models._history import aged_book, time_decay_usd
from marginproof.models.result import position_greeks_usd
from marginproof.risk.measures import tail_count
from marginproof.scenarios.revalue import scenario_pnl_usd
from marginproof.scenarios.sets import ScenarioSet, horizon_factor

FloatArray = NDArray[np.float64]
CHUNK_WORK = 4_000_000  # option valuations per chunk of exact revaluation


class Evaluator(Protocol):
    """IM and MM at every state of a step."""

    name: str

    def margins(self, st: StepStates, method: str) -> tuple[FloatArray, FloatArray]: ...

    def work(self, n_states: int) -> float: ...


@dataclass(frozen=True)
class LatticeSpec:
    """Spacing of the value lattices (ln index ratio, ln vol multiplier)."""

    hx: float = 0.02
    hy: float = 0.04
    max_nodes: int = 800


def es_columns(losses: FloatArray, conf: float) -> FloatArray:
    """Acerbi-Tasche ES of every column (scenario axis first) by partial selection.

    Same definition and tail count as :func:`marginproof.risk.measures.expected_shortfall`
    (tested equal); ``np.partition`` instead of a full sort, O(n) per column.
    """
    n = losses.shape[0]
    k = tail_count(n, conf)
    if k <= 0.0:
        raise InputError("conf", f"no tail: N * (1 - conf) = {k} for N = {n}")
    m = math.floor(k)
    frac = k - m
    top = min(m, n - 1)
    p = -np.partition(-losses, top, axis=0)
    total = p[:m].sum(axis=0)
    if frac > 0.0:
        total = total + frac * p[m]
    return np.asarray(total / k, dtype=np.float64)


def measure_columns(losses: FloatArray, conf_var: float, conf_es: float, measure: str,
                    scaling: float) -> FloatArray:
    """``tail_risk(...).measure`` of every column: ``max(0, scaling * ES or VaR)``."""
    if losses.shape[0] == 0:
        return np.zeros(losses.shape[1:])
    base = (es_columns(losses, conf_es) if measure == "es"
            else np.asarray(np.quantile(losses, conf_var, axis=0), dtype=np.float64))
    return np.asarray(np.maximum(0.0, scaling * base), dtype=np.float64)


def tail_size(n: int, conf_var: float, conf_es: float, measure: str) -> int:
    """Number of largest losses :func:`measure_from_top` needs for ``n`` scenarios."""
    if n == 0:
        return 1
    if measure == "es":
        k = tail_count(n, conf_es)
        return int(min(n, math.floor(k) + 1))
    lo = int(math.floor(conf_var * (n - 1)))
    return int(min(n, n - lo + 1))


def measure_from_top(top: FloatArray, n: int, conf_var: float, conf_es: float, measure: str,
                     scaling: float) -> FloatArray:
    """``tail_risk(...).measure`` per row from the row's descending largest losses.

    ``top`` has shape (n_rows, K) with K >= :func:`tail_size`; same formulas as
    :func:`marginproof.risk.measures.expected_shortfall` (Acerbi-Tasche) and ``np.quantile``
    (linear), tested equal.
    """
    if n == 0:
        return np.zeros(top.shape[0])
    if measure == "es":
        k = tail_count(n, conf_es)
        m = math.floor(k)
        frac = k - m
        total = top[:, :m].sum(axis=1)
        if frac > 0.0:
            total = total + frac * top[:, m]
        base = total / k
    else:
        h = conf_var * (n - 1)
        lo = int(math.floor(h))
        a = top[:, n - 1 - lo]
        b = top[:, n - 2 - lo] if lo + 1 <= n - 1 else a
        base = a + (h - lo) * (b - a)
    return np.asarray(np.maximum(0.0, scaling * base), dtype=np.float64)


class _Revaluer:
    """Scenario P&L per underlying at many states, exact or by value lattices."""

    def __init__(self, book: ResolvedBook, lattice: LatticeSpec) -> None:
        self.book = book
        self.lattice = lattice
        self.n_u = len(book.underlyings)
        self.opt = book.is_option
        # USD scale of an option's P&L (inverse: S/F, constant along a state's ratio)
        self.opt_scale = np.where(book.is_inverse, book.index / book.forward, 1.0)

    def linear_coef(self, st: StepStates, alive: NDArray[np.bool_]) -> FloatArray:
        """Per state and underlying: USD P&L of the delta-one positions per unit move."""
        b = self.book
        out = np.zeros((st.n_states, self.n_u))
        lin = alive & ~b.is_option
        for i in np.flatnonzero(lin):
            u = int(b.underlying_idx[i])
            if b.is_inverse[i]:
                out[:, u] += b.quantity[i] * (b.index[i] / b.forward[i])
            else:
                out[:, u] += b.quantity[i] * b.forward[i] * st.x[:, u]
        return out

    def options_at(self, t_hours: float, alive: NDArray[np.bool_]
                   ) -> tuple[NDArray[np.int64], FloatArray]:
        b = self.book
        sel = np.flatnonzero(alive & self.opt).astype(np.int64)
        t = np.maximum(b.t_years[sel] - t_hours / HOURS_PER_YEAR, 0.0)
        return sel, t


def _chunks(n_states: int, per_state: float) -> list[slice]:
    size = max(1, int(CHUNK_WORK // max(per_state, 1.0)))
    return [slice(i, min(i + size, n_states)) for i in range(0, n_states, size)]


# ------------------------------------------------------------------------------------ grid --
class GridEvaluator:
    """Batch twin of :meth:`GridModel.margin <marginproof.models.grid.GridModel.margin>`."""

    name = "grid"

    def __init__(self, model: Any, book: ResolvedBook, lattice: LatticeSpec | None = None
                 ) -> None:
        self.model = model
        self.book = book
        self.rev = _Revaluer(book, lattice or LatticeSpec())
        g = model.params["grid"]
        self.cross = bool(g.get("cross_underlying_offset", False))
        self.rate = float(model.params.get("minimums", {}).get("short_option_rate", 0.0))
        self.mm_fraction = float(model.params["maintenance"]["mm_fraction"])
        self.n_scen = len(model.scenario_labels())

    def work(self, n_states: int) -> float:
        return float(n_states * self.n_scen * max(1, int(self.book.is_option.sum())))

    def _pnl_exact(self, st: StepStates) -> FloatArray:
        """(n_u, n_scen, n_states) P&L by full revaluation of a stacked book."""
        sel = np.flatnonzero(st.alive).astype(np.int64)
        out = np.zeros((self.rev.n_u, self.n_scen, st.n_states))
        if sel.size == 0:
            return out
        u_of = self.book.underlying_idx[sel]
        for sl in _chunks(st.n_states, self.n_scen * sel.size):
            sub = st.take(sl)
            sb = stack_book(self.book, sel, sub)
            moves, vm, vf = self.model.scenario_matrices(sb)
            pnl = scenario_pnl_usd(sb, moves, vm, vf).reshape(self.n_scen, sub.n_states,
                                                                sel.size)
            for u in range(self.rev.n_u):
                out[u, :, sl] = pnl[:, :, u_of == u].sum(axis=2)
        return out

    def _proxy_worst(self, st: StepStates) -> tuple[FloatArray, FloatArray]:
        """Worst scenario loss per state: total (n_states,) and per underlying (n_states, n_u)."""
        b = self.book
        n_u = self.rev.n_u
        B = st.n_states
        sel_all = np.flatnonzero(st.alive).astype(np.int64)
        if sel_all.size == 0:
            return np.zeros(B), np.zeros((B, n_u))
        one = StepStates.single(n_u, len(b), st.t_hours, st.alive)
        sb1 = stack_book(b, sel_all, one)
        moves, vm, vf = self.model.scenario_matrices(sb1)  # (n_scen, n_alive), state-free
        unit, shocks = self.model.scenario_axes()
        ranges = np.array([self.model.price_range(u) for u in b.underlyings])
        m_und = np.repeat(unit, len(shocks))[:, None] * ranges[None, :]
        lin = self.rev.linear_coef(st, st.alive)
        opt_loc = np.flatnonzero(b.is_option[sel_all])
        opts = sel_all[opt_loc]
        u_of = b.underlying_idx[opts].astype(np.int64)
        slx = np.log(st.x)
        sly = np.log(st.y)
        dlx = np.log1p(moves[:, opt_loc])
        with np.errstate(divide="ignore"):
            dly = np.maximum(np.log(vm[:, opt_loc]), -50.0)
            lyf = np.log(vf[:, opt_loc] / b.vol[opts][None, :])
        lyf = np.where(np.isfinite(lyf), lyf, -np.inf)
        if opts.size:
            gx, gy = slx[:, u_of], sly[:, u_of]
            lx_r = np.column_stack([gx.min(axis=0) + dlx.min(axis=0),
                                    gx.max(axis=0) + dlx.max(axis=0)])
            ly_hi = np.maximum(gy.max(axis=0) + dly.max(axis=0), lyf.max(axis=0))
            ly_r = np.column_stack([np.maximum(gy.min(axis=0) + dly.min(axis=0), -12.0),
                                    ly_hi])
            t = sb1.t_years[opt_loc]
            L = self.rev.lattice
            lat = build_lattice(b.forward[opts], b.strike[opts], t, b.vol[opts],
                                b.is_call[opts].astype(np.float64), np.exp(-b.rate[opts] * t),
                                b.quantity[opts] * self.rev.opt_scale[opts],
                                np.arange(opts.size, dtype=np.int64), opts.size, lx_r, ly_r,
                                L.hx, L.hy, L.max_nodes)
        else:
            lat = empty_lattice()
        n_v = len(shocks)
        # scenario j = move * n_v + shock: moves and vol shocks are separable (grid axes)
        dlx_m = np.ascontiguousarray(dlx[::n_v])
        dly_v = np.ascontiguousarray(dly[:n_v])
        lyf_v = np.ascontiguousarray(lyf[:n_v])
        worst_tot = np.full(B, -np.inf)
        worst_und = np.full((B, n_u), -np.inf)
        grid_scan(lat.values, lat.lx0, lat.ly0, lat.hx, lat.hy, u_of,
                  np.ascontiguousarray(slx), np.ascontiguousarray(sly), dlx_m, dly_v, lyf_v,
                  np.ascontiguousarray(lin), np.ascontiguousarray(m_und[::n_v]), worst_tot,
                  worst_und)
        return worst_tot, worst_und

    def margins(self, st: StepStates, method: str) -> tuple[FloatArray, FloatArray]:
        b = self.book
        if method == "proxy":
            worst_tot, worst_u = self._proxy_worst(st)
        else:
            pnl = self._pnl_exact(st)
            worst_u = (-pnl).max(axis=1).T if pnl.shape[1] else np.zeros((st.n_states,
                                                                            self.rev.n_u))
            worst_tot = ((-pnl.sum(axis=0)).max(axis=0) if pnl.shape[1]
                         else np.zeros(st.n_states))
        groups = ([list(range(self.rev.n_u))] if self.cross
                  else [[u] for u in range(self.rev.n_u)])
        im = np.zeros(st.n_states)
        for g in groups:
            loss = np.maximum(0.0, worst_tot if self.cross else worst_u[:, g[0]])
            minimum = np.zeros(st.n_states)
            for u in g:
                m = st.alive & b.is_option & (b.underlying_idx == u)
                if m.any():
                    net_short = max(0.0, -float(b.quantity[m].sum()))
                    minimum += self.rate * net_short * float(b.index[m][0]) * st.x[:, u]
            im += np.maximum(loss, minimum)
        return im, self.mm_fraction * im


# ------------------------------------------------------------------------ history models --
@dataclass(frozen=True)
class _Set:
    name: str
    shocks_r: FloatArray  # (n_scen, n_u) log-return shocks over the MPOR, book underlyings
    shocks_v: FloatArray  # (n_scen, n_u) IV log-change shocks
    scale_r: bool
    scale_v: bool

    @property
    def n(self) -> int:
        return int(self.shocks_r.shape[0])


class HistoryEvaluator:
    """Batch twin of ``margin`` of ``fhs``, ``mc`` and ``dynamic`` (see module docstring)."""

    def __init__(self, model: Any, book: ResolvedBook, market: MarketSnapshot,
                 lattice: LatticeSpec | None = None) -> None:
        from marginproof.risk.history import asof_date

        self.model = model
        self.name = model.name
        self.book = book
        self.market = market
        self.rev = _Revaluer(book, lattice or LatticeSpec())
        self.core: Any = getattr(model, "core_model", model)
        self.is_dynamic = self.core is not model
        self.asof = asof_date(market.timestamp)
        c = self.core
        self.args = (c.conf_var, c.conf_es, c.measure_name, c.scaling)
        # ``[risk] time_decay``: every set revalues options ``mpor_days`` later (``revalue``)
        self.decay_days = float(c.mpor_days) if bool(getattr(c, "time_decay", False)) else 0.0
        self.mm_fraction = float(model.params["maintenance"]["mm_fraction"])
        unds = tuple(sorted(book.underlyings))
        core_set = c.core_set(book.underlyings, self.asof)
        self.sigma_next = np.array([float(core_set.info.get("sigma_next", {}).get(u, 0.0))
                                    for u in book.underlyings])
        self.sets: dict[str, _Set] = {"core": self._set("core", core_set, True, True)}
        if self.is_dynamic and len(book):
            apc = model.apc
            self.w = float(apc.get("stressed_weight", 0.25))
            if self.w > 0.0:
                self.sets["stressed"] = self._set(
                    "stressed", model.stressed_period_set(unds, self.asof), False, False)
            self.floor_on = bool(apc.get("floor_10y", True))
            if self.floor_on:
                self.sets["floor"] = self._set("floor", model.floor_set(core_set, self.asof),
                                               False, True)
            self.buffer = float(apc.get("static_buffer", 0.0))
            hist, hyp = model.stress_sets(unds, self.asof)
            for nm, s in (("hist", hist), ("hyp", hyp)):
                if len(s):
                    self.sets[nm] = self._set(nm, s, False, False)
            self.floor_fraction = float(model.stress.get("floor_fraction", 0.0))
            self._addon_setup()

    def _set(self, name: str, s: ScenarioSet, scale_r: bool, scale_v: bool) -> _Set:
        c = self.core
        f = horizon_factor(c.mpor_days, s.horizon_applied)
        cols = [s.column(u) for u in self.book.underlyings]
        r = f * s.log_returns[:, cols]
        v = f * s.iv_log_changes[:, cols] if c.iv_shocks else np.zeros_like(r)
        return _Set(name, np.ascontiguousarray(r), np.ascontiguousarray(v), scale_r, scale_v)

    def _addon_setup(self) -> None:
        mdl, b = self.model, self.book
        self.h = mdl.mpor_days
        self.liq, self.con, self.fun = (mdl.addons.get(x, {}) for x in
                                        ("liquidity", "concentration", "funding"))
        self.adv = np.array([mdl.adv(u, self.asof) for u in b.underlyings])
        self.fund_stats = {int(j): mdl.funding_stats_for(b.underlyings[b.underlying_idx[j]],
                                                         self.asof)
                           for j in np.flatnonzero(b.kind == 2)}

    def work(self, n_states: int) -> float:
        n_opt = max(1, int(self.book.is_option.sum()))
        return float(n_states * n_opt * sum(s.n for s in self.sets.values()))

    # -- revaluation ----------------------------------------------------------------------
    def _scales(self, s: _Set, st: StepStates) -> tuple[FloatArray, FloatArray]:
        one = np.ones_like(st.x)
        return (st.k_ret if s.scale_r else one), (st.k_iv if s.scale_v else one)

    def _pnl_exact(self, s: _Set, st: StepStates) -> FloatArray:
        b = self.book
        sel = np.flatnonzero(st.alive).astype(np.int64)
        out = np.zeros((self.rev.n_u, s.n, st.n_states))
        if sel.size == 0 or s.n == 0:
            return out
        u_of = b.underlying_idx[sel]
        kr_all, kv_all = self._scales(s, st)
        for sl in _chunks(st.n_states, s.n * sel.size):
            sub = st.take(sl)
            B = sub.n_states
            sb = stack_book(b, sel, sub)
            kr = kr_all[sl][:, u_of]  # (B, n)
            kv = kv_all[sl][:, u_of]
            moves = np.exp(s.shocks_r[:, None, u_of] * kr[None, :, :]) - 1.0
            vm = np.exp(s.shocks_v[:, None, u_of] * kv[None, :, :])
            if self.decay_days > 0.0:  # HistoryModel.revalue -> revalue_aged
                pnl = scenario_pnl_usd(aged_book(sb, self.decay_days),
                                       moves.reshape(s.n, B * sel.size),
                                       vm.reshape(s.n, B * sel.size), None)
                pnl = pnl + time_decay_usd(sb, self.decay_days)[None, :]
            else:
                pnl = scenario_pnl_usd(sb, moves.reshape(s.n, B * sel.size),
                                       vm.reshape(s.n, B * sel.size), None)
            pnl = pnl.reshape(s.n, B, sel.size)
            for u in range(self.rev.n_u):
                out[u, :, sl] = pnl[:, :, u_of == u].sum(axis=2)
        return out

    def _lattice(self, st: StepStates) -> Any:
        """One lattice per underlying (its option sub-book) covering every set's lookups."""
        b = self.book
        sel, t = self.rev.options_at(st.t_hours, st.alive)
        if sel.size == 0:
            return None, sel
        # tabulated at the end of the MPOR (time decay); the decay at the unshocked state is
        # added exactly (:meth:`_decay`), so P&L = W_aged(shocked) - W_aged(now) + decay
        t = np.maximum(t - self.decay_days / 365.0, 0.0)
        n_u = self.rev.n_u
        slx, sly = np.log(st.x), np.log(st.y)
        lo_x, hi_x = slx.min(axis=0).copy(), slx.max(axis=0).copy()
        lo_y, hi_y = sly.min(axis=0).copy(), sly.max(axis=0).copy()
        for s in self.sets.values():
            kr, kv = self._scales(s, st)
            for u in range(n_u):
                ex = np.outer(kr[:, u], [s.shocks_r[:, u].min(), s.shocks_r[:, u].max()])
                ey = np.outer(kv[:, u], [s.shocks_v[:, u].min(), s.shocks_v[:, u].max()])
                lo_x[u] = min(lo_x[u], float((slx[:, u][:, None] + ex).min()))
                hi_x[u] = max(hi_x[u], float((slx[:, u][:, None] + ex).max()))
                lo_y[u] = min(lo_y[u], float((sly[:, u][:, None] + ey).min()))
                hi_y[u] = max(hi_y[u], float((sly[:, u][:, None] + ey).max()))
        L = self.rev.lattice
        lat = build_lattice(b.forward[sel], b.strike[sel], t, b.vol[sel],
                            b.is_call[sel].astype(np.float64), np.exp(-b.rate[sel] * t),
                            b.quantity[sel] * self.rev.opt_scale[sel],
                            b.underlying_idx[sel].astype(np.int64), n_u,
                            np.column_stack([lo_x, hi_x]), np.column_stack([lo_y, hi_y]),
                            L.hx, L.hy, L.max_nodes)
        return lat, sel

    def _decay(self, st: StepStates) -> FloatArray:
        """Exact time decay over the MPOR of the alive options per state and underlying
        (forward and vol of the state unchanged), shape (n_states, n_u)."""
        b = self.book
        out = np.zeros((st.n_states, self.rev.n_u))
        sel = np.flatnonzero(st.alive & b.is_option).astype(np.int64)
        if self.decay_days <= 0.0 or sel.size == 0:
            return out
        d = time_decay_usd(stack_book(b, sel, st), self.decay_days).reshape(st.n_states,
                                                                           sel.size)
        u_of = b.underlying_idx[sel]
        for u in range(self.rev.n_u):
            out[:, u] = d[:, u_of == u].sum(axis=1)
        return out

    def _proxy_tops(self, s: _Set, st: StepStates, lat: Any, coef: FloatArray,
                    per_und: bool, decay: FloatArray | None = None
                    ) -> tuple[FloatArray, FloatArray]:
        """Descending largest losses per state, total (n_states, K) and per underlying."""
        n_u = self.rev.n_u
        kr, kv = self._scales(s, st)
        K = tail_size(s.n, *self.args[:3])
        top_tot = np.full((st.n_states, K), -np.inf)
        top_und = np.full((st.n_states, n_u, K if per_und else 0), -np.inf)
        if s.n == 0:
            return top_tot, top_und
        lat = lat if lat is not None else empty_lattice()
        n_g = lat.values.shape[0]
        lyf = np.full((s.n, n_g), -np.inf)
        tail_scan(lat.values, lat.lx0, lat.ly0, lat.hx, lat.hy,
                  np.arange(n_g, dtype=np.int64), np.ascontiguousarray(np.log(st.x)),
                  np.ascontiguousarray(np.log(st.y)), np.ascontiguousarray(kr),
                  np.ascontiguousarray(kv), s.shocks_r[:, :n_g], s.shocks_v[:, :n_g], lyf,
                  np.ascontiguousarray(coef), s.shocks_r, np.expm1(s.shocks_r), top_tot,
                  top_und)
        if decay is not None:  # the same for every scenario: shifts losses, keeps the order
            top_tot -= decay.sum(axis=1)[:, None]
            if per_und:
                top_und -= decay[:, :, None]
        return top_tot, top_und

    def _set_measures(self, name: str, st: StepStates, method: str, lat: Any,
                      coef: FloatArray, decay: FloatArray | None = None
                      ) -> dict[str, FloatArray]:
        """``measure`` (``measure_of``), ``per_und`` measures, ``worst`` total loss per state."""
        s = self.sets[name]
        a = self.args
        cross = self.core.cross_offset
        per_needed = (not cross) or (name == "core" and self.is_dynamic
                                     and self.con.get("enabled", True))
        out: dict[str, FloatArray] = {}
        if method == "proxy":
            tt, tu = self._proxy_tops(s, st, lat, coef, per_needed, decay)
            if name in ("hist", "hyp"):
                return {"worst": tt[:, 0]}
            if cross:
                out["measure"] = measure_from_top(tt, s.n, *a)
            if per_needed:
                out["per_und"] = np.stack([measure_from_top(tu[:, u], s.n, *a)
                                           for u in range(self.rev.n_u)])
        else:
            pnl = self._pnl_exact(s, st)
            if name in ("hist", "hyp"):
                return {"worst": (-pnl.sum(axis=0)).max(axis=0)}
            if cross:
                out["measure"] = measure_columns(-pnl.sum(axis=0), *a)
            if per_needed:
                out["per_und"] = np.stack([measure_columns(-pnl[u], *a)
                                           for u in range(self.rev.n_u)])
        if not cross:
            out["measure"] = np.asarray(out["per_und"].sum(axis=0), dtype=np.float64)
        return out

    def margins(self, st: StepStates, method: str) -> tuple[FloatArray, FloatArray]:
        lat, coef = None, np.zeros((st.n_states, self.rev.n_u))
        decay = None
        if method == "proxy":
            lat, _ = self._lattice(st)
            coef = self.rev.linear_coef(st, st.alive)
            decay = self._decay(st)
        res = {k: self._set_measures(k, st, method, lat, coef, decay) for k in self.sets}
        m_core = res["core"]["measure"]
        if not self.is_dynamic or not len(self.book):
            return m_core, self.mm_fraction * m_core
        a = m_core
        if "stressed" in res:
            a = (1.0 - self.w) * m_core + self.w * res["stressed"]["measure"]
        if "floor" in res:
            a = np.maximum(a, res["floor"]["measure"])
        a = a * (1.0 + self.buffer)
        s_loss = np.zeros(st.n_states)
        for k in ("hist", "hyp"):
            if k in res:
                s_loss = np.maximum(s_loss, res[k]["worst"])
        c = np.maximum(a, self.floor_fraction * s_loss)
        im = c + self._addons(st, res["core"].get("per_und"))
        return im, self.mm_fraction * im

    def _addons(self, st: StepStates, core_per_und: FloatArray | None) -> FloatArray:
        b = self.book
        total = np.zeros(st.n_states)
        sel = np.flatnonzero(st.alive).astype(np.int64)
        if sel.size == 0:
            return total
        sb = stack_book(b, sel, st)
        g = position_greeks_usd(sb).reshape(7, st.n_states, sel.size)
        u_of = b.underlying_idx[sel]
        sigma = (self.sigma_next[None, :] * st.k_ret if st.sigma is None
                 else st.sigma)
        for u in range(self.rev.n_u):
            m = u_of == u
            if not m.any():
                continue
            q = g[0][:, m].sum(axis=1)
            vega = g[3][:, m].sum(axis=1)
            price = b.index[np.flatnonzero(b.underlying_idx == u)[0]] * st.x[:, u]
            if self.liq.get("enabled", True):
                spreads = self.liq.get("spread_rel", {})
                s = float(spreads.get(b.underlyings[u], spreads.get("default", 0.0)))
                total += sqrt_impact_cost(q, price, s, sigma[:, u], self.adv[u],
                                          float(self.liq.get("y", 1.0)), self.h)
                total += np.abs(vega) * float(self.liq.get("option_half_spread_vol_points",
                                                           0.0))
            if self.con.get("enabled", True):
                ratio = size_ratio(q, self.adv[u], self.h)
                assert core_per_und is not None
                base = core_per_und[u]
                total += concentration_addon(base, ratio, float(self.con.get("threshold", 0.01)),
                                             float(self.con.get("slope", 1.0)))
        if self.fun.get("enabled", True):
            for loc, j in enumerate(sel):
                if b.kind[j] != 2:
                    continue
                stt = self.fund_stats[int(j)]
                notional = g[1][:, loc]
                rates = st.funding[:, j]
                total += np.array([funding_addon(float(n), stt, self.h,
                                                 None if math.isnan(r) else float(r))[1]
                                   for n, r in zip(notional, rates, strict=True)])
        return total


# -------------------------------------------------------------------------------- generic --
class GenericEvaluator:
    """``model.margin`` on the market of every state (any model; slow, the naive baseline)."""

    def __init__(self, model: Any, portfolio: Portfolio, book: ResolvedBook,
                 market: MarketSnapshot, perp_names: Mapping[int, str] | None = None) -> None:
        self.model = model
        self.name = model.name
        self.portfolio = portfolio
        self.book = book
        self.market = market
        self.perps: dict[int, str] = dict(perp_names or {
            int(j): book.names[int(j)] for j in np.flatnonzero(book.kind == 2)})

    def work(self, n_states: int) -> float:
        return float(n_states * 1e6)  # never cheaper than the batch twins

    def margins(self, st: StepStates, method: str) -> tuple[FloatArray, FloatArray]:
        im = np.zeros(st.n_states)
        mm = np.zeros(st.n_states)
        pf = portfolio_at(self.portfolio, self.book, st.alive)
        for s in range(st.n_states):
            fund = dict(self.market.funding_rates)
            for j, name in self.perps.items():
                r = st.funding[s, j]
                if not math.isnan(r):
                    fund[name] = float(r)
            snap = snapshot_at(self.market, self.book, st.x[s], st.y[s], st.t_hours, st.alive,
                               fund)
            if not pf.positions:
                continue
            r = self.model.margin(pf, snap)
            im[s], mm[s] = r.initial_margin, r.maintenance_margin
        return im, mm


def make_evaluator(model: Any, portfolio: Portfolio, book: ResolvedBook,
                   market: MarketSnapshot, lattice: LatticeSpec | None = None) -> Evaluator:
    """The batch twin of ``model`` if there is one, else :class:`GenericEvaluator`."""
    from marginproof.models._history import ScenarioRiskMixin
    from marginproof.models.grid import GridModel

    if type(model) is GridModel:
        return GridEvaluator(model, book, lattice)
    if isinstance(model, ScenarioRiskMixin) and model.name in ("fhs", "mc", "dynamic"):
        return HistoryEvaluator(model, book, market, lattice)
    return GenericEvaluator(model, portfolio, book, market)
