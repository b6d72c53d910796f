"""API keys: random secrets, stored as SHA-256 hashes, with scopes.

A key looks like ``mp_<key_id>_<secret>``; only ``SHA-256(key)`` is stored. The secret has 256
bits of entropy, so a fast hash is enough (slow password hashes protect *guessable* secrets).

Scopes: ``account`` (bound to one account: reads its own data, runs what-ifs for it) and
``operator`` (manages accounts, inputs, parameters and keys). A revoked key is refused at once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from marginproof.errors import InputError
from marginproof.storage.base import KeyRecord
from marginproof.storage.sql import SqlRepository

SCOPES = ("account", "operator")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a valid key."""

    key_id: str
    scope: str
    account_id: str | None
    label: str

    @property
    def is_operator(self) -> bool:
        return self.scope == "operator"

    def can_see(self, account_id: str) -> bool:
        return self.is_operator or self.account_id == account_id


def hash_key(key: str) -> str:
    """Hex SHA-256 of the full key string."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(repo: SqlRepository, scope: str, account_id: str | None, label: str,
               created_by: str, now_ms: int) -> tuple[str, KeyRecord]:
    """Create and store a key; returns ``(secret key, record)`` -- the secret is shown once."""
    if scope not in SCOPES:
        raise InputError("scope", f"must be one of {SCOPES}")
    if scope == "account" and not account_id:
        raise InputError("account_id", "an account key needs an account_id")
    if scope == "operator" and account_id:
        raise InputError("account_id", "operator keys are not bound to an account")
    key_id = secrets.token_hex(6)
    key = f"mp_{key_id}_{secrets.token_urlsafe(32)}"
    rec = KeyRecord(key_id, hash_key(key), scope, account_id, label, now_ms, created_by, None)
    repo.add_key(rec)
    return key, rec


def authenticate(repo: SqlRepository, key: str | None) -> tuple[Principal | None, str]:
    """``(principal, "")`` for a valid key, else ``(None, reason)``."""
    if not key:
        return None, "missing"
    if len(key) > 200 or not key.startswith("mp_"):
        return None, "invalid"
    rec = repo.key_by_hash(hash_key(key))
    if rec is None:
        return None, "invalid"
    if rec.revoked_at_ms is not None:
        return None, "revoked"
    return Principal(rec.key_id, rec.scope, rec.account_id, rec.label), ""
