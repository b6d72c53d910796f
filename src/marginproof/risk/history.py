"""Market history as plain arrays (the core never reads files; the shell builds these).

A :class:`MarketHistory` holds, per underlying (``BTC``, ``ETH``, ``SOL``), daily closes and
volumes, an ATM implied-vol level series (Deribit DVOL for BTC), 8-hourly perp funding, and a
long close history for the 10-year APC floor. Dates are ``datetime64[D]`` UTC days labelling the
bar start: the close of day ``D`` is known at ``D + 1 00:00 UTC``.

:func:`asof_date` maps a market timestamp to the last complete day: everything a model uses is
dated on or before it (no look-ahead).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError

FloatArray = NDArray[np.float64]
DateArray = NDArray[np.datetime64]
DAY = np.timedelta64(1, "D")


def to_day(value: str | datetime | np.datetime64) -> np.datetime64:
    """A UTC calendar day as ``datetime64[D]`` (``'2022-05-09'``, aware datetime or datetime64)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InputError("date", "datetime must be timezone-aware (UTC)")
        value = value.astimezone(UTC).replace(tzinfo=None)
        return np.datetime64(value, "D")
    if isinstance(value, np.datetime64):
        day: np.datetime64 = value.astype("datetime64[D]")
        return day
    try:
        return np.datetime64(str(value), "D")
    except ValueError as exc:
        raise InputError("date", f"not a date: {value!r}") from exc


def asof_date(timestamp: datetime) -> np.datetime64:
    """Last UTC day whose daily close (at the next 00:00 UTC) is known at ``timestamp``."""
    if timestamp.tzinfo is None:
        raise InputError("market.timestamp", "must be timezone-aware (UTC)")
    return to_day(timestamp) - DAY


@dataclass(frozen=True)
class DailySeries:
    """A daily series, strictly increasing dates, finite values.

    Attributes
    ----------
    dates : ndarray of datetime64[D], shape (n,)
    values : ndarray of float, shape (n,)
    """

    dates: DateArray
    values: FloatArray

    def __post_init__(self) -> None:
        d = np.asarray(self.dates, dtype="datetime64[D]")
        v = np.asarray(self.values, dtype=np.float64)
        if d.shape != v.shape or d.ndim != 1:
            raise InputError("series", f"dates {d.shape} and values {v.shape} must be 1-D, equal")
        if d.size > 1 and not np.all(d[1:] > d[:-1]):
            raise InputError("series.dates", "must be strictly increasing")
        if not np.all(np.isfinite(v)):
            raise InputError("series.values", "contains NaN or infinite values")
        d = d.copy()
        v = v.copy()
        d.setflags(write=False)
        v.setflags(write=False)
        object.__setattr__(self, "dates", d)
        object.__setattr__(self, "values", v)

    def __len__(self) -> int:
        return int(self.dates.shape[0])

    def upto(self, asof: np.datetime64) -> DailySeries:
        """Rows dated on or before ``asof``."""
        n = int(np.searchsorted(self.dates, asof, side="right"))
        return DailySeries(self.dates[:n], self.values[:n])

    def log_returns(self) -> tuple[DateArray, FloatArray]:
        """``(dates[1:], ln(v[1:] / v[:-1]))`` on consecutive rows (gaps are never filled)."""
        if np.any(self.values <= 0.0):
            raise InputError("series.values", "log returns need positive values")
        return self.dates[1:], np.log(self.values[1:] / self.values[:-1])

    def value_on(self, day: np.datetime64) -> float:
        """Value dated exactly ``day`` (raises if absent)."""
        i = int(np.searchsorted(self.dates, day))
        if i >= len(self) or self.dates[i] != day:
            raise InputError("date", f"no observation on {day}")
        return float(self.values[i])


@dataclass(frozen=True)
class FundingSeries:
    """Perp funding settlements: times (datetime64[s]), rates (decimal per 8 h, + = longs pay)."""

    times: NDArray[np.datetime64]
    rates: FloatArray

    def __post_init__(self) -> None:
        t = np.asarray(self.times, dtype="datetime64[s]")
        r = np.asarray(self.rates, dtype=np.float64)
        if t.shape != r.shape or t.ndim != 1:
            raise InputError("funding", "times and rates must be 1-D of equal length")
        if not np.all(np.isfinite(r)):
            raise InputError("funding.rates", "contains NaN or infinite values")
        object.__setattr__(self, "times", t)
        object.__setattr__(self, "rates", r)

    def before(self, cutoff: np.datetime64) -> FundingSeries:
        """Settlements strictly before ``cutoff`` (a datetime64)."""
        c = np.asarray(cutoff, dtype="datetime64[s]")
        n = int(np.searchsorted(self.times, c, side="left"))
        return FundingSeries(self.times[:n], self.rates[:n])


def _frozen(m: Mapping[str, object] | None) -> Mapping[str, object]:
    return MappingProxyType(dict(m or {}))


@dataclass(frozen=True)
class MarketHistory:
    """Daily market history per underlying.

    Attributes
    ----------
    closes : Mapping[str, DailySeries]
        Underlying -> daily close in USD (Binance USDT closes, USDT treated as USD).
    volumes : Mapping[str, DailySeries]
        Underlying -> daily traded volume in coins (for ADV).
    atm_iv : Mapping[str, DailySeries]
        Series name -> ATM implied-vol level (decimal, e.g. ``BTC`` = DVOL / 100).
    funding : Mapping[str, FundingSeries]
        Underlying -> perp funding settlements.
    long_closes : Mapping[str, DailySeries]
        Underlying -> long daily close history for the 10-year floor (BTC Bitstamp/Coinbase).
    sources : Mapping[str, str]
        Provenance: what each series was read from.
    """

    closes: Mapping[str, DailySeries]
    volumes: Mapping[str, DailySeries] = field(default_factory=dict)
    atm_iv: Mapping[str, DailySeries] = field(default_factory=dict)
    funding: Mapping[str, FundingSeries] = field(default_factory=dict)
    long_closes: Mapping[str, DailySeries] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("closes", "volumes", "atm_iv", "funding", "long_closes", "sources"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        if not self.closes:
            raise InputError("history.closes", "at least one underlying is required")

    def close_series(self, underlying: str) -> DailySeries:
        try:
            return self.closes[underlying]
        except KeyError:
            raise InputError(
                "positions", f"no price history for {underlying}; history has "
                f"{', '.join(self.closes)}"
            ) from None

    def last_date(self) -> np.datetime64:
        """Latest close date over all underlyings."""
        return max(s.dates[-1] for s in self.closes.values())
