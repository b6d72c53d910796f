"""The live path as a stage of the engine's margin path (:mod:`marginproof.engine.margin_path`).

:class:`LivePathStage` runs :class:`~marginproof.apc.live.LivePath` (buffer with release, hourly
speed limit, phases) on every batch the engine margins, and -- on a recalibration or parameter
change that would raise many accounts' margin at once -- the market-response check of
:mod:`marginproof.apc.market_response` first. :func:`live_margin_path` is the path the engine
runs for every model: this stage, then :class:`~marginproof.engine.margin_path.HoldNeverLower`.
For models without an ``[apc]`` table the stage passes the figure through (hold only).

What the stage needs from the engine beyond the batch (equity, delta on the depth's
underlying, the live depth) comes from a *market context* callable the engine sets
(:attr:`LivePathStage.context`); without one the check is skipped and says so.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.apc.live import LivePath, PathParams
from marginproof.apc.market_response import MarketResponseParams, MarketResponseReport, assess
from marginproof.engine.margin_path import HoldNeverLower, MarginPath, PathBatch, PathResult
from marginproof.stress.cascade import OrderBook

FloatArray = NDArray[np.float64]

#: Causes whose change of figure is the account's own book: the path is rebased, not limited.
BOOK_CAUSES = frozenset({"fill", "account"})
#: Causes that count as a recalibration for the market-response check.
RECALIBRATION_PREFIXES = ("params", "recalibration", "market")


def is_recalibration(cause: str) -> bool:
    """Whether a batch's cause (``+``-joined parts, e.g. ``tick:BTC+recalibration:vol:BTC``)
    includes a recalibration, a parameter change or a market replacement."""
    return any(part.startswith(RECALIBRATION_PREFIXES) for part in cause.split("+"))


@dataclass(frozen=True)
class MarketContext:
    """Live state the market-response check needs for the batch's accounts (shape (n,))."""

    underlying: str
    price: float
    book: OrderBook
    equity: FloatArray
    delta_coins: FloatArray


def _mm_fraction(model: Any) -> float:
    params = getattr(model, "params", {}) or {}
    m = params.get("maintenance", {}) if isinstance(params, Mapping) else {}
    v = m.get("mm_fraction", 1.0) if isinstance(m, Mapping) else 1.0
    return float(v)


class LivePathStage:
    """Buffer with release, speed limit and phasing per account (see module docstring)."""

    name = "apc_path"

    def __init__(self, model: Any = None) -> None:
        params = getattr(model, "params", {}) if model is not None else {}
        self.path = LivePath(PathParams.from_model_params(params))
        self.response = MarketResponseParams.from_model_params(params)
        self.mm_fraction = _mm_fraction(model) if model is not None else 1.0
        self.context: Callable[[PathBatch], MarketContext | None] | None = None
        self.reports: deque[tuple[int, MarketResponseReport]] = deque(maxlen=200)
        self.pending: list[tuple[int, MarketResponseReport]] = []
        self.last_step: dict[str, FloatArray] = {}

    # -- the stage protocol ------------------------------------------------------------------
    def grow(self, n_rows: int) -> None:
        self.path._ensure(n_rows)

    def reconfigure(self, model: Any) -> None:
        params = getattr(model, "params", {})
        self.path.set_params(PathParams.from_model_params(params))
        self.response = MarketResponseParams.from_model_params(params)
        self.mm_fraction = _mm_fraction(model)

    def apply(self, batch: PathBatch, current: PathResult) -> PathResult:
        rows = batch.rows
        x = current.im
        t = int(batch.clock_ms)
        book = batch.cause in BOOK_CAUSES
        if (self.response.enabled and is_recalibration(batch.cause) and len(batch)
                and not self.path.in_phase(t)):
            self._check(batch, x, t, book)
        step = self.path.step(rows, x, t, book, batch.degraded)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(x > 0.0, current.mm / x, self.mm_fraction)
        self.last_step = {"figure": step.figure, "buffered": step.buffered,
                          "called": step.called}
        return current.with_(im=step.called, mm=step.called * ratio,
                             held=current.held | step.held, speed_limited=step.limited,
                             phased=np.full(len(batch), self.path.in_phase(t)))

    def _check(self, batch: PathBatch, x: FloatArray, t: int, book: bool) -> None:
        ctx = self.context(batch) if self.context is not None else None
        if ctx is None:
            return
        rows = batch.rows
        cur = self.path.called(rows)
        at_once = self.path.preview(rows, x, t, book, batch.degraded, in_phase=False)
        phased = self.path.preview(rows, x, t, book, batch.degraded, in_phase=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(x > 0.0, batch.figure_mm / x, self.mm_fraction)
        rep = assess(ctx.underlying, cur, at_once.buffered, ratio, ctx.equity, ctx.delta_coins,
                     ctx.price, ctx.book, self.response, t, phased.called)
        if rep.checked:
            self.reports.append((batch.seq, rep))
            self.pending.append((batch.seq, rep))
        if rep.phase and rep.phase_until_ms is not None:
            self.path.add_phase(t, rep.phase_until_ms)

    def drain_reports(self) -> list[tuple[int, MarketResponseReport]]:
        """Reports made since the last call (the engine turns them into events)."""
        out, self.pending = self.pending, []
        return out

    def state_arrays(self) -> dict[str, NDArray[Any]]:
        lp = self.path
        ph = np.array(lp.phases, np.int64).reshape(-1, 2)
        return {"x": lp.x.copy(), "a": lp.a.copy(), "c": lp.c.copy(), "t_ms": lp.t_ms.copy(),
                "has": lp.has.copy(), "phases": ph}

    def load_state_arrays(self, arrays: Mapping[str, NDArray[Any]]) -> None:
        lp = self.path
        lp.x = np.array(arrays["x"], np.float64)
        lp.a = np.array(arrays["a"], np.float64)
        lp.c = np.array(arrays["c"], np.float64)
        lp.t_ms = np.array(arrays["t_ms"], np.int64)
        lp.has = np.array(arrays["has"], bool)
        lp.phases = [(int(s), int(e)) for s, e in np.asarray(arrays["phases"]).tolist()]

    # -- explanations -----------------------------------------------------------------------
    def components_of(self, row: int) -> dict[str, float] | None:
        """Path components of one account: ``buffer = A - X``, ``speed_limit = C - A``."""
        st = self.path.state_of(row)
        if st is None:
            return None
        return {"figure": st["figure"], "buffer": st["buffered"] - st["figure"],
                "speed_limit": st["called"] - st["buffered"], "called": st["called"]}


def validate_params(params: Mapping[str, Any]) -> None:
    """Raise :class:`InputError` naming the field if the live-path parameters are invalid."""
    PathParams.from_model_params(params)
    MarketResponseParams.from_model_params(params)


def live_margin_path(model: Any) -> MarginPath:
    """The margin path of the live engine: :class:`LivePathStage`, then hold-never-lower."""
    return MarginPath([LivePathStage(model), HoldNeverLower()])
