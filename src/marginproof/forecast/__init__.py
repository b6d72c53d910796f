"""Margin forecast: the next hours of an account's margin, equity and status.

``forecast(model, portfolio, market, ForecastConfig(...)) -> ForecastResult`` simulates the risk
factors with the margin model's own dynamics, margins every path and step with the model and
reports the fan of IM, equity and excess, the probability of a margin call and of liquidation
by each step, the expected shortfall of the excess at the horizon and the call levels per
underlying. Method, parameters and validation: ``docs/models/forecast.md``.
"""

from marginproof.forecast.api import forecast, model_dynamics, status_of
from marginproof.forecast.config import ForecastConfig
from marginproof.forecast.dynamics import (
    FactorDynamics,
    gaussian_dynamics,
    history_dynamics,
    reference_dynamics,
)
from marginproof.forecast.evaluators import LatticeSpec
from marginproof.forecast.result import CallLevel, ForecastResult

__all__ = [
    "CallLevel",
    "FactorDynamics",
    "ForecastConfig",
    "ForecastResult",
    "LatticeSpec",
    "forecast",
    "gaussian_dynamics",
    "history_dynamics",
    "model_dynamics",
    "reference_dynamics",
    "status_of",
]
