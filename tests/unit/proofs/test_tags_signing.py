"""Account tags (salted, unlinkable) and context-separated Ed25519 signatures."""

from __future__ import annotations

import hmac

import pytest

from marginproof.errors import InputError
from marginproof.proofs.errors import VerificationError
from marginproof.proofs.signing import (
    CTX_EPOCH_RECORD,
    CTX_LOG_ENTRY,
    CTX_STH,
    SigningKey,
    verify_signature,
)
from marginproof.proofs.tags import (
    account_nonce,
    account_tags,
    epoch_secret,
    id_bytes,
    tag_from_nonce,
)


def test_fast_tagging_equals_the_hmac_definition() -> None:
    es = epoch_secret(b"m" * 32, 3)
    assert es == hmac.digest(b"m" * 32, b"epoch" + (3).to_bytes(8, "big"), "sha256")
    ids = ["alice", "bob", "é-üser", "x" * 256]
    for aid, (nonce, tag) in zip(ids, account_tags(es, ids), strict=True):
        assert nonce == account_nonce(es, aid)
        assert tag == tag_from_nonce(nonce, aid)


def test_tags_change_every_epoch() -> None:
    t1 = account_tags(epoch_secret(b"m" * 32, 1), ["alice"])[0][1]
    t2 = account_tags(epoch_secret(b"m" * 32, 2), ["alice"])[0][1]
    assert t1 != t2


@pytest.mark.parametrize("bad", ["", "a\nb", "x" * 257, "tab\there"])
def test_account_ids_are_validated(bad: str) -> None:
    with pytest.raises(InputError):
        id_bytes(bad)


def test_signatures_are_bound_to_their_context() -> None:
    k = SigningKey(bytes(32))
    sig = k.sign(CTX_EPOCH_RECORD, b"msg")
    verify_signature(k.public_raw, CTX_EPOCH_RECORD, b"msg", sig, "c")
    for ctx in (CTX_STH, CTX_LOG_ENTRY):
        with pytest.raises(VerificationError):
            verify_signature(k.public_raw, ctx, b"msg", sig, "c")
    with pytest.raises(VerificationError):
        verify_signature(k.public_raw, CTX_EPOCH_RECORD, b"msg2", sig, "c")


def test_signatures_are_deterministic() -> None:
    k = SigningKey(bytes(range(32)))
    assert k.sign(CTX_STH, b"a") == k.sign(CTX_STH, b"a")
