"""L2: the Merkle *sum* tree over per-account results (spec section 4).

Leaf: ``SHA-256(0x10 || hdr_hash || tag || u64be(V[0]) .. u64be(V[F-1]))``.
Node (the Hu-Zhang-Guo fix: both children's sums are hashed, not only the total)::

    S = S_L + S_R   (element-wise, exact, range-checked)
    node = SHA-256(P || h_L || uW(S_L) || h_R || uW(S_R))

Two versioned formats (:class:`TreeFormat`): **v1** is the spec's layout (``P = 0x11``, 128-bit
sums); **v2** (default) uses 64-bit sums with its own prefix ``P = 0x19`` so the binary proof of a
leaf with collateral and margin fields fits 1.5 KB at 2^20 leaves. Soundness of v2: every sum is
an exact Python-int addition checked against ``2^64 - 1`` at every level, so nothing can wrap;
the 64-bit width only caps the *total* of a field over all accounts (``2^64`` atoms = 18.4e12 USD
at 6 decimals), and the prover refuses to build beyond it.

Fast build: each level's preimages are packed with numpy (sums as ``uint64`` limbs with explicit
carry and overflow checks) and hashed in a tight ``hashlib`` loop; the loop is injectable
(``hasher``) so the shell can spread it over processes. :func:`reference_root` is the plain
per-node twin the tests compare against.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError
from marginproof.proofs.encoding import (
    PREFIX_SUM_LEAF,
    PREFIX_SUM_NODE_V1,
    PREFIX_SUM_NODE_V2,
    U64_MAX,
    sha256,
)

Hasher = Callable[[NDArray[np.uint8]], NDArray[np.uint8]]
MAX_DEPTH = 32


@dataclass(frozen=True)
class TreeFormat:
    """Version-dependent constants of the sum tree and its proofs."""

    version: int
    spec: str
    sum_bytes: int
    node_prefix: bytes
    proof_type: str
    magic: bytes

    @property
    def sum_max(self) -> int:
        """Largest allowed node sum."""
        return (1 << (8 * self.sum_bytes)) - 1

    @property
    def limbs(self) -> int:
        return self.sum_bytes // 8

    def proof_size(self, n_fields: int, depth: int) -> int:
        """Bytes of a binary inclusion proof: ``88 + 8F + D (32 + wF)``."""
        return 88 + 8 * n_fields + depth * (32 + self.sum_bytes * n_fields)


FORMAT_V1 = TreeFormat(1, "marginproof/proofs/v1", 16, PREFIX_SUM_NODE_V1, "mp-inclusion/v1",
                       b"MPI1")
FORMAT_V2 = TreeFormat(2, "marginproof/proofs/v2", 8, PREFIX_SUM_NODE_V2, "mp-inclusion/v2",
                       b"MPI2")
FORMATS = {f.spec: f for f in (FORMAT_V1, FORMAT_V2)}


def format_for_spec(spec: str, field: str = "header.spec") -> TreeFormat:
    """The :class:`TreeFormat` named by a header's ``spec`` string."""
    try:
        return FORMATS[spec]
    except KeyError:
        raise InputError(field, f"unknown format {spec!r}; known: {', '.join(FORMATS)}") from None


def depth_for(n_accounts: int, depth_min: int) -> int:
    """``D = max(D_min, ceil(log2 N))``."""
    d = max(depth_min, (max(n_accounts, 1) - 1).bit_length())
    if d > MAX_DEPTH:
        raise InputError("accounts", f"{n_accounts} accounts need depth {d} > {MAX_DEPTH}")
    return d


