"""L5 privacy layer: Pedersen commitments to each leaf's ``coll`` and ``mm``, a commitment tree
and range proofs, so anyone can check every account is solvent-or-flagged without balances.

Per leaf (same ``2^D`` slots and tag order as the sum tree, padding included so ``N`` stays
hidden): ``C_coll = coll G + r_coll H`` and ``C_mm = mm G + r_mm H`` with
``r_f = HMAC-SHA512(epoch_secret, "blind" || f || 0x00 || tag) mod L`` (the auditor can replay).
One aggregated range proof (:mod:`marginproof.proofs.rangeproof`) per leaf shows

* ``flag = 0``: ``mm`` and ``coll - mm`` (commitment ``C_coll - C_mm``) are in ``[0, 2^64)``;
* ``flag = 1`` (shortfall, in liquidation): ``coll`` and ``mm - coll`` are in ``[0, 2^64)``;

so every committed amount is non-negative and, unless flagged, ``coll >= mm``. The flag is bound
in the leaf hash ``SHA-256(0x17 || hdr_hash || tag || u8 flag || C_coll || C_mm)``. Nodes add
the children's commitments (computed by the verifier, never read from a proof):
``SHA-256(0x18 || h_L || C_L[coll] || C_L[mm] || h_R || C_R[coll] || C_R[mm])``. The record
publishes the root hash, the root commitments and the aggregate blinds ``R_f`` so anyone checks
``C_root[f] == total_f G + R_f H`` against the sum tree's totals.

Bundle file (public, binary): ``"MPB1" | u8 version=1 | u8 D | u8 base | u8 m=2 | 32 hdr_hash |
2^D x (32 tag | u8 flag | 32 C_coll | 32 C_mm | range proof)``.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from marginproof.errors import InputError
from marginproof.proofs.encoding import PREFIX_BUNDLE, PREFIX_COM_LEAF, PREFIX_COM_NODE, sha256
from marginproof.proofs.errors import VerificationError
from marginproof.proofs.group import (
    L,
    NonceStream,
    add,
    base_mul,
    commit,
    generator_h,
    mul,
    parse_point,
    parse_scalar,
    sc,
    sub,
)
from marginproof.proofs.rangeproof import RangeProof, prove_range, verify_range, verify_range_batch

SCHEME = "mp-pedersen/v1"
COMMITTED = ("coll", "mm")
BUNDLE_MAGIC = b"MPB1"
DEFAULT_BASE = 16

Mapper = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]


def serial_map(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    return [fn(x) for x in items]


def blind_for(ep_secret: bytes, field: str, tag: bytes) -> int:
    """Deterministic blind of one committed field of one leaf."""
    d = hmac.digest(ep_secret, b"blind" + field.encode() + b"\x00" + tag, "sha512")
    return int.from_bytes(d, "little") % L


def statement_context(hdr_hash: bytes, tag: bytes, flag: int) -> bytes:
    """Fiat-Shamir context of a leaf's range proof: epoch, leaf, which statement."""
    names = b"mm|coll-mm" if flag == 0 else b"coll|mm-coll"
    return b"marginproof/v1/privacy" + hdr_hash + tag + bytes([flag]) + names


def statement_commitments(c_coll: bytes, c_mm: bytes, flag: int) -> list[bytes]:
    """The two commitments a leaf's range proof is about."""
    return [c_mm, sub(c_coll, c_mm)] if flag == 0 else [c_coll, sub(c_mm, c_coll)]


def com_leaf_hash(hdr_hash: bytes, tag: bytes, flag: int, c_coll: bytes, c_mm: bytes) -> bytes:
    return sha256(PREFIX_COM_LEAF, hdr_hash, tag, bytes([flag]), c_coll, c_mm)


def com_node_hash(hl: bytes, cl: Sequence[bytes], hr: bytes, cr: Sequence[bytes]) -> bytes:
    return sha256(PREFIX_COM_NODE, hl, *cl, hr, *cr)


