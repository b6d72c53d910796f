"""The cheapest hedge: formulate, solve (HiGHS), verify with the real model, polish (pure).

Objectives (``docs/hedge.md``):

* ``im_plus_cost`` -- minimise ``IM(book + x) + cost(x)``;
* ``target`` -- minimise ``cost(x)`` subject to ``IM(book + x) <= equity - cost(x)`` (kind
  ``equity``), ``equity - cost(x) - IM >= excess`` (kind ``excess``) or ``IM <= level``
  (kind ``im``);
* either with ``max_instruments = k``: at most ``k`` instruments traded (binary selection
  variables, HiGHS branch and bound; an exact enumeration of the subsets when there are few;
  if the time limit stops the search its incumbent is returned with HiGHS's optimality gap).

``cost(x)`` walks each candidate's book (spread against the mark plus fees, convex piecewise
linear); sizes are bounded by the book depth. The model's IM is its :class:`Surrogate`
(:mod:`marginproof.hedge.surrogates`). Then every candidate trade is rounded to lots and
re-margined with the real ``model.margin``; for models whose surrogate is not exact the
surrogate is rebuilt around the trade and solved again (majorise-minimise), and a bounded local
search (drop a leg, scale, one lot up or down) polishes the real objective. A trade is
suggested only if the real model confirms it: it lowers IM + cost (or meets the target) and the
hedged IM is not above the IM before. Otherwise nothing is suggested and ``reason`` says why.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError, MarginproofError
from marginproof.hedge.candidates import CandidateSet
from marginproof.hedge.cardinality import best_subset
from marginproof.hedge.convex import INF, Solution
from marginproof.hedge.program import solve_program
from marginproof.hedge.quotes import round_to_lot
from marginproof.hedge.result import HedgeResult, HedgeTrade
from marginproof.hedge.surrogates import (
    Surrogate,
    build_surrogate,
    hedged_portfolio,
    net_portfolio,
)
from marginproof.instruments.portfolio import Portfolio
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.base import MarginModel
from marginproof.models.result import MarginResult

FloatArray = NDArray[np.float64]
OBJECTIVES = ("im_plus_cost", "target")
TARGET_KINDS = ("equity", "excess", "im")
SOLVER = "HiGHS (scipy.optimize.milp)"


@dataclass(frozen=True)
class Target:
    """What "enough" means for objective ``target`` (see module docstring)."""

    kind: str = "equity"
    value: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise InputError("target.kind", f"must be one of {TARGET_KINDS}, got {self.kind!r}")
        if not math.isfinite(self.value) or (self.kind != "im" and self.value < 0.0):
            raise InputError("target.value", f"must be finite (>= 0 for {self.kind}), got "
                             f"{self.value!r}")

    def bound(self, equity_usd: float | None) -> tuple[float, float]:
        """``(rhs, w)``: the constraint is ``IM + w * cost <= rhs`` (USD)."""
        if self.kind == "im":
            return float(self.value), 0.0
        if equity_usd is None or not math.isfinite(equity_usd):
            raise InputError("equity", f"a target of kind {self.kind!r} needs the account's "
                             "equity (collateral after haircuts plus position marks)")
        return float(equity_usd) - (float(self.value) if self.kind == "excess" else 0.0), 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value}


def im_usd(result: MarginResult, market: MarketSnapshot) -> float:
    """IM in USD (the presets margining in coin convert at the index)."""
    if "initial_margin_usd" in result.details:
        return float(result.details["initial_margin_usd"])
    if result.currency in ("USD", "USDC"):
        return float(result.initial_margin)
    return float(result.initial_margin) * market.index(result.currency)


@dataclass
class _Point:
    q: FloatArray  # natural units, rounded to lots
    im: float
    im_usd: float
    mm: float
    currency: str
    cost: float
    spread: float
    fee: float
    ok: bool
    error: str = ""
    result: MarginResult | None = None

    def objective(self, rhs: float | None, w: float) -> float:
        if not self.ok:
            return INF
        if rhs is None:
            return self.im_usd + self.cost
        return self.cost if self.violation(rhs, w) <= 0.0 else INF

    def violation(self, rhs: float, w: float) -> float:
        if not self.ok:
            return INF
        return self.im_usd + w * self.cost - rhs - 1e-9 * max(1.0, abs(rhs))


class _Evaluator:
    """Real-model evaluation of trades (rounded to lots, size limits enforced), memoised."""

    def __init__(self, model: MarginModel, portfolio: Portfolio, market: MarketSnapshot,
                 cands: CandidateSet) -> None:
        self.model, self.portfolio, self.market, self.cands = model, portfolio, market, cands
        self.units = np.array([c.unit for c in cands.candidates])
        self.cache: dict[tuple[float, ...], _Point] = {}
        self.calls = 0
        self.seconds = 0.0

    def rounded(self, x_scaled: FloatArray) -> FloatArray:
        q = np.asarray(x_scaled, np.float64) * self.units
        out = np.zeros(q.size)
        for i, c in enumerate(self.cands.candidates):
            out[i] = round_to_lot(float(q[i]), c.lot, c.max_sell, c.max_buy)
        return out

    def natural(self, q: FloatArray) -> _Point:
        key = tuple(float(v) for v in q)
        if key in self.cache:
            return self.cache[key]
        t0 = time.perf_counter()
        cost = spread = fee = 0.0
        for c, qi in zip(self.cands.candidates, q, strict=True):
            if qi != 0.0:
                tot, sp, fe = c.ladder.cost(float(qi))
                cost, spread, fee = cost + tot, spread + sp, fee + fe
        pf = hedged_portfolio(self.portfolio, self.cands, q)
        try:
            r = self.model.margin(pf, self.market)
            pt = _Point(q.copy(), float(r.initial_margin), im_usd(r, self.market),
                        float(r.maintenance_margin), r.currency, cost, spread, fee, True, "", r)
        except MarginproofError as exc:
            pt = _Point(q.copy(), INF, INF, INF, "", cost, spread, fee, False, str(exc))
        self.calls += 1
        self.seconds += time.perf_counter() - t0
        self.cache[key] = pt
        return pt

    def __call__(self, x_scaled: FloatArray) -> _Point:
        return self.natural(self.rounded(x_scaled))

    def best_rounding(self, x_scaled: FloatArray, rhs: float | None, w: float,
                      max_legs: int = 3, k: int | None = None) -> _Point:
        """Best of the lot roundings of ``x``: every floor/ceil combination when at most
        ``max_legs`` legs trade, else the nearest lots; never more than ``k`` legs."""
        x = np.where(np.abs(x_scaled) > 1e-9, x_scaled, 0.0)
        q = x * self.units
        near = self.rounded(x)
        legs = [i for i in range(q.size) if q[i] != 0.0]
        if k is not None and len(legs) > k:  # keep the k largest legs (coin-equivalent)
            keep = sorted(legs, key=lambda i: -abs(x[i]))[:k]
            near = np.where(np.isin(np.arange(q.size), keep), near, 0.0)
            legs = sorted(keep)
        best = self.natural(near)
        if not legs or len(legs) > max_legs:
            return best
        opts = []
        for i in legs:
            c = self.cands.candidates[i]
            lot = c.lot if c.lot > 0 else 0.0
            lo = math.floor(q[i] / lot) * lot if lot else q[i]
            hi = math.ceil(q[i] / lot) * lot if lot else q[i]
            opts.append(sorted({round_to_lot(v, c.lot, c.max_sell, c.max_buy) for v in (lo, hi)}))
        for combo in itertools.product(*opts):
            cand = near.copy()
            cand[legs] = combo
            p = self.natural(cand)
            if _better(p, best, rhs, w):
                best = p
        return best


def _better(a: _Point, b: _Point, rhs: float | None, w: float) -> bool:
    """``a`` strictly better than ``b`` for the objective (infeasible: smaller violation)."""
    fa, fb = a.objective(rhs, w), b.objective(rhs, w)
    tol = 1e-9 * max(1.0, abs(fb)) if math.isfinite(fb) else 0.0
    if fa < fb - tol:
        return True
    if rhs is not None and not math.isfinite(fa) and not math.isfinite(fb):
        return a.violation(rhs, w) < b.violation(rhs, w) - 1e-9
    return False


def _polish(ev: _Evaluator, start: _Point, rhs: float | None, w: float, budget: int,
            k: int | None) -> _Point:
    """Bounded local search on the real objective around ``start``."""
    best = start
    cands = ev.cands.candidates
    used = ev.calls
    changed = True
    while changed and ev.calls - used < budget:
        changed = False
        nz = [i for i in np.flatnonzero(best.q)]
        trials: list[FloatArray] = []
        for i in nz:  # drop one leg
            q = best.q.copy()
            q[i] = 0.0
            trials.append(q)
        for t in (0.5, 0.8, 1.25):
            trials.append(ev.rounded(best.q * t / ev.units))
        for i in nz:  # one lot either way
            for s in (-1.0, 1.0):
                q = best.q.copy()
                q[i] = round_to_lot(q[i] + s * cands[i].lot, cands[i].lot, cands[i].max_sell,
                                    cands[i].max_buy)
                trials.append(q)
        for q in trials:
            if ev.calls - used >= budget:
                break
            if k is not None and np.count_nonzero(q) > k:
                continue
            p = ev.natural(q)
            if _better(p, best, rhs, w):
                best, changed = p, True
                break
    return best


def suggest_hedge(model: MarginModel, portfolio: Portfolio, market: MarketSnapshot,
                  cands: CandidateSet, objective: str = "im_plus_cost",
                  target: Target | None = None, max_instruments: int | None = None,
                  equity_usd: float | None = None, time_limit_s: float = 5.0,
                  mm_rounds: int = 3, polish_evals: int = 24, mip_rel_gap: float = 1e-4
                  ) -> HedgeResult:
    """The cheapest hedge of ``portfolio`` under ``model`` among ``cands``.

    Parameters
    ----------
    model : MarginModel
        One of ``grid, fhs, mc, dynamic, deribit-pm, derive-pmrm``.
    portfolio : Portfolio
    market : MarketSnapshot
    cands : CandidateSet
        Tradable instruments with quotes, costs, lots and size limits.
    objective : {"im_plus_cost", "target"}
    target : Target, optional
        Required for ``objective="target"``.
    max_instruments : int, optional
        At most this many instruments traded (1, 2, 3 ...).
    equity_usd : float, optional
        Account equity (collateral after haircuts plus position marks) for equity targets.
    time_limit_s : float
        Budget of the solver (the mixed-integer search stops there with its gap).
    mm_rounds : int
        Re-linearisations of a non-exact surrogate.
    polish_evals : int
        Real-model evaluations the local search may spend.

    Returns
    -------
    HedgeResult
    """
    t0 = time.perf_counter()
    if objective not in OBJECTIVES:
        raise InputError("objective", f"must be one of {OBJECTIVES}, got {objective!r}")
    if objective == "target" and target is None:
        raise InputError("target", "objective 'target' needs a target")
    if max_instruments is not None and (max_instruments < 1 or max_instruments > 10):
        raise InputError("max_instruments", "must be between 1 and 10")
    if not len(portfolio):
        raise InputError("positions", "the portfolio is empty: nothing to hedge")
    res0 = model.margin(portfolio, market)
    im0 = im_usd(res0, market)
    rhs: float | None = None
    w = 1.0
    if target is not None and objective == "target":
        rhs, w = target.bound(equity_usd)
    base: dict[str, Any] = {
            "objective": objective, "model": model.name, "params_hash": model.params_hash,
            "market_timestamp": market.timestamp, "currency": res0.currency,
            "im_before": float(res0.initial_margin), "im_before_usd": im0,
            "mm_before": float(res0.maintenance_margin), "equity_before_usd": equity_usd,
            "target": None if target is None else target.to_dict(),
            "max_instruments": max_instruments,
            "candidates": {"n": len(cands), "names": list(cands.names),
                           "excluded": dict(cands.excluded)}}

    def finish(status: str, reason: str, pt: _Point | None, sur: Surrogate | None,
               solver: dict[str, Any], timings: dict[str, float]) -> HedgeResult:
        trades: list[HedgeTrade] = []
        if pt is not None and status in ("suggested", "target_unreachable"):
            for c, q in zip(cands.candidates, pt.q, strict=True):
                if q == 0.0:
                    continue
                tot, sp, fe = c.ladder.cost(float(q))
                trades.append(HedgeTrade(c.name, float(q), "buy" if q > 0 else "sell",
                                         c.ladder.average_price(float(q)), c.ladder.reference,
                                         sp, fe, tot, c.max_buy if q > 0 else c.max_sell, c.lot,
                                         c.quote.source))
        use = pt if trades and pt is not None else None
        after = use.result if use is not None else res0
        assert after is not None
        eq_after = None if equity_usd is None else equity_usd - (use.cost if use else 0.0)
        met = None
        if rhs is not None:
            im_a = use.im_usd if use else im0
            met = im_a + w * (use.cost if use else 0.0) <= rhs + 1e-9 * max(1.0, abs(rhs))
        hedged = hedged_portfolio(portfolio, cands, use.q if use else np.zeros(len(cands)))
        timings["total_s"] = time.perf_counter() - t0
        return HedgeResult(
            status=status, reason=reason, trades=tuple(trades),
            im_after=float(after.initial_margin), im_after_usd=im_usd(after, market),
            mm_after=float(after.maintenance_margin),
            cost_usd=use.cost if use else 0.0, spread_usd=use.spread if use else 0.0,
            fee_usd=use.fee if use else 0.0, equity_after_usd=eq_after, target_met=met,
            hedged_positions={p.instrument.name: float(p.quantity) for p in hedged.positions},
            surrogate={} if sur is None else {"exact": sur.exact, "notes": list(sur.notes)},
            solver=solver, timings_s=timings, **base)

    if not len(cands):
        return finish("no_candidates", "no tradable candidate (see candidates.excluded)", None,
                      None, {"name": SOLVER}, {})
    if rhs is not None and im0 <= rhs:
        return finish("already_met", f"IM {im0:,.2f} USD already meets the target "
                      f"({rhs:,.2f} USD)", None, None, {"name": SOLVER}, {})

    m = len(cands)
    zero = np.zeros(m)
    t_b = time.perf_counter()
    sur = build_surrogate(model, portfolio, market, cands)
    timings = {"build_s": time.perf_counter() - t_b}
    ev = _Evaluator(model, portfolio, market, cands)
    p0 = ev(zero)
    deadline = t0 + 0.85 * time_limit_s  # the rest is for the real-model polish
    solver: dict[str, Any] = {"name": SOLVER, "rounds": 0, "solves": 0, "seconds": 0.0}

    def run(s: Surrogate, at: FloatArray, rhs_s: float | None) -> tuple[FloatArray | None,
                                                                         Solution | None]:
        k = max_instruments
        if k is not None and k < m:
            res = best_subset(s, cands, k, at, rhs_s, w, deadline, mip_gap=mip_rel_gap)
            solver["solves"] += res.programmes
            solver.update(method=res.method, proven_optimal=res.proven,
                          surrogate_objective=res.objective, lower_bound=res.lower_bound,
                          milp_status=res.milp_status)
            sol = Solution(np.zeros(0), res.objective, "optimal" if res.proven else "heuristic",
                           0.0, res.lower_bound, 0, 0, 0, 0.0, res.method)
            return res.x, sol
        left = max(deadline - time.perf_counter(), 0.2)
        solver["method"] = "linear programme"
        x, sol = solve_program(s, cands, at, None, rhs_s, w, left, mip_rel_gap)
        solver["solves"] += 1
        solver["seconds"] += sol.seconds
        solver["rounds"] += sol.rounds
        solver.update(status=sol.status, rows=sol.rows, vars=sol.vars,
                      surrogate_objective=sol.objective)
        return x, sol

    t_s = time.perf_counter()
    work = sur
    others: list[FloatArray] = []
    if sur.alternatives is not None:  # the model is the minimum of these convex functions
        alts = sur.alternatives()
        share = max(0.05, (deadline - time.perf_counter()) * 0.4 / max(len(alts), 1))
        scored: list[tuple[float, int, FloatArray]] = []
        for i, a_sur in enumerate(alts):
            xa, sa = solve_program(a_sur, cands, zero, None, rhs, w, share, 0.0)
            if xa is not None:
                scored.append((sa.objective, i, xa))
        scored.sort(key=lambda t: (t[0], t[1]))
        solver["alternatives"] = len(alts)
        if scored:
            work = alts[scored[0][1]]
            others = [t[2] for t in scored[1:3]]
    x, sol = run(work, zero, rhs)
    best = p0
    pts: list[_Point] = []
    if x is not None:
        pts.append(ev.best_rounding(x, rhs, w, k=max_instruments))
    if max_instruments is None:
        pts += [ev.best_rounding(xo, rhs, w) for xo in others]
    # target: tighten the bound by the real violation (surrogate error, lot rounding) and
    # solve again until the real model agrees
    rhs_s = rhs
    for i in range(5):
        if rhs is None or rhs_s is None or x is None or not pts or not pts[-1].ok:
            break
        viol = pts[-1].violation(rhs, w)
        if viol <= 0.0:
            break
        rhs_s = rhs_s - (2.0 ** i) * viol - 1e-6 * max(1.0, abs(rhs))
        x, sol = run(work, zero, rhs_s)
        if x is not None:
            pts.append(ev.best_rounding(x, rhs, w, k=max_instruments))
    # majorise-minimise: rebuild a non-exact surrogate around the incumbent
    cur_sur = work
    for _ in range(mm_rounds):
        if cur_sur.relinearise is None or not pts or time.perf_counter() > deadline:
            break
        inc = min(pts, key=lambda p: (p.objective(rhs, w), p.violation(rhs, w) if rhs else 0))
        cur_sur = cur_sur.relinearise(inc.q / ev.units)
        if max_instruments is not None:  # keep the selected legs, re-optimise their sizes
            legs = [int(i) for i in np.flatnonzero(inc.q)]
            if not legs:
                break
            left = max(deadline - time.perf_counter(), 0.2)
            x2, _ = solve_program(cur_sur, cands, inc.q / ev.units, None, rhs_s, w, left, 0.0,
                                  legs)
            solver["solves"] += 1
        else:
            x2, _ = run(cur_sur, inc.q / ev.units, rhs_s)
        if x2 is None:
            break
        p2 = ev.best_rounding(x2, rhs, w, k=max_instruments)
        pts.append(p2)
        if not _better(p2, inc, rhs, w):
            break
    timings["solve_s"] = time.perf_counter() - t_s
    for p in pts:
        if _better(p, best, rhs, w):
            best = p
    t_p = time.perf_counter()
    if pts:
        start = min(pts, key=lambda p: (p.objective(rhs, w), p.violation(rhs, w) if rhs else 0))
        polished = _polish(ev, start, rhs, w, polish_evals, max_instruments)
        if _better(polished, best, rhs, w):
            best = polished
    timings["polish_s"] = time.perf_counter() - t_p
    solver["real_margin_calls"] = ev.calls
    solver["real_margin_s"] = ev.seconds
    if max_instruments is not None and "lower_bound" in solver:
        lb, f_s = float(solver["lower_bound"]), float(solver["surrogate_objective"])
        f = best.objective(rhs, w)
        if math.isfinite(lb) and math.isfinite(f_s) and abs(f_s) > 0:
            solver["surrogate_gap"] = max(0.0, (f_s - lb) / abs(f_s))
        if math.isfinite(lb) and math.isfinite(f) and abs(f) > 0:
            solver["gap_vs_bound"] = max(0.0, (f - lb) / abs(f))
    # an infeasible programme (a target no trade reaches) has no finite objective or bound:
    # published as null, never as a non-finite number
    for key in ("surrogate_objective", "lower_bound"):
        v = solver.get(key)
        if isinstance(v, float) and not math.isfinite(v):
            solver[key] = None

    # decide
    if rhs is None:
        if best is p0 or not best.ok or not (best.objective(None, w) < p0.objective(None, w)
                                            - 1e-9 * max(1.0, p0.im_usd)):
            why = ("no trade lowers IM + cost: the optimum of the convex programme is to do "
                   "nothing" if x is None or not np.any(x) else
                   "no trade the real model confirms lowers IM + cost (the best found: IM "
                   f"{best.im_usd:,.2f} + cost {best.cost:,.2f} USD vs IM {p0.im_usd:,.2f} USD)")
            return finish("no_improvement", why, None, sur, solver, timings)
        if best.im_usd > im0:
            return finish("no_improvement", "the best trade would raise the IM", None, sur,
                          solver, timings)
        return finish("suggested", f"IM {im0:,.2f} -> {best.im_usd:,.2f} USD for "
                      f"{best.cost:,.2f} USD of spread and fees", best, sur, solver, timings)
    if best.ok and best.violation(rhs, w) <= 0.0 and best.im_usd <= im0 and best is not p0:
        return finish("suggested", f"target met: IM {best.im_usd:,.2f} USD <= "
                      f"{rhs - w * best.cost:,.2f} USD for {best.cost:,.2f} USD", best, sur,
                      solver, timings)
    # unreachable: the trade that gets closest (minimise IM + cost)
    closest = suggest_hedge(model, portfolio, market, cands, "im_plus_cost", None, max_instruments,
                        equity_usd, max(deadline - time.perf_counter(), 0.5), mm_rounds,
                        polish_evals, mip_rel_gap)
    if closest.status == "suggested":
        q = np.array([{t.instrument: t.quantity for t in closest.trades}.get(c.name, 0.0)
                      for c in cands.candidates])
        pt_alt = ev.natural(q)
        short = pt_alt.violation(rhs, w)
        if short <= 0.0:
            return finish("suggested", f"target met: IM {pt_alt.im_usd:,.2f} USD <= "
                          f"{rhs - w * pt_alt.cost:,.2f} USD for {pt_alt.cost:,.2f} USD", pt_alt,
                          sur, solver, timings)
        return finish("target_unreachable", f"no trade within the size limits meets the target:"
                      f" the closest one (shown) leaves {short:,.2f} USD to deposit", pt_alt, sur,
                      solver, timings)
    return finish("target_unreachable", "no trade within the size limits meets the target or "
                  "lowers the margin", None, sur, solver, timings)


def equity_of(portfolio: Portfolio, collateral: dict[str, float], market: MarketSnapshot,
              haircuts: dict[str, float] | None = None) -> float:
    """Account equity in USD as the engine counts it: collateral after haircuts plus the marks
    of spot and option positions (futures and perpetuals settle into collateral)."""
    from marginproof.instruments.collateral import value_collateral
    from marginproof.instruments.portfolio import CollateralPolicy
    from marginproof.instruments.resolved import resolve

    policy = CollateralPolicy(haircuts) if haircuts is not None else CollateralPolicy()
    total = value_collateral(collateral, market, policy).total_usd if collateral else 0.0
    pf = net_portfolio(portfolio)
    if len(pf):
        book = resolve(pf, market)
        live = (book.kind == 0) | book.is_option
        total += float((book.quantity * book.mark_usd)[live].sum())
    return float(total)
