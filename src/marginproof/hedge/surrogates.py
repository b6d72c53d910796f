"""Each margin model's requirement as a convex function of the trade (pure).

For every supported model, :func:`build_surrogate` returns a :class:`Surrogate`: the model's
IM in USD written with the nodes of :mod:`marginproof.hedge.convex` as a function of the trade
vector ``x`` (candidate ``c`` traded in ``x_c * unit_c`` natural units). Scenario P&L is linear
in quantities (every position is fully revalued and scaled by its quantity), so the scenario
measures are exact convex pieces; the rest is documented per model in ``docs/hedge.md``.

Only the models' public outputs are used: ``MarginResult.scenario_pnl``, their scenario sets
(``core_set``, ``stressed_period_set``, ``floor_set``, ``stress_sets``), their revaluation
(``revalue``), parameters and add-on inputs (``adv``, ``funding_stats_for``), and the greeks of
:func:`marginproof.models.result.position_greeks_usd`. Where a model is not convex in the trade
the surrogate is the convex function that agrees with the model at the linearisation point
``at`` (``Surrogate.exact`` is False and ``relinearise`` rebuilds it elsewhere); the optimiser
always re-margins its suggestion with the real model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError
from marginproof.hedge.candidates import CandidateSet
from marginproof.hedge.convex import (
    Lin,
    Max,
    Node,
    PowAbs,
    ScenES,
    ScenMax,
    Sum,
    absolute,
    const,
    pos,
)
from marginproof.instruments.contracts import Instrument, InstrumentKind
from marginproof.instruments.portfolio import Portfolio, Position
from marginproof.instruments.resolved import ResolvedBook, resolve
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models._history import ScenarioRiskMixin, tail_risk
from marginproof.models.base import MarginModel
from marginproof.models.dynamic import DynamicModel
from marginproof.models.grid import GridModel
from marginproof.models.result import position_greeks_usd
from marginproof.risk.history import asof_date
from marginproof.risk.measures import tail_count

FloatArray = NDArray[np.float64]
SUPPORTED_MODELS = ("grid", "fhs", "mc", "dynamic", "deribit-pm", "derive-pmrm")


@dataclass
class Surrogate:
    """A model's IM (USD) as a convex function of the trade vector (scaled units).

    Attributes
    ----------
    im_usd : Node
        IM in USD of ``book + trade``.
    constraints : list of Node
        Convex functions that must stay ``<= 0`` (the model would refuse the book otherwise).
    exact : bool
        True when ``im_usd`` equals the model's IM for every trade (then only lot rounding
        separates the optimum from the real model's optimum).
    notes : list of str
        What is held fixed or approximated.
    relinearise : callable or None
        ``relinearise(at)`` rebuilds the surrogate around the trade ``at`` (non-exact models).
    alternatives : callable or None
        Where the model is the minimum of a few convex functions (the choices of a piece of a
        concave term), ``alternatives()`` lists them: the best of their optima is the global
        optimum.
    """

    im_usd: Node
    constraints: list[Node] = field(default_factory=list)
    exact: bool = True
    notes: list[str] = field(default_factory=list)
    relinearise: Callable[[FloatArray], Surrogate] | None = None
    alternatives: Callable[[], list[Surrogate]] | None = None


# -- shared helpers ----------------------------------------------------------------------------
def net_portfolio(portfolio: Portfolio) -> Portfolio:
    """One line per instrument (venues hold one balance each), zero nets dropped."""
    qty: dict[str, float] = {}
    inst: dict[str, Instrument] = {}
    for p in portfolio.positions:
        n = p.instrument.name
        inst.setdefault(n, p.instrument)
        qty[n] = qty.get(n, 0.0) + float(p.quantity)
    return Portfolio(tuple(Position(inst[n], q) for n, q in qty.items() if q != 0.0),
                     portfolio.collateral, portfolio.preset_inputs)


def hedged_portfolio(portfolio: Portfolio, cands: CandidateSet, x_natural: FloatArray
                     ) -> Portfolio:
    """``portfolio`` plus the trades (natural units), netted per instrument.

    Preset inputs attached to a perpetual the trade closes (unrealised P&L, unsettled funding)
    are dropped with it: that P&L is realised into cash when the position closes.
    """
    qty: dict[str, float] = {}
    inst: dict[str, Instrument] = {}
    for p in portfolio.positions:
        n = p.instrument.name
        inst.setdefault(n, p.instrument)
        qty[n] = qty.get(n, 0.0) + float(p.quantity)
    for c, q in zip(cands.candidates, x_natural, strict=True):
        if q != 0.0:
            inst.setdefault(c.name, c.instrument)
            qty[c.name] = qty.get(c.name, 0.0) + float(q)
    held = {n for n, q in qty.items() if abs(q) > 1e-12}
    pi = dict(portfolio.preset_inputs)
    for key in ("perp_unrealised_pnl", "perp_unsettled_funding"):
        if isinstance(pi.get(key), dict):
            pi[key] = {k: v for k, v in pi[key].items() if k in held}
    return Portfolio(tuple(Position(inst[n], q) for n, q in qty.items() if n in held),
                     portfolio.collateral, pi)


def unit_portfolio(cands: CandidateSet) -> Portfolio:
    """Every candidate at one optimiser unit (natural quantity ``unit``)."""
    return Portfolio(tuple(Position(c.instrument, c.unit) for c in cands.candidates))


def _pad(cols: FloatArray, where: NDArray[np.bool_], m: int) -> FloatArray:
    """Scatter columns of some candidates into an (n, m) matrix, zeros elsewhere."""
    out = np.zeros((cols.shape[0], m))
    out[:, where] = cols
    return out


def _check_underlyings(book: ResolvedBook, cands: CandidateSet) -> None:
    for c in cands.candidates:
        if c.instrument.underlying not in book.underlyings:
            raise InputError(f"candidates.{c.name}", "a hedge candidate must be on an underlying"
                             f" the account holds ({', '.join(book.underlyings)})")


# -- grid --------------------------------------------------------------------------------------
def grid_surrogate(model: GridModel, portfolio: Portfolio, market: MarketSnapshot,
                   cands: CandidateSet) -> Surrogate:
    """``IM = sum_g max(worst loss_g, rate * sum_u S_u * max(0, -net option coins_u))``.

    Exact: the worst loss over the grid and the short-option minimum are both convex.
    """
    m = len(cands)
    book = resolve(portfolio, market)
    p0 = model.margin(portfolio, market).scenario_pnl
    cb = resolve(unit_portfolio(cands), market)
    pc = model.margin(unit_portfolio(cands), market).scenario_pnl if m else np.zeros((0, 0))
    cross = bool(model.params["grid"].get("cross_underlying_offset", False))
    rate = float(model.params.get("minimums", {}).get("short_option_rate", 0.0))
    unds = tuple(dict.fromkeys((*book.underlyings, *cb.underlyings)))
    b_und = np.array([book.underlyings[i] for i in book.underlying_idx], dtype=object)
    c_und = np.array([cb.underlyings[i] for i in cb.underlying_idx], dtype=object)
    groups = [("portfolio", unds)] if cross else [(u, (u,)) for u in unds]
    terms: list[tuple[float, Node]] = []
    for _, members in groups:
        bm = np.isin(b_und, members)
        cm = np.isin(c_und, members) if m else np.zeros(0, bool)
        base = -p0[:, bm].sum(axis=1)
        a = _pad(-pc[:, cm], cm, m) if m else np.zeros((base.shape[0], 0))
        loss = pos(ScenMax(base, a), m)
        mins: list[tuple[float, Node]] = []
        for u in members:
            ob = bm & book.is_option & (b_und == u)
            oc = (cm & cb.is_option & (c_und == u)) if m else np.zeros(0, bool)
            if not (ob.any() or oc.any()) or rate == 0.0:
                continue
            idx = market.index(u)
            c = np.where(oc, cb.quantity, 0.0) if m else np.zeros(0)
            net = Lin(c, float(book.quantity[ob].sum()))
            mins.append((rate * idx, pos(-net, m)))
        terms.append((1.0, Max([loss, Sum(mins)]) if mins else loss))
    return Surrogate(Sum(terms), exact=True,
                     notes=["grid: worst loss per group and the short-option minimum are convex "
                            "in the trade; the surrogate is the model"])


# -- fhs / mc: scenario risk measure --------------------------------------------------------------
def _measure(model: ScenarioRiskMixin, base_pnl: FloatArray, cand_pnl: FloatArray,
             b_und: NDArray[Any], c_und: NDArray[Any], unds: Sequence[str], m: int,
             cross: bool | None = None) -> tuple[Node, bool]:
    """``scaling * ES`` (or the VaR proxy) of the book's loss, per group; and exactness."""
    cross = model.cross_offset if cross is None else cross
    exact = model.measure_name == "es"
    conf = model.conf_es if exact else model.conf_var
    n = base_pnl.shape[0]
    if n == 0:
        return const(0.0, m), True
    k = tail_count(n, conf)
    groups = [tuple(unds)] if cross else [(u,) for u in unds]
    terms: list[tuple[float, Node]] = []
    for members in groups:
        bm = np.isin(b_und, members)
        cm = np.isin(c_und, members) if m else np.zeros(0, bool)
        base = -base_pnl[:, bm].sum(axis=1)
        a = _pad(-cand_pnl[:, cm], cm, m) if m else np.zeros((n, 0))
        terms.append((1.0, pos(Sum([(model.scaling, ScenES(base, a, k))]), m)))
    return Sum(terms), exact


