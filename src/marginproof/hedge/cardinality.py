"""The best trade in at most ``k`` instruments (pure).

* ``k = 1`` is solved exactly by search: the best trade in each candidate alone is a
  one-dimensional convex problem (the surrogate plus the book-walk cost), minimised by nested
  grids on the exact surrogate (a minimum of a convex function lies between the neighbours of
  the best grid point); the best few are then solved as linear programmes.
* ``k >= 2`` with few candidates (at most ``exact_subsets`` subsets): every subset of ``k``
  legs is solved as a small linear programme: exact.
* ``k >= 2`` otherwise, a heuristic with a reported optimality gap: a beam search adds one
  leg at a time, screening every candidate's line through the incumbent (the same vectorised
  line search as for ``k = 1``) and re-optimising the best few subsets as linear programmes;
  a swap search then drops each leg and screens its replacement; a reweighted-L1 path on the
  relaxation (no limit, which is also a lower bound) proposes sparse supports. Finally HiGHS
  branch and bound on the full mixed-integer programme runs in the time left with the
  incumbent as a cutoff: if it proves nothing is better the incumbent is optimal; otherwise its
  dual bound gives the gap that is reported (``lower_bound``).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from marginproof.hedge.candidates import CandidateSet
from marginproof.hedge.convex import INF, Aff, harvest, restrict
from marginproof.hedge.program import build_program, solve_program
from marginproof.hedge.surrogates import Surrogate

FloatArray = NDArray[np.float64]
PENALTY = 1e6


@dataclass
class SubsetSearch:
    """Outcome of :func:`best_subset`.

    Attributes
    ----------
    x : ndarray or None, shape (m,)
        Best trade found (scaled units), at most ``k`` legs.
    objective : float
        Its surrogate objective (IM + cost, or cost under the target).
    lower_bound : float
        Valid lower bound of the objective over every trade in at most ``k`` legs.
    method : str
    proven : bool
        The incumbent is optimal for the surrogate (within the solver's tolerance).
    programmes : int
        Linear / mixed-integer programmes solved.
    ranked : list of tuple
        Subsets solved, best first: ``(objective, legs)``.
    """

    x: FloatArray | None
    objective: float
    lower_bound: float
    method: str
    proven: bool
    programmes: int
    ranked: list[tuple[float, tuple[int, ...]]] = field(default_factory=list)
    milp_status: str = ""


def restricted(sur: Surrogate, legs: Sequence[int]) -> Surrogate:
    """The surrogate as a function of some legs only (others held at zero)."""
    return Surrogate(restrict(sur.im_usd, legs), [restrict(c, legs) for c in sur.constraints],
                     sur.exact, sur.notes)


def line_search(sur: Surrogate, cands: CandidateSet, rhs: float | None, w: float,
                rounds: int = 7, points: int = 17, x0: FloatArray | None = None
                ) -> tuple[FloatArray, FloatArray, NDArray[np.bool_]]:
    """Best trade in each candidate alone: ``(t, objective, feasible)``, shape (m,) each
    (scaled units).

    The objective (IM + cost, or cost under the target) plus ``PENALTY`` times any violation
    is convex in ``t``; nested grids keep the bracket around each candidate's best point
    (every candidate's line is evaluated at once, :meth:`Node.line`). With ``x0`` the lines
    go through that trade (its legs' costs included; ``t`` is the added quantity).
    """
    m = len(cands)
    units = np.array([c.unit for c in cands.candidates])
    lo = np.array([-c.max_sell for c in cands.candidates]) / units
    hi = np.array([c.max_buy for c in cands.candidates]) / units

    base_cost = 0.0
    if x0 is not None:
        lo, hi = lo - x0, hi - x0
        base_cost = float(sum(c.ladder.cost_curve(np.array([x0[i] * units[i]]))[0]
                              for i, c in enumerate(cands.candidates) if x0[i] != 0.0))

    def phi(ts: FloatArray) -> tuple[FloatArray, FloatArray]:
        im = sur.im_usd.line(ts, x0)
        if x0 is None:
            cost = np.stack([c.ladder.cost_curve(ts[i] * units[i])
                             for i, c in enumerate(cands.candidates)])
        else:
            cost = np.stack([c.ladder.cost_curve((ts[i] + x0[i]) * units[i])
                             - (c.ladder.cost_curve(np.array([x0[i] * units[i]]))[0]
                                if x0[i] != 0.0 else 0.0)
                             for i, c in enumerate(cands.candidates)]) + base_cost
        viol = np.zeros(ts.shape)
        for con in sur.constraints:
            viol = np.maximum(viol, con.line(ts, x0))
        if rhs is None:
            obj = im + cost
        else:
            obj = cost.copy()
            viol = np.maximum(viol, im + w * cost - rhs)
        return np.where(np.isfinite(obj), obj, INF) + PENALTY * np.maximum(viol, 0.0), viol

    a, b = lo.copy(), hi.copy()
    best_t, best_f, best_v = np.zeros(m), np.full(m, INF), np.full(m, INF)
    rows = np.arange(m)
    for r in range(rounds):
        frac = np.linspace(0.0, 1.0, points)
        grid = a[:, None] + (b - a)[:, None] * frac[None, :]
        if r == 0:
            grid = np.concatenate([grid, np.zeros((m, 1))], axis=1)
        f, v = phi(grid)
        j = np.argmin(f, axis=1)
        fj = f[rows, j]
        upd = fj < best_f
        best_t = np.where(upd, grid[rows, j], best_t)
        best_f = np.where(upd, fj, best_f)
        best_v = np.where(upd, v[rows, j], best_v)
        order = np.argsort(grid, axis=1, kind="stable")
        srt = np.take_along_axis(grid, order, axis=1)
        pos_j = np.argmax(order == j[:, None], axis=1)  # rank of the best point
        a = srt[rows, np.maximum(pos_j - 1, 0)]
        b = srt[rows, np.minimum(pos_j + 1, srt.shape[1] - 1)]
    feasible = best_v <= 1e-9 * max(1.0, abs(rhs or 0.0))
    obj = best_f - PENALTY * np.maximum(best_v, 0.0)
    return best_t, obj, feasible


def exact_objective(sur: Surrogate, cands: CandidateSet, x: FloatArray, rhs: float | None,
                    w: float) -> float:
    """The surrogate objective at ``x`` evaluated exactly (``inf`` if infeasible)."""
    im = sur.im_usd.value(x)
    cost = 0.0
    for c, v in zip(cands.candidates, x, strict=True):
        if v != 0.0:
            cost += float(c.ladder.cost_curve(np.array([v * c.unit]))[0])
    for con in sur.constraints:
        if con.value(x) > 1e-7:
            return INF
    if rhs is None:
        return im + cost
    return cost if im + w * cost <= rhs + 1e-7 * max(1.0, abs(rhs)) else INF


def _subset_lp(sur: Surrogate, cands: CandidateSet, legs: tuple[int, ...], at: FloatArray,
               rhs: float | None, w: float, time_limit: float
               ) -> tuple[float, FloatArray | None]:
    sub = restricted(sur, legs)
    x, _ = solve_program(sub, cands.subset(list(legs)), at[list(legs)], None, rhs, w,
                         time_limit, 0.0)
    if x is None:
        return INF, None
    full = np.zeros(len(cands))
    full[list(legs)] = np.where(np.abs(x) > 1e-12, x, 0.0)
    return exact_objective(sur, cands, full, rhs, w), full


def sparse_path(sur: Surrogate, cands: CandidateSet, k: int, at: FloatArray,
                rhs: float | None, w: float, deadline: float, steps: int = 10
                ) -> tuple[float, FloatArray | None, list[tuple[int, ...]]]:
    """The relaxation (a lower bound) and supports of sparser trades: reweighted-L1 penalties
    ``lam * sum_c |x_c| / (|x_c^prev| + eps)`` doubled until at most ``k`` legs trade.

    Returns the relaxation's objective, its trade and the supports met on the way.
    """
    prog = build_program(sur, cands, at, None)
    base = Aff(prog.im.coef, prog.im.const).add(prog.cost) if rhs is None else Aff(
        prog.cost.coef, prog.cost.const)
    if rhs is not None:
        prog.lp.add_row(Aff(prog.im.coef, prog.im.const).add(prog.cost, w), -INF, rhs)
    left = max(0.2, deadline - time.perf_counter())
    sol = prog.lp.solve(base, time_limit=left / 2, mip_rel_gap=0.0)
    if sol.status in ("infeasible", "failed"):
        return INF, None, []
    harvest(prog.lp)
    m = len(cands)
    x0 = sol.values[:m].copy()
    lb = float(sol.objective) if sol.status == "optimal" else -INF
    supports: list[tuple[int, ...]] = []
    x = x0
    scale = max(abs(float(sol.objective)), 1.0)
    lam = 0.002 * scale
    for _ in range(steps):
        if time.perf_counter() > deadline:
            break
        mag = np.abs(x)
        supp = tuple(int(i) for i in np.flatnonzero(mag > 1e-6 * max(mag.max(), 1e-12)))
        if supp and supp not in supports:
            supports.append(supp)
        if 0 < len(supp) <= k:
            break
        eps = 1e-3 * max(mag.max(), 1e-9)
        obj = Aff(base.coef, base.const)
        for i, vs in prog.legs.items():
            wt = lam / (mag[i] + eps)
            for v in vs:
                obj.coef[v] = obj.coef.get(v, 0.0) + wt
        s2 = prog.lp.solve(obj, time_limit=max(0.1, deadline - time.perf_counter()),
                           mip_rel_gap=0.0)
        if s2.status in ("infeasible", "failed"):
            break
        x = s2.values[:m].copy()
        lam *= 2.0
    harvest(prog.lp)
    return lb, x0, supports


def best_subset(sur: Surrogate, cands: CandidateSet, k: int, at: FloatArray,
                rhs: float | None, w: float, deadline: float, pool: int = 12,
                milp_share: float = 0.5, mip_gap: float = 1e-4, beam_width: int = 3,
                partners: int = 3, exact_subsets: int = 256) -> SubsetSearch:
    """The best trade in at most ``k`` legs (see module docstring)."""
    m = len(cands)
    n_prog = 0
    t1, f1_raw, ok1 = line_search(sur, cands, rhs, w)
    f1 = np.where(ok1, f1_raw, INF)
    order1 = [int(i) for i in np.argsort(f1, kind="stable") if math.isfinite(f1[i])]
    seen: dict[tuple[int, ...], tuple[float, FloatArray | None]] = {}

    def try_legs(legs: Sequence[int]) -> float:
        nonlocal n_prog
        key = tuple(sorted(int(i) for i in legs))
        if key not in seen:
            seen[key] = _subset_lp(sur, cands, key, at, rhs, w, 1.0)
            n_prog += 1
        return seen[key][0]

    for c in order1[:3]:  # the best singles, solved exactly
        try_legs((c,))
    if k == 1:
        ranked = sorted((v, legs) for legs, (v, _) in seen.items())
        if not ranked:
            return SubsetSearch(None, INF, INF, "exact search over single instruments", True,
                                n_prog)
        val, legs = ranked[0]
        if val > float(f1[legs[0]]):  # the grid point is better than the LP (tolerance)
            x = np.zeros(m)
            x[legs[0]] = t1[legs[0]]
            val = exact_objective(sur, cands, x, rhs, w)
        else:
            x = seen[legs][1]  # type: ignore[assignment]
        return SubsetSearch(x, val, val, f"exact search over {m} single instruments", True,
                            n_prog, ranked)
    if math.comb(m, k) <= exact_subsets:  # few enough: every subset of k legs, exactly
        for legs in itertools.combinations(range(m), k):
            try_legs(legs)
            if time.perf_counter() > deadline:
                break
        else:
            ranked = sorted((v, legs) for legs, (v, _) in seen.items())
            val, legs = ranked[0]
            return SubsetSearch(seen[legs][1], val, val,
                                f"exact enumeration of the {math.comb(m, k)} subsets of {k} "
                                f"of {m} candidates", True, n_prog, ranked)
    # k >= 2: beam search, each step screening every candidate's line through the incumbent
    def partners_of(legs: tuple[int, ...], n_best: int) -> list[int]:
        x_b = seen[legs][1] if legs else np.zeros(m)
        if x_b is None:
            return []
        _, fo, ok = line_search(sur, cands, rhs, w, rounds=4, points=9, x0=x_b)
        fo = np.where(ok, fo, INF)
        fo[list(legs)] = INF
        return [int(d) for d in np.argsort(fo, kind="stable")[:n_best] if math.isfinite(fo[d])]

    beam: list[tuple[float, tuple[int, ...]]] = sorted(
        (try_legs((c,)), (c,)) for c in order1[:beam_width + 1])
    for _level in range(2, k + 1):
        nxt: list[tuple[float, tuple[int, ...]]] = []
        for _, legs in beam:
            if time.perf_counter() > deadline:
                break
            for d in partners_of(legs, partners):
                key = tuple(sorted((*legs, d)))
                nxt.append((try_legs(key), key))
        if not nxt:
            break
        beam = sorted(set(nxt))[:beam_width]

    def improve(legs: tuple[int, ...], stop: float) -> tuple[int, ...]:
        """Swap search: drop a leg, screen every candidate's line for its replacement."""
        cur, improved = legs, True
        while improved and time.perf_counter() < stop:
            improved = False
            base = try_legs(cur)
            for out_leg in cur:
                rest = tuple(i for i in cur if i != out_leg)
                try_legs(rest)
                for d in partners_of(rest, 2):
                    if d == out_leg:
                        continue
                    cand = tuple(sorted((*rest, d)))
                    if try_legs(cand) < base - 1e-9 * max(1.0, abs(base)):
                        cur, improved = cand, True
                        break
                if improved or time.perf_counter() > stop:
                    break
        return cur

    stop_ls = time.perf_counter() + (deadline - time.perf_counter()) * 0.45
    for _, legs in beam[:2]:
        improve(legs, stop_ls)
    stop_path = time.perf_counter() + (deadline - time.perf_counter()) * 0.25
    lb, xr, supports = sparse_path(sur, cands, k, at, rhs, w, stop_path)
    n_prog += 1 + len(supports)
    share_end = time.perf_counter() + (deadline - time.perf_counter()) * (1.0 - milp_share)
    for supp in sorted(supports, key=len):  # sparse supports first: they are the path's picks
        if time.perf_counter() > share_end:
            break
        if len(supp) <= k:
            try_legs(supp)
        elif len(supp) <= k + 2:
            for legs in itertools.combinations(supp, k):
                try_legs(legs)
    method = (f"beam search with screened swaps over {m} candidates, reweighted-L1 supports")
    ranked = sorted((v, legs) for legs, (v, _) in seen.items() if len(legs) <= k)
    inc_val, inc_legs = ranked[0] if ranked else (INF, ())
    best_x = seen[inc_legs][1] if ranked else None
    # branch and bound on the full problem, the incumbent as cutoff
    left = deadline - time.perf_counter()
    proven = False
    status = ""
    if left > 0.1:
        cut = inc_val - 1e-7 * max(1.0, abs(inc_val)) if math.isfinite(inc_val) else None
        xm, sol = solve_program(sur, cands, at, k, rhs, w, left, mip_gap, cutoff=cut)
        n_prog += 1
        status = sol.status
        if sol.status == "infeasible":
            proven = math.isfinite(inc_val)
            if proven:
                lb = max(lb, inc_val)
        else:
            if math.isfinite(sol.dual_bound):
                lb = max(lb, min(sol.dual_bound, inc_val))
            if xm is not None:
                legs = tuple(int(i) for i in np.flatnonzero(np.abs(xm) > 1e-9))
                if 0 < len(legs) <= k:
                    val = try_legs(legs)  # verified exactly on its legs
                    if val < inc_val:
                        inc_val, inc_legs, best_x = val, legs, seen[legs][1]
                        ranked.insert(0, (val, legs))
                    if sol.status == "optimal" and val <= inc_val:
                        proven = True
                        lb = max(lb, min(val, float(sol.objective)))
    method += "; branch and bound with the incumbent as cutoff"
    return SubsetSearch(best_x, inc_val, min(lb, inc_val), method, proven, n_prog, ranked,
                        status)
