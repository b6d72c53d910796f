"""What-if simulator: margin of a hypothetical book before and after trades; nothing is stored.

Execution model. A what-if is CPU work (2 ms for ``grid`` on a small book, tens of ms for
``mc``), so it never runs on the event loop: it goes to the service's worker pool
(:mod:`marginproof.service.workers`, lane ``whatif``, its own quota), with per-request caps on
the parameters that scale its cost and a rate-limit charge per key that grows with the model's
cost. A full lane answers 429 with ``Retry-After``; ``/health`` and every other route stay
responsive while what-ifs run.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException, Response

from marginproof.errors import InputError
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.base import BaseMarginModel
from marginproof.models.presets.inputs import dump_portfolio_inputs
from marginproof.service.deps import ContainerDep, PrincipalDep, check_account
from marginproof.service.ratelimit import RateLimiter
from marginproof.service.schemas import WhatIfIn, WhatIfOut, positions_map
from marginproof.service.tasks import WhatIfTask, market_state, run_whatif

router = APIRouter(prefix="/whatif", tags=["what-if"])

LANE = "whatif"
# per-request caps of the parameters that scale a what-if's cost (any section)
PARAM_CAPS = {"log2_points": 12, "n_batches": 16, "window": 2000, "garch_window": 2000,
              "copula_window": 2000, "floor_lookback_days": 3653, "lookback": 3000}
# rate-limit tokens one what-if costs, by model (simulation models cost more)
MODEL_COST = {"grid": 1.0, "standard": 1.0, "fhs": 2.0, "dynamic": 3.0, "mc": 10.0}


@dataclass(frozen=True)
class WhatIfBook:
    """A what-if's inputs, gathered on the service side."""

    before: dict[str, float]
    after: dict[str, float]
    collateral: dict[str, float]
    preset_inputs: dict[str, Any]
    market: MarketSnapshot
    base_account: str | None


def whatif_inputs(body: WhatIfIn, principal: Any, container: Any) -> WhatIfBook:
    """The book before (account positions + ``positions`` + ``portfolio``) and after (+ the
    trades), its collateral, and the market to margin them at. A hypothetical portfolio alone
    reveals nothing about other accounts; starting from an account needs access to it."""
    if body.account_id is not None:
        check_account(principal, container, body.account_id)
    market = container.market()
    if market is None:
        raise HTTPException(409, "no market data yet")
    before: dict[str, float] = {}
    collateral: dict[str, float] = {}
    preset: dict[str, Any] = {}

    def add(pos: dict[str, float], coll: dict[str, float]) -> None:
        for k, q in pos.items():
            before[k] = before.get(k, 0.0) + q
        for a, x in coll.items():
            collateral[a] = collateral.get(a, 0.0) + x

    if body.account_id is not None:
        state = container.repo.account_state(body.account_id)
        if state is None:
            raise HTTPException(404, "unknown account (to price a portfolio file, send it as "
                                "'portfolio': its account_id is then only a label)")
        add(dict(state[1]), dict(state[2]))
    add(positions_map(body.positions), dict(body.collateral))
    if body.portfolio is not None:
        add(positions_map(body.portfolio.positions), dict(body.portfolio.collateral))
        preset = dict(dump_portfolio_inputs(body.portfolio.preset_inputs))
    after = dict(before)
    for t in body.trades:
        after[t.instrument] = after.get(t.instrument, 0.0) + t.quantity
    before = {k: v for k, v in before.items() if v != 0.0}
    after = {k: v for k, v in after.items() if v != 0.0}
    if not after:
        raise InputError("positions", "the hypothetical portfolio is empty")
    return WhatIfBook(before, after, {k: v for k, v in collateral.items() if v != 0.0},
                      preset, market, body.account_id)


def check_param_caps(params: Any, path: str = "params") -> None:
    """422 for a parameter above its what-if cap (the cost of a what-if is bounded)."""
    stack = [(params, path)]
    while stack:
        obj, p = stack.pop()
        if isinstance(obj, dict):
            for k, v in obj.items():
                cap = PARAM_CAPS.get(str(k))
                if cap is not None and isinstance(v, (int, float)) and not isinstance(v, bool) \
                        and v > cap:
                    raise InputError(f"{p}.{k}", f"at most {cap} in a what-if request")
                stack.append((v, f"{p}.{k}"))