def _und_labels(book: ResolvedBook) -> NDArray[Any]:
    return np.array([book.underlyings[i] for i in book.underlying_idx], dtype=object)


def history_surrogate(model: ScenarioRiskMixin, portfolio: Portfolio, market: MarketSnapshot,
                      cands: CandidateSet) -> Surrogate:
    """fhs / mc: ``IM = scaling * ES_conf`` of the loss on the model's scenario set (exact,
    Rockafellar-Uryasev). With ``measure = "var"`` the surrogate is the ES at the VaR level,
    a convex upper bound; the real model decides."""
    m = len(cands)
    book = resolve(portfolio, market)
    _check_underlyings(book, cands)
    asof = asof_date(market.timestamp)
    model.history_lag_days(book.underlyings, asof)
    sset = model.core_set(book.underlyings, asof)
    p0 = model.revalue(book, sset)
    cb = resolve(unit_portfolio(cands), market) if m else None
    pc = model.revalue(cb, sset) if cb is not None else np.zeros((len(sset), 0))
    c_und = _und_labels(cb) if cb is not None else np.zeros(0, dtype=object)
    node, exact = _measure(model, p0, pc, _und_labels(book), c_und, book.underlyings, m)
    notes = [f"{model.name}: ES of the scenario loss, Rockafellar-Uryasev form (exact)"] if exact \
        else [f"{model.name}: VaR is not convex; the ES at the VaR level (an upper bound) is "
              "optimised, the real VaR decides"]
    return Surrogate(node, exact=exact, notes=notes)


