"""The margin path: path-dependent steps between the model figure and the called margin.

A tick's path through the engine is *feed -> engine -> model -> margin path -> bus*. The model
adapter (:mod:`marginproof.engine.adapters`) gives each moved account its **model figure**: the
IM/MM the model in force computes on the current positions and risk-factor state, with its
components (for ``dynamic``: core, APC adjustment (stressed weight, 10-year floor), stress floor,
add-ons; for ``grid``: the per-underlying requirements summed). That figure is what
``model.margin(portfolio, snapshot)`` returns and what the live-equals-batch tests compare.

Everything that depends on the *history* of an account's margin comes after, here, as a
pipeline of :class:`MarginPathStage` objects run over one columnar :class:`PathBatch` (the
accounts one log entry moved). Each stage sees the previous stage's output and the batch, keeps
its own per-account state (arrays indexed by the engine's account row), and returns the
called IM/MM. Examples: buffer with release, an hourly speed limit, cascade phasing (the
``livepath`` stages in :mod:`marginproof.apc`), and :class:`HoldNeverLower`, the first stage
implemented here and the last one in every default path.

Contract of a stage (so the engine stays deterministic and replayable):

* pure in its inputs: the batch (log clock, market time, figure, components, degraded flags)
  and its own state, which it changes only in :meth:`MarginPathStage.apply`; no wall clock, no
  randomness, no I/O;
* time is ``batch.clock_ms`` (the log's ``logged_at_ms`` clock), so the same log gives the
  same path;
* it returns arrays of the batch's length, never NaN, never negative;
* :meth:`~MarginPathStage.grow` is called before any batch that has rows ``>= n``;
  :meth:`~MarginPathStage.state_arrays` / :meth:`~MarginPathStage.load_state_arrays` carry its
  state through engine snapshots;
* :meth:`~MarginPathStage.reconfigure` is called when a parameter change makes another model
  (or parameter set) the model in force; a stage keeps its per-account state across it.

Bad data never lowers a margin: :class:`HoldNeverLower` keeps ``called = max(new, previous
called)`` for every account the batch marks ``degraded`` (a rejected or stale feed, an
unpriceable position), whatever the stages before it proposed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class PathBatch:
    """The accounts one log entry moved, as columns of length ``n`` (engine rows ``rows``).

    Attributes
    ----------
    seq : int
        Input-log sequence number of the entry.
    clock_ms : int
        The log clock (largest ``logged_at_ms`` so far): the path's time axis.
    market_ts_ms : ndarray of int64, shape (n,)
        Market time of the data each account was margined on.
    rows : ndarray of int64, shape (n,)
        Engine account rows (stable for an account's lifetime; index per-account state).
    figure_im, figure_mm : ndarray, shape (n,)
        The model figure (USD), before any path step.
    components : Mapping[str, ndarray of shape (n,)]
        The model's components of ``figure_im`` (names as in ``MarginResult.components``).
    degraded : ndarray of bool, shape (n,)
        True where the account's inputs are degraded (rejected/stale feed of an underlying it
        is exposed to, a position that cannot be priced): the margin must not go down.
    cause : str
        Why the entry re-margined (``tick:BTC``, ``fill``, ``params``, ``recalibration:...``).
    model : str
        Name of the model in force.
    """

    seq: int
    clock_ms: int
    market_ts_ms: IntArray
    rows: IntArray
    figure_im: FloatArray
    figure_mm: FloatArray
    components: Mapping[str, FloatArray]
    degraded: BoolArray
    cause: str
    model: str

    def __len__(self) -> int:
        return int(self.rows.shape[0])


@dataclass(frozen=True)
class PathResult:
    """Called margin after some stages, columns of the batch's length.

    Attributes
    ----------
    im, mm : ndarray, shape (n,)
        Called IM and MM (USD).
    held : ndarray of bool, shape (n,)
        True where a stage kept the margin up because of degraded data.
    flags : Mapping[str, ndarray of bool, shape (n,)]
        Per-stage markers (``speed_limited``, ``phased`` ...) for explanations.
    """

    im: FloatArray
    mm: FloatArray
    held: BoolArray
    flags: Mapping[str, BoolArray] = field(default_factory=dict)

    def with_(self, im: FloatArray | None = None, mm: FloatArray | None = None,
              held: BoolArray | None = None, **flags: BoolArray) -> PathResult:
        """A copy with some columns replaced and flags added."""
        return PathResult(self.im if im is None else im, self.mm if mm is None else mm,
                          self.held if held is None else held, {**self.flags, **flags})


@runtime_checkable
class MarginPathStage(Protocol):
    """One path-dependent step (see module docstring for the contract)."""

    @property
    def name(self) -> str: ...

    def grow(self, n_rows: int) -> None:
        """Make room for per-account state of rows ``0 .. n_rows - 1``."""

    def apply(self, batch: PathBatch, current: PathResult) -> PathResult:
        """The called margin after this stage, given the previous stage's ``current``."""

    def reconfigure(self, model: Any) -> None:
        """A new model or parameter set is in force (state is kept)."""

    def state_arrays(self) -> dict[str, NDArray[Any]]:
        """Per-account state as named arrays (for snapshots and state digests)."""

    def load_state_arrays(self, arrays: Mapping[str, NDArray[Any]]) -> None:
        """Inverse of :meth:`state_arrays`."""


