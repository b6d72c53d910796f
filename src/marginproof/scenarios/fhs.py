"""Filtered historical simulation (Hull & White 1998; Barone-Adesi, Giannopoulos & Vosper 1999).

As of day ``T`` (margin set at the close of ``T`` for ``T + 1``): the window is the ``N = 500``
most recent daily log returns up to and including ``r_T``; each is rescaled to today's EWMA vol,
``r*_i = r_i * sigma_next(T) / sigma_i`` (``sigma_i`` the EWMA forecast for ``r_i``, seeded with
the mean of the first 30 squared returns of the series). Losses by full revaluation at the close
of ``T``: ``L = -q P (exp(sqrt(h) r*) - 1)``. VaR = ``numpy.quantile`` (linear), ES = Acerbi-Tasche.

Joint sets (:func:`fhs_scenario_set`) filter each underlying with its own EWMA and keep the dates
on which every underlying has a return, so cross-underlying offsets come from the joint history;
ATM-IV log changes are filtered the same way (:mod:`marginproof.risk.implied`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from marginproof.errors import InputError
from marginproof.risk.ewma import N_INIT, RISKMETRICS_LAMBDA, ewma_sigma
from marginproof.risk.factors import FactorPath
from marginproof.risk.measures import expected_shortfall, full_revaluation_loss, var, worst_loss
from marginproof.scenarios.sets import ScenarioSet, horizon_factor

FloatArray = NDArray[np.float64]

DEFAULT_WINDOW = 500


def filter_returns(returns: ArrayLike, sigma: ArrayLike, sigma_next: float) -> FloatArray:
    """``r_i * sigma_next / sigma_i``, shape of ``returns``."""
    r = np.asarray(returns, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    if r.shape != s.shape:
        raise InputError("sigma", f"shape {s.shape} must match returns {r.shape}")
    if np.any(s <= 0.0) or not float(sigma_next) > 0.0:
        raise InputError("sigma", "volatilities must be positive")
    return np.asarray(r * (float(sigma_next) / s), dtype=np.float64)


@dataclass(frozen=True)
class FHSEstimate:
    """Single-position FHS result.

    Attributes
    ----------
    var, es, worst_loss : float
        VaR at ``conf_var``, ES at ``conf_es``, largest loss (positive, price currency).
    sigma_next : float
        EWMA vol forecast for ``T + 1``.
    scenarios : ndarray, shape (window,)
        Filtered 1-day log returns, oldest first.
    losses : ndarray, shape (window,)
        Scenario losses over the horizon.
    """

    var: float
    es: float
    worst_loss: float
    sigma_next: float
    scenarios: FloatArray
    losses: FloatArray


def fhs_var_es(
    returns: ArrayLike,
    price: float,
    quantity: float = 1.0,
    *,
    lam: float = RISKMETRICS_LAMBDA,
    window: int = DEFAULT_WINDOW,
    conf_var: float = 0.99,
    conf_es: float = 0.975,
    horizon_days: float = 1.0,
    n_init: int = N_INIT,
) -> FHSEstimate:
    """FHS VaR and ES of ``quantity`` coins as of the last return.

    Parameters
    ----------
    returns : array_like, shape (n,)
        The symbol's daily log returns from its first return up to and including ``r_T``.
    price : float
        Close on ``T`` (the revaluation price).
    quantity : float
        Signed coins (negative = short).
    lam, window, conf_var, conf_es, horizon_days, n_init
        Spec defaults: 0.94, 500, 0.99, 0.975, 1 day (sqrt(h) scaling), 30.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise InputError("returns", "must be 1-D")
    if int(window) < 1 or r.shape[0] < int(window):
        raise InputError("window", f"need {window} returns, got {r.shape[0]}")
    if not float(price) > 0.0:
        raise InputError("price", f"must be positive, got {price!r}")
    sig = ewma_sigma(r, lam, n_init)
    w = int(window)
    scen = filter_returns(r[-w:], sig[-w - 1:-1], float(sig[-1]))
    f = horizon_factor(horizon_days, False)
    losses = full_revaluation_loss(f * scen, price, quantity)
    return FHSEstimate(
        var=float(var(losses, conf_var)),
        es=float(expected_shortfall(losses, conf_es)),
        worst_loss=float(worst_loss(losses)),
        sigma_next=float(sig[-1]),
        scenarios=scen,
        losses=losses,
    )


