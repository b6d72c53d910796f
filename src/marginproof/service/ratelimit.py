"""Per-key rate limit: a token bucket per API key (in this process).

Each key may spend ``rate`` tokens a second with bursts of ``burst``; a request costs one token,
a heavy one (a what-if under a simulation model) more. An empty bucket answers 429 with
``Retry-After`` (seconds until the bucket holds the cost again). The clock is injectable so the
limiter is tested without sleeping.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets keyed by API key id."""

    def __init__(self, rate_per_s: float, burst: float,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        if not (rate_per_s > 0 and burst >= 1):
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = float(rate_per_s)
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys

    def take(self, key: str, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens of ``key``; returns 0.0 if allowed, else the seconds to wait
        (nothing is spent when refused)."""
        now = self._clock()
        cost = min(float(cost), self.burst)
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) >= self._max_keys:
                    self._buckets.clear()  # bounded memory; a reset only ever lets through
                b = self._buckets[key] = _Bucket(self.burst, now)
            b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
            b.at = now
            if b.tokens >= cost:
                b.tokens -= cost
                return 0.0
            return (cost - b.tokens) / self.rate

    @staticmethod
    def retry_after(wait_s: float) -> str:
        """``Retry-After`` header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait_s)))
