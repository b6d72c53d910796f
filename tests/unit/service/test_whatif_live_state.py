"""The what-if of the model in force answers on the engines' live factor state, in a worker.

A what-if runs in the service's worker processes, which rebuild the model from its parameters;
the task therefore carries the engines' frozen ``RiskFactorState`` and the worker binds the
model to it. Here the state crosses a real process boundary (a spawned pool), and the answer
equals the live model's own margin, not the history-only model's.
"""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from marginproof.engine import MarginEngine
from marginproof.instruments.equity import account_equity
from marginproof.instruments.portfolio import Portfolio
from marginproof.models.registry import get_model
from marginproof.service.tasks import WhatIfTask, market_state, run_whatif
from tests.property.test_live_equals_batch import entries

BOOK = {"BTC-PERPETUAL": 10_000.0, "ETH_USDC-PERPETUAL": -4.0}
COLLATERAL = {"USDC": 50_000.0, "BTC": 0.5}


@pytest.fixture(scope="module")
def live_engine() -> MarginEngine:
    w = {"books": [BOOK], "ops": [("tick", "BTC", 0.07, 2), ("tick", "BTC", -0.08, 1),
                                  ("tick", "BTC", 0.06, 2)]}
    eng = MarginEngine(get_model("dynamic"))
    for e in entries(w):
        eng.apply(e)
    v = eng.factors.freeze().vols["BTC"]
    assert v.n_samples >= 2 and v.sigma_daily != v.seed_sigma_daily  # the factors moved
    return eng


def _task(eng: MarginEngine, factors: Any) -> WhatIfTask:
    snap = eng.valuation_snapshot()
    assert snap is not None
    after = {**BOOK, "BTC-PERPETUAL": 20_000.0}
    m = eng.model
    return WhatIfTask("dynamic", dict(m.params), m.params_hash, "k:" + snap.timestamp.isoformat(),
                      market_state(snap), dict(BOOK), after, dict(COLLATERAL), {}, False, "api",
                      factors)


def test_factor_state_pickles_to_an_equal_state(live_engine: MarginEngine) -> None:
    f = live_engine.factors.freeze()
    g = pickle.loads(pickle.dumps(f))
    assert g == f and g.digest() == f.digest()


def test_worker_whatif_equals_the_live_model_not_the_history_model(
        live_engine: MarginEngine) -> None:
    eng = live_engine
    snap = eng.valuation_snapshot()
    assert snap is not None
    task = _task(eng, eng.live_model.live_factors)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        got = pool.submit(run_whatif, task).result(timeout=300)["ok"]
        plain = pool.submit(run_whatif, _task(eng, None)).result(timeout=300)["ok"]
    after = Portfolio.of(task.after)
    live = eng.live_model.margin(Portfolio(after.positions, dict(COLLATERAL), {}), snap)
    history = eng.model.margin(Portfolio(after.positions, dict(COLLATERAL), {}), snap)
    assert got["initial_margin"] == pytest.approx(live.initial_margin, rel=1e-12)
    assert plain["initial_margin"] == pytest.approx(history.initial_margin, rel=1e-12)
    assert abs(live.initial_margin - history.initial_margin) > 1e-6 * history.initial_margin
    # equity defined once: the worker's equals instruments.equity's
    eq = account_equity(dict(COLLATERAL), after, snap)
    assert got["equity_usd"] == pytest.approx(eq.total_usd, rel=1e-12)
    assert got["collateral_value_usd"] == pytest.approx(eq.collateral_usd, rel=1e-12)


def test_worker_forecast_starts_from_the_live_model(live_engine: MarginEngine) -> None:
    """The service's forecast (worker twin) binds the model to the live factor state: its
    step 0 is the live model's margin of the account, not the history model's."""
    from marginproof.io.formats import market_to_dict
    from marginproof.service.forecasting import forecast_task_remote

    eng = live_engine
    snap = eng.valuation_snapshot()
    assert snap is not None
    m = eng.model
    cfg = {"horizon_hours": 2.0, "step_hours": 1.0, "n_paths": 50, "seed": 7}
    args = ("dynamic", dict(m.params), dict(BOOK), dict(COLLATERAL), {}, market_to_dict(snap),
            cfg)
    got = forecast_task_remote(*args, pickle.loads(pickle.dumps(eng.live_model.live_factors)))
    plain = forecast_task_remote(*args)
    pf = Portfolio(Portfolio.of(BOOK).positions, dict(COLLATERAL), {})
    live = eng.live_model.margin(pf, snap).initial_margin
    assert got["now"]["initial_margin"] == pytest.approx(live, rel=1e-9)
    assert plain["now"]["initial_margin"] == pytest.approx(eng.model.margin(pf, snap)
                                                           .initial_margin, rel=1e-9)
