"""Engine snapshots: the full state of a :class:`MarginEngine` at a sequence number, as bytes.

Recovery replays the input log; a snapshot bounds it: restore the state at ``seq`` and apply
only entries ``seq + 1 ..`` (:mod:`marginproof.service.runner`). The engine is a pure function
of the log, so the state after entry ``seq`` is everything that determines later outputs:
books, market and live risk-factor state, the margin path, scheduled parameters, the feedback
loop, the model in force with its caches, the adapter's per-account caches. All of it is the
engine object graph, so a snapshot is that graph pickled -- exactly: floats and arrays round
trip bit for bit, shared references stay shared (tested: restore-then-tail equals an
uninterrupted run, event for event and byte for byte).

Why pickle is safe here. ``pickle.loads`` runs code named in the blob, so a blob from an
untrusted source must never be loaded. A snapshot is written only by the engine runner itself,
into its own database (the same store, and the same trust boundary, as the input log it
summarises), and before loading the runner checks the blob's SHA-256 against the digest stored
with it and the log's chained hash at the snapshot's ``seq`` against the log (see
:meth:`marginproof.storage.sql.SqlRepository.load_snapshot`). Anyone who can write that table can
also rewrite the log the engine trusts.

Two things are not pickled: the :class:`EngineConfig` (it may hold factories; the restoring
runner supplies its own, and the snapshot's metadata refuses a different partitioning) and
nothing else -- read-only ``mappingproxy`` parameter views are pickled as their contents.
"""

from __future__ import annotations

import copyreg
import hashlib
import io
import pickle
from types import MappingProxyType
from typing import Any

FORMAT = 1
"""Bumped whenever the engine's pickled layout changes incompatibly: a snapshot of another
format is ignored (full replay), never loaded."""

_CONFIG = "engine-config"


def _proxy(mp: MappingProxyType[Any, Any]) -> tuple[Any, tuple[Any, ...]]:
    return make_proxy, (dict(mp),)


def make_proxy(d: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    """A read-only view of ``d`` (how a pickled ``mappingproxy`` is rebuilt)."""
    return MappingProxyType(d)


class _Pickler(pickle.Pickler):
    def __init__(self, f: io.BytesIO, config: Any) -> None:
        super().__init__(f, protocol=5)
        self._config = config
        table = copyreg.dispatch_table.copy()
        table[MappingProxyType] = _proxy
        self.dispatch_table = table

    def persistent_id(self, obj: Any) -> str | None:
        return _CONFIG if obj is self._config else None


class _Unpickler(pickle.Unpickler):
    def __init__(self, f: io.BytesIO, config: Any) -> None:
        super().__init__(f)
        self._config = config

    def persistent_load(self, pid: Any) -> Any:
        if pid == _CONFIG:
            return self._config
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


def dump_state(state: Any, config: Any) -> bytes:
    """Pickle ``state`` (the engine, or a dict holding it), the engine config by reference."""
    buf = io.BytesIO()
    _Pickler(buf, config).dump(state)
    return buf.getvalue()


def load_state(blob: bytes, config: Any) -> Any:
    """Inverse of :func:`dump_state` with ``config`` standing in for the engine config.

    Only call on a blob whose digest was checked (:func:`digest`; see module docstring).
    """
    return _Unpickler(io.BytesIO(blob), config).load()


def digest(blob: bytes) -> str:
    """SHA-256 (hex) of a snapshot blob."""
    return hashlib.sha256(blob).hexdigest()
