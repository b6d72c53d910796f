"""Full revaluation of a resolved book under price/vol scenarios, P&L in USD.

USD value conventions (``S`` index, ``F`` the contract's forward, ``m`` the relative move):

* spot, linear futures/perps: ``q * F * m``;
* inverse futures/perps (``q`` USD face): coin P&L ``q (1/F - 1/F')`` worth ``q m S / F`` USD
  at the scenario index ``S' = S (1 + m)``;
* options: ``q * (V(F', vol') - V(F, vol))`` for linear options; an inverse option is worth
  ``V/F`` coins, i.e. ``(S/F) V`` USD, so its USD P&L is ``(S/F)`` times the linear one.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from marginproof.instruments.resolved import ResolvedBook
from marginproof.pricing import dispatch


def scenario_pnl_usd(
    book: ResolvedBook,
    moves: NDArray[np.float64],
    vol_mult: NDArray[np.float64] | None = None,
    vol_floor: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """USD P&L of every position in every scenario.

    Parameters
    ----------
    book : ResolvedBook
    moves : ndarray, shape (n_scenarios, n_positions)
        Relative move of each position's underlying in each scenario.
    vol_mult : ndarray, shape (n_scenarios, n_positions), optional
        Multiplier on option vols (1 = unchanged).
    vol_floor : ndarray, shape (n_scenarios, n_positions), optional
        Lower bound on shocked vols.

    Returns
    -------
    ndarray, shape (n_scenarios, n_positions)
        Gains positive, losses negative, in USD, scaled by position quantities.
    """
    moves = np.ascontiguousarray(moves, dtype=np.float64)
    n_scen, n = moves.shape
    if n != len(book):
        raise ValueError("moves must have one column per position")
    unit = np.empty((n_scen, n))
    inv = book.is_inverse
    opt = book.is_option
    lin1 = ~opt & ~inv
    inv1 = ~opt & inv
    unit[:, lin1] = book.forward[lin1] * moves[:, lin1]
    unit[:, inv1] = moves[:, inv1] * (book.index[inv1] / book.forward[inv1])
    if opt.any():
        f = np.ascontiguousarray(book.forward[opt])
        k = np.ascontiguousarray(book.strike[opt])
        t = np.ascontiguousarray(book.t_years[opt])
        s = np.ascontiguousarray(book.vol[opt])
        c = np.ascontiguousarray(book.is_call[opt])
        d = np.exp(-book.rate[opt] * t)
        vm = np.ones((n_scen, f.shape[0])) if vol_mult is None else np.ascontiguousarray(
            vol_mult[:, opt])
        vf = np.zeros((n_scen, f.shape[0])) if vol_floor is None else np.ascontiguousarray(
            vol_floor[:, opt])
        base = np.empty(f.shape[0])
        dispatch.price_kernel(f.shape[0])(f, k, t, s, c, d, base)
        shocked = np.empty((n_scen, f.shape[0]))
        kern = dispatch.scenario_kernel(f.shape[0] * n_scen)
        kern(f, k, t, s, c, d, np.ascontiguousarray(moves[:, opt]), vm, vf, shocked)
        scale = np.where(inv[opt], book.index[opt] / f, 1.0)
        unit[:, opt] = (shocked - base) * scale
    return unit * book.quantity
