"""Stable account partitioning: the same account lands on the same engine process everywhere.

Python's ``hash()`` of a string changes with ``PYTHONHASHSEED``; SHA-256 does not.
"""

from __future__ import annotations

import hashlib


def partition_of(account_id: str, n_partitions: int) -> int:
    """Partition index in ``[0, n_partitions)`` of ``account_id`` (first 8 bytes of SHA-256)."""
    if n_partitions < 1:
        raise ValueError("n_partitions must be >= 1")
    digest = hashlib.sha256(account_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n_partitions
