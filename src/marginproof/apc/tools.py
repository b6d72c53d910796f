"""The three EMIR Art. 28(1) anti-procyclicality tools, plus a buffer rebuild speed limit.

Given a daily base margin series ``M_t`` (``risk-methods.md`` section 5):

* (a) 25 % buffer. Static ``A_t = 1.25 M_t``; with release (project convention)
  ``A_0 = 1.25 M_0``, ``A_t = max(M_t, min(1.25 M_t, A_{t-1}))``: the buffer absorbs rises in ``M``
  and is rebuilt as ``M`` falls. ``rebuild_speed = g > 0`` generalises it to
  ``A_t = max(M_t, min(1.25 M_t, (1 + g) A_{t-1}))``: the called margin never rises by more than
  ``g`` a day unless the base margin itself is higher (a speed limit that never undercuts ``M``);
  ``g = 0`` is the spec formula.
* (b) ``>= 25 %`` weight on stressed observations: ``A_t = (1 - w) M_t + w M_stress``.
* (c) 10-year floor: ``A_t = max(M_t, M10y_t)``; for one coin long the floor VaR99 is
  ``P (1 - exp(-z_0.99 sigma_10y))`` with ``sigma_10y`` the sample std (ddof = 1) of the last
  3652 daily log returns up to ``T``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from marginproof.errors import InputError

FloatArray = NDArray[np.float64]

TEN_YEARS_DAYS = 3652
EMIR_BUFFER = 0.25
EMIR_MIN_STRESS_WEIGHT = 0.25


def _series(m: ArrayLike, name: str = "margin") -> FloatArray:
    a = np.asarray(m, dtype=np.float64)
    if a.ndim != 1 or a.shape[0] == 0:
        raise InputError(name, "must be a non-empty 1-D daily series")
    if not np.all(np.isfinite(a)) or np.any(a < 0.0):
        raise InputError(name, "must be finite and non-negative")
    return a


def buffer_static(margin: ArrayLike, buffer: float = EMIR_BUFFER) -> FloatArray:
    """``(1 + buffer) M_t``, shape (n,)."""
    if not buffer >= 0.0:
        raise InputError("buffer", f"must be >= 0, got {buffer!r}")
    return (1.0 + float(buffer)) * _series(margin)


def buffer_with_release(margin: ArrayLike, buffer: float = EMIR_BUFFER,
                        rebuild_speed: float = 0.0) -> FloatArray:
    """Buffer with release: ``A_t = max(M_t, min((1+b) M_t, (1+g) A_{t-1}))``, ``A_0 = (1+b) M_0``.

    Parameters
    ----------
    margin : array_like, shape (n,)
        Base margin on consecutive calendar days.
    buffer : float
        ``b`` (0.25 under EMIR).
    rebuild_speed : float
        ``g >= 0``, the largest daily relative rise of the called margin while it is above
        the base margin (0 = spec formula).

    Returns
    -------
    ndarray, shape (n,)
        Satisfies ``M_t <= A_t <= (1 + b) M_t``.
    """
    m = _series(margin)
    if not buffer >= 0.0:
        raise InputError("buffer", f"must be >= 0, got {buffer!r}")
    if not rebuild_speed >= 0.0:
        raise InputError("rebuild_speed", f"must be >= 0, got {rebuild_speed!r}")
    up = 1.0 + float(buffer)
    g = 1.0 + float(rebuild_speed)
    out = np.empty_like(m)
    a = up * float(m[0])
    out[0] = a
    for t in range(1, m.shape[0]):
        mt = float(m[t])
        a = max(mt, min(up * mt, g * a))
        out[t] = a
    return out


def release_step(previous: ArrayLike, margin: ArrayLike, buffer: float = EMIR_BUFFER,
                 rebuild_speed: float = 0.0) -> FloatArray:
    """One day of :func:`buffer_with_release` for many series at once (broadcast).

    ``A_t = max(M_t, min((1+b) M_t, (1+g) A_{t-1}))``; where ``previous`` is NaN (the first
    day of a series) ``A_t = (1+b) M_t``. NaN ``margin`` gives NaN.
    """
    if not buffer >= 0.0 or not rebuild_speed >= 0.0:
        raise InputError("buffer", "buffer and rebuild_speed must be >= 0")
    m = np.asarray(margin, dtype=np.float64)
    prev = np.asarray(previous, dtype=np.float64)
    up = (1.0 + float(buffer)) * m
    with np.errstate(invalid="ignore"):
        held = np.maximum(m, np.minimum(up, (1.0 + float(rebuild_speed)) * prev))
    return np.asarray(np.where(np.isfinite(prev), held, up), dtype=np.float64)


def stressed_weight(margin: ArrayLike, margin_stress: ArrayLike | float,
                    weight: float = EMIR_MIN_STRESS_WEIGHT) -> FloatArray:
    """``(1 - w) M_t + w M_stress`` (EMIR option (b) needs ``w >= 0.25``)."""
    if not (0.0 <= weight <= 1.0):
        raise InputError("weight", f"must be in [0, 1], got {weight!r}")
    m = _series(margin)
    s = np.broadcast_to(np.asarray(margin_stress, dtype=np.float64), m.shape)
    if not np.all(np.isfinite(s)) or np.any(s < 0.0):
        raise InputError("margin_stress", "must be finite and non-negative")
    return np.asarray((1.0 - weight) * m + weight * s, dtype=np.float64)


def sigma_10y(log_returns: ArrayLike, n_days: int = TEN_YEARS_DAYS) -> float:
    """Sample std (ddof = 1) of the last ``n_days`` daily log returns (up to and including T).

    Raises ``InputError`` when fewer than ``n_days`` returns are given.
    """
    r = np.asarray(log_returns, dtype=np.float64)
    if r.ndim != 1 or r.shape[0] < int(n_days):
        raise InputError("log_returns", f"need {n_days} returns for the lookback, got {r.size}")
    if not np.all(np.isfinite(r[-int(n_days):])):
        raise InputError("log_returns", "contains NaN or infinite values")
    return float(np.std(r[-int(n_days):], ddof=1))


def floor_var_long(price: float, sigma: float, conf: float = 0.99) -> float:
    """Floor VaR of one coin long: ``P (1 - exp(-z_conf sigma))``."""
    from scipy import stats  # on first use: importing the model need not load scipy.stats

    z = float(stats.norm.ppf(conf))
    return float(price) * (1.0 - math.exp(-z * float(sigma)))


def floor_var_short(price: float, sigma: float, conf: float = 0.99) -> float:
    """Floor VaR of one coin short: ``P (exp(z_conf sigma) - 1)``."""
    from scipy import stats  # on first use: importing the model need not load scipy.stats

    z = float(stats.norm.ppf(conf))
    return float(price) * (math.exp(z * float(sigma)) - 1.0)


def apply_floor(margin: ArrayLike, floor: ArrayLike | float) -> FloatArray:
    """``max(M_t, floor_t)``."""
    m = _series(margin)
    return np.maximum(m, np.broadcast_to(np.asarray(floor, dtype=np.float64), m.shape))
