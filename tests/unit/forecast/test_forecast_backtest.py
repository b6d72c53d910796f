"""The forecast backtest: scores and invariants on a small synthetic hourly path."""

from __future__ import annotations

import numpy as np
import pytest

from marginproof.backtest.market import MarketPath
from marginproof.forecast.backtest import forecast_backtest, reliability_table, wilson
from marginproof.models.grid import GridModel


def _path(n: int = 60, seed: int = 0) -> MarketPath:
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0, 0.012, (n, 2))
    closes = np.array([40_000.0, 3_000.0]) * np.exp(np.cumsum(r, axis=0))
    times = (np.datetime64("2022-03-01T00:00:00", "s")
             + np.arange(n) * np.timedelta64(3600, "s"))
    iv = np.full((n, 2), 0.7)
    return MarketPath(times, np.timedelta64(1, "h"), ("BTC", "ETH"), closes, iv,
                      np.ones((n, 2), bool))


def test_wilson_and_reliability_table() -> None:
    lo, hi = wilson(5, 10)
    assert lo < 0.5 < hi and lo == pytest.approx(0.2366, abs=1e-3)
    p = np.array([0.0, 0.02, 0.5, 0.55, 0.95])
    o = np.array([False, False, True, False, True])
    t = reliability_table(p, o)
    assert t["n"].sum() == 5
    row = t[t["bin"] == "[0.5, 0.7)"].iloc[0]
    assert row["n"] == 2 and row["realised"] == 0.5
    assert row["predicted"] == pytest.approx(0.525)


def test_backtest_scores_and_invariants() -> None:
    path = _path()
    res = forecast_backtest(GridModel(), path, [2, 20], sets=("singles", "hedged"),
                            n_paths=100, levels=(1.0, 1.1, 1.5))
    df = res.records
    assert len(df) == res.reliability["n"].sum() > 0
    # the predicted probability falls with the collateral level, so does the realised call
    for _, g in df.groupby(["origin", "book"]):
        g = g.sort_values("level")
        assert np.all(np.diff(g["p"].to_numpy()) <= 0)
        assert np.all(np.diff(g["called"].to_numpy().astype(int)) <= 0)
    p, o = df["p"].to_numpy(), df["called"].to_numpy()
    assert res.brier == pytest.approx(float(np.mean((p - o) ** 2)))
    assert 0.0 <= res.brier <= 1.0
    calls = df[df["called"]]
    if len(calls):
        assert res.warned_share == pytest.approx(float((calls["p"] >= 0.05).mean()))
        assert (calls["first_call_hour"] >= 1).all()
