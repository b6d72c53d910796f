"""Backtest portfolio sets: templates re-struck every day, instantiated as leg arrays.

A :class:`BookTemplate` describes a book in relative terms: legs with a signed USD notional,
a moneyness ``K / S``, a tenor in days and a settlement (linear USDC or inverse, coin-settled).
On each backtest date the template is instantiated at that day's close: ``coins = notional /
S``, ``K = S * moneyness`` rounded to 4 significant digits, expiry = date + tenor at 08:00 UTC,
Deribit-style instruments (``BTC_USDC-PERPETUAL``, ``BTC_USDC-17MAY22-31020-P`` linear;
``BTC-PERPETUAL``, ``BTC-17MAY22``, ``BTC-17MAY22-31020-P`` inverse, whose delta-one quantity is
the USD face ``coins * S``).
The same instruments are then held unchanged over the margin period of risk to measure the
realised P&L. ``hedge`` legs are linear perpetuals sized to the Black-76 delta of the book's
options on that underlying at the day's close (a delta-hedged book).

Sets (:func:`portfolio_set`):

* ``singles``: one long and one short perpetual of 1 M USD per underlying;
* ``random``: seeded random option books (2-5 legs: calls, puts, perps);
* ``adversarial``: short deep out-of-the-money puts, short strangles and straddles close to
  expiry, call ratio spreads - books whose losses hide in the tail;
* ``hedged``: delta-hedged straddles, covered calls, protective puts, BTC/ETH pairs;
* ``inverse``: coin-settled books on BTC and ETH (Deribit's inverse listings): long and short
  inverse perpetuals, a long inverse future, a calendar (future against perpetual), and
  coin-settled options (covered call, short strangle, delta-hedged short straddle).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from marginproof.backtest.market import MarketPath
from marginproof.errors import InputError
from marginproof.instruments.contracts import Instrument, InstrumentKind, Settlement
from marginproof.instruments.names import EXPIRY_HOUR_UTC, format_instrument
from marginproof.instruments.portfolio import Portfolio, Position
from marginproof.market.snapshot import MarketSnapshot
from marginproof.pricing.black76 import black76_price

FloatArray = NDArray[np.float64]
SMALL = 20_000  # below this many options the numpy twin beats the parallel kernel's overhead


def b76_price_delta(f: FloatArray, k: FloatArray, t: FloatArray, vol: FloatArray,
                    is_call: NDArray[np.bool_]) -> tuple[FloatArray, FloatArray]:
    """Undiscounted Black-76 price and delta ``dV/dF`` (shape (n,)), for small arrays.

    Why hand-written: :func:`marginproof.pricing.black76_price` runs a parallel numba kernel
    whose per-call overhead (about 2 ms on a loaded 2-core machine, measured) dominates the
    few dozen options a backtest day prices; this numpy twin (``scipy.special.ndtr``) costs
    microseconds and is tested equal to the kernel. Large arrays go to the kernel.
    """
    from scipy.special import ndtr

    f, k, t, vol = (np.asarray(x, dtype=np.float64) for x in (f, k, t, vol))
    c = np.asarray(is_call, dtype=np.bool_)
    if f.size >= SMALL:
        price = np.asarray(black76_price(f, k, t, vol, c), dtype=np.float64)
        return price, np.full(f.shape, np.nan)
    sd = vol * np.sqrt(t)
    d1 = (np.log(f / k) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    n1, n2 = ndtr(d1), ndtr(d2)
    price = np.where(c, f * n1 - k * n2, k * (1.0 - n2) - f * (1.0 - n1))
    delta = np.where(c, n1, n1 - 1.0)
    return np.asarray(price, dtype=np.float64), np.asarray(delta, dtype=np.float64)
LEG_KINDS = ("perp", "future", "call", "put", "hedge", "spot")
SETTLEMENTS = ("linear", "inverse")
SETS = ("singles", "random", "adversarial", "hedged", "inverse")
#: Underlyings with inverse (coin-settled) listings on Deribit.
INVERSE_UNDERLYINGS = ("BTC", "ETH")
NOTIONAL_USD = 1_000_000.0


@dataclass(frozen=True)
class Leg:
    """One leg of a template (``notional_usd`` signed: positive = long)."""

    underlying: str
    kind: str
    notional_usd: float = 0.0
    moneyness: float = 1.0
    tenor_days: int = 0
    settlement: str = "linear"

    def __post_init__(self) -> None:
        if self.kind not in LEG_KINDS:
            raise InputError("leg.kind", f"must be one of {LEG_KINDS}, got {self.kind!r}")
        if self.settlement not in SETTLEMENTS:
            raise InputError("leg.settlement", f"must be one of {SETTLEMENTS}, got "
                             f"{self.settlement!r}")
        if self.kind in ("call", "put") and (self.tenor_days < 2 or not self.moneyness > 0):
            raise InputError("leg", "options need tenor_days >= 2 and moneyness > 0")
        if self.kind == "future" and self.tenor_days < 2:
            raise InputError("leg", "futures need tenor_days >= 2")


@dataclass(frozen=True)
class BookTemplate:
    """A named book in relative terms."""

    name: str
    category: str
    legs: tuple[Leg, ...]

    @property
    def underlyings(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(leg.underlying for leg in self.legs))

    @property
    def min_tenor_days(self) -> int:
        t = [leg.tenor_days for leg in self.legs if leg.kind in ("call", "put", "future")]
        return min(t) if t else 10**6


def round_strike(x: float, digits: int = 4) -> float:
    """``x`` rounded to ``digits`` significant digits (a listed-strike-like grid)."""
    if not x > 0:
        raise InputError("strike", f"must be positive, got {x!r}")
    e = int(math.floor(math.log10(x))) - digits + 1
    return round(round(x / 10.0**e) * 10.0**e, max(0, -e))


def singles(underlyings: Sequence[str], notional_usd: float = NOTIONAL_USD
            ) -> list[BookTemplate]:
    out = []
    for u in underlyings:
        out.append(BookTemplate(f"long {u}", "singles", (Leg(u, "perp", notional_usd),)))
        out.append(BookTemplate(f"short {u}", "singles", (Leg(u, "perp", -notional_usd),)))
    return out


def adversarial(underlyings: Sequence[str], notional_usd: float = NOTIONAL_USD
                ) -> list[BookTemplate]:
    n = notional_usd
    out = []
    for u in underlyings:
        out += [
            BookTemplate(f"{u} short 0.7 put 7d x3", "adversarial",
                         (Leg(u, "put", -3 * n, 0.7, 7),)),
            BookTemplate(f"{u} short 0.8/1.2 strangle 30d", "adversarial",
                         (Leg(u, "put", -n, 0.8, 30), Leg(u, "call", -n, 1.2, 30))),
            BookTemplate(f"{u} short ATM straddle 7d", "adversarial",
                         (Leg(u, "put", -n, 1.0, 7), Leg(u, "call", -n, 1.0, 7))),
            BookTemplate(f"{u} call ratio 1x3 (1.0/1.15) 30d", "adversarial",
                         (Leg(u, "call", n, 1.0, 30), Leg(u, "call", -3 * n, 1.15, 30))),
            BookTemplate(f"{u} short put spread 0.9/0.75 14d x2", "adversarial",
                         (Leg(u, "put", -2 * n, 0.9, 14), Leg(u, "put", 2 * n, 0.75, 14))),
        ]
    return out


def hedged(underlyings: Sequence[str], notional_usd: float = NOTIONAL_USD
           ) -> list[BookTemplate]:
    n = notional_usd
    out = []
    for u in underlyings:
        out += [
            BookTemplate(f"{u} delta-hedged short straddle 30d", "hedged",
                         (Leg(u, "put", -n, 1.0, 30), Leg(u, "call", -n, 1.0, 30),
                          Leg(u, "hedge"))),
            BookTemplate(f"{u} covered call 1.1 30d", "hedged",
                         (Leg(u, "perp", n), Leg(u, "call", -n, 1.1, 30))),
            BookTemplate(f"{u} protective put 0.9 30d", "hedged",
                         (Leg(u, "perp", n), Leg(u, "put", n, 0.9, 30))),
            BookTemplate(f"{u} delta-hedged long strangle 60d", "hedged",
                         (Leg(u, "put", n, 0.85, 60), Leg(u, "call", n, 1.15, 60),
                          Leg(u, "hedge"))),
        ]
    if "BTC" in underlyings and "ETH" in underlyings:
        out.append(BookTemplate("long BTC / short ETH pair", "hedged",
                                (Leg("BTC", "perp", n), Leg("ETH", "perp", -n))))
    return out


def inverse(underlyings: Sequence[str], notional_usd: float = NOTIONAL_USD
            ) -> list[BookTemplate]:
    """Coin-settled books on the underlyings with inverse listings (BTC, ETH)."""
    n = notional_usd
    out = []
    for u in (x for x in underlyings if x in INVERSE_UNDERLYINGS):
        out += [
            BookTemplate(f"long {u} inverse perp", "inverse",
                         (Leg(u, "perp", n, settlement="inverse"),)),
            BookTemplate(f"short {u} inverse perp", "inverse",
                         (Leg(u, "perp", -n, settlement="inverse"),)),
            BookTemplate(f"long {u} inverse future 90d", "inverse",
                         (Leg(u, "future", n, tenor_days=90, settlement="inverse"),)),
            BookTemplate(f"{u} inverse calendar 90d future / perp", "inverse",
                         (Leg(u, "future", n, tenor_days=90, settlement="inverse"),
                          Leg(u, "perp", -n, settlement="inverse"))),
            BookTemplate(f"{u} coin-settled covered call 1.1 30d", "inverse",
                         (Leg(u, "perp", n, settlement="inverse"),
                          Leg(u, "call", -n, 1.1, 30, "inverse"))),
            BookTemplate(f"{u} coin-settled short 0.8/1.2 strangle 30d", "inverse",
                         (Leg(u, "put", -n, 0.8, 30, "inverse"),
                          Leg(u, "call", -n, 1.2, 30, "inverse"))),
            BookTemplate(f"{u} coin-settled delta-hedged short straddle 14d", "inverse",
                         (Leg(u, "put", -n, 1.0, 14, "inverse"),
                          Leg(u, "call", -n, 1.0, 14, "inverse"),
                          Leg(u, "hedge", settlement="inverse"))),
        ]
    return out


def template_from_portfolio(portfolio: Portfolio, index_usd: Mapping[str, float],
                            asof: np.datetime64, name: str = "portfolio",
                            category: str = "portfolio") -> tuple[BookTemplate, list[str]]:
    """A held book in the relative terms of a template, read at the close of ``asof``.

    Each position becomes a leg with its USD notional at that close (coins x index; the USD
    face for inverse perpetuals and futures), its moneyness ``K / S`` and its tenor in days
    from ``asof`` to expiry, keeping the settlement (linear or inverse). The backtest re-strikes
    it every day: the same exposure, in USD, moneyness and tenor, through every market.

    Returns the template and one line per position saying how it was read.

    Raises
    ------
    InputError
        No index price for a position's underlying, or a contract expiring less than 2 days
        after ``asof`` (naming the position).
    """
    day = np.asarray(asof).astype("datetime64[D]")
    legs = []
    notes = []
    for i, pos in enumerate(portfolio.positions):
        inst = pos.instrument
        field_name = f"positions[{i}]"
        u = inst.underlying
        s = index_usd.get(u)
        if s is None or not (s > 0.0):
            raise InputError(f"{field_name}.instrument",
                             f"{inst.name}: no {u} close on {day} to read the book at")
        q = float(pos.quantity) * float(inst.contract_size)
        st = "inverse" if inst.is_inverse else "linear"
        tenor = 0
        if inst.expiry is not None:
            exp_day = np.datetime64(inst.expiry.date().isoformat(), "D")
            tenor = int((exp_day - day).astype(int))
            if tenor < 2:
                raise InputError(f"{field_name}.instrument",
                                 f"{inst.name} expires {tenor} day(s) after {day}: pick an "
                                 "--as-of day at least 2 days before its expiry")
        if inst.kind is InstrumentKind.SPOT:
            legs.append(Leg(u, "spot", q * s))
            notes.append(f"{inst.name}: spot {q * s:,.0f} USD")
        elif inst.kind is InstrumentKind.PERPETUAL:
            n = q if inst.is_inverse else q * s
            legs.append(Leg(u, "perp", n, settlement=st))
            notes.append(f"{inst.name}: {st} perpetual {n:,.0f} USD")
        elif inst.kind is InstrumentKind.FUTURE:
            n = q if inst.is_inverse else q * s
            legs.append(Leg(u, "future", n, tenor_days=tenor, settlement=st))
            notes.append(f"{inst.name}: {st} future {n:,.0f} USD, {tenor} d")
        else:
            assert inst.strike is not None
            kind = "call" if inst.is_call else "put"
            m = float(inst.strike) / s
            legs.append(Leg(u, kind, q * s, m, tenor, st))
            notes.append(f"{inst.name}: {st} {kind} K/S {m:.3f}, {tenor} d, {q * s:,.0f} USD")
    if not legs:
        raise InputError("positions", "the portfolio has no position to backtest")
    return BookTemplate(name, category, tuple(legs)), notes


#: Strikes of random books sit on a listed-like grid of moneyness (0.75 .. 1.25 by 0.05) and
#: tenors, so that books share instruments as real books do (and the batch providers revalue
#: each distinct instrument once a day).
MONEYNESS_GRID = tuple(round(0.75 + 0.05 * i, 2) for i in range(11))


def random_books(n_books: int, underlyings: Sequence[str], seed: int = 0,
                 notional_usd: float = NOTIONAL_USD) -> list[BookTemplate]:
    """``n_books`` seeded random option books of 2-5 legs on one or two underlyings."""
    rng = np.random.default_rng(seed)
    tenors = np.array([7, 14, 30, 60, 90])
    out = []
    unds = list(underlyings)
    for b in range(int(n_books)):
        k = int(rng.integers(2, 6))
        n_und = 1 if len(unds) == 1 or rng.random() < 0.7 else 2
        chosen = list(rng.choice(unds, size=n_und, replace=False))
        legs = []
        for _ in range(k):
            u = str(chosen[int(rng.integers(0, len(chosen)))])
            kind = str(rng.choice(["call", "put", "perp"], p=[0.4, 0.4, 0.2]))
            notional = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 1.0) * notional_usd)
            if kind == "perp":
                legs.append(Leg(u, "perp", notional))
            else:
                legs.append(Leg(u, kind, notional, float(rng.choice(MONEYNESS_GRID)),
                                int(rng.choice(tenors))))
        out.append(BookTemplate(f"random #{b}", "random", tuple(legs)))
    return out


def portfolio_set(sets: Sequence[str] = SETS, underlyings: Sequence[str] = ("BTC", "ETH"),
                  n_random: int = 20, seed: int = 0, notional_usd: float = NOTIONAL_USD
                  ) -> list[BookTemplate]:
    """The named sets concatenated (names are unique)."""
    out: list[BookTemplate] = []
    for s in sets:
        if s == "singles":
            out += singles(underlyings, notional_usd)
        elif s == "random":
            out += random_books(n_random, underlyings, seed, notional_usd)
        elif s == "adversarial":
            out += adversarial(underlyings, notional_usd)
        elif s == "hedged":
            out += hedged(underlyings, notional_usd)
        elif s == "inverse":
            out += inverse(underlyings, notional_usd)
        else:
            raise InputError("portfolios", f"unknown set {s!r}; known: {SETS}")
    return out


def _settle(inverse: bool) -> tuple[Settlement, str]:
    return (Settlement.INVERSE, "USD") if inverse else (Settlement.LINEAR, "USDC")


def option_instrument(underlying: str, expiry: datetime, strike: float, is_call: bool,
                      inverse: bool = False) -> Instrument:
    st, quote = _settle(inverse)
    inst = Instrument("", underlying, InstrumentKind.OPTION, st, quote, expiry, float(strike),
                      bool(is_call))
    return Instrument(format_instrument(inst), underlying, InstrumentKind.OPTION, st, quote,
                      expiry, float(strike), bool(is_call))


def perp_instrument(underlying: str, inverse: bool = False) -> Instrument:
    st, quote = _settle(inverse)
    name = f"{underlying}-PERPETUAL" if inverse else f"{underlying}_USDC-PERPETUAL"
    return Instrument(name, underlying, InstrumentKind.PERPETUAL, st, quote)


def future_instrument(underlying: str, expiry: datetime, inverse: bool = False) -> Instrument:
    st, quote = _settle(inverse)
    inst = Instrument("", underlying, InstrumentKind.FUTURE, st, quote, expiry)
    return Instrument(format_instrument(inst), underlying, InstrumentKind.FUTURE, st, quote,
                      expiry)


KIND_CODE = {"perp": 0, "call": 1, "put": 2, "hedge": 3, "future": 4, "spot": 5}
#: (underlying, kind 0 perp / 1 option / 2 future / 3 spot, expiry s, strike, is_call, inverse)
NameKey = tuple[str, int, int, float, bool, bool]


@dataclass(frozen=True)
class TemplateTable:
    """Static leg table of a list of templates on a path's underlyings (built once).

    Arrays have shape (n_legs,); ``kind`` codes: 0 perp, 1 call, 2 put, 3 hedge, 4 future;
    ``inverse`` marks coin-settled legs.
    """

    templates: tuple[BookTemplate, ...]
    portfolio_idx: NDArray[np.int64]
    und_col: NDArray[np.int64]
    kind: NDArray[np.int8]
    notional_usd: FloatArray
    moneyness: FloatArray
    tenor_days: NDArray[np.int64]
    known: NDArray[np.bool_]
    #: memo of instrument names shared by the days of one run (a name is a function of its key)
    name_cache: dict[NameKey, str] = field(default_factory=dict, compare=False, repr=False)
    inverse: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, np.bool_))

    def __post_init__(self) -> None:
        if self.inverse.shape != self.kind.shape:
            object.__setattr__(self, "inverse", np.zeros(self.kind.shape, np.bool_))

    @classmethod
    def build(cls, templates: Sequence[BookTemplate], underlyings: Sequence[str]
              ) -> TemplateTable:
        rows = []
        known = np.ones(len(templates), bool)
        for k, tpl in enumerate(templates):
            for leg in tpl.legs:
                if leg.underlying not in underlyings:
                    known[k] = False
                    continue
                rows.append((k, list(underlyings).index(leg.underlying), KIND_CODE[leg.kind],
                             leg.notional_usd, leg.moneyness, leg.tenor_days,
                             leg.settlement == "inverse"))
        n = len(rows)
        return cls(tuple(templates),
                   np.array([r[0] for r in rows], np.int64).reshape(n),
                   np.array([r[1] for r in rows], np.int64).reshape(n),
                   np.array([r[2] for r in rows], np.int8).reshape(n),
                   np.array([r[3] for r in rows], np.float64).reshape(n),
                   np.array([r[4] for r in rows], np.float64).reshape(n),
                   np.array([r[5] for r in rows], np.int64).reshape(n), known,
                   inverse=np.array([r[6] for r in rows], np.bool_).reshape(n))


def round_strikes(x: FloatArray, digits: int = 4) -> FloatArray:
    """Vectorised :func:`round_strike`."""
    e = np.floor(np.log10(x)) - digits + 1
    step = 10.0 ** e
    return np.asarray(np.round(np.round(x / step) * step, 10), dtype=np.float64)


@dataclass(frozen=True)
class DayBooks:
    """Every template instantiated on one date, as leg arrays (shape (n_legs,) each).

    Attributes
    ----------
    row : int
        Path row of the instantiation date.
    templates : tuple of BookTemplate
    underlyings : tuple of str
        The path's underlyings; ``und_col`` indexes it.
    active : bool array (n_portfolios,)
        False where an underlying has no close or vol that day (the book is skipped).
    portfolio_idx, und_col : int arrays
    is_option, is_call : bool arrays
    strike : float array (NaN for delta-one legs)
    expiry : datetime64[s] array (NaT for perps)
    coins : float array
        Signed exposure in coins (0 for legs of inactive books); an inverse delta-one leg's
        quantity is its USD face ``coins * spot``.
    gross_notional_usd : float array (n_portfolios,)
        Sum of ``|coins| * S`` over the legs.
    is_inverse, is_future, is_spot : bool arrays
    spot : float array
        Close of the leg's underlying at instantiation.
    vol : float array
        Option implied vol at instantiation (smile vol where a chain is in force; NaN for
        delta-one legs).
    """

    row: int
    templates: tuple[BookTemplate, ...]
    underlyings: tuple[str, ...]
    active: NDArray[np.bool_]
    portfolio_idx: NDArray[np.int64]
    und_col: NDArray[np.int64]
    is_option: NDArray[np.bool_]
    is_call: NDArray[np.bool_]
    strike: FloatArray
    expiry: NDArray[np.datetime64]
    coins: FloatArray
    gross_notional_usd: FloatArray
    name_cache: dict[NameKey, str] = field(default_factory=dict, compare=False, repr=False)
    is_inverse: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, np.bool_))
    is_future: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, np.bool_))
    is_spot: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, np.bool_))
    spot: FloatArray = field(default_factory=lambda: np.zeros(0))
    vol: FloatArray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        n = self.coins.shape
        for name in ("is_inverse", "is_future", "is_spot"):
            if getattr(self, name).shape != n:
                object.__setattr__(self, name, np.zeros(n, np.bool_))
        for name in ("spot", "vol"):
            if getattr(self, name).shape != n:
                object.__setattr__(self, name, np.full(n, np.nan))

    @property
    def n_portfolios(self) -> int:
        return len(self.templates)

    @property
    def n_legs(self) -> int:
        return int(self.coins.shape[0])

    def _kind(self, j: int) -> int:
        return (1 if self.is_option[j] else 2 if self.is_future[j]
                else 3 if self.is_spot[j] else 0)

    def instrument(self, j: int) -> Instrument:
        """Instrument of leg ``j`` (an option, perpetual or future, linear or inverse)."""
        u = self.underlyings[int(self.und_col[j])]
        inv = bool(self.is_inverse[j])
        kind = self._kind(j)
        if kind == 0:
            return perp_instrument(u, inv)
        if kind == 3:
            return Instrument(f"{u}_USDT", u, InstrumentKind.SPOT, Settlement.LINEAR, "USDT")
        exp = self.expiry[j].astype(datetime).replace(tzinfo=UTC)
        if kind == 2:
            return future_instrument(u, exp, inv)
        return option_instrument(u, exp, float(self.strike[j]), bool(self.is_call[j]), inv)

    def name(self, j: int) -> str:
        """Instrument name of leg ``j`` (memoised per instrument terms)."""
        kind = self._kind(j)
        full: NameKey = (self.underlyings[int(self.und_col[j])], kind,
                         int(self.expiry[j].astype(np.int64)) if kind else 0,
                         float(self.strike[j]) if kind == 1 else 0.0,
                         bool(self.is_call[j]) if kind == 1 else False,
                         bool(self.is_inverse[j]))
        nm = self.name_cache.get(full)
        if nm is None:
            nm = self.instrument(j).name
            if len(self.name_cache) > 200_000:
                self.name_cache.clear()
            self.name_cache[full] = nm
        return nm

    def quantity(self, j: int) -> float:
        """Position quantity of leg ``j`` in the instrument's units (USD face for inverse
        delta-one, coins otherwise)."""
        q = float(self.coins[j])
        if self.is_inverse[j] and not self.is_option[j]:
            return q * float(self.spot[j])
        return q

    @property
    def units(self) -> FloatArray:
        """:meth:`quantity` of every leg, shape (n_legs,)."""
        inv1 = self.is_inverse & ~self.is_option
        return np.asarray(np.where(inv1, self.coins * np.nan_to_num(self.spot), self.coins),
                          dtype=np.float64)

    def portfolio(self, k: int) -> Portfolio:
        """Book ``k`` as a :class:`Portfolio` (legs in template order)."""
        legs = np.flatnonzero(self.portfolio_idx == k)
        return Portfolio(tuple(Position(self.instrument(int(j)), self.quantity(int(j)))
                               for j in legs))

    def option_vols(self, legs: NDArray[np.int64] | None = None) -> list[tuple[str, str]]:
        """(option name, underlying) pairs: flat ATM vols for :meth:`MarketPath.snapshot`."""
        sel = np.flatnonzero(self.is_option) if legs is None else legs[self.is_option[legs]]
        return [(self.name(int(j)), self.underlyings[int(self.und_col[j])]) for j in sel]

    def implied_vols(self, path: MarketPath, legs: NDArray[np.int64] | None = None
                     ) -> dict[str, float]:
        """Option name -> implied vol at the close of the path's last row (smile-aware)."""
        sel = np.flatnonzero(self.is_option) if legs is None else legs[self.is_option[legs]]
        if sel.size == 0:
            return {}
        v = path.option_vols(len(path) - 1, self.und_col[sel], self.strike[sel],
                             self.expiry[sel])
        return {self.name(int(j)): float(x) for j, x in zip(sel, v, strict=True)}

    def quotes(self, legs: NDArray[np.int64]) -> tuple[list[tuple[str, datetime]],
                                                        list[tuple[str, str]]]:
        """(underlying, expiry) of the dated legs and (name, underlying) of the perp legs."""
        exps, perps = [], []
        for j in legs:
            u = self.underlyings[int(self.und_col[j])]
            if self.is_option[j] or self.is_future[j]:
                exps.append((u, self.expiry[j].astype(datetime).replace(tzinfo=UTC)))
            if not self.is_option[j] and not self.is_spot[j]:
                perps.append((self.name(int(j)), u))
        return exps, perps

    def snapshot(self, path: MarketPath, legs: NDArray[np.int64]) -> MarketSnapshot:
        """Market snapshot at the close of the path's last row for ``legs``: index prices,
        smile vols, forwards and marks equal to the close (what every model and preset needs)."""
        unds = sorted({self.underlyings[int(c)] for c in self.und_col[legs]})
        exps, marks = self.quotes(legs)
        return path.snapshot(len(path) - 1, (), unds, exps, marks,
                             implied_vols=self.implied_vols(path, legs))

    def leg_values_usd(self, path: MarketPath, row: int) -> FloatArray:
        """Value per coin of every leg at the close of ``row`` (USD), shape (n_legs,).

        Perps and futures are worth the index (rate 0, no basis); options Black-76 with
        ``F = S`` and ``T`` from the close time of ``row`` to expiry, at the smile vol of
        ``row`` (the chain in force at instantiation when none is at ``row``). An inverse
        contract is worth the same in USD as its linear twin (coin value times index).
        Missing data gives NaN.
        """
        s = path.closes[row, self.und_col]
        out = np.array(s, dtype=np.float64)
        opt = self.is_option
        if opt.any():
            now = np.datetime64(path.known_at(row).replace(tzinfo=None), "s")
            t = (self.expiry[opt] - now).astype(np.float64) / (365.0 * 86400.0)
            if np.any(t <= 0):
                raise InputError("horizon", "an option expires before the end of the MPOR")
            vol = path.option_vols(row, self.und_col[opt], self.strike[opt], self.expiry[opt],
                                   fallback_row=self.row)
            out[opt] = b76_price_delta(s[opt], self.strike[opt], t, vol, self.is_call[opt])[0]
        fut = self.is_future
        if fut.any():
            now = np.datetime64(path.known_at(row).replace(tzinfo=None), "s")
            if np.any(self.expiry[fut] <= now):
                raise InputError("horizon", "a future expires before the end of the MPOR")
        return out

    def pnl_usd(self, path: MarketPath, row_to: int) -> FloatArray:
        """P&L per portfolio (gains positive) from this date's close to ``row_to``'s close.

        The instruments are held unchanged; NaN for books with missing data at ``row_to``.
        """
        v0 = self.leg_values_usd(path, self.row)
        v1 = self.leg_values_usd(path, row_to)
        leg = self.coins * (v1 - v0)
        bad = np.bincount(self.portfolio_idx, weights=~np.isfinite(leg),
                          minlength=self.n_portfolios) > 0
        out = np.asarray(np.bincount(self.portfolio_idx,
                                     weights=np.where(np.isfinite(leg), leg, 0.0),
                                     minlength=self.n_portfolios), dtype=np.float64)
        out[bad | ~self.active] = np.nan
        return out

    def mtm_usd(self, path: MarketPath) -> FloatArray:
        """Mark-to-market value per portfolio at instantiation (USD)."""
        v = self.leg_values_usd(path, self.row) * self.coins
        return np.asarray(np.bincount(self.portfolio_idx, weights=np.nan_to_num(v),
                                      minlength=self.n_portfolios), dtype=np.float64)


