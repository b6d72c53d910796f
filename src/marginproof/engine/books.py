"""Account books: positions and collateral of every account, indexed for vectorised margining.

Accounts get a stable row when first seen (``acc_index``); instruments a stable column within
their underlying's :class:`UnderlyingBook` (append-only), so cached per-instrument data stays
aligned. Each underlying's book is a growable COO table (row = account, col = instrument) with
a cached CSR; :class:`AccountBooks` adds the collateral matrix, the exposure queries a tick
needs (who holds ``u``, who posts ``u`` as collateral) and :meth:`AccountBooks.portfolio`,
the account as the batch models see it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from marginproof.engine.market_state import instrument
from marginproof.instruments.portfolio import Portfolio, Position

IntArray = NDArray[np.int64]


def grow1(a: NDArray[Any], n: int) -> NDArray[Any]:
    """``a`` with at least ``n`` elements (capacity doubling, zero-filled)."""
    if n <= a.shape[0]:
        return a
    out = np.zeros(max(n, 2 * a.shape[0]), a.dtype)
    out[: a.shape[0]] = a
    return out


def grow2(a: NDArray[Any], n_rows: int, n_cols: int) -> NDArray[Any]:
    """``a`` with at least ``n_rows`` rows (doubling) and ``n_cols`` columns."""
    r, c = a.shape
    if n_rows <= r and n_cols <= c:
        return a
    out = np.zeros((max(n_rows, 2 * r if n_rows > r else r), max(n_cols, c)), a.dtype)
    out[:r, :c] = a
    return out


class UnderlyingBook:
    """Positions on one underlying as a growable COO table (row = account, col = instrument)."""

    def __init__(self) -> None:
        self.cols: dict[str, int] = {}
        self.names: list[str] = []
        self.row_of: dict[int, int] = {}
        self.row_acc = np.zeros(16, np.int64)
        self.n_rows = 0
        self.e_row = np.zeros(64, np.int64)
        self.e_col = np.zeros(64, np.int64)
        self.e_val = np.zeros(64)
        self.n_entries = 0
        self.entry_of: dict[tuple[int, int], int] = {}
        self.row_entries: dict[int, list[int]] = {}
        self.version = 0
        self._csr: sp.csr_matrix | None = None
        self._abs_csr: sp.csr_matrix | None = None

    def row(self, acc: int) -> int:
        r = self.row_of.get(acc)
        if r is None:
            r = self.n_rows
            self.row_of[acc] = r
            self.row_acc = grow1(self.row_acc, r + 1)
            self.row_acc[r] = acc
            self.n_rows += 1
            self.row_entries[r] = []
            self._csr = None
        return r

    def col(self, name: str) -> tuple[int, bool]:
        """Column of ``name`` and whether it is new."""
        c = self.cols.get(name)
        if c is not None:
            return c, False
        c = len(self.names)
        self.cols[name] = c
        self.names.append(name)
        self._csr = None
        return c, True

    def set_qty(self, acc: int, name: str, qty: float) -> bool:
        """Set a quantity; True if ``name`` is a new column."""
        c, new_col = self.col(name)
        r = self.row(acc)
        k = self.entry_of.get((r, c))
        if k is None:
            k = self.n_entries
            self.e_row = grow1(self.e_row, k + 1)
            self.e_col = grow1(self.e_col, k + 1)
            self.e_val = grow1(self.e_val, k + 1)
            self.e_row[k], self.e_col[k] = r, c
            self.entry_of[(r, c)] = k
            entries = self.row_entries[r]
            entries.append(k)
            entries.sort(key=lambda e: int(self.e_col[e]))  # CSR order: by column
            self.n_entries += 1
        self.e_val[k] = qty
        self.version += 1
        self._csr = None
        return new_col

    @property
    def accounts(self) -> IntArray:
        """Engine rows of the accounts with a row in this book, shape (n_rows,)."""
        return self.row_acc[: self.n_rows]

    def csr(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """``(Q, |Q|)`` of shape (n_rows, n_cols), rows sorted by column (canonical)."""
        if self._csr is None or self._abs_csr is None:
            n = self.n_entries
            shape = (self.n_rows, len(self.names))
            q = sp.csr_matrix((self.e_val[:n].copy(), (self.e_row[:n], self.e_col[:n])),
                              shape=shape)
            q.sort_indices()
            self._csr = q
            self._abs_csr = abs(q)
        return self._csr, self._abs_csr


class AccountBooks:
    """Every owned account's positions and collateral (see module docstring)."""

    def __init__(self) -> None:
        self.acc_index: dict[str, int] = {}
        self.acc_ids: list[str] = []
        self.positions: list[dict[str, float]] = []
        self.collateral: list[dict[str, float]] = []
        self.und_index: dict[str, int] = {}
        self.und_names: list[str] = []
        self.books: dict[str, UnderlyingBook] = {}
        self.assets: dict[str, int] = {}
        self.asset_names: list[str] = []
        self.coll = np.zeros((16, 4))
        self.version = 0
        self.combo_of = np.zeros(16, np.int32)
        """Per account, index into ``combos`` of the sorted underlyings it holds."""
        self.combos: list[tuple[str, ...]] = [()]
        self.combo_index: dict[tuple[str, ...], int] = {(): 0}
        self._ids_arr: NDArray[np.object_] = np.zeros(0, dtype=object)

    def __len__(self) -> int:
        return len(self.acc_ids)

    # -- rows and columns -------------------------------------------------------------------
    def account(self, account_id: str) -> tuple[int, bool]:
        """Row of ``account_id`` and whether it is new."""
        i = self.acc_index.get(account_id)
        if i is not None:
            return i, False
        i = len(self.acc_ids)
        self.acc_index[account_id] = i
        self.acc_ids.append(account_id)
        if i >= self._ids_arr.shape[0]:
            grown = np.empty(max(16, 2 * self._ids_arr.shape[0]), dtype=object)
            grown[: self._ids_arr.shape[0]] = self._ids_arr
            self._ids_arr = grown
        self._ids_arr[i] = account_id
        self.positions.append({})
        self.collateral.append({})
        self.coll = grow2(self.coll, i + 1, self.coll.shape[1])
        self.combo_of = grow1(self.combo_of, i + 1)
        return i, True

    def underlying(self, und: str) -> tuple[int, bool]:
        k = self.und_index.get(und)
        if k is not None:
            return k, False
        k = len(self.und_names)
        self.und_index[und] = k
        self.und_names.append(und)
        self.books[und] = UnderlyingBook()
        return k, True

    def asset(self, asset: str) -> int:
        k = self.assets.get(asset)
        if k is None:
            k = len(self.asset_names)
            self.assets[asset] = k
            self.asset_names.append(asset)
            self.coll = grow2(self.coll, self.coll.shape[0], k + 1)
        return k

    def ids_array(self) -> NDArray[np.object_]:
        """Account ids as an object array (capacity-doubled) for fast fancy indexing.

        Batches keep a reference: slots are only ever filled, never changed, and growth
        makes a new array, so an old batch's indices stay valid.
        """
        return self._ids_arr

    # -- changes ----------------------------------------------------------------------------
    def set_position(self, i: int, name: str, qty: float) -> tuple[str, bool]:
        """Set account ``i``'s quantity of ``name``; ``(underlying, new column)``."""
        und = instrument(name).underlying
        self.underlying(und)
        if qty == 0.0:
            self.positions[i].pop(name, None)
        else:
            self.positions[i][name] = qty
        self.version += 1
        combo = self.account_underlyings(i)
        c = self.combo_index.get(combo)
        if c is None:
            c = self.combo_index[combo] = len(self.combos)
            self.combos.append(combo)
        self.combo_of[i] = c
        return und, self.books[und].set_qty(i, name, qty)

    def set_collateral(self, i: int, asset: str, amount: float) -> None:
        k = self.asset(asset)
        self.coll[i, k] = amount
        if amount == 0.0:
            self.collateral[i].pop(asset, None)
        else:
            self.collateral[i][asset] = amount

    # -- queries ----------------------------------------------------------------------------
    def holders(self, und: str) -> IntArray:
        """Rows of the accounts with a position (possibly zeroed) on ``und``."""
        b = self.books.get(und)
        return b.accounts.copy() if b is not None else np.zeros(0, np.int64)

    def collateral_holders(self, asset: str) -> IntArray:
        a = self.assets.get(asset)
        if a is None:
            return np.zeros(0, np.int64)
        return np.flatnonzero(self.coll[: len(self.acc_ids), a] != 0.0).astype(np.int64)

    def exposed(self, und: str) -> IntArray:
        """Sorted rows of the accounts a move of ``und`` can change (positions or collateral)."""
        parts = [self.holders(und), self.collateral_holders(und)]
        if parts[1].size == 0:
            return np.sort(parts[0])
        mask = np.zeros(len(self.acc_ids), bool)  # sorted union without sorting (np.unique)
        mask[parts[0]] = True
        mask[parts[1]] = True
        return np.flatnonzero(mask).astype(np.int64)

    def account_underlyings(self, i: int) -> tuple[str, ...]:
        """Sorted underlyings of account ``i``'s non-zero positions."""
        return tuple(sorted({instrument(n).underlying for n in self.positions[i]}))

    def portfolio(self, i: int, exclude: frozenset[str] = frozenset()) -> Portfolio:
        """Account ``i``'s positions (sorted by name) as the batch models take them."""
        return Portfolio(tuple(Position(instrument(n), q)
                               for n, q in sorted(self.positions[i].items())
                               if n not in exclude))
