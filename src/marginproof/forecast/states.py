"""A resolved book at many simulated market states, and the account's equity there.

A *state* is the market of one path at one step: per underlying of the book an index ratio
``x = S / S_0`` (forwards and delta-one marks move by the same ratio, as the engine's
:class:`~marginproof.engine.market_state.MarketState` does on an index-only tick), an
implied-vol multiplier ``y`` applied to every option vol of the underlying (sticky strike,
the models' own convention) and the elapsed time. States of one step share the time, so they
are handled step by step: :class:`StepStates`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.instruments.portfolio import Portfolio, Position
from marginproof.instruments.resolved import ResolvedBook
from marginproof.market.snapshot import MarketSnapshot
from marginproof.pricing.black76 import black76_price

FloatArray = NDArray[np.float64]
HOURS_PER_YEAR = 365.0 * 24.0
STABLE = ("USD", "USDC", "USDT")


@dataclass(frozen=True)
class StepStates:
    """The states of one forecast step (one per path).

    Attributes
    ----------
    t_hours : float
        Hours since the market time.
    x, y : ndarray, shape (n_states, n_u)
        Index ratio and IV multiplier per underlying of the book (``book.underlyings`` order).
    k_ret, k_iv : ndarray, shape (n_states, n_u)
        Scale of the model's one-day return and IV scenario shocks (vol updates at rollovers).
    sigma : ndarray, shape (n_states, n_u), or None
        One-day return vol in force (the liquidity add-on of ``dynamic``); None = the model's.
    funding : ndarray, shape (n_states, n_positions)
        Current funding rate of each perpetual (NaN where none is quoted).
    alive : bool ndarray, shape (n_positions,)
        Positions not expired at the step.
    """

    t_hours: float
    x: FloatArray
    y: FloatArray
    k_ret: FloatArray
    k_iv: FloatArray
    sigma: FloatArray | None
    funding: FloatArray
    alive: NDArray[np.bool_]

    @property
    def n_states(self) -> int:
        return int(self.x.shape[0])

    def take(self, rows: NDArray[np.int64] | slice) -> StepStates:
        return StepStates(self.t_hours, self.x[rows], self.y[rows], self.k_ret[rows],
                          self.k_iv[rows], None if self.sigma is None else self.sigma[rows],
                          self.funding[rows], self.alive)

    @classmethod
    def single(cls, n_u: int, n_pos: int, t_hours: float = 0.0,
               alive: NDArray[np.bool_] | None = None) -> StepStates:
        """The market itself (x = y = 1) as one state."""
        one = np.ones((1, n_u))
        return cls(t_hours, one, one.copy(), one.copy(), one.copy(), None,
                   np.full((1, n_pos), np.nan),
                   np.ones(n_pos, bool) if alive is None else alive)


def expiry_hours(book: ResolvedBook) -> FloatArray:
    """Hours from the market time to each position's expiry (inf without one)."""
    out = np.full(len(book), np.inf)
    for i, e in enumerate(book.expiries):
        if e is not None:
            out[i] = (e - book.timestamp).total_seconds() / 3600.0
    return out


def stack_book(book: ResolvedBook, sel: NDArray[np.int64], st: StepStates) -> ResolvedBook:
    """One resolved book holding positions ``sel`` at every state, state-major.

    Shape of every array: ``(n_states * len(sel),)``; position ``i`` of state ``s`` is entry
    ``s * len(sel) + i``. Only the arrays pricers read are updated (``mark_usd`` is stale).
    """
    n = sel.shape[0]
    B = st.n_states
    u = book.underlying_idx[sel]
    xr = st.x[:, u].reshape(B * n)
    yr = st.y[:, u].reshape(B * n)
    t = book.t_years[sel]
    has_exp = np.array([book.expiries[i] is not None for i in sel], bool)
    t_new = np.where(has_exp, np.maximum(t - st.t_hours / HOURS_PER_YEAR, 0.0), 0.0)

    def tile(a: NDArray[Any]) -> NDArray[Any]:
        return np.tile(a[sel], B)

    return replace(
        book,
        names=tuple(book.names[i] for i in sel) * B,
        underlying_idx=np.tile(u, B),
        kind=tile(book.kind), is_inverse=tile(book.is_inverse), is_call=tile(book.is_call),
        strike=tile(book.strike), t_years=np.tile(t_new, B),
        expiries=tuple(book.expiries[i] for i in sel) * B,
        forward=np.tile(book.forward[sel], B) * xr, index=np.tile(book.index[sel], B) * xr,
        vol=np.tile(book.vol[sel], B) * yr, rate=tile(book.rate), quantity=tile(book.quantity),
        mark_usd=tile(book.mark_usd),
        timestamp=book.timestamp + timedelta(hours=st.t_hours),
    )


def option_value_usd(book: ResolvedBook) -> FloatArray:
    """USD value per unit the engine counts in equity: Black-76 for options, else 0."""
    out = np.zeros(len(book))
    opt = book.is_option
    if opt.any():
        out[opt] = black76_price(book.forward[opt], book.strike[opt], book.t_years[opt],
                                 book.vol[opt], book.is_call[opt],
                                 np.exp(-book.rate[opt] * book.t_years[opt]))
    return out


