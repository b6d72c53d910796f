"""Margin models behind one interface: ``model.margin(portfolio, market) -> MarginResult``."""

from marginproof.models.base import BaseMarginModel, MarginModel
from marginproof.models.registry import available_models, get_model, model_class
from marginproof.models.result import GreekRow, MarginResult, PortfolioGreeks, WorstScenario

__all__ = [
    "BaseMarginModel",
    "GreekRow",
    "MarginModel",
    "MarginResult",
    "PortfolioGreeks",
    "WorstScenario",
    "available_models",
    "get_model",
    "model_class",
]
