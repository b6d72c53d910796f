"""Work that runs in the worker processes of :mod:`marginproof.service.workers`.

Everything here is a module-level function over plain, picklable data. A market snapshot
travels as its fields (validated once, in the service; ``MarketSnapshot`` itself holds
read-only mappings that cannot be pickled) and is rebuilt in the worker without re-validation;
workers keep the last few markets and models, keyed by the service, so a request carries no
reconstruction cost while the market is unchanged.
"""

from __future__ import annotations

import gc
from collections import OrderedDict
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

from marginproof.config.limits import all_finite
from marginproof.errors import InputError
from marginproof.market.snapshot import MarketSnapshot

MarketState = tuple[tuple[str, Any], ...]

_MARKETS: OrderedDict[str, MarketSnapshot] = OrderedDict()
_MODELS: OrderedDict[tuple[str, ...], Any] = OrderedDict()
# (IM, MM) of the books what-ifs start from, by model, market and book: a trader tries many
# trades on one account, and the base need not be margined again for each
_BEFORE: OrderedDict[tuple[Any, ...], tuple[float, float]] = OrderedDict()


def market_state(m: MarketSnapshot) -> MarketState:
    """The snapshot's fields as plain (picklable) data."""
    out: list[tuple[str, Any]] = []
    for f in fields(m):
        v = getattr(m, f.name)
        if f.name == "forwards":
            v = {u: dict(c) for u, c in v.items()}
        elif f.name != "timestamp":
            v = dict(v)
        out.append((f.name, v))
    return tuple(out)


def market_from_state(state: MarketState) -> MarketSnapshot:
    """Inverse of :func:`market_state` (no re-validation: it was validated when built)."""
    snap = MarketSnapshot.__new__(MarketSnapshot)
    for name, v in state:
        if name == "forwards":
            v = MappingProxyType({u: MappingProxyType(c) for u, c in v.items()})
        elif name != "timestamp":
            v = MappingProxyType(v)
        object.__setattr__(snap, name, v)
    return snap


def _cached_market(key: str, state: MarketState) -> MarketSnapshot:
    m = _MARKETS.get(key)
    if m is None:
        m = market_from_state(state)
        _MARKETS[key] = m
        while len(_MARKETS) > 4:
            _MARKETS.popitem(last=False)
    return m


def _bound_model(model: Any, name: str, params_hash: str, factors: Any) -> Any:
    """``model`` bound to the live factor state (cached by the state's digest: binding shares
    the history, but the live scenario sets are built once per state)."""
    key = (name, params_hash, "factors:" + str(factors.digest()))
    view = _MODELS.get(key)
    if view is None:
        view = model.with_factors(factors)
        _MODELS[key] = view
        while len(_MODELS) > 16:
            _MODELS.popitem(last=False)
    return view


def _cached_model(name: str, params: dict[str, Any] | None, params_hash: str) -> Any:
    from marginproof.models.registry import get_model, model_class

    key = (name, params_hash)
    model = _MODELS.get(key)
    if model is None:
        model = get_model(name) if params is None else model_class(name)(params)
        _MODELS[key] = model
        while len(_MODELS) > 16:
            _MODELS.popitem(last=False)
    return model


def prime(models: tuple[tuple[str, dict[str, Any] | None, str], ...]) -> int:
    """Warm a worker: load the pricing kernels and build ``(name, params, params_hash)``
    models into its cache, as the first what-ifs would (``WorkPool.warm_up`` at start)."""
    from marginproof.pricing import _kernels  # noqa: F401 - the compiled kernels (numba)

    for name, params, params_hash in models:
        try:
            _cached_model(name, params, params_hash)
        except Exception:  # noqa: BLE001 - a model that cannot build fails its requests later
            continue
    # what was built here lives as long as the worker: keep it out of the cyclic GC's scans
    # (a full collection over a model's history objects is a pause in every what-if's tail)
    gc.collect()
    gc.freeze()
    return len(_MODELS)


