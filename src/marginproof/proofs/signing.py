"""Ed25519 signatures with context strings (``cryptography``, RFC 8032).

Every signature is over ``context || 0x00 || SHA-256(canonical bytes)`` with an ASCII context
from :data:`CONTEXTS`, so a log entry can never be replayed as an epoch record or a tree head.
``key_id = SHA-256(raw public key)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from marginproof.errors import InputError
from marginproof.proofs.encoding import sha256
from marginproof.proofs.errors import VerificationError

CTX_LOG_ENTRY = b"marginproof/v1/log-entry"
CTX_STH = b"marginproof/v1/sth"
CTX_EPOCH_RECORD = b"marginproof/v1/epoch-record"
CTX_CUSTODIAN = b"marginproof/v1/custodian"
CONTEXTS = (CTX_LOG_ENTRY, CTX_STH, CTX_EPOCH_RECORD, CTX_CUSTODIAN)


def signing_input(context: bytes, message: bytes) -> bytes:
    """``context || 0x00 || SHA-256(message)``."""
    if context not in CONTEXTS:
        raise ValueError(f"unknown signing context {context!r}")
    return context + b"\x00" + sha256(message)


def key_id(public_raw: bytes) -> str:
    """Hex ``SHA-256(raw 32-byte public key)``."""
    return sha256(public_raw).hex()


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key (32-byte seed) and its public half."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise InputError("signing_key", "an Ed25519 seed is 32 bytes")

    @property
    def _key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def public_raw(self) -> bytes:
        """Raw 32-byte public key."""
        return self._key.public_key().public_bytes(serialization.Encoding.Raw,
                                                   serialization.PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        return key_id(self.public_raw)

    def sign(self, context: bytes, message: bytes) -> bytes:
        """Deterministic 64-byte RFC 8032 signature over the context-bound digest."""
        return self._key.sign(signing_input(context, message))


def verify_signature(public_raw: bytes, context: bytes, message: bytes, sig: bytes,
                     code: str) -> None:
    """Raise :class:`VerificationError` ``code`` unless ``sig`` is valid."""
    if len(sig) != 64:
        raise VerificationError(code, f"signature must be 64 bytes, got {len(sig)}")
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(sig, signing_input(context, message))
    except (InvalidSignature, ValueError):
        raise VerificationError(code, "Ed25519 signature does not verify under the key") from None
