"""ristretto255 helpers over ``rbcl`` (libsodium): scalars, points, generators, challenges.

Scalars are Python ints reduced mod :data:`L` (cheap); points are 32-byte canonical encodings.
Every point from outside goes through :func:`parse_point`, which rejects non-canonical
encodings and the identity (libsodium's ``is_valid_point`` accepts the identity, and its
``*_allow_scalar_zero`` multiplication silently returns zeros for an invalid point).

Generators: ``G`` is the standard base point (fast fixed-base multiplication), ``H`` and the
vector generators ``G_i`` come from hash-to-group (``from_hash(SHA-512(label))``) and are derived
by every verifier itself: nobody knows a discrete-log relation between them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sys
import threading
from collections.abc import Iterable, Sequence
from types import ModuleType

from marginproof.errors import InputError
from marginproof.proofs.errors import VerificationError

L = 2**252 + 27742317777372353535851937790883648493
IDENTITY = bytes(32)
_LABEL_H = b"marginproof/v1/pedersen/H"
_LABEL_G = b"marginproof/v1/pedersen/G"


_LOAD_LOCK = threading.Lock()
_RBCL: ModuleType | None = None


def sodium() -> ModuleType:
    """The ``rbcl`` module, imported on first use (only proofs that touch the group need it).

    ``rbcl`` writes its bundled libsodium (2.7 MB) to a new file in the temp directory at import
    and ``dlopen``s it, leaving the file behind. Once loaded, the mapping no longer needs the
    file, so it is unlinked at once: a process leaves nothing in the temp directory, and one that
    never builds or checks a privacy proof never writes the copy at all.
    """
    global _RBCL
    if _RBCL is None:
        with _LOAD_LOCK:
            if _RBCL is None:
                import rbcl

                path = getattr(sys.modules.get("rbcl._sodium"), "lib_path", None)
                if isinstance(path, str):
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                _RBCL = rbcl
    return _RBCL


def sc(x: int) -> bytes:
    """32-byte little-endian encoding of ``x mod L``."""
    return (x % L).to_bytes(32, "little")


def parse_scalar(b: bytes, code: str) -> int:
    """Canonical scalar (< L) from 32 bytes, else :class:`VerificationError`."""
    if len(b) != 32:
        raise VerificationError(code, "scalar must be 32 bytes")
    x = int.from_bytes(b, "little")
    if x >= L:
        raise VerificationError(code, "non-canonical scalar (>= group order)")
    return x


def parse_point(b: bytes, code: str, *, allow_identity: bool = False) -> bytes:
    """A canonical, valid ristretto255 encoding (identity only if allowed)."""
    if len(b) != 32:
        raise VerificationError(code, "point must be 32 bytes")
    if b == IDENTITY:
        if allow_identity:
            return b
        raise VerificationError(code, "identity point is not allowed here")
    if b[31] & 0x80:
        # RFC 9496 4.3.1: a canonical encoding is a field element < p, so bit 255 is 0;
        # libsodium ignores that bit and would decode the encoding as the canonical point
        raise VerificationError(code, "non-canonical ristretto255 encoding (top bit set)")
    if not sodium().crypto_core_ristretto255_is_valid_point(b):
        raise VerificationError(code, "not a canonical ristretto255 point")
    return b


def mul(s: int, p: bytes) -> bytes:
    """``s * P`` (any scalar, including 0; P must be a valid point or the identity)."""
    s %= L
    if s == 0 or p == IDENTITY:
        return IDENTITY
    return bytes(sodium().crypto_scalarmult_ristretto255_allow_scalar_zero(sc(s), p))


def base_mul(s: int) -> bytes:
    """``s * G`` with libsodium's fixed-base multiplication."""
    s %= L
    if s == 0:
        return IDENTITY
    return bytes(sodium().crypto_scalarmult_ristretto255_base(sc(s)))


def add(p: bytes, q: bytes) -> bytes:
    """Point addition (identity-safe)."""
    if p == IDENTITY:
        return q
    if q == IDENTITY:
        return p
    return bytes(sodium().crypto_core_ristretto255_add(p, q))


def sub(p: bytes, q: bytes) -> bytes:
    """Point subtraction (identity-safe)."""
    if q == IDENTITY:
        return p
    return bytes(sodium().crypto_core_ristretto255_sub(p, q))


def neg(p: bytes) -> bytes:
    return sub(IDENTITY, p)


def point_sum(points: Iterable[bytes]) -> bytes:
    """Sum of points (identity for none)."""
    acc = IDENTITY
    for p in points:
        acc = add(acc, p)
    return acc


def multi_mul(scalars: Sequence[int], points: Sequence[bytes]) -> bytes:
    """``sum s_i P_i``; one libsodium multiplication per non-zero term (no MSM in libsodium)."""
    acc = IDENTITY
    for s, p in zip(scalars, points, strict=True):
        if s % L:
            acc = add(acc, mul(s, p))
    return acc


def hash_to_point(label: bytes) -> bytes:
    """``from_hash(SHA-512(label))``: a point with unknown discrete log."""
    return bytes(sodium().crypto_core_ristretto255_from_hash(hashlib.sha512(label).digest()))


@functools.cache
def generator_g() -> bytes:
    """The standard base point ``G``."""
    return base_mul(1)


@functools.cache
def generator_h() -> bytes:
    """``H = from_hash(SHA-512("marginproof/v1/pedersen/H"))``."""
    return hash_to_point(_LABEL_H)


@functools.cache
def vector_generators(n: int) -> tuple[bytes, ...]:
    """``G_i = from_hash(SHA-512("marginproof/v1/pedersen/G" || u32be(i)))``, i < n."""
    return tuple(hash_to_point(_LABEL_G + i.to_bytes(4, "big")) for i in range(n))


@functools.cache
def generator_multiples(n: int, base: int) -> tuple[tuple[bytes, ...], ...]:
    """``(j * G_i for j in 0..base-1)`` per generator: digit vectors cost one add per digit."""
    out = []
    for g in vector_generators(n):
        row = [IDENTITY, g]
        for _ in range(2, base):
            row.append(add(row[-1], g))
        out.append(tuple(row[:base]))
    return tuple(out)


def commit(value: int, blind: int) -> bytes:
    """Pedersen commitment ``value * G + blind * H``."""
    return add(base_mul(value), mul(blind, generator_h()))


def challenge(context: bytes, *parts: bytes) -> int:
    """Fiat-Shamir scalar: SHA-512 over the context and length-prefixed parts, mod L."""
    h = hashlib.sha512()
    h.update(len(context).to_bytes(4, "big"))
    h.update(context)
    for p in parts:
        h.update(len(p).to_bytes(4, "big"))
        h.update(p)
    return int.from_bytes(h.digest(), "little") % L


class NonceStream:
    """Deterministic prover randomness: ``SHA-512(seed || u64be(counter)) mod L``.

    The seed is keyed by a secret the auditor also holds (EdDSA-style derived nonces) and by
    the full statement, so a replay reproduces the proofs byte for byte and two different
    statements never share a nonce.
    """

    def __init__(self, seed: bytes) -> None:
        if len(seed) < 32:
            raise InputError("nonce_seed", "must be at least 32 bytes")
        self._seed = seed
        self._i = 0

    def next(self) -> int:
        self._i += 1
        d = hashlib.sha512(self._seed + self._i.to_bytes(8, "big")).digest()
        return int.from_bytes(d, "little") % L