# -- dynamic --------------------------------------------------------------------------------------
@dataclass
class _Scen:
    base: FloatArray
    cand: FloatArray


def dynamic_surrogate(model: DynamicModel, portfolio: Portfolio, market: MarketSnapshot,
                      cands: CandidateSet, at: FloatArray | None = None) -> Surrogate:
    """``IM = max((1 + b) max((1 - w) M + w M_stress, M_10y), f S) + liq + conc + funding``.

    Convex and exact: ``M``, ``M_stress``, ``M_10y`` (ES on the core, stressed-period and
    10-year-vol scenario sets), ``S`` (worst stress loss), the liquidity add-on
    (``a |q| + b |q|^1.5 + hs |vega|`` on net delta and vega, tangent cuts) and the funding
    add-on (piecewise linear in each perpetual's notional). Not convex: the concentration
    add-on (standalone margin times the excess size ratio, a product); its standalone margin
    is held at the linearisation point ``at``. When no trade within the book depths can take
    the size ratio above the threshold the add-on is zero everywhere and the surrogate is
    exact.
    """
    m = len(cands)
    x_at = np.zeros(m) if at is None else np.asarray(at, np.float64)
    core = model.core_model
    book = resolve(portfolio, market)
    _check_underlyings(book, cands)
    asof = asof_date(market.timestamp)
    core.history_lag_days(book.underlyings, asof)
    unds = tuple(sorted(book.underlyings))
    cb = resolve(unit_portfolio(cands), market) if m else None
    b_und = _und_labels(book)
    c_und = _und_labels(cb) if cb is not None else np.zeros(0, dtype=object)

    def scen(sset: Any) -> _Scen:
        return _Scen(core.revalue(book, sset),
                     core.revalue(cb, sset) if cb is not None else np.zeros((len(sset), 0)))

    sset = core.core_set(book.underlyings, asof)
    s_core = scen(sset)
    m_core, exact = _measure(core, s_core.base, s_core.cand, b_und, c_und, book.underlyings, m)
    notes = ["dynamic: core, stressed-period and 10-year-floor ES, the stress floor, the "
             "liquidity and funding add-ons are convex and exact"]
    apc = model.apc
    a: Node = m_core
    w = float(apc.get("stressed_weight", 0.25))
    if w > 0.0 and len(book):
        s_st = scen(model.stressed_period_set(unds, asof))
        m_st, _ = _measure(core, s_st.base, s_st.cand, b_und, c_und, book.underlyings, m)
        a = Sum([(1.0 - w, m_core), (w, m_st)])
    if bool(apc.get("floor_10y", True)) and len(book):
        s_fl = scen(model.floor_set(sset, asof))
        m_fl, _ = _measure(core, s_fl.base, s_fl.cand, b_und, c_und, book.underlyings, m)
        a = Max([a, m_fl])
    b = float(apc.get("static_buffer", 0.0))
    c_node: Node = Sum([(1.0 + b, a)])
    f = float(model.stress.get("floor_fraction", 0.0))
    if f > 0.0 and len(book):
        hist, hyp = model.stress_sets(unds, asof)
        parts = [scen(s) for s in (hist, hyp) if len(s)]
        if parts:
            base = np.concatenate([-p.base.sum(axis=1) for p in parts])
            acat = np.concatenate([-p.cand for p in parts]) if m else np.zeros((base.size, 0))
            c_node = Max([c_node, Sum([(f, pos(ScenMax(base, acat), m))])])
    # add-ons
    g0 = position_greeks_usd(book)
    gc = position_greeks_usd(cb) if cb is not None else np.zeros((7, 0))
    h = model.mpor_days
    addons = model.addons
    liq_cfg = addons.get("liquidity", {})
    con_cfg = addons.get("concentration", {})
    fun_cfg = addons.get("funding", {})
    sigma_next = sset.info.get("sigma_next", {})
    terms: list[tuple[float, Node]] = [(1.0, c_node)]
    for u in book.underlyings:
        bm = b_und == u
        cm = (c_und == u) if m else np.zeros(0, bool)
        q = Lin(np.where(cm, gc[0], 0.0) if m else np.zeros(0), float(g0[0, bm].sum()))
        vega = Lin(np.where(cm, gc[3], 0.0) if m else np.zeros(0), float(g0[3, bm].sum()))
        price = market.index(u)
        adv = model.adv(u, asof)
        if liq_cfg.get("enabled", True):
            spreads = liq_cfg.get("spread_rel", {})
            s = float(spreads.get(u, spreads.get("default", 0.0)))
            y = float(liq_cfg.get("y", 1.0))
            sd = float(sigma_next.get(u, 0.0))
            hs = float(liq_cfg.get("option_half_spread_vol_points", 0.0))
            if price <= 0.0 or s < 0.0 or sd < 0.0 or y < 0.0:
                raise InputError("liquidity", "price > 0, spread >= 0, vol >= 0, Y >= 0 required")
            scale = max(abs(q.c0), float(np.abs(q.c).max()) if m else 0.0, 1e-6)
            terms += [(price * s / 2.0, absolute(q)),
                      (1.0, PowAbs(q, y * sd * price / math.sqrt(adv * h), 1.5, scale)),
                      (hs, absolute(vega))]
        if con_cfg.get("enabled", True):
            thr = float(con_cfg.get("threshold", 0.01))
            slope = float(con_cfg.get("slope", 1.0))
            pb = s_core.base[:, bm] if s_core.base.shape[0] else np.zeros((0, 0))
            at_pnl = pb.sum(axis=1) + (s_core.cand[:, cm] @ x_at[cm] if m else 0.0)
            base_u = tail_risk(at_pnl[:, None], core.conf_var, core.conf_es, core.measure_name,
                               core.scaling).measure if at_pnl.shape[0] else 0.0
            # the largest size ratio any trade within the book depths can reach
            caps = np.array([max(c.max_buy, c.max_sell) / c.unit for c in cands.candidates])
            q_max = abs(q.c0) + (float(np.abs(q.c) @ caps) if m else 0.0)
            if base_u > 0.0 and slope > 0.0 and q_max / (adv * h) > thr:
                r = q.scaled(1.0 / (adv * h))
                ratio_excess = Max([r + const(-thr, m), -r + const(-thr, m), const(0.0, m)])
                terms.append((base_u * slope, ratio_excess))
                exact = False
    if fun_cfg.get("enabled", True):
        names: dict[str, tuple[float, FloatArray, str]] = {}
        for j in np.flatnonzero(book.kind == 2):
            n = book.names[j]
            prev = names.get(n, (0.0, np.zeros(m), book.underlyings[book.underlying_idx[j]]))
            names[n] = (prev[0] + float(g0[1, j]), prev[1], prev[2])
        if cb is not None:
            for j in np.flatnonzero(cb.kind == 2):
                n = cb.names[j]
                prev = names.get(n, (0.0, np.zeros(m), cb.underlyings[cb.underlying_idx[j]]))
                vec = prev[1].copy()
                vec[j] += float(gc[1, j])
                names[n] = (prev[0], vec, prev[2])
        n_int = 3.0 * h
        for n, (n0, vec, u) in names.items():
            st = model.funding_stats_for(u, asof)
            cur = market.funding_rates.get(n)
            lr = st.stressed_long_rate if cur is None else max(st.stressed_long_rate, cur)
            sr = st.stressed_short_rate if cur is None else min(st.stressed_short_rate, cur)
            notional = Lin(vec, n0)
            terms.append((max(lr, 0.0) * n_int, pos(notional, m)))
            terms.append((max(-sr, 0.0) * n_int, pos(-notional, m)))
    if not exact:
        notes.append("dynamic: concentration add-on (standalone margin x excess size over ADV)"
                      " is a product, not convex: the standalone margin is held at the "
                      "linearisation point")
    if core.measure_name != "es":
        notes.append("dynamic: the core measure is VaR: the ES at the VaR level is optimised")

    def again(x: FloatArray) -> Surrogate:
        return dynamic_surrogate(model, portfolio, market, cands, x)

    return Surrogate(Sum(terms), exact=exact, notes=notes,
                     relinearise=None if exact else again)