@dataclass(frozen=True)
class PrivacyLeaf:
    """One slot of the commitment tree with its range proof."""

    tag: bytes
    flag: int
    c_coll: bytes
    c_mm: bytes
    proof: RangeProof

    def to_bytes(self) -> bytes:
        return self.tag + bytes([self.flag]) + self.c_coll + self.c_mm + self.proof.to_bytes()


@dataclass(frozen=True)
class _LeafJob:
    ep_secret: bytes
    hdr_hash: bytes
    tag: bytes
    coll: int
    mm: int
    base: int


def _prove_leaf(job: _LeafJob) -> PrivacyLeaf:
    r_coll = blind_for(job.ep_secret, "coll", job.tag)
    r_mm = blind_for(job.ep_secret, "mm", job.tag)
    c_coll, c_mm = commit(job.coll, r_coll), commit(job.mm, r_mm)
    flag = 0 if job.coll >= job.mm else 1
    if flag == 0:
        vals, blinds = [job.mm, job.coll - job.mm], [r_mm, (r_coll - r_mm) % L]
    else:
        vals, blinds = [job.coll, job.mm - job.coll], [r_coll, (r_mm - r_coll) % L]
    seed = hmac.digest(job.ep_secret, b"rp-nonce" + job.hdr_hash + job.tag + b"".join(
        v.to_bytes(8, "big") for v in vals) + b"".join(sc(b) for b in blinds), "sha512")
    coms = statement_commitments(c_coll, c_mm, flag)
    proof = prove_range(vals, blinds, coms, statement_context(job.hdr_hash, job.tag, flag),
                        NonceStream(seed), job.base)
    return PrivacyLeaf(job.tag, flag, c_coll, c_mm, proof)


@dataclass(frozen=True)
class PrivacyTree:
    """All leaves (tree order) and every level of (hash, commitments)."""

    hdr_hash: bytes
    depth: int
    base: int
    leaves: tuple[PrivacyLeaf, ...]
    levels: tuple[tuple[tuple[bytes, tuple[bytes, bytes]], ...], ...]
    blind_totals: tuple[int, int]

    @property
    def root_hash(self) -> bytes:
        return self.levels[-1][0][0]

    @property
    def root_commitments(self) -> tuple[bytes, bytes]:
        return self.levels[-1][0][1]

    def path(self, index: int) -> list[tuple[bytes, tuple[bytes, bytes]]]:
        """Sibling (hash, (C_coll, C_mm)) per level, leaf level first."""
        return [self.levels[lv][(index >> lv) ^ 1] for lv in range(self.depth)]

    def bundle_bytes(self) -> bytes:
        head = BUNDLE_MAGIC + struct.pack(">BBBB", 1, self.depth, self.base, 2) + self.hdr_hash
        return head + b"".join(leaf.to_bytes() for leaf in self.leaves)

    def record_section(self) -> dict[str, Any]:
        """The ``privacy`` object of the epoch record."""
        return {
            "scheme": SCHEME,
            "fields": list(COMMITTED),
            "range_base": str(self.base),
            "root": self.root_hash.hex(),
            "root_commitments": [c.hex() for c in self.root_commitments],
            "blind_totals": [sc(b).hex() for b in self.blind_totals],
            "bundle_hash": sha256(PREFIX_BUNDLE, self.bundle_bytes()).hex(),
        }


def commitment_levels(hdr_hash: bytes, leaves: Sequence[PrivacyLeaf]
            ) -> tuple[tuple[tuple[bytes, tuple[bytes, bytes]], ...], ...]:
    level = tuple((com_leaf_hash(hdr_hash, lf.tag, lf.flag, lf.c_coll, lf.c_mm),
                   (lf.c_coll, lf.c_mm)) for lf in leaves)
    out = [level]
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level), 2):
            (hl, cl), (hr, cr) = level[i], level[i + 1]
            nxt.append((com_node_hash(hl, cl, hr, cr), (add(cl[0], cr[0]), add(cl[1], cr[1]))))
        level = tuple(nxt)
        out.append(level)
    return tuple(out)


