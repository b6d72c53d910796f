"""Pure risk measures on scenario losses (losses positive, scenario axis first).

Conventions (``shared/specs/risk-methods.md`` section 0):

* VaR is ``numpy.quantile(losses, conf)`` with the default ``method="linear"`` (Hyndman-Fan
  type 7).
* ES is the Acerbi-Tasche estimator: losses sorted descending ``L_(1) >= L_(2) >= ...``,
  ``k = N * (1 - conf)``, ``ES = (sum_{j <= floor(k)} L_(j) + (k - floor(k)) L_(floor(k)+1)) / k``.
  ``k`` is rounded to 10 decimals first so that ``500 * (1 - 0.975)`` is exactly 12.5.

Every function takes ``losses`` of shape ``(n_scenarios,)`` or ``(n_scenarios, n_columns)`` and
returns a float or an array of shape ``(n_columns,)``. Out-of-domain input raises
:class:`~marginproof.errors.InputError` (never a silent number).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from marginproof.errors import InputError

FloatArray = NDArray[np.float64]


def _check_conf(conf: float, name: str = "conf") -> float:
    c = float(conf)
    if not (0.0 < c < 1.0) or math.isnan(c):
        raise InputError(name, f"confidence must be in (0, 1) (0.99, not 99), got {conf!r}")
    return c


def _check_losses(losses: ArrayLike) -> FloatArray:
    a = np.asarray(losses, dtype=np.float64)
    if a.ndim not in (1, 2):
        raise InputError("losses", f"must be 1-D or 2-D (scenario axis first), got {a.ndim}-D")
    if a.shape[0] == 0:
        raise InputError("losses", "no scenarios")
    if not np.all(np.isfinite(a)):
        raise InputError("losses", "contains NaN or infinite values")
    return a


def tail_count(n_scenarios: int, conf: float) -> float:
    """``k = N (1 - conf)`` rounded to 10 decimals (guards ``500 * 0.025 = 12.500000000000002``)."""
    return round(n_scenarios * (1.0 - _check_conf(conf)), 10)


def var(losses: ArrayLike, conf: float) -> float | FloatArray:
    """Empirical value-at-risk: ``numpy.quantile(losses, conf, axis=0)`` (linear).

    Parameters
    ----------
    losses : array_like, shape (n_scenarios,) or (n_scenarios, n_columns)
        Scenario losses, positive = loss.
    conf : float
        Confidence level, e.g. 0.99.

    Returns
    -------
    float or ndarray of shape (n_columns,)
    """
    a = _check_losses(losses)
    q = np.quantile(a, _check_conf(conf), axis=0)
    return float(q) if a.ndim == 1 else np.asarray(q, dtype=np.float64)


def expected_shortfall(losses: ArrayLike, conf: float) -> float | FloatArray:
    """Acerbi-Tasche expected shortfall with fractional ``k = N (1 - conf)``.

    Parameters
    ----------
    losses : array_like, shape (n_scenarios,) or (n_scenarios, n_columns)
    conf : float
        Confidence level, e.g. 0.975.

    Returns
    -------
    float or ndarray of shape (n_columns,)
        Mean of the ``k`` largest losses, the last one weighted by the fractional part of ``k``.
    """
    a = _check_losses(losses)
    n = a.shape[0]
    k = tail_count(n, conf)
    if k <= 0.0:
        raise InputError("conf", f"no tail: N * (1 - conf) = {k} for N = {n}")
    m = math.floor(k)
    frac = k - m
    srt = -np.sort(-a, axis=0)  # descending along the scenario axis
    total = srt[:m].sum(axis=0)
    if frac > 0.0:
        total = total + frac * srt[m]
    es = total / k
    return float(es) if a.ndim == 1 else np.asarray(es, dtype=np.float64)


def worst_loss(losses: ArrayLike) -> float | FloatArray:
    """Largest loss per column (the stress / scenario-grid measure)."""
    a = _check_losses(losses)
    w = a.max(axis=0)
    return float(w) if a.ndim == 1 else np.asarray(w, dtype=np.float64)


def es_weights(losses: ArrayLike, conf: float) -> FloatArray:
    """Scenario weights ``w`` with ``ES = w @ losses`` for a 1-D loss vector.

    ``1/k`` on the ``floor(k)`` largest losses, ``(k - floor(k))/k`` on the next one, 0
    elsewhere (ties broken by scenario order). Position ES contributions are
    ``w @ position_losses``; they add up to the ES.

    Parameters
    ----------
    losses : array_like, shape (n_scenarios,)
    conf : float

    Returns
    -------
    ndarray, shape (n_scenarios,)
    """
    a = _check_losses(losses)
    if a.ndim != 1:
        raise InputError("losses", "es_weights takes a 1-D loss vector")
    n = a.shape[0]
    k = tail_count(n, conf)
    if k <= 0.0:
        raise InputError("conf", f"no tail: N * (1 - conf) = {k} for N = {n}")
    m = math.floor(k)
    order = np.argsort(-a, kind="stable")
    w = np.zeros(n)
    w[order[:m]] = 1.0 / k
    if k - m > 0.0:
        w[order[m]] = (k - m) / k
    return w


def var_es(losses: ArrayLike, conf_var: float = 0.99, conf_es: float = 0.975
           ) -> tuple[float | FloatArray, float | FloatArray]:
    """``(var(losses, conf_var), expected_shortfall(losses, conf_es))``."""
    return var(losses, conf_var), expected_shortfall(losses, conf_es)


def full_revaluation_loss(log_returns: ArrayLike, price: float, quantity: float = 1.0
                          ) -> FloatArray:
    """Loss of ``quantity`` coins at ``price`` under log-return scenarios, full revaluation.

    ``L_i = -q P (exp(r_i) - 1)``; never the linear approximation.

    Parameters
    ----------
    log_returns : array_like, shape (n_scenarios,) or (n_scenarios, n)
    price : float
    quantity : float
        Signed coins (negative = short).

    Returns
    -------
    ndarray, same shape as ``log_returns``
    """
    r = np.asarray(log_returns, dtype=np.float64)
    return -float(quantity) * float(price) * (np.exp(r) - 1.0)
