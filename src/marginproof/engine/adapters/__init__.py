"""Live adapters: the engine's seam to any registered model (see :mod:`.base`).

=====================  ===============================================================
adapter                models
=====================  ===============================================================
``GridAdapter``        ``grid`` (per-underlying or cross-underlying worst scenario)
``ScenarioAdapter``    ``fhs``, ``mc``, ``dynamic`` (scenario sets, ES/VaR, APC, stress,
                       add-ons; cross-underlying offsets)
``ExactAdapter``       every model (``model.margin`` per account): the reference, and the
                       live path of ``standard``, ``deribit-standard``, ``derive-srm``,
                       ``deribit-pm``, ``derive-pmrm``
=====================  ===============================================================
"""

from __future__ import annotations

from typing import Any

from marginproof.engine.adapters.base import Figures, LiveAdapter, LiveContext
from marginproof.engine.adapters.exact import ExactAdapter
from marginproof.engine.adapters.grid import GridAdapter, scenario_label
from marginproof.engine.adapters.scenario import ScenarioAdapter

FAST_SCENARIO_MODELS = ("fhs", "mc", "dynamic")


def adapter_for(model: Any, exact: bool = False) -> LiveAdapter:
    """The live adapter of ``model`` (``exact=True``: the per-account reference)."""
    from marginproof.models._history import ScenarioRiskMixin
    from marginproof.models.grid import GridModel

    if exact:
        return ExactAdapter(model)
    if isinstance(model, GridModel):
        return GridAdapter(model)
    if isinstance(model, ScenarioRiskMixin) and model.name in FAST_SCENARIO_MODELS:
        return ScenarioAdapter(model)
    return ExactAdapter(model)


__all__ = ["ExactAdapter", "Figures", "GridAdapter", "LiveAdapter", "LiveContext",
           "ScenarioAdapter", "adapter_for", "scenario_label"]
