"""RFC 9162 (Certificate Transparency v2) Merkle logs: tree head, inclusion and consistency.

Used for the input log (L1) and the epoch log (L3). SHA-256 with the ``0x00`` leaf / ``0x01``
node prefixes; the split point is the largest power of two *strictly less* than ``n``, and an
odd node is carried up, never duplicated (no CVE-2012-2459 ambiguity). The verifiers follow
RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step; tests compare the roots with ``pymerkle``.
Hand-written because no maintained library offers RFC 9162 *proof verification* with this
exact leaf encoding in a few lines; the code is short and cross-checked.
"""

from __future__ import annotations

from collections.abc import Sequence

from marginproof.proofs.encoding import PREFIX_LOG_LEAF, PREFIX_LOG_NODE, sha256
from marginproof.proofs.errors import VerificationError

EMPTY_ROOT = sha256(b"")


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``."""
    return sha256(PREFIX_LOG_LEAF, data)


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return sha256(PREFIX_LOG_NODE, left, right)


def _split(n: int) -> int:
    """Largest power of two strictly less than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """Merkle tree hash of a list of *leaf hashes* (``EMPTY_ROOT`` for none)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(root_of(leaves[:k]), root_of(leaves[k:]))


def inclusion_path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path of leaf ``index`` in the tree of ``leaves`` (RFC 9162 2.1.3.1)."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"index {index} outside a tree of size {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return inclusion_path(leaves[:k], index) + [root_of(leaves[k:])]
    return inclusion_path(leaves[k:], index - k) + [root_of(leaves[:k])]


def consistency_proof(leaves: Sequence[bytes], first_size: int) -> list[bytes]:
    """Proof that the tree of the first ``first_size`` leaves is a prefix (RFC 9162 2.1.4.1)."""
    n = len(leaves)
    if not 0 < first_size <= n:
        raise ValueError(f"first size {first_size} not in (0, {n}]")

    def sub(m: int, d: Sequence[bytes], complete: bool) -> list[bytes]:
        if m == len(d):
            return [] if complete else [root_of(d)]
        k = _split(len(d))
        if m <= k:
            return sub(m, d[:k], complete) + [root_of(d[k:])]
        return sub(m - k, d[k:], False) + [root_of(d[:k])]

    return sub(first_size, leaves, True)


def verify_inclusion(index: int, tree_size: int, leaf: bytes, path: Sequence[bytes],
                     root: bytes) -> None:
    """RFC 9162 2.1.3.2; raises :class:`VerificationError` (code ``log.inclusion``)."""
    if not 0 <= index < tree_size:
        raise VerificationError("log.inclusion", f"index {index} outside tree size {tree_size}")
    if len(leaf) != 32 or len(root) != 32 or any(len(p) != 32 for p in path):
        raise VerificationError("log.inclusion", "leaf, root and path nodes are 32-byte hashes")
    fn, sn, r = index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            raise VerificationError("log.inclusion", "audit path is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("log.inclusion", "audit path is too short")
    if r != root:
        raise VerificationError("log.inclusion", "audit path does not lead to the tree head root")


def verify_consistency(first_size: int, second_size: int, first_root: bytes,
                       second_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 2.1.4.2; raises :class:`VerificationError` (code ``log.consistency``).

    Every edge is strict: ``first_size == second_size`` requires equal roots and an empty proof;
    the empty tree (size 0, root ``SHA-256("")``) is a prefix of every tree and admits only an
    empty proof; every proof node is 32 bytes; a decreasing size is a truncation and fails.
    """
    code = "log.consistency"
    if first_size < 0 or second_size < 0:
        raise VerificationError(code, "negative tree size")
    if second_size < first_size:
        raise VerificationError(code, f"tree shrank from {first_size} to {second_size}")
    if any(len(p) != 32 for p in proof):
        raise VerificationError(code, "every proof node must be a 32-byte hash")
    if len(first_root) != 32 or len(second_root) != 32:
        raise VerificationError(code, "roots must be 32-byte hashes")
    if first_size == 0:
        if first_root != EMPTY_ROOT:
            raise VerificationError(code, "empty tree head with a non-empty root")
        if proof:
            raise VerificationError(code, "the empty tree admits only an empty proof")
        if second_size == 0 and second_root != EMPTY_ROOT:
            raise VerificationError(code, "empty tree head with a non-empty root")
        return
    if first_size == second_size:
        if proof:
            raise VerificationError(code, "equal sizes need an empty proof")
        if first_root != second_root:
            raise VerificationError(code, f"two different roots for size {first_size} (fork)")
        return
    if not proof:
        raise VerificationError(code, "empty consistency proof")
    path = list(proof)
    if first_size & (first_size - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first_size - 1, second_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError(code, "consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError(code, "consistency proof is too short")
    if fr != first_root:
        raise VerificationError(code, f"old tree head (size {first_size}) is not a prefix of "
                                      "the new one: history was rewritten or forked")
    if sr != second_root:
        raise VerificationError(code, f"proof does not lead to the new root (size {second_size})")
