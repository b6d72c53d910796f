"""Naive references of the forecast: ``model.margin`` on one simulated market, with history.

After a UTC rollover a history-driven model margins with one more day of history: the
simulated day. :func:`extended_history` appends it (close = the path's index at midnight,
ATM-IV level moved by the path's IV change, volume = the mean of the last ``adv_days`` days so
that the liquidity add-on's ADV is nearly unchanged) so that a fresh model instance margins
the simulated market exactly as it would on that day. Used by the tests and the benchmark to
measure what the forecast's scenario-scaling seam leaves out (window shift, copula refit).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from marginproof.risk.history import DAY, DailySeries, MarketHistory


def _append(s: DailySeries, day: np.datetime64, value: float) -> DailySeries:
    keep = s.dates < day
    return DailySeries(np.concatenate([s.dates[keep], [day]]),
                       np.concatenate([s.values[keep], [value]]))


def extended_history(history: MarketHistory, asof: np.datetime64,
                     closes: Mapping[str, float], iv_log_change: Mapping[str, float],
                     adv_days: int = 30) -> MarketHistory:
    """History with day ``asof + 1`` appended (see module docstring).

    Parameters
    ----------
    history : MarketHistory
    asof : numpy.datetime64
        The model's as-of day before the rollover.
    closes : Mapping[str, float]
        Underlying -> simulated close of the new day (USD).
    iv_log_change : Mapping[str, float]
        IV series name -> simulated log change of its level over the new day.
    """
    day = (asof + DAY).astype("datetime64[D]")
    new_closes = dict(history.closes)
    new_vol = dict(history.volumes)
    for u, c in closes.items():
        new_closes[u] = _append(history.closes[u], day, float(c))
        v = history.volumes.get(u)
        if v is not None and len(v.upto(asof)):
            new_vol[u] = _append(v, day, float(np.mean(v.upto(asof).values[-adv_days:])))
    atm = dict(history.atm_iv)
    for name, dx in iv_log_change.items():
        s = history.atm_iv.get(name)
        if s is None or len(s.upto(asof)) == 0 or s.upto(asof).dates[-1] != asof:
            continue
        atm[name] = _append(s, day, float(s.upto(asof).values[-1] * np.exp(dx)))
    return MarketHistory(new_closes, new_vol, atm, history.funding, history.long_closes,
                         history.sources)
