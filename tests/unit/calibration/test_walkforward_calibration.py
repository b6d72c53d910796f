"""Walk-forward calibration: FZ0 scoring, forecasts equal the model's, no look-ahead."""

from __future__ import annotations

import numpy as np
import pytest

from marginproof.calibration import calibrate_fhs, fhs_forecasts, fz0_loss
from marginproof.feeds.history import fhs_asof, shipped_history


def test_fz0_is_minimised_by_the_true_var_es_pair() -> None:
    rng = np.random.default_rng(0)
    L = rng.standard_t(4, 400_000)
    q = np.quantile(L, 0.975)
    es = L[q <= L].mean()
    best = np.mean(fz0_loss(L, q, es, 0.025))
    for fq, fe in ((1.1, 1.0), (0.9, 1.0), (1.0, 1.1), (1.0, 0.9), (1.2, 1.2)):
        assert np.mean(fz0_loss(L, fq * q, fe * es, 0.025)) > best


def test_forecasts_equal_single_date_fhs() -> None:
    dates, r = shipped_history().closes["BTC"].log_returns()
    p = fhs_forecasts(dates, r, 0.94)
    i = int(np.searchsorted(p.dates, np.datetime64("2022-06-13")))
    est = fhs_asof("BTCUSDT", "2022-06-13")
    price = shipped_history().closes["BTC"].value_on(np.datetime64("2022-06-13"))
    assert p.es[i, 0] * price == pytest.approx(est.es, rel=1e-12)
    assert p.var_conf_var[i, 0] * price == pytest.approx(est.var, rel=1e-12)
    assert p.var_conf_var[i, 1] * price == pytest.approx(fhs_asof("BTCUSDT", "2022-06-13",
                                                                   -1.0).var, rel=1e-12)
    nxt = r[np.searchsorted(dates, np.datetime64("2022-06-14"))]
    assert p.realised[i, 0] == pytest.approx(-np.expm1(nxt))


def _series(alter_after: np.datetime64 | None = None) -> dict:
    h = shipped_history()
    out = {}
    for u in ("BTC", "ETH"):
        d, r = h.closes[u].log_returns()
        r = r.copy()
        if alter_after is not None:
            r[d > alter_after] *= 3.0
        out[u] = (d, r)
    return out


def test_calibration_has_no_look_ahead_and_is_reproducible() -> None:
    end = np.datetime64("2023-12-31")
    grid = dict(lambdas=[0.94, 0.97], scalings=[1.0, 1.1], end=end, first_test_year=2021)
    a = calibrate_fhs(_series(), **grid)
    b = calibrate_fhs(_series(alter_after=end), **grid)
    assert (a.lam, a.scaling) == (b.lam, b.scaling)
    assert a.loss_table == b.loss_table
    assert [f.test_year for f in a.folds] == [2021, 2022, 2023]
    # a fold's choice only uses earlier data: altering 2023 leaves the 2021/2022 folds alone
    c = calibrate_fhs(_series(alter_after=np.datetime64("2022-12-31")), **grid)
    assert c.folds[:2] == a.folds[:2]
    assert 0.0 < a.exception_rates["var_0.99"] < 0.05
