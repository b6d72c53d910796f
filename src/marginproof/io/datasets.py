"""Typed, validated readers for the shipped market data in ``data/`` (see ``data/README.md``).

Every reader checks the columns it needs, parses timestamps as UTC, rejects non-finite or
non-positive prices (naming file, column and first bad row) and returns rows sorted by time.
Gaps are never filled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from marginproof.config.params import repo_root
from marginproof.errors import InputError

SPOT_HOURLY = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
OPTIONS_FILE = "options/deribit_btc_options_eod_optionsdx_2021_2022_subset.csv.gz"


def data_dir() -> Path:
    """The shipped data directory (``data/`` in the checkout)."""
    return repo_root() / "data"


def _read(rel: str, time_cols: Sequence[str], required: Iterable[str],
          positive: Iterable[str] = (), root: Path | None = None) -> pd.DataFrame:
    path = (root or data_dir()) / rel
    if not path.exists():
        raise InputError(str(path), "data file not found")
    try:
        df = pd.read_csv(path)
    except Exception as exc:  # pandas raises many types for malformed files
        raise InputError(str(path), f"malformed CSV: {exc}") from exc
    missing = [c for c in (*time_cols, *required) if c not in df.columns]
    if missing:
        raise InputError(str(path), f"missing columns {missing}")
    for c in time_cols:
        try:
            df[c] = pd.to_datetime(df[c], utc=True)
        except Exception as exc:
            raise InputError(f"{path.name}:{c}", f"unparseable timestamp: {exc}") from exc
    for c in positive:
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
        bad = ~(np.isfinite(v) & (v > 0))
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"{path.name}:{c}", f"non-positive or non-finite value at row {i}")
    if time_cols:
        df = df.sort_values(list(time_cols), kind="stable").reset_index(drop=True)
    return df


def load_spot_daily(symbols: Sequence[str] | None = None, root: Path | None = None
                    ) -> pd.DataFrame:
    """Binance daily OHLCV (USDT), columns ``date, symbol, open, high, low, close, ...``."""
    df = _read("spot/binance_spot_1d_from_1h.csv.gz", ["date"],
               ["symbol", "open", "high", "low", "close", "volume_base", "n_hourly_bars"],
               ["open", "high", "low", "close"], root)
    if symbols is not None:
        unknown = set(symbols) - set(df["symbol"].unique())
        if unknown:
            raise InputError("symbols", f"not in the daily file: {sorted(unknown)}")
        df = df[df["symbol"].isin(symbols)].reset_index(drop=True)
    return df


def daily_closes(symbols: Sequence[str], root: Path | None = None) -> pd.DataFrame:
    """Wide table of daily closes, index UTC date, one column per symbol (NaN = no bar)."""
    df = load_spot_daily(symbols, root)
    return df.pivot(index="date", columns="symbol", values="close")[list(symbols)]


def daily_log_returns(symbols: Sequence[str], root: Path | None = None) -> pd.DataFrame:
    """Daily log returns ``ln(C_t / C_{t-1})`` on consecutive rows of each symbol."""
    closes = daily_closes(symbols, root)
    out = {}
    for s in symbols:
        c = closes[s].dropna()
        out[s] = pd.Series(np.log(c / c.shift(1)), index=c.index).iloc[1:]
    return pd.DataFrame(out)


def load_spot_hourly(symbol: str = "BTCUSDT", root: Path | None = None) -> pd.DataFrame:
    """Hourly Binance spot OHLCV for ``symbol`` (one of ``SPOT_HOURLY``)."""
    if symbol not in SPOT_HOURLY:
        raise InputError("symbol", f"no hourly file for {symbol!r}; shipped: {SPOT_HOURLY}")
    return _read(f"spot/binance_spot_1h/{symbol}_1h.csv.gz", ["open_time_utc"],
                 ["open", "high", "low", "close", "volume_base"],
                 ["open", "high", "low", "close"], root)


def load_btc_long_daily(root: Path | None = None) -> pd.DataFrame:
    """BTC/USD daily closes 2011-2025 (Bitstamp, then Coinbase)."""
    return _read("spot/btc_usd_daily_bitstamp_coinbase_2011_2025.csv.gz", ["date"],
                 ["open", "high", "low", "close", "source_exchange"],
                 ["open", "high", "low", "close"], root)


def load_funding(source: str = "binance", root: Path | None = None) -> pd.DataFrame:
    """Perp funding history; ``source`` in ``binance``, ``multi``, ``bitmex``.

    Columns always include ``funding_time_utc`` and ``funding_rate`` (decimal per interval).
    """
    if source == "binance":
        return _read("perp/binance_usdm_funding_rates.csv.gz", ["funding_time_utc"],
                     ["symbol", "funding_rate"], (), root)
    if source == "multi":
        return _read("perp/multi_exchange_funding_btc_eth_2020_2023.csv.gz",
                     ["funding_time_utc"], ["exchange", "pair", "funding_rate"], (), root)
    if source == "bitmex":
        return _read("perp/bitmex_xbtusd_funding_2016_2020.csv.gz", ["funding_time_utc"],
                     ["symbol", "funding_interval_hours", "funding_rate"], (), root)
    raise InputError("source", f"unknown funding source {source!r}")


def load_perp_mark_hourly(symbol: str = "BTCUSDT", root: Path | None = None) -> pd.DataFrame:
    """Hourly mark-price candles of the Binance USD-M perpetual (``BTCUSDT``/``ETHUSDT``)."""
    if symbol not in ("BTCUSDT", "ETHUSDT"):
        raise InputError("symbol", f"no perp mark file for {symbol!r}")
    return _read(f"perp/binance_usdm_{symbol}_1h_mark.csv.gz", ["open_time_utc"],
                 ["open", "high", "low", "close"], ["open", "high", "low", "close"], root)


def load_option_chains(root: Path | None = None) -> pd.DataFrame:
    """All shipped Deribit BTC option chains (one snapshot per ``quote_date``)."""
    return _read(OPTIONS_FILE, ["quote_time_utc", "expiry_time_utc"],
                 ["quote_date", "instrument_name", "underlying_price", "strike", "option_right",
                  "mark_iv", "expiry_unix", "quote_unixtime", "open_interest", "bid_price",
                  "ask_price", "delta", "gamma", "vega", "theta"],
                 ["underlying_price", "strike", "mark_iv"], root)


def option_chain_dates(root: Path | None = None) -> list[str]:
    """Quote dates (New York dates, ``YYYY-MM-DD``) of the shipped chains."""
    return sorted(load_option_chains(root)["quote_date"].astype(str).unique())


def option_chain(quote_date: str, root: Path | None = None) -> pd.DataFrame:
    """The chain of one quote date."""
    df = load_option_chains(root)
    sub = df[df["quote_date"].astype(str) == quote_date]
    if sub.empty:
        raise InputError("quote_date", f"no option chain for {quote_date!r}")
    return sub.reset_index(drop=True)


def load_dvol_hourly(root: Path | None = None) -> pd.DataFrame:
    """Deribit BTC DVOL hourly OHLC in percent."""
    return _read("options/deribit_btc_dvol_1h_2021_2025.csv.gz", ["time_utc"],
                 ["dvol_open", "dvol_high", "dvol_low", "dvol_close"], ["dvol_close"], root)


def load_dvol_daily(root: Path | None = None) -> pd.DataFrame:
    """Deribit BTC DVOL daily close in percent."""
    return _read("options/deribit_btc_dvol_daily_2022_2025.csv.gz", ["date"], ["dvol_close"],
                 ["dvol_close"], root)


_MICRO = "microstructure/binance_usdm_btcusdt_2024-08-08T2354_{}.csv.gz"


def load_depth_snapshot(root: Path | None = None) -> pd.DataFrame:
    """Binance BTCUSDT perp order book (1,000 levels a side): ``side, level, price, qty_btc``."""
    return _read(_MICRO.format("depth_snapshot"), [], ["side", "level", "price", "qty_btc"],
                 ["price", "qty_btc"], root)


def load_trades(root: Path | None = None) -> pd.DataFrame:
    """Trades of the 5.7-minute microstructure sample."""
    return _read(_MICRO.format("trades"), [], ["trade_time_ms", "price", "qty_btc",
                                                "buyer_is_maker"], ["price", "qty_btc"], root)


def load_bookticker(root: Path | None = None) -> pd.DataFrame:
    """Best bid/ask updates of the microstructure sample."""
    return _read(_MICRO.format("bookticker"), [], ["txn_time_ms", "bid_price", "bid_qty_btc",
                                                    "ask_price", "ask_qty_btc"],
                 ["bid_price", "ask_price"], root)


def chain_timestamp(chain: pd.DataFrame) -> datetime:
    """Snapshot time of a chain (UTC)."""
    return datetime.fromtimestamp(int(chain["quote_unixtime"].iloc[0]), tz=UTC)
