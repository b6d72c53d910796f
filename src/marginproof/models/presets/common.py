"""Helpers shared by the exchange presets: netting, instrument checks, parameters, tables.

Presets work on *net* positions: a venue holds one balance per instrument, so duplicate lines
of a portfolio are added up first (and lines netting to zero disappear).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr

from marginproof.errors import InputError, UnsupportedInstrumentError
from marginproof.instruments.contracts import Instrument
from marginproof.instruments.portfolio import Portfolio, Position
from marginproof.instruments.resolved import resolve
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.result import PortfolioGreeks, aggregate_greeks
from marginproof.pricing._numpy_kernels import MAX_TOTAL_VOL

SECONDS_PER_DAY = 86400.0
SECONDS_PER_YEAR = 365.0 * SECONDS_PER_DAY  # both venues use a 365-day year


@dataclass(frozen=True)
class NetPosition:
    """One instrument's net holding and the index of its first line in the portfolio."""

    instrument: Instrument
    quantity: float
    line: int

    @property
    def name(self) -> str:
        return self.instrument.name

    @property
    def field(self) -> str:
        return f"positions[{self.line}].instrument"


def net_positions(portfolio: Portfolio) -> list[NetPosition]:
    """Net quantities per instrument name, in first-seen order, zero nets dropped."""
    qty: dict[str, float] = {}
    first: dict[str, tuple[Instrument, int]] = {}
    for i, p in enumerate(portfolio.positions):
        q = float(p.quantity) * float(p.instrument.contract_size)
        if not math.isfinite(q):
            raise InputError(f"positions[{i}].quantity", f"must be finite, got {p.quantity!r}")
        name = p.instrument.name
        if name not in first:
            first[name] = (p.instrument, i)
            qty[name] = 0.0
        qty[name] += q
    return [NetPosition(first[n][0], q, first[n][1]) for n, q in qty.items() if q != 0.0]