@dataclass(frozen=True)
class WhatIfTask:
    """One what-if: the book before (the base) and after (base + trades), one model."""

    model: str
    params: dict[str, Any] | None  # None: the model's shipped parameters
    params_hash: str
    market_key: str
    market: MarketState
    before: dict[str, float]
    after: dict[str, float]
    collateral: dict[str, float]
    preset_inputs: dict[str, Any]
    detail: bool = False
    view: str = "api"  # "api": the POST /whatif body; "console": the console's explanation
    # the engines' live risk-factor state (``RiskFactorState``) the model in force is bound to;
    # None: the model as its parameters define it (history only)
    factors: Any = None


def run_whatif(task: WhatIfTask) -> dict[str, Any]:
    """Margin before and after, the change, equity and excess; errors come back as data.

    Returns ``{"ok": {...}}`` or ``{"error": [field, message]}`` (exceptions with custom
    constructors do not cross a process boundary intact).
    """
    try:
        return {"ok": _whatif(task)}
    except InputError as exc:
        return {"error": [exc.field, exc.message]}


def _whatif(task: WhatIfTask) -> dict[str, Any]:
    from marginproof.instruments.portfolio import Portfolio
    from marginproof.instruments.resolved import resolve
    from marginproof.models.whatif import what_if

    market = _cached_market(task.market_key, task.market)
    model = _cached_model(task.model, task.params, task.params_hash)
    if task.factors is not None:
        model = _bound_model(model, task.model, task.params_hash, task.factors)

    def book(positions: dict[str, float]) -> Portfolio:
        p = Portfolio.of(positions)
        return Portfolio(p.positions, dict(task.collateral), dict(task.preset_inputs))

    after_book = book(task.after)
    before_book = after_book if task.before == task.after else book(task.before)
    base_key = (task.model, task.params_hash,
                None if task.factors is None else str(task.factors.digest()), task.market_key,
                tuple(sorted(task.before.items())), tuple(sorted(task.collateral.items())),
                repr(sorted(task.preset_inputs.items())))
    base = _BEFORE.get(base_key)
    # one definition of before / after / delta, equity and excess (models.whatif); equity is
    # collateral after haircuts, debts in full, plus spot and option positions' value
    w = what_if(model, before_book, after_book, market, before_margin=base)
    if base is None and len(before_book):
        _BEFORE[base_key] = (w.before_initial_margin, w.before_maintenance_margin)
        while len(_BEFORE) > 256:
            _BEFORE.popitem(last=False)
    result = w.after
    out: dict[str, Any]
    if task.view == "console":
        from marginproof.web import views

        out = views.explain(result, model, resolve(after_book, market), task.after)
    else:
        ws = result.worst_scenario
        out = {"model": result.model, "params_hash": result.params_hash,
               "market_timestamp": result.market_timestamp.isoformat(),
               "currency": result.currency, "initial_margin": float(result.initial_margin),
               "maintenance_margin": float(result.maintenance_margin),
               "positions": dict(task.after),
               "worst_scenario": None if ws is None else dict(ws.__dict__),
               "result": result.to_dict() if task.detail else None}
    out["before"] = {"initial_margin": w.before_initial_margin,
                     "maintenance_margin": w.before_maintenance_margin,
                     "positions": dict(task.before)}
    out["after"] = {"initial_margin": float(result.initial_margin),
                    "maintenance_margin": float(result.maintenance_margin)}
    out["delta_initial_margin"] = w.delta_initial_margin
    out["delta_maintenance_margin"] = w.delta_maintenance_margin
    out["collateral_value_usd"] = w.collateral_value_usd
    out["equity_usd"] = w.equity_usd
    out["excess_over_initial_margin_usd"] = w.excess_over_initial_margin_usd
    out["excess_over_maintenance_margin_usd"] = w.excess_over_maintenance_margin_usd
    bad = all_finite(out)
    if bad:
        raise InputError(bad.replace("result.", "", 1) if bad.startswith("result.") else bad,
                         "the margin is not a finite number for these inputs")
    return out
