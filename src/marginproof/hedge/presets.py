"""Surrogates of the exchange presets ``deribit-pm`` and ``derive-pmrm`` (pure).

Both presets revalue every position on a small scenario table, so the P&L is linear in the
trade; what is not linear is how they aggregate it. Written here as convex functions (see
``docs/hedge.md``):

* **deribit-pm**, per settlement currency: ``worst = max(0, max_j max(-v_j, -k v_j))`` with
  ``v_j`` the summed scenario P&L and ``k = pnl_offset <= 1`` (``offset(v) = min(v, k v)`` is
  concave): exact. The roll shock ``sum |q| rate`` and the delta-shock threshold (a pair of
  linear constraints: above it the preset refuses the book) are exact. The extended table's
  ``edge - offset(ext)`` is a difference of concave functions: the edge (a minimum of concave
  pieces) is replaced by its piece active at the linearisation point, which is a convex upper
  bound tight there.
* **derive-pmrm**: per expiry the shocked value ``W`` is discounted by ``sdPos`` when positive
  and ``sdNeg`` when negative, ``f(W) = min(sdPos W, sdNeg W)`` (concave since
  ``sdPos <= sdNeg``), so scenario losses ``V0 - f(W)`` are convex; the basis contingency is a
  minimum of linear terms (concave P&L): exact. Skew scenarios take ``-|f(W) - V0|``, where
  ``f(W) - V0`` is majorised by its active piece; the confidence contingencies use the
  confidences of the instruments held at the linearisation point. Perp and naked-short
  contingencies (``|q|``, ``max(0, -net)`` per strike) are exact.

The option values of the Derive table are recomputed here from the preset's public functions
(``b76``, ``vol_shock_multipliers``, ``skew_vol_multipliers``, ``static_discounts``) because the
preset reports only the aggregated column P&L; a test checks that they reproduce the preset's
``column_pnl`` and IM exactly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.hedge.candidates import CandidateSet
from marginproof.hedge.convex import Lin, Max, Node, ScenMax, Sum, absolute, const, pos
from marginproof.hedge.surrogates import Surrogate, unit_portfolio
from marginproof.instruments.portfolio import Portfolio, Position
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.base import MarginModel
from marginproof.models.presets.common import SECONDS_PER_YEAR, b76
from marginproof.models.presets.deribit_pm import (
    DeribitPMModel,
    PMPosition,
    delta_usd,
    extended_pnl,
    position_pnl,
)
from marginproof.models.presets.derive_pmrm import (
    SKEW_SHOCKS,
    DerivePMRMModel,
    PMRMExpiry,
    PMRMParams,
    evaluate_pmrm,
    skew_vol_multipliers,
    static_discounts,
    vol_shock_multipliers,
)
from marginproof.models.presets.inputs import PortfolioInputs

FloatArray = NDArray[np.float64]


# -- deribit-pm -----------------------------------------------------------------------------------
def _usd_rate(currency: str, market: MarketSnapshot) -> float:
    """USD per unit of a settlement currency (as the preset converts several currencies)."""
    if currency in ("USDC", "USDT"):
        return float(market.index_prices.get(currency, 1.0))
    return market.index(currency, f"index_prices.{currency}")


def _pm_pnl(p: PMPosition, params: Any) -> tuple[FloatArray, FloatArray]:
    g = params["general"]
    n = int(g["buckets_count"])
    vol_names = tuple(g["vol_scenarios"])
    floor = float(g["dte_floor_days"])
    unit = (np.arange(2 * n + 1) - n) / n
    ext = np.array([float(e) for e in g["extended_moves"]])
    pair = {k: float(v) for k, v in params["pair"][p.underlying].items()}
    pr = pair["price_range"]
    std = position_pnl(p, pr * unit, vol_names, pair, floor)
    ex = extended_pnl(p, ext, pair, floor, str(g.get("extended_fraction", "range")))
    return std, ex


def deribit_pm_surrogate(model: MarginModel, portfolio: Portfolio, market: MarketSnapshot,
                         cands: CandidateSet, at: FloatArray | None = None,
                         pieces: dict[tuple[str, bool], tuple[int, float]] | None = None
                         ) -> Surrogate:
    """Deribit PM risk-matrix margin in USD (see module docstring).

    The extended table's edge (one per settlement currency and side) is a minimum of linear
    pieces (scenario ``j`` of the edge move, times 1 or ``pnl_offset``); ``pieces`` fixes the
    piece of each edge, otherwise the piece active at ``at`` is used. The preset's margin is the
    minimum over every choice of pieces of these convex functions, so solving each choice
    (``Surrogate.alternatives``, when there are few) gives its global optimum.
    """
    assert isinstance(model, DeribitPMModel)
    m = len(cands)
    x_at = np.zeros(m) if at is None else np.asarray(at, np.float64)
    params = model.params
    g = params["general"]
    n_v = len(g["vol_scenarios"])
    ext_moves = np.array([float(e) for e in g["extended_moves"]])
    pos_b, _, _ = model.positions(portfolio, market)
    pos_c: list[PMPosition] = []
    if m:
        pos_c, _, _ = model.positions(unit_portfolio(cands), market)
        if len(pos_c) != m:
            raise ValueError("deribit-pm dropped a candidate (expired?)")
    pi = PortfolioInputs(portfolio.preset_inputs)
    ccys = list(dict.fromkeys([p.currency for p in pos_b] + [p.currency for p in pos_c]
                              + sorted(pi.deribit_currencies())))
    terms: list[tuple[float, Node]] = []
    constraints: list[Node] = []
    constant = 0.0
    exact = True
    options: dict[tuple[str, bool], list[tuple[int, float]]] = {}
    for ccy in ccys:
        usd = _usd_rate(ccy, market)
        cur = params["currency"][ccy]
        k = float(cur["pnl_offset"])
        bi = [i for i, p in enumerate(pos_b) if p.currency == ccy]
        ci = [i for i, p in enumerate(pos_c) if p.currency == ccy]
        constant += usd * (pi.mmp_margin(ccy) + pi.open_orders_margin(ccy) + pi.spot_margin(ccy))
        if not bi and not ci:
            continue
        pb = [_pm_pnl(pos_b[i], params) for i in bi]
        pcs = [_pm_pnl(pos_c[i], params) for i in ci]
        n_std = (pb or pcs)[0][0].size
        v0: FloatArray = np.sum([s for s, _ in pb], axis=0) if pb else np.zeros(n_std)
        e0: FloatArray = np.sum([e for _, e in pb], axis=0) if pb else np.zeros(ext_moves.size)
        vc = np.zeros((n_std, m))
        ec = np.zeros((ext_moves.size, m))
        for j, (s, e) in zip(ci, pcs, strict=True):
            vc[:, j] = s
            ec[:, j] = e
        # worst case: max(0, max_j max(-v_j, -k v_j))
        worst = pos(ScenMax(np.concatenate([-v0, -k * v0]), np.concatenate([-vc, -k * vc])), m)
        terms.append((usd, worst))
        # extended table (our reading of the preset): factor * max(0, max_e edge_e - agg(ext_e))
        unds = list(dict.fromkeys([pos_b[i].underlying for i in bi]
                                  + [pos_c[i].underlying for i in ci]))
        if ext_moves.size:
            factor = max(float(params["pair"][u]["extended_table_factor"]) for u in unds)
            v_at = v0 + vc @ x_at
            items: list[Node] = []
            for ie, mv in enumerate(ext_moves):
                left = bool(mv < 0.0)
                side = np.arange(n_v) if left else np.arange(n_std - n_v, n_std)
                opts = [(int(j), 1.0) for j in side] + (
                    [(int(j), k) for j in side] if k != 0.0 else [(int(side[0]), 0.0)])
                options[(ccy, left)] = opts
                if pieces is not None and (ccy, left) in pieces:
                    j, kk = pieces[(ccy, left)]
                else:
                    agg_at = np.where(v_at[side] > 0.0, k * v_at[side], v_at[side])
                    j = int(side[int(np.argmin(agg_at))])
                    kk = k if v_at[j] > 0.0 else 1.0
                edge = Lin(kk * vc[j], kk * v0[j])
                ext = Lin(ec[ie], e0[ie])
                items.append(Sum([(1.0, edge), (1.0, Max([-ext, ext.scaled(-k)]))]))
            terms.append((usd * factor, pos(Max(items), m)))
            exact = False
        # roll shock per futures / perpetual balance
        rate = {}
        for p in [pos_b[i] for i in bi] + [pos_c[i] for i in ci]:
            if p.kind != "option":
                rate[p.name] = max(float(cur["min_annualised_move"]),
                                   float(cur["annualised_move_risk"]) * p.tau) * (
                    1.0 if p.inverse else p.index)
        for name, r in rate.items():
            q0 = float(sum(pos_b[i].quantity for i in bi if pos_b[i].name == name))
            qc = np.zeros(m)
            for i in ci:
                if pos_c[i].name == name:
                    qc[i] = pos_c[i].quantity
            terms.append((usd * r, absolute(Lin(qc, q0))))
        # delta-shock threshold: the preset refuses books beyond it
        for u in unds:
            thr = float(params["pair"][u]["delta_total_liq_shock_threshold"])
            if not math.isfinite(thr):
                continue
            d0 = float(sum(delta_usd(pos_b[i]) for i in bi if pos_b[i].underlying == u))
            dc = np.zeros(m)
            for i in ci:
                if pos_c[i].underlying == u:
                    dc[i] = delta_usd(pos_c[i])
            lin = Lin(dc, d0)
            constraints += [lin + const(-thr * (1.0 - 1e-9), m),
                            -lin + const(-thr * (1.0 - 1e-9), m)]
    notes = ["deribit-pm: worst case with pnl_offset, roll shock and delta threshold are exact"]
    if not exact:
        notes.append("deribit-pm: extended table (edge minus offset extended P&L) is not convex:"
                     " the edge is held at its binding scenario of the linearisation point")

    def again(x: FloatArray) -> Surrogate:
        return deribit_pm_surrogate(model, portfolio, market, cands, x)

    keys = sorted(options)
    n_alt = int(np.prod([len(options[key]) for key in keys])) if keys else 0

    def alternatives() -> list[Surrogate]:
        out = []
        for combo in itertools.product(*(options[key] for key in keys)):
            out.append(deribit_pm_surrogate(model, portfolio, market, cands, x_at,
                                            dict(zip(keys, combo, strict=True))))
        return out

    return Surrogate(Sum(terms, constant), constraints, exact, notes,
                     None if exact else again,
                     alternatives if (not exact and pieces is None and 1 < n_alt <= 64)
                     else None)


# -- derive-pmrm ----------------------------------------------------------------------------------
def pmrm_unit_values(e: PMRMExpiry, p: PMRMParams, spots: FloatArray, kinds: Sequence[str]
                     ) -> tuple[FloatArray, FloatArray, float, float, float, float]:
    """Per-unit option values of one expiry: ``base (3, n)`` (unshocked, basis up, basis down)
    and ``values (n_scen, n)``; with the basis factor, ``sdPos``, ``sdNeg``, ``tau``.

    Recomputes ``evaluate_pmrm``'s shocked values with the preset's own functions (unit
    amounts): ``PMRMLib_2`` prices every option at ``F' = F_var * spot + F_fixed``.
    """
    sec = max(float(e.sec_to_expiry), 0.0)
    tau = sec / SECONDS_PER_YEAR
    rate = max(float(e.rate), 0.0)
    disc = math.exp(-rate * tau)
    f_fix = float(e.forward_fixed)
    f_var = float(e.forward) - f_fix
    vols = np.array([o.vol for o in e.options])
    strikes = np.array([o.strike for o in e.options])
    calls = np.array([o.is_call for o in e.options])
    n = strikes.size
    base_f = np.array([[f_var + f_fix], [f_var * p.scenario_spot_up + f_fix],
                       [f_var * p.scenario_spot_down + f_fix]])
    base = np.asarray(b76(base_f, strikes[None, :], tau, np.broadcast_to(vols, (3, n)),
                          calls[None, :], disc), np.float64)
    v_up, v_down = vol_shock_multipliers(sec, p)
    sd_pos, sd_neg = static_discounts(tau, rate, disc, p)
    values = np.zeros((len(kinds), n))
    for j, kind in enumerate(kinds):
        if kind in SKEW_SHOCKS:
            mult = skew_vol_multipliers(strikes, f_var + f_fix, tau, kind, p)
            values[j] = b76(f_var + f_fix, strikes, tau, vols * mult, calls, disc)
            continue
        if kind == "up":
            vm = np.maximum(p.min_vol_up_shock, vols * v_up)
        elif kind == "down":
            vm = vols * v_down
        else:
            vm = vols
        values[j] = b76(f_var * spots[j] + f_fix, strikes, tau, vm, calls, disc)
    return base, values, p.add_factor + p.mult_factor * tau, sd_pos, sd_neg, tau


def derive_pmrm_surrogate(model: MarginModel, portfolio: Portfolio, market: MarketSnapshot,
                          cands: CandidateSet, at: FloatArray | None = None) -> Surrogate:
    """Derive PMRM_2 IM requirement in USD (see module docstring)."""
    assert isinstance(model, DerivePMRMModel)
    m = len(cands)
    x_at = np.zeros(m) if at is None else np.asarray(at, np.float64)
    held = {p.instrument.name: float(p.quantity) for p in portfolio.positions}
    c_of = {c.name: i for i, c in enumerate(cands.candidates)}
    units = np.array([c.unit for c in cands.candidates])
    # one portfolio with every option the hedged book can hold (candidates at one unit if not
    # held), for the preset's own inputs: forwards, rates, fixed parts, vols, confidences
    extra = tuple(Position(c.instrument, c.unit) for c in cands.candidates if c.name not in held)
    union = Portfolio(portfolio.positions + extra, portfolio.collateral, portfolio.preset_inputs)
    pf, p, book, _ = model.inputs(union, market)
    pf_b, _, _, _ = model.inputs(portfolio, market)
    out_b = evaluate_pmrm(pf_b, p)
    scen = p.scenarios
    spots = np.array([s.spot_shock for s in scen])
    damp = np.array([s.dampening for s in scen])
    kinds = [s.vol_shock for s in scen]
    n_s = len(scen)

    def amount(name: str) -> Lin:
        c = np.zeros(m)
        if name in c_of:
            c[c_of[name]] = units[c_of[name]]
        return Lin(c, held.get(name, 0.0))

    spot = pf.spot
    perp_name = book.perp.name if book.perp is not None else None
    perp_q = amount(perp_name) if perp_name else const(0.0, m)
    perp_at = perp_q.value(x_at)
    min_conf = min(pf.spot_confidence, pf.perp_confidence) if (
        perp_name and perp_at != 0.0) else pf.spot_confidence
    loss_rows: list[list[tuple[float, Node]]] = [[] for _ in range(n_s)]
    # perp and risk-cancelling collateral columns
    perp_pnl_unit = (spots - 1.0) * pf.perp_price * damp
    coll = np.zeros(n_s)
    for c in pf.collaterals:
        if c.risk_cancelling:
            coll += c.amount * c.price / pf.stable_price * (spots - 1.0) * damp
    for j in range(n_s):
        loss_rows[j].append((1.0, perp_q.scaled(-perp_pnl_unit[j]) + const(-coll[j], m)))
    basis_terms: list[tuple[float, Node]] = []
    cont_terms: list[tuple[float, Node]] = []
    exact = True
    for e in pf.expiries:
        if not e.options:
            continue
        base, vals, bf, sdp, sdn, _ = pmrm_unit_values(e, p, spots, kinds)
        amts = [amount(o.name) for o in e.options]

        def weighted(row: FloatArray, amts: list[Lin] = amts) -> Lin:
            out = const(0.0, m)
            for w, a in zip(row, amts, strict=True):
                out = out + a.scaled(float(w))
            return out

        v0 = weighted(base[0])
        up, down = weighted(base[1]), weighted(base[2])
        basis_terms.append((bf, Max([v0 + (-up), v0 + (-down), const(0.0, m)])))
        for j in range(n_s):
            w = weighted(vals[j])
            w_at = w.value(x_at)
            piece = sdp if w_at >= 0.0 else sdn
            lo_pieces: list[Node] = [v0 + w.scaled(-sdp), v0 + w.scaled(-sdn)]
            if sdp > sdn:  # f is then convex: hold its active piece
                lo_pieces = [v0 + w.scaled(-piece)]
                exact = False
            if kinds[j] in SKEW_SHOCKS:
                lo_pieces = [*lo_pieces, w.scaled(piece) + (-v0)]
                exact = False
            loss_rows[j].append((float(damp[j]), Max(lo_pieces)))
        # contingencies of the expiry: naked shorts per strike, confidence
        by_k: dict[float, Lin] = {}
        for o, a in zip(e.options, amts, strict=True):
            by_k[o.strike] = by_k.get(o.strike, const(0.0, m)) + a
        rate_n = spot * (p.mm_option_percent + p.im_option_percent)
        for net in by_k.values():
            cont_terms.append((rate_n, pos(-net, m)))
        confs = [o.vol_confidence for o, a in zip(e.options, amts, strict=True)
                 if a.value(x_at) != 0.0]
        e_conf = min(min_conf, e.forward_confidence, e.rate_confidence, *confs)
        if e_conf < p.conf_threshold:
            cf = (1.0 - e_conf) * p.conf_margin * spot
            cont_terms += [(cf, absolute(a)) for a in amts]
            exact = False
    # perp contingencies
    perp_rate = spot * (p.mm_perp_percent + p.im_perp_percent)
    if min_conf < p.conf_threshold:
        perp_rate += (1.0 - min_conf) * p.conf_margin * spot
    if perp_name:
        cont_terms.append((perp_rate, absolute(perp_q)))
        if pf.perp_confidence < pf.spot_confidence:
            exact = False
    cc = out_b.contingencies
    coll_const = cc["collateral_mm"] + cc["collateral_im"] + cc["collateral_confidence"]
    scen_loss = Max([Sum(row) for row in loss_rows])
    worst_loss = Max([Sum(basis_terms), scen_loss]) if basis_terms else Max(
        [const(0.0, m), scen_loss])
    im = Sum([(out_b.factor_im, worst_loss), *cont_terms], coll_const)
    notes = ["derive-pmrm: scenario losses with the static discounts, the basis contingency, "
             "perp and naked-short contingencies are convex and exact"]
    if not exact:
        notes.append("derive-pmrm: skew scenarios (-|P&L|) and confidence contingencies are held"
                     " at the linearisation point")

    def again(x: FloatArray) -> Surrogate:
        return derive_pmrm_surrogate(model, portfolio, market, cands, x)

    return Surrogate(im, [], exact, notes, None if exact else again)
