"""The candidate set of a hedge: instruments, their quotes, costs, lots and size limits (pure).

Default candidates (:func:`default_candidate_names`): on each underlying of the account, the
perpetuals (inverse ``BTC-PERPETUAL`` where the venue lists one, linear ``BTC_USDC-PERPETUAL``),
the dated futures of every expiry the market quotes a forward or mark for, and the listed
options the market prices (an implied vol or a mark), nearest the money first; plus every
instrument the account already holds (closing is always allowed). Each candidate then needs a
quote (:class:`~marginproof.hedge.quotes.Quote`): from a quotes file or the shipped order books
(shell: :mod:`marginproof.hedge.sources`), else a modelled one (:func:`modelled_quote`). A
candidate with no tradable side is left out, with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError, MarginproofError
from marginproof.hedge.quotes import CostLadder, FeeSchedule, Level, LotSizes, Quote, cost_ladder
from marginproof.instruments.contracts import Instrument, InstrumentKind
from marginproof.instruments.names import format_expiry, parse_instrument
from marginproof.instruments.portfolio import Portfolio, Position
from marginproof.instruments.resolved import ResolvedBook, resolve
from marginproof.market.snapshot import MarketSnapshot
from marginproof.pricing.black76 import black76_greeks

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Candidate:
    """One tradable instrument.

    Attributes
    ----------
    instrument : Instrument
    quote : Quote
    ladder : CostLadder
        Per-unit USD costs and sizes per level (natural units).
    lot : float
        Minimum trade increment (natural units).
    unit : float
        Scale of the optimiser's variable: one variable unit is ``unit`` natural units
        (a coin's worth for inverse contracts), which keeps the programme well conditioned.
    """

    instrument: Instrument
    quote: Quote
    ladder: CostLadder
    lot: float
    unit: float

    @property
    def name(self) -> str:
        return self.instrument.name

    @property
    def max_buy(self) -> float:
        return self.ladder.max_buy

    @property
    def max_sell(self) -> float:
        return self.ladder.max_sell


@dataclass(frozen=True)
class CandidateSet:
    """Candidates and the instruments left out (name -> reason)."""

    candidates: tuple[Candidate, ...]
    excluded: Mapping[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.candidates)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.candidates)

    def subset(self, keep: Sequence[int]) -> CandidateSet:
        return CandidateSet(tuple(self.candidates[i] for i in keep), self.excluded)


@dataclass(frozen=True)
class DepthProfile:
    """Shape of a delta-one order book: relative distance from mid and USD notional per level.

    Attributes
    ----------
    offsets : ndarray, shape (n_levels,)
        ``|price / mid - 1|`` of each aggregated level (ascending).
    notional_usd : ndarray, shape (n_levels,)
        USD notional resting at each level (one side).
    source : str
    """

    offsets: FloatArray
    notional_usd: FloatArray
    source: str = ""


@dataclass(frozen=True)
class QuoteModel:
    """How to model a quote where no book is known (``configs/hedge.toml`` ``[quote_model]``).

    Attributes
    ----------
    delta_one : DepthProfile
        Book shape of perpetuals (futures use it times ``future_depth_scale``).
    depth_scale : Mapping[str, float]
        Per-underlying multiplier of the profile's sizes (``default`` key for the rest).
    future_depth_scale : float
    option_half_spread_vol_points : float
        Half bid-ask spread of options in vol points (times the option's vega).
    option_min_half_spread_rel : float
        Floor of an option's half spread per coin, as a share of the index (a tick).
    option_size_coins : Mapping[str, float]
        Size quoted on each side of an option, coins (``default`` key for the rest).
    """

    delta_one: DepthProfile
    depth_scale: Mapping[str, float]
    future_depth_scale: float
    option_half_spread_vol_points: float
    option_min_half_spread_rel: float
    option_size_coins: Mapping[str, float]

    def scale(self, table: Mapping[str, float], underlying: str) -> float:
        return float(table.get(underlying, table.get("default", 0.0)))


QuoteLookup = Callable[[Instrument], Quote | None]


def _expiry_names(und: str, market: MarketSnapshot) -> list[str]:
    out = []
    for exp in sorted(market.forwards.get(und, {})):
        if exp > market.timestamp:
            out.append(f"{und}-{format_expiry(exp)}")
    return out


def default_candidate_names(portfolio: Portfolio, market: MarketSnapshot, max_options: int = 60,
                            inverse_underlyings: Sequence[str] = ("BTC", "ETH"),
                            include_inverse: bool = True, include_linear: bool = True
                            ) -> list[str]:
    """Perpetuals, dated futures and listed options on the account's underlyings (see module
    docstring), the held derivatives first. Options: the ``max_options`` nearest the money in
    standard deviations (``|ln(K/F)| / (vol sqrt(T))``)."""
    names: dict[str, None] = {}
    for p in portfolio.positions:
        if p.instrument.kind is not InstrumentKind.SPOT:
            names[p.instrument.name] = None
    unds = [u for u in portfolio.underlyings if u in market.index_prices]
    for u in unds:
        if include_inverse and u in inverse_underlyings:
            names[f"{u}-PERPETUAL"] = None
        if include_linear:
            names[f"{u}_USDC-PERPETUAL"] = None
        if include_inverse and u in inverse_underlyings:
            for n in _expiry_names(u, market):
                names[n] = None
    priced = set(market.mark_prices) | set(market.implied_vols)
    opts: list[tuple[float, str]] = []
    for n in sorted(priced):
        try:
            inst = parse_instrument(n)
        except InputError:
            continue
        if inst.underlying not in unds or inst.expiry is None or inst.expiry <= market.timestamp:
            continue
        if inst.kind is InstrumentKind.FUTURE or inst.kind is InstrumentKind.PERPETUAL:
            if (inst.is_inverse and include_inverse) or (not inst.is_inverse and include_linear):
                names[n] = None
            continue
        if not inst.is_option or (inst.is_inverse and not include_inverse) or (
                not inst.is_inverse and not include_linear):
            continue
        assert inst.strike is not None
        f = market.forward(inst.underlying, inst.expiry)
        t = market.year_fraction(inst.expiry)
        vol = market.implied_vols.get(n, 0.6)
        z = abs(math.log(inst.strike / f)) / max(vol * math.sqrt(max(t, 1e-6)), 1e-6)
        opts.append((z, n))
    opts.sort()
    for _, n in opts[: max(0, int(max_options))]:
        names[n] = None
    for p in portfolio.positions:  # held options stay even beyond max_options
        if p.instrument.is_option:
            names[p.instrument.name] = None
    return list(names)


def modelled_quote(inst: Instrument, reference: float, index: float, vega_usd_per_vol_point:
                   float, model: QuoteModel) -> Quote | None:
    """A quote from the book shape (delta-one) or the vol-point half spread (options).

    Delta-one: each side is the profile's levels around ``reference`` with sizes
    ``notional * depth_scale`` (coins = notional / price; inverse contracts in USD face).
    Options: one level each side, half spread ``max(hs * vega, floor)`` USD per coin
    (converted to coin for inverse options), size ``option_size_coins``; no bid when the half
    spread exceeds the price.
    """
    und = inst.underlying
    src = "modelled"
    if inst.is_option:
        half_usd = max(model.option_half_spread_vol_points * abs(vega_usd_per_vol_point),
                       model.option_min_half_spread_rel * index)
        half = half_usd / index if inst.is_inverse else half_usd
        size = model.scale(model.option_size_coins, und)
        if size <= 0.0:
            return None
        o_asks = (Level(reference + half, size),)
        o_bids = (Level(reference - half, size),) if reference - half > 0.0 else ()
        return Quote(inst.name, o_bids, o_asks, f"{src}: {model.option_half_spread_vol_points:g} "
                     "vol-pt half spread")
    scale = model.scale(model.depth_scale, und)
    if inst.kind is InstrumentKind.FUTURE:
        scale *= model.future_depth_scale
    prof = model.delta_one
    if scale <= 0.0 or prof.offsets.size == 0:
        return None
    bids: list[Level] = []
    asks: list[Level] = []
    for off, notional in zip(prof.offsets, prof.notional_usd, strict=True):
        usd = float(notional) * scale
        pa = reference * (1.0 + float(off))
        pb = reference * (1.0 - float(off))
        size_a = usd if inst.is_inverse else usd / pa
        size_b = usd if inst.is_inverse else usd / pb
        asks.append(Level(pa, size_a))
        if pb > 0.0:
            bids.append(Level(pb, size_b))
    return Quote(inst.name, tuple(bids), tuple(asks), f"{src}: {prof.source}")


def _references(book: ResolvedBook) -> tuple[FloatArray, FloatArray]:
    """Mark in venue units and USD vega per vol point per unit, shape (n,) each."""
    ref = np.where(book.is_option & book.is_inverse, book.mark_usd / book.forward,
                   np.where(book.is_option, book.mark_usd, book.forward))
    vega = np.zeros(len(book))
    opt = book.is_option
    if opt.any():
        g = black76_greeks(book.forward[opt], book.strike[opt], book.t_years[opt],
                           book.vol[opt], book.is_call[opt], book.rate[opt])
        vega[opt] = g.vega_per_vol_point
    return np.asarray(ref, np.float64), vega


def variable_unit(inst: Instrument, forward: float, lot: float) -> float:
    """One optimiser unit: a coin's worth (USD face ``~F`` for inverse delta-one), in lots."""
    raw = forward if (inst.is_inverse and not inst.is_option) else 1.0
    if lot > 0.0:
        raw = max(lot, round(raw / lot) * lot)
    return float(raw)


def build_candidates(names: Sequence[str], market: MarketSnapshot, fees: FeeSchedule,
                     lots: LotSizes, lookup: QuoteLookup | None = None,
                     quote_model: QuoteModel | None = None, max_depth_fraction: float = 1.0,
                     accept: Callable[[Instrument], str | None] | None = None
                     ) -> CandidateSet:
    """Candidates with quotes, costs, lots and size limits.

    Parameters
    ----------
    names : sequence of str
        Instrument names (venue names).
    lookup : callable, optional
        Known quote of an instrument (file or shipped books), or None.
    quote_model : QuoteModel, optional
        Fallback for instruments without a known quote; without it they are left out.
    max_depth_fraction : float
        Share of the book's depth the trade may take (size limit = fraction x depth).
    accept : callable, optional
        ``accept(instrument) -> reason or None``: the margin model's own refusal (e.g. a
        preset that does not list the product).
    """
    if not 0.0 < max_depth_fraction <= 1.0:
        raise InputError("hedge.max_depth_fraction", "must be in (0, 1]")
    excluded: dict[str, str] = {}
    insts: list[Instrument] = []
    for n in dict.fromkeys(names):
        try:
            inst = parse_instrument(n, f"candidates.{n}")
        except InputError as exc:
            excluded[n] = exc.message
            continue
        if inst.kind is InstrumentKind.SPOT:
            excluded[n] = "spot is not a hedge candidate (perpetuals, futures and options only)"
            continue
        if accept is not None:
            why = accept(inst)
            if why:
                excluded[n] = why
                continue
        insts.append(inst)
    good: list[Instrument] = []
    for inst in insts:
        try:
            resolve(Portfolio((Position(inst, 1.0),)), market)
        except MarginproofError as exc:
            excluded[inst.name] = str(exc)
            continue
        good.append(inst)
    if not good:
        return CandidateSet((), excluded)
    book = resolve(Portfolio(tuple(Position(i, 1.0) for i in good)), market)
    ref, vega = _references(book)
    out: list[Candidate] = []
    for i, inst in enumerate(good):
        q = lookup(inst) if lookup is not None else None
        if q is None and quote_model is not None:
            q = modelled_quote(inst, float(ref[i]), float(book.index[i]), float(vega[i]),
                               quote_model)
        if q is None:
            excluded[inst.name] = "no quote"
            continue
        if max_depth_fraction < 1.0:
            q = Quote(q.instrument, _trim(q.bids, max_depth_fraction),
                      _trim(q.asks, max_depth_fraction), q.source)
        try:
            lad = cost_ladder(inst, q, float(ref[i]), float(book.index[i]), fees)
        except InputError as exc:
            excluded[inst.name] = exc.message
            continue
        if lad.max_buy <= 0.0 and lad.max_sell <= 0.0:
            excluded[inst.name] = "no bid and no ask"
            continue
        lot = lots.lot(inst)
        out.append(Candidate(inst, q, lad, lot, variable_unit(inst, float(book.forward[i]), lot)))
    return CandidateSet(tuple(out), excluded)


def _trim(levels: tuple[Level, ...], frac: float) -> tuple[Level, ...]:
    total = sum(lv.size for lv in levels) * frac
    out: list[Level] = []
    left = total
    for lv in levels:
        if left <= 0.0:
            break
        out.append(Level(lv.price, min(lv.size, left)))
        left -= lv.size
    return tuple(out)