_MODEL_CACHE: OrderedDict[tuple[int, str, str], BaseMarginModel] = OrderedDict()


def _model(container: Any, name: str, params: dict[str, Any] | None) -> BaseMarginModel:
    """The model a what-if runs (validated here: bad parameters are a 422 before any work)."""
    if params is not None:
        check_param_caps(params)
    key = (id(container), name, "" if params is None else
           json.dumps(params, sort_keys=True, default=str))
    if params is None and name == container.settings.engine_model:
        return container.whatif_model(name, None)  # type: ignore[no-any-return]  # in force
    m = _MODEL_CACHE.get(key)
    if m is None:
        m = container.whatif_model(name, params)
        _MODEL_CACHE[key] = m
        while len(_MODEL_CACHE) > 32:
            _MODEL_CACHE.popitem(last=False)
    return m


_MARKET_STATE: dict[int, tuple[MarketSnapshot, str, Any]] = {}


def _market_payload(container: Any, market: MarketSnapshot) -> tuple[str, Any]:
    """``(key, state)`` of the snapshot for the workers (built once per snapshot)."""
    cached = _MARKET_STATE.get(id(container))
    if cached is None or cached[0] is not market:
        key = f"{id(container)}:{id(market)}:{market.timestamp.isoformat()}"
        cached = (market, key, market_state(market))
        _MARKET_STATE[id(container)] = cached
    return cached[1], cached[2]


async def compute_whatif(body: WhatIfIn, principal: Any, container: Any, view: str
                         ) -> dict[str, Any]:
    """Validate, charge the key, run in the pool; the result dict of the task."""
    container.pool.check(LANE)  # a full lane refuses before any work (429)
    book = whatif_inputs(body, principal, container)
    in_force = container.engine_model().name
    name = body.model or in_force
    model = _model(container, name, body.params)
    cost = MODEL_COST.get(name, 3.0)
    wait = container.limiter.take(principal.key_id, cost - 1.0) if cost > 1.0 else 0.0
    if wait > 0:
        raise HTTPException(429, "rate limit of this key exceeded",
                            headers={"Retry-After": RateLimiter.retry_after(wait)})
    key, state = _market_payload(container, book.market)
    shipped = body.params is None and name != container.settings.engine_model
    task = WhatIfTask(name, None if shipped else dict(model.params), model.params_hash,
                      key, state, book.before, book.after, book.collateral, book.preset_inputs,
                      bool(body.detail), view,
                      # the model in force answers on the engines' live factor state
                      getattr(model, "live_factors", None))
    t0 = time.perf_counter()
    try:
        res = await container.pool.run(LANE, run_whatif, task,
                                       timeout_s=container.settings.whatif_timeout_s)
    except TimeoutError:
        raise HTTPException(503, "the what-if took too long", headers={"Retry-After": "5"}
                            ) from None
    container.metrics.whatif_seconds.observe(time.perf_counter() - t0)
    if "error" in res:
        field, message = res["error"]
        raise InputError(field, message)
    out: dict[str, Any] = res["ok"]
    out["base_account"] = book.base_account
    out["model_in_force"] = name == in_force and body.params is None
    return out


@router.post("", response_model=WhatIfOut, responses={
    429: {"description": "the what-if workers or this key's rate are saturated "
                         "(see Retry-After)"}})
async def what_if(body: WhatIfIn, principal: PrincipalDep, container: ContainerDep
                  ) -> Response:
    """Margin before and after the trades under any registry model at the current market,
    with the change and the book's equity and excess (account keys: own account only)."""
    out = WhatIfOut(**await compute_whatif(body, principal, container, "api"))
    # validated once, here (returning the model would have FastAPI dump and re-validate it)
    return Response(out.model_dump_json(), media_type="application/json")