# -- dispatch -------------------------------------------------------------------------------------
def build_surrogate(model: MarginModel, portfolio: Portfolio, market: MarketSnapshot,
                    cands: CandidateSet, at: FloatArray | None = None) -> Surrogate:
    """The surrogate of ``model`` for ``portfolio`` (netted) and the candidate trades."""
    from marginproof.hedge import presets  # the exchange presets' adapters

    pf = net_portfolio(portfolio)
    if isinstance(model, DynamicModel):
        return dynamic_surrogate(model, pf, market, cands, at)
    if isinstance(model, GridModel):
        return grid_surrogate(model, pf, market, cands)
    if isinstance(model, ScenarioRiskMixin):
        return history_surrogate(model, pf, market, cands)
    if model.name == "deribit-pm":
        return presets.deribit_pm_surrogate(model, pf, market, cands, at)
    if model.name == "derive-pmrm":
        return presets.derive_pmrm_surrogate(model, pf, market, cands, at)
    raise InputError("model", f"hedge supports the scenario models {', '.join(SUPPORTED_MODELS)}"
                     f"; {model.name!r} is not one of them")


def accepts(model: MarginModel, portfolio: Portfolio, market: MarketSnapshot
            ) -> Callable[[Instrument], str | None]:
    """The model's refusal of a candidate instrument (None = acceptable).

    The exchange presets are asked directly: their own input builder runs on the candidate
    alone (a missing mark, an unlisted product or an unconfigured currency is refused there).
    """
    from marginproof.errors import MarginproofError

    unds = set(portfolio.underlyings)

    def ok(inst: Instrument) -> str | None:
        if inst.underlying not in unds:
            return f"not an underlying of the account ({', '.join(sorted(unds))})"
        if inst.kind is InstrumentKind.SPOT:
            return "spot is not a hedge candidate"
        one = Portfolio((Position(inst, 1.0),))
        try:
            if model.name == "deribit-pm":
                model.positions(one, market)  # type: ignore[attr-defined]
            elif model.name == "derive-pmrm":
                model.inputs(one, market)  # type: ignore[attr-defined]
        except MarginproofError as exc:
            return str(exc)
        return None

    return ok