def fhs_scenario_set(
    paths: Mapping[str, FactorPath],
    underlyings: Sequence[str],
    asof: np.datetime64,
    window: int = DEFAULT_WINDOW,
    min_history: int = 250,
) -> ScenarioSet:
    """Joint FHS scenarios (1-day, filtered) as of ``asof``.

    Parameters
    ----------
    paths : Mapping[str, FactorPath]
        Factor paths (one EWMA decay) of at least ``underlyings``.
    underlyings : sequence of str
    asof : datetime64[D]
        Last return date used (``T``).
    window : int
        Number of joint scenario dates (the most recent ``window`` common return dates).
    min_history : int
        Minimum number of returns per underlying up to ``asof`` (EWMA burn-in); fewer raises.

    Returns
    -------
    ScenarioSet
        Labels are the historical dates; ``info`` has ``sigma_next``, ``iv_sigma_next``,
        ``window`` (actual), ``window_truncated`` and ``asof``.
    """
    unds = tuple(underlyings)
    if not unds:
        raise InputError("positions", "no underlyings to simulate")
    per: dict[str, tuple[NDArray[np.datetime64], FloatArray, FloatArray]] = {}
    sig_next: dict[str, float] = {}
    iv_next: dict[str, float] = {}
    common: NDArray[np.datetime64] | None = None
    for u in unds:
        p = paths[u]
        n = p.index_of(asof)
        if n < min_history:
            raise InputError(
                "market.timestamp",
                f"{u}: only {n} daily returns up to {asof} "
                f"(need >= {min_history} for EWMA burn-in)",
            )
        sn = float(p.sigma[n])
        ivn = float(p.iv_sigma[n])
        r_f = filter_returns(p.log_returns[:n], p.sigma[:n], sn)
        x_f = filter_returns(p.iv_changes[:n], p.iv_sigma[:n], ivn)
        per[u] = (p.dates[:n], r_f, x_f)
        sig_next[u] = sn
        iv_next[u] = ivn
        common = p.dates[:n] if common is None else np.intersect1d(common, p.dates[:n])
    assert common is not None
    dates = common[-int(window):]
    rets = np.empty((dates.shape[0], len(unds)))
    ivs = np.empty_like(rets)
    for j, u in enumerate(unds):
        d, r_f, x_f = per[u]
        idx = np.searchsorted(d, dates)
        rets[:, j] = r_f[idx]
        ivs[:, j] = x_f[idx]
    labels = tuple(str(x) for x in dates)
    return ScenarioSet(
        underlyings=unds, labels=labels, log_returns=rets, iv_log_changes=ivs,
        horizon_applied=False,
        info={"method": "fhs", "asof": str(asof), "window": int(dates.shape[0]),
              "window_truncated": bool(dates.shape[0] < int(window)),
              "sigma_next": sig_next, "iv_sigma_next": iv_next,
              "first_date": labels[0] if labels else None,
              "last_date": labels[-1] if labels else None},
    )


def historical_scenario_set(paths: Mapping[str, FactorPath], underlyings: Sequence[str],
                            dates: NDArray[np.datetime64], label_prefix: str = "",
                            horizon_days: int = 1) -> ScenarioSet:
    """Unfiltered historical scenarios on given return dates (stressed periods, crash windows).

    With ``horizon_days = h > 1`` each scenario is the overlapping ``h``-day sum of log returns
    ending on the date (labelled ``overlapping``), and the set is marked ``horizon_applied``.
    Dates missing for any underlying are dropped.
    """
    unds = tuple(underlyings)
    h = int(horizon_days)
    if h < 1:
        raise InputError("horizon_days", "must be >= 1")
    keep = np.asarray(dates, dtype="datetime64[D]")
    cols_r: list[FloatArray] = []
    cols_x: list[FloatArray] = []
    for u in unds:
        p = paths[u]
        cr = np.concatenate([[0.0], np.cumsum(p.log_returns)])
        cx = np.concatenate([[0.0], np.cumsum(p.iv_changes)])
        idx = np.searchsorted(p.dates, keep)
        ok = (idx < p.dates.shape[0]) & (idx - h + 1 >= 0)
        ok[ok] &= p.dates[np.minimum(idx[ok], p.dates.shape[0] - 1)] == keep[ok]
        keep = keep[ok]
        idx = idx[ok]
        cols_r = [c[ok] for c in cols_r]
        cols_x = [c[ok] for c in cols_x]
        cols_r.append(cr[idx + 1] - cr[idx + 1 - h])
        cols_x.append(cx[idx + 1] - cx[idx + 1 - h])
    if keep.shape[0] == 0:
        return ScenarioSet(unds, (), np.zeros((0, len(unds))), np.zeros((0, len(unds))), h > 1,
                           {"method": "historical"})
    suffix = f" ({h}d overlapping)" if h > 1 else ""
    labels = tuple(f"{label_prefix}{d}{suffix}" for d in keep)
    return ScenarioSet(unds, labels, np.column_stack(cols_r), np.column_stack(cols_x), h > 1,
                       {"method": "historical", "horizon_days": h})
