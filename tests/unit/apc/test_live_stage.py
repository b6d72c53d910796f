"""The live path as an engine margin-path stage: engine steps = the batch path twin."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from marginproof.apc.live import MS_PER_HOUR, PathParams, margin_path_reference
from marginproof.apc.stage import LivePathStage, MarketContext, live_margin_path
from marginproof.config.params import config_dir, load_toml
from marginproof.demo.book import demo_account
from marginproof.engine import EngineConfig, EntryKind, LogEntry, MarginEngine
from marginproof.engine.margin_path import PathBatch
from marginproof.io.formats import market_to_dict
from marginproof.models.grid import GridModel
from marginproof.stress.cascade import DepthProfile, OrderBook

HOUR = int(MS_PER_HOUR)
APC = {"release_buffer": 0.25, "speed_limit": {"enabled": True, "up_per_hour": 0.1,
                                               "down_per_hour": 0.02, "min_coverage": 0.8}}


def grid_with_apc(**over: Any) -> GridModel:
    p = load_toml(config_dir() / "models" / "grid.toml")
    p["apc"] = {**APC, **over}
    return GridModel(p)


class Log:
    def __init__(self, t0: int) -> None:
        self.seq, self.t = 0, t0

    def __call__(self, kind: EntryKind, body: dict[str, Any], dt: int = 1) -> LogEntry:
        self.seq += 1
        self.t += dt
        return LogEntry(self.seq, kind, self.t, "test", body)


def tick(und: str, index: float, ts: int) -> dict[str, Any]:
    return {"source": "test", "stream": f"index:{und}", "underlying": und, "exchange_ms": ts,
            "index_price": index}


def test_engine_path_equals_the_reference_twin_over_a_tick_sequence() -> None:
    acc, mkt = demo_account()
    model = grid_with_apc()
    eng = MarginEngine(model, EngineConfig(margin_path=live_margin_path))
    t0 = int(mkt.timestamp.timestamp() * 1000)
    log = Log(t0)
    eng.apply(log(EntryKind.MARKET, market_to_dict(mkt)))
    body = {"account_id": "a1", "positions": {p.instrument.name: p.quantity
                                              for p in acc.portfolio.positions},
            "collateral": dict(acc.collateral)}
    eng.apply(log(EntryKind.ACCOUNT, body))
    i = eng.acc_index["a1"]
    figures, times, book, called = [], [], [], []

    def record(changed: bool) -> None:
        figures.append(float(eng.figure_im[i]))
        times.append(eng.clock_ms)
        book.append(changed)
        called.append(float(eng.im[i]))

    record(True)
    px = mkt.index("BTC")
    rng = np.random.default_rng(0)
    for _ in range(30):
        px *= float(np.exp(rng.normal(0, 0.01)))
        dt = int(rng.choice([1000, 600_000, HOUR]))
        out = eng.apply(log(EntryKind.TICK, tick("BTC", px, log.t + dt), dt))
        if out.batch is not None and "a1" in out.batch.account_ids:
            record(False)
    assert len(figures) > 20
    _, c = margin_path_reference(figures, times, book, [False] * len(figures),
                                 PathParams.from_model_params(model.params))
    assert called == c.tolist()
    assert max(called[k] / figures[k] for k in range(len(called))) > 1.0  # the buffer is on
    assert eng.mm[i] == pytest.approx(0.8 * eng.im[i])


def test_models_without_apc_get_the_figure_and_hold_only() -> None:
    acc, mkt = demo_account()
    eng = MarginEngine(GridModel(load_toml(config_dir() / "models" / "grid.toml")),
                       EngineConfig(margin_path=live_margin_path))
    log = Log(int(mkt.timestamp.timestamp() * 1000))
    eng.apply(log(EntryKind.MARKET, market_to_dict(mkt)))
    eng.apply(log(EntryKind.ACCOUNT, {"account_id": "a", "positions": {
        p.instrument.name: p.quantity for p in acc.portfolio.positions}, "collateral": {}}))
    i = eng.acc_index["a"]
    assert eng.im[i] == eng.figure_im[i] > 0.0


def test_stage_state_round_trips_and_reconfigure_keeps_state() -> None:
    st = LivePathStage(grid_with_apc())
    b = PathBatch(1, 0, np.zeros(2, np.int64), np.array([0, 1]), np.array([100.0, 10.0]),
                  np.array([80.0, 8.0]), {}, np.zeros(2, bool), "tick:BTC", "grid")
    from marginproof.engine.margin_path import PathResult

    r = st.apply(b, PathResult(b.figure_im, b.figure_mm, np.zeros(2, bool)))
    assert r.im.tolist() == [125.0, 12.5] and r.mm.tolist() == [100.0, 10.0]
    st2 = LivePathStage(grid_with_apc())
    st2.load_state_arrays(st.state_arrays())
    assert st2.components_of(0) == st.components_of(0) == {
        "figure": 100.0, "buffer": 25.0, "speed_limit": 0.0, "called": 125.0}
    st.reconfigure(GridModel(load_toml(config_dir() / "models" / "grid.toml")))
    assert st.path.params.hold_only and st.path.called(np.array([0]))[0] == 125.0


def test_recalibration_feeding_a_spiral_is_phased() -> None:
    model = grid_with_apc(market_response={
        "enabled": True, "rise_threshold": 0.1, "min_share": 0.5, "min_accounts": 5,
        "depth_band": 0.02, "max_forced_to_depth": 0.5, "phase_hours": 6,
        "phase_up_per_hour": 0.01, "phase_min_coverage": 0.5})
    st = LivePathStage(model)
    n = 50
    rows = np.arange(n)
    coins = np.full(n, 2.0)
    fig = np.full(n, 20_000.0)
    eq = np.full(n, 21_000.0)
    d = np.linspace(0.0, 0.05, 6)
    book = OrderBook(DepthProfile(d, d * 1e6, 1e6), DepthProfile(d, d * 1e6, 1e6))
    st.context = lambda b: MarketContext("BTC", 100_000.0, book, eq, coins)
    from marginproof.engine.margin_path import PathResult

    def run(x: np.ndarray, t: int, cause: str) -> Any:
        b = PathBatch(1, t, np.zeros(n, np.int64), rows, x, 0.8 * x, {}, np.zeros(n, bool),
                      cause, "grid")
        return st.apply(b, PathResult(x, 0.8 * x, np.zeros(n, bool)))

    run(fig, 0, "account")
    r = run(fig * 2.0, HOUR, "recalibration:vol:BTC")
    (seq, rep), = st.drain_reports()
    assert rep.checked and rep.phase and rep.forced_selling_usd > 0
    assert st.path.phases == [(HOUR, HOUR + 6 * HOUR)]
    # phase limits: +1 %/h and floor 0.5 X = 20,000, i.e. the floor binds at 25,000 -> 25,250?
    assert r.im[0] == pytest.approx(max(0.5 * 40_000.0, 25_000.0 * 1.01))
    assert r.flags["phased"].all()
