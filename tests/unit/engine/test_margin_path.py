"""The margin-path seam: stages after the model figure, hold-never-lower first."""

from __future__ import annotations

import numpy as np
from _engine_helpers import account_body

from marginproof.engine import EngineConfig, EntryKind, MarginEngine, Tick
from marginproof.engine.margin_path import (
    ColumnarStage,
    HoldNeverLower,
    MarginPath,
    PathBatch,
    PathResult,
)
from marginproof.models.grid import GridModel


def _batch(rows: list[int], im: list[float], degraded: list[bool], clock: int = 0) -> PathBatch:
    r = np.array(rows, np.int64)
    f = np.array(im, float)
    return PathBatch(1, clock, np.zeros(len(rows), np.int64), r, f, 0.5 * f, {"core": f},
                     np.array(degraded, bool), "test", "grid")


def test_hold_never_lower_keeps_the_previous_called_margin_only_while_degraded():
    path = MarginPath([HoldNeverLower()])
    r = path.run(_batch([0, 1], [100.0, 50.0], [False, False]))
    assert r.im.tolist() == [100.0, 50.0] and not r.held.any()
    r = path.run(_batch([0, 1], [60.0, 80.0], [True, True]))
    assert r.im.tolist() == [100.0, 80.0]  # lowered one held, raised one follows
    assert r.mm.tolist() == [50.0, 40.0]
    assert r.held.all()
    r = path.run(_batch([0], [60.0], [False]))
    assert r.im.tolist() == [60.0] and not r.held.any()  # good data again: the figure


def test_first_margin_on_degraded_data_is_the_figure_flagged_held():
    r = MarginPath([HoldNeverLower()]).run(_batch([3], [7.0], [True]))
    assert r.im.tolist() == [7.0] and r.held.tolist() == [True]


class _HalveDrops(ColumnarStage):
    """Test stage: a fall of the called IM is limited to half the way down per batch."""

    name = "halve_drops"
    columns = {"last": np.float64, "has": np.bool_}

    def apply(self, batch: PathBatch, current: PathResult) -> PathResult:
        rows = batch.rows
        last, has = self.col["last"][rows], self.col["has"][rows]
        im = np.where(has & (current.im < last), 0.5 * (current.im + last), current.im)
        self.col["last"][rows] = im
        self.col["has"][rows] = True
        return current.with_(im=im, mm=current.mm * np.divide(
            im, current.im, out=np.ones_like(im), where=current.im > 0),
            halved=has & (current.im < last))


def test_stages_run_in_order_and_state_round_trips():
    path = MarginPath([_HalveDrops(), HoldNeverLower()])
    path.run(_batch([0], [100.0], [False]))
    r = path.run(_batch([0], [20.0], [False]))
    assert r.im.tolist() == [60.0] and r.flags["halved"].tolist() == [True]
    state = path.state_arrays()
    assert set(state) == {"halve_drops.last", "halve_drops.has", "hold_never_lower.last_im",
                          "hold_never_lower.last_mm", "hold_never_lower.has"}
    other = MarginPath([_HalveDrops(), HoldNeverLower()])
    other.load_state_arrays(state)
    assert other.run(_batch([0], [20.0], [False])).im.tolist() == \
        path.run(_batch([0], [20.0], [False])).im.tolist() == [40.0]


def test_engine_runs_its_configured_path_after_the_grid_figure(demo, log, market_entry):
    cfg = EngineConfig(margin_path=lambda model: MarginPath([_HalveDrops(), HoldNeverLower()]))
    eng = MarginEngine(GridModel(), cfg)
    plain = MarginEngine(GridModel())
    entries = [market_entry(log), log(EntryKind.ACCOUNT,
                                      account_body("a", {"BTC-PERPETUAL": 50_000}, {}))]
    ts = int(demo[1].timestamp.timestamp() * 1000)
    entries.append(log(EntryKind.FILL, {"account_id": "a", "instrument": "BTC-PERPETUAL",
                                        "quantity": -40_000}))
    entries.append(log(EntryKind.TICK, Tick("replay", "replay:BTC", "BTC", ts + 1000,
                                            index_price=demo[1].index("BTC") * 1.01).to_dict()))
    for e in entries:
        eng.apply(e)
        plain.apply(e)
    m, p = eng.account_margin("a"), plain.account_margin("a")
    assert m is not None and p is not None
    assert m.initial_margin > p.initial_margin  # the falls were phased, not applied at once
    i = eng.acc_index["a"]
    assert eng.figure_im[i] == p.initial_margin  # the model figure is the plain engine's IM
