"""The generic live adapter: ``model.margin(portfolio, snapshot)`` per moved account.

Correct for any model by construction (it *is* the batch model on the engine's positions, the
valuation snapshot and the bound factor state), so it is the reference every fast path is
tested against, and the path of the formula presets (``standard``, ``deribit-standard``,
``derive-srm``) and of the portfolio presets without a fast path. Unpriced positions are left
out of the portfolio (the engine holds those accounts and says why); a model error on an
account marks it failed (held, with the model's message), never zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from marginproof.engine.adapters.base import Figures, IntArray, LiveAdapter, LiveContext
from marginproof.errors import MarginproofError


class ExactAdapter(LiveAdapter):
    """Per-account ``model.margin`` (see module docstring)."""

    kind = "exact"

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self._labels: dict[tuple[str, int], str] = {}

    def figures(self, ctx: LiveContext, rows: IntArray, moved: frozenset[str] | None
                ) -> Figures:
        n = rows.shape[0]
        groups: list[str] = []
        gidx: dict[str, int] = {}
        out = Figures.zeros(n)
        comps: dict[str, list[tuple[int, float]]] = {}
        unpriced: dict[str, frozenset[str]] = {}
        for u in ctx.books.und_names:
            val = ctx.valuation(u)
            unpriced[u] = frozenset(val.problems)
        exclude = frozenset().union(*unpriced.values()) if unpriced else frozenset()
        for r, i in enumerate(rows.tolist()):
            pf = ctx.books.portfolio(i, exclude)
            if not pf.positions:
                continue
            if ctx.snapshot is None:
                out.failed[r] = True
                out.reasons[r] = "no market data yet"
                continue
            try:
                res = ctx.model.margin(pf, ctx.snapshot)
            except MarginproofError as exc:
                out.failed[r] = True
                out.reasons[r] = str(exc)
                continue
            out.im[r] = res.initial_margin
            out.mm[r] = res.maintenance_margin
            for k, v in res.components.items():
                comps.setdefault(k, []).append((r, float(v)))
            ws = res.worst_scenario
            if ws is not None and res.initial_margin > 0.0:
                g = gidx.get(ws.group)
                if g is None:
                    g = gidx[ws.group] = len(groups)
                    groups.append(ws.group)
                out.binding_group[r] = g
                out.binding_scenario[r] = ws.index
                out.binding_loss[r] = ws.loss
                self._labels[(ws.group, ws.index)] = ws.label
                mins = [v for k, v in res.components.items()
                        if k == f"short_option_minimum:{ws.group}"]
                out.binding_minimum[r] = float(mins[0]) if mins else 0.0
        for k, pairs in comps.items():
            col = np.zeros(n)
            for r, v in pairs:
                col[r] = v
            out.components[k] = col
        out.groups = tuple(groups)
        return out

    def label(self, group: str, j: int) -> str:
        return self._labels.get((group, j), f"{group} scenario {j}")
