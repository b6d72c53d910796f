"""The proofs page's data: the latest signed epoch record and the caller's own proof.

Everything public (signed record, signed tree head, ``public/keys.jsonl``) is returned as the
parsed canonical JSON the verifier needs; the user's private proof (with their ``nonce``) is
built on demand by :func:`marginproof.storage.proofstore.proof_for_account`. The browser verifies it
itself (``static/verify.js``, same checks and codes as :mod:`marginproof.proofs.verify`), so a
user need not trust the server that served it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marginproof.errors import InputError
from marginproof.proofs.encoding import parse_canonical
from marginproof.storage.proofstore import ProofStore, proof_for_account, read_bytes


class ProofsView:
    """Read-only view of one proofs directory (``marginproof prove --out DIR``)."""

    def __init__(self, root: str | Path) -> None:
        self.store = ProofStore(root)

    def epochs(self) -> list[int]:
        """Epochs in the published epoch log, in order."""
        return [int(r["record"]["header"]["epoch"]) for r in self.store.signed_records()]

    def latest(self) -> dict[str, Any] | None:
        """``{epoch, epochs, record, sth, keys}`` of the newest epoch, or None before the first."""
        records = self.store.signed_records()
        if not records:
            return None
        signed = records[-1]
        epoch = int(signed["record"]["header"]["epoch"])
        sths = self.store.sths()
        keys = []
        if self.store.keys_path.exists():
            keys = [parse_canonical(line, f"keys.jsonl:{i + 1}") for i, line in
                    enumerate(read_bytes(self.store.keys_path).split(b"\n")) if line]
        return {"epoch": epoch, "epochs": [int(r["record"]["header"]["epoch"]) for r in records],
                "record": signed, "sth": sths[-1] if sths else None, "keys": keys}

    def proof_bytes(self, account_id: str, epoch: int | None = None) -> bytes:
        """Canonical JSON of ``account_id``'s private proof (latest epoch by default)."""
        epochs = self.epochs()
        if not epochs:
            raise InputError("epoch", "no epoch has been proven yet")
        ep = epochs[-1] if epoch is None else epoch
        if ep not in epochs:
            raise InputError("epoch", f"epoch {ep} is not in the epoch log")
        return proof_for_account(self.store.epoch_dir(ep), account_id).to_json() + b"\n"
