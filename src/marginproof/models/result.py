"""Frozen margin results and portfolio greeks.

Every :class:`MarginResult` carries the model name, its parameter hash and the market timestamp,
so any figure can be traced to its inputs and replayed. Losses are positive numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from marginproof.instruments.resolved import ResolvedBook
from marginproof.pricing.black76 import black76_greeks

if TYPE_CHECKING:  # pandas is imported by the frame methods, not by every margin call
    import pandas as pd

TENOR_BUCKETS: tuple[tuple[str, float], ...] = (
    ("<=7d", 7.0), ("7d-30d", 30.0), ("30d-90d", 90.0), ("90d-365d", 365.0), (">365d", np.inf),
)
GREEK_FIELDS = (
    "delta_coin", "delta_usd", "gamma_coin_per_usd", "vega_usd_per_vol_point",
    "theta_usd_per_day", "vanna_usd_per_vol_point", "volga_usd_per_vol_point",
)


def tenor_bucket(t_years: float, has_expiry: bool) -> str:
    """Expiry bucket label of a position (``none`` for spot and perpetuals)."""
    if not has_expiry:
        return "none"
    days = t_years * 365.0
    for label, upper in TENOR_BUCKETS:
        if days <= upper:
            return label
    return TENOR_BUCKETS[-1][0]


@dataclass(frozen=True)
class GreekRow:
    """Greeks of one (underlying, expiry bucket) cell, USD terms, coin delta alongside."""

    underlying: str
    expiry_bucket: str
    delta_coin: float
    delta_usd: float
    gamma_coin_per_usd: float
    vega_usd_per_vol_point: float
    theta_usd_per_day: float
    vanna_usd_per_vol_point: float
    volga_usd_per_vol_point: float


@dataclass(frozen=True)
class PortfolioGreeks:
    """Portfolio greeks by underlying and expiry bucket, plus totals per underlying."""

    rows: tuple[GreekRow, ...]

    def by_underlying(self) -> dict[str, dict[str, float]]:
        """``{underlying: {greek: total}}``."""
        out: dict[str, dict[str, float]] = {}
        for r in self.rows:
            d = out.setdefault(r.underlying, dict.fromkeys(GREEK_FIELDS, 0.0))
            for g in GREEK_FIELDS:
                d[g] += float(getattr(r, g))
        return out

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per (underlying, expiry_bucket)."""
        import pandas as pd

        return pd.DataFrame([r.__dict__ for r in self.rows])

    def to_dict(self) -> dict[str, Any]:
        return {
            "by_underlying": self.by_underlying(),
            "by_bucket": [dict(r.__dict__) for r in self.rows],
        }


def position_greeks_usd(book: ResolvedBook) -> NDArray[np.float64]:
    """Per-position greeks in USD terms, shape (7, n_positions), rows as ``GREEK_FIELDS``.

    Inverse contracts are worth ``(S/F)`` times their linear twin in USD (coin value times
    index), so their USD greeks are the linear greeks scaled by ``S/F``.
    """
    n = len(book)
    out = np.zeros((7, n))
    scale = np.where(book.is_inverse, book.index / book.forward, 1.0)
    q = book.quantity
    opt = book.is_option
    if opt.any():
        g = black76_greeks(book.forward[opt], book.strike[opt], book.t_years[opt],
                           book.vol[opt], book.is_call[opt], book.rate[opt])
        qs = q[opt] * scale[opt]
        out[0, opt] = qs * g.delta
        out[2, opt] = qs * g.gamma
        out[3, opt] = qs * g.vega_per_vol_point
        out[4, opt] = qs * g.theta_per_day
        out[5, opt] = qs * g.vanna_per_vol_point
        out[6, opt] = qs * g.volga_per_vol_point
    lin = ~opt
    out[0, lin] = book.coin_quantity[lin] * scale[lin]
    out[1] = out[0] * book.index
    return out


def aggregate_greeks(book: ResolvedBook) -> PortfolioGreeks:
    """Sum position greeks into (underlying, expiry bucket) cells."""
    pg = position_greeks_usd(book)
    cells: dict[tuple[str, str], NDArray[np.float64]] = {}
    for i in range(len(book)):
        und = book.underlyings[book.underlying_idx[i]]
        b = tenor_bucket(float(book.t_years[i]), book.expiries[i] is not None)
        key = (und, b)
        cells[key] = cells.get(key, np.zeros(7)) + pg[:, i]
    order = {lab: j for j, (lab, _) in enumerate(TENOR_BUCKETS)}
    rows = tuple(
        GreekRow(u, b, *(float(x) for x in v))
        for (u, b), v in sorted(cells.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], -1)))
    )
    return PortfolioGreeks(rows)


