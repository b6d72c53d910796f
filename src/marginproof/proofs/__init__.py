"""Verifiable margin: per-epoch commitments, inclusion proofs, signed epoch log, replay.

Pure core (no I/O, clocks or environment). Layers, after ``docs/proofs.md``:

* L0 :mod:`.encoding` - integer amounts, canonical JSON, domain-separated SHA-256;
* L1 :mod:`.inputlog` and :mod:`.merklelog` - signed input entries in an RFC 9162 log;
* L2 :mod:`.sumtree`, :mod:`.inclusion` - Merkle sum tree and per-account proofs;
* L3 :mod:`.records` - signed epoch records, hash chain, epoch log audit;
* L4 :mod:`.epoch`, :mod:`.leaves` - the committed path, prove and replay;
* L5 :mod:`.privacy`, :mod:`.rangeproof`, :mod:`.group` - Pedersen commitments and range proofs.

The file store, parallel executors and CLI live in the shell (:mod:`marginproof.storage.proofstore`,
:mod:`marginproof.cli.proofs`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# imported on first use (PEP 562): ``marginproof.proofs.errors`` and the other light layers do
# not pull in the epoch path (models, numba) through this package
_LAZY: dict[str, str] = {
    "ENGINE_VERSION": "marginproof.proofs.epoch",
    "EngineInfo": "marginproof.proofs.epoch",
    "EpochResult": "marginproof.proofs.epoch",
    "compute_epoch": "marginproof.proofs.epoch",
    "lock_hash": "marginproof.proofs.epoch",
    "replay_epoch": "marginproof.proofs.epoch",
    "VerificationError": "marginproof.proofs.errors",
    "InclusionProof": "marginproof.proofs.inclusion",
    "load_proof_bytes": "marginproof.proofs.inclusion",
    "recompute_root": "marginproof.proofs.inclusion",
    "audit_epoch_log": "marginproof.proofs.records",
    "verify_record": "marginproof.proofs.records",
    "FORMAT_V1": "marginproof.proofs.sumtree",
    "FORMAT_V2": "marginproof.proofs.sumtree",
    "SumTree": "marginproof.proofs.sumtree",
    "build_sum_tree": "marginproof.proofs.sumtree",
    "verify_account": "marginproof.proofs.verify",
}

if TYPE_CHECKING:
    from marginproof.proofs.epoch import (
        ENGINE_VERSION,
        EngineInfo,
        EpochResult,
        compute_epoch,
        lock_hash,
        replay_epoch,
    )
    from marginproof.proofs.errors import VerificationError
    from marginproof.proofs.inclusion import InclusionProof, load_proof_bytes, recompute_root
    from marginproof.proofs.records import audit_epoch_log, verify_record
    from marginproof.proofs.sumtree import FORMAT_V1, FORMAT_V2, SumTree, build_sum_tree
    from marginproof.proofs.verify import verify_account


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'marginproof.proofs' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ENGINE_VERSION",
    "FORMAT_V1",
    "FORMAT_V2",
    "EngineInfo",
    "EpochResult",
    "InclusionProof",
    "SumTree",
    "VerificationError",
    "audit_epoch_log",
    "build_sum_tree",
    "compute_epoch",
    "load_proof_bytes",
    "lock_hash",
    "recompute_root",
    "replay_epoch",
    "verify_account",
    "verify_record",
]
