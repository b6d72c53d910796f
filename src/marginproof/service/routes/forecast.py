"""``GET /accounts/{id}/forecast``: the next hours of an account's margin (owner or operator)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from marginproof.service.deps import ContainerDep, PrincipalDep, check_account
from marginproof.service.forecasting import (
    ForecastSettings,
    account_inputs,
    run_forecast,
    warnings_of,
)

router = APIRouter(prefix="/accounts", tags=["forecast"])


@router.get("/{account_id}/forecast")
async def get_forecast(
    account_id: str, principal: PrincipalDep, container: ContainerDep, request: Request,
    horizon_hours: Annotated[float, Query(ge=0.0, le=720.0)] = 24.0,
    step_hours: Annotated[float, Query(gt=0.0, le=24.0)] = 1.0,
    n_paths: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    seed: Annotated[int, Query(ge=0, le=2**31)] = 0,
    method: Annotated[str, Query(pattern="^(auto|exact|proxy)$")] = "auto",
    levels: bool = True,
) -> dict[str, Any]:
    """Forecast under the model in force, from the engine's positions, collateral and market:
    quantiles of IM, equity and excess by step, P(margin call) and P(liquidation) by step, ES
    of the excess at the horizon, call levels; deterministic for a seed. Runs off the event
    loop (worker pool or a bounded thread). ``n_paths`` and ``horizon_hours`` are capped by
    ``MARGINPROOF_FORECAST_MAX_PATHS`` / ``_MAX_HORIZON_HOURS`` (422 above)."""
    from marginproof.errors import InputError

    s = ForecastSettings()
    if n_paths > s.max_paths:
        raise InputError("n_paths", f"at most {s.max_paths} in this service")
    if horizon_hours > s.max_horizon_hours:
        raise InputError("horizon_hours", f"at most {s.max_horizon_hours:g} in this service")
    check_account(principal, container, account_id)
    inp = account_inputs(container, account_id)
    res = await run_forecast(container, inp, {
        "horizon_hours": horizon_hours, "step_hours": step_hours, "n_paths": n_paths,
        "seed": seed, "method": method, "call_levels": levels,
        "warn_threshold": s.warning_threshold}, s)
    res["account_id"] = account_id
    w = warnings_of(request.app.state)
    res["warning_state"] = None if w is None else w.state.get(account_id)
    return res
