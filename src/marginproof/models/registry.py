"""Model registry: name -> model class, imported lazily.

Add a model by adding one line to ``_MODELS`` (``"name": "module:Class"``).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from marginproof.config.params import load_toml
from marginproof.errors import InputError
from marginproof.models.base import BaseMarginModel

_MODELS: dict[str, str] = {
    "standard": "marginproof.models.standard:StandardModel",
    "grid": "marginproof.models.grid:GridModel",
    "fhs": "marginproof.models.fhs:FHSModel",
    "mc": "marginproof.models.montecarlo:MCModel",
    "dynamic": "marginproof.models.dynamic:DynamicModel",
    "derive-pmrm": "marginproof.models.presets.derive_pmrm:DerivePMRMModel",
    "derive-srm": "marginproof.models.presets.derive_srm:DeriveSRMModel",
    "deribit-pm": "marginproof.models.presets.deribit_pm:DeribitPMModel",
    "deribit-standard": "marginproof.models.presets.deribit_standard:DeribitStandardModel",
}


#: one line per model, what ``marginproof models`` prints (method pages: docs/models/<name>.md)
DESCRIPTIONS: dict[str, str] = {
    "standard": "exchange-style tables: each position margined alone (tiers, option "
                "formulas)",
    "grid": "scenario grid (SPAN-like): worst loss over price x vol moves, per underlying",
    "fhs": "filtered historical simulation: EWMA-rescaled history, VaR/ES of the book",
    "mc": "Monte Carlo: GARCH-t marginals and a t-copula, ES of the book",
    "dynamic": "flagship: FHS/MC core + anti-procyclicality + stress floor + liquidity, "
               "concentration and funding add-ons",
    "derive-pmrm": "Derive (Lyra) portfolio margin preset: scenario matrix with skew shocks",
    "derive-srm": "Derive (Lyra v2) standard risk manager preset, per market, in USD",
    "deribit-pm": "Deribit portfolio margin preset: risk matrix, extended table, delta "
                  "threshold",
    "deribit-standard": "Deribit standard margin preset: per-position published formulas",
}
#: variants the backtest commands (backtest, compare-models, calibrate frontier) also accept
BACKTEST_VARIANTS: dict[str, str] = {
    "ewma-var": "EWMA-filtered parametric VaR (a textbook reference, backtests only)",
    "dynamic-no-apc": "dynamic without its anti-procyclicality tools (backtests only)",
}


def available_models() -> tuple[str, ...]:
    """Names of every registered model and preset."""
    return tuple(_MODELS)


def model_class(name: str) -> type[BaseMarginModel]:
    """The class registered under ``name``."""
    try:
        target = _MODELS[name]
    except KeyError:
        raise InputError(
            "model", f"unknown model {name!r}; available: {', '.join(_MODELS)}"
        ) from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def get_model(name: str, config: str | Path | None = None) -> BaseMarginModel:
    """Build model ``name`` with its shipped parameters or those in ``config``."""
    cls = model_class(name)
    return cls(load_toml(config)) if config is not None else cls()