def b76(forward: Any, strike: Any, t_years: Any, vol: Any, is_call: Any, discount: Any = 1.0
        ) -> NDArray[np.float64]:
    """Black-76 prices with the presets' edge rules, vectorised numpy, shape = broadcast shape.

    Same formula and edge rules as the compiled kernel and its scalar twin
    (:mod:`marginproof.pricing._black76_reference`): intrinsic when ``vol sqrt(T) = 0``, call
    ``= D F`` when ``vol sqrt(T) >= 24`` or ``K <= 0`` (put from parity, floored at 0), prices
    clamped to ``[D intrinsic, D F]`` (calls) and ``[D intrinsic, D K]`` (puts). Plain numpy
    instead of the parallel kernel: the presets price a few dozen options per call, where the
    kernel's thread start-up (milliseconds) dominates; tests compare both.
    """
    f, k, t, v, c, d = np.broadcast_arrays(
        np.asarray(forward, np.float64), np.asarray(strike, np.float64),
        np.asarray(t_years, np.float64), np.asarray(vol, np.float64),
        np.asarray(is_call, np.bool_), np.asarray(discount, np.float64))
    sd = np.where(t > 0.0, v * np.sqrt(np.maximum(t, 0.0)), 0.0)
    pos_k = k > 0.0
    normal = pos_k & (sd > 0.0) & (sd < MAX_TOTAL_VOL)
    safe_sd = np.where(normal, sd, 1.0)
    safe_k = np.where(pos_k, k, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = (np.log(f / safe_k) + 0.5 * safe_sd * safe_sd) / safe_sd
    d2 = d1 - safe_sd
    call_n = d * (f * ndtr(d1) - k * ndtr(d2))
    put_n = d * (k * ndtr(-d2) - f * ndtr(-d1))
    call_n = np.minimum(np.maximum(call_n, d * np.maximum(f - k, 0.0)), d * f)
    put_n = np.minimum(np.maximum(put_n, d * np.maximum(k - f, 0.0)), d * k)
    intrinsic_c = d * np.maximum(f - k, 0.0)
    intrinsic_p = d * np.maximum(k - f, 0.0)
    big_c = d * f
    big_p = np.maximum(d * f + d * (k - f), 0.0)
    call = np.where(~pos_k, d * f, np.where(sd <= 0.0, intrinsic_c,
                                            np.where(sd >= MAX_TOTAL_VOL, big_c, call_n)))
    put = np.where(~pos_k, 0.0, np.where(sd <= 0.0, intrinsic_p,
                                         np.where(sd >= MAX_TOTAL_VOL, big_p, put_n)))
    out: NDArray[np.float64] = np.where(c, call, put).astype(np.float64)
    return out


def b76_delta(forward: Any, strike: Any, t_years: Any, vol: Any, is_call: Any
              ) -> NDArray[np.float64]:
    """Undiscounted forward delta ``N(d1)`` (calls) or ``-N(-d1)`` (puts).

    Where the option has no time value (``T = 0``, zero vol, ``vol sqrt(T) >= 24``, ``K <= 0``)
    the delta of the intrinsic value, as :func:`marginproof.pricing.black76_greeks` reports.
    """
    f, k, t, v, c = np.broadcast_arrays(
        np.asarray(forward, np.float64), np.asarray(strike, np.float64),
        np.asarray(t_years, np.float64), np.asarray(vol, np.float64),
        np.asarray(is_call, np.bool_))
    sd = np.where(t > 0.0, v * np.sqrt(np.maximum(t, 0.0)), 0.0)
    ok = (k > 0.0) & (sd > 0.0) & (sd < MAX_TOTAL_VOL)
    safe_sd = np.where(ok, sd, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = (np.log(f / np.where(k > 0.0, k, 1.0)) + 0.5 * safe_sd * safe_sd) / safe_sd
    edge_call = np.where((k <= 0.0) | (f > k), 1.0, 0.0)  # the core greeks' edge convention
    edge_put = np.where((k > 0.0) & (f < k), -1.0, 0.0)
    call = np.where(ok, ndtr(d1), edge_call)
    put = np.where(ok, -ndtr(-d1), edge_put)
    out: NDArray[np.float64] = np.where(c, call, put).astype(np.float64)
    return out


def seconds_to_expiry(market: MarketSnapshot, expiry: datetime) -> float:
    """``max(expiry - now, 0)`` in seconds."""
    return max((expiry - market.timestamp).total_seconds(), 0.0)


def unsupported(pos: NetPosition, preset: str, why: str) -> UnsupportedInstrumentError:
    """Error naming the position's field for an instrument the preset does not cover."""
    return UnsupportedInstrumentError(pos.field, f"{preset} does not margin {pos.name}: {why}")


def require_mark(market: MarketSnapshot, name: str, preset: str) -> float:
    """Mark price of ``name`` or an error naming ``mark_prices.<name>``."""
    try:
        return float(market.mark_prices[name])
    except KeyError:
        raise InputError(f"mark_prices.{name}", f"missing: {preset} needs the mark price of "
                         f"{name} (no default)") from None


def require_vol(market: MarketSnapshot, name: str, preset: str) -> float:
    """Implied vol of option ``name`` or an error naming ``implied_vols.<name>``."""
    try:
        return float(market.implied_vols[name])
    except KeyError:
        raise InputError(f"implied_vols.{name}", f"missing: {preset} needs the implied vol of "
                         f"{name} and never infers or guesses one") from None


def quoted_forward(market: MarketSnapshot, underlying: str, expiry: datetime) -> float | None:
    """Forward of ``expiry`` if quoted (``forwards``), else ``None``."""
    curve = market.forwards.get(underlying, {})
    return float(curve[expiry]) if expiry in curve else None


def expiry_key(expiry: datetime) -> str:
    return expiry.isoformat().replace("+00:00", "Z")


# -- parameters --------------------------------------------------------------------------------
def table(params: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    """Sub-table ``path`` (dotted) of a parameter mapping, or an error naming it."""
    node: Any = params
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise InputError(f"params.{path}", "missing table")
        node = node[part]
    if not isinstance(node, Mapping):
        raise InputError(f"params.{path}", "must be a table")
    return node


def number(tab: Mapping[str, Any], key: str, path: str, lo: float = -math.inf,
           hi: float = math.inf, lo_open: bool = False) -> float:
    """Finite number ``tab[key]`` within ``[lo, hi]`` (``(lo, hi]`` if ``lo_open``)."""
    if key not in tab:
        raise InputError(f"params.{path}.{key}", "missing")
    v = tab[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(f"params.{path}.{key}", f"must be a number, got {v!r}")
    x = float(v)
    if not math.isfinite(x) or x > hi or x < lo or (lo_open and x == lo):
        rng = f"{'(' if lo_open else '['}{lo}, {hi}]"
        raise InputError(f"params.{path}.{key}", f"must be finite and in {rng}, got {v!r}")
    return x


def flag(tab: Mapping[str, Any], key: str, path: str) -> bool:
    v = tab.get(key)
    if not isinstance(v, bool):
        raise InputError(f"params.{path}.{key}", f"must be true or false, got {v!r}")
    return v


def check_meta(params: Mapping[str, Any]) -> None:
    """Every preset file names its version, date and source."""
    meta = table(params, "meta")
    for key in ("version", "date", "source"):
        if not isinstance(meta.get(key), str) or not meta[key].strip():
            raise InputError(f"params.meta.{key}", "must be a non-empty string")


# -- outputs -----------------------------------------------------------------------------------
def risk_matrix(title: str, row_label: str, rows: Sequence[str], columns: Sequence[str],
                values: np.ndarray | Sequence[Sequence[float]]) -> dict[str, Any]:
    """The ``details["risk_matrix"]`` layout the CLI's ``explain`` prints."""
    vals = [[float(v) for v in row] for row in values]
    return {"title": title, "row_label": row_label, "rows": list(rows),
            "columns": list(columns), "values": vals}


def preset_greeks(positions: Sequence[NetPosition], market: MarketSnapshot) -> PortfolioGreeks:
    """Greeks of the live (unexpired) net positions; empty if there are none."""
    live = [p for p in positions
            if p.instrument.expiry is None or p.instrument.expiry > market.timestamp]
    if not live:
        return PortfolioGreeks(())
    book = Portfolio(tuple(Position(p.instrument, p.quantity / p.instrument.contract_size)
                           for p in live))
    return aggregate_greeks(resolve(book, market))
