"""The hedge as a mathematical programme: trade variables, book-walk costs, the surrogate IM
(pure). Solved by :meth:`marginproof.hedge.convex.LinearProgram.solve` (HiGHS)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from marginproof.hedge.candidates import CandidateSet
from marginproof.hedge.convex import INF, Aff, LinearProgram, Solution, harvest
from marginproof.hedge.surrogates import Surrogate

FloatArray = NDArray[np.float64]


@dataclass
class Program:
    lp: LinearProgram
    im: Aff
    cost: Aff
    z: list[int] = field(default_factory=list)
    legs: dict[int, list[int]] = field(default_factory=dict)  # candidate -> its book variables


def build_program(sur: Surrogate, cands: CandidateSet, at: FloatArray, k: int | None,
           fix: Sequence[int] | None = None) -> Program:
    """Trade variables, book-walk cost, the surrogate's IM; selection binaries when ``k``.

    ``fix``: only these candidates may trade (the others are held at zero).
    """
    m = len(cands)
    units = np.array([c.unit for c in cands.candidates])
    lb = np.array([-c.max_sell for c in cands.candidates]) / units
    ub = np.array([c.max_buy for c in cands.candidates]) / units
    if fix is not None:
        mask = np.zeros(m, bool)
        mask[list(fix)] = True
        lb = np.where(mask, lb, 0.0)
        ub = np.where(mask, ub, 0.0)
    lp = LinearProgram(m, lb, ub, hint=at)
    cost = Aff()
    z: list[int] = []
    leg_vars: dict[int, list[int]] = {}
    for i, c in enumerate(cands.candidates):
        lad = c.ladder
        if ub[i] == 0.0 and lb[i] == 0.0:
            continue
        row = Aff({i: 1.0})
        buys, sells = [], []
        for cst, sz in zip(lad.buy_cost, lad.buy_size, strict=True):
            v = lp.new_var(0.0, float(sz) / units[i])
            row.coef[v] = -1.0
            cost.coef[v] = float(cst) * units[i]
            buys.append(v)
        for cst, sz in zip(lad.sell_cost, lad.sell_size, strict=True):
            v = lp.new_var(0.0, float(sz) / units[i])
            row.coef[v] = 1.0
            cost.coef[v] = float(cst) * units[i]
            sells.append(v)
        lp.add_eq(row)
        leg_vars[i] = buys + sells
        if k is not None:
            zi = lp.new_var(0.0, 1.0, integer=True)
            z.append(zi)
            if lad.fixed_fee_usd:
                cost.coef[zi] = lad.fixed_fee_usd
            if buys:
                lp.add_row(Aff({**{v: 1.0 for v in buys}, zi: -ub[i]}))
            if sells:
                lp.add_row(Aff({**{v: 1.0 for v in sells}, zi: lb[i]}))
    if k is not None and z:
        lp.add_row(Aff(dict.fromkeys(z, 1.0)), -INF, float(k))
    im = lp.emit(sur.im_usd)
    for con in sur.constraints:
        lp.add_row(lp.emit(con))
    return Program(lp, im, cost, z, leg_vars)


def solve_program(sur: Surrogate, cands: CandidateSet, at: FloatArray, k: int | None,
           rhs: float | None, w: float, time_limit: float, mip_gap: float,
           fix: Sequence[int] | None = None, cutoff: float | None = None
           ) -> tuple[FloatArray | None, Solution]:
    """Solve for the trade (scaled units) minimising IM + cost (``rhs`` None) or cost subject
    to ``IM + w cost <= rhs``; ``k`` limits the instruments, ``fix`` the tradable legs,
    ``cutoff`` bounds the objective (branch and bound prunes above it)."""
    prog = build_program(sur, cands, at, k, fix)
    if rhs is None:
        obj = Aff(prog.im.coef, prog.im.const).add(prog.cost)
    else:
        obj = Aff(prog.cost.coef, prog.cost.const)
        prog.lp.add_row(Aff(prog.im.coef, prog.im.const).add(prog.cost, w), -INF, rhs)
    if cutoff is not None:
        prog.lp.add_row(Aff(obj.coef, obj.const), -INF, cutoff)
    sol = prog.lp.solve(obj, time_limit=time_limit, mip_rel_gap=mip_gap)
    if sol.status not in ("infeasible", "failed"):
        harvest(prog.lp)
    if sol.status in ("infeasible", "failed"):
        return None, sol
    return sol.values[: len(cands)].copy(), sol
