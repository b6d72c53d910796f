"""Implied volatility by Jäckel's "Let's be rational" (2015), via ``py_lets_be_rational``.

We use the library (a faithful port of Jäckel's reference code, machine-precision in two
iterations, robust deep in/out of the money and near expiry) rather than a home-made solver.
Prices outside the no-arbitrage bounds give NaN, never a number.

:func:`implied_vol_one` calls the library as plain Python (~30 us per option): it is the
reference. :func:`implied_vol` (arrays) runs the *same library code* numba-compiled in
parallel (:mod:`marginproof.pricing._iv_kernel`; ~100x the per-option loop on 2 cores);
tests check the two agree to ~1e-12 relative and give NaN at the same places.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray


def implied_vol_one(
    price: float, forward: float, strike: float, t_years: float, is_call: bool,
    discount: float = 1.0,
) -> float:
    """Implied vol of one option from its (discounted) price; NaN outside the bounds.

    The price is inverted on the out-of-the-money side (ITM prices go through parity),
    where the time value is not swamped by intrinsic value.
    """
    if not all(math.isfinite(x) for x in (price, forward, strike, t_years, discount)):
        return math.nan
    if forward <= 0 or strike <= 0 or t_years <= 0 or discount <= 0:
        return math.nan
    p = price / discount  # undiscounted
    otm_call = strike >= forward
    if is_call != otm_call:  # ITM: convert through parity C - P = F - K
        p = p - (forward - strike) if is_call else p + (forward - strike)
    intrinsic = 0.0
    upper = forward if otm_call else strike
    if not (intrinsic < p < upper):
        return math.nan
    q = 1.0 if otm_call else -1.0
    # on first use: the library imports numba (0.2 s), which a CLI margin run need not pay
    import py_lets_be_rational as lbr

    try:
        vol = float(lbr.implied_volatility_from_a_transformed_rational_guess(
            p, forward, strike, t_years, q
        ))
    except Exception:  # the library signals bound violations by exceptions
        return math.nan
    return vol if math.isfinite(vol) and vol > 0 else math.nan


def implied_vol(
    price: ArrayLike, forward: ArrayLike, strike: ArrayLike, t_years: ArrayLike,
    is_call: ArrayLike, discount: ArrayLike = 1.0,
) -> NDArray[np.float64]:
    """Vectorised :func:`implied_vol_one` over broadcast inputs; NaN where no vol exists.

    Parameters
    ----------
    price : array_like
        Discounted option prices (USD), broadcast with the other inputs.
    forward, strike : array_like
        Forward and strike (USD).
    t_years : array_like
        Time to expiry in years.
    is_call : array_like of bool
        True for calls, False for puts.
    discount : array_like, default 1.0
        Discount factor to expiry.

    Returns
    -------
    ndarray of float64, shape = the broadcast shape of the inputs
        Implied vols per year (decimal); NaN outside the no-arbitrage bounds, on non-finite
        or non-positive forward/strike/time/discount, or where no vol exists.

    Notes
    -----
    Compiled and parallel (numba); element by element equal to :func:`implied_vol_one`
    (the same library code, see :mod:`marginproof.pricing._iv_kernel`).
    """
    # imported on first use: building the compiled copy costs ~70 ms, loading it ~0.4 s
    from marginproof.pricing import _iv_kernel

    b = np.broadcast_arrays(
        np.asarray(price, float), np.asarray(forward, float), np.asarray(strike, float),
        np.asarray(t_years, float), np.asarray(is_call, bool), np.asarray(discount, float),
    )
    flat = [np.ascontiguousarray(a).reshape(-1) for a in b]
    out = np.empty(flat[0].shape[0], dtype=np.float64)
    _iv_kernel.iv_array(flat[0], flat[1], flat[2], flat[3], flat[4], flat[5], out)
    return out.reshape(b[0].shape)


def implied_vol_reference(
    price: ArrayLike, forward: ArrayLike, strike: ArrayLike, t_years: ArrayLike,
    is_call: ArrayLike, discount: ArrayLike = 1.0,
) -> NDArray[np.float64]:
    """Plain-Python twin of :func:`implied_vol`: :func:`implied_vol_one` in a loop (slow)."""
    b = np.broadcast_arrays(
        np.asarray(price, float), np.asarray(forward, float), np.asarray(strike, float),
        np.asarray(t_years, float), np.asarray(is_call, bool), np.asarray(discount, float),
    )
    out = np.empty(b[0].shape, dtype=np.float64)
    flat = [a.ravel() for a in b]
    o = out.reshape(-1)
    for i in range(o.shape[0]):
        o[i] = implied_vol_one(
            float(flat[0][i]), float(flat[1][i]), float(flat[2][i]), float(flat[3][i]),
            bool(flat[4][i]), float(flat[5][i]),
        )
    return out
