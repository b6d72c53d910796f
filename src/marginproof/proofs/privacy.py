"""L5 privacy layer: Pedersen commitments to each leaf's equity parts and maintenance margin, a
commitment tree and range proofs, so anyone can check every account is solvent-or-flagged
without seeing balances.

Per leaf (same ``2^D`` slots and tag order as the sum tree, padding included so ``N`` stays
hidden): ``C_f = f G + r_f H`` for ``f`` in :data:`COMMITTED` (``assets``, ``liabs``, ``mm``)
with ``r_f = HMAC-SHA512(epoch_secret, "blind" || f || 0x00 || tag) mod L`` (the auditor can
replay). One aggregated range proof (:mod:`marginproof.proofs.rangeproof`) per leaf shows four
values in ``[0, 2^64)``: ``mm``, ``liabs``, ``assets`` and

* ``flag = 0``: ``assets - liabs - mm`` (commitment ``C_a - C_l - C_mm``): equity covers MM;
* ``flag = 1`` (shortfall, in liquidation): ``mm + liabs - assets``;

so every committed amount is non-negative and, unless flagged, ``equity >= mm``. The flag is
bound in the leaf hash ``SHA-256(0x17 || hdr_hash || tag || u8 flag || C_a || C_l || C_mm)``.
Nodes add the children's commitments (computed by the verifier, never read from a proof):
``SHA-256(0x18 || h_L || C_L[a] || C_L[l] || C_L[mm] || h_R || C_R[a] || C_R[l] || C_R[mm])``.
The record publishes the root hash, the root commitments and the aggregate blinds ``R_f`` so
anyone checks ``C_root[f] == total_f G + R_f H`` against the sum tree's totals.

Bundle file (public, binary): ``"MPB2" | u8 version=2 | u8 D | u8 base | u8 m=4 | 32 hdr_hash |
2^D x (32 tag | u8 flag | 32 C_a | 32 C_l | 32 C_mm | range proof)``.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from marginproof.errors import InputError
from marginproof.proofs.encoding import (
    PREFIX_BUNDLE,
    PREFIX_COM_LEAF,
    PREFIX_COM_NODE,
    parse_hex,
    parse_hex32,
    sha256,
)
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

SCHEME = "mp-pedersen/v2"
COMMITTED = ("assets", "liabs", "mm")
M_VALUES = 4
BUNDLE_MAGIC = b"MPB2"
Coms = tuple[bytes, bytes, bytes]
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
    names = b"mm|liabs|assets|assets-liabs-mm" if flag == 0 else b"mm|liabs|assets|mm+liabs-assets"
    return b"marginproof/v2/privacy" + hdr_hash + tag + bytes([flag]) + names


def statement_commitments(c: Coms, flag: int) -> list[bytes]:
    """The four commitments a leaf's range proof is about."""
    c_a, c_l, c_mm = c
    diff = sub(sub(c_a, c_l), c_mm) if flag == 0 else sub(add(c_mm, c_l), c_a)
    return [c_mm, c_l, c_a, diff]


def statement_values(assets: int, liabs: int, mm: int, blinds: Sequence[int],
                     ) -> tuple[int, list[int], list[int]]:
    """``(flag, values, blinds)`` of a leaf's statement."""
    r_a, r_l, r_m = blinds
    if assets >= liabs + mm:
        return 0, [mm, liabs, assets, assets - liabs - mm], [r_m, r_l, r_a, (r_a - r_l - r_m) % L]
    return 1, [mm, liabs, assets, mm + liabs - assets], [r_m, r_l, r_a, (r_m + r_l - r_a) % L]


def com_leaf_hash(hdr_hash: bytes, tag: bytes, flag: int, c: Coms) -> bytes:
    return sha256(PREFIX_COM_LEAF, hdr_hash, tag, bytes([flag]), *c)


def com_node_hash(hl: bytes, cl: Sequence[bytes], hr: bytes, cr: Sequence[bytes]) -> bytes:
    return sha256(PREFIX_COM_NODE, hl, *cl, hr, *cr)


@dataclass(frozen=True)
class PrivacyLeaf:
    """One slot of the commitment tree with its range proof."""

    tag: bytes
    flag: int
    coms: Coms
    proof: RangeProof

    def to_bytes(self) -> bytes:
        return self.tag + bytes([self.flag]) + b"".join(self.coms) + self.proof.to_bytes()


@dataclass(frozen=True)
class _LeafJob:
    ep_secret: bytes
    hdr_hash: bytes
    tag: bytes
    assets: int
    liabs: int
    mm: int
    base: int


def _prove_leaf(job: _LeafJob) -> PrivacyLeaf:
    r = tuple(blind_for(job.ep_secret, f, job.tag) for f in COMMITTED)
    coms: Coms = (commit(job.assets, r[0]), commit(job.liabs, r[1]), commit(job.mm, r[2]))
    flag, vals, blinds = statement_values(job.assets, job.liabs, job.mm, r)
    seed = hmac.digest(job.ep_secret, b"rp-nonce" + job.hdr_hash + job.tag + b"".join(
        v.to_bytes(8, "big") for v in vals) + b"".join(sc(b) for b in blinds), "sha512")
    proof = prove_range(vals, blinds, statement_commitments(coms, flag),
                        statement_context(job.hdr_hash, job.tag, flag), NonceStream(seed),
                        job.base)
    return PrivacyLeaf(job.tag, flag, coms, proof)


