"""Convex expressions: exact values against the project's measures, LP forms against their
full (non-lazy) versions, batch/line/restrict reference twins."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from marginproof.hedge.convex import (
    Lin,
    LinearProgram,
    Max,
    PowAbs,
    ScenES,
    ScenMax,
    Sum,
    absolute,
    es_batch,
    es_of_losses,
    pos,
    restrict,
)
from marginproof.risk.measures import expected_shortfall, tail_count


@settings(max_examples=80, deadline=None)
@given(arrays(np.float64, st.integers(1, 400), elements=st.floats(-1e6, 1e6)),
       st.sampled_from([0.5, 0.9, 0.95, 0.975, 0.99, 0.999]))
def test_es_node_is_the_acerbi_tasche_estimator(losses: np.ndarray, conf: float) -> None:
    k = tail_count(losses.size, conf)
    if k <= 0:
        return
    want = expected_shortfall(losses, conf)
    assert es_of_losses(losses, k) == pytest.approx(want, rel=1e-12, abs=1e-9)
    assert es_batch(np.stack([losses, -losses], axis=1), k)[0] == pytest.approx(want, rel=1e-12,
                                                                                 abs=1e-9)


def _problem(seed: int, n: int = 400, m: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=n) * 50.0, rng.normal(size=(n, m)) * 10.0


def _l1(m: int, w: float) -> list[tuple[float, Max]]:
    return [(w, absolute(Lin(np.eye(m)[i]))) for i in range(m)]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", ["es", "max"])
def test_lazy_rows_reach_the_full_programme_optimum(seed: int, kind: str) -> None:
    base, a = _problem(seed)
    m = a.shape[1]
    box = np.full(m, 3.0)
    out = []
    for initial in (8, base.size):  # lazy from 8 rows, and every row from the start
        node = ScenES(base, a, 10.0, initial) if kind == "es" else ScenMax(base, a, initial)
        obj = Sum([(1.0, node), *_l1(m, 2.0)])
        lp = LinearProgram(m, -box, box)
        sol = lp.solve(lp.emit(obj))
        assert sol.status == "optimal"
        assert obj.value(sol.values[:m]) == pytest.approx(sol.objective, rel=1e-7, abs=1e-7)
        out.append((sol.objective, sol.rows))
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-9, abs=1e-9)
    assert out[0][1] < out[1][1]  # with far fewer rows


def test_tangent_cuts_reach_the_power_minimum() -> None:
    m = 3
    q = Lin(np.ones(m))
    obj = Sum([(1.0, PowAbs(q, 2.0, 1.5, 3.0)), (1.0, Lin(-np.ones(m)))])
    lp = LinearProgram(m, -np.full(m, 5.0), np.full(m, 5.0))
    sol = lp.solve(lp.emit(obj))
    # minimise 2 |q|^1.5 - q: q* = (1/3)^2, value -1/27
    assert sol.values[:m].sum() == pytest.approx(1.0 / 9.0, rel=1e-3)
    assert sol.objective == pytest.approx(-1.0 / 27.0, rel=1e-6)


def _tree(seed: int) -> tuple[Sum, int]:
    base, a = _problem(seed, 200, 5)
    m = a.shape[1]
    lin = Lin(np.arange(1.0, m + 1), 0.3)
    tree = Sum([(1.0, Max([pos(ScenES(base, a, 5.0), m), ScenMax(base * 0.5, a * 0.3)])),
                (0.7, absolute(lin)), (1.0, PowAbs(lin, 0.2, 1.5, 1.0))], 4.0)
    return tree, m


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 5), arrays(np.float64, (5, 7), elements=st.floats(-3, 3)))
def test_batch_line_and_restrict_match_value(seed: int, xs: np.ndarray) -> None:
    tree, m = _tree(seed)
    want = [tree.value(xs[:, g]) for g in range(xs.shape[1])]
    np.testing.assert_allclose(tree.batch(xs), want, rtol=1e-11, atol=1e-9)
    line = tree.line(xs)
    for c in range(m):
        for g in range(xs.shape[1]):
            x = np.zeros(m)
            x[c] = xs[c, g]
            assert line[c, g] == pytest.approx(tree.value(x), rel=1e-11, abs=1e-9)
    x0 = xs[:, 0]
    line0 = tree.line(xs, x0)
    x = x0.copy()
    x[2] += xs[2, 3]
    assert line0[2, 3] == pytest.approx(tree.value(x), rel=1e-11, abs=1e-9)
    legs = [1, 3]
    sub = restrict(tree, legs)
    x = np.zeros(m)
    x[legs] = xs[legs, 0]
    assert sub.value(xs[legs, 0]) == pytest.approx(tree.value(x), rel=1e-12, abs=1e-9)


def test_negative_weight_on_a_convex_term_is_refused() -> None:
    with pytest.raises(ValueError, match="convexity"):
        Sum([(-1.0, ScenMax(np.zeros(3), np.zeros((3, 1))))])


def test_infeasible_programme_is_reported() -> None:
    lp = LinearProgram(1, np.array([0.0]), np.array([1.0]))
    lp.add_row(Lin(np.array([-1.0]), 2.0).emit(lp))  # 2 - x <= 0 with x <= 1
    sol = lp.solve(lp.emit(Lin(np.array([1.0]))))
    assert sol.status == "infeasible"
    assert math.isnan(sol.objective)
