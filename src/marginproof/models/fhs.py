"""``fhs``: filtered historical simulation margin.

Method (``docs/models/fhs.md``): as of ``T`` (the last UTC day closed at the market time), the
``window`` most recent joint daily returns of the book's underlyings and their ATM-IV log changes
are devolatilised by their own EWMA vol and rescaled to today's (:func:`fhs_scenario_set`),
scaled to the margin period of risk by ``sqrt(h)``, and every position is revalued in full
(Black-76 for options, with the IV change applied as a relative shift of every option's vol).
IM = ``scaling * ES_conf_es`` of the book's loss (cross-underlying offsets from the joint
history), or ``VaR_conf_var`` with ``measure = "var"``; VaR 0.99 and ES 0.975 are both reported.
MM = ``mm_fraction * IM``. Contributions: each position's mean loss over the ES tail (Euler).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from marginproof.errors import InputError
from marginproof.instruments.portfolio import Portfolio
from marginproof.instruments.resolved import resolve
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models._history import CoreRisk, ScenarioRiskMixin, _num
from marginproof.models.result import MarginResult, WorstScenario, aggregate_greeks
from marginproof.risk.history import asof_date
from marginproof.scenarios.fhs import fhs_scenario_set
from marginproof.scenarios.sets import ScenarioSet


class FHSModel(ScenarioRiskMixin):
    """Filtered historical simulation (see module docstring)."""

    name = "fhs"
    default_config = "models/fhs.toml"
    section = "fhs"

    def _validate(self, params: Mapping[str, Any]) -> None:
        super()._validate(params)
        _num(params, self.section, "lambda", 0.5, 0.9999)
        w = params.get(self.section, {}).get("window")
        if not isinstance(w, int) or w < 50:
            raise InputError(f"params.{self.section}.window", "must be an integer >= 50")
        mh = params.get(self.section, {}).get("min_history", 250)
        if not isinstance(mh, int) or mh < 31:
            raise InputError(f"params.{self.section}.min_history", "must be an integer >= 31")

    @property
    def lam(self) -> float:
        return float(self.params[self.section]["lambda"])

    def scenario_set(self, underlyings: tuple[str, ...], asof: np.datetime64) -> ScenarioSet:
        p = self.params[self.section]
        paths = self.factor_paths(underlyings, self.lam)
        return fhs_scenario_set(paths, underlyings, asof, int(p["window"]),
                                int(p.get("min_history", 250)))

    def margin(self, portfolio: Portfolio, market: MarketSnapshot) -> MarginResult:
        book = resolve(portfolio, market)
        asof = asof_date(market.timestamp)
        core = self.core_risk(book, asof)
        return build_scenario_result(self, book, market, core, {}, {})


def build_scenario_result(model: ScenarioRiskMixin, book: Any, market: MarketSnapshot,
                          core: CoreRisk, extra_components: Mapping[str, float],
                          extra_details: Mapping[str, Any],
                          im_override: float | None = None) -> MarginResult:
    """A :class:`MarginResult` from a core risk computation (shared by fhs/mc/dynamic)."""
    comps: dict[str, float] = {}
    if model.cross_offset:
        comps["scenario_risk"] = core.requirement
    else:
        for g, t in core.groups.items():
            comps[f"scenario_risk:{g}"] = t.measure
    comps.update(extra_components)
    im = core.requirement if im_override is None else im_override
    mm = float(model.params["maintenance"]["mm_fraction"]) * im
    worst = tuple(
        WorstScenario(core.sset.labels[t.worst_index] if len(core.sset) else "-",
                      t.worst_index, max(0.0, t.worst), g)
        for g, t in core.groups.items()
    )
    info = dict(core.sset.info)
    p = core.portfolio
    asof = asof_date(market.timestamp)
    lag = model.history_lag_days(book.underlyings, asof)
    stale = model.history_lag_warning(book.underlyings, lag, asof)
    details: dict[str, Any] = {
        "asof_date": info.pop("asof", None),
        "method": info.pop("method", None),
        "scenario_set": info,
        "n_scenarios": len(core.sset),
        "mpor_days": model.mpor_days,
        "history_lag_days": lag,
        "horizon_scaling": "overlapping" if core.sset.horizon_applied else "sqrt(h)",
        "measure": model.measure_name,
        "scaling": model.scaling,
        "cross_underlying_offset": model.cross_offset,
        "portfolio_measures": {f"var_{model.conf_var:g}": p.var, f"es_{model.conf_es:g}": p.es,
                               "worst_loss": p.worst},
        "risk_matrix": model.risk_matrix(book, core) if len(core.sset) else {},
    }
    details.update(extra_details)
    if stale is not None:
        details["warnings"] = [*details.get("warnings", ()), stale]
    return MarginResult(
        model=model.name, params_hash=model.params_hash, market_timestamp=market.timestamp,
        currency="USD", initial_margin=float(im), maintenance_margin=float(mm),
        worst_scenarios=worst, scenario_labels=core.sset.labels, scenario_pnl=core.pnl,
        position_names=book.names, contributions=core.contributions,
        greeks=aggregate_greeks(book), components=comps, details=details,
    )
