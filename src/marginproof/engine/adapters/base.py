"""The model seam of the engine: a live adapter turns (positions, market, factors) into figures.

An adapter is built for one model instance (:func:`marginproof.engine.adapters.adapter_for`)
and answers :meth:`LiveAdapter.figures` for a set of account rows: the model figure (IM, MM and
the model's components) that ``model.margin(portfolio, snapshot)`` would return on the same
positions, the valuation snapshot and the bound risk-factor state, plus the binding scenario
for explanations. Adapters cache what does not depend on a tick (scenario sets, per-instrument
unit P&L columns keyed by the underlying's market version and the valuation time) and recompute
only what moved; the generic :class:`~marginproof.engine.adapters.exact.ExactAdapter` calls
``model.margin`` per account and is the reference the fast paths are tested against.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.engine.books import AccountBooks
from marginproof.engine.valuation import UnderlyingValuation, value_underlying
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.base import BaseMarginModel
from marginproof.risk.live import RiskFactorState

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass
class LiveContext:
    """What an adapter may read for one entry (built by the engine; read-only by contract).

    Attributes
    ----------
    books : AccountBooks
    snapshot : MarketSnapshot or None
        Valuation snapshot: every underlying's data at the valuation time.
    factors : RiskFactorState
    model : BaseMarginModel
        The model in force bound to ``factors``.
    valuations : dict
        The engine's per-underlying valuation cache (see :meth:`valuation`).
    """

    books: AccountBooks
    snapshot: MarketSnapshot | None
    factors: RiskFactorState
    model: BaseMarginModel
    valuations: dict[str, UnderlyingValuation]
    market_version: dict[str, int]

    def valuation_key(self, und: str) -> tuple[int, int]:
        return (self.market_version.get(und, -1), self.factors.valuation_ms)

    def valuation(self, und: str) -> UnderlyingValuation:
        """Unit valuation of every instrument of ``und``'s book (cached, extended on growth)."""
        names = self.books.books[und].names
        key = self.valuation_key(und)
        v = self.valuations.get(und)
        if v is not None and v.key[:2] == key and v.key[2] == len(names):
            return v
        v = value_underlying(und, list(names), self.snapshot, (*key, len(names)))
        self.valuations[und] = v
        return v

    def values_of(self, und: str, names: list[str]) -> UnderlyingValuation:
        """Valuation of some names only (used to extend column caches)."""
        return value_underlying(und, names, self.snapshot, (*self.valuation_key(und),
                                                            len(names)))


@dataclass
class Figures:
    """Model figures of ``n`` account rows (USD; arrays of shape (n,)).

    Attributes
    ----------
    im, mm : ndarray
    components : dict of str -> ndarray
    groups : tuple of str
        Names the binding indexes point into (underlyings, ``portfolio``, ``stress`` ...).
    binding_group : ndarray of int16
        Index into ``groups`` of each row's binding group (-1: no requirement).
    binding_scenario : ndarray of int32
        Scenario index within the binding group's set.
    binding_loss, binding_minimum : ndarray
        Loss of the binding scenario and the short-option minimum of its group.
    failed : ndarray of bool
        The model could not margin the row at all (then ``reasons`` says why; held).
    reasons : dict of int -> str
        Row -> reason, for failed rows.
    """

    im: FloatArray
    mm: FloatArray
    components: dict[str, FloatArray]
    groups: tuple[str, ...]
    binding_group: NDArray[np.int16]
    binding_scenario: NDArray[np.int32]
    binding_loss: FloatArray
    binding_minimum: FloatArray
    failed: NDArray[np.bool_]
    reasons: dict[int, str] = field(default_factory=dict)

    @classmethod
    def zeros(cls, n: int, groups: tuple[str, ...] = ()) -> Figures:
        return cls(np.zeros(n), np.zeros(n), {}, groups, np.full(n, -1, np.int16),
                   np.full(n, -1, np.int32), np.zeros(n), np.zeros(n), np.zeros(n, bool), {})


class LiveAdapter(ABC):
    """One model family's live computation (see module docstring).

    Parameters
    ----------
    model : BaseMarginModel
        The model in force, bound to the current factor state (rebound via :meth:`rebind`).
    """

    kind = "abstract"

    def __init__(self, model: BaseMarginModel) -> None:
        self.model = model

    def rebind(self, model: BaseMarginModel) -> None:
        """The factor state changed: the same model bound to the new state."""
        self.model = model

    @abstractmethod
    def figures(self, ctx: LiveContext, rows: IntArray, moved: frozenset[str] | None
                ) -> Figures:
        """Figures of account ``rows`` (sorted, unique engine rows).

        ``moved`` names the underlyings whose data changed since these rows were last
        computed (None: anything may have changed); adapters that cache per-(row,
        underlying) results may recompute only those.
        """

    def label(self, group: str, j: int) -> str:
        """Human label of scenario ``j`` of ``group`` (for bindings)."""
        return f"{group} scenario {j}"

    def state(self) -> dict[str, Any]:
        """Adapter caches worth naming in diagnostics (not part of the engine state)."""
        return {"kind": self.kind}
