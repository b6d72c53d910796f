"""Liquidation-cascade simulation: liquidations walk a finite order book and move the price.

**Order book.** The depth profile is the shipped Binance BTCUSDT perp snapshot (2024-08-08,
1,000 levels a side, about 397 BTC bid within 0.24 % of mid): cumulative USD depth
``D(d) = depth_scale * sum(qty * mid_snapshot)`` over the levels within relative distance ``d``
of the mid, linear between levels and extrapolated linearly beyond the last level at the
snapshot's average density. ``depth_scale`` (default 0.1) is a stress assumption: crash books
are far thinner than a calm snapshot three days after a crash; the report states the value.

**Price.** The fundamental path ``F_t`` is the real hourly close of the episode. The venue's
own liquidations add a permanent displacement: with ``V`` the cumulative net USD notional sold
by liquidations (buys negative), the traded price is ``P_t = F_t (1 - d_bid(V))`` for ``V >= 0``
and ``F_t (1 + d_ask(-V))`` otherwise, ``d = D^-1``.

**Accounts.** ``n_accounts`` linear-perp accounts (a seeded share long, the rest short), USD
notional log-normal; each opens at the first hour with collateral ``C = IM_rate_0 * notional *
(1 + cushion)`` (cushion uniform), i.e. as much leverage as the venue allows, less a buffer.
The default cushion is uniform in ``[0, 3]``: some traders run at the venue's maximum
leverage, most keep an excess of up to three times the initial margin. Every hour
``MM = mm_fraction * IM_rate_t * notional_t`` with the venue's current rate for the
position's side. An account with equity ``C + q (P - P_0) < MM`` is liquidated: its position
walks the book (average fill over the displacement it causes), which moves ``P`` and can push
further accounts under their MM in the same hour (rounds until none is left). Bad debt is
``max(0, -equity at the fill)``. No top-ups (worst case).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from marginproof.errors import InputError

FloatArray = NDArray[np.float64]
DEFAULT_DEPTH_SCALE = 0.1


@dataclass(frozen=True)
class DepthProfile:
    """Cumulative USD depth against relative distance from mid, one side.

    ``distance`` (n,) increasing from 0, ``depth_usd`` (n,) cumulative; ``density_usd`` is the
    USD depth per unit of relative distance used beyond the last level.
    """

    distance: FloatArray
    depth_usd: FloatArray
    density_usd: float

    @classmethod
    def from_levels(cls, prices: Sequence[float], qty: Sequence[float], mid: float,
                    scale: float = DEFAULT_DEPTH_SCALE) -> DepthProfile:
        """Profile of one side from level prices and quantities (coins)."""
        p = np.asarray(prices, dtype=np.float64)
        q = np.asarray(qty, dtype=np.float64)
        if p.shape != q.shape or p.size == 0 or not scale > 0:
            raise InputError("depth", "need matching non-empty price/qty arrays, scale > 0")
        d = np.abs(p - mid) / mid
        order = np.argsort(d)
        d, q = d[order], q[order]
        cum = np.cumsum(q * mid) * scale
        dist = np.concatenate([[0.0], d])
        dep = np.concatenate([[0.0], cum])
        dmax = float(d[-1]) if d[-1] > 0 else 1e-6
        return cls(dist, dep, float(cum[-1] / dmax))

    def distance_for(self, usd: FloatArray | float) -> FloatArray:
        """Relative displacement ``d = D^-1(usd)`` (clipped below 1), vectorised."""
        u = np.asarray(usd, dtype=np.float64)
        inside = np.interp(u, self.depth_usd, self.distance)
        beyond = self.distance[-1] + (u - self.depth_usd[-1]) / self.density_usd
        d = np.where(u <= self.depth_usd[-1], inside, beyond)
        return np.asarray(np.minimum(d, 0.99), dtype=np.float64)


@dataclass(frozen=True)
class OrderBook:
    bid: DepthProfile
    ask: DepthProfile

    def displacement(self, net_sold_usd: float) -> float:
        """Signed relative price displacement (negative = down) for cumulative net selling."""
        if net_sold_usd >= 0:
            return -float(self.bid.distance_for(net_sold_usd))
        return float(self.ask.distance_for(-net_sold_usd))

    def average_fill(self, v0: float, v1: float, n: int = 33) -> float:
        """Mean displacement while net selling moves from ``v0`` to ``v1`` (trapezoid)."""
        grid = np.linspace(v0, v1, n)
        d = np.array([self.displacement(float(x)) for x in grid])
        return float(np.trapezoid(d, grid) / (v1 - v0)) if v1 != v0 else float(d[0])


def order_book(bids: pd.DataFrame | None = None, asks: pd.DataFrame | None = None,
               depth: pd.DataFrame | None = None, scale: float = DEFAULT_DEPTH_SCALE
               ) -> OrderBook:
    """Build from a depth table with ``side, price, qty_btc`` (the shipped snapshot format)."""
    if depth is not None:
        bids = depth[depth["side"] == "bid"]
        asks = depth[depth["side"] == "ask"]
    if bids is None or asks is None or bids.empty or asks.empty:
        raise InputError("depth", "need both sides of the book")
    mid = 0.5 * (float(bids["price"].max()) + float(asks["price"].min()))
    return OrderBook(
        DepthProfile.from_levels(bids["price"].tolist(), bids["qty_btc"].tolist(), mid, scale),
        DepthProfile.from_levels(asks["price"].tolist(), asks["qty_btc"].tolist(), mid, scale))


@dataclass(frozen=True)
class Population:
    """Accounts: signed USD notional at entry and collateral cushion."""

    notional_usd: FloatArray
    cushion: FloatArray

    @classmethod
    def synthetic(cls, n_accounts: int = 2000, long_share: float = 0.7,
                  median_notional_usd: float = 100_000.0, sigma_log: float = 1.2,
                  cushion: tuple[float, float] = (0.0, 3.0), seed: int = 0) -> Population:
        rng = np.random.default_rng(seed)
        size = median_notional_usd * np.exp(sigma_log * rng.standard_normal(n_accounts))
        side = np.where(rng.uniform(size=n_accounts) < long_share, 1.0, -1.0)
        return cls(side * size, rng.uniform(cushion[0], cushion[1], n_accounts))


@dataclass(frozen=True)
class CascadeResult:
    """Hourly timeline and totals of one venue's cascade."""

    venue: str
    timeline: pd.DataFrame
    totals: dict[str, Any]