# -- hashing loops -------------------------------------------------------------------------
def hash_rows(rows: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """SHA-256 of every row of a C-contiguous ``(n, L)`` byte array -> ``(n, 32)``."""
    n, width = rows.shape
    buf = memoryview(np.ascontiguousarray(rows)).cast("B")  # type: ignore[arg-type]
    h = hashlib.sha256
    out = b"".join([h(buf[o:o + width]).digest() for o in range(0, n * width, width)])
    return np.frombuffer(out, dtype=np.uint8).reshape(n, 32)


def _be_bytes(limbs: NDArray[np.uint64]) -> NDArray[np.uint8]:
    """``(m, F, k)`` uint64 limbs (most significant first) -> ``(m, F*k*8)`` big-endian bytes."""
    m = limbs.shape[0]
    return np.ascontiguousarray(limbs).astype(">u8").view(np.uint8).reshape(m, -1)


def _add_limbs(a: NDArray[np.uint64], b: NDArray[np.uint64], level: int) -> NDArray[np.uint64]:
    """Exact element-wise sum of limb arrays; raises if any sum needs more limbs."""
    if a.shape[-1] == 1:
        s = a + b
        if np.any(s < a):
            raise InputError("values", f"a level-{level} sum exceeds 2^64-1 (format v2 capacity;"
                                       " use format v1 with 128-bit sums)")
        return s
    lo = a[..., 1] + b[..., 1]
    carry = (lo < a[..., 1]).astype(np.uint64)
    hi = a[..., 0] + b[..., 0]
    ovf = hi < a[..., 0]
    hi2 = hi + carry
    ovf |= hi2 < hi
    if np.any(ovf):
        raise InputError("values", f"a level-{level} sum exceeds 2^128-1")
    return np.stack([hi2, lo], axis=-1)


def sort_by_tag(tags: NDArray[np.uint8]) -> NDArray[np.intp]:
    """Permutation that sorts ``(n, 32)`` tags as big-endian byte strings.

    Tags are uniform hashes, so sorting on their first 8 bytes almost always decides; only if
    two tags share those bytes does it fall back to a full 4-column lexsort.
    """
    cols = np.ascontiguousarray(tags).view(">u8").reshape(-1, 4).astype(np.uint64)
    order = np.argsort(cols[:, 0])
    first = cols[order, 0]
    if np.any(first[1:] == first[:-1]):
        order = np.lexsort((cols[:, 3], cols[:, 2], cols[:, 1], cols[:, 0]))
    return order


@dataclass(frozen=True)
class SumTree:
    """A built sum tree: sorted leaves and every level's hashes and sums.

    Attributes
    ----------
    fmt : TreeFormat
    hdr_hash : bytes
    depth : int
    tags : ndarray, shape (2^D, 32), uint8
        Leaf tags in tree order (sorted).
    values : ndarray, shape (2^D, F), uint64
        Leaf field vectors.
    hashes : ndarray, shape (2^(D+1) - 1, 32), uint8
        All node hashes, level 0 (leaves) first, then each level above.
    sums : ndarray, shape (2^(D+1) - 1, F, limbs), uint64
        All node sums as big-endian-ordered 64-bit limbs (1 limb in v2, 2 in v1).
    """

    fmt: TreeFormat
    hdr_hash: bytes
    depth: int
    tags: NDArray[np.uint8]
    values: NDArray[np.uint64]
    hashes: NDArray[np.uint8]
    sums: NDArray[np.uint64]

    @property
    def n_fields(self) -> int:
        return int(self.values.shape[1])

    def level_offset(self, level: int) -> int:
        """Row of the first node of ``level`` in :attr:`hashes` / :attr:`sums`."""
        return (1 << (self.depth + 1)) - (1 << (self.depth + 1 - level))

    def node_sums(self, row: int) -> tuple[int, ...]:
        """Sums of node ``row`` as Python ints."""
        limbs = self.sums[row]
        if limbs.shape[-1] == 1:
            return tuple(int(x) for x in limbs[:, 0])
        return tuple((int(h) << 64) | int(lo) for h, lo in limbs)

    @property
    def root_hash(self) -> bytes:
        return bytes(self.hashes[-1])

    @property
    def root_sums(self) -> tuple[int, ...]:
        return self.node_sums(len(self.hashes) - 1)

    def find(self, tag: bytes) -> int:
        """Leaf index of ``tag`` (binary search); raises ``KeyError`` if absent."""
        lo, hi = 0, self.tags.shape[0]
        while lo < hi:
            mid = (lo + hi) // 2
            if self.tags[mid].tobytes() < tag:
                lo = mid + 1
            else:
                hi = mid
        if lo < self.tags.shape[0] and self.tags[lo].tobytes() == tag:
            return lo
        raise KeyError(tag.hex())

    def path(self, index: int) -> list[tuple[bytes, tuple[int, ...]]]:
        """Sibling ``(hash, sums)`` from the leaf level up, for leaf ``index``."""
        if not 0 <= index < (1 << self.depth):
            raise IndexError(index)
        out = []
        for level in range(self.depth):
            row = self.level_offset(level) + ((index >> level) ^ 1)
            out.append((bytes(self.hashes[row]), self.node_sums(row)))
        return out


def _alloc(hasher: Hasher, n: int, width: int) -> NDArray[np.uint8]:
    """Row buffer for ``hasher``: its own (e.g. shared memory, no copy) if it offers one."""
    alloc = getattr(hasher, "alloc", None)
    if alloc is not None:
        out: NDArray[np.uint8] = alloc(n, width)
        return out
    return np.empty((n, width), dtype=np.uint8)


def leaf_preimages(hdr_hash: bytes, tags: NDArray[np.uint8], values: NDArray[np.uint64],
                   hasher: Hasher = hash_rows) -> NDArray[np.uint8]:
    """Packed leaf preimages, shape (n, 65 + 8F)."""
    n, f = values.shape
    rows = _alloc(hasher, n, 65 + 8 * f)
    rows[:, 0] = PREFIX_SUM_LEAF[0]
    rows[:, 1:33] = np.frombuffer(hdr_hash, dtype=np.uint8)
    rows[:, 33:65] = tags
    rows[:, 65:] = np.ascontiguousarray(values).astype(">u8").view(np.uint8).reshape(n, 8 * f)
    return rows


def checked_values(values: Any, field: str = "values") -> NDArray[np.uint64]:
    """``values`` as ``uint64`` after checking every entry is an integer in ``[0, 2^64)``.

    The check comes *before* any cast: numpy would turn an ``int64`` of ``-10**8`` into
    ``2**64 - 10**8`` and a float into its truncation, silently. Refused: non-integer dtypes
    (floats, booleans, strings), Python objects that are not ``int`` (``True`` included), and
    anything outside the range. The error names the first bad entry, ``values[i][j]``.
    """
    arr = np.asarray(values)
    if arr.ndim != 2:
        raise InputError(field, f"must be a 2-D array (accounts x fields), got {arr.ndim}-D")
    kind = arr.dtype.kind
    if kind == "u":
        return np.ascontiguousarray(arr, dtype=np.uint64)
    if kind == "i":
        bad = np.argwhere(arr < 0)
        if bad.size:
            i, j = (int(x) for x in bad[0])
            raise InputError(f"{field}[{i}][{j}]", f"negative value {int(arr[i, j])} (committed "
                                                   "values are non-negative atoms)")
        return np.ascontiguousarray(arr, dtype=np.uint64)
    if kind == "O":
        for (i, j), v in np.ndenumerate(arr):
            if type(v) is not int:
                raise InputError(f"{field}[{i}][{j}]", f"must be an integer, got "
                                                       f"{type(v).__name__} {v!r}")
            if not 0 <= v <= U64_MAX:
                raise InputError(f"{field}[{i}][{j}]", f"{v} outside [0, 2^64)")
        return np.array(arr.tolist(), dtype=np.uint64).reshape(arr.shape)
    raise InputError(field, f"must hold integers, got dtype {arr.dtype} (no float or boolean "
                            "amounts on the committed path)")


def build_sum_tree(fmt: TreeFormat, hdr_hash: bytes, tags: NDArray[np.uint8],
                   values: Any, hasher: Hasher = hash_rows) -> SumTree:
    """Build the tree over leaves that are already padded to ``2^D`` and sorted by tag.

    Parameters
    ----------
    fmt : TreeFormat
    hdr_hash : bytes, 32
    tags : ndarray, shape (2^D, 32), uint8, strictly increasing
    values : array-like, shape (2^D, F)
        Non-negative integers below ``2^64`` (checked before any cast, see
        :func:`checked_values`).
    hasher : callable
        Hashes the rows of an ``(n, L)`` byte array; the default is the single-process loop.
        If it has an ``alloc(n, L)`` method, preimages are packed straight into the buffer it
        returns (shared memory, say) and its result is copied out before the next level.
    """
    values = checked_values(values)
    n, f = values.shape
    if n == 0 or n & (n - 1):
        raise InputError("leaves", f"leaf count {n} is not a power of two")
    if tags.shape != (n, 32):
        raise InputError("leaves", "tags must have shape (n, 32)")
    if len(hdr_hash) != 32:
        raise InputError("hdr_hash", "must be 32 bytes")
    depth = n.bit_length() - 1
    if depth > MAX_DEPTH:
        raise InputError("leaves", f"depth {depth} > {MAX_DEPTH}")
    check_sorted_unique(tags)
    k = fmt.limbs
    total = 2 * n - 1
    hashes = np.empty((total, 32), dtype=np.uint8)
    sums = np.zeros((total, f, k), dtype=np.uint64)
    vals = np.ascontiguousarray(values, dtype=np.uint64)
    hashes[:n] = hasher(leaf_preimages(hdr_hash, tags, vals, hasher))
    sums[:n, :, k - 1] = vals
    off, width = 0, n
    w = fmt.sum_bytes * f
    for level in range(1, depth + 1):
        m = width // 2
        h = hashes[off:off + width]
        s = sums[off:off + width]
        rows = _alloc(hasher, m, 1 + 2 * (32 + w))
        rows[:, 0] = fmt.node_prefix[0]
        rows[:, 1:33] = h[0::2]
        rows[:, 33:33 + w] = _be_bytes(s[0::2])
        rows[:, 33 + w:65 + w] = h[1::2]
        rows[:, 65 + w:] = _be_bytes(s[1::2])
        nxt = off + width
        sums[nxt:nxt + m] = _add_limbs(s[0::2], s[1::2], level)
        hashes[nxt:nxt + m] = hasher(rows)
        off, width = nxt, m
    return SumTree(fmt, hdr_hash, depth, np.ascontiguousarray(tags), vals, hashes, sums)


def check_sorted_unique(tags: NDArray[np.uint8]) -> None:
    """Refuse unsorted or duplicate tags (a duplicate id or a tag collision aborts)."""
    if tags.shape[0] < 2:
        return
    cols = np.ascontiguousarray(tags).view(">u8").reshape(-1, 4).astype(np.uint64)
    a, b = cols[:-1], cols[1:]
    # strict lexicographic a < b, column by column
    lt = np.zeros(a.shape[0], dtype=bool)
    eq = np.ones(a.shape[0], dtype=bool)
    for c in range(4):
        lt |= eq & (a[:, c] < b[:, c])
        eq &= a[:, c] == b[:, c]
    if np.any(eq):
        i = int(np.argmax(eq))
        raise InputError("leaves", f"duplicate tag {tags[i].tobytes().hex()} (duplicate account)")
    if not np.all(lt):
        raise InputError("leaves", "leaves are not sorted by tag")


def arrange_leaves(
    real_tags: NDArray[np.uint8], real_values: NDArray[np.uint64], pad_tags: NDArray[np.uint8],
) -> tuple[NDArray[np.uint8], NDArray[np.uint64], NDArray[np.intp]]:
    """Append zero-valued padding leaves and sort everything by tag.

    Returns sorted tags (2^D, 32), values (2^D, F) and, for each real leaf ``i``, its index in
    the tree (shape (N,)).
    """
    n_real, f = real_values.shape
    tags = np.concatenate([real_tags, pad_tags]) if len(pad_tags) else real_tags
    vals = np.concatenate([real_values, np.zeros((len(pad_tags), f), np.uint64)])
    order = sort_by_tag(tags)
    position = np.empty(len(order), dtype=np.intp)
    position[order] = np.arange(len(order))
    return np.ascontiguousarray(tags[order]), np.ascontiguousarray(vals[order]), position[:n_real]


# -- reference twin (plain Python ints, one node at a time) ---------------------------------
def leaf_hash(hdr_hash: bytes, tag: bytes, values: Sequence[int]) -> bytes:
    """Leaf hash of one account (values are checked to fit u64)."""
    for v in values:
        if not 0 <= v <= U64_MAX:
            raise InputError("values", f"leaf value {v} outside [0, 2^64)")
    return sha256(PREFIX_SUM_LEAF, hdr_hash, tag, b"".join(v.to_bytes(8, "big") for v in values))


def node_hash(fmt: TreeFormat, hl: bytes, sl: Sequence[int], hr: bytes,
              sr: Sequence[int]) -> bytes:
    """Node hash over both children's hashes and sums."""
    w = fmt.sum_bytes
    return sha256(fmt.node_prefix, hl, b"".join(x.to_bytes(w, "big") for x in sl),
                  hr, b"".join(x.to_bytes(w, "big") for x in sr))


def reference_root(fmt: TreeFormat, hdr_hash: bytes,
                   leaves: Sequence[tuple[bytes, Sequence[int]]]) -> tuple[bytes, tuple[int, ...]]:
    """Root ``(hash, sums)`` of sorted, padded leaves, built node by node with Python ints."""
    level = [(leaf_hash(hdr_hash, t, v), tuple(v)) for t, v in leaves]
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level), 2):
            (hl, sl), (hr, sr) = level[i], level[i + 1]
            s = tuple(a + b for a, b in zip(sl, sr, strict=True))
            if max(s, default=0) > fmt.sum_max:
                raise InputError("values", "a node sum exceeds the format's range")
            nxt.append((node_hash(fmt, hl, sl, hr, sr), s))
        level = nxt
    return level[0]
