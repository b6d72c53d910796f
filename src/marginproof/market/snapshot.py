"""Market snapshot: everything a pricer needs at one instant, validated on construction.

Units: prices in USD per coin (``index_prices``, ``forwards``, futures ``mark_prices``); inverse
option marks in coin per contract and linear option marks in USD (Deribit convention); implied
vols annualised decimals (0.55, not 55); rates continuously compounded per year; funding rates
decimal per 8-hour interval (positive = longs pay shorts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from marginproof.errors import InputError

MAX_VOL_ANNUAL = 10.0  # 1000 % a year: anything above is a data error, not a market
PAR_ASSETS = ("USD",)  # valued at exactly 1 USD; stable coins need a price or a policy entry


def _check_price(field_name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(field_name, f"must be a number, got {value!r}") from exc
    if math.isnan(v):
        raise InputError(field_name, "is NaN")
    if not math.isfinite(v):
        raise InputError(field_name, "must be finite")
    if v <= 0.0:
        raise InputError(field_name, f"must be positive, got {v!r}")
    return v


def _check_vol(field_name: str, value: Any) -> float:
    v = _check_price(field_name, value)
    if v > MAX_VOL_ANNUAL:
        raise InputError(
            field_name, f"implied vol {v!r} is absurd (decimal per year, max {MAX_VOL_ANNUAL})"
        )
    return v


def _check_finite(field_name: str, value: Any, bound: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(field_name, f"must be a number, got {value!r}") from exc
    if not math.isfinite(v) or abs(v) > bound:
        raise InputError(field_name, f"must be finite and |x| <= {bound}, got {value!r}")
    return v


def _freeze(m: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(m))


@dataclass(frozen=True)
class MarketSnapshot:
    """Validated, immutable market data at one timestamp.

    Attributes
    ----------
    timestamp : datetime
        Market time (timezone-aware UTC).
    index_prices : Mapping[str, float]
        Underlying (``BTC``) or collateral asset -> USD index price.
    forwards : Mapping[str, Mapping[datetime, float]]
        Underlying -> expiry -> forward price (USD).
    mark_prices : Mapping[str, float]
        Instrument name -> mark (USD for delta-one and linear options, coin for inverse options).
    implied_vols : Mapping[str, float]
        Option name -> annualised implied vol (decimal).
    rates : Mapping[str, float]
        Underlying -> continuously compounded rate used for discounting (default 0).
    funding_rates : Mapping[str, float]
        Perpetual name -> current funding rate per 8 h.
    preset_inputs : Mapping[str, Any]
        Market-level inputs only the exchange presets use (feed confidences, stable-coin
        price, per-expiry rates, fixed forward portions), validated by the presets; see
        ``docs/formats.md``. Empty by default.
    """

    timestamp: datetime
    index_prices: Mapping[str, float]
    forwards: Mapping[str, Mapping[datetime, float]] = field(default_factory=dict)
    mark_prices: Mapping[str, float] = field(default_factory=dict)
    implied_vols: Mapping[str, float] = field(default_factory=dict)
    rates: Mapping[str, float] = field(default_factory=dict)
    funding_rates: Mapping[str, float] = field(default_factory=dict)
    preset_inputs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ts = self.timestamp
        if not isinstance(ts, datetime) or ts.tzinfo is None:
            raise InputError("timestamp", "must be a timezone-aware datetime (UTC)")
        object.__setattr__(self, "timestamp", ts.astimezone(UTC))
        if not self.index_prices:
            raise InputError("index_prices", "at least one index price is required")
        idx = {str(k): _check_price(f"index_prices.{k}", v) for k, v in self.index_prices.items()}
        fwd: dict[str, Mapping[datetime, float]] = {}
        for und, curve in self.forwards.items():
            c: dict[datetime, float] = {}
            for exp, v in curve.items():
                if not isinstance(exp, datetime) or exp.tzinfo is None:
                    raise InputError(f"forwards.{und}", f"expiry {exp!r} must be aware datetime")
                c[exp.astimezone(UTC)] = _check_price(f"forwards.{und}.{exp.isoformat()}", v)
            fwd[str(und)] = _freeze(c)
        marks = {str(k): _check_price(f"mark_prices.{k}", v) for k, v in self.mark_prices.items()}
        vols = {str(k): _check_vol(f"implied_vols.{k}", v) for k, v in self.implied_vols.items()}
        rates = {str(k): _check_finite(f"rates.{k}", v, 1.0) for k, v in self.rates.items()}
        funding = {
            str(k): _check_finite(f"funding_rates.{k}", v, 0.1)
            for k, v in self.funding_rates.items()
        }
        object.__setattr__(self, "index_prices", _freeze(idx))
        object.__setattr__(self, "forwards", _freeze(fwd))
        object.__setattr__(self, "mark_prices", _freeze(marks))
        object.__setattr__(self, "implied_vols", _freeze(vols))
        object.__setattr__(self, "rates", _freeze(rates))
        object.__setattr__(self, "funding_rates", _freeze(funding))
        object.__setattr__(self, "preset_inputs", _freeze(dict(self.preset_inputs)))

    # -- lookups ---------------------------------------------------------------------------
    def index(self, asset: str, field_name: str | None = None) -> float:
        """USD index price of ``asset``; ``USD`` is 1 by definition."""
        if asset in PAR_ASSETS:
            return 1.0
        try:
            return self.index_prices[asset]
        except KeyError:
            raise InputError(
                field_name or f"index_prices.{asset}", f"no index price for {asset}"
            ) from None

    def rate(self, underlying: str) -> float:
        """Discount rate for ``underlying`` (0 when none is given, Deribit's convention)."""
        return self.rates.get(underlying, 0.0)

    def forward(self, underlying: str, expiry: datetime) -> float:
        """Forward for ``expiry``: quoted if present, else index grown at the rate.

        The fallback ``S * exp(r T)`` with ``r`` from ``rates`` (default 0) is the cost-of-carry
        forward; quote forwards explicitly to capture the basis.
        """
        curve = self.forwards.get(underlying)
        if curve is not None and expiry in curve:
            return curve[expiry]
        spot = self.index(underlying)
        return spot * math.exp(self.rate(underlying) * self.year_fraction(expiry))

    def year_fraction(self, expiry: datetime) -> float:
        """ACT/365 years from the snapshot to ``expiry`` (negative if past)."""
        return (expiry - self.timestamp).total_seconds() / (365.0 * 86400.0)

    def with_index(self, **prices: float) -> MarketSnapshot:
        """Copy with some index prices replaced (for what-if and tests)."""
        idx = dict(self.index_prices)
        idx.update(prices)
        return MarketSnapshot(
            self.timestamp, idx, self.forwards, self.mark_prices, self.implied_vols,
            self.rates, self.funding_rates, self.preset_inputs,
        )
