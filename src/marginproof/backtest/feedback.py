"""The automated feedback loop of the live engine: settle, backtest, propose, follow up.

:class:`FeedbackLoop` is called by the engine around every input-log entry
(:attr:`marginproof.engine.core.EngineConfig.feedback`):

* **before** the entry (the log clock has moved to its ``logged_at_ms``): proposals whose
  effective time passed unapproved expire; when a daily settlement is due, the books, the
  called margins and the market the engine holds *now* (before the entry changes them) go to
  :meth:`~marginproof.backtest.live.LiveBacktest.settle`, which compares yesterday's books
  with the margin they held and may propose a scaling change;
* **after** the entry: a ``params`` entry whose parameters hash to an open proposal's is its
  approval; a parameter activation of an approved proposal makes it active; market-response
  reports of the live path become events.

Every decision is a function of the log and the engine's state, so replay reproduces the
settlements, proposals and their events bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from marginproof.backtest.live import Holdings, LiveBacktest, LiveBacktestConfig, Proposal
from marginproof.config.params import params_hash
from marginproof.engine.entries import EntryKind, LogEntry
from marginproof.engine.events import (
    BacktestSettled,
    Event,
    MarketResponseChecked,
    ParamsActivated,
    ProposalUpdated,
    ScalingProposed,
)


class _Engine(Protocol):
    """What the loop reads from the engine (duck-typed: :class:`MarginEngine` has it)."""

    model: Any
    books: Any
    im: Any
    computed: Any
    market: Any
    clock_ms: int
    path: Any
    config: Any


def _proposal_event(seq: int, partition: int, p: Proposal) -> ProposalUpdated:
    return ProposalUpdated(seq, partition, f"{p.proposal_id}:{p.status}",
                           {"proposal_id": p.proposal_id, "model": p.model, "status": p.status,
                            "params_hash": p.params_hash, "approved_seq": p.approved_seq,
                            "effective_at_ms": p.effective_at_ms})


class FeedbackLoop:
    """Live backtest + proposals + market-response events (see module docstring)."""

    def __init__(self, config: LiveBacktestConfig | None = None) -> None:
        self.backtest = LiveBacktest(config or LiveBacktestConfig())

    def before_entry(self, engine: _Engine, entry: LogEntry) -> list[Event]:
        part = int(engine.config.partition)
        out: list[Event] = []
        bt = self.backtest
        for p in bt.on_clock(engine.clock_ms):
            out.append(_proposal_event(entry.seq, part, p))
        if bt.due(engine.clock_ms):
            positions = engine.books.positions
            n = len(positions)
            margin = np.where(np.asarray(engine.computed[:n], bool),
                              np.asarray(engine.im[:n], np.float64), 0.0)
            rep = bt.settle(entry.seq, str(engine.model.name), dict(engine.model.params),
                            Holdings.from_positions(positions), margin,
                            engine.market.full_snapshot(), engine.clock_ms)
            stats = rep.stats
            out.append(BacktestSettled(entry.seq, part, str(rep.settle_ms), {
                "settle_ms": rep.settle_ms, "model": rep.model, "n_books": rep.n_books,
                "n_exceptions": rep.n_exceptions, "n_unpriced": rep.n_unpriced,
                "zone": stats.get("zone", "n/a"), "book_days": stats.get("book_days", 0),
                "window_exceptions": stats.get("exceptions", 0),
                "kupiec_p": stats.get("kupiec_p"),
                "christoffersen_cc_p": stats.get("christoffersen_cc_p"),
                "proposal_id": rep.proposal.proposal_id if rep.proposal else None}))
            if rep.proposal is not None:
                out.append(ScalingProposed(entry.seq, part, rep.proposal.proposal_id,
                                           rep.proposal.to_dict()))
        return out

    def after_entry(self, engine: _Engine, entry: LogEntry, events: Sequence[Event]
                    ) -> list[Event]:
        part = int(engine.config.partition)
        out: list[Event] = []
        bt = self.backtest
        if entry.kind is EntryKind.PARAMS:
            body = entry.body
            params = body.get("params")
            model = body.get("model")
            if isinstance(params, Mapping) and isinstance(model, str):
                ph = params_hash({"model": model, "params": dict(params)})
                p = bt.on_params_entry(entry.seq, model, ph)
                if p is not None:
                    out.append(_proposal_event(entry.seq, part, p))
        for ev in events:
            if isinstance(ev, ParamsActivated):
                p = bt.on_params_activated(ev.model, ev.params_hash)
                if p is not None:
                    out.append(_proposal_event(entry.seq, part, p))
        for stage in getattr(engine.path, "stages", ()):
            drain = getattr(stage, "drain_reports", None)
            if drain is None:
                continue
            for seq, rep in drain():
                out.append(MarketResponseChecked(seq, part, rep.underlying, rep.to_dict()))
        return out
