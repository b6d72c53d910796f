"""Cheapest hedge: ``POST /accounts/{id}/hedge`` and ``POST /whatif/hedge``; nothing is stored.

A hedge search takes tenths of a second to seconds of CPU (linear and mixed-integer
programmes, dozens of real-model margin calls), so it never runs on the event loop nor in the
thread pool the what-if shares: requests go to a dedicated bounded executor, by default one
*process* (spawned, so no lock of the service's threads is inherited and the GIL is its own),
with its own quota of requests in flight. Beyond the quota the answer is 429 with
``Retry-After``; a search that outlives its budget is answered 504. What-if latency is
therefore unaffected by hedge load (``benchmarks/bench_hedge.py`` measures it).

Configuration (environment): ``MARGINPROOF_HEDGE_WORKERS`` (default 1),
``MARGINPROOF_HEDGE_QUOTA`` (requests in flight, queued included; default 4),
``MARGINPROOF_HEDGE_EXECUTOR`` (``process`` or ``thread``; default ``process``).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, ConfigDict, Field, field_validator

from marginproof.errors import InputError, MarginproofError
from marginproof.io.formats import market_to_dict
from marginproof.service.deps import ContainerDep, PrincipalDep, check_account
from marginproof.service.routes.whatif import whatif_inputs
from marginproof.service.schemas import Collateral, Positions, TradeIn, WhatIfIn

router = APIRouter(tags=["hedge"])
MAX_TIME_LIMIT_S = 30.0


# -- request bodies --------------------------------------------------------------------------
class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["equity", "excess", "im"]
    value: float = 0.0

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be finite")
        return v


class HedgeOptions(BaseModel):
    """What to optimise and over what (see ``docs/hedge.md``)."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(default="grid", min_length=1, max_length=64)
    params: dict[str, Any] | None = None
    target: TargetIn | None = Field(default=None, description="reach it at least cost; "
                                    "default: minimise IM + cost")
    max_instruments: int | None = Field(default=None, ge=1, le=10)
    candidates: list[str] | None = Field(default=None, max_length=500)
    quotes: dict[str, Any] | None = Field(default=None, description="a quotes document "
                                          "({'quotes': {name: {bid, ask, bid_size, ...}}})")
    max_options: int | None = Field(default=None, ge=0, le=500)
    venue: str | None = Field(default=None, max_length=32)
    time_limit_s: float = Field(default=5.0, gt=0.0, le=MAX_TIME_LIMIT_S)


class HedgeAccountIn(HedgeOptions):
    """Hedge an account's current positions."""


class HedgeWhatIfIn(HedgeOptions):
    """Hedge a hypothetical book (the what-if body: positions, or an account plus trades)."""

    account_id: str | None = Field(default=None, min_length=1, max_length=128)
    positions: Positions = Field(default_factory=dict, max_length=500)
    trades: list[TradeIn] = Field(default_factory=list, max_length=100)
    collateral: Collateral = Field(default_factory=dict, max_length=50,
                                   description="for equity targets of a hypothetical book")


# -- the job (runs in the worker) ---------------------------------------------------------
_MODELS: dict[tuple[str, str], Any] = {}


def _model(name: str, params: dict[str, Any] | None) -> Any:
    from marginproof.config.params import params_hash
    from marginproof.models.registry import model_class

    key = (name, params_hash(params) if params is not None else "")
    if key not in _MODELS:
        if len(_MODELS) > 16:
            _MODELS.clear()
        cls = model_class(name)
        _MODELS[key] = cls(params) if params is not None else cls()
    return _MODELS[key]


def hedge_job(job: dict[str, Any]) -> dict[str, Any]:
    """One hedge search from plain data (picklable in and out); errors come back as data."""
    from marginproof.hedge.optimize import Target
    from marginproof.hedge.sources import quotes_from_dict, run_hedge
    from marginproof.instruments.portfolio import Portfolio
    from marginproof.io.formats import market_from_dict

    try:
        market = market_from_dict(job["market"])
        pf = Portfolio.of(job["positions"])
        model = _model(job["model"], job["params"])
        t = job.get("target")
        target = Target(t["kind"], float(t["value"])) if t else None
        quotes = quotes_from_dict(job["quotes"], "request quotes") if job.get("quotes") else None
        r = run_hedge(model, pf, job["collateral"], market, target=target,
                      max_instruments=job.get("max_instruments"), quotes=quotes,
                      names=job.get("candidates"), max_options=job.get("max_options"),
                      venue=job.get("venue"), time_limit_s=job.get("time_limit_s"),
                      equity_usd=job.get("equity_usd"))
        out = r.to_dict()
        out["whatif_trades"] = [{"instrument": x["instrument"], "quantity": x["quantity"]}
                                for x in out["trades"]]
        return {"ok": True, "result": out}
    except InputError as exc:
        return {"ok": False, "field": exc.field, "message": exc.message}
    except MarginproofError as exc:
        return {"ok": False, "field": "hedge", "message": str(exc)}


def _warm() -> None:  # worker initializer: pay the imports before the first request
    import marginproof.hedge.sources  # noqa: F401
    import marginproof.models.registry  # noqa: F401


