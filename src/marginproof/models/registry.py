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
