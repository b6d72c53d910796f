"""Resolve a portfolio against a market snapshot into plain arrays ready to price.

A :class:`ResolvedBook` holds one entry per position (shape ``(n_positions,)``); models and
pricers only ever see resolved books. Resolution is where unknown underlyings, expired
contracts and missing marks or vols are rejected, each naming the offending field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError
from marginproof.instruments.contracts import InstrumentKind
from marginproof.instruments.names import format_expiry
from marginproof.instruments.portfolio import Portfolio
from marginproof.market.snapshot import MarketSnapshot
from marginproof.pricing._black76_reference import price as _ref_price
from marginproof.pricing.implied_vol import implied_vol_one

KIND_CODES = {
    InstrumentKind.SPOT: 0, InstrumentKind.FUTURE: 1, InstrumentKind.PERPETUAL: 2,
    InstrumentKind.OPTION: 3,
}


@dataclass(frozen=True)
class ResolvedBook:
    """Positions as arrays, shape ``(n_positions,)`` each.

    Attributes
    ----------
    names : tuple of str
    underlyings : tuple of str
        Distinct underlyings in first-seen order; ``underlying_idx`` indexes it.
    kind : int8 array (0 spot, 1 future, 2 perpetual, 3 option)
    is_inverse, is_call : bool arrays (``is_call`` False for non-options)
    strike : float array (NaN for non-options)
    t_years : float array (0 for spot and perpetuals)
    expiries : tuple of (datetime or None)
    forward : float array
        Price the contract is revalued on: forward of the expiry for options and futures,
        perp mark for perpetuals, index for spot (USD).
    index : float array
        Index price of the underlying (USD).
    vol : float array
        Implied vol of options (NaN otherwise).
    rate : float array
    quantity : float array
        Signed quantity in natural units: coins, or USD face value for inverse futures.
    mark_usd : float array
        Mark value per unit in USD: option price per coin (inverse marks converted at the
        forward), futures/perp/spot price.
    timestamp : datetime
    """

    names: tuple[str, ...]
    underlyings: tuple[str, ...]
    underlying_idx: NDArray[np.int64]
    kind: NDArray[np.int8]
    is_inverse: NDArray[np.bool_]
    is_call: NDArray[np.bool_]
    strike: NDArray[np.float64]
    t_years: NDArray[np.float64]
    expiries: tuple[datetime | None, ...]
    forward: NDArray[np.float64]
    index: NDArray[np.float64]
    vol: NDArray[np.float64]
    rate: NDArray[np.float64]
    quantity: NDArray[np.float64]
    mark_usd: NDArray[np.float64]
    timestamp: datetime

    def __len__(self) -> int:
        return len(self.names)

    @property
    def is_option(self) -> NDArray[np.bool_]:
        return np.asarray(self.kind == 3, dtype=np.bool_)

    @property
    def coin_quantity(self) -> NDArray[np.float64]:
        """Exposure in coins: quantity, or USD face / forward for inverse delta-one."""
        q = self.quantity.copy()
        inv1 = self.is_inverse & ~self.is_option
        q[inv1] = self.quantity[inv1] / self.forward[inv1]
        return q


def _future_name(underlying: str, quote: str, inverse: bool, expiry: datetime) -> str:
    base = underlying if inverse else f"{underlying}_{quote}"
    return f"{base}-{format_expiry(expiry)}"


def resolve(portfolio: Portfolio, market: MarketSnapshot) -> ResolvedBook:
    """Resolve ``portfolio`` against ``market``.

    Raises
    ------
    InputError
        Unknown underlying, expired contract, or an option with neither mark nor vol.
    """
    n = len(portfolio)
    und_order: dict[str, int] = {}
    uidx = np.empty(n, np.int64)
    kind = np.empty(n, np.int8)
    inv = np.zeros(n, np.bool_)
    call = np.zeros(n, np.bool_)
    strike = np.full(n, np.nan)
    t = np.zeros(n)
    fwd = np.empty(n)
    idx = np.empty(n)
    vol = np.full(n, np.nan)
    rate = np.zeros(n)
    qty = np.empty(n)
    mark = np.empty(n)
    expiries: list[datetime | None] = []
    for i, pos in enumerate(portfolio.positions):
        inst = pos.instrument
        field = f"positions[{i}].instrument"
        if inst.underlying not in market.index_prices:
            raise InputError(
                field, f"unknown instrument {inst.name}: no index price for {inst.underlying}"
            )
        uidx[i] = und_order.setdefault(inst.underlying, len(und_order))
        kind[i] = KIND_CODES[inst.kind]
        inv[i] = inst.is_inverse
        s = market.index(inst.underlying)
        idx[i] = s
        r = market.rate(inst.underlying)
        rate[i] = r
        qty[i] = pos.quantity * inst.contract_size
        expiries.append(inst.expiry)
        if inst.expiry is not None:
            ti = market.year_fraction(inst.expiry)
            if ti <= 0.0:
                raise InputError(
                    field, f"{inst.name} expired at {inst.expiry.isoformat()} "
                    f"(market time {market.timestamp.isoformat()})"
                )
            t[i] = ti
        if inst.kind is InstrumentKind.SPOT:
            fwd[i] = s
        elif inst.kind is InstrumentKind.PERPETUAL:
            fwd[i] = market.mark_prices.get(inst.name, s)
        elif inst.kind is InstrumentKind.FUTURE:
            assert inst.expiry is not None
            fwd[i] = market.mark_prices.get(inst.name) or market.forward(
                inst.underlying, inst.expiry)
        else:
            assert inst.expiry is not None and inst.strike is not None
            curve = market.forwards.get(inst.underlying, {})
            fut = _future_name(inst.underlying, inst.quote, inst.is_inverse, inst.expiry)
            if inst.expiry in curve:
                f = curve[inst.expiry]
            elif fut in market.mark_prices:
                f = market.mark_prices[fut]
            else:
                f = market.forward(inst.underlying, inst.expiry)
            fwd[i] = f
            strike[i] = inst.strike
            call[i] = bool(inst.is_call)
            disc = math.exp(-r * t[i])
            mk = market.mark_prices.get(inst.name)
            iv = market.implied_vols.get(inst.name)
            if mk is not None:
                mk_usd = mk * f if inst.is_inverse else mk
                if iv is None:
                    iv = implied_vol_one(mk_usd, f, inst.strike, t[i], bool(inst.is_call), disc)
                    if not math.isfinite(iv):
                        raise InputError(
                            f"mark_prices.{inst.name}",
                            f"mark {mk!r} is outside the no-arbitrage bounds (no implied vol)",
                        )
            elif iv is not None:
                mk_usd = _ref_price(f, inst.strike, t[i], iv, bool(inst.is_call), disc)
            else:
                raise InputError(
                    f"implied_vols.{inst.name}", "missing: give a mark price or an implied vol"
                )
            vol[i] = iv
            mark[i] = mk_usd
            continue
        mark[i] = fwd[i]
    return ResolvedBook(
        names=tuple(p.instrument.name for p in portfolio.positions),
        underlyings=tuple(und_order),
        underlying_idx=uidx,
        kind=kind,
        is_inverse=inv,
        is_call=call,
        strike=strike,
        t_years=t,
        expiries=tuple(expiries),
        forward=fwd,
        index=idx,
        vol=vol,
        rate=rate,
        quantity=qty,
        mark_usd=mark,
        timestamp=market.timestamp,
    )
