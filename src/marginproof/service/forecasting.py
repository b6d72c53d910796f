"""Forecasts in the service: inputs from the engine, off-loop execution, ``margin_warning``.

* :func:`account_inputs` reads an account through the engine's public API
  (``account_positions``, ``account_margin``), the market the engines know and the model in
  force, so the forecast starts from exactly the margin and equity the engine publishes.
* :func:`run_forecast` never runs a forecast on the event loop: in the service's worker pool
  when there is one (``container.pool``, lane ``forecast``), otherwise in a thread behind a
  semaphore (``MARGINPROOF_FORECAST_CONCURRENCY``, default 1).
* :class:`MarginWarnings` is the live evaluator: every ``warning_interval_s`` seconds
  (default 300) it forecasts the accounts with the highest utilisation (IM / equity, up to
  ``warning_max_accounts`` per cycle) with ``warning_paths`` paths over
  ``warning_horizon_hours`` and publishes ``margin_warning`` on the bus
  (``<prefix>.events.warnings.margin_warning``, forwarded to the account's WebSocket) when the
  probability of a call within the horizon crosses ``warning_threshold`` (default 0.05)
  upwards, and ``margin_warning_cleared`` when it falls below ``clear_ratio`` times it. It runs
  in its own task, off the tick path: the engine threads never wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from marginproof.instruments.portfolio import Portfolio

log = logging.getLogger(__name__)


class ForecastSettings(BaseSettings):
    """Forecast limits and the warning evaluator (``MARGINPROOF_FORECAST_*``)."""

    model_config = SettingsConfigDict(env_prefix="MARGINPROOF_FORECAST_", extra="ignore")

    max_paths: int = Field(default=5000, ge=1, le=100_000)
    max_horizon_hours: float = Field(default=72.0, gt=0, le=720)
    concurrency: int = Field(default=1, ge=1, le=64)
    warning_enabled: bool = True
    warning_interval_s: float = Field(default=300.0, gt=0)
    warning_threshold: float = Field(default=0.05, gt=0, lt=1)
    clear_ratio: float = Field(default=0.8, gt=0, le=1)
    warning_paths: int = Field(default=500, ge=50, le=100_000)
    warning_horizon_hours: float = Field(default=24.0, gt=0, le=720)
    warning_max_accounts: int = Field(default=100, ge=1)
    warning_seed: int = Field(default=0, ge=0)


@dataclass(frozen=True)
class AccountInputs:
    """What a forecast of one account needs, read from the engine."""

    account_id: str
    portfolio: Portfolio
    collateral: Mapping[str, float]
    haircuts: Mapping[str, float]
    market: Any
    model: Any
    margin: Any


def account_inputs(container: Any, account_id: str) -> AccountInputs:
    """The account as the engine holds it (404/409 when there is nothing to forecast)."""
    runner = container.runner_for(account_id)
    if runner is None:
        raise HTTPException(503, "no engine runs this account's partition in this process")
    with runner.lock:
        eng = runner.engine
        positions, collateral = eng.account_positions(account_id)
        margin = eng.account_margin(account_id)
        haircuts = dict(eng.haircuts)
    if margin is None and not positions:
        raise HTTPException(404, "unknown account (or not margined yet)")
    if not positions:
        raise HTTPException(409, "the account has no positions to forecast")
    market = container.market()
    if market is None:
        raise HTTPException(409, "no market data yet")
    # the model in force bound to the engines' live risk-factor state (as the what-if)
    model = container.live_model() if hasattr(container, "live_model") \
        else container.engine_model()
    return AccountInputs(account_id, Portfolio.of(positions), collateral, haircuts, market,
                         model, margin)


def forecast_task(model: Any, portfolio: Portfolio, market: Any,
                  collateral: Mapping[str, float], haircuts: Mapping[str, float],
                  config: Mapping[str, Any]) -> dict[str, Any]:
    """Run one forecast (in a worker thread) and return its JSON view."""
    from marginproof.forecast import ForecastConfig, forecast

    cfg = ForecastConfig(**{**dict(config), "quantiles": tuple(config.get(
        "quantiles", ForecastConfig().quantiles))})
    r = forecast(model, portfolio, market, cfg, collateral=collateral, haircuts=haircuts)
    return r.to_dict()


_MODELS: dict[tuple[str, str], Any] = {}


def forecast_task_remote(model_name: str, params: Mapping[str, Any],
                         positions: Mapping[str, float], collateral: Mapping[str, float],
                         haircuts: Mapping[str, float], market: Mapping[str, Any],
                         config: Mapping[str, Any], factors: Any = None) -> dict[str, Any]:
    """Picklable twin of :func:`forecast_task` for worker processes (plain data in and out;
    the model is rebuilt once per process and parameter hash, its history cached, and bound
    to the engines' live factor state ``factors`` when given)."""
    from marginproof.config.params import params_hash
    from marginproof.io.formats import market_from_dict
    from marginproof.models.registry import model_class

    key = (model_name, params_hash(dict(params)))
    mdl = _MODELS.get(key)
    if mdl is None:
        mdl = model_class(model_name)(dict(params))
        _MODELS[key] = mdl
    if factors is not None:
        mdl = mdl.with_factors(factors)
    return forecast_task(mdl, Portfolio.of(dict(positions)), market_from_dict(dict(market)),
                         collateral, haircuts, config)


_SEMAPHORES: dict[int, asyncio.Semaphore] = {}


async def run_forecast(container: Any, inp: AccountInputs, config: Mapping[str, Any],
                       settings: ForecastSettings | None = None) -> dict[str, Any]:
    """The forecast of ``inp`` off the event loop (worker pool, else a bounded thread)."""
    pool = getattr(container, "pool", None)
    if pool is not None and hasattr(pool, "run"):
        from marginproof.io.formats import market_to_dict

        if hasattr(pool, "add_lane") and "forecast" not in pool.lanes():
            with contextlib.suppress(Exception):
                from marginproof.service.workers import LaneQuota

                pool.add_lane("forecast", LaneQuota(concurrency=1, queue=8))
        m = inp.model
        return await pool.run("forecast", forecast_task_remote, m.name, dict(m.params),  # type: ignore[no-any-return]
                              {p.instrument.name: p.quantity for p in inp.portfolio.positions},
                              dict(inp.collateral), dict(inp.haircuts),
                              market_to_dict(inp.market), dict(config),
                              getattr(m, "live_factors", None))
    s = settings or ForecastSettings()
    sem = _SEMAPHORES.get(id(container))
    if sem is None:
        sem = _SEMAPHORES[id(container)] = asyncio.Semaphore(s.concurrency)
    async with sem:
        return await asyncio.to_thread(forecast_task, inp.model, inp.portfolio, inp.market,
                                       inp.collateral, inp.haircuts, config)


def _utilisation(margin: Any) -> float:
    if margin is None:
        return -1.0
    if margin.equity <= 0.0:
        return math.inf
    return float(margin.initial_margin / margin.equity)


class MarginWarnings:
    """The live ``margin_warning`` evaluator (see module docstring)."""

    def __init__(self, container: Any, settings: ForecastSettings | None = None) -> None:
        self.container = container
        self.settings = settings or ForecastSettings()
        self.state: dict[str, dict[str, Any]] = {}
        self.cycles = 0
        self.last_cycle_s = 0.0
        self.last_cycle_at_ms = 0
        self._task: asyncio.Task[None] | None = None

    def config(self) -> dict[str, Any]:
        s = self.settings
        return {"horizon_hours": s.warning_horizon_hours, "n_paths": s.warning_paths,
                "seed": s.warning_seed, "warn_threshold": s.warning_threshold,
                "call_levels": True}

    async def start(self) -> None:
        if self.settings.warning_enabled and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="margin-warnings")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.warning_interval_s)
            try:
                await self.cycle()
            except Exception:  # one bad cycle never stops the evaluator
                log.exception("margin warning cycle failed")

    def candidates(self) -> list[str]:
        """Owned, margined accounts with positions, highest utilisation first."""
        rows: list[tuple[float, str]] = []
        for r in self.container.runners:
            with r.lock:
                eng = r.engine
                for acc in list(eng.acc_ids):
                    pos, _ = eng.account_positions(acc)
                    if pos:
                        rows.append((_utilisation(eng.account_margin(acc)), acc))
        rows.sort(key=lambda t: (-t[0], t[1]))
        return [a for _, a in rows[: self.settings.warning_max_accounts]]

    async def cycle(self) -> list[dict[str, Any]]:
        """Forecast the candidates once; publish and return the events of this cycle."""
        t0 = time.perf_counter()
        s = self.settings
        events: list[dict[str, Any]] = []
        for acc in self.candidates():
            try:
                inp = account_inputs(self.container, acc)
                res = await run_forecast(self.container, inp, self.config(), s)
            except HTTPException:
                continue
            except Exception as exc:  # an account the model cannot margin: skip, say why
                self.state.setdefault(acc, {})["error"] = str(exc)
                continue
            p = float(res["p_call_within_horizon"])
            prev = self.state.get(acc, {})
            active = bool(prev.get("active", False))
            ev_type = None
            if p >= s.warning_threshold and not active:
                ev_type, active = "margin_warning", True
            elif active and p < s.clear_ratio * s.warning_threshold:
                ev_type, active = "margin_warning_cleared", False
            now_ms = int(self.container.clock_ms())
            self.state[acc] = {"active": active, "p_call": p,
                               "p_liquidation": float(res["p_liquidation_within_horizon"]),
                               "evaluated_at_ms": now_ms,
                               "market_timestamp": res["market_timestamp"],
                               "forecast_hash": res["forecast_hash"]}
            if ev_type is not None:
                ev = {"type": ev_type, "account_id": acc, "p_call": p,
                      "p_liquidation": float(res["p_liquidation_within_horizon"]),
                      "threshold": s.warning_threshold, "horizon_hours": s.warning_horizon_hours,
                      "model": res["model"], "params_hash": res["params_hash"],
                      "market_timestamp": res["market_timestamp"], "seed": res["seed"],
                      "forecast_hash": res["forecast_hash"], "status": res["now"]["status"],
                      "initial_margin": res["now"]["initial_margin"],
                      "equity": res["now"]["equity"], "call_levels": res["call_levels"],
                      "evaluated_at_ms": now_ms}
                events.append(ev)
                await self._publish(ev)
        self.cycles += 1
        self.last_cycle_s = time.perf_counter() - t0
        self.last_cycle_at_ms = int(self.container.clock_ms())
        return events

    async def _publish(self, ev: dict[str, Any]) -> None:
        bus = self.container.bus
        if bus is None:
            return
        prefix = self.container.settings.bus_prefix
        msg_id = f"{ev['type']}-{ev['account_id']}-{ev['forecast_hash'][:16]}"
        await bus.publish(f"{prefix}.events.warnings.{ev['type']}", json.dumps(ev).encode(),
                          msg_id, ev)


def warnings_of(app_state: Any) -> MarginWarnings | None:
    w = getattr(app_state, "margin_warnings", None)
    return w if isinstance(w, MarginWarnings) else None
