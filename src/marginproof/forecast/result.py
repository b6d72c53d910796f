"""The frozen result of a margin forecast."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def _ro(a: Any) -> FloatArray:
    x = np.array(a, dtype=np.float64)
    x.setflags(write=False)
    return x


@dataclass(frozen=True)
class CallLevel:
    """Where the account's status changes when one underlying moves alone.

    The other underlyings and every implied-vol level move with their conditional expectation
    given this move under the dynamics' correlations (``E[r_v | r_u] = rho sigma_v / sigma_u
    r_u``), instantly (no time decay). Moves are relative index changes (``-0.2`` = 20 %
    down); None where the status does not change within the searched range.

    Attributes
    ----------
    underlying : str
    index : float
        Index price now (USD).
    call_down, call_up : float or None
        Nearest move down / up at which equity falls below IM (a margin call).
    liquidation_down, liquidation_up : float or None
        Nearest move at which equity falls below MM.
    betas : Mapping[str, float]
        Conditional log move of every other factor per unit log move of this underlying.
    """

    underlying: str
    index: float
    call_down: float | None
    call_up: float | None
    liquidation_down: float | None
    liquidation_up: float | None
    betas: Mapping[str, float] = field(default_factory=dict)

    def price(self, move: float | None) -> float | None:
        return None if move is None else self.index * (1.0 + move)

    def to_dict(self) -> dict[str, Any]:
        return {"underlying": self.underlying, "index": self.index,
                "call_down": self.call_down, "call_down_price": self.price(self.call_down),
                "call_up": self.call_up, "call_up_price": self.price(self.call_up),
                "liquidation_down": self.liquidation_down,
                "liquidation_down_price": self.price(self.liquidation_down),
                "liquidation_up": self.liquidation_up,
                "liquidation_up_price": self.price(self.liquidation_up),
                "conditional_betas": dict(self.betas)}


@dataclass(frozen=True)
class ForecastResult:
    """Distribution of an account's margin over the next hours.

    Arrays are indexed by step (``hours[k]`` hours after the market time, ``k = 0`` is now);
    quantile arrays have shape (n_quantiles, n_steps + 1).

    Attributes
    ----------
    model, params_hash : str
        The margin model and its parameter hash.
    market_timestamp : datetime
    seed : int
    config : Mapping
        The :class:`~marginproof.forecast.config.ForecastConfig` as a dict (and its hash).
    forecast_hash : str
        Hash of every input (model hash, config, dynamics, positions, collateral, market).
    dynamics : str
        Source of the simulated dynamics.
    method : str
        ``exact`` or ``proxy`` (step 0 is exact either way).
    hours : ndarray, shape (n_steps + 1,)
    times : tuple of datetime
    quantile_levels : tuple of float
    im_q, mm_q, equity_q, excess_q : ndarray, shape (n_quantiles, n_steps + 1)
        Quantiles of IM, MM, equity and excess = equity - MM.
    im_mean, equity_mean : ndarray, shape (n_steps + 1,)
    p_call_by, p_liquidation_by : ndarray, shape (n_steps + 1,)
        Probability that the account has been in margin call (equity < IM) / liquidation
        (equity < MM) at some step up to ``k`` (hourly monitoring).
    p_call_at : ndarray, shape (n_steps + 1,)
        Probability of being in call at step ``k`` itself.
    im0, mm0, equity0 : float
        Today's figures (``model.margin`` and the engine's equity).
    status0 : str
    excess_es : float
        Expected shortfall of the excess at the horizon: mean of its worst ``1 - es_conf``
        tail (negative = equity below MM there).
    es_conf : float
    call_levels : tuple of CallLevel
    warn : bool
        ``p_call_by[-1] >= warn_threshold``.
    details : Mapping
    """

    model: str
    params_hash: str
    market_timestamp: datetime
    seed: int
    config: Mapping[str, Any]
    forecast_hash: str
    dynamics: str
    method: str
    hours: FloatArray
    times: tuple[datetime, ...]
    quantile_levels: tuple[float, ...]
    im_q: FloatArray
    mm_q: FloatArray
    equity_q: FloatArray
    excess_q: FloatArray
    im_mean: FloatArray
    equity_mean: FloatArray
    p_call_by: FloatArray
    p_liquidation_by: FloatArray
    p_call_at: FloatArray
    im0: float
    mm0: float
    equity0: float
    status0: str
    excess_es: float
    es_conf: float
    call_levels: tuple[CallLevel, ...]
    warn: bool
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("hours", "im_q", "mm_q", "equity_q", "excess_q", "im_mean", "equity_mean",
                     "p_call_by", "p_liquidation_by", "p_call_at"):
            object.__setattr__(self, name, _ro(getattr(self, name)))
        object.__setattr__(self, "config", MappingProxyType(dict(self.config)))
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    @property
    def n_steps(self) -> int:
        return int(self.hours.shape[0] - 1)

    @property
    def p_call(self) -> float:
        """Probability of a margin call within the horizon."""
        return float(self.p_call_by[-1])

    @property
    def p_liquidation(self) -> float:
        return float(self.p_liquidation_by[-1])

    def quantile(self, what: str, level: float) -> FloatArray:
        """Row of ``im``/``mm``/``equity``/``excess`` quantiles at ``level``."""
        i = self.quantile_levels.index(level)
        return np.asarray(getattr(self, f"{what}_q")[i], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (floats, lists, ISO times)."""
        def q(a: FloatArray) -> dict[str, list[float]]:
            return {f"{lv:g}": [float(v) for v in a[i]] for i, lv in
                    enumerate(self.quantile_levels)}

        return {
            "model": self.model, "params_hash": self.params_hash,
            "market_timestamp": self.market_timestamp.isoformat(), "seed": self.seed,
            "config": dict(self.config), "forecast_hash": self.forecast_hash,
            "dynamics": self.dynamics, "method": self.method,
            "hours": [float(h) for h in self.hours],
            "times": [t.isoformat() for t in self.times],
            "now": {"initial_margin": self.im0, "maintenance_margin": self.mm0,
                    "equity": self.equity0, "excess": self.equity0 - self.mm0,
                    "status": self.status0},
            "p_call_within_horizon": self.p_call,
            "p_liquidation_within_horizon": self.p_liquidation,
            "p_call_by_step": [float(v) for v in self.p_call_by],
            "p_liquidation_by_step": [float(v) for v in self.p_liquidation_by],
            "p_call_at_step": [float(v) for v in self.p_call_at],
            "excess_es_at_horizon": self.excess_es, "es_conf": self.es_conf,
            "warn": self.warn,
            "quantiles": {"initial_margin": q(self.im_q), "maintenance_margin": q(self.mm_q),
                          "equity": q(self.equity_q), "excess": q(self.excess_q)},
            "mean": {"initial_margin": [float(v) for v in self.im_mean],
                     "equity": [float(v) for v in self.equity_mean]},
            "call_levels": [c.to_dict() for c in self.call_levels],
            "details": _jsonable(dict(self.details)),
        }


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, datetime):
        return x.isoformat()
    if isinstance(x, np.datetime64):
        return str(x)
    return x