@dataclass(frozen=True)
class PrivacyTree:
    """All leaves (tree order) and every level of (hash, commitments)."""

    hdr_hash: bytes
    depth: int
    base: int
    leaves: tuple[PrivacyLeaf, ...]
    levels: tuple[tuple[tuple[bytes, Coms], ...], ...]
    blind_totals: tuple[int, ...]

    @property
    def root_hash(self) -> bytes:
        return self.levels[-1][0][0]

    @property
    def root_commitments(self) -> Coms:
        return self.levels[-1][0][1]

    def path(self, index: int) -> list[tuple[bytes, Coms]]:
        """Sibling (hash, commitments) per level, leaf level first."""
        return [self.levels[lv][(index >> lv) ^ 1] for lv in range(self.depth)]

    def bundle_bytes(self) -> bytes:
        head = (BUNDLE_MAGIC + struct.pack(">BBBB", 2, self.depth, self.base, M_VALUES)
                + self.hdr_hash)
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


def _add3(a: Coms, b: Coms) -> Coms:
    return (add(a[0], b[0]), add(a[1], b[1]), add(a[2], b[2]))


def commitment_levels(hdr_hash: bytes, leaves: Sequence[PrivacyLeaf]
                      ) -> tuple[tuple[tuple[bytes, Coms], ...], ...]:
    level = tuple((com_leaf_hash(hdr_hash, lf.tag, lf.flag, lf.coms), lf.coms) for lf in leaves)
    out = [level]
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level), 2):
            (hl, cl), (hr, cr) = level[i], level[i + 1]
            nxt.append((com_node_hash(hl, cl, hr, cr), _add3(cl, cr)))
        level = tuple(nxt)
        out.append(level)
    return tuple(out)


def build_privacy(ep_secret: bytes, hdr_hash: bytes, tags: Sequence[bytes],
                  assets: Sequence[int], liabs: Sequence[int], mms: Sequence[int],
                  base: int = DEFAULT_BASE, mapper: Mapper = serial_map) -> PrivacyTree:
    """Commit, prove and build the tree over leaves in tree order (``2^D`` of them)."""
    n = len(tags)
    if n == 0 or n & (n - 1) or not len(assets) == len(liabs) == len(mms) == n:
        raise InputError("privacy.leaves", "need 2^D leaves with assets, liabs and mm each")
    jobs = [_LeafJob(ep_secret, hdr_hash, t, int(a), int(lb), int(m), base)
            for t, a, lb, m in zip(tags, assets, liabs, mms, strict=True)]
    leaves = tuple(mapper(_prove_leaf, jobs))
    totals = tuple(sum(blind_for(ep_secret, f, t) for t in tags) % L for f in COMMITTED)
    return PrivacyTree(hdr_hash, n.bit_length() - 1, base, leaves,
                       commitment_levels(hdr_hash, leaves), totals)


def parse_bundle(data: bytes) -> tuple[bytes, int, int, list[PrivacyLeaf]]:
    """``(hdr_hash, depth, base, leaves)`` from bundle bytes (structure and points checked)."""
    code = "privacy.bundle"
    if len(data) < 40 or data[:4] != BUNDLE_MAGIC:
        raise VerificationError(f"{code}.encoding", "not a privacy bundle (bad magic)")
    version, depth, base, m = struct.unpack_from(">BBBB", data, 4)
    if version != 2 or m != M_VALUES or depth > 24 or base not in (2, 4, 16):
        raise VerificationError(f"{code}.encoding", "unsupported bundle version/shape")
    hdr_hash = data[8:40]
    psize = RangeProof.size(base, M_VALUES)
    rec = 32 + 1 + 96 + psize
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
        coms = tuple(parse_point(data[o + 33 + 32 * k:o + 65 + 32 * k],
                                 f"{code}.leaf[{i}].c_{COMMITTED[k]}") for k in range(3))
        proof = RangeProof.from_bytes(data[o + 129:o + rec], f"{code}.leaf[{i}].proof")
        if proof.m != M_VALUES or proof.base != base:
            raise VerificationError(f"{code}.leaf[{i}].proof", "proof shape differs from the "
                                                               "bundle's")
        leaves.append(PrivacyLeaf(tag, flag, coms, proof))  # type: ignore[arg-type]
    return hdr_hash, depth, base, leaves


