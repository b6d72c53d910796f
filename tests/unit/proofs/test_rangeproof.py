"""L5 range proofs: completeness, soundness checks, batching, the bit-by-bit baseline."""

from __future__ import annotations

import dataclasses

import pytest

from marginproof.errors import InputError
from marginproof.proofs.bitrange import prove_bits, verify_bits
from marginproof.proofs.errors import VerificationError
from marginproof.proofs.group import L, NonceStream, add, commit, generator_g, sub
from marginproof.proofs.rangeproof import (
    RangeProof,
    prove_range,
    verify_range,
    verify_range_batch,
)

CTX = b"test-context"


def _proof(values, base=4, seed=b"s" * 32, ctx=CTX):
    blinds = [(i + 1) * 7919 + 123456789 for i in range(len(values))]
    coms = [commit(v, r) for v, r in zip(values, blinds, strict=True)]
    return prove_range(values, blinds, coms, ctx, NonceStream(seed), base), coms


@pytest.mark.parametrize("base", [2, 4, 16])
def test_honest_proofs_verify_at_the_range_edges(base: int) -> None:
    p, coms = _proof([0, 2**64 - 1], base)
    verify_range(p, coms, CTX)
    assert RangeProof.from_bytes(p.to_bytes()) == p
    assert len(p.to_bytes()) == RangeProof.size(base, 2)


def test_values_outside_the_range_cannot_be_proven() -> None:
    with pytest.raises(InputError):
        _proof([2**64])
    with pytest.raises(InputError):
        _proof([-1])


def test_a_negative_value_cannot_borrow_another_commitments_proof() -> None:
    p, coms = _proof([5, 7])
    minus_one = sub(commit(0, 99), generator_g())  # commits to L - 1, i.e. -1
    with pytest.raises(VerificationError):
        verify_range(p, [minus_one, coms[1]], CTX)


def test_the_transcript_binds_context_and_statement() -> None:
    p, coms = _proof([5, 7])
    with pytest.raises(VerificationError):
        verify_range(p, coms, b"another leaf")
    with pytest.raises(VerificationError):
        verify_range(p, [coms[1], coms[0]], CTX)
    shifted = [add(coms[0], generator_g()), coms[1]]  # value + 1
    with pytest.raises(VerificationError):
        verify_range(p, shifted, CTX)


def test_tampered_responses_fail_the_named_equation() -> None:
    p, coms = _proof([5, 7])
    f = list(p.f)
    f[3] = (f[3] + 1) % L
    with pytest.raises(VerificationError) as e:
        verify_range(dataclasses.replace(p, f=tuple(f)), coms, CTX)
    assert e.value.code == "range.digits_commitment"
    with pytest.raises(VerificationError) as e:
        verify_range(dataclasses.replace(p, z_t=(p.z_t + 1) % L), coms, CTX)
    assert e.value.code == "range.digit_range"
    with pytest.raises(VerificationError) as e:
        verify_range(dataclasses.replace(p, z_v=(p.z_v + 1) % L), coms, CTX)
    assert e.value.code == "range.value_link"


def test_decoder_rejects_non_canonical_scalars_and_points() -> None:
    p, _ = _proof([1])
    b = bytearray(p.to_bytes())
    b[-32:] = (L + 1).to_bytes(32, "little")
    with pytest.raises(VerificationError, match="non-canonical scalar"):
        RangeProof.from_bytes(bytes(b))
    b = bytearray(p.to_bytes())
    b[6:38] = bytes(32)  # identity A
    with pytest.raises(VerificationError, match="identity"):
        RangeProof.from_bytes(bytes(b))
    b[6:38] = b"\xff" * 32
    with pytest.raises(VerificationError, match="canonical"):
        RangeProof.from_bytes(bytes(b))


def test_batch_verification_accepts_honest_batches_and_names_a_bad_proof() -> None:
    items = []
    for k in range(6):
        p, coms = _proof([k * 1000, 2**63 + k], seed=bytes([k]) * 32, ctx=b"leaf%d" % k)
        items.append((p, coms, b"leaf%d" % k))
    verify_range_batch(items, b"verifier-seed-000000000000000000")
    bad = list(items)
    bad[4] = (items[4][0], items[4][1], b"leaf3")
    with pytest.raises(VerificationError) as e:
        verify_range_batch(bad, b"verifier-seed-000000000000000000")
    assert e.value.code.startswith("range[4]")


def test_bit_by_bit_baseline_verifies_and_rejects() -> None:
    c = commit(12345, 777)
    bp = prove_bits(12345, 777, c, CTX, NonceStream(b"b" * 32))
    verify_bits(bp, c, CTX)
    assert len(bp.to_bytes()) == 64 * 160
    with pytest.raises(VerificationError):
        verify_bits(bp, commit(12346, 777), CTX)
    bits = list(bp.bits)
    c0, a, b1, z0, z1 = bits[5]
    bits[5] = (c0, (a + 1) % L, b1, z0, z1)
    with pytest.raises(VerificationError, match="bit\\[5\\]"):
        verify_bits(dataclasses.replace(bp, bits=tuple(bits)), c, CTX)
