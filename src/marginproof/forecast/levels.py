"""Call levels: the move of one underlying at which the account's status changes.

The portfolio-margin analogue of a liquidation price. For underlying ``u`` and a log move
``m``, the other factors take their conditional expectation given ``r_u = m`` under the
dynamics' residual correlations, ``E[f | r_u = m] = rho(f, r_u) sigma_f / sigma_u m`` (the
implied vols included: a crash comes with its usual vol rise); the book is revalued at once
(no time passes) and margined by the model. The level is the nearest move, on each side, where
equity - IM (call) or equity - MM (liquidation) changes sign: a scan of ``n_grid`` moves from
-95 % to +300 %, refined by Brent's method (``scipy.optimize.brentq``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import brentq

from marginproof.forecast.dynamics import FactorDynamics
from marginproof.forecast.result import CallLevel
from marginproof.forecast.states import StepStates

FloatArray = NDArray[np.float64]
LOG_MIN, LOG_MAX = math.log(0.05), math.log(4.0)


def conditional_betas(dyn: FactorDynamics, u: int) -> tuple[FloatArray, FloatArray]:
    """Log move of every return and IV factor per unit log move of return ``u``."""
    n = len(dyn.underlyings)
    s = dyn.sigma
    if s[u] <= 0:
        return np.eye(n)[u], np.zeros(n)
    beta = dyn.corr[u] * s / s[u]
    beta[u] = 1.0
    if not dyn.iv_shocks:
        beta[n:] = 0.0
    return np.asarray(beta[:n], dtype=np.float64), np.asarray(beta[n:], dtype=np.float64)


def call_levels(dyn: FactorDynamics, index: FloatArray,
                excess_fn: Callable[[StepStates], tuple[FloatArray, FloatArray]],
                n_pos: int, n_grid: int = 96) -> tuple[CallLevel, ...]:
    """Call levels of every underlying of ``dyn``.

    Parameters
    ----------
    dyn : FactorDynamics
    index : ndarray, shape (n_u,)
        Index prices now.
    excess_fn : callable
        ``states -> (equity - IM, equity - MM)`` per state, at time 0.
    n_pos : int
        Positions of the book (for the states' funding array).
    """
    n = len(dyn.underlyings)
    grid = np.linspace(LOG_MIN, LOG_MAX, n_grid)
    grid = np.unique(np.concatenate([grid, [0.0]]))
    out = []
    for u in range(n):
        br, bv = conditional_betas(dyn, u)

        def states(m: FloatArray, br: FloatArray = br, bv: FloatArray = bv) -> StepStates:
            x = np.exp(np.outer(m, br))
            y = np.exp(np.outer(m, bv))
            one = np.ones_like(x)
            return StepStates(0.0, x, y, one, one.copy(), None, np.full((m.shape[0], n_pos),
                                                                        np.nan),
                              np.ones(n_pos, bool))

        ec, el = excess_fn(states(grid))
        i0 = int(np.searchsorted(grid, 0.0))
        levels: dict[str, float | None] = {}
        for name, g, k in (("call", ec, 0), ("liquidation", el, 1)):
            for side, rng in (("down", range(i0, 0, -1)), ("up", range(i0, len(grid) - 1))):
                levels[f"{name}_{side}"] = None
                if g[i0] < 0.0:
                    levels[f"{name}_{side}"] = 0.0
                    continue
                for i in rng:
                    j = i - 1 if side == "down" else i + 1
                    if g[j] < 0.0 <= g[i]:
                        def f(m: float, k: int = k) -> float:
                            r = excess_fn(states(np.array([m])))[k]
                            return float(r[0])
                        a, b = (grid[j], grid[i]) if side == "down" else (grid[i], grid[j])
                        try:
                            root = brentq(f, a, b, xtol=1e-6)
                        except ValueError:  # not bracketed after all (numerical noise)
                            root = grid[j]
                        levels[f"{name}_{side}"] = float(math.expm1(root))
                        break
        out.append(CallLevel(dyn.underlyings[u], float(index[u]), levels["call_down"],
                             levels["call_up"], levels["liquidation_down"],
                             levels["liquidation_up"],
                             {**{f"{v}": float(br[i]) for i, v in enumerate(dyn.underlyings)},
                              **{f"{v}:iv": float(bv[i]) for i, v in
                                 enumerate(dyn.underlyings)}}))
    return tuple(out)
