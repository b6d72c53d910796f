"""L1/L3 logs: RFC 9162 roots (against pymerkle), inclusion and consistency proofs."""

from __future__ import annotations

import hashlib

import pytest
from pymerkle import InmemoryTree

from marginproof.proofs import merklelog as ml
from marginproof.proofs.errors import VerificationError


def _leaves(n: int) -> list[bytes]:
    return [ml.leaf_hash(f"entry {i}".encode()) for i in range(n)]


def test_roots_equal_pymerkle_for_every_size_up_to_300() -> None:
    tree = InmemoryTree(algorithm="sha256")
    ours: list[bytes] = []
    for i in range(300):
        data = f"entry {i}".encode()
        tree.append_entry(data)
        ours.append(ml.leaf_hash(data))
        assert tree.get_root() == ml.root_of(ours), i + 1


def test_empty_root_is_sha256_of_nothing() -> None:
    empty = InmemoryTree(algorithm="sha256").get_root()
    assert ml.root_of([]) == empty == hashlib.sha256(b"").digest()


def test_every_inclusion_and_consistency_proof_verifies_up_to_40() -> None:
    leaves = _leaves(40)
    for n in range(1, 41):
        root = ml.root_of(leaves[:n])
        for i in range(n):
            ml.verify_inclusion(i, n, leaves[i], ml.inclusion_path(leaves[:n], i), root)
        for m in range(1, n + 1):
            proof = ml.consistency_proof(leaves[:n], m) if m < n else []
            ml.verify_consistency(m, n, ml.root_of(leaves[:m]), root, proof)


def test_rewritten_history_fails_consistency() -> None:
    leaves = _leaves(13)
    forked = leaves[:5] + [ml.leaf_hash(b"rewritten")] + leaves[6:]
    proof = ml.consistency_proof(forked, 7)
    with pytest.raises(VerificationError, match="rewritten or forked"):
        ml.verify_consistency(7, 13, ml.root_of(leaves[:7]), ml.root_of(forked), proof)


def test_truncation_and_same_size_fork_are_detected() -> None:
    leaves = _leaves(8)
    with pytest.raises(VerificationError, match="shrank"):
        ml.verify_consistency(8, 5, ml.root_of(leaves), ml.root_of(leaves[:5]), [])
    other = leaves[:7] + [ml.leaf_hash(b"x")]
    with pytest.raises(VerificationError, match="fork"):
        ml.verify_consistency(8, 8, ml.root_of(leaves), ml.root_of(other), [])


def test_tampered_inclusion_path_is_rejected() -> None:
    leaves = _leaves(11)
    path = ml.inclusion_path(leaves, 6)
    path[1] = bytes(32)
    with pytest.raises(VerificationError):
        ml.verify_inclusion(6, 11, leaves[6], path, ml.root_of(leaves))
    with pytest.raises(VerificationError, match="too short"):
        ml.verify_inclusion(6, 11, leaves[6], ml.inclusion_path(leaves, 6)[:-1],
                            ml.root_of(leaves))


def test_odd_nodes_are_carried_not_duplicated() -> None:
    a, b, c = _leaves(3)
    assert ml.root_of([a, b, c]) == ml.node_hash(ml.node_hash(a, b), c)
    assert ml.root_of([a, b, c]) != ml.root_of([a, b, c, c])
