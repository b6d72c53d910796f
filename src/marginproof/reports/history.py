"""Build backtest and replay market paths from the shipped data (shell: reads files).

* :func:`daily_path`: UTC daily closes of ``<U>USDT`` (Binance, USDT treated as USD) on every
  calendar day of the file, with the ATM-IV level of :mod:`marginproof.backtest.market`
  (BTC: DVOL; ETH, SOL: DVOL x their vol relative to BTC's; before DVOL the EWMA proxy).
* :func:`shipped_smiles`: the smile shapes of the shipped Deribit BTC chains (SVI per expiry,
  expiries of at least 2 days) as a :class:`~marginproof.backtest.market.SmileBook`;
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

from marginproof.backtest.market import (
    IV_FLOOR,
    IV_RATIO,
    RATIO_LAMBDA,
    MarketPath,
    SmileBook,
    SmileSurface,
    annual_ewma_vol,
    iv_proxy,
)
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


MIN_SMILE_DAYS = 2.0  # shorter expiries (hours to settlement) are left out of the smile shape


@lru_cache(maxsize=2)
def shipped_smiles(root: Path | None = None, max_age_days: int = 16) -> SmileBook:
    """Smile shapes of the shipped chains (BTC): raw SVI per expiry, 4 starts each."""
    from marginproof.surfaces.chain import chain_smiles
    from marginproof.surfaces.svi import fit_svi

    chains = datasets.load_option_chains(root)
    out = []
    for d in sorted(chains["quote_date"].astype(str).unique()):
        sub = chains[chains["quote_date"].astype(str) == d]
        smiles, _ = chain_smiles(sub)
        keep = [s for s in smiles if s.t_years * 365.0 >= MIN_SMILE_DAYS]
        if not keep:
            continue
        fits = [fit_svi(s.k, s.vol, s.t_years, n_starts=4) for s in keep]
        day = np.datetime64(str(pd.Timestamp(sub["quote_time_utc"].iloc[0]).date()), "D")
        out.append(SmileSurface(day, np.array([s.t_years for s in keep]),
                                np.array([f.params.as_tuple() for f in fits])))
    return SmileBook({"BTC": tuple(out)}, max_age_days)


def daily_path(underlyings: Sequence[str] = ("BTC", "ETH", "SOL"), root: Path | None = None,
               iv_ratio: float = IV_RATIO, use_dvol: bool = True, smiles: bool = True
               ) -> MarketPath:
    """Daily :class:`MarketPath` of ``underlyings`` from the shipped data (chain smiles for
    BTC where a chain is in force, see :mod:`marginproof.backtest.market`)."""
    unknown = [u for u in underlyings if u not in SYMBOL]
    if unknown:
        raise InputError("underlyings", f"no shipped daily history for {unknown}")
    closes = datasets.daily_closes([SYMBOL[u] for u in underlyings], root)
    days = pd.date_range(closes.index.min(), closes.index.max(), freq="D")
    closes = closes.reindex(days)
    c = closes.to_numpy(dtype=np.float64)
    iv = np.full(c.shape, np.nan)
    is_proxy = np.ones(c.shape, bool)
    dvol = _dvol_daily(root).reindex(days).to_numpy(dtype=np.float64) if use_dvol else None
    btc_slow = None
    if dvol is not None and any(u not in DVOL_SERIES for u in underlyings):
        btc = datasets.daily_closes([SYMBOL["BTC"]], root)[SYMBOL["BTC"]].reindex(days)
        btc_slow = annual_ewma_vol(btc.to_numpy(dtype=np.float64), RATIO_LAMBDA)
    for j, u in enumerate(underlyings):
        iv[:, j] = iv_proxy(c[:, j], ratio=iv_ratio)
        if dvol is None:
            continue
        if u in DVOL_SERIES:
            has = np.isfinite(dvol)
            iv[has, j] = dvol[has]
            is_proxy[has, j] = False
        else:  # BTC DVOL scaled by the coin's vol relative to BTC's (module docstring)
            assert btc_slow is not None
            with np.errstate(invalid="ignore", divide="ignore"):
                lev = dvol * annual_ewma_vol(c[:, j], RATIO_LAMBDA) / btc_slow
            has = np.isfinite(lev) & (lev > 0)
            iv[has, j] = np.maximum(lev[has], IV_FLOOR)
    times = days.tz_localize(None).to_numpy().astype("datetime64[s]")
    book = shipped_smiles(root) if smiles and "BTC" in underlyings else None
    return MarketPath(times, np.timedelta64(1, "D"), tuple(underlyings), c, iv, is_proxy,
                      book)


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
    return MarketPath(times, np.timedelta64(1, "h"), tuple(underlyings), c, iv, is_proxy,
                      d.smiles)