def positions_value_usd(book: ResolvedBook, st: StepStates) -> FloatArray:
    """Equity value of the alive positions at every state, shape (n_states,).

    As the engine counts it: spot at its price, options at their Black-76 value (USD; inverse
    options at coin value times the forward, ``ResolvedBook.mark_usd``'s convention), plus the
    variation margin of futures and perpetuals since the market time (settled into cash:
    ``q (F' - F)`` for linear, ``q S'/F (1/F - 1/F')`` coins at the index for inverse).
    """
    sel = np.flatnonzero(st.alive).astype(np.int64)
    B = st.n_states
    if sel.size == 0:
        return np.zeros(B)
    sb = stack_book(book, sel, st)
    n = sel.size
    q = sb.quantity
    val = np.zeros(B * n)
    spot = sb.kind == 0
    val[spot] = q[spot] * sb.forward[spot]
    opt = sb.is_option
    if opt.any():
        val[opt] = q[opt] * option_value_usd(sb)[opt]
    dl = (sb.kind == 1) | (sb.kind == 2)
    f0 = np.tile(book.forward[sel], B)
    lin = dl & ~sb.is_inverse
    val[lin] = q[lin] * (sb.forward[lin] - f0[lin])
    inv = dl & sb.is_inverse
    val[inv] = q[inv] * (1.0 / f0[inv] - 1.0 / sb.forward[inv]) * sb.index[inv]
    return np.asarray(val.reshape(B, n).sum(axis=1), dtype=np.float64)


def collateral_value_usd(collateral: Mapping[str, float], haircuts: Mapping[str, float],
                         market: MarketSnapshot, underlyings: tuple[str, ...],
                         x: FloatArray) -> FloatArray:
    """Collateral after haircuts at every state, shape (n_states,) (the engine's rule).

    Positive balances at index times ``1 - haircut``, negative ones at the full index; stable
    coins at their index if quoted, else par; assets simulated as underlyings move with ``x``.
    Unknown assets (no haircut) count 0, as in the engine.
    """
    B = x.shape[0]
    out = np.zeros(B)
    for asset, amount in sorted(collateral.items()):
        a = float(amount)
        if a == 0.0 or asset not in haircuts:
            continue
        if asset in market.index_prices:
            px = np.full(B, float(market.index_prices[asset]))
        elif asset in STABLE:
            px = np.ones(B)
        else:
            continue
        if asset in underlyings:
            px = px * x[:, underlyings.index(asset)]
        h = float(haircuts[asset])
        out += a * px * (1.0 - h) if a > 0 else a * px
    return out


def snapshot_at(market: MarketSnapshot, book: ResolvedBook, x: FloatArray, y: FloatArray,
                t_hours: float, alive: NDArray[np.bool_],
                funding: Mapping[str, float] | None = None) -> MarketSnapshot:
    """The market of one state as a :class:`MarketSnapshot` (for ``model.margin``).

    Index prices, forwards and delta-one marks of the book's underlyings scale by ``x``; the
    book's alive options get their resolved vol times ``y`` (option marks are dropped);
    the timestamp moves by ``t_hours``.
    """
    unds = book.underlyings
    ts: datetime = market.timestamp + timedelta(hours=t_hours)
    xs = {u: float(x[i]) for i, u in enumerate(unds)}
    idx = {k: v * xs.get(k, 1.0) for k, v in market.index_prices.items()}
    fwd = {u: {e: f * xs.get(u, 1.0) for e, f in curve.items() if e > ts}
           for u, curve in market.forwards.items()}
    from marginproof.engine.market_state import instrument

    marks = {}
    for name, m in market.mark_prices.items():
        inst = instrument(name)
        if inst.is_option or (inst.expiry is not None and inst.expiry <= ts):
            continue
        marks[name] = m * xs.get(inst.underlying, 1.0)
    vols = {}
    for i in np.flatnonzero(alive & book.is_option):
        vols[book.names[i]] = float(book.vol[i] * y[int(book.underlying_idx[i])])
    fr = dict(market.funding_rates) if funding is None else dict(funding)
    return MarketSnapshot(ts, idx, forwards=fwd, mark_prices=marks, implied_vols=vols,
                          rates=dict(market.rates), funding_rates=fr)


def portfolio_at(portfolio: Portfolio, book: ResolvedBook, alive: NDArray[np.bool_]
                 ) -> Portfolio:
    """The positions still alive (expired ones settled into cash)."""
    keep = tuple(Position(p.instrument, p.quantity) for p, a in
                 zip(portfolio.positions, alive, strict=True) if a)
    return Portfolio(keep, portfolio.collateral, portfolio.preset_inputs)


def settlement_usd(book: ResolvedBook, i: int, x_at_expiry: FloatArray) -> FloatArray:
    """Cash from position ``i`` expiring: intrinsic value at the expiry index, per state.

    Options pay ``max(+-(F - K), 0)`` on their forward at expiry (USD cash); futures pay the
    variation margin accumulated since the market time (counted in equity while alive).
    """
    f = book.forward[i] * x_at_expiry
    q = book.quantity[i]
    if book.kind[i] == 3:
        k = book.strike[i]
        pay = np.maximum(f - k, 0.0) if book.is_call[i] else np.maximum(k - f, 0.0)
        return np.asarray(q * pay, dtype=np.float64)
    if book.kind[i] == 1:
        f0 = book.forward[i]
        if book.is_inverse[i]:
            return np.asarray(q * (1.0 / f0 - 1.0 / f) * f, dtype=np.float64)
        return np.asarray(q * (f - f0), dtype=np.float64)
    return np.zeros_like(f)

