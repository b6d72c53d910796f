"""Per-instrument scenario P&L for one unit of quantity (the engine's cache).

For the ``grid`` model a position's scenario P&L is its quantity times the P&L of one unit
(:func:`marginproof.scenarios.revalue.scenario_pnl_usd` multiplies by quantity last), so one
column per instrument, recomputed when its underlying's market moves, serves every account.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from marginproof.engine.market_state import instrument
from marginproof.errors import InputError
from marginproof.instruments.portfolio import Portfolio, Position
from marginproof.instruments.resolved import ResolvedBook, resolve
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.grid import GridModel
from marginproof.scenarios.revalue import scenario_pnl_usd


@dataclass(frozen=True)
class UnitColumns:
    """Unit scenario data of some instruments of one underlying at one market time.

    Attributes
    ----------
    names : tuple of str, length n_instruments
    pnl_t : ndarray, shape (n_instruments, n_scenarios)
        USD P&L of one unit in each scenario (transposed: one row per instrument).
    value_usd : ndarray, shape (n_instruments,)
        USD value of one unit counted in account equity: spot price, option mark; 0 for
        futures and perpetuals (their P&L is settled into collateral).
    option_units : ndarray, shape (n_instruments,)
        Coins of option exposure per unit (contract size), 0 for non-options.
    priced : bool ndarray, shape (n_instruments,)
        False where the instrument could not be resolved (no vol, expired ...): its
        columns are zero and the accounts holding it are held, not lowered.
    problems : tuple of str
        One line per unpriced instrument.
    """

    names: tuple[str, ...]
    pnl_t: NDArray[np.float64]
    value_usd: NDArray[np.float64]
    option_units: NDArray[np.float64]
    priced: NDArray[np.bool_]
    problems: tuple[str, ...]


def _unit_values(book: ResolvedBook) -> NDArray[np.float64]:
    spot = book.kind == 0
    opt = book.is_option
    out = np.zeros(len(book))
    out[spot] = book.forward[spot]
    out[opt] = book.mark_usd[opt]
    return out


def _compute(model: GridModel, market: MarketSnapshot, names: Sequence[str]
             ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    book = resolve(Portfolio(tuple(Position(instrument(n), 1.0) for n in names)), market)
    moves, vol_mult, vol_floor = model.scenario_matrices(book)
    pnl = scenario_pnl_usd(book, moves, vol_mult, vol_floor)  # (n_scen, n)
    return np.ascontiguousarray(pnl.T), _unit_values(book)


def unit_columns(model: GridModel, market: MarketSnapshot, names: Sequence[str]) -> UnitColumns:
    """Unit scenario P&L of ``names`` (all of one underlying) at ``market``.

    Instruments that cannot be resolved get zero columns and ``priced=False``; the others are
    computed together (the computation is column-wise, so the result does not depend on which
    other instruments are in the batch).
    """
    n = len(names)
    n_scen = len(model.scenario_labels())
    opt_units = np.array([instrument(x).contract_size if instrument(x).is_option else 0.0
                          for x in names])
    if n == 0:
        return UnitColumns((), np.zeros((0, n_scen)), np.zeros(0), opt_units, np.zeros(0, bool),
                           ())
    pnl_t = np.zeros((n, n_scen))
    value = np.zeros(n)
    priced = np.zeros(n, bool)
    problems: list[str] = []
    # cheap pre-checks first (expired, no vol, no index), so one bad instrument does not
    # send the whole batch down the one-by-one path
    ok: list[int] = []
    for i, name in enumerate(names):
        inst = instrument(name)
        if inst.underlying not in market.index_prices:
            problems.append(f"{name}: no index price for {inst.underlying}")
        elif inst.expiry is not None and inst.expiry <= market.timestamp:
            problems.append(f"{name}: expired at {inst.expiry.isoformat()}")
        elif inst.is_option and name not in market.implied_vols and \
                name not in market.mark_prices:
            problems.append(f"{name}: no mark price or implied vol")
        else:
            ok.append(i)
    if ok:
        try:
            p, v = _compute(model, market, [names[i] for i in ok])
            pnl_t[ok] = p
            value[ok] = v
            priced[ok] = True
        except InputError:
            for i in ok:
                try:
                    p1, v1 = _compute(model, market, [names[i]])
                except InputError as exc:
                    problems.append(f"{names[i]}: {exc.message}")
                    continue
                pnl_t[i] = p1[0]
                value[i] = v1[0]
                priced[i] = True
    return UnitColumns(tuple(names), pnl_t, value, opt_units, priced, tuple(problems))
