"""Per-underlying instrument valuation at the engine's valuation time (shared by every adapter).

For each underlying, every instrument any account holds is resolved once, as one unit of
quantity, against the valuation snapshot (:meth:`MarketState.full_snapshot` at the
valuation time): forward, vol, time to expiry, mark, USD value, unit greeks. Model adapters
revalue these unit books under their scenario sets; equity and the add-ons read the values and
greeks. An instrument that cannot be resolved (expired, no vol or mark, no index) is
*unpriced*: it contributes nothing, the accounts holding it are held (never lowered) and the
reason is reported (``problems``), never silently dropped.

Everything here is a pure function of (instrument names, snapshot), so a cached valuation is
keyed by the underlying's market version and the valuation time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from marginproof.engine.market_state import instrument
from marginproof.errors import InputError
from marginproof.instruments.portfolio import Portfolio, Position
from marginproof.instruments.resolved import ResolvedBook, resolve
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.result import position_greeks_usd

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class UnderlyingValuation:
    """Unit valuation of one underlying's instruments.

    Attributes
    ----------
    underlying : str
    names : tuple of str, length n
        Instruments in the underlying book's column order.
    priced : ndarray of bool, shape (n,)
    priced_idx : ndarray of int64, shape (n_priced,)
        Positions in ``names`` of the rows of ``book``.
    book : ResolvedBook
        Unit-quantity book of the priced instruments (may be empty).
    value_usd : ndarray, shape (n,)
        USD value of one unit counted in equity: spot price, option mark; 0 for futures and
        perpetuals (their P&L settles into collateral) and for unpriced instruments.
    option_units : ndarray, shape (n,)
        Coins of option exposure per unit (contract size); 0 for non-options.
    greeks : ndarray, shape (7, n)
        Unit greeks in USD terms (``position_greeks_usd`` rows), 0 where unpriced.
    is_perp : ndarray of bool, shape (n,)
    index : float
        Index price of the underlying (0 if unknown).
    problems : Mapping[str, str]
        Unpriced instrument -> why.
    key : tuple
        Cache key (market version, valuation time, number of names).
    """

    underlying: str
    names: tuple[str, ...]
    priced: NDArray[np.bool_]
    priced_idx: NDArray[np.int64]
    book: ResolvedBook
    value_usd: FloatArray
    option_units: FloatArray
    greeks: FloatArray
    is_perp: NDArray[np.bool_]
    index: float
    problems: dict[str, str] = field(default_factory=dict)
    key: tuple[int, int, int] = (0, 0, 0)


def _unit_book(names: Sequence[str], market: MarketSnapshot) -> ResolvedBook:
    return resolve(Portfolio(tuple(Position(instrument(n), 1.0) for n in names)), market)


def _precheck(name: str, market: MarketSnapshot) -> str:
    inst = instrument(name)
    if inst.underlying not in market.index_prices:
        return f"no index price for {inst.underlying}"
    if inst.expiry is not None and inst.expiry <= market.timestamp:
        return f"expired at {inst.expiry.isoformat()}"
    if inst.is_option and name not in market.implied_vols and name not in market.mark_prices:
        return "no mark price or implied vol"
    return ""


def value_underlying(underlying: str, names: Sequence[str], market: MarketSnapshot | None,
                     key: tuple[int, int, int] = (0, 0, 0)) -> UnderlyingValuation:
    """Resolve ``names`` (all on ``underlying``) as unit positions at ``market``.

    Cheap pre-checks first (expired, no vol, no index) so one bad instrument does not send the
    whole batch down the one-by-one path; then one :func:`resolve` of the rest, or, if that
    fails, one per instrument.
    """
    n = len(names)
    opt_units = np.array([instrument(x).contract_size if instrument(x).is_option else 0.0
                          for x in names])
    is_perp = np.array([instrument(x).kind.value == "perpetual" for x in names], bool) \
        if n else np.zeros(0, bool)
    problems: dict[str, str] = {}
    if market is None:
        for x in names:
            problems[x] = f"no market data for {underlying} yet"
        return UnderlyingValuation(underlying, tuple(names), np.zeros(n, bool),
                                   np.zeros(0, np.int64), _empty_book(), np.zeros(n), opt_units,
                                   np.zeros((7, n)), is_perp, 0.0, problems, key)
    ok: list[int] = []
    for i, name in enumerate(names):
        why = _precheck(name, market)
        if why:
            problems[name] = why
        else:
            ok.append(i)
    book: ResolvedBook | None = None
    if ok:
        try:
            book = _unit_book([names[i] for i in ok], market)
        except InputError:
            good: list[int] = []
            for i in ok:
                try:
                    _unit_book([names[i]], market)
                except InputError as exc:
                    problems[names[i]] = f"{exc.field}: {exc.message}"
                    continue
                good.append(i)
            ok = good
            book = _unit_book([names[i] for i in ok], market) if ok else None
    if book is None:
        book = _unit_book([], market)
    priced = np.zeros(n, bool)
    priced[ok] = True
    idx = np.array(ok, np.int64)
    value = np.zeros(n)
    greeks = np.zeros((7, n))
    if ok:
        spot = book.kind == 0
        opt = book.is_option
        v = np.zeros(len(book))
        v[spot] = book.forward[spot]
        v[opt] = book.mark_usd[opt]
        value[idx] = v
        greeks[:, idx] = position_greeks_usd(book)
    index = float(market.index_prices.get(underlying, 0.0))
    return UnderlyingValuation(underlying, tuple(names), priced, idx, book, value, opt_units,
                               greeks, is_perp, index, problems, key)


def _empty_book() -> ResolvedBook:
    from datetime import UTC, datetime

    return resolve(Portfolio(()), MarketSnapshot(datetime(2000, 1, 1, tzinfo=UTC), {"X": 1.0}))
