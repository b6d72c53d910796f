"""Live adapter of the ``grid`` model: unit scenario columns per underlying, sparse products.

For the grid a position's scenario P&L is its quantity times the P&L of one unit
(:func:`marginproof.scenarios.revalue.scenario_pnl_usd` multiplies by quantity last), so one
column per instrument, recomputed when its underlying's market or the valuation time moves,
serves every account. Per (account, underlying) the requirement is
``max(worst scenario loss, short-option minimum)`` with the minimum
``short_option_rate * max(0, -net option quantity) * index``; IM is their sum (the default) or,
with ``cross_underlying_offset``, ``max(worst joint scenario loss, sum of minimums)`` over the
whole account (scenario ``j`` moves every underlying by ``j/n`` of its own range with the same
vol shock). ``MM = mm_fraction * IM``. These are :meth:`GridModel.margin`'s figures (tested).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from marginproof.engine.adapters.base import Figures, FloatArray, IntArray, LiveAdapter, LiveContext
from marginproof.engine.books import grow2
from marginproof.models.grid import GridModel
from marginproof.scenarios.live_kernels import SegmentSpec, segment_tail
from marginproof.scenarios.revalue import scenario_pnl_usd


def scenario_label(model: GridModel, underlying: str, j: int) -> str:
    """Label of grid scenario ``j`` on ``underlying``: move of the underlying and vol shock."""
    unit, shocks = model.scenario_axes()
    ns = len(shocks)
    if not 0 <= j < len(unit) * ns:
        return f"{underlying} scenario {j}"
    if underlying == "portfolio":
        return f"move {float(unit[j // ns]):+.0%} of range, vol {shocks[j % ns]}"
    u = float(unit[j // ns]) * model.price_range(underlying)
    return f"{underlying} {u:+.1%}, vol {shocks[j % ns]}"


class GridAdapter(LiveAdapter):
    """Incremental grid margin (see module docstring)."""

    kind = "grid"

    def __init__(self, model: GridModel) -> None:
        super().__init__(model)
        self._configure(model)
        self._cols: dict[str, tuple[tuple[int, int], int, FloatArray]] = {}
        cap = 16
        self.loss = np.zeros((cap, 4))
        self.minimum = np.zeros((cap, 4))
        self.bind_j = np.zeros((cap, 4), np.int32)

    def _configure(self, model: GridModel) -> None:
        self.grid = model
        self.cross = bool(model.params["grid"].get("cross_underlying_offset", False))
        self.rate = float(model.params.get("minimums", {}).get("short_option_rate", 0.0))
        self.mm_fraction = float(model.params["maintenance"]["mm_fraction"])
        self.n_scen = len(model.scenario_labels())

    def rebind(self, model: GridModel) -> None:  # type: ignore[override]
        if model.params_hash != self.grid.params_hash:
            self._cols.clear()
        super().rebind(model)
        self._configure(model)

    def label(self, group: str, j: int) -> str:
        return scenario_label(self.grid, group, j)

    # -- unit columns --------------------------------------------------------------------------
    def columns(self, ctx: LiveContext, und: str) -> FloatArray:
        """Unit scenario P&L of ``und``'s instruments, shape (n_names, n_scenarios)."""
        names = ctx.books.books[und].names
        key = ctx.valuation_key(und)
        hit = self._cols.get(und)
        if hit is not None and hit[0] == key and hit[1] == len(names):
            return hit[2]
        if hit is not None and hit[0] == key and hit[1] < len(names):
            start, old = hit[1], hit[2]
        else:
            start, old = 0, np.zeros((0, self.n_scen))
        val = ctx.values_of(und, list(names[start:])) if start else ctx.valuation(und)
        block = np.zeros((len(names) - start, self.n_scen))
        if len(val.book):
            moves, vol_mult, vol_floor = self.grid.scenario_matrices(val.book)
            pnl = scenario_pnl_usd(val.book, moves, vol_mult, vol_floor)  # (n_scen, n_priced)
            block[val.priced_idx] = pnl.T
        table = np.ascontiguousarray(np.vstack([old, block]))
        self._cols[und] = (key, len(names), table)
        return table

    def _grow(self, n_rows: int, n_und: int) -> None:
        self.loss = grow2(self.loss, n_rows, n_und)
        self.minimum = grow2(self.minimum, n_rows, n_und)
        self.bind_j = grow2(self.bind_j, n_rows, n_und)

    def _minimums(self, ctx: LiveContext, und: str, q: sp.csr_matrix) -> FloatArray:
        val = ctx.valuation(und)
        units = (val.option_units > 0.0).astype(np.float64)  # the model nets option quantity
        net = np.asarray(q @ units).ravel()
        return np.asarray(self.rate * np.maximum(0.0, -net) * val.index + 0.0)

    # -- per underlying ------------------------------------------------------------------------
    def _underlying(self, ctx: LiveContext, und: str, rows: IntArray) -> None:
        book = ctx.books.books[und]
        if not book.n_rows:
            return
        k = ctx.books.und_index[und]
        cols = self.columns(ctx, und)
        q, _ = book.csr()
        acc = book.accounts
        if rows.shape[0] < acc.shape[0]:
            br = np.array([book.row_of[i] for i in rows.tolist() if i in book.row_of],
                          np.int64)
            if br.size == 0:
                return
            q = q[br]
            acc = acc[br]
        pnl = np.asarray(q @ cols)  # (n, n_scen)
        j = np.argmin(pnl, axis=1) if pnl.shape[1] else np.zeros(acc.shape[0], np.int64)
        worst = pnl[np.arange(acc.shape[0]), j] if pnl.shape[1] else np.zeros(acc.shape[0])
        self.loss[acc, k] = np.maximum(0.0, -worst) + 0.0
        self.minimum[acc, k] = self._minimums(ctx, und, q)
        self.bind_j[acc, k] = j

    def figures(self, ctx: LiveContext, rows: IntArray, moved: frozenset[str] | None
                ) -> Figures:
        books = ctx.books
        nu = len(books.und_names)
        self._grow(len(books), nu)
        if self.cross:
            return self._cross(ctx, rows)
        todo = books.und_names if moved is None else [u for u in books.und_names if u in moved]
        for u in todo:
            self._underlying(ctx, u, rows)
        n = rows.shape[0]
        out = Figures.zeros(n, tuple(books.und_names))
        if not nu:
            return out
        loss = self.loss[rows, :nu]
        mins = self.minimum[rows, :nu]
        req = np.maximum(loss, mins)
        out.im = req.sum(axis=1)
        out.mm = self.mm_fraction * out.im
        for k, u in enumerate(books.und_names):
            out.components[f"scenario_loss:{u}"] = loss[:, k].copy()
            out.components[f"short_option_minimum:{u}"] = mins[:, k].copy()
        kb = np.argmax(req, axis=1)
        has = req[np.arange(n), kb] > 0.0
        out.binding_group = np.where(has, kb, -1).astype(np.int16)
        out.binding_scenario = np.where(has, self.bind_j[rows, kb], -1).astype(np.int32)
        out.binding_loss = loss[np.arange(n), kb]
        out.binding_minimum = mins[np.arange(n), kb]
        return out

    # -- cross-underlying offset ---------------------------------------------------------------
    def _cross(self, ctx: LiveContext, rows: IntArray) -> Figures:
        books = ctx.books
        n = rows.shape[0]
        tables = []
        offset = 0
        pos_of = {int(i): r for r, i in enumerate(rows.tolist())}
        e_rows: list[IntArray] = []
        e_inst: list[IntArray] = []
        e_qty: list[FloatArray] = []
        minimum = np.zeros(n)
        for u in books.und_names:
            book = books.books[u]
            if not book.n_rows:
                continue
            cols = self.columns(ctx, u)
            tables.append(cols)
            m = book.n_entries
            acc = book.row_acc[book.e_row[:m]]
            sel = np.array([a in pos_of for a in acc.tolist()], bool) if m else np.zeros(0, bool)
            r_of = np.array([pos_of[a] for a in acc[sel].tolist()], np.int64)
            e_rows.append(r_of)
            e_inst.append(book.e_col[:m][sel] + offset)
            e_qty.append(book.e_val[:m][sel])
            offset += cols.shape[0]
            q, _ = book.csr()
            mins_u = self._minimums(ctx, u, q)
            for r_book, a in enumerate(book.accounts.tolist()):
                if a in pos_of:
                    minimum[pos_of[a]] += mins_u[r_book]
        out = Figures.zeros(n, ("portfolio",))
        if tables:
            table = np.ascontiguousarray(np.vstack(tables))
            er = np.concatenate(e_rows)
            order = np.argsort(er, kind="stable")
            ip = np.concatenate([[0], np.cumsum(np.bincount(er, minlength=n))])
            tail = segment_tail(ip, np.concatenate(e_inst)[order], np.concatenate(e_qty)[order],
                                table, SegmentSpec.of([self.n_scen], 0.99, 0.975))
            loss = np.maximum(0.0, tail.worst[:, 0]) + 0.0
            j = tail.worst_index[:, 0]
        else:
            loss = np.zeros(n)
            j = np.zeros(n, np.int64)
        out.im = np.maximum(loss, minimum)
        out.mm = self.mm_fraction * out.im
        out.components = {"scenario_loss:portfolio": loss,
                          "short_option_minimum:portfolio": minimum}
        has = out.im > 0.0
        out.binding_group = np.where(has, 0, -1).astype(np.int16)
        out.binding_scenario = np.where(has, j, -1).astype(np.int32)
        out.binding_loss = loss
        out.binding_minimum = minimum
        return out
