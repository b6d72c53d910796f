"""Quotes, fees and lot sizes of hedge candidates, and their trading cost in USD (pure).

A :class:`Quote` is an order book in the venue's own units (best first): USD per coin for
futures, perpetuals, spot and linear options, coin per contract for inverse (coin-settled)
options. Sizes are in the position's natural units (coins, or USD face value for inverse
futures and perpetuals, as in :mod:`marginproof.instruments.contracts`).

:func:`cost_ladder` turns a quote into the optimiser's view: per-unit USD costs of buying and
selling, one entry per book level, against the *mark* the account is valued at (so paying the
half spread, or walking deeper into the book, is a cost; a quote through the mark is never a
gain: costs are floored at zero). Fees follow the venue's schedule (:class:`FeeSchedule`):
a rate on the notional, for options capped at a share of the premium, plus an optional fixed
fee per order (Derive's base fee), which is a fixed charge and only enters the mixed-integer
problem exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError
from marginproof.instruments.contracts import Instrument, InstrumentKind

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Level:
    """One price level: ``price`` in venue units, ``size`` in natural units (> 0)."""

    price: float
    size: float


@dataclass(frozen=True)
class Quote:
    """Bids (descending) and asks (ascending) of one instrument, best first.

    Attributes
    ----------
    instrument : str
        Venue instrument name, e.g. ``BTC-24JUN22-40000-C``.
    bids, asks : tuple of Level
        Either side may be empty (no quote: that side cannot be traded).
    source : str
        Where the quote came from (``chain 2022-04-15``, ``depth profile``, a file name ...).
    """

    instrument: str
    bids: tuple[Level, ...] = ()
    asks: tuple[Level, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        f = f"quotes.{self.instrument}"
        for side, levels, desc in (("bids", self.bids, True), ("asks", self.asks, False)):
            prev = None
            for i, lv in enumerate(levels):
                where = f"{f}.{side}[{i}]"
                if not (math.isfinite(lv.price) and lv.price > 0.0):
                    raise InputError(f"{where}.price", f"must be positive, got {lv.price!r}")
                if not (math.isfinite(lv.size) and lv.size > 0.0):
                    raise InputError(f"{where}.size", f"must be positive, got {lv.size!r}")
                if prev is not None and ((lv.price > prev) if desc else (lv.price < prev)):
                    raise InputError(f"{f}.{side}", "levels must be best first "
                                     f"({'descending' if desc else 'ascending'} prices)")
                prev = lv.price
        if self.bids and self.asks and self.bids[0].price > self.asks[0].price:
            raise InputError(f, f"crossed quote: bid {self.bids[0].price} > ask "
                             f"{self.asks[0].price}")

    @property
    def bid(self) -> float | None:
        return self.bids[0].price if self.bids else None

    @property
    def ask(self) -> float | None:
        return self.asks[0].price if self.asks else None

    @property
    def bid_size(self) -> float:
        """Total size of the bids (the most that can be sold)."""
        return float(sum(lv.size for lv in self.bids))

    @property
    def ask_size(self) -> float:
        """Total size of the asks (the most that can be bought)."""
        return float(sum(lv.size for lv in self.asks))


@dataclass(frozen=True)
class FeeSchedule:
    """Taker fees of one venue (all rates decimals).

    Attributes
    ----------
    venue : str
    delta_one_rate : float
        Futures and perpetuals: share of the USD notional.
    option_rate : float
        Coin-settled options: share of the underlying's value per coin.
    linear_option_rate : float
        USDC-settled options: share of the underlying's value per coin.
    option_cap : float
        Option fees never exceed this share of the premium.
    spot_rate : float
    base_fee_delta_one_usd, base_fee_option_usd : float
        Fixed fee per order (USD), whatever its size.
    source : str
    """

    venue: str
    delta_one_rate: float
    option_rate: float
    linear_option_rate: float
    option_cap: float
    spot_rate: float = 0.0
    base_fee_delta_one_usd: float = 0.0
    base_fee_option_usd: float = 0.0
    source: str = ""

    @classmethod
    def from_mapping(cls, venue: str, tab: Mapping[str, object]) -> FeeSchedule:
        """Read ``[venues.<venue>.fees]`` of ``configs/hedge.toml``, naming bad fields."""
        vals: dict[str, float] = {}
        for key in ("delta_one_rate", "option_rate", "linear_option_rate", "option_cap",
                    "spot_rate", "base_fee_delta_one_usd", "base_fee_option_usd"):
            v = tab.get(key, 0.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                    0.0 <= float(v) < (1e6 if key.startswith("base") else 1.0)):
                raise InputError(f"hedge.venues.{venue}.fees.{key}",
                                 f"must be a non-negative number, got {v!r}")
            vals[key] = float(v)
        return cls(venue=venue, source=str(tab.get("source", "")), **vals)

    def fixed_fee_usd(self, inst: Instrument) -> float:
        return self.base_fee_option_usd if inst.is_option else (
            0.0 if inst.kind is InstrumentKind.SPOT else self.base_fee_delta_one_usd)


@dataclass(frozen=True)
class CostLadder:
    """Per-unit USD cost of trading one instrument, one entry per book level.

    Attributes
    ----------
    buy_cost, sell_cost : ndarray, shape (n_levels,)
        USD per unit of quantity (spread against the mark + proportional fee), non-decreasing.
    buy_size, sell_size : ndarray, shape (n_levels,)
        Quantity available at each level (natural units).
    buy_price, sell_price : ndarray, shape (n_levels,)
        Level prices in venue units (for the execution price shown to the user).
    buy_fee, sell_fee : ndarray, shape (n_levels,)
        The fee part of the per-unit cost (USD).
    fixed_fee_usd : float
        Charged once if the instrument is traded at all.
    reference : float
        Mark the costs are measured against (venue units).
    """

    buy_cost: FloatArray
    buy_size: FloatArray
    buy_price: FloatArray
    buy_fee: FloatArray
    sell_cost: FloatArray
    sell_size: FloatArray
    sell_price: FloatArray
    sell_fee: FloatArray
    fixed_fee_usd: float
    reference: float

    @property
    def max_buy(self) -> float:
        return float(self.buy_size.sum())

    @property
    def max_sell(self) -> float:
        return float(self.sell_size.sum())

    def fills(self, quantity: float) -> tuple[FloatArray, FloatArray]:
        """Quantity taken at each level of the side ``quantity`` trades on, and its costs."""
        if quantity >= 0.0:
            size, cost = self.buy_size, self.buy_cost
        else:
            size, cost = self.sell_size, self.sell_cost
        q = abs(float(quantity))
        before = np.concatenate([[0.0], np.cumsum(size)[:-1]])
        take = np.clip(q - before, 0.0, size)
        return take, cost

    def cost(self, quantity: float) -> tuple[float, float, float]:
        """``(total, spread, fee)`` USD of trading ``quantity`` (signed), fixed fee included.

        Raises
        ------
        InputError
            If ``quantity`` exceeds the depth of its side.
        """
        if quantity == 0.0:
            return 0.0, 0.0, 0.0
        take, cost = self.fills(quantity)
        cap = self.max_buy if quantity > 0 else self.max_sell
        if abs(quantity) > cap * (1.0 + 1e-9) + 1e-12:
            raise InputError("quantity", f"{quantity:g} exceeds the book depth {cap:g}")
        fee_unit = self.buy_fee if quantity > 0 else self.sell_fee
        fee = float(take @ fee_unit) + self.fixed_fee_usd
        total = float(take @ cost) + self.fixed_fee_usd
        return total, total - fee, fee

    def cost_curve(self, quantities: FloatArray) -> FloatArray:
        """Total cost (USD, fixed fee included) of each signed quantity, vectorised, shape
        like ``quantities``; sizes beyond the depth cost ``inf``."""
        q = np.asarray(quantities, np.float64)
        out = np.zeros(q.shape)
        for sign, size, cost in ((1.0, self.buy_size, self.buy_cost),
                                 (-1.0, self.sell_size, self.sell_cost)):
            sel = (q * sign) > 0.0
            if not sel.any():
                continue
            a = np.abs(q[sel])
            before = np.concatenate([[0.0], np.cumsum(size)[:-1]])
            take = np.clip(a[:, None] - before[None, :], 0.0, size[None, :])
            tot = take @ cost + self.fixed_fee_usd
            tot[a > size.sum() * (1.0 + 1e-9) + 1e-12] = np.inf
            out[sel] = tot
        return out

    def average_price(self, quantity: float) -> float:
        """Size-weighted execution price in venue units."""
        if quantity == 0.0:
            return self.reference
        take, _ = self.fills(quantity)
        px = self.buy_price if quantity > 0 else self.sell_price
        n = float(take.sum())
        return float(take @ px) / n if n > 0 else self.reference


def _usd_per_unit(inst: Instrument, price: float, index: float) -> float:
    """USD value of one unit of quantity at ``price`` (venue units), for spreads and fees."""
    if inst.is_option:
        return price * index if inst.is_inverse else price
    if inst.is_inverse:  # one USD of face value
        return index / price
    return price


def cost_ladder(inst: Instrument, quote: Quote, reference: float, index: float,
                fees: FeeSchedule) -> CostLadder:
    """Per-unit USD trading costs of ``inst`` from ``quote`` against the mark ``reference``.

    Parameters
    ----------
    inst : Instrument
    quote : Quote
    reference : float
        The mark the position is valued at after the trade, venue units.
    index : float
        Index price of the underlying (USD), converts coin amounts.
    fees : FeeSchedule

    Notes
    -----
    Spread cost of one unit bought at ``p``: linear ``p - r``; inverse futures/perpetuals (one
    USD of face) ``(p - r) S / (p r)`` (the coin P&L given up, at the index); inverse options
    ``(p - r) S``. Fee per unit: ``rate * notional`` with notional ``S`` per coin (``S / p``
    per USD of inverse face); options ``min(rate * S, cap * premium)``.
    """
    if not (math.isfinite(reference) and reference > 0.0):
        raise InputError(f"mark_prices.{inst.name}", "no positive mark to measure costs against")

    def side(levels: Sequence[Level], buy: bool) -> tuple[FloatArray, FloatArray, FloatArray,
                                                          FloatArray]:
        px = np.array([lv.price for lv in levels], dtype=np.float64)
        sz = np.array([lv.size for lv in levels], dtype=np.float64)
        if px.size == 0:
            z = np.zeros(0)
            return z, z, z, z
        diff = (px - reference) if buy else (reference - px)
        if inst.is_option:
            spread = diff * (index if inst.is_inverse else 1.0)
            notional = index
            premium = np.array([_usd_per_unit(inst, p, index) for p in px])
            rate = fees.linear_option_rate if not inst.is_inverse else fees.option_rate
            fee = np.minimum(rate * notional, fees.option_cap * premium)
        elif inst.is_inverse:
            spread = diff * index / (px * reference)
            fee = fees.delta_one_rate * index / px
        else:
            spread = diff
            rate = fees.spot_rate if inst.kind is InstrumentKind.SPOT else fees.delta_one_rate
            fee = rate * px
        cost = np.maximum(spread, 0.0) + fee
        # a deeper level is never cheaper: keep the ladder convex (monotone) for the LP
        cost = np.maximum.accumulate(cost)
        return cost, sz, px, fee

    bc, bs, bp, bf = side(quote.asks, True)
    sc, ss, sp, sf = side(quote.bids, False)
    return CostLadder(bc, bs, bp, bf, sc, ss, sp, sf, fees.fixed_fee_usd(inst), float(reference))


@dataclass(frozen=True)
class LotSizes:
    """Minimum trade increments, by (underlying, kind, settlement); ``default`` otherwise."""

    table: Mapping[str, float]
    default: float = 1e-4

    def lot(self, inst: Instrument) -> float:
        kind = "option" if inst.is_option else (
            "spot" if inst.kind is InstrumentKind.SPOT else "delta_one")
        for key in (f"{inst.underlying}.{kind}.{inst.settlement}", f"{inst.underlying}.{kind}",
                    f"{kind}.{inst.settlement}", kind):
            if key in self.table:
                return float(self.table[key])
        return self.default


def round_to_lot(quantity: float, lot: float, lo: float, hi: float) -> float:
    """Nearest multiple of ``lot`` within ``[-lo, hi]`` (toward zero when at a limit)."""
    if lot <= 0.0:
        return float(min(max(quantity, -lo), hi))
    q = round(quantity / lot) * lot
    if q > hi:
        q = math.floor(hi / lot + 1e-9) * lot
    if q < -lo:
        q = -math.floor(lo / lot + 1e-9) * lot
    return round(round(q / lot) * lot, 12) if q != 0.0 else 0.0