class ColumnarStage(ABC):
    """Base for stages whose state is a few float/bool columns indexed by engine row.

    Subclasses list their columns in ``columns`` (name -> dtype) and use ``self.col[name]``.
    """

    name = "columnar"
    columns: Mapping[str, Any] = {}

    def __init__(self) -> None:
        self.col: dict[str, NDArray[Any]] = {k: np.zeros(16, dt) for k, dt in
                                             self.columns.items()}

    def grow(self, n_rows: int) -> None:
        for k, a in self.col.items():
            if n_rows > a.shape[0]:
                out = np.zeros(max(n_rows, 2 * a.shape[0]), a.dtype)
                out[: a.shape[0]] = a
                self.col[k] = out

    def reconfigure(self, model: Any) -> None:  # noqa: B027 - optional hook
        """Parameters of the new model (default: nothing to read)."""

    def state_arrays(self) -> dict[str, NDArray[Any]]:
        return {k: a.copy() for k, a in self.col.items()}

    def load_state_arrays(self, arrays: Mapping[str, NDArray[Any]]) -> None:
        for k in self.columns:
            self.col[k] = np.array(arrays[k], dtype=self.columns[k])

    @abstractmethod
    def apply(self, batch: PathBatch, current: PathResult) -> PathResult:
        """The stage's figures for ``batch``'s rows, given the figures before it."""


class HoldNeverLower(ColumnarStage):
    """Bad data never lowers a margin: degraded accounts keep ``max(new, previous called)``.

    State per account: the last called IM and MM it published and whether it has published
    one. An account on degraded data with no previous margin gets the new figure (there is
    nothing to hold), flagged ``held``.
    """

    name = "hold_never_lower"
    columns = {"last_im": np.float64, "last_mm": np.float64, "has": np.bool_}

    def apply(self, batch: PathBatch, current: PathResult) -> PathResult:
        rows = batch.rows
        has = self.col["has"][rows]
        hold = batch.degraded & has
        im = np.where(hold, np.maximum(current.im, self.col["last_im"][rows]), current.im)
        mm = np.where(hold, np.maximum(current.mm, self.col["last_mm"][rows]), current.mm)
        self.col["last_im"][rows] = im
        self.col["last_mm"][rows] = mm
        self.col["has"][rows] = True
        return current.with_(im=im, mm=mm, held=current.held | batch.degraded)


class MarginPath:
    """An ordered pipeline of stages; the figure goes in, the called margin comes out.

    Parameters
    ----------
    stages : sequence of MarginPathStage
        Run in order; :func:`default_margin_path` puts :class:`HoldNeverLower` last.
    """

    def __init__(self, stages: Sequence[MarginPathStage]) -> None:
        self.stages = list(stages)
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        self._n = 0

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def grow(self, n_rows: int) -> None:
        if n_rows > self._n:
            for s in self.stages:
                s.grow(n_rows)
            self._n = n_rows

    def reconfigure(self, model: Any) -> None:
        for s in self.stages:
            s.reconfigure(model)

    def run(self, batch: PathBatch) -> PathResult:
        """Called IM/MM of the batch's accounts (updates every stage's state)."""
        if len(batch):
            self.grow(int(batch.rows.max()) + 1)
        cur = PathResult(batch.figure_im.copy(), batch.figure_mm.copy(),
                         np.zeros(len(batch), bool))
        for s in self.stages:
            cur = s.apply(batch, cur)
        return cur

    def state_arrays(self) -> dict[str, NDArray[Any]]:
        """Every stage's state, keys ``<stage>.<column>``."""
        return {f"{s.name}.{k}": a for s in self.stages for k, a in s.state_arrays().items()}

    def load_state_arrays(self, arrays: Mapping[str, NDArray[Any]]) -> None:
        for s in self.stages:
            pre = f"{s.name}."
            s.load_state_arrays({k[len(pre):]: a for k, a in arrays.items()
                                 if k.startswith(pre)})
        self._n = max((a.shape[0] for a in arrays.values()), default=0)


def default_margin_path(model: Any) -> MarginPath:
    """The path every model gets unless the engine is given another: hold-never-lower only.

    The ``livepath`` stages (buffer with release, hourly speed limit, cascade phasing) go
    before :class:`HoldNeverLower` when they are wired in
    (:attr:`marginproof.engine.core.EngineConfig.margin_path`).
    """
    return MarginPath([HoldNeverLower()])
