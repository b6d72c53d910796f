"""Bit-by-bit range proof (spec section 8): the baseline the digit proofs are measured against.

For ``C = v G + r H``: bit commitments ``C_i = b_i G + r_i H`` with ``sum 2^i r_i = r`` (so
``sum 2^i C_i = C``), and per bit a CDS OR proof that ``C_i`` or ``C_i - G`` is a multiple of
``H``: ``(C_i, c0, c1, z0, z1)``, 160 B per bit. The verifier recomputes
``A_j = z_j H - c_j (C_i - j G)`` and checks ``c0 + c1 = H(ctx, C, all C_i, i, A_0, A_1)`` (the
transcript binds the context, the commitment and every bit commitment).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from marginproof.errors import InputError
from marginproof.proofs.errors import VerificationError
from marginproof.proofs.group import (
    IDENTITY,
    L,
    NonceStream,
    add,
    challenge,
    generator_g,
    generator_h,
    mul,
    parse_point,
    sc,
    sub,
)

BITS = 64
_CTX = b"marginproof/v1/range/bit"


@dataclass(frozen=True)
class BitRangeProof:
    """Per bit ``(C_i, c0, c1, z0, z1)``."""

    bits: tuple[tuple[bytes, int, int, int, int], ...]

    def to_bytes(self) -> bytes:
        return b"".join(c + sc(c0) + sc(c1) + sc(z0) + sc(z1) for c, c0, c1, z0, z1 in self.bits)


def _ctx_all(context: bytes, commitment: bytes, coms: Sequence[bytes]) -> list[bytes]:
    return [context, commitment, *coms]


def prove_bits(value: int, blind: int, commitment: bytes, context: bytes,
               nonces: NonceStream) -> BitRangeProof:
    """Prove ``0 <= value < 2^64`` bit by bit."""
    if not 0 <= value < 2**BITS:
        raise InputError("range.value", f"{value} is outside [0, 2^64)")
    g, h = generator_g(), generator_h()
    r = [nonces.next() for _ in range(BITS - 1)]
    partial = sum((1 << i) * ri for i, ri in enumerate(r)) % L
    r.append((blind - partial) * pow(1 << (BITS - 1), -1, L) % L)
    b = [(value >> i) & 1 for i in range(BITS)]
    coms = [add(g, mul(ri, h)) if bi else mul(ri, h) for bi, ri in zip(b, r, strict=True)]
    ctx = _ctx_all(context, commitment, coms)
    out = []
    for i in range(BITS):
        real = b[i]
        k = nonces.next()
        c_sim, z_sim = nonces.next(), nonces.next()
        a = [IDENTITY, IDENTITY]
        a[real] = mul(k, h)
        target = sub(coms[i], g) if 1 - real else coms[i]
        a[1 - real] = sub(mul(z_sim, h), mul(c_sim, target))
        c = challenge(_CTX, *ctx, struct.pack(">I", i), a[0], a[1])
        c_real = (c - c_sim) % L
        z_real = (k + c_real * r[i]) % L
        cs = [0, 0]
        zs = [0, 0]
        cs[real], zs[real] = c_real, z_real
        cs[1 - real], zs[1 - real] = c_sim, z_sim
        out.append((coms[i], cs[0], cs[1], zs[0], zs[1]))
    return BitRangeProof(tuple(out))


def verify_bits(proof: BitRangeProof, commitment: bytes, context: bytes,
                code: str = "bitrange") -> None:
    """Check the recomposition and every bit's OR proof."""
    if len(proof.bits) != BITS:
        raise VerificationError(f"{code}.encoding", f"expected {BITS} bits")
    g, h = generator_g(), generator_h()
    coms = [parse_point(c, f"{code}.bit[{i}]", allow_identity=False)
            for i, (c, *_rest) in enumerate(proof.bits)]
    acc = IDENTITY
    for c in reversed(coms):
        acc = add(add(acc, acc), c)
    if acc != commitment:
        raise VerificationError(f"{code}.recompose", "bit commitments do not sum to C")
    ctx = _ctx_all(context, commitment, coms)
    for i, (c, c0, c1, z0, z1) in enumerate(proof.bits):
        if max(c0, c1, z0, z1) >= L:
            raise VerificationError(f"{code}.bit[{i}]", "non-canonical scalar")
        a0 = sub(mul(z0, h), mul(c0, c))
        a1 = sub(mul(z1, h), mul(c1, sub(c, g)))
        if (c0 + c1) % L != challenge(_CTX, *ctx, struct.pack(">I", i), a0, a1):
            raise VerificationError(f"{code}.bit[{i}]", "OR proof does not verify (not a bit)")
