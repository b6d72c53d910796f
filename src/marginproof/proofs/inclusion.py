"""Per-account inclusion proofs: data, JSON and compact binary codecs, path verification.

JSON (``type = "mp-inclusion/v1|v2"``): hex lowercase, exactly 64 characters; integers as
canonical decimal strings; canonical JSON. The user's private copy adds ``account_id`` and
``nonce`` (and, with the privacy layer, ``privacy``).

Binary (big-endian, no trailing bytes)::

    magic "MPI1"|"MPI2" | u8 version | u8 F | u8 D | u8 (0 in v1, sum bytes = 8 in v2)
    | u64 epoch | 32 hdr_hash | u64 index | 32 tag | F x u64 values
    | D x (32 hash + F x sum)        sum = u128 in v1, u64 in v2

Size ``88 + 8F + D (32 + wF)``: F = 4, D = 20 is 2,040 B in v1 and 1,400 B in v2.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from marginproof.errors import InputError
from marginproof.proofs.encoding import (
    PREFIX_SUM_LEAF,
    U64_MAX,
    canon,
    parse_hex32,
    parse_strict,
    parse_uint,
)
from marginproof.proofs.errors import VerificationError
from marginproof.proofs.sumtree import FORMAT_V1, FORMAT_V2, MAX_DEPTH, TreeFormat

_BY_TYPE = {f.proof_type: f for f in (FORMAT_V1, FORMAT_V2)}
_BY_MAGIC = {f.magic: f for f in (FORMAT_V1, FORMAT_V2)}
MAX_FIELDS = 64


@dataclass(frozen=True)
class InclusionProof:
    """One leaf and its authentication path (sibling hash and sums, leaf level first)."""

    fmt: TreeFormat
    epoch: int
    hdr_hash: bytes
    depth: int
    index: int
    tag: bytes
    values: tuple[int, ...]
    path: tuple[tuple[bytes, tuple[int, ...]], ...]
    account_id: str | None = None
    nonce: bytes | None = None
    privacy: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def n_fields(self) -> int:
        return len(self.values)

    def public(self) -> InclusionProof:
        """The proof without the private ``account_id``/``nonce``/``privacy`` extras."""
        return InclusionProof(self.fmt, self.epoch, self.hdr_hash, self.depth, self.index,
                              self.tag, self.values, self.path)

    # -- JSON ------------------------------------------------------------------------------
    def to_json_obj(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "type": self.fmt.proof_type,
            "epoch": str(self.epoch),
            "hdr_hash": self.hdr_hash.hex(),
            "depth": str(self.depth),
            "index": str(self.index),
            "leaf": {"tag": self.tag.hex(), "values": [str(v) for v in self.values]},
            "path": [{"h": h.hex(), "s": [str(x) for x in s]} for h, s in self.path],
        }
        if self.account_id is not None:
            d["account_id"] = self.account_id
        if self.nonce is not None:
            d["nonce"] = self.nonce.hex()
        if self.privacy is not None:
            d["privacy"] = dict(self.privacy)
        return d

    def to_json(self) -> bytes:
        """Canonical JSON bytes."""
        return canon(self.to_json_obj())

    # -- binary ----------------------------------------------------------------------------
    def to_binary(self) -> bytes:
        """Compact binary encoding (public part only)."""
        f, d, w = self.n_fields, self.depth, self.fmt.sum_bytes
        parts = [self.fmt.magic,
                 struct.pack(">BBBB", self.fmt.version, f, d, 0 if self.fmt.version == 1 else w),
                 struct.pack(">Q", self.epoch), self.hdr_hash, struct.pack(">Q", self.index),
                 self.tag, struct.pack(f">{f}Q", *self.values)]
        for h, s in self.path:
            parts.append(h)
            parts.append(b"".join(x.to_bytes(w, "big") for x in s))
        return b"".join(parts)


def _shape_checks(fmt: TreeFormat, f: int, d: int, where: str) -> None:
    if not 1 <= f <= MAX_FIELDS:
        raise InputError(f"{where}.values", f"field count {f} not in [1, {MAX_FIELDS}]")
    if not 0 <= d <= MAX_DEPTH:
        raise InputError(f"{where}.depth", f"depth {d} not in [0, {MAX_DEPTH}]")


def proof_from_binary(data: bytes) -> InclusionProof:
    """Decode a binary proof; malformed bytes raise :class:`InputError`."""
    where = "proof"
    if len(data) < 88:
        raise InputError(where, f"binary proof too short ({len(data)} bytes)")
    fmt = _BY_MAGIC.get(data[:4])
    if fmt is None:
        raise InputError(where, f"unknown magic {data[:4]!r}")
    version, f, d, wb = struct.unpack_from(">BBBB", data, 4)
    if version != fmt.version:
        raise InputError(where, f"version byte {version} does not match magic {data[:4]!r}")
    if wb != (0 if fmt.version == 1 else fmt.sum_bytes):
        raise InputError(where, f"sum-width byte {wb} invalid for format v{fmt.version}")
    _shape_checks(fmt, f, d, where)
    size = fmt.proof_size(f, d)
    if len(data) != size:
        raise InputError(where, f"expected {size} bytes for F={f}, D={d}, got {len(data)} "
                                "(no trailing bytes allowed)")
    epoch, = struct.unpack_from(">Q", data, 8)
    hdr_hash = data[16:48]
    index, = struct.unpack_from(">Q", data, 48)
    tag = data[56:88]
    values = struct.unpack_from(f">{f}Q", data, 88)
    off = 88 + 8 * f
    w = fmt.sum_bytes
    path = []
    step = 32 + w * f
    if w == 8:
        unpack = struct.Struct(f">{f}Q").unpack_from
        for o in range(off, off + d * step, step):
            path.append((data[o:o + 32], unpack(data, o + 32)))
    else:
        for o in range(off, off + d * step, step):
            s = tuple(int.from_bytes(data[o + 32 + j * w: o + 32 + (j + 1) * w], "big")
                      for j in range(f))
            path.append((data[o:o + 32], s))
    return InclusionProof(fmt, epoch, hdr_hash, d, index, tag, tuple(values), tuple(path))


def proof_from_json_obj(obj: Any) -> InclusionProof:
    """Validate a parsed JSON proof (types, widths, ranges); errors name the field."""
    where = "proof"
    if not isinstance(obj, dict):
        raise InputError(where, "must be a JSON object")
    allowed = {"type", "epoch", "hdr_hash", "depth", "index", "leaf", "path", "account_id",
               "nonce", "privacy"}
    extra = set(obj) - allowed
    if extra:
        raise InputError(where, f"unknown keys {sorted(extra)}")
    fmt = _BY_TYPE.get(obj.get("type"))  # type: ignore[arg-type]
    if fmt is None:
        raise InputError(f"{where}.type", f"unknown proof type {obj.get('type')!r}")
    epoch = parse_uint(obj.get("epoch"), f"{where}.epoch")
    hdr_hash = parse_hex32(obj.get("hdr_hash"), f"{where}.hdr_hash")
    depth = parse_uint(obj.get("depth"), f"{where}.depth", max_value=MAX_DEPTH)
    leaf = obj.get("leaf")
    if not isinstance(leaf, dict) or set(leaf) != {"tag", "values"}:
        raise InputError(f"{where}.leaf", "must be {tag, values}")
    tag = parse_hex32(leaf["tag"], f"{where}.leaf.tag")
    raw_vals = leaf["values"]
    if not isinstance(raw_vals, list):
        raise InputError(f"{where}.leaf.values", "must be a list")
    values = tuple(parse_uint(v, f"{where}.leaf.values[{i}]") for i, v in enumerate(raw_vals))
    f = len(values)
    _shape_checks(fmt, f, depth, where)
    index = parse_uint(obj.get("index"), f"{where}.index")
    raw_path = obj.get("path")
    if not isinstance(raw_path, list):
        raise InputError(f"{where}.path", "must be a list")
    path = []
    for i, node in enumerate(raw_path):
        p = f"{where}.path[{i}]"
        if not isinstance(node, dict) or set(node) != {"h", "s"}:
            raise InputError(p, "must be {h, s}")
        h = parse_hex32(node["h"], f"{p}.h")
        if not isinstance(node["s"], list) or len(node["s"]) != f:
            raise InputError(f"{p}.s", f"must list {f} sums")
        s = tuple(parse_uint(x, f"{p}.s[{j}]", max_value=fmt.sum_max)
                  for j, x in enumerate(node["s"]))
        path.append((h, s))
    account_id = obj.get("account_id")
    if account_id is not None and not isinstance(account_id, str):
        raise InputError(f"{where}.account_id", "must be a string")
    nonce = parse_hex32(obj["nonce"], f"{where}.nonce") if "nonce" in obj else None
    privacy = obj.get("privacy")
    if privacy is not None:
        from marginproof.proofs.privacy import parse_private_section

        parse_private_section(privacy, depth)  # exact keys and canonical encodings, every level
    return InclusionProof(fmt, epoch, hdr_hash, depth, index, tag, values, tuple(path),
                          account_id, nonce, privacy)


def proof_from_json(data: bytes) -> InclusionProof:
    """Decode a JSON proof (strict types; any whitespace or key order)."""
    return proof_from_json_obj(parse_strict(data, "proof"))


def load_proof_bytes(data: bytes) -> InclusionProof:
    """Binary if it starts with a known magic, JSON otherwise."""
    if data[:4] in _BY_MAGIC:
        return proof_from_binary(data)
    return proof_from_json(data)


# -- verification ------------------------------------------------------------------------
def recompute_root(p: InclusionProof) -> tuple[bytes, tuple[int, ...]]:
    """Walk the path from the leaf to the root; every value and sum range-checked.

    Raises :class:`VerificationError` with the exact failing check. This is the hot part of a
    user's verification (about 20 SHA-256 calls at D = 20).
    """
    fmt = p.fmt
    f = len(p.values)
    if len(p.path) != p.depth:
        raise VerificationError("proof.depth", f"path has {len(p.path)} nodes, depth is {p.depth}")
    if not 0 <= p.index < (1 << p.depth):
        raise VerificationError("proof.index", f"index {p.index} outside [0, 2^{p.depth})")
    if len(p.tag) != 32 or len(p.hdr_hash) != 32:
        raise VerificationError("proof.width", "tag and hdr_hash must be 32 bytes")
    for j, v in enumerate(p.values):
        if not 0 <= v <= U64_MAX:
            raise VerificationError(f"leaf.values[{j}].range", f"value {v} outside [0, 2^64)")
    limit = fmt.sum_max
    w = fmt.sum_bytes
    sha = hashlib.sha256
    prefix = fmt.node_prefix
    if w == 8:
        pk = struct.Struct(f">{f}Q").pack

        def enc(xs: Sequence[int]) -> bytes:
            return pk(*xs)
    else:
        def enc(xs: Sequence[int]) -> bytes:
            return b"".join([x.to_bytes(16, "big") for x in xs])

    h = sha(PREFIX_SUM_LEAF + p.hdr_hash + p.tag + struct.pack(f">{f}Q", *p.values)).digest()
    s: Sequence[int] = p.values
    idx = p.index
    for level, (sh, ss) in enumerate(p.path):
        if len(sh) != 32:
            raise VerificationError(f"path[{level}].h", "sibling hash must be 32 bytes")
        if len(ss) != f:
            raise VerificationError(f"path[{level}].s", f"expected {f} sums, got {len(ss)}")
        if min(ss) < 0 or max(ss) > limit:
            raise VerificationError(f"path[{level}].sums.range",
                                    f"sibling sum outside [0, 2^{8 * w})")
        pre = (prefix + sh + enc(ss) + h + enc(s)) if idx & 1 else (
            prefix + h + enc(s) + sh + enc(ss))
        s = [a + b for a, b in zip(s, ss, strict=True)]
        if max(s) > limit:
            raise VerificationError(f"path[{level}].sums.overflow",
                                    f"parent sum exceeds 2^{8 * w}-1")
        h = sha(pre).digest()
        idx >>= 1
    return h, tuple(s)
