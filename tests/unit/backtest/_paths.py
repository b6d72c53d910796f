"""Synthetic market paths for the backtest and stress tests (seeded, no files)."""

from __future__ import annotations

import numpy as np

from marginproof.backtest.market import MarketPath, daily_times, iv_proxy


def synthetic_path(n_days: int = 420, seed: int = 1, underlyings: tuple[str, ...] = ("BTC", "ETH"),
                   vol_daily: float = 0.03) -> MarketPath:
    """Student-t(4) daily log returns with a vol regime switch half way, EWMA-proxy IV."""
    rng = np.random.default_rng(seed)
    n_u = len(underlyings)
    vol = np.where(np.arange(n_days) < n_days // 2, vol_daily, 2 * vol_daily)
    z = rng.standard_t(4, size=(n_days, n_u)) / np.sqrt(2.0)
    common = rng.standard_t(4, size=(n_days, 1)) / np.sqrt(2.0)
    r = vol[:, None] * (0.6 * common + 0.8 * z)
    start = np.array([30_000.0, 2_000.0, 100.0][:n_u])
    closes = start[None, :] * np.exp(np.cumsum(r, axis=0))
    iv = np.column_stack([iv_proxy(closes[:, j]) for j in range(n_u)])
    return MarketPath(daily_times("2021-01-01", n_days), np.timedelta64(1, "D"), underlyings,
                      closes, iv, np.ones_like(iv, dtype=bool))