def simulate_cascade(venue: str, fundamental: FloatArray, times: Sequence[str],
                     im_rate_long: FloatArray, im_rate_short: FloatArray, mm_fraction: float,
                     book: OrderBook, population: Population, max_rounds: int = 100
                     ) -> CascadeResult:
    """Run the cascade of one venue over an hourly path (see module docstring).

    Parameters
    ----------
    fundamental : ndarray, shape (n_hours,)
        Real hourly closes (USD).
    im_rate_long, im_rate_short : ndarray, shape (n_hours,) or (n_hours, n_accounts)
        Venue IM as a fraction of notional for a long / short perp position at each hour
        (one rate for every account, or one per account: the live market-response check,
        :mod:`marginproof.apc.market_response`, gives each account its own; the timeline
        then reports the largest).
    mm_fraction : float
    book : OrderBook
    population : Population
    """
    F = np.asarray(fundamental, dtype=np.float64)
    n_h = F.shape[0]
    rl = np.asarray(im_rate_long, dtype=np.float64)
    rs = np.asarray(im_rate_short, dtype=np.float64)
    shapes = ((n_h,), (n_h, population.notional_usd.shape[0]))
    if rl.shape not in shapes or rs.shape not in shapes or not np.all(np.isfinite(F)):
        raise InputError("cascade", "price and rate paths must be finite, shape (n_hours,) "
                         "or (n_hours, n_accounts)")
    notional0 = population.notional_usd
    p0 = F[0]
    coins = notional0 / p0
    rate0 = np.where(coins > 0, rl[0], rs[0])
    collateral = rate0 * np.abs(notional0) * (1.0 + population.cushion)
    alive = np.ones(coins.shape[0], bool)
    sold_usd = 0.0  # cumulative net USD notional sold by liquidations (at fundamental)
    bad_debt = 0.0
    liq_usd_total = 0.0
    rows = []
    for t in range(n_h):
        liq_n, liq_usd = 0, 0.0
        for _ in range(max_rounds):
            price = F[t] * (1.0 + book.displacement(sold_usd))
            rate = np.where(coins > 0, rl[t], rs[t])
            equity = collateral + coins * (price - p0)
            mm = mm_fraction * rate * np.abs(coins) * price
            hit = alive & (equity < mm)
            if not hit.any():
                break
            flow = float(np.sum(coins[hit]) * F[t])  # + = sell
            fill_disp = book.average_fill(sold_usd, sold_usd + flow)
            fill = F[t] * (1.0 + fill_disp)
            eq_fill = collateral[hit] + coins[hit] * (fill - p0)
            bad_debt += float(np.sum(np.maximum(0.0, -eq_fill)))
            sold_usd += flow
            alive[hit] = False
            liq_n += int(hit.sum())
            liq_usd += float(np.sum(np.abs(coins[hit])) * fill)
        liq_usd_total += liq_usd
        price = F[t] * (1.0 + book.displacement(sold_usd))
        rows.append({"time": times[t], "fundamental_usd": float(F[t]), "price_usd": price,
                     "impact_pct": 100.0 * (price / F[t] - 1.0), "liquidated_accounts": liq_n,
                     "liquidated_usd": liq_usd, "cumulative_liquidated_usd": liq_usd_total,
                     "bad_debt_usd": bad_debt, "im_rate_long": float(np.max(rl[t])),
                     "im_rate_short": float(np.max(rs[t]))})
    tl = pd.DataFrame(rows)
    totals = {
        "venue": venue, "accounts": int(coins.shape[0]),
        "open_interest_usd": float(np.sum(np.abs(notional0))),
        "liquidated_accounts": int((~alive).sum()),
        "liquidated_usd": liq_usd_total,
        "max_price_impact_pct": float(tl["impact_pct"].abs().max()),
        "final_price_impact_pct": float(tl["impact_pct"].iloc[-1]),
        "bad_debt_usd": bad_debt,
        "initial_im_rate_long": float(np.max(rl[0])), "max_im_rate_long": float(rl.max()),
    }
    return CascadeResult(venue, tl, totals)