def build_privacy(ep_secret: bytes, hdr_hash: bytes, tags: Sequence[bytes],
                  colls: Sequence[int], mms: Sequence[int], base: int = DEFAULT_BASE,
                  mapper: Mapper = serial_map) -> PrivacyTree:
    """Commit, prove and build the tree over leaves in tree order (``2^D`` of them)."""
    n = len(tags)
    if n == 0 or n & (n - 1) or len(colls) != n or len(mms) != n:
        raise InputError("privacy.leaves", "need 2^D leaves with coll and mm each")
    jobs = [_LeafJob(ep_secret, hdr_hash, t, int(c), int(m), base)
            for t, c, m in zip(tags, colls, mms, strict=True)]
    leaves = tuple(mapper(_prove_leaf, jobs))
    r_coll = sum(blind_for(ep_secret, "coll", t) for t in tags) % L
    r_mm = sum(blind_for(ep_secret, "mm", t) for t in tags) % L
    return PrivacyTree(hdr_hash, n.bit_length() - 1, base, leaves,
                       commitment_levels(hdr_hash, leaves), (r_coll, r_mm))


def parse_bundle(data: bytes) -> tuple[bytes, int, int, list[PrivacyLeaf]]:
    """``(hdr_hash, depth, base, leaves)`` from bundle bytes (structure and points checked)."""
    code = "privacy.bundle"
    if len(data) < 40 or data[:4] != BUNDLE_MAGIC:
        raise VerificationError(f"{code}.encoding", "not a privacy bundle (bad magic)")
    version, depth, base, m = struct.unpack_from(">BBBB", data, 4)
    if version != 1 or m != 2 or depth > 24:
        raise VerificationError(f"{code}.encoding", "unsupported bundle version/shape")
    hdr_hash = data[8:40]
    psize = RangeProof.size(base, 2)
    rec = 32 + 1 + 64 + psize
    n = 1 << depth
    if len(data) != 40 + n * rec:
        raise VerificationError(f"{code}.encoding",
                                f"expected {40 + n * rec} bytes, got {len(data)}")
    leaves = []
    for i in range(n):
        o = 40 + i * rec
        tag, flag = data[o:o + 32], data[o + 32]
        if flag not in (0, 1):
            raise VerificationError(f"{code}.leaf[{i}].flag", "flag must be 0 or 1")
        c_coll = parse_point(data[o + 33:o + 65], f"{code}.leaf[{i}].c_coll")
        c_mm = parse_point(data[o + 65:o + 97], f"{code}.leaf[{i}].c_mm")
        proof = RangeProof.from_bytes(data[o + 97:o + rec], f"{code}.leaf[{i}].proof")
        leaves.append(PrivacyLeaf(tag, flag, c_coll, c_mm, proof))
    return hdr_hash, depth, base, leaves


