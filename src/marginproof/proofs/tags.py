"""Account tags: per-epoch, salted, unlinkable identifiers of leaves (spec section 4).

``epoch_secret = HMAC-SHA256(master_secret, "epoch" || u64be(epoch))``;
``nonce = HMAC-SHA256(epoch_secret, "acct" || id)``;
``tag = SHA-256(0x13 || nonce || u32be(len(id)) || id)``. The user receives ``nonce`` privately
with their proof; without it a tag cannot be linked to an id, and tags change every epoch.
Padding leaves use ``SHA-256(0x12 || pad_secret || u64be(j))`` with
``pad_secret = HMAC-SHA256(epoch_secret, "pad")``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

from marginproof.errors import InputError
from marginproof.proofs.encoding import PREFIX_ACCOUNT, PREFIX_PAD, sha256, u32be, u64be

MAX_ID_BYTES = 256
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def epoch_secret(master_secret: bytes, epoch: int) -> bytes:
    """Per-epoch secret from the venue's master secret."""
    if len(master_secret) < 32:
        raise InputError("master_secret", "must be at least 32 bytes")
    return hmac.digest(master_secret, b"epoch" + u64be(epoch), "sha256")


def pad_secret(ep_secret: bytes) -> bytes:
    """Secret that seeds the padding-leaf tags of one epoch."""
    return hmac.digest(ep_secret, b"pad", "sha256")


def id_bytes(account_id: str, field: str = "account_id") -> bytes:
    """UTF-8 bytes of a valid account id (1..256 bytes, no control characters)."""
    if not isinstance(account_id, str) or not account_id:
        raise InputError(field, "must be a non-empty string")
    if _CONTROL.search(account_id):
        raise InputError(field, f"control characters are not allowed in {account_id!r}")
    b = account_id.encode("utf-8")
    if len(b) > MAX_ID_BYTES:
        raise InputError(field, f"longer than {MAX_ID_BYTES} bytes")
    return b


def account_nonce(ep_secret: bytes, account_id: str) -> bytes:
    """The private salt the user needs to recompute their tag."""
    return hmac.digest(ep_secret, b"acct" + id_bytes(account_id), "sha256")


def tag_from_nonce(nonce: bytes, account_id: str) -> bytes:
    """``SHA-256(0x13 || nonce || u32be(len(id)) || id)``."""
    b = id_bytes(account_id)
    return sha256(PREFIX_ACCOUNT, nonce, u32be(len(b)), b)


def account_tags(ep_secret: bytes, account_ids: Sequence[str]) -> list[tuple[bytes, bytes]]:
    """``[(nonce, tag)]`` for many ids; HMAC with precomputed pads (same bytes as ``hmac``).

    The keyed inner/outer SHA-256 states are computed once (``hmac.digest`` re-derives the pads
    on every call), and ids are validated in one pass over their concatenation.
    """
    if _CONTROL.search("".join(account_ids)) or not all(account_ids):
        for aid in account_ids:
            id_bytes(aid)  # raises, naming the first bad id
    key = ep_secret if len(ep_secret) <= 64 else hashlib.sha256(ep_secret).digest()
    key = key.ljust(64, b"\x00")
    inner0 = hashlib.sha256(bytes(k ^ 0x36 for k in key))
    outer0 = hashlib.sha256(bytes(k ^ 0x5C for k in key))
    out: list[tuple[bytes, bytes]] = []
    append = out.append
    sha = hashlib.sha256
    for aid in account_ids:
        b = aid.encode("utf-8")
        n = len(b)
        if n > MAX_ID_BYTES:
            id_bytes(aid)
        i = inner0.copy()
        i.update(b"acct" + b)
        o = outer0.copy()
        o.update(i.digest())
        nonce = o.digest()
        append((nonce, sha(PREFIX_ACCOUNT + nonce + n.to_bytes(4, "big") + b).digest()))
    return out


def tag_chunk(job: tuple[bytes, Sequence[str]]) -> bytes:
    """Concatenated tags of a chunk of ids (for process-parallel tagging)."""
    return b"".join(t for _, t in account_tags(job[0], job[1]))


def pad_tag(pad_sec: bytes, j: int) -> bytes:
    """Tag of padding leaf ``j``: looks like any other tag."""
    return sha256(PREFIX_PAD, pad_sec, u64be(j))
