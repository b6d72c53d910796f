"""Incremental margin engine (functional core).

Pure, deterministic code: no I/O, no clock, no globals. The shell (``marginproof.engine.runner``)
feeds it :class:`~marginproof.engine.entries.LogEntry` records from the durable input log and
publishes/persists what :meth:`~marginproof.engine.core.MarginEngine.apply` returns. The same
sequence of entries always produces bit-identical margins, which is what crash recovery relies on.
"""

from marginproof.engine.core import EngineConfig, EngineOutput, MarginEngine
from marginproof.engine.entries import EntryKind, LogEntry
from marginproof.engine.events import (
    AccountMargin,
    FeedAlert,
    LiquidationSignal,
    MarginBatch,
    MarginCall,
    MarginRestored,
    ParamsActivated,
    PositionSettled,
)
from marginproof.engine.partition import partition_of
from marginproof.engine.ticks import Tick

__all__ = [
    "AccountMargin",
    "EngineConfig",
    "EngineOutput",
    "EntryKind",
    "FeedAlert",
    "LiquidationSignal",
    "LogEntry",
    "MarginBatch",
    "MarginCall",
    "MarginEngine",
    "MarginRestored",
    "ParamsActivated",
    "PositionSettled",
    "Tick",
    "partition_of",
]