def instantiate(table: TemplateTable, path: MarketPath, row: int) -> DayBooks:
    """Instantiate every template at the close of ``row`` (see module docstring), vectorised."""
    close_time = path.known_at(row)
    day0 = np.datetime64(path.times[row], "D").astype("datetime64[s]")
    s = path.closes[row, table.und_col]
    atm = path.iv[row, table.und_col]
    is_opt = (table.kind == 1) | (table.kind == 2)
    is_fut = table.kind == 4
    is_spot = table.kind == 5
    bad_leg = ~np.isfinite(s) | (is_opt & ~np.isfinite(atm))
    n_p = len(table.templates)
    bad = np.bincount(table.portfolio_idx, weights=bad_leg, minlength=n_p) > 0
    active = table.known & ~bad
    ok_leg = active[table.portfolio_idx]
    s_safe = np.where(ok_leg, s, 1.0)
    coins = np.where(ok_leg, table.notional_usd / s_safe, 0.0)
    strike = np.full(s.shape, np.nan)
    strike[is_opt] = round_strikes(s_safe[is_opt] * table.moneyness[is_opt])
    dated = is_opt | is_fut
    expiry = np.full(s.shape, np.datetime64("NaT"), "datetime64[s]")
    expiry[dated] = day0 + (table.tenor_days[dated] * 86400 + EXPIRY_HOUR_UTC * 3600
                            ).astype("timedelta64[s]")
    is_call = table.kind == 1
    vol = np.full(s.shape, np.nan)
    o_ok = np.flatnonzero(is_opt & ok_leg)
    if o_ok.size:
        vol[o_ok] = path.option_vols(row, table.und_col[o_ok], strike[o_ok], expiry[o_ok])
    hedge = table.kind == 3
    if hedge.any():
        now = np.datetime64(close_time.replace(tzinfo=None), "s")
        o = o_ok
        t = (expiry[o] - now).astype(np.float64) / (365.0 * 86400.0)
        d = b76_price_delta(s_safe[o], strike[o], t, vol[o], is_call[o])[1]
        n_u = len(path.underlyings)
        key = table.portfolio_idx * n_u + table.und_col
        delta = np.bincount(key[o], weights=coins[o] * d, minlength=n_p * n_u)
        coins = np.where(hedge & ok_leg, -delta[key], coins)
    gross = np.asarray(np.bincount(table.portfolio_idx, weights=np.abs(coins) * s_safe,
                                   minlength=n_p), dtype=np.float64)
    return DayBooks(
        row=int(row), templates=table.templates, underlyings=path.underlyings, active=active,
        portfolio_idx=table.portfolio_idx, und_col=table.und_col, is_option=is_opt,
        is_call=is_call, strike=strike, expiry=expiry, coins=coins, gross_notional_usd=gross,
        name_cache=table.name_cache, is_inverse=table.inverse.copy(), is_future=is_fut,
        is_spot=is_spot,
        spot=np.where(ok_leg, s, np.nan), vol=vol,
    )
