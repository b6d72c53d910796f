"""Liquidity add-on: cost to unwind, square-root impact (Almgren et al. 2005; Toth et al. 2011).

``cost = |q| P s / 2 + Y sigma_d P |q| sqrt(|q| / (ADV h))`` for ``q`` coins at price ``P``,
relative bid-ask spread ``s``, daily vol ``sigma_d`` (decimal), average daily volume ``ADV``
(coins), liquidation over the margin period of risk of ``h`` days. With an order book the
cost is the book walk ``sum fills |price - mid|`` while the book is deep enough; the
square-root model is the fallback (no book, or a size beyond the book).

``Y`` is calibrated (:func:`calibrate_impact`) by least squares of the square-root model on the
book-walk costs of the shipped Binance BTCUSDT perp snapshot, with the same ADV definition the
model uses in production, so the model and the book agree where they overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from marginproof.errors import InputError

FloatArray = NDArray[np.float64]


def sqrt_impact_cost(quantity: ArrayLike, price: ArrayLike, spread_rel: ArrayLike,
                     sigma_daily: ArrayLike, adv: ArrayLike, y: float = 1.0,
                     horizon_days: float = 1.0) -> FloatArray:
    """Square-root liquidation cost (USD), broadcast over the inputs.

    Parameters
    ----------
    quantity : array_like
        Coins to unwind (sign ignored: symmetric without side-specific spreads).
    price, spread_rel, sigma_daily, adv : array_like
        USD price, relative bid-ask spread, daily vol (decimal), average daily volume (coins).
    y : float
        Impact constant (order 1).
    horizon_days : float
        Liquidation period: ADV is scaled to ``ADV * h``.
    """
    q = np.abs(np.asarray(quantity, dtype=np.float64))
    p = np.asarray(price, dtype=np.float64)
    s = np.asarray(spread_rel, dtype=np.float64)
    sd = np.asarray(sigma_daily, dtype=np.float64)
    v = np.asarray(adv, dtype=np.float64)
    if np.any(v <= 0.0) or not horizon_days > 0.0:
        raise InputError("adv", "ADV and horizon must be positive")
    if np.any(p <= 0.0) or np.any(s < 0.0) or np.any(sd < 0.0) or y < 0.0:
        raise InputError("liquidity", "price > 0, spread >= 0, vol >= 0, Y >= 0 required")
    cost = q * p * s / 2.0 + y * sd * p * q * np.sqrt(q / (v * float(horizon_days)))
    return np.asarray(cost, dtype=np.float64)


def book_walk_cost(quantity: float, bid_prices: ArrayLike, bid_sizes: ArrayLike,
                   ask_prices: ArrayLike, ask_sizes: ArrayLike) -> tuple[float, float]:
    """Cost versus mid of unwinding ``quantity`` coins by walking the book.

    A long (``quantity > 0``) is sold into the bids, a short bought from the asks.

    Parameters
    ----------
    bid_prices, bid_sizes : array_like, shape (n_bid,)
        Best first (descending prices).
    ask_prices, ask_sizes : array_like, shape (n_ask,)
        Best first (ascending prices).

    Returns
    -------
    cost : float
        ``sum fills * |price - mid|`` in USD over the filled part.
    unfilled : float
        Coins left when the book runs out (0 when it is deep enough).
    """
    bp = np.asarray(bid_prices, dtype=np.float64)
    ap = np.asarray(ask_prices, dtype=np.float64)
    if bp.size == 0 or ap.size == 0:
        raise InputError("book", "needs at least one bid and one ask")
    mid = 0.5 * (float(bp[0]) + float(ap[0]))
    prices, sizes = (bp, np.asarray(bid_sizes, float)) if quantity > 0 else (
        ap, np.asarray(ask_sizes, float))
    q = abs(float(quantity))
    cum = np.cumsum(sizes)
    fills = np.clip(q - np.concatenate([[0.0], cum[:-1]]), 0.0, sizes)
    cost = float(np.sum(fills * np.abs(prices - mid)))
    return cost, max(0.0, q - float(cum[-1]))


def liquidation_cost(quantity: float, price: float, spread_rel: float, sigma_daily: float,
                     adv: float, y: float, horizon_days: float = 1.0,
                     book: tuple[ArrayLike, ArrayLike, ArrayLike, ArrayLike] | None = None
                     ) -> float:
    """Book walk when a book is given and deep enough, else the square-root model."""
    if book is not None:
        cost, unfilled = book_walk_cost(quantity, *book)
        if unfilled == 0.0:
            return cost
    return float(sqrt_impact_cost(quantity, price, spread_rel, sigma_daily, adv, y,
                                  horizon_days))


@dataclass(frozen=True)
class ImpactCalibration:
    """Result of :func:`calibrate_impact`.

    Attributes
    ----------
    y : float
        Least-squares impact constant.
    spread_rel : float
        Median relative bid-ask spread.
    sizes : ndarray, shape (n,)
        Coin sizes used.
    book_cost_usd, model_cost_usd : ndarray, shape (n,)
        Book-walk cost (mean of both sides) and the fitted model's cost.
    r2 : float
        Share of the book-cost variance explained.
    """

    y: float
    spread_rel: float
    sizes: FloatArray
    book_cost_usd: FloatArray
    model_cost_usd: FloatArray
    r2: float


def calibrate_impact(bid_prices: ArrayLike, bid_sizes: ArrayLike, ask_prices: ArrayLike,
                     ask_sizes: ArrayLike, spread_rel: float, sigma_daily: float, adv: float,
                     n_sizes: int = 20, depth_fraction: float = 0.9) -> ImpactCalibration:
    """Fit ``Y`` so the square-root model matches the book-walk cost (least squares).

    Sizes are ``n_sizes`` points up to ``depth_fraction`` of the thinner side; the book cost is
    the mean of selling and buying. ``Y = sum x (c - half spread) / sum x^2`` with
    ``x = sigma P q sqrt(q / ADV)``.
    """
    bp = np.asarray(bid_prices, float)
    ap = np.asarray(ask_prices, float)
    bs = np.asarray(bid_sizes, float)
    as_ = np.asarray(ask_sizes, float)
    depth = min(bs.sum(), as_.sum()) * depth_fraction
    sizes = np.linspace(depth / n_sizes, depth, n_sizes)
    mid = 0.5 * (bp[0] + ap[0])
    book = np.array([0.5 * (book_walk_cost(q, bp, bs, ap, as_)[0]
                            + book_walk_cost(-q, bp, bs, ap, as_)[0]) for q in sizes])
    half = sizes * mid * spread_rel / 2.0
    x = sigma_daily * mid * sizes * np.sqrt(sizes / adv)
    y = float(np.sum(x * (book - half)) / np.sum(x * x))
    model = half + y * x
    ss = float(np.sum((book - book.mean()) ** 2))
    r2 = 1.0 - float(np.sum((book - model) ** 2)) / ss if ss > 0 else float("nan")
    return ImpactCalibration(max(y, 0.0), float(spread_rel), sizes, book, model, r2)


def option_half_spread_vol_points(bid_coin: ArrayLike, ask_coin: ArrayLike, forward: ArrayLike,
                                  vega_usd_per_vol_point: ArrayLike) -> float:
    """Median option half bid-ask spread in vol points: ``(ask - bid)/2 * F / vega``.

    Inputs are inverse-option quotes in coin and the USD vega per vol point, shape (n,).
    """
    b = np.asarray(bid_coin, float)
    a = np.asarray(ask_coin, float)
    f = np.asarray(forward, float)
    v = np.asarray(vega_usd_per_vol_point, float)
    ok = (b > 0) & (a > b) & (v > 0)
    if not ok.any():
        raise InputError("chain", "no two-sided quotes with positive vega")
    return float(np.median((a[ok] - b[ok]) / 2.0 * f[ok] / v[ok]))
