"""Walk-forward choice of the EWMA decay ``lambda`` and the confidence scaling ``c``.

For every symbol, decay and as-of day ``t`` the FHS forecasts of a one-coin long and short
(VaR and ES at ``conf_es``, VaR at ``conf_var``) are computed exactly as the ``fhs`` model does
(window of ``N`` filtered returns up to ``t``, ``sqrt(h)`` scaling) and compared with the loss
realised over ``t+1 .. t+h``. The scoring rule is the FZ0 loss of Patton, Ziegel & Chen (2019),
strictly consistent for the pair (VaR, ES) at the same level ``alpha = 1 - conf_es``; with
losses ``L``, VaR ``q > 0`` and ES ``e > 0``:
``FZ0 = 1{L > q} (L - q) / (alpha e) + q / e + ln(e) - 1``. The scaling ``c`` multiplies both.

Walk-forward: for each test year, ``(lambda, c)`` minimises the mean FZ0 over all scored days
before the year starts (pooled over symbols and sides); it is then scored on the year. The
recommended parameters minimise it over every scored day up to the end date. Forecasts on day
``t`` use returns up to ``t`` only, and a day is scored only when ``t + h`` is within the data,
so there is no look-ahead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from marginproof.errors import InputError
from marginproof.risk.ewma import N_INIT, ewma_sigma

FloatArray = NDArray[np.float64]


def fz0_loss(loss: FloatArray, var: FloatArray, es: FloatArray, alpha: float) -> FloatArray:
    """FZ0 loss per observation (losses positive; ``var``, ``es`` > 0), shape of inputs."""
    e = np.maximum(np.asarray(es, dtype=np.float64), 1e-12)
    q = np.asarray(var, dtype=np.float64)
    L = np.asarray(loss, dtype=np.float64)
    hit = (q < L).astype(np.float64)
    return np.asarray(hit * (L - q) / (alpha * e) + q / e + np.log(e) - 1.0, dtype=np.float64)


@dataclass(frozen=True)
class ForecastPanel:
    """Forecasts and realised losses of unit long/short positions (fractions of price).

    Attributes
    ----------
    dates : ndarray of datetime64[D], shape (n,)
        As-of days.
    var_es_level, es, var_conf_var : ndarray, shape (n, 2)
        VaR and ES at ``conf_es`` and VaR at ``conf_var``; column 0 long, 1 short.
    realised : ndarray, shape (n, 2)
        Loss over the next ``h`` days (NaN when not yet observed).
    """

    dates: NDArray[np.datetime64]
    var_es_level: FloatArray
    es: FloatArray
    var_conf_var: FloatArray
    realised: FloatArray


def fhs_forecasts(dates: NDArray[np.datetime64], returns: FloatArray, lam: float,
                  window: int = 500, conf_var: float = 0.99, conf_es: float = 0.975,
                  horizon_days: int = 1, n_init: int = N_INIT, min_history: int = 250
                  ) -> ForecastPanel:
    """FHS forecasts on every day with ``max(window, min_history)`` returns of history."""
    r = np.asarray(returns, dtype=np.float64)
    d = np.asarray(dates, dtype="datetime64[D]")
    n = r.shape[0]
    first = max(int(window), int(min_history))
    if n < first + 1:
        raise InputError("returns", f"need more than {first} returns")
    h = int(horizon_days)
    sig = ewma_sigma(r, lam, n_init)
    rw = sliding_window_view(r, int(window))            # (n - w + 1, w), row j ends at j+w-1
    sw = sliding_window_view(sig[:-1], int(window))
    ends = np.arange(int(window) - 1, n)
    keep = ends >= first - 1
    rw, sw, ends = rw[keep], sw[keep], ends[keep]
    filt = rw / sw * sig[ends + 1][:, None] * math.sqrt(h)
    g = np.expm1(filt)
    out_var = np.empty((ends.shape[0], 2))
    out_es = np.empty_like(out_var)
    out_v99 = np.empty_like(out_var)
    k = round(int(window) * (1.0 - conf_es), 10)
    m = math.floor(k)
    for col, sign in ((0, -1.0), (1, 1.0)):
        losses = sign * g
        out_var[:, col] = np.quantile(losses, conf_es, axis=1)
        out_v99[:, col] = np.quantile(losses, conf_var, axis=1)
        srt = -np.sort(-losses, axis=1)
        tot = srt[:, :m].sum(axis=1)
        if k - m > 0:
            tot = tot + (k - m) * srt[:, m]
        out_es[:, col] = tot / k
    cum = np.concatenate([[0.0], np.cumsum(r)])
    fwd = np.full(ends.shape[0], np.nan)
    ok = ends + h <= n - 1
    fwd[ok] = cum[ends[ok] + h + 1] - cum[ends[ok] + 1]
    g_real = np.expm1(fwd)
    realised = np.column_stack([-g_real, g_real])
    return ForecastPanel(d[ends], out_var, out_es, out_v99, realised)


@dataclass(frozen=True)
class FoldResult:
    """One walk-forward fold (``*_obs`` count days x symbols x sides)."""

    test_year: int
    lam: float
    scaling: float
    train_obs: int
    test_obs: int
    fz0_test: float
    es_level_exception_rate: float
    var99_exception_rate: float


@dataclass(frozen=True)
class CalibrationResult:
    """Outcome of :func:`calibrate_fhs`.

    Attributes
    ----------
    lam, scaling : float
        Recommended on every scored day up to the end date.
    loss_table : Mapping[tuple[float, float], float]
        Mean FZ0 over that sample for every grid point.
    folds : tuple of FoldResult
        Walk-forward out-of-sample record.
    n_obs : int
        Scored observations (days x symbols x sides) behind the recommendation.
    exception_rates : Mapping[str, float]
        In-sample exception rates of the recommended forecasts.
    """

    lam: float
    scaling: float
    loss_table: Mapping[tuple[float, float], float]
    folds: tuple[FoldResult, ...]
    n_obs: int
    exception_rates: Mapping[str, float]


def calibrate_fhs(series: Mapping[str, tuple[NDArray[np.datetime64], FloatArray]],
                  lambdas: Sequence[float], scalings: Sequence[float], end: np.datetime64,
                  first_test_year: int, window: int = 500, conf_var: float = 0.99,
                  conf_es: float = 0.975, horizon_days: int = 1) -> CalibrationResult:
    """Choose ``(lambda, c)`` by FZ0 loss, walk-forward by calendar year (see module doc).

    Parameters
    ----------
    series : Mapping[str, (dates, returns)]
        Daily log returns per symbol (returns after ``end`` are ignored).
    lambdas, scalings : sequences of float
        Grids.
    end : datetime64[D]
        Last day whose realised loss may be used.
    first_test_year : int
        First out-of-sample year.
    """
    if not lambdas or not scalings:
        raise InputError("grid", "empty lambda or scaling grid")
    alpha = 1.0 - conf_es
    h = int(horizon_days)
    # per lambda: pooled arrays over symbols and sides
    pooled: dict[float, tuple[NDArray[np.datetime64], FloatArray, FloatArray, FloatArray,
                              FloatArray]] = {}
    for lam in lambdas:
        dd, vq, ve, v99, real = [], [], [], [], []
        for _, (dates, r) in sorted(series.items()):
            dts = np.asarray(dates, dtype="datetime64[D]")
            keep = dts <= end
            p = fhs_forecasts(dts[keep], np.asarray(r)[keep], lam, window, conf_var, conf_es, h)
            ok = np.isfinite(p.realised[:, 0])
            for col in (0, 1):
                dd.append(p.dates[ok])
                vq.append(p.var_es_level[ok, col])
                ve.append(p.es[ok, col])
                v99.append(p.var_conf_var[ok, col])
                real.append(p.realised[ok, col])
        pooled[float(lam)] = (np.concatenate(dd), np.concatenate(vq), np.concatenate(ve),
                              np.concatenate(v99), np.concatenate(real))

    def mean_loss(lam: float, c: float, mask: NDArray[np.bool_]) -> float:
        _, m_vq, m_ve, _, m_real = pooled[lam]
        return float(np.mean(fz0_loss(m_real[mask], c * m_vq[mask], c * m_ve[mask], alpha)))

    def choose(mask_of: dict[float, NDArray[np.bool_]]) -> tuple[float, float, dict[
            tuple[float, float], float]]:
        table = {(float(lam), float(c)): mean_loss(float(lam), float(c), mask_of[float(lam)])
                 for lam in lambdas for c in scalings}
        best = min(table, key=lambda key: (table[key], abs(key[1] - 1.0), -key[0]))
        return best[0], best[1], table

    folds: list[FoldResult] = []
    last_year = int(str(end)[:4])
    for year in range(int(first_test_year), last_year + 1):
        start = np.datetime64(f"{year}-01-01", "D")
        stop = np.datetime64(f"{year + 1}-01-01", "D")
        train = {lam: pooled[lam][0] < start for lam in pooled}
        if min(int(m.sum()) for m in train.values()) < 250:
            continue
        lam_f, c_f, _ = choose(train)
        f_d, f_vq, f_ve, f_v99, f_real = pooled[lam_f]
        test = (f_d >= start) & (f_d < stop)
        if not test.any():
            continue
        folds.append(FoldResult(
            year, lam_f, c_f, int(train[lam_f].sum()), int(test.sum()),
            float(np.mean(fz0_loss(f_real[test], c_f * f_vq[test], c_f * f_ve[test], alpha))),
            float(np.mean(f_real[test] > c_f * f_vq[test])),
            float(np.mean(f_real[test] > c_f * f_v99[test])),
        ))
    all_mask = {lam: np.ones(pooled[lam][0].shape[0], dtype=bool) for lam in pooled}
    lam_b, c_b, table = choose(all_mask)
    _, b_vq, _, b_v99, b_real = pooled[lam_b]
    rates = {f"var_{conf_es:g}": float(np.mean(b_real > c_b * b_vq)),
             f"var_{conf_var:g}": float(np.mean(b_real > c_b * b_v99)),
             "expected_es_level": alpha, "expected_var_level": 1.0 - conf_var}
    return CalibrationResult(lam_b, c_b, table, tuple(folds), int(b_real.shape[0]), rates)
