"""Account equity, defined once: what the margin is compared against.

``equity = collateral after haircuts + value of spot and option positions + unsettled futures
P&L``, in USD:

* **collateral after haircuts**: each positive balance x its index price x (1 - haircut); a
  negative balance (a borrow) counts at its full index value, no haircut relief
  (:func:`marginproof.instruments.collateral.value_collateral`);
* **spot and option positions**: signed quantity x value per unit: the spot (index) price for
  spot, the option mark in USD for options (inverse marks converted at the forward). A short
  option is a negative value: a short straddle worth -65,000 lowers equity by 65,000;
* **futures and perpetuals**: their P&L settles into collateral, so only P&L not yet settled
  (``unsettled_pnl_usd``, 0 when the venue settles continuously, as the shipped feeds assume)
  counts.

The same figure is split into its **non-negative parts** for the proofs: ``assets`` (haircut
value of positive balances, positive position values, positive unsettled P&L) and
``liabilities`` (full value of borrows, absolute value of negative position values and
negative P&L), ``equity = assets - liabilities``. Committing the parts keeps every committed
number, and every sum of them, non-negative.

Three forms, one definition: :func:`account_equity` (one account, floats: ``margin``, the
service), :func:`equity_arrays` (vectorised over accounts, for the engine) and
:func:`exact_parts` (exact :class:`~fractions.Fraction` parts from per-position floats, for the
committed path of the proofs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import ArrayLike, NDArray

from marginproof.instruments.collateral import value_collateral
from marginproof.instruments.portfolio import CollateralPolicy, Portfolio
from marginproof.instruments.resolved import ResolvedBook, resolve
from marginproof.market.snapshot import MarketSnapshot

KIND_SPOT = 0
KIND_OPTION = 3


@dataclass(frozen=True)
class Equity:
    """Equity of one account and its parts, USD.

    Attributes
    ----------
    collateral_usd : float
        Collateral after haircuts, borrows at full value.
    positions_usd : float
        Value of spot and option positions (negative when short options dominate).
    futures_pnl_usd : float
        Unsettled futures P&L.
    assets_usd, liabilities_usd : float
        Non-negative parts, ``total_usd = assets_usd - liabilities_usd``.
    position_values_usd : mapping
        Value of each priced position (0 for futures and perpetuals).
    """

    collateral_usd: float
    positions_usd: float
    futures_pnl_usd: float
    assets_usd: float
    liabilities_usd: float
    position_values_usd: Mapping[str, float]

    @property
    def total_usd(self) -> float:
        """``collateral + positions + unsettled P&L`` (= assets - liabilities)."""
        return self.collateral_usd + self.positions_usd + self.futures_pnl_usd


def unit_values_usd(book: ResolvedBook) -> NDArray[np.float64]:
    """USD value of one unit of each position, shape ``(n_positions,)``.

    Spot: the spot price; options: the USD mark per coin; futures and perpetuals: 0 (settled).
    """
    out = np.zeros(len(book))
    spot = book.kind == KIND_SPOT
    opt = book.is_option
    out[spot] = book.forward[spot]
    out[opt] = book.mark_usd[opt]
    return out


def position_values_usd(book: ResolvedBook) -> NDArray[np.float64]:
    """Signed USD value of each position: quantity x :func:`unit_values_usd`."""
    return np.asarray(book.quantity * unit_values_usd(book), dtype=np.float64)


def account_equity(balances: Mapping[str, float], portfolio: Portfolio, market: MarketSnapshot,
                   policy: CollateralPolicy | None = None,
                   unsettled_pnl_usd: float = 0.0) -> Equity:
    """Equity of one account (see module docstring).

    Raises
    ------
    InputError
        An unknown asset or instrument, a missing price or vol (named by field).
    """
    cv = value_collateral(balances, market, policy)
    book = resolve(portfolio, market) if len(portfolio) else None
    vals = position_values_usd(book) if book is not None else np.zeros(0)
    assets = sum(v for v in cv.by_asset_usd.values() if v > 0)
    liabs = -sum(v for v in cv.by_asset_usd.values() if v < 0)
    assets += float(vals[vals > 0].sum()) + max(unsettled_pnl_usd, 0.0)
    liabs += float(-vals[vals < 0].sum()) + max(-unsettled_pnl_usd, 0.0)
    names = book.names if book is not None else ()
    return Equity(cv.total_usd, float(vals.sum()), float(unsettled_pnl_usd), float(assets),
                  float(liabs), dict(zip(names, (float(v) for v in vals), strict=True)))


def equity_arrays(collateral_usd: ArrayLike, position_value_usd: ArrayLike,
                  account_idx: ArrayLike, n_accounts: int,
                  unsettled_pnl_usd: ArrayLike | None = None
                  ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Vectorised equity over accounts.

    Parameters
    ----------
    collateral_usd : array, shape (n_accounts,)
        Collateral after haircuts (borrows at full value).
    position_value_usd : array, shape (n_positions,)
        Signed value of each position (:func:`position_values_usd`).
    account_idx : int array, shape (n_positions,)
        Account of each position.
    n_accounts : int
    unsettled_pnl_usd : array, shape (n_accounts,), optional

    Returns
    -------
    equity, positive_values, negative_values : arrays, shape (n_accounts,)
        Equity, and the sums of positive and of (absolute) negative position values.
    """
    coll = np.asarray(collateral_usd, dtype=np.float64).reshape(n_accounts)
    v = np.asarray(position_value_usd, dtype=np.float64)
    idx = np.asarray(account_idx, dtype=np.int64)
    pos = np.bincount(idx, weights=np.where(v > 0, v, 0.0), minlength=n_accounts).astype(
        np.float64)
    neg = np.bincount(idx, weights=np.where(v < 0, -v, 0.0), minlength=n_accounts).astype(
        np.float64)
    eq = coll + pos - neg
    if unsettled_pnl_usd is not None:
        eq = eq + np.asarray(unsettled_pnl_usd, dtype=np.float64).reshape(n_accounts)
    return eq, pos, neg


def exact_parts(collateral_assets: Fraction, collateral_liabilities: Fraction,
                quantities: Sequence[float], unit_values: Sequence[float],
                unsettled_pnl: Fraction = Fraction(0)) -> tuple[Fraction, Fraction]:
    """Exact ``(assets, liabilities)`` in USD from per-position floats (no float sum).

    Each position's value is ``Fraction(quantity) * Fraction(unit value)``, exactly; the
    collateral parts are exact already (decimal balances and prices).
    """
    assets, liabs = collateral_assets, collateral_liabilities
    for q, u in zip(quantities, unit_values, strict=True):
        v = Fraction(q) * Fraction(u)
        if v > 0:
            assets += v
        else:
            liabs -= v
    if unsettled_pnl > 0:
        assets += unsettled_pnl
    else:
        liabs -= unsettled_pnl
    return assets, liabs
