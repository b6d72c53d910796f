"""Build backtest and replay market paths from the shipped data (shell: reads files).

* :func:`daily_path`: UTC daily closes of ``<U>USDT`` (Binance, USDT treated as USD) on every
  calendar day of the file, with the ATM-IV level of :mod:`marginproof.backtest.market`
  (BTC: DVOL, else the EWMA proxy x 1.19).
* :func:`hourly_path`: hourly closes (BTC, ETH, SOL hourly files) on a regular hourly grid
  (missing bars stay NaN); IV = the DVOL hourly close for BTC where it exists, else the daily
  IV level of the previous complete day (known at the hour, no look-ahead).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from marginproof.backtest.market import IV_RATIO, MarketPath, iv_proxy
from marginproof.errors import InputError
from marginproof.io import datasets

SYMBOL = {"BTC": "BTCUSDT", "ETH": "ETHUSDT", "SOL": "SOLUSDT", "XRP": "XRPUSDT",
          "ADA": "ADAUSDT", "DOGE": "DOGEUSDT", "LTC": "LTCUSDT", "LINK": "LINKUSDT",
          "BNB": "BNBUSDT"}
DVOL_SERIES = {"BTC"}


def _dvol_daily(root: Path | None) -> pd.Series:
    h = datasets.load_dvol_hourly(root)
    last = h.groupby(h["time_utc"].dt.floor("D"))["dvol_close"].last()
    daily = datasets.load_dvol_daily(root).set_index("date")["dvol_close"]
    extra = daily[daily.index > last.index.max()]
    out: pd.Series = pd.concat([last, extra]).sort_index() / 100.0
    return out


def daily_path(underlyings: Sequence[str] = ("BTC", "ETH", "SOL"), root: Path | None = None,
               iv_ratio: float = IV_RATIO, use_dvol: bool = True) -> MarketPath:
    """Daily :class:`MarketPath` of ``underlyings`` from the shipped data."""
    unknown = [u for u in underlyings if u not in SYMBOL]
    if unknown:
        raise InputError("underlyings", f"no shipped daily history for {unknown}")
    closes = datasets.daily_closes([SYMBOL[u] for u in underlyings], root)
    days = pd.date_range(closes.index.min(), closes.index.max(), freq="D")
    closes = closes.reindex(days)
    c = closes.to_numpy(dtype=np.float64)
    iv = np.full(c.shape, np.nan)
    is_proxy = np.ones(c.shape, bool)
    dvol = _dvol_daily(root) if use_dvol and DVOL_SERIES & set(underlyings) else None
    for j, u in enumerate(underlyings):
        iv[:, j] = iv_proxy(c[:, j], ratio=iv_ratio)
        if dvol is not None and u in DVOL_SERIES:
            d = dvol.reindex(days).to_numpy(dtype=np.float64)
            has = np.isfinite(d)
            iv[has, j] = d[has]
            is_proxy[has, j] = False
    times = days.tz_localize(None).to_numpy().astype("datetime64[s]")
    return MarketPath(times, np.timedelta64(1, "D"), tuple(underlyings), c, iv, is_proxy)


@lru_cache(maxsize=4)
def shipped_daily_path(underlyings: tuple[str, ...] = ("BTC", "ETH", "SOL")) -> MarketPath:
    """:func:`daily_path` of the shipped data, cached per process."""
    return daily_path(underlyings)


def hourly_path(underlyings: Sequence[str], start: str, end: str, root: Path | None = None,
                daily: MarketPath | None = None) -> MarketPath:
    """Hourly :class:`MarketPath` from ``start`` to ``end`` (inclusive, UTC hours)."""
    hours = pd.date_range(pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC"), freq="h")
    if len(hours) == 0:
        raise InputError("window", f"empty window {start} .. {end}")
    d = daily if daily is not None else daily_path(tuple(underlyings), root)
    c = np.full((len(hours), len(underlyings)), np.nan)
    iv = np.full(c.shape, np.nan)
    is_proxy = np.ones(c.shape, bool)
    dvol_h = None
    for j, u in enumerate(underlyings):
        if u not in datasets.SPOT_HOURLY and SYMBOL.get(u) not in datasets.SPOT_HOURLY:
            raise InputError("underlyings", f"no shipped hourly history for {u}")
        h = datasets.load_spot_hourly(SYMBOL[u], root).set_index("open_time_utc")["close"]
        c[:, j] = h.reindex(hours).to_numpy(dtype=np.float64)
        # daily IV level of the previous complete day
        day_idx = hours.floor("D").tz_localize(None) - pd.Timedelta(days=1)
        dser = pd.Series(d.iv[:, d.col(u)], index=pd.DatetimeIndex(d.times))
        iv[:, j] = dser.reindex(day_idx).to_numpy(dtype=np.float64)
        if u in DVOL_SERIES:
            if dvol_h is None:
                dv = datasets.load_dvol_hourly(root).set_index("time_utc")["dvol_close"] / 100.0
                dvol_h = dv.reindex(hours).to_numpy(dtype=np.float64)
            has = np.isfinite(dvol_h)
            iv[has, j] = dvol_h[has]
            is_proxy[has, j] = False
    times = hours.tz_localize(None).to_numpy().astype("datetime64[s]")
    return MarketPath(times, np.timedelta64(1, "h"), tuple(underlyings), c, iv, is_proxy)
