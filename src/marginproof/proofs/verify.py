"""What a user checks for their own account (spec section 10, checks 1 and 3-7).

:func:`verify_account` runs the checks in a fixed order and stops at the first failure with a
:class:`VerificationError` naming it:

1. ``record.*``   record structure, Ed25519 signature under a trusted operator key,
                  ``totals == root.sums`` (done by :func:`records.verify_record` beforehand);
2. ``proof.*``    proof format, epoch, ``hdr_hash``, depth and field count equal the record's;
3. ``leaf.tag``   the tag recomputed from the user's id and nonce (an id without a nonce, or a
                  nonce without an id, is refused: the leaf would not be shown to be theirs);
4. ``leaf.*``     values equal the user's own statement, ``short == max(0, mm + liabs -
                  assets)``, no asset with both ``cr`` and ``db`` positive, every value in
                  ``[0, 2^64)``;
5. ``path[i].*``  every sibling sum and parent sum within the format's range;
6. ``root.*``     the recomputed root hash and sums equal the record's;
7. ``privacy.*``  (if the record publishes a privacy layer, a user's private copy must carry its
                  part; a public proof without id and nonce is reported as not checked) own
                  commitments open to own values, lead to the commitment root, and own range
                  proof verifies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from marginproof.proofs.errors import VerificationError
from marginproof.proofs.inclusion import InclusionProof, recompute_root
from marginproof.proofs.privacy import verify_opening
from marginproof.proofs.records import RecordView
from marginproof.proofs.tags import tag_from_nonce

BASE = ("assets", "liabs", "im", "mm", "short", "stress")


def default_fields(n: int) -> tuple[str, ...]:
    """Field names when only a root hash is known: the fixed four, then cr/db halves."""
    extra = n - len(BASE)
    k = extra // 2
    return BASE + tuple(f"cr:{i}" for i in range(k)) + tuple(f"db:{i}" for i in range(k))


def check_leaf_rules(values: Sequence[int], fields: Sequence[str]) -> None:
    """``short`` rule and at most one of ``cr_k``/``db_k`` positive per asset."""
    v = dict(zip(fields, values, strict=True))
    if v["short"] != max(0, v["mm"] + v["liabs"] - v["assets"]):
        raise VerificationError("leaf.short", f"short {v['short']} != max(0, mm {v['mm']} + "
                                              f"liabs {v['liabs']} - assets {v['assets']})")
    for f in fields:
        if f.startswith("cr:"):
            d = "db:" + f[3:]
            if v.get(d, 0) > 0 and v[f] > 0:
                raise VerificationError("leaf.cr_db", f"both {f} and {d} are positive")


@dataclass(frozen=True)
class AccountCheck:
    """A successful verification: what was checked and the leaf values."""

    epoch: int
    index: int
    values: Mapping[str, int]
    checks: tuple[str, ...]
    not_checked: tuple[str, ...] = ()  # what this proof could not show (said to the user)


def verify_account(proof: InclusionProof, *, record: RecordView | None = None,
                   root_hash: bytes | None = None, epoch: int | None = None,
                   account_id: str | None = None, nonce: bytes | None = None,
                   expected: Mapping[str, int] | None = None) -> AccountCheck:
    """Verify an inclusion proof against a verified record (or, weaker, a bare root hash).

    With a bare ``root_hash`` the header is unknown: ``epoch`` must be given (the proof's epoch
    field is not inside any hash) and field names default to the fixed layout.
    """
    checks: list[str] = []
    if record is not None:
        if proof.fmt != record.fmt:
            raise VerificationError("proof.format", f"proof is {proof.fmt.proof_type}, record "
                                                    f"uses {record.fmt.spec}")
        if proof.epoch != record.epoch:
            raise VerificationError("proof.epoch", f"proof is for epoch {proof.epoch}, record "
                                                   f"for epoch {record.epoch} (cross-epoch replay)")
        if proof.hdr_hash != record.hdr_hash:
            raise VerificationError("proof.hdr_hash", "proof is bound to another epoch header")
        if proof.depth != record.depth:
            raise VerificationError("proof.depth", f"depth {proof.depth} != header depth "
                                                   f"{record.depth}")
        if len(proof.values) != len(record.fields):
            raise VerificationError("proof.fields", f"{len(proof.values)} values, header has "
                                                    f"{len(record.fields)} fields")
        fields: tuple[str, ...] = record.fields
        want_hash, want_sums = record.root_hash, record.root_sums
        checks.append("record signature, key and totals")
        checks.append("proof epoch, header hash, depth, field count")
    else:
        if root_hash is None or epoch is None:
            raise VerificationError("root.missing", "need a record, or a root hash and an epoch")
        if proof.epoch != epoch:
            raise VerificationError("proof.epoch", f"proof is for epoch {proof.epoch}, "
                                                   f"expected {epoch}")
        if len(proof.values) < len(BASE) or (len(proof.values) - len(BASE)) % 2:
            raise VerificationError("proof.fields", f"field count must be {len(BASE)} + 2K")
        fields = default_fields(len(proof.values))
        want_hash, want_sums = root_hash, None
    aid = account_id if account_id is not None else proof.account_id
    nn = nonce if nonce is not None else proof.nonce
    if aid is not None and nn is None:
        raise VerificationError("leaf.nonce", f"no nonce for account {aid!r}: the leaf's tag "
                                              "cannot be checked (it may be someone else's)")
    if nn is not None and aid is None:
        raise VerificationError("leaf.account_id", "a nonce without an account id: the leaf's "
                                                   "tag cannot be checked")
    notes: list[str] = []
    if aid is None:
        notes.append("tag: NOT checked (no account id and nonce: this leaf is not shown to "
                     "be yours)")
    if aid is not None and nn is not None:
        if tag_from_nonce(nn, aid) != proof.tag:
            raise VerificationError("leaf.tag", "tag is not SHA-256(0x13 || nonce || len || id) "
                                                "of this account (someone else's leaf)")
        checks.append("tag recomputed from id and nonce")
    check_leaf_rules(proof.values, fields)
    checks.append("short rule, cr/db exclusivity")
    if expected:
        for name, want in expected.items():
            if name not in fields:
                raise VerificationError("leaf.values", f"no field {name!r} in this epoch")
            got = proof.values[fields.index(name)]
            if got != want:
                raise VerificationError(f"leaf.values.{name}",
                                        f"leaf has {got}, your statement says {want}")
        checks.append("values equal own statement")
    h, s = recompute_root(proof)
    checks.append("path recomputed with range checks")
    if h != want_hash:
        raise VerificationError("root.hash", "path does not lead to the published root")
    if want_sums is not None and s != want_sums:
        raise VerificationError("root.sums", "recomputed root sums differ from the record")
    checks.append("root hash and sums match")
    if record is not None and record.privacy is not None and proof.privacy is None:
        if aid is not None:  # a user's private copy carries its openings: stripped = refused
            raise VerificationError("privacy.missing", "the record publishes a privacy layer "
                                                       "but this proof carries no openings "
                                                       "for it")
        notes.append("privacy: NOT checked (a public proof carries no openings: verify your "
                     "private copy)")
    if record is not None and record.privacy is not None and proof.privacy is not None:
        v = dict(zip(fields, proof.values, strict=True))
        verify_opening(proof.privacy, proof.hdr_hash, proof.tag,
                       [v["assets"], v["liabs"], v["mm"]], proof.depth, proof.index,
                       dict(record.privacy))
        checks.append("privacy: openings, commitment path, own range proof")
    return AccountCheck(proof.epoch, proof.index, dict(zip(fields, proof.values, strict=True)),
                        tuple(checks), tuple(notes))


def summary(record: RecordView) -> dict[str, Any]:
    """Public aggregate view of a verified record (check 8)."""
    totals = dict(zip(record.fields, record.root_sums, strict=True))
    return {"epoch": record.epoch, "depth": record.depth, "totals": totals,
            "shortfall_total": totals["short"], "privacy": record.privacy is not None}