def verify_bundle(section: dict[str, Any], hdr_hash: bytes, depth: int,
                  totals: tuple[int, int], data: bytes, seed: bytes) -> dict[str, int]:
    """Public check 10: tree, root openings and every range proof (batched).

    ``section`` is the record's ``privacy`` object, ``totals`` the sum tree's (coll, mm).
    Returns counts (leaves, flagged).
    """
    code = "privacy"
    if sha256(PREFIX_BUNDLE, data).hex() != section.get("bundle_hash"):
        raise VerificationError(f"{code}.bundle_hash", "bundle bytes do not match the record")
    b_hdr, b_depth, base, leaves = parse_bundle(data)
    if b_hdr != hdr_hash or b_depth != depth:
        raise VerificationError(f"{code}.header", "bundle belongs to another epoch or shape")
    if str(base) != section.get("range_base"):
        raise VerificationError(f"{code}.range_base", "bundle base differs from the record")
    tags = [lf.tag for lf in leaves]
    if any(a >= b for a, b in zip(tags, tags[1:], strict=False)):
        raise VerificationError(f"{code}.order", "bundle leaves not strictly sorted by tag "
                                                 "(duplicate or reordered leaf)")
    levels = commitment_levels(hdr_hash, leaves)
    root_hash, root_coms = levels[-1][0]
    if root_hash.hex() != section.get("root"):
        raise VerificationError(f"{code}.root", "commitment tree root differs from the record")
    if [c.hex() for c in root_coms] != section.get("root_commitments"):
        raise VerificationError(f"{code}.root_commitments", "root commitments differ")
    blinds = section.get("blind_totals")
    if not isinstance(blinds, list) or len(blinds) != 2:
        raise VerificationError(f"{code}.blind_totals", "need two aggregate blinds")
    for j, (name, total) in enumerate(zip(COMMITTED, totals, strict=True)):
        r = parse_scalar(bytes.fromhex(blinds[j]), f"{code}.blind_totals[{j}]")
        if add(base_mul(total), mul(r, generator_h())) != root_coms[j]:
            raise VerificationError(f"{code}.root_opening.{name}",
                                    f"root commitment does not open to the published total {total}")
    items = [(lf.proof, statement_commitments(lf.c_coll, lf.c_mm, lf.flag),
              statement_context(hdr_hash, lf.tag, lf.flag)) for lf in leaves]
    verify_range_batch(items, seed, f"{code}.range")
    return {"leaves": len(leaves), "flagged": sum(lf.flag for lf in leaves)}


def verify_opening(private: dict[str, Any], hdr_hash: bytes, tag: bytes, coll: int, mm: int,
                   depth: int, index: int, section: dict[str, Any]) -> None:
    """User check 7: own commitments open to own values; own leaf is in the commitment tree;
    own range proof verifies."""
    code = "privacy"
    try:
        r_coll = parse_scalar(bytes.fromhex(private["blinds"][0]), f"{code}.blinds[0]")
        r_mm = parse_scalar(bytes.fromhex(private["blinds"][1]), f"{code}.blinds[1]")
        proof = RangeProof.from_bytes(bytes.fromhex(private["range_proof"]), f"{code}.proof")
        path = [(bytes.fromhex(n["h"]), (parse_point(bytes.fromhex(n["c"][0]), f"{code}.path"),
                                         parse_point(bytes.fromhex(n["c"][1]), f"{code}.path")))
                for n in private["path"]]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InputError("proof.privacy", f"malformed privacy section: {exc}") from None
    c_coll, c_mm = commit(coll, r_coll), commit(mm, r_mm)
    flag = 0 if coll >= mm else 1
    if len(path) != depth:
        raise VerificationError(f"{code}.path", f"path has {len(path)} nodes, depth is {depth}")
    h = com_leaf_hash(hdr_hash, tag, flag, c_coll, c_mm)
    cs: tuple[bytes, bytes] = (c_coll, c_mm)
    for level, (sh, sc_) in enumerate(path):
        if (index >> level) & 1:
            h, cs = com_node_hash(sh, sc_, h, cs), (add(sc_[0], cs[0]), add(sc_[1], cs[1]))
        else:
            h, cs = com_node_hash(h, cs, sh, sc_), (add(cs[0], sc_[0]), add(cs[1], sc_[1]))
    if h.hex() != section.get("root") or [c.hex() for c in cs] != section.get("root_commitments"):
        raise VerificationError(f"{code}.opening", "own commitments (from own values and blinds) "
                                                   "do not lead to the published commitment root")
    verify_range(proof, statement_commitments(c_coll, c_mm, flag),
                 statement_context(hdr_hash, tag, flag), f"{code}.range")


def private_section(tree: PrivacyTree, ep_secret: bytes, index: int) -> dict[str, Any]:
    """What the user receives privately: blinds, own range proof, commitment path."""
    leaf = tree.leaves[index]
    return {
        "blinds": [sc(blind_for(ep_secret, f, leaf.tag)).hex() for f in COMMITTED],
        "range_proof": leaf.proof.to_bytes().hex(),
        "path": [{"h": h.hex(), "c": [c[0].hex(), c[1].hex()]} for h, c in tree.path(index)],
    }
