"""Market paths for backtests and replays: closes and an ATM implied-vol level per underlying.

A :class:`MarketPath` is a grid of times (UTC days for the backtest, hours for the stress
replays) by underlyings, with the close price (USD) and the ATM implied vol (annual decimal)
known at the end of each bar. Row ``i`` is known at :meth:`MarketPath.known_at` ``(i)`` (bar start +
bar length); a snapshot of row ``i`` carries that timestamp, so a history-driven model asked for
its margin sees only data dated on or before the bar (no look-ahead).

**Implied-vol proxy** (documented in ``docs/backtesting.md``). Option books over 2018-2026 need
an implied vol every day but the shipped chains cover 12 dates only. The ATM level is

* BTC: Deribit DVOL / 100 where it exists (2021-03-24 .. 2025-11-12; last hourly close of the day);
* ETH, SOL where DVOL exists: DVOL times the ratio of the coin's annualised EWMA vol to
  BTC's (slow EWMA, lambda 0.99): no ETH or SOL implied-vol index is shipped, so BTC DVOL is
  the common implied-vol factor (the models' ``[iv] series`` map ETH and SOL to it too) and
  the ratio sets each coin's level;
* otherwise the proxy ``iv_ratio * s_ref^(1 - p) * s^p`` with ``s = sqrt(365) sigma_next``, the
  causal RiskMetrics EWMA (lambda 0.94) one-day vol forecast after the day's return,
  annualised. ``IV_RATIO = 1.19`` is the median of DVOL / s of BTC over the 1,667 days where
  both exist, ``S_REF = 0.51`` the median of s on those days, and ``p = 0.77`` the ratio of the
  std of DVOL log changes to that of s (``risk/implied.py``: the models' IV proxy moves
  ``0.77 x`` the EWMA vol's log changes, so the path's proxy IV moves the same way). Measured
  once and fixed here so that no backtest date depends on later data.

**Smiles** (:class:`SmileBook`). Where a shipped option chain exists (BTC, 12 quote dates in
2021-06/07 and 2022-01..04), an option's vol is the ATM level times the chain's smile shape:
``vol(K, T) = atm * sigma_c(k, T) / sigma_c(0, 30 d)`` with ``sigma_c`` the chain's per-expiry SVI
fits interpolated linearly in total variance between expiries and ``k = ln(K / S)``
(sticky moneyness: the shape and the term structure are the chain's, the level is the ATM
series'). A chain is used from its quote day up to ``max_age_days`` later; other days (and
ETH, SOL, which have no shipped chain) have a flat smile at the ATM level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError
from marginproof.market.snapshot import MarketSnapshot
from marginproof.risk.ewma import N_INIT, RISKMETRICS_LAMBDA, ewma_sigma
from marginproof.risk.implied import DEFAULT_PROXY_SCALE

FloatArray = NDArray[np.float64]

IV_RATIO = 1.19
S_REF = 0.51
PROXY_POWER = DEFAULT_PROXY_SCALE
IV_FLOOR = 0.05  # an ATM vol below 5 % a year is a data error for crypto; floor the proxy
RATIO_LAMBDA = 0.99  # EWMA decay of the coin/BTC vol ratio that scales DVOL for ETH and SOL


def annual_ewma_vol(closes: FloatArray, lam: float = RISKMETRICS_LAMBDA,
                    periods_per_year: float = 365.0, n_init: int = N_INIT) -> FloatArray:
    """``sqrt(periods_per_year) * sigma_next`` per row, causal, shape (n,) (NaN before the seed)."""
    c = np.asarray(closes, dtype=np.float64)
    out = np.full(c.shape[0], np.nan)
    ok = np.flatnonzero(np.isfinite(c) & (c > 0.0))
    if ok.shape[0] < n_init + 1:
        return out
    r = np.log(c[ok[1:]] / c[ok[:-1]])
    sig = ewma_sigma(r, lam, n_init)[1:]  # sigma_next after each return
    rows = ok[1:]
    out[rows[n_init - 1:]] = np.sqrt(periods_per_year) * sig[n_init - 1:]
    return out


def iv_proxy(closes: FloatArray, lam: float = RISKMETRICS_LAMBDA, ratio: float = IV_RATIO,
             periods_per_year: float = 365.0, n_init: int = N_INIT,
             power: float = PROXY_POWER, s_ref: float = S_REF) -> FloatArray:
    """Causal EWMA implied-vol proxy of one close series, shape (n,) (NaN before the seed).

    Returns on consecutive non-missing rows (gaps never filled); the value at row ``t`` uses
    returns up to and including row ``t`` only: ``ratio * s_ref^(1-p) * s^p`` with
    ``s = sqrt(periods_per_year) * sigma_next`` (``p = 1``: ``ratio * s``). The EWMA seed is
    the mean of the first ``n_init`` squared returns, so rows before the ``n_init``-th return
    are NaN.
    """
    sv = annual_ewma_vol(closes, lam, periods_per_year, n_init)
    with np.errstate(invalid="ignore"):
        vals = ratio * s_ref ** (1.0 - power) * sv ** power
    return np.asarray(np.where(np.isfinite(vals), np.maximum(vals, IV_FLOOR), np.nan),
                      dtype=np.float64)


SECONDS_PER_YEAR = 365.0 * 86400.0
ATM_TENOR_YEARS = 30.0 / 365.0  # the ATM series (DVOL, proxy) is a 30-day vol
RATIO_BOUNDS = (0.4, 4.0)       # clip of the smile ratio far outside the fitted range


@dataclass(frozen=True)
class SmileSurface:
    """The smile shape of one option chain: raw-SVI slices per expiry.

    Attributes
    ----------
    quote_day : numpy.datetime64
        UTC day of the quote (the chain is known after its quote time, within that day).
    t_years : ndarray, shape (n_expiries,)
        Increasing times to expiry at the quote.
    svi : ndarray, shape (n_expiries, 5)
        Raw SVI ``(a, b, rho, m, sigma)`` of each slice (total variance in ``k = ln(K/F)``).
    """

    quote_day: np.datetime64
    t_years: FloatArray
    svi: FloatArray

    def total_variance(self, k: FloatArray, t: FloatArray) -> FloatArray:
        """``w(k, T)``: slices interpolated linearly in ``T``, flat vol outside, shape of ``k``."""
        k = np.asarray(k, dtype=np.float64)
        t = np.asarray(t, dtype=np.float64)
        a, b, rho, m, sig = (self.svi[:, j][:, None] for j in range(5))
        x = k[None, :] - m
        w = np.maximum(a + b * (rho * x + np.sqrt(x * x + sig * sig)), 1e-10)  # (n_exp, n)
        ts = self.t_years
        j = np.clip(np.searchsorted(ts, t), 1, ts.shape[0] - 1) if ts.shape[0] > 1 else (
            np.zeros(t.shape, np.int64))
        cols = np.arange(k.shape[0])
        if ts.shape[0] == 1:
            return np.asarray(w[0] * t / ts[0], dtype=np.float64)
        w0, w1 = w[j - 1, cols], w[j, cols]
        t0, t1 = ts[j - 1], ts[j]
        inner = w0 + (t - t0) / (t1 - t0) * (w1 - w0)
        before = w[0] * t / ts[0]
        after = w[-1] * t / ts[-1]
        out = np.where(t < ts[0], before, np.where(t > ts[-1], after, inner))
        return np.asarray(np.maximum(out, 1e-10), dtype=np.float64)

    def ratio(self, k: FloatArray, t: FloatArray) -> FloatArray:
        """``sigma(k, T) / sigma(0, 30 d)``, shape of ``k`` (clipped to ``RATIO_BOUNDS``)."""
        t = np.maximum(np.asarray(t, dtype=np.float64), 1.0 / 365.0)
        vol = np.sqrt(self.total_variance(k, t) / t)
        atm = float(np.sqrt(self.total_variance(np.zeros(1), np.array([ATM_TENOR_YEARS]))[0]
                            / ATM_TENOR_YEARS))
        return np.asarray(np.clip(vol / atm, *RATIO_BOUNDS), dtype=np.float64)


@dataclass(frozen=True)
class SmileBook:
    """Chain smiles per underlying, each used from its quote day for ``max_age_days``."""

    surfaces: Mapping[str, tuple[SmileSurface, ...]] = field(default_factory=dict)
    max_age_days: int = 16

    def at(self, underlying: str, day: np.datetime64) -> SmileSurface | None:
        """The latest surface quoted on or before ``day`` and at most ``max_age_days`` old."""
        best = None
        d = np.asarray(day).astype("datetime64[D]")
        for s in self.surfaces.get(underlying, ()):
            age = int((d - s.quote_day).astype(int))
            if 0 <= age <= self.max_age_days and (best is None or s.quote_day > best.quote_day):
                best = s
        return best


@dataclass(frozen=True)
class MarketPath:
    """Closes and ATM vols on a regular time grid.

    Attributes
    ----------
    times : ndarray of datetime64[s], shape (n,)
        Bar starts (UTC), strictly increasing, regular step ``bar``.
    bar : numpy.timedelta64
        Bar length (1 day or 1 hour).
    underlyings : tuple of str
    closes : ndarray, shape (n, n_underlyings)
        Close in USD; NaN where the bar is missing.
    iv : ndarray, shape (n, n_underlyings)
        ATM implied vol, annual decimal; NaN where unknown.
    iv_is_proxy : ndarray of bool, shape (n, n_underlyings)
        True where ``iv`` is the EWMA proxy rather than an implied-vol index.
    smiles : SmileBook, optional
        Chain smile shapes (see module docstring); none: flat smiles.
    """

    times: NDArray[np.datetime64]
    bar: np.timedelta64
    underlyings: tuple[str, ...]
    closes: FloatArray
    iv: FloatArray
    iv_is_proxy: NDArray[np.bool_]
    smiles: SmileBook | None = None

    def __post_init__(self) -> None:
        t = np.asarray(self.times, dtype="datetime64[s]")
        n, u = t.shape[0], len(self.underlyings)
        for name in ("closes", "iv", "iv_is_proxy"):
            a = np.asarray(getattr(self, name))
            if a.shape != (n, u):
                raise InputError(f"path.{name}", f"shape {a.shape}, expected {(n, u)}")
        if n > 1 and not np.all(np.diff(t) == self.bar):
            raise InputError("path.times", "must be a regular grid with step `bar`")
        object.__setattr__(self, "times", t)

    def __len__(self) -> int:
        return int(self.times.shape[0])

    def col(self, underlying: str) -> int:
        try:
            return self.underlyings.index(underlying)
        except ValueError:
            raise InputError("underlying", f"{underlying!r} not in path "
                             f"{self.underlyings}") from None

    def upto(self, i: int) -> MarketPath:
        """Rows ``0..i`` (everything known at :meth:`known_at` ``(i)``)."""
        s = slice(0, int(i) + 1)
        return MarketPath(self.times[s], self.bar, self.underlyings, self.closes[s],
                          self.iv[s], self.iv_is_proxy[s], self.smiles)

    def window(self, start: int, stop: int) -> MarketPath:
        """Rows ``start..stop-1``."""
        s = slice(int(start), int(stop))
        return MarketPath(self.times[s], self.bar, self.underlyings, self.closes[s],
                          self.iv[s], self.iv_is_proxy[s], self.smiles)

    def smile_surface(self, i: int, col: int, fallback_row: int | None = None
                      ) -> SmileSurface | None:
        """Chain surface in force at row ``i`` for underlying column ``col`` (or, when none
        is, the one in force at ``fallback_row``: a book margined under a smile is settled
        under the same chain)."""
        if self.smiles is None:
            return None
        u = self.underlyings[int(col)]
        s = self.smiles.at(u, np.datetime64(self.times[int(i)], "D"))
        if s is None and fallback_row is not None:
            s = self.smiles.at(u, np.datetime64(self.times[int(fallback_row)], "D"))
        return s

    def option_vols(self, i: int, und_col: NDArray[np.int64], strike: FloatArray,
                    expiry: NDArray[np.datetime64], fallback_row: int | None = None
                    ) -> FloatArray:
        """Implied vol of options at the close of row ``i``, shape (n,).

        The ATM level of each option's underlying times the chain smile ratio where a chain is
        in force (module docstring), else the ATM level (flat smile).
        """
        cols = np.asarray(und_col, dtype=np.int64)
        out = np.array(self.iv[int(i), cols], dtype=np.float64)
        if self.smiles is None or out.shape[0] == 0:
            return out
        now = np.datetime64(self.known_at(i).replace(tzinfo=None), "s")
        t = (np.asarray(expiry, dtype="datetime64[s]") - now).astype(np.float64) / SECONDS_PER_YEAR
        for c in np.unique(cols):
            surf = self.smile_surface(i, int(c), fallback_row)
            if surf is None:
                continue
            m = cols == c
            s0 = float(self.closes[int(i), int(c)])
            k = np.log(np.asarray(strike, dtype=np.float64)[m] / s0)
            out[m] = out[m] * surf.ratio(k, t[m])
        return out

    def index_of(self, when: str | datetime | np.datetime64) -> int:
        """Row whose bar starts at ``when`` (a day for daily paths)."""
        if isinstance(when, datetime):
            w = np.datetime64(when.astimezone(UTC).replace(tzinfo=None), "s")
        else:
            w = np.datetime64(str(when), "s") if isinstance(when, str) else when.astype(
                "datetime64[s]")
        i = int(np.searchsorted(self.times, w))
        if i >= len(self) or self.times[i] != w:
            raise InputError("date", f"{when} is not on the path "
                             f"({self.times[0]} .. {self.times[-1]})")
        return i

    def known_at(self, i: int) -> datetime:
        """Time the bar ``i`` close is known: bar start + bar length (UTC, aware)."""
        return to_datetime(self.times[int(i)] + self.bar)

    def available(self, i: int, underlyings: Sequence[str]) -> bool:
        """Close and vol known for every one of ``underlyings`` at row ``i``."""
        cols = [self.col(u) for u in underlyings]
        return bool(np.all(np.isfinite(self.closes[i, cols])) and
                    np.all(np.isfinite(self.iv[i, cols])))

    def snapshot(self, i: int, option_vols: Sequence[tuple[str, str]] = (),
                 underlyings: Sequence[str] | None = None,
                 expiries: Sequence[tuple[str, datetime]] = (),
                 perps: Sequence[tuple[str, str]] = (),
                 implied_vols: Mapping[str, float] | None = None) -> MarketSnapshot:
        """Market snapshot at the close of row ``i``.

        Parameters
        ----------
        i : int
        option_vols : sequence of (option name, underlying)
            Options that get the flat ATM vol of their underlying.
        underlyings : sequence of str, optional
            Index prices to include (default: every underlying with a close at ``i``).
        expiries : sequence of (underlying, expiry)
            Expiries that get an explicit forward quote equal to the close (rate 0, no basis:
            the same forward the models would derive; presets that need quoted forwards get it).
        perps : sequence of (perpetual name, underlying)
            Perpetuals that get an explicit mark equal to the close.
        implied_vols : mapping of option name to vol, optional
            Explicit vols (smile vols of :meth:`option_vols`); they override ``option_vols``.
        """
        unds = self.underlyings if underlyings is None else tuple(underlyings)
        idx = {}
        for u in unds:
            v = float(self.closes[i, self.col(u)])
            if np.isfinite(v):
                idx[u] = v
        vols = {}
        for name, u in option_vols:
            v = float(self.iv[i, self.col(u)])
            if not np.isfinite(v):
                raise InputError("path.iv", f"no implied vol for {u} at {self.times[i]}")
            vols[name] = v
        for name, v in (implied_vols or {}).items():
            if not np.isfinite(v) or v <= 0.0:
                raise InputError(f"implied_vols.{name}", f"bad implied vol {v!r}")
            vols[name] = float(v)
        fwd: dict[str, dict[datetime, float]] = {}
        for u, exp in expiries:
            fwd.setdefault(u, {})[exp] = idx[u]
        marks = {name: idx[u] for name, u in perps}
        return MarketSnapshot(self.known_at(i), idx, forwards=fwd, mark_prices=marks,
                              implied_vols=vols)


def daily_times(first: str, n: int) -> NDArray[np.datetime64]:
    """``n`` consecutive UTC days from ``first`` as datetime64[s]."""
    return (np.datetime64(first, "D") + np.arange(n)).astype("datetime64[s]")


def as_day(t: np.datetime64) -> str:
    """``YYYY-MM-DD`` of a datetime64."""
    return str(t.astype("datetime64[D]"))


def to_datetime(t: np.datetime64) -> datetime:
    """Aware UTC datetime of a datetime64."""
    secs = int(t.astype("datetime64[s]").astype(np.int64))
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=secs)


def add_days(t: datetime, days: float) -> datetime:
    return t + timedelta(days=days)