def verify_bundle(section: dict[str, Any], hdr_hash: bytes, depth: int,
                  totals: tuple[int, ...], data: bytes, seed: bytes) -> dict[str, int]:
    """Public check 10: tree, root openings and every range proof (batched).

    ``section`` is the record's ``privacy`` object, ``totals`` the sum tree's
    (assets, liabs, mm).
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
    if not isinstance(blinds, list) or len(blinds) != len(COMMITTED):
        raise VerificationError(f"{code}.blind_totals", "need one aggregate blind per field")
    for j, (name, total) in enumerate(zip(COMMITTED, totals, strict=True)):
        r = parse_scalar(parse_hex32(blinds[j], f"{code}.blind_totals[{j}]"),
                         f"{code}.blind_totals[{j}]")
        if add(base_mul(total), mul(r, generator_h())) != root_coms[j]:
            raise VerificationError(f"{code}.root_opening.{name}",
                                    f"root commitment does not open to the published total {total}")
    items = [(lf.proof, statement_commitments(lf.coms, lf.flag),
              statement_context(hdr_hash, lf.tag, lf.flag)) for lf in leaves]
    verify_range_batch(items, seed, f"{code}.range")
    return {"leaves": len(leaves), "flagged": sum(lf.flag for lf in leaves)}


def parse_private_section(obj: Any, depth: int) -> tuple[tuple[int, ...], RangeProof,
                                                          list[tuple[bytes, Coms]]]:
    """Strictly parse the user's private privacy section: exactly ``{blinds, range_proof,
    path}``, ``blinds`` one canonical scalar per committed field, ``path`` ``depth`` objects of
    exactly ``{h, c}`` with canonical points. Unknown fields are refused at every level."""
    w = "proof.privacy"
    if not isinstance(obj, dict) or set(obj) != {"blinds", "range_proof", "path"}:
        raise InputError(w, "must be an object with exactly blinds, range_proof, path")
    bl = obj["blinds"]
    if not isinstance(bl, list) or len(bl) != len(COMMITTED):
        raise InputError(f"{w}.blinds", f"must list {len(COMMITTED)} scalars")
    blinds = tuple(parse_scalar(parse_hex32(x, f"{w}.blinds[{k}]"), f"privacy.blinds[{k}]")
                   for k, x in enumerate(bl))
    raw = obj["range_proof"]
    if not isinstance(raw, str):
        raise InputError(f"{w}.range_proof", "must be hex")
    proof = RangeProof.from_bytes(parse_hex(raw, f"{w}.range_proof"), "privacy.proof")
    if proof.m != M_VALUES:
        raise VerificationError("privacy.proof", f"range proof covers {proof.m} values, "
                                                 f"expected {M_VALUES}")
    pth = obj["path"]
    if not isinstance(pth, list) or len(pth) != depth:
        raise InputError(f"{w}.path", f"must list {depth} nodes")
    path = []
    for lv, node in enumerate(pth):
        p = f"{w}.path[{lv}]"
        if not isinstance(node, dict) or set(node) != {"h", "c"}:
            raise InputError(p, "must be an object with exactly h, c")
        if not isinstance(node["c"], list) or len(node["c"]) != len(COMMITTED):
            raise InputError(f"{p}.c", f"must list {len(COMMITTED)} commitments")
        cs = tuple(parse_point(parse_hex32(x, f"{p}.c[{k}]"), f"privacy.path[{lv}].c[{k}]")
                   for k, x in enumerate(node["c"]))
        path.append((parse_hex32(node["h"], f"{p}.h"), cs))
    return blinds, proof, path  # type: ignore[return-value]


def verify_opening(private: Any, hdr_hash: bytes, tag: bytes, values: Sequence[int],
                   depth: int, index: int, section: dict[str, Any]) -> None:
    """User check 7: own commitments open to own values (``assets, liabs, mm``); own leaf is in
    the commitment tree; own range proof verifies."""
    code = "privacy"
    blinds, proof, path = parse_private_section(private, depth)
    c = [commit(v, r) for v, r in zip(values, blinds, strict=True)]
    coms: Coms = (c[0], c[1], c[2])
    flag = 0 if values[0] >= values[1] + values[2] else 1
    h = com_leaf_hash(hdr_hash, tag, flag, coms)
    cs = coms
    for level, (sh, sc_) in enumerate(path):
        if (index >> level) & 1:
            h, cs = com_node_hash(sh, sc_, h, cs), _add3(sc_, cs)
        else:
            h, cs = com_node_hash(h, cs, sh, sc_), _add3(cs, sc_)
    if h.hex() != section.get("root") or [c.hex() for c in cs] != section.get("root_commitments"):
        raise VerificationError(f"{code}.opening", "own commitments (from own values and blinds) "
                                                   "do not lead to the published commitment root")
    verify_range(proof, statement_commitments(coms, flag),
                 statement_context(hdr_hash, tag, flag), f"{code}.range")


def private_section(tree: PrivacyTree, ep_secret: bytes, index: int) -> dict[str, Any]:
    """What the user receives privately: blinds, own range proof, commitment path."""
    leaf = tree.leaves[index]
    return {
        "blinds": [sc(blind_for(ep_secret, f, leaf.tag)).hex() for f in COMMITTED],
        "range_proof": leaf.proof.to_bytes().hex(),
        "path": [{"h": h.hex(), "c": [x.hex() for x in c]} for h, c in tree.path(index)],
    }