# -- the bounded executor ------------------------------------------------------------------
@dataclass
class HedgePool:
    """A dedicated executor with its own quota of requests in flight (queued included)."""

    workers: int = 1
    quota: int = 4
    kind: str = "process"

    def __post_init__(self) -> None:
        self.in_flight = 0
        self._executor: Executor | None = None

    @classmethod
    def from_env(cls) -> HedgePool:
        def num(key: str, default: int, lo: int, hi: int) -> int:
            raw = os.environ.get(key, str(default))
            try:
                v = int(raw)
            except ValueError:
                raise InputError(key, f"must be an integer, got {raw!r}") from None
            if not lo <= v <= hi:
                raise InputError(key, f"must be in [{lo}, {hi}], got {v}")
            return v

        kind = os.environ.get("MARGINPROOF_HEDGE_EXECUTOR", "process")
        if kind not in ("process", "thread"):
            raise InputError("MARGINPROOF_HEDGE_EXECUTOR", "must be 'process' or 'thread'")
        return cls(num("MARGINPROOF_HEDGE_WORKERS", 1, 1, 64),
                   num("MARGINPROOF_HEDGE_QUOTA", 4, 1, 1024), kind)

    def executor(self) -> Executor:
        if self._executor is None:
            if self.kind == "process":
                self._executor = ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_warm)
            else:
                self._executor = ThreadPoolExecutor(self.workers, "hedge")
        return self._executor

    async def run(self, job: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        if self.in_flight >= self.quota:
            raise HTTPException(429, f"hedge capacity in use ({self.quota} requests in flight);"
                                " retry shortly", headers={"Retry-After": "2"})
        self.in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(self.executor(), hedge_job, job)
            try:
                out: dict[str, Any] = await asyncio.wait_for(fut, timeout_s)
            except TimeoutError:
                raise HTTPException(504, "the hedge search did not finish in time") from None
            except BrokenProcessPool:
                self._executor = None  # a crashed worker: start a new one next time
                raise HTTPException(503, "hedge worker restarted; retry") from None
            return out
        finally:
            self.in_flight -= 1

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


@dataclass
class _HedgeMetrics:
    seconds: Histogram
    outcomes: Counter


def shutdown(app: Any) -> None:
    """Stop the hedge workers of ``app`` (called when the service stops)."""
    pool = getattr(app.state, "hedge_pool", None)
    if pool is not None:
        pool.shutdown()
        app.state.hedge_pool = None


def _state(request: Request) -> tuple[HedgePool, _HedgeMetrics]:
    st = request.app.state
    if getattr(st, "hedge_pool", None) is None:
        st.hedge_pool = HedgePool.from_env()
        reg = st.container.metrics.registry
        st.hedge_metrics = _HedgeMetrics(
            Histogram("marginproof_hedge_seconds", "Hedge search time, request to answer",
                      registry=reg, buckets=(0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)),
            Counter("marginproof_hedge_requests_total", "Hedge requests by outcome",
                    ["outcome"], registry=reg))
    return st.hedge_pool, st.hedge_metrics


async def _run(request: Request, job: dict[str, Any], opts: HedgeOptions) -> dict[str, Any]:
    pool, metrics = _state(request)
    t0 = time.perf_counter()
    try:
        out = await pool.run(job, opts.time_limit_s * 2.0 + 30.0)
    except HTTPException as exc:
        metrics.outcomes.labels(str(exc.status_code)).inc()
        raise
    metrics.seconds.observe(time.perf_counter() - t0)
    if not out["ok"]:
        metrics.outcomes.labels("422").inc()
        raise InputError(out["field"], out["message"])
    metrics.outcomes.labels(out["result"]["status"]).inc()
    return out["result"]  # type: ignore[no-any-return]


def _job(container: Any, opts: HedgeOptions, positions: dict[str, float],
         collateral: dict[str, float], market: Any, equity: float | None) -> dict[str, Any]:
    model = container.whatif_model(opts.model, opts.params)  # validates name and parameters
    return {"model": opts.model, "params": dict(model.params) if opts.params is not None or
            opts.model == container.settings.engine_model else None,
            "positions": positions, "collateral": collateral, "market": market_to_dict(market),
            "target": opts.target.model_dump() if opts.target else None,
            "max_instruments": opts.max_instruments, "candidates": opts.candidates,
            "quotes": opts.quotes, "max_options": opts.max_options, "venue": opts.venue,
            "time_limit_s": opts.time_limit_s, "equity_usd": equity}


@router.post("/accounts/{account_id}/hedge")
async def hedge_account(account_id: str, body: HedgeAccountIn, request: Request,
                        principal: PrincipalDep, container: ContainerDep) -> dict[str, Any]:
    """The cheapest hedge of an account's current positions (owner or operator; nothing is
    stored). Equity targets use the engine's latest equity of the account."""
    check_account(principal, container, account_id)
    market = container.market()
    if market is None:
        raise HTTPException(409, "no market data yet")
    state = container.repo.account_state(account_id)
    if state is None:
        raise HTTPException(404, "unknown account")
    positions = {k: v for k, v in state[1].items() if v != 0.0}
    if not positions:
        raise InputError("positions", "the account holds no positions: nothing to hedge")
    latest = container.repo.latest_margin(account_id)
    equity = float(latest["equity"]) if latest is not None else None
    job = _job(container, body, positions, dict(state[2]), market, equity)
    out = await _run(request, job, body)
    out["account_id"] = account_id
    return out


@router.post("/whatif/hedge")
async def hedge_whatif(body: HedgeWhatIfIn, request: Request, principal: PrincipalDep,
                       container: ContainerDep) -> dict[str, Any]:
    """The cheapest hedge of a hypothetical book (same rules as ``POST /whatif``; nothing is
    stored). ``whatif_trades`` are the suggestion as what-if trades."""
    wi = WhatIfIn(model=body.model, params=body.params, account_id=body.account_id,
                  positions=body.positions, trades=body.trades)
    wbook = whatif_inputs(wi, principal, container)
    positions, market = wbook.after, wbook.market
    collateral = dict(body.collateral) or wbook.collateral
    job = _job(container, body, positions, collateral, market, None)
    return await _run(request, job, body)
