"""Convex margin expressions of a trade vector, as linear programmes (pure).

A margin model's requirement, written as a function of the trade quantities ``x`` (shape
``(m,)``, one per candidate), is built from a few convex pieces, each with an exact numpy
value and a linear-programming form (epigraph variables and rows):

* :class:`Lin` -- affine ``c0 + c @ x``;
* :class:`ScenMax` -- worst loss ``max_j (b_j + A_j x)`` over scenario rows (epigraph);
* :class:`ScenES` -- expected shortfall of the losses ``b + A x`` with fractional tail count
  ``k`` (Acerbi-Tasche, the estimator of :mod:`marginproof.risk.measures`), written as
  Rockafellar-Uryasev: ``min_t t + (1/k) sum_j max(0, L_j - t)``, which equals it exactly;
* :class:`Max`, :class:`Sum` (non-negative weights on non-affine terms), ``pos``, ``absolute``;
* :class:`PowAbs` -- ``coef |c0 + c @ x|^p`` for ``p >= 1`` (the square-root-impact term),
  represented by tangent cuts.

Scenario rows and tangent cuts are *lazy*: the programme starts with the rows that bind at the
linearisation point and :meth:`LinearProgram.solve` adds every row or cut the solution
violates and solves again, until none is violated. The restricted programme is a relaxation,
so its optimum is the full programme's optimum once nothing is violated (constraint
generation / Kelley's cutting planes). Solved with HiGHS through :func:`scipy.optimize.milp`
(the same call solves the mixed-integer form with binary selection variables).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
INF = math.inf


class Aff:
    """Affine form over LP variables: ``sum coef[i] * v_i + const``."""

    __slots__ = ("coef", "const")

    def __init__(self, coef: dict[int, float] | None = None, const: float = 0.0) -> None:
        self.coef: dict[int, float] = dict(coef or {})
        self.const = float(const)

    def add(self, other: Aff, w: float = 1.0) -> Aff:
        for k, v in other.coef.items():
            self.coef[k] = self.coef.get(k, 0.0) + w * v
        self.const += w * other.const
        return self


@dataclass
class Solution:
    """Outcome of :meth:`LinearProgram.solve`.

    Attributes
    ----------
    values : ndarray, shape (n_vars,)
    objective : float
        Objective value (constant included).
    status : str
        ``optimal``, ``time_limit`` (a feasible point, ``mip_gap`` says how far from optimal),
        ``infeasible`` or ``failed``.
    mip_gap : float
        Relative gap of the mixed-integer solve (0 for a linear programme solved to optimality).
    dual_bound : float
        Lower bound on the optimum (the objective for an optimal LP).
    rounds : int
        Solves done (1 + constraint-generation rounds).
    rows, vars : int
        Size of the last programme.
    seconds : float
    message : str
    """

    values: FloatArray
    objective: float
    status: str
    mip_gap: float
    dual_bound: float
    rounds: int
    rows: int
    vars: int
    seconds: float
    message: str


class LinearProgram:
    """An LP / MILP under construction: variables, rows ``lo <= A v <= hi``, lazy nodes.

    The first ``n_x`` variables are the trade quantities ``x`` (scaled units).
    """

    def __init__(self, n_x: int, x_lb: FloatArray, x_ub: FloatArray,
                 hint: FloatArray | None = None) -> None:
        self.n_x = n_x
        self.lb: list[float] = [float(v) for v in x_lb]
        self.ub: list[float] = [float(v) for v in x_ub]
        self.cost: list[float] = [0.0] * n_x
        self.integer: list[int] = [0] * n_x
        self._r: list[IntArray] = []
        self._c: list[IntArray] = []
        self._v: list[FloatArray] = []
        self._lo: list[FloatArray] = []
        self._hi: list[FloatArray] = []
        self.n_rows = 0
        self.hint = np.zeros(n_x) if hint is None else np.asarray(hint, np.float64)
        self.state: dict[int, Any] = {}
        self.lazy: list[Node] = []
        self._emitted: dict[int, Aff] = {}
        self._keep: list[Node] = []  # emitted nodes stay alive: their ids key the caches

    # -- building --------------------------------------------------------------------------------
    @property
    def n_vars(self) -> int:
        return len(self.lb)

    def new_var(self, lb: float = -INF, ub: float = INF, cost: float = 0.0,
                integer: bool = False) -> int:
        self.lb.append(lb)
        self.ub.append(ub)
        self.cost.append(cost)
        self.integer.append(1 if integer else 0)
        return len(self.lb) - 1

    def new_vars(self, n: int, lb: float = -INF, ub: float = INF) -> IntArray:
        start = len(self.lb)
        self.lb.extend([lb] * n)
        self.ub.extend([ub] * n)
        self.cost.extend([0.0] * n)
        self.integer.extend([0] * n)
        return np.arange(start, start + n, dtype=np.int64)

    def _push(self, rows: IntArray, cols: IntArray, vals: FloatArray, lo: FloatArray,
              hi: FloatArray) -> None:
        self._r.append(rows)
        self._c.append(cols)
        self._v.append(vals)
        self._lo.append(lo)
        self._hi.append(hi)

    def add_row(self, aff: Aff, lo: float = -INF, hi: float = 0.0) -> int:
        """``lo <= aff <= hi`` (the constant moves to the bounds); returns the row index."""
        i = self.n_rows
        cols = np.fromiter(aff.coef.keys(), np.int64, len(aff.coef))
        vals = np.fromiter(aff.coef.values(), np.float64, len(aff.coef))
        self._push(np.full(cols.size, i, np.int64), cols, vals,
                   np.array([lo - aff.const]), np.array([hi - aff.const]))
        self.n_rows += 1
        return i

    def add_to_row(self, row: int, cols: IntArray, vals: FloatArray) -> None:
        """More coefficients on an existing row (duplicates add up)."""
        self._push(np.full(cols.size, row, np.int64), cols, vals, np.zeros(0), np.zeros(0))

    def add_dense_rows(self, ax: FloatArray, extra_cols: IntArray, extra_vals: FloatArray,
                       hi: FloatArray) -> None:
        """Rows ``ax[i] @ x + extra_vals[i] @ v[extra_cols[i]] <= hi[i]``.

        ``ax`` (r, n_x); ``extra_cols``/``extra_vals`` (r, w).
        """
        r = ax.shape[0]
        if r == 0:
            return
        base = self.n_rows + np.arange(r, dtype=np.int64)
        nz = ax != 0.0
        ri, ci = np.nonzero(nz)
        w = extra_cols.shape[1]
        rows = np.concatenate([base[ri], np.repeat(base, w)])
        cols = np.concatenate([ci.astype(np.int64), extra_cols.reshape(-1)])
        vals = np.concatenate([ax[ri, ci], extra_vals.reshape(-1)])
        self._r.append(rows)
        self._c.append(cols)
        self._v.append(vals)
        self._lo.append(np.full(r, -INF))
        self._hi.append(np.asarray(hi, np.float64))
        self.n_rows += r

    def add_eq(self, aff: Aff) -> int:
        return self.add_row(aff, 0.0, 0.0)

    def emit(self, node: Node) -> Aff:
        """The epigraph form of ``node`` (emitted once; shared sub-expressions reuse it)."""
        key = id(node)
        if key not in self._emitted:
            self._emitted[key] = node.emit(self)
            self._keep.append(node)
        return Aff(self._emitted[key].coef, self._emitted[key].const)

    # -- solving ---------------------------------------------------------------------------------
    def _matrix(self) -> tuple[sparse.csr_matrix, FloatArray, FloatArray]:
        n = self.n_vars
        rows = np.concatenate(self._r) if self._r else np.zeros(0, np.int64)
        cols = np.concatenate(self._c) if self._c else np.zeros(0, np.int64)
        vals = np.concatenate(self._v) if self._v else np.zeros(0)
        a = sparse.coo_matrix((vals, (rows, cols)), shape=(self.n_rows, n)).tocsr()
        lo = np.concatenate(self._lo) if self._lo else np.zeros(0)
        hi = np.concatenate(self._hi) if self._hi else np.zeros(0)
        return a, lo, hi

    def solve(self, objective: Aff, time_limit: float = 10.0, mip_rel_gap: float = 1e-6,
              max_rounds: int = 60) -> Solution:
        """Minimise ``objective``, adding violated lazy rows until none is left."""
        t0 = time.perf_counter()
        rounds = 0
        status, msg = "failed", ""
        values = np.zeros(self.n_vars)
        fun, gap, bound = math.nan, math.nan, math.nan
        has_int = any(self.integer)
        while rounds < max_rounds:
            rounds += 1
            c = np.zeros(self.n_vars)
            c[: len(self.cost)] += np.asarray(self.cost)
            for k, v in objective.coef.items():
                c[k] += v
            a, lo, hi = self._matrix()
            left = max(time_limit - (time.perf_counter() - t0), 0.05)
            opts: dict[str, Any] = {"time_limit": left, "disp": False, "presolve": True}
            if has_int:
                opts["mip_rel_gap"] = mip_rel_gap
            res = milp(c, integrality=np.asarray(self.integer) if has_int else None,
                       bounds=Bounds(np.asarray(self.lb), np.asarray(self.ub)),
                       constraints=LinearConstraint(a, lo, hi) if a.shape[0] else None,
                       options=opts)
            msg = str(res.message)
            dual = getattr(res, "mip_dual_bound", None)
            if res.x is None:
                status = "infeasible" if res.status == 2 else "failed"
                if has_int and dual is not None and math.isfinite(float(dual)):
                    bound = float(dual) + objective.const
                break
            values = np.asarray(res.x, np.float64)
            fun = float(res.fun) + objective.const
            gap = float(getattr(res, "mip_gap", 0.0) or 0.0) if has_int else 0.0
            bound = (float(dual) + objective.const) if (has_int and dual is not None) else fun
            status = "optimal" if res.status == 0 else "time_limit"
            added = sum(node.refine(self, values) for node in self.lazy)
            if added == 0:
                break
            status = "time_limit"  # rows still violated: a relaxation until solved again
            if time.perf_counter() - t0 > time_limit:
                break
        return Solution(values, fun, status, gap, bound, rounds, self.n_rows, self.n_vars,
                        time.perf_counter() - t0, msg)


# -- expression nodes --------------------------------------------------------------------------
class Node(ABC):
    """A convex function of the trade vector ``x`` (shape (m,))."""

    affine = False

    @abstractmethod
    def value(self, x: FloatArray) -> float:
        """Exact value at ``x``."""

    @abstractmethod
    def emit(self, lp: LinearProgram) -> Aff:
        """Epigraph form: an affine form over LP variables that is >= the value, tight at the
        optimum of any minimisation it feeds."""

    def refine(self, lp: LinearProgram, values: FloatArray) -> int:
        """Add rows the solution ``values`` violates; returns how many (lazy nodes only)."""
        return 0

    def children(self) -> Sequence[Node]:
        return ()

    @abstractmethod
    def batch(self, xs: FloatArray) -> FloatArray:
        """Values at many trades at once: ``xs`` (m, G) -> (G,)."""

    @abstractmethod
    def line(self, ts: FloatArray, x0: FloatArray | None = None) -> FloatArray:
        """Values along the coordinate lines through ``x0`` (default 0): ``ts`` (m, G) ->
        (m, G), entry ``(c, g)`` at the trade ``x0 + ts[c, g] * e_c``."""

    @abstractmethod
    def _restrict(self, cols: IntArray, memo: dict[int, Node]) -> Node:
        """The same function of the trade ``x[cols]`` only (other legs held at zero)."""


def restrict(node: Node, cols: Sequence[int] | IntArray) -> Node:
    """``node`` as a function of the legs ``cols`` only; shared sub-expressions stay shared
    and lazy scenario nodes keep the rows found active so far (``seed``)."""
    return node._restrict(np.asarray(cols, np.int64), {})


def _memo(node: Node, memo: dict[int, Node], build: Any) -> Node:
    key = id(node)
    if key not in memo:
        memo[key] = build()
    return memo[key]


def harvest(lp: LinearProgram) -> None:
    """Remember on each lazy node the rows active in ``lp`` (next programmes start there)."""
    for node in lp.lazy:
        if isinstance(node, _Rows):
            active = lp.state[id(node)][-1]
            rows = np.flatnonzero(active)
            node.seed = rows if node.seed is None else np.union1d(node.seed, rows)


def walk(root: Node) -> list[Node]:
    """Every node under ``root`` once, children first."""
    seen: set[int] = set()
    out: list[Node] = []

    def rec(n: Node) -> None:
        if id(n) in seen:
            return
        seen.add(id(n))
        for ch in n.children():
            rec(ch)
        out.append(n)

    rec(root)
    return out


class Lin(Node):
    """``c0 + c @ x``."""

    affine = True

    def __init__(self, c: FloatArray | None, c0: float = 0.0, m: int | None = None) -> None:
        if c is None:
            if m is None:
                raise ValueError("Lin needs c or m")
            c = np.zeros(m)
        self.c = np.asarray(c, np.float64)
        self.c0 = float(c0)

    def value(self, x: FloatArray) -> float:
        return self.c0 + float(self.c @ x)

    def batch(self, xs: FloatArray) -> FloatArray:
        out: FloatArray = self.c0 + self.c @ xs
        return out

    def line(self, ts: FloatArray, x0: FloatArray | None = None) -> FloatArray:
        c0 = self.c0 if x0 is None else self.c0 + float(self.c @ x0)
        out: FloatArray = c0 + self.c[:, None] * ts
        return out

    def _restrict(self, cols: IntArray, memo: dict[int, Node]) -> Node:
        return _memo(self, memo, lambda: Lin(self.c[cols], self.c0))

    def emit(self, lp: LinearProgram) -> Aff:
        nz = np.flatnonzero(self.c)
        return Aff({int(i): float(self.c[i]) for i in nz}, self.c0)

    def scaled(self, w: float) -> Lin:
        return Lin(self.c * w, self.c0 * w)

    def __add__(self, other: Lin) -> Lin:
        return Lin(self.c + other.c, self.c0 + other.c0)

    def __neg__(self) -> Lin:
        return self.scaled(-1.0)


class Sum(Node):
    """``const + sum w_i f_i`` (``w_i >= 0`` unless ``f_i`` is affine)."""

    def __init__(self, terms: Iterable[tuple[float, Node]], const: float = 0.0) -> None:
        self.terms = [(float(w), n) for w, n in terms]
        self.const = float(const)
        for w, n in self.terms:
            if w < 0.0 and not n.affine:
                raise ValueError("negative weight on a non-affine term breaks convexity")
        self.affine = all(n.affine for _, n in self.terms)

    def children(self) -> Sequence[Node]:
        return [n for _, n in self.terms]

    def value(self, x: FloatArray) -> float:
        return self.const + sum(w * n.value(x) for w, n in self.terms)

    def batch(self, xs: FloatArray) -> FloatArray:
        out = np.full(xs.shape[1], self.const)
        for w, n in self.terms:
            if w != 0.0:
                out += w * n.batch(xs)
        return out

    def line(self, ts: FloatArray, x0: FloatArray | None = None) -> FloatArray:
        out = np.full(ts.shape, self.const)
        for w, n in self.terms:
            if w != 0.0:
                out += w * n.line(ts, x0)
        return out

    def _restrict(self, cols: IntArray, memo: dict[int, Node]) -> Node:
        return _memo(self, memo, lambda: Sum([(w, n._restrict(cols, memo))
                                              for w, n in self.terms], self.const))

    def emit(self, lp: LinearProgram) -> Aff:
        out = Aff(None, self.const)
        for w, n in self.terms:
            if w != 0.0:
                out.add(lp.emit(n), w)
        return out


class Max(Node):
    """``max_i f_i``."""

    def __init__(self, items: Sequence[Node]) -> None:
        if not items:
            raise ValueError("Max of nothing")
        self.items = list(items)

    def children(self) -> Sequence[Node]:
        return self.items

    def value(self, x: FloatArray) -> float:
        return max(n.value(x) for n in self.items)

    def batch(self, xs: FloatArray) -> FloatArray:
        out: FloatArray = np.max(np.stack([n.batch(xs) for n in self.items]), axis=0)
        return out

    def line(self, ts: FloatArray, x0: FloatArray | None = None) -> FloatArray:
        out = self.items[0].line(ts, x0)
        for n in self.items[1:]:
            out = np.maximum(out, n.line(ts, x0))
        return out

    def _restrict(self, cols: IntArray, memo: dict[int, Node]) -> Node:
        return _memo(self, memo, lambda: Max([n._restrict(cols, memo) for n in self.items]))

    def emit(self, lp: LinearProgram) -> Aff:
        if len(self.items) == 1:
            return lp.emit(self.items[0])
        v = lp.new_var()
        for n in self.items:
            lp.add_row(lp.emit(n).add(Aff({v: 1.0}), -1.0))
        return Aff({v: 1.0})


def const(value: float, m: int) -> Lin:
    return Lin(np.zeros(m), value)


def pos(node: Node, m: int) -> Max:
    """``max(0, f)``."""
    return Max([node, const(0.0, m)])


def absolute(lin: Lin) -> Max:
    """``|c0 + c @ x|``."""
    return Max([lin, -lin])


class _Rows(Node):
    """Scenario losses ``L = base + A @ x`` (base (n,), A (n, m)), lazily added rows."""

    def __init__(self, base: FloatArray, a: FloatArray, initial: int = 48) -> None:
        self.base = np.ascontiguousarray(base, np.float64)
        self.a = np.ascontiguousarray(a, np.float64)
        if self.a.ndim != 2 or self.a.shape[0] != self.base.shape[0]:
            raise ValueError("A must have shape (n_rows, m) matching base")
        self.initial = initial
        self.seed: IntArray | None = None

    def losses(self, x: FloatArray) -> FloatArray:
        out: FloatArray = self.base + self.a @ x
        return out

    def batch_losses(self, xs: FloatArray) -> FloatArray:
        out: FloatArray = self.base[:, None] + self.a @ xs
        return out

    def _line(self, ts: FloatArray, x0: FloatArray | None, reduce: Any) -> FloatArray:
        m, g = ts.shape
        out = np.empty((m, g))
        base = self.base if x0 is None else self.base + self.a @ x0
        step = max(1, int(4_000_000 // max(1, self.base.shape[0] * g)))
        for i in range(0, m, step):
            j = min(m, i + step)
            loss = (base[:, None, None] + self.a[:, i:j, None] * ts[None, i:j, :])
            out[i:j] = reduce(loss.reshape(self.base.shape[0], -1)).reshape(j - i, g)
        return out

    def _first_rows(self, lp: LinearProgram, r: int) -> IntArray:
        n = self.base.shape[0]
        if n <= r:
            return np.arange(n, dtype=np.int64)
        at = self.losses(lp.hint)
        at0 = self.base
        top = np.argpartition(-at, r - 1)[:r]
        top0 = np.argpartition(-at0, r - 1)[:r]
        parts = [top, top0] + ([self.seed] if self.seed is not None else [])
        return np.unique(np.concatenate(parts)).astype(np.int64)

    @staticmethod
    def _tol(level: float) -> float:
        return 1e-7 * (1.0 + abs(level)) + 1e-9


class ScenMax(_Rows):
    """``max_j L_j`` (worst loss over the rows)."""

    def value(self, x: FloatArray) -> float:
        return float(self.losses(x).max()) if self.base.size else -INF

    def batch(self, xs: FloatArray) -> FloatArray:
        out: FloatArray = self.batch_losses(xs).max(axis=0)
        return out

    def line(self, ts: FloatArray, x0: FloatArray | None = None) -> FloatArray:
        return self._line(ts, x0, lambda a: a.max(axis=0))

    def _restrict(self, cols: IntArray, memo: dict[int, Node]) -> Node:
        def build() -> Node:
            n = ScenMax(self.base, self.a[:, cols], self.initial)
            n.seed = self.seed
            return n
        return _memo(self, memo, build)

    def emit(self, lp: LinearProgram) -> Aff:
        r = lp.new_var()
        rows = self._first_rows(lp, self.initial)
        active = np.zeros(self.base.shape[0], bool)
        self._add(lp, r, rows)
        active[rows] = True
        lp.state[id(self)] = (r, active)
        lp.lazy.append(self)
        return Aff({r: 1.0})

    def _add(self, lp: LinearProgram, r: int, rows: IntArray) -> None:
        k = rows.size
        lp.add_dense_rows(self.a[rows], np.full((k, 1), r, np.int64), np.full((k, 1), -1.0),
                          -self.base[rows])

    def refine(self, lp: LinearProgram, values: FloatArray) -> int:
        r, active = lp.state[id(self)]
        lv = self.losses(values[: lp.n_x])
        level = float(values[r])
        bad = np.flatnonzero(~active & (lv > level + self._tol(level)))
        if bad.size:
            if bad.size > 64:
                bad = bad[np.argsort(-lv[bad])[:64]]
            self._add(lp, r, bad.astype(np.int64))
            active[bad] = True
        return int(bad.size)


class ScenES(_Rows):
    """Expected shortfall of ``L`` with tail count ``k = N (1 - conf)`` (Acerbi-Tasche)."""

    def __init__(self, base: FloatArray, a: FloatArray, k: float, initial: int | None = None
                 ) -> None:
        if not k > 0.0:
            raise ValueError("tail count must be positive")
        n = base.shape[0]
        # at least k + 1 rows from the start: with fewer the restricted form is unbounded in t
        need = int(math.ceil(k)) + 1
        super().__init__(base, a, max(initial or max(2 * need + 16, 48), need))
        self.k = min(float(k), float(n))

    def value(self, x: FloatArray) -> float:
        return es_of_losses(self.losses(x), self.k)

    def batch(self, xs: FloatArray) -> FloatArray:
        return es_batch(self.batch_losses(xs), self.k)

    def line(self, ts: FloatArray, x0: FloatArray | None = None) -> FloatArray:
        return self._line(ts, x0, lambda a: es_batch(a, self.k))

    def _restrict(self, cols: IntArray, memo: dict[int, Node]) -> Node:
        def build() -> Node:
            n = ScenES(self.base, self.a[:, cols], self.k, self.initial)  # keeps k + 1 rows
            n.seed = self.seed
            return n
        return _memo(self, memo, build)

    def emit(self, lp: LinearProgram) -> Aff:
        t = lp.new_var()
        e = lp.new_var()
        # e >= t + (1/k) sum u_j  (u_j added with their rows)
        row = lp.add_row(Aff({t: 1.0, e: -1.0}))
        active = np.zeros(self.base.shape[0], bool)
        lp.state[id(self)] = (t, e, row, active)
        self._add(lp, self._first_rows(lp, self.initial))
        lp.lazy.append(self)
        return Aff({e: 1.0})

    def _add(self, lp: LinearProgram, rows: IntArray) -> None:
        t, _, row, active = lp.state[id(self)]
        k = rows.size
        u = lp.new_vars(k, 0.0, INF)
        lp.add_to_row(row, u, np.full(k, 1.0 / self.k))
        extra = np.stack([np.full(k, t, np.int64), u], axis=1)
        vals = np.tile(np.array([-1.0, -1.0]), (k, 1))
        lp.add_dense_rows(self.a[rows], extra, vals, -self.base[rows])
        active[rows] = True

    def refine(self, lp: LinearProgram, values: FloatArray) -> int:
        t, _, _, active = lp.state[id(self)]
        lv = self.losses(values[: lp.n_x])
        level = float(values[t])
        bad = np.flatnonzero(~active & (lv > level + self._tol(level)))
        if bad.size:
            if bad.size > 128:
                bad = bad[np.argsort(-lv[bad])[:128]]
            self._add(lp, bad.astype(np.int64))
        return int(bad.size)


def es_of_losses(losses: FloatArray, k: float) -> float:
    """Acerbi-Tasche ES with tail count ``k``: mean of the ``k`` largest, last one fractional."""
    n = losses.shape[0]
    k = min(k, float(n))
    m = int(math.floor(k + 1e-12))
    frac = k - m
    srt = -np.sort(-losses)
    total = float(srt[:m].sum())
    if frac > 1e-12 and m < n:
        total += frac * float(srt[m])
    return total / k


def es_batch(losses: FloatArray, k: float) -> FloatArray:
    """:func:`es_of_losses` of every column of ``losses`` (n, G)."""
    n = losses.shape[0]
    k = min(k, float(n))
    m = int(math.floor(k + 1e-12))
    frac = k - m
    top = min(m + 1, n)
    part = -np.partition(-losses, top - 1, axis=0)[:top] if top < n else losses
    srt = -np.sort(-part, axis=0)
    total = srt[:m].sum(axis=0)
    if frac > 1e-12 and m < n:
        total = total + frac * srt[m]
    out: FloatArray = total / k
    return out


class PowAbs(Node):
    """``coef * |c0 + c @ x| ** p`` (``p >= 1``, ``coef >= 0``) by tangent cuts.

    ``scale`` is a typical size of ``|q|`` (where the first cuts go).
    """

    def __init__(self, lin: Lin, coef: float, p: float, scale: float) -> None:
        if p < 1.0 or coef < 0.0:
            raise ValueError("PowAbs needs p >= 1 and coef >= 0")
        self.lin, self.coef, self.p = lin, float(coef), float(p)
        self.scale = max(float(scale), 1e-12)

    def children(self) -> Sequence[Node]:
        return [self.lin]

    def value(self, x: FloatArray) -> float:
        return float(self.coef * abs(self.lin.value(x)) ** self.p)

    def batch(self, xs: FloatArray) -> FloatArray:
        out: FloatArray = self.coef * np.abs(self.lin.batch(xs)) ** self.p
        return out

    def line(self, ts: FloatArray, x0: FloatArray | None = None) -> FloatArray:
        out: FloatArray = self.coef * np.abs(self.lin.line(ts, x0)) ** self.p
        return out

    def _restrict(self, cols: IntArray, memo: dict[int, Node]) -> Node:
        def build() -> Node:
            lin = self.lin._restrict(cols, memo)
            assert isinstance(lin, Lin)
            return PowAbs(lin, self.coef, self.p, self.scale)
        return _memo(self, memo, build)

    def _cut(self, lp: LinearProgram, s: int, q0: float) -> None:
        g = self.coef * abs(q0) ** self.p
        d = self.coef * self.p * abs(q0) ** (self.p - 1.0) * math.copysign(1.0, q0)
        # g + d (q - q0) <= s
        aff = lp.emit(self.lin)
        cut = Aff({k: d * v for k, v in aff.coef.items()}, d * aff.const + g - d * q0)
        cut.add(Aff({s: -1.0}))
        lp.add_row(cut)

    def emit(self, lp: LinearProgram) -> Aff:
        s = lp.new_var(0.0, INF)
        q_hint = self.lin.value(lp.hint)
        pts = {0.0, q_hint, *(sg * self.scale * f for sg in (-1.0, 1.0)
                              for f in (0.0625, 0.125, 0.25, 0.5, 1.0, 2.0))}
        if self.coef > 0.0:
            for q0 in sorted(pts):
                self._cut(lp, s, q0)
        lp.state[id(self)] = s
        lp.lazy.append(self)
        return Aff({s: 1.0})

    def refine(self, lp: LinearProgram, values: FloatArray) -> int:
        if self.coef == 0.0:
            return 0
        s = lp.state[id(self)]
        q = self.lin.value(values[: lp.n_x])
        have = float(values[s])
        want = self.coef * abs(q) ** self.p
        if want - have > 1e-7 * (1.0 + abs(want)) + 1e-9:
            self._cut(lp, s, q)
            return 1
        return 0
