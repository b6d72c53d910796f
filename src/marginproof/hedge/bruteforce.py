"""The naive baseline: grid search over the candidates' quantities with the real model (pure).

Every combination of ``levels`` quantities per candidate (evenly spaced over its size limits,
zero included, rounded to lots) is re-margined with ``model.margin``. Exponential in the number
of candidates: only for small cases (tests, and the benchmark's ratio).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from marginproof.hedge.candidates import CandidateSet
from marginproof.hedge.optimize import _Evaluator, _Point
from marginproof.hedge.quotes import round_to_lot
from marginproof.instruments.portfolio import Portfolio
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.base import MarginModel

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class BruteForce:
    """Best grid point: quantities (natural units), IM (USD), cost, evaluations, seconds."""

    quantities: FloatArray
    im_usd: float
    cost_usd: float
    objective: float
    evaluations: int
    seconds: float


def grid_levels(cands: CandidateSet, levels: int,
                spans: FloatArray | None = None) -> list[FloatArray]:
    """Quantities tried per candidate: ``levels`` points over ``[-span, span]`` within the size
    limits (default span: the size limits), zero included, rounded to lots."""
    out = []
    for i, c in enumerate(cands.candidates):
        lo = c.max_sell if spans is None else min(c.max_sell, float(spans[i]))
        hi = c.max_buy if spans is None else min(c.max_buy, float(spans[i]))
        pts = np.concatenate([np.linspace(-lo, hi, levels), [0.0]])
        q = sorted({round_to_lot(float(v), c.lot, c.max_sell, c.max_buy) for v in pts})
        out.append(np.array(q))
    return out


def brute_force(model: MarginModel, portfolio: Portfolio, market: MarketSnapshot,
                cands: CandidateSet, levels: int = 11, rhs: float | None = None, w: float = 1.0,
                spans: FloatArray | None = None, max_evals: int = 200_000) -> BruteForce:
    """Minimise IM + cost (or cost subject to ``IM + w cost <= rhs``) over the grid."""
    t0 = time.perf_counter()
    ev = _Evaluator(model, portfolio, market, cands)
    grids = grid_levels(cands, levels, spans)
    n = math.prod(len(g) for g in grids)
    if n > max_evals:
        raise ValueError(f"{n} grid points exceed max_evals={max_evals}")
    best: _Point | None = None
    for combo in itertools.product(*grids):
        p = ev.natural(np.array(combo, dtype=np.float64))
        if best is None or p.objective(rhs, w) < best.objective(rhs, w):
            best = p
    assert best is not None
    return BruteForce(best.q, best.im_usd, best.cost, best.objective(rhs, w), ev.calls,
                      time.perf_counter() - t0)
