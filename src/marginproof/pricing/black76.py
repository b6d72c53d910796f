"""Vectorised Black-76 prices and greeks, in USD and in coin (inverse) terms.

Black (1976): ``call = D (F N(d1) - K N(d2))``, ``put = D (K N(-d2) - F N(-d1))`` with
``d1 = (ln(F/K) + s^2 T / 2) / (s sqrt(T))``. Edge rules of ``exchange-presets.md``: no time
value when ``s sqrt(T) = 0``; ``call = D F`` when ``s sqrt(T) >= 24`` or ``K = 0``.

Greeks are with respect to the forward ``F``; vega per vol point (1 %), theta per 365-day day with
``F`` held fixed, vanna = d delta / d vol per vol point, volga = d vega / d vol per vol point.
Inverse (coin-settled) options are worth ``V_usd / F`` coins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from marginproof.pricing import dispatch

FloatArray = NDArray[np.float64]


def _prep(
    forward: ArrayLike, strike: ArrayLike, t_years: ArrayLike, vol_annual: ArrayLike,
    is_call: ArrayLike, extra: ArrayLike,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, NDArray[np.bool_], FloatArray]:
    arrs = np.broadcast_arrays(
        np.asarray(forward, dtype=np.float64), np.asarray(strike, dtype=np.float64),
        np.asarray(t_years, dtype=np.float64), np.asarray(vol_annual, dtype=np.float64),
        np.asarray(is_call, dtype=np.bool_), np.asarray(extra, dtype=np.float64),
    )
    f, k, t, s, c, e = (np.ascontiguousarray(a).ravel() for a in arrs)
    return f, k, t, s, c, e


def black76_price(
    forward: ArrayLike, strike: ArrayLike, t_years: ArrayLike, vol_annual: ArrayLike,
    is_call: ArrayLike, discount: ArrayLike = 1.0,
) -> FloatArray:
    """Black-76 price in the forward's currency.

    Parameters
    ----------
    forward, strike : array_like
        Forward and strike (USD), broadcastable to shape (n,).
    t_years : array_like
        Time to expiry, ACT/365 years (<= 0 means expired: intrinsic value).
    vol_annual : array_like
        Annualised implied vol (decimal).
    is_call : array_like of bool
    discount : array_like
        Discount factor ``D`` (1 for Deribit-style undiscounted marks).

    Returns
    -------
    ndarray of shape broadcast(inputs)
    """
    shape = np.broadcast_shapes(*(np.shape(x) for x in (forward, strike, t_years, vol_annual,
                                                          is_call, discount)))
    f, k, t, s, c, d = _prep(forward, strike, t_years, vol_annual, is_call, discount)
    out = np.empty_like(f)
    dispatch.price_kernel(f.shape[0])(f, k, t, s, c, d, out)
    return out.reshape(shape)


@dataclass(frozen=True)
class Black76Greeks:
    """Prices and greeks, each an ndarray of shape (n,), in one currency (USD or coin)."""

    price: FloatArray
    delta: FloatArray
    gamma: FloatArray
    vega_per_vol_point: FloatArray
    theta_per_day: FloatArray
    vanna_per_vol_point: FloatArray
    volga_per_vol_point: FloatArray

    def to_coin(self, forward: ArrayLike) -> Black76Greeks:
        """Greeks of the inverse option worth ``V / F`` coins (derivatives w.r.t. ``F``).

        ``v = V/F``; ``dv/dF = (delta - v)/F``; ``d2v/dF2 = (gamma - 2 dv/dF)/F``;
        vega, theta, volga divide by ``F``; vanna = ``(vanna - vega/F)/F``.
        """
        f = np.asarray(forward, dtype=np.float64)
        v = self.price / f
        dv = (self.delta - v) / f
        return Black76Greeks(
            price=v,
            delta=dv,
            gamma=(self.gamma - 2.0 * dv) / f,
            vega_per_vol_point=self.vega_per_vol_point / f,
            theta_per_day=self.theta_per_day / f,
            vanna_per_vol_point=(self.vanna_per_vol_point - self.vega_per_vol_point / f) / f,
            volga_per_vol_point=self.volga_per_vol_point / f,
        )


def black76_greeks(
    forward: ArrayLike, strike: ArrayLike, t_years: ArrayLike, vol_annual: ArrayLike,
    is_call: ArrayLike, rate: ArrayLike = 0.0,
) -> Black76Greeks:
    """Price and greeks of European options on a forward, discounted at ``exp(-rate T)``.

    Parameters are as :func:`black76_price`, with ``rate`` the continuously compounded rate.

    Returns
    -------
    Black76Greeks
        Arrays of shape (n,) (inputs are flattened after broadcasting).
    """
    f, k, t, s, c, r = _prep(forward, strike, t_years, vol_annual, is_call, rate)
    d = np.exp(-r * np.maximum(t, 0.0))
    out = np.empty((7, f.shape[0]), dtype=np.float64)
    dispatch.greeks_kernel(f.shape[0])(f, k, t, s, c, d, r, out)
    # rescale in place (same values as out[i] / unit, without four fresh n-arrays)
    for row, unit in ((3, 100.0), (4, 365.0), (5, 100.0), (6, 1e4)):
        np.divide(out[row], unit, out=out[row])
    return Black76Greeks(
        price=out[0],
        delta=out[1],
        gamma=out[2],
        vega_per_vol_point=out[3],
        theta_per_day=out[4],
        vanna_per_vol_point=out[5],
        volga_per_vol_point=out[6],
    )
