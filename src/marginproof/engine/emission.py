"""Event emission: margin batches and account status events from the engine's arrays.

A batch is columnar (every account one entry moved); account events fire only when an
account's status changes (``ok`` / ``margin_call`` / ``liquidation``) and carry the full
explanation (:class:`~marginproof.engine.events.AccountMargin`: model, parameter hash,
factor-state hash, components, binding scenario, hold reason).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from marginproof.engine.events import (
    STATUS_CALL,
    STATUS_LIQUIDATION,
    STATUS_NAMES,
    STATUS_OK,
    AccountMargin,
    Event,
    LiquidationSignal,
    MarginBatch,
    MarginCall,
    MarginRestored,
)

IntArray = NDArray[np.int64]


def status_of(equity: NDArray[np.float64], im: NDArray[np.float64], mm: NDArray[np.float64]
              ) -> NDArray[np.int8]:
    """``liquidation`` below MM, ``margin_call`` below IM, else ``ok`` (shape of inputs)."""
    return np.where(equity < mm, STATUS_LIQUIDATION,
                    np.where(equity < im, STATUS_CALL, STATUS_OK)).astype(np.int8)


class _Arrays(Protocol):
    im: NDArray[np.float64]
    mm: NDArray[np.float64]
    equity: NDArray[np.float64]
    held: NDArray[np.bool_]
    status: NDArray[np.int8]
    binding_group: NDArray[np.int16]
    binding_scenario: NDArray[np.int32]
    figure_im: NDArray[np.float64]


def make_batch(a: _Arrays, seq: int, partition: int, idx: IntArray, cause: str, ts: int,
               model: str, params_hash: str, groups: tuple[str, ...],
               ids: NDArray[np.object_], components: dict[str, NDArray[np.float64]],
               factor_hash: str, held_reason: Callable[[int], str] | None = None
               ) -> MarginBatch:
    """A :class:`MarginBatch` of rows ``idx`` read from the engine's arrays; ``held_reason``
    (engine row -> why it is held) is asked for the held rows only."""
    im, mm, eq = a.im[idx], a.mm[idx], a.equity[idx]
    held = a.held[idx].copy()
    reasons = ({} if held_reason is None else
               {k: held_reason(int(idx[k])) for k in np.flatnonzero(held).tolist()})
    return MarginBatch(seq, partition, int(ts), model, params_hash, cause, ids, im.copy(),
                       mm.copy(), eq.copy(), status_of(eq, im, mm), held,
                       groups, a.binding_group[idx].copy(), a.binding_scenario[idx].copy(),
                       idx.copy(), {k: v[idx].copy() for k, v in components.items()},
                       factor_hash, reasons)


def status_events(a: _Arrays, batch: MarginBatch, partition: int,
                  margin_of: Callable[[int, int], AccountMargin]) -> list[Event]:
    """Status-change events of a batch (updates ``a.status``)."""
    idx = batch.account_index
    old = a.status[idx]
    new = batch.status
    changed = np.flatnonzero(old != new)
    a.status[idx] = new
    out: list[Event] = []
    for c in changed.tolist():
        i = int(idx[c])
        margin = margin_of(i, batch.seq)
        prev = STATUS_NAMES[int(old[c])]
        s = int(new[c])
        cls = (MarginCall if s == STATUS_CALL else
               LiquidationSignal if s == STATUS_LIQUIDATION else MarginRestored)
        out.append(cls(partition, margin, prev, batch.cause))
    return out