def _readonly(a: NDArray[Any]) -> NDArray[Any]:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class WorstScenario:
    """The binding scenario: label, index into ``scenario_labels`` and the loss (positive)."""

    label: str
    index: int
    loss: float
    group: str = "portfolio"


@dataclass(frozen=True)
class MarginResult:
    """Frozen result of ``model.margin(portfolio, market)``.

    Attributes
    ----------
    model, params_hash : str
        Model name and hash of its parameter set.
    market_timestamp : datetime
    currency : str
        Currency of IM/MM (``USD`` unless a preset margins in coin).
    initial_margin, maintenance_margin : float
        Requirements, positive.
    worst_scenarios : tuple of WorstScenario
        Binding scenario per margin group (one per underlying when there is no cross offset).
    scenario_labels : tuple of str, length n_scenarios
    scenario_pnl : ndarray, shape (n_scenarios, n_positions)
        P&L of each position in each scenario (gains positive), in ``currency``.
    position_names : tuple of str, length n_positions
    contributions : ndarray, shape (n_positions,)
        Each position's share of the requirement (model-specific, documented per model).
    greeks : PortfolioGreeks
    components : Mapping[str, float]
        Named parts of the requirement (scenario loss, minimums, add-ons ...).
    details : Mapping[str, Any]
        Model-specific intermediates for explanation (risk matrices, MtM ...).
    """

    model: str
    params_hash: str
    market_timestamp: datetime
    currency: str
    initial_margin: float
    maintenance_margin: float
    worst_scenarios: tuple[WorstScenario, ...]
    scenario_labels: tuple[str, ...]
    scenario_pnl: NDArray[np.float64]
    position_names: tuple[str, ...]
    contributions: NDArray[np.float64]
    greeks: PortfolioGreeks
    components: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scenario_pnl", _readonly(self.scenario_pnl))
        object.__setattr__(self, "contributions", _readonly(self.contributions))
        object.__setattr__(self, "components", MappingProxyType(dict(self.components)))
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))
        n_pos = len(self.position_names)
        if self.scenario_pnl.ndim != 2 or self.scenario_pnl.shape[1] != n_pos:
            raise ValueError(f"scenario_pnl must have shape (n_scenarios, {n_pos})")
        if self.scenario_pnl.shape[0] != len(self.scenario_labels):
            raise ValueError("scenario_labels must match scenario_pnl rows")

    @property
    def worst_scenario(self) -> WorstScenario | None:
        """The single most binding scenario (largest loss), or None for table models."""
        if not self.worst_scenarios:
            return None
        return max(self.worst_scenarios, key=lambda w: w.loss)

    def to_dict(self, include_scenarios: bool = False) -> dict[str, Any]:
        """JSON-ready dictionary (``--json`` output)."""
        ws = self.worst_scenario
        d: dict[str, Any] = {
            "model": self.model,
            "params_hash": self.params_hash,
            "market_timestamp": self.market_timestamp.isoformat(),
            "currency": self.currency,
            "initial_margin": float(self.initial_margin),
            "maintenance_margin": float(self.maintenance_margin),
            "worst_scenario": None if ws is None else dict(ws.__dict__),
            "worst_scenarios": [dict(w.__dict__) for w in self.worst_scenarios],
            "components": {k: float(v) for k, v in self.components.items()},
            "contributions": dict(zip(self.position_names,
                                      (float(x) for x in self.contributions), strict=True)),
            "greeks": self.greeks.to_dict(),
            "details": _jsonable(dict(self.details)),
        }
        if include_scenarios:
            d["scenario_labels"] = list(self.scenario_labels)
            d["scenario_pnl"] = self.scenario_pnl.tolist()
        return d

    def to_frame(self) -> pd.DataFrame:
        """Per-position table: name, contribution, P&L in the worst scenario."""
        import pandas as pd

        ws = self.worst_scenario
        worst = (self.scenario_pnl[ws.index] if ws is not None and len(self.scenario_labels)
                 else np.full(len(self.position_names), np.nan))
        return pd.DataFrame({
            "position": list(self.position_names),
            "contribution": self.contributions,
            "pnl_worst_scenario": worst,
        })

    def scenarios_frame(self) -> pd.DataFrame:
        """Scenario P&L table, shape (n_scenarios, n_positions), labelled."""
        import pandas as pd

        return pd.DataFrame(self.scenario_pnl, index=list(self.scenario_labels),
                            columns=list(self.position_names))


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, datetime):
        return x.isoformat()
    return x