def venue_rates(provider: Any, path: Any, underlying: str = "BTC", start_row: int = 0,
                notional_usd: float = 1_000_000.0) -> tuple[FloatArray, FloatArray]:
    """Hourly IM rates (fraction of notional) of a long and a short perp of ``notional_usd``.

    ``provider`` is a :class:`~marginproof.backtest.providers.MarginProvider`; ``path`` the
    hourly :class:`~marginproof.backtest.market.MarketPath`; the positions are re-sized to the
    notional every hour (rates, not amounts).
    """
    from marginproof.backtest.portfolios import TemplateTable, instantiate, singles

    tpl = singles([underlying], notional_usd)
    table = TemplateTable.build(tpl, path.underlyings)
    n = len(path)
    rl, rs = np.full(n - start_row, np.nan), np.full(n - start_row, np.nan)
    for j, i in enumerate(range(start_row, n)):
        books = instantiate(table, path, i)
        m = provider.day_margins(path.upto(i), books).margin
        rl[j], rs[j] = m[0] / notional_usd, m[1] / notional_usd
    # a missing hour keeps the previous rate (never a lower margin on bad data)
    for a in (rl, rs):
        for j in range(1, a.shape[0]):
            if not np.isfinite(a[j]):
                a[j] = a[j - 1]
    return rl, rs
