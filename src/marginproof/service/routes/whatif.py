"""What-if simulator: margin of a hypothetical portfolio or trade; nothing is stored."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException

from marginproof.errors import InputError
from marginproof.instruments.portfolio import Portfolio
from marginproof.market.snapshot import MarketSnapshot
from marginproof.service.deps import ContainerDep, PrincipalDep, check_account
from marginproof.service.schemas import WhatIfIn, WhatIfOut

router = APIRouter(prefix="/whatif", tags=["what-if"])


def whatif_inputs(body: Any, principal: Any, container: Any
                  ) -> tuple[dict[str, float], MarketSnapshot]:
    """Positions of a what-if (account positions + hypothetical lines + trades, netted) and the
    market to margin them at. A hypothetical portfolio alone reveals nothing about other
    accounts; adding an account's positions needs access to that account. Nothing is stored."""
    if body.account_id is not None:
        check_account(principal, container, body.account_id)
    market = container.market()
    if market is None:
        raise HTTPException(409, "no market data yet")
    positions: dict[str, float] = {}
    if body.account_id is not None:
        state = container.repo.account_state(body.account_id)
        if state is None:
            raise HTTPException(404, "unknown account")
        positions.update(state[1])
    for name, q in body.positions.items():
        positions[name] = positions.get(name, 0.0) + q
    for t in body.trades:
        positions[t.instrument] = positions.get(t.instrument, 0.0) + t.quantity
    positions = {k: v for k, v in positions.items() if v != 0.0}
    if not positions:
        raise InputError("positions", "the hypothetical portfolio is empty")
    return positions, market


@router.post("", response_model=WhatIfOut)
async def what_if(body: WhatIfIn, principal: PrincipalDep, container: ContainerDep
                  ) -> WhatIfOut:
    """Margin under any registry model at the current market (account keys: own account).

    Runs on the event loop: a what-if of a few positions takes about 2 ms of CPU, less than
    the cost of handing it to the thread pool and back.
    """
    t0 = time.perf_counter()
    positions, market = whatif_inputs(body, principal, container)
    in_force = container.engine_model().name
    model = container.whatif_model(body.model or in_force, body.params)
    result = model.margin(Portfolio.of(positions), market)
    container.metrics.whatif_seconds.observe(time.perf_counter() - t0)
    ws = result.worst_scenario
    return WhatIfOut(model=result.model, params_hash=result.params_hash,
                     market_timestamp=result.market_timestamp.isoformat(),
                     currency=result.currency, initial_margin=float(result.initial_margin),
                     maintenance_margin=float(result.maintenance_margin), positions=positions,
                     worst_scenario=None if ws is None else dict(ws.__dict__),
                     result=result.to_dict() if body.detail else None,
                     model_in_force=(body.model in (None, in_force)) and body.params is None)
