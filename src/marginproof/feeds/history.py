"""Load the shipped daily history into a :class:`~marginproof.risk.history.MarketHistory`.

This is the shell side of the dynamic models: it reads ``data/`` through
:mod:`marginproof.io.datasets` and hands plain arrays to the core. Underlyings ``BTC``, ``ETH``,
``SOL`` map to the Binance ``<U>USDT`` daily closes (USDT treated as USD; they agree with
Coinbase to a median 0.06 %, ``data/README.md``).

* ``atm_iv["BTC"]``: Deribit DVOL / 100, the last hourly close of each UTC day (2021-03-24 ..
  2025-10-15), extended with the daily DVOL file (same convention) to 2025-11-12.
* ``funding``: Binance USD-M 8-hourly funding (BTC, ETH), and the BitMEX XBTUSD series
  (2016-05 .. 2020-11) under :data:`BITMEX_FUNDING`, the backfill before Binance's starts.
* ``long_closes["BTC"]``: Bitstamp/Coinbase BTC/USD 2011-08-18 .. 2025-09-24 (10-year floor).

Also convenience wrappers for one symbol and one date (``fhs_asof`` ...), used by the CLI and
by reference checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from pathlib import Path

import numpy as np
import pandas as pd

from marginproof.errors import InputError
from marginproof.feeds.history_cache import UNDERLYINGS
from marginproof.feeds.history_cache import shipped_history as shipped_history  # re-export
from marginproof.io import datasets
from marginproof.market.snapshot import MarketSnapshot
from marginproof.risk.ewma import N_INIT, RISKMETRICS_LAMBDA, ewma_sigma
from marginproof.risk.history import DailySeries, FundingSeries, MarketHistory, to_day
from marginproof.scenarios.fhs import DEFAULT_WINDOW, FHSEstimate, fhs_var_es

SPOT_SYMBOL = {"BTC": "BTCUSDT", "ETH": "ETHUSDT", "SOL": "SOLUSDT"}


def _series(dates: pd.Series, values: pd.Series) -> DailySeries:
    d = pd.to_datetime(dates, utc=True).dt.tz_localize(None).to_numpy().astype("datetime64[D]")
    return DailySeries(d, values.to_numpy(dtype=np.float64))


def _dvol_daily(root: Path | None) -> DailySeries:
    h = datasets.load_dvol_hourly(root)
    day = h["time_utc"].dt.floor("D")
    last = h.groupby(day)["dvol_close"].last()
    daily = datasets.load_dvol_daily(root).set_index("date")["dvol_close"]
    extra = daily[daily.index > last.index.max()]
    s = pd.concat([last, extra]).sort_index()
    return DailySeries(pd.DatetimeIndex(s.index).tz_localize(None).to_numpy()
                       .astype("datetime64[D]"),
                       s.to_numpy(dtype=np.float64) / 100.0)


def load_market_history(root: Path | None = None,
                        underlyings: Sequence[str] = UNDERLYINGS) -> MarketHistory:
    """Daily history of ``underlyings`` from the shipped data (``root`` = data directory)."""
    unknown = [u for u in underlyings if u not in SPOT_SYMBOL]
    if unknown:
        raise InputError("underlyings", f"no shipped history for {unknown}")
    spot = datasets.load_spot_daily([SPOT_SYMBOL[u] for u in underlyings], root)
    closes: dict[str, DailySeries] = {}
    volumes: dict[str, DailySeries] = {}
    for u in underlyings:
        g = spot[spot["symbol"] == SPOT_SYMBOL[u]]
        closes[u] = _series(g["date"], g["close"])
        volumes[u] = _series(g["date"], g["volume_base"])
    fund = datasets.load_funding("binance", root)
    funding: dict[str, FundingSeries] = {}
    for u in underlyings:
        g = fund[fund["symbol"] == SPOT_SYMBOL[u]]
        if len(g):
            t = g["funding_time_utc"].dt.tz_localize(None).to_numpy().astype("datetime64[s]")
            funding[u] = FundingSeries(t, g["funding_rate"].to_numpy(dtype=np.float64))
    bmx = datasets.load_funding("bitmex", root)
    if len(bmx):  # inverse XBTUSD perp, 8 h, 2016-05..2020-11: the backfill before Binance
        t = bmx["funding_time_utc"].dt.tz_localize(None).to_numpy().astype("datetime64[s]")
        funding[BITMEX_FUNDING] = FundingSeries(t, bmx["funding_rate"].to_numpy(np.float64))
    long_btc = datasets.load_btc_long_daily(root)
    atm_iv = {"BTC": _dvol_daily(root)}
    return MarketHistory(
        closes=closes, volumes=volumes, atm_iv=atm_iv, funding=funding,
        long_closes={"BTC": _series(long_btc["date"], long_btc["close"])},
        sources={
            "closes": "data/spot/binance_spot_1d_from_1h.csv.gz (close, USDT as USD)",
            "volumes": "data/spot/binance_spot_1d_from_1h.csv.gz (volume_base)",
            "atm_iv.BTC": "data/options/deribit_btc_dvol_1h_2021_2025.csv.gz (last hourly close "
                          "per UTC day) + deribit_btc_dvol_daily_2022_2025.csv.gz after it",
            "funding": "data/perp/binance_usdm_funding_rates.csv.gz",
            f"funding.{BITMEX_FUNDING}": "data/perp/bitmex_xbtusd_funding_2016_2020.csv.gz",
            "long_closes.BTC": "data/spot/btc_usd_daily_bitstamp_coinbase_2011_2025.csv.gz",
        },
    )


#: Key of the BitMEX XBTUSD funding series in ``MarketHistory.funding`` (the backfill of the
#: dynamic model's funding add-on before the Binance series starts, 2019-09-10).
BITMEX_FUNDING = "XBTUSD-bitmex"


def _returns_upto(symbol: str, date: str) -> tuple[np.ndarray, float]:
    c = datasets.daily_closes([symbol])[symbol].dropna()
    day = to_day(date)
    idx = pd.DatetimeIndex(c.index).tz_localize(None).to_numpy().astype("datetime64[D]")
    n = int(np.searchsorted(idx, day, side="right"))
    if n == 0 or idx[n - 1] != day:
        raise InputError("date", f"no {symbol} close on {date}")
    v = c.to_numpy(dtype=np.float64)[:n]
    return np.log(v[1:] / v[:-1]), float(v[-1])


def fhs_asof(symbol: str, date: str, quantity: float = 1.0, *, lam: float = RISKMETRICS_LAMBDA,
             window: int = DEFAULT_WINDOW, conf_var: float = 0.99, conf_es: float = 0.975,
             horizon_days: float = 1.0) -> FHSEstimate:
    """FHS VaR/ES of ``quantity`` coins of a Binance daily symbol (``BTCUSDT``) as of ``date``.

    Uses the returns of the shipped daily file from the symbol's first return up to and
    including ``date``, revalued at the close of ``date`` (spec section 4).
    """
    r, p = _returns_upto(symbol, date)
    return fhs_var_es(r, p, quantity, lam=lam, window=window, conf_var=conf_var,
                      conf_es=conf_es, horizon_days=horizon_days)


def ewma_sigma_next_asof(symbol: str, date: str, lam: float = RISKMETRICS_LAMBDA,
                         n_init: int = N_INIT) -> float:
    """``sigma_next(date)`` of a Binance daily symbol (forecast for the day after ``date``)."""
    r, _ = _returns_upto(symbol, date)
    return float(ewma_sigma(r, lam, n_init)[-1])


def market_on(history: MarketHistory, day: str | np.datetime64,
              underlyings: Sequence[str] | None = None) -> MarketSnapshot:
    """Market snapshot at the close of ``day`` (timestamp ``day + 1`` 00:00 UTC), index = close.

    For history-driven what-ifs and APC paths of delta-one books (no option marks).
    """
    d = to_day(day) if not isinstance(day, np.datetime64) else day.astype("datetime64[D]")
    unds = list(underlyings) if underlyings is not None else list(history.closes)
    idx = {u: history.close_series(u).value_on(d) for u in unds}
    ts = (d + np.timedelta64(1, "D")).astype("datetime64[s]").astype(object).replace(tzinfo=UTC)
    return MarketSnapshot(timestamp=ts, index_prices=idx)


def ten_year_floor_asof(date: str, price: float | None = None, conf: float = 0.99,
                        n_days: int = 3652) -> tuple[float, float]:
    """``(sigma_10y, floor VaR of one BTC long)`` as of ``date`` from the Bitstamp/Coinbase file.

    ``sigma_10y`` = sample std (ddof 1) of the last ``n_days`` daily log returns up to and
    including ``date``; the floor is ``P (1 - exp(-z_conf sigma_10y))`` with ``P`` = ``price``
    or, by default, that file's close on ``date`` (spec section 5 (c)).
    """
    from marginproof.apc.tools import floor_var_long, sigma_10y

    long = datasets.load_btc_long_daily()
    day = to_day(date)
    d = pd.DatetimeIndex(long["date"]).tz_localize(None).to_numpy().astype("datetime64[D]")
    n = int(np.searchsorted(d, day, side="right"))
    if n == 0 or d[n - 1] != day:
        raise InputError("date", f"no Bitstamp/Coinbase close on {date}")
    c = long["close"].to_numpy(dtype=np.float64)[:n]
    s = sigma_10y(np.log(c[1:] / c[:-1]), n_days)
    p = float(c[-1]) if price is None else float(price)
    return s, floor_var_long(p, s, conf)
