"""FHS conventions: window, filtering, full revaluation, joint sets, historical sets."""

from __future__ import annotations

import numpy as np
import pytest

from marginproof.errors import InputError
from marginproof.feeds.history import fhs_asof, shipped_history
from marginproof.risk.ewma import ewma_sigma
from marginproof.risk.factors import factor_path
from marginproof.scenarios.fhs import (
    fhs_scenario_set,
    fhs_var_es,
    filter_returns,
    historical_scenario_set,
)


def _naive_fhs(r: np.ndarray, price: float, q: float, lam: float = 0.94, n: int = 500,
               h: float = 1.0) -> tuple[float, float]:
    """Independent, deliberately plain implementation of spec section 4."""
    s2 = np.mean(r[:30] ** 2)
    sig = []
    for x in r:
        sig.append(np.sqrt(s2))
        s2 = lam * s2 + (1 - lam) * x * x
    s_next = np.sqrt(s2)
    scen = [r[i] * s_next / sig[i] for i in range(len(r) - n, len(r))]
    losses = np.array([-q * price * (np.exp(np.sqrt(h) * x) - 1) for x in scen])
    v = np.quantile(losses, 0.99)
    srt = sorted(losses, reverse=True)
    k = 12.5
    es = (sum(srt[:12]) + 0.5 * srt[12]) / k
    return float(v), float(es)


@pytest.mark.parametrize("q", [1.0, -2.5])
def test_fhs_matches_a_plain_reimplementation(q: float) -> None:
    r = np.random.default_rng(7).standard_t(3, 900) * 0.03
    est = fhs_var_es(r, 30_000.0, q)
    v, es = _naive_fhs(r, 30_000.0, q)
    assert est.var == pytest.approx(v, rel=1e-12)
    assert est.es == pytest.approx(es, rel=1e-12)
    est2 = fhs_var_es(r, 30_000.0, q, horizon_days=2.0)
    v2, es2 = _naive_fhs(r, 30_000.0, q, h=2.0)
    assert est2.es == pytest.approx(es2, rel=1e-12)
    assert est2.var == pytest.approx(v2, rel=1e-12)


def test_scenarios_are_rescaled_to_sigma_next() -> None:
    r = np.random.default_rng(8).normal(0, 0.02, 700)
    est = fhs_var_es(r, 1.0)
    s = ewma_sigma(r)
    np.testing.assert_allclose(est.scenarios, r[-500:] * s[-1] / s[-501:-1])
    assert est.sigma_next == s[-1]


def test_fhs_reacts_to_sigma_next_while_window_is_unchanged() -> None:
    r = np.random.default_rng(9).normal(0, 0.02, 700)
    calm = fhs_var_es(r, 1.0).es
    r2 = r.copy()
    r2[-1] = -0.15  # the newest return also sits in the window, but sigma_next jumps
    assert fhs_var_es(r2, 1.0).sigma_next > 2 * fhs_var_es(r, 1.0).sigma_next
    assert fhs_var_es(r2, 1.0).es > 1.5 * calm


def test_long_and_short_differ_and_scale_linearly() -> None:
    est = fhs_asof("BTCUSDT", "2022-06-13", 1.0)
    short = fhs_asof("BTCUSDT", "2022-06-13", -1.0)
    assert est.es != pytest.approx(short.es)
    assert fhs_asof("BTCUSDT", "2022-06-13", 3.0).es == pytest.approx(3 * est.es, rel=1e-12)


def test_fhs_asof_uses_returns_up_to_and_including_the_day() -> None:
    h = shipped_history()
    c = h.closes["BTC"].upto(np.datetime64("2022-06-13"))
    _, r = c.log_returns()
    est = fhs_asof("BTCUSDT", "2022-06-13")
    ref = fhs_var_es(r, float(c.values[-1]))
    assert est.es == ref.es and est.var == ref.var
    assert len(r) == (np.datetime64("2022-06-13") - np.datetime64("2018-01-02")).astype(int) + 1


def test_window_longer_than_history_is_rejected() -> None:
    with pytest.raises(InputError):
        fhs_var_es(np.zeros(100), 1.0, window=500)


def test_filter_rejects_non_positive_vols() -> None:
    with pytest.raises(InputError):
        filter_returns([0.1], [0.0], 0.1)


@pytest.fixture(scope="module")
def paths() -> dict:
    h = shipped_history()
    return {u: factor_path(u, h.closes[u], h.atm_iv.get("BTC"), 0.94) for u in ("BTC", "SOL")}


def test_joint_set_of_one_underlying_equals_single_asset_fhs(paths: dict) -> None:
    asof = np.datetime64("2022-06-13")
    s = fhs_scenario_set(paths, ("BTC",), asof)
    est = fhs_asof("BTCUSDT", "2022-06-13")
    np.testing.assert_allclose(s.log_returns[:, 0], est.scenarios, rtol=0, atol=0)
    assert s.labels[-1] == "2022-06-13" and len(s) == 500


def test_joint_set_uses_common_dates_and_truncates_young_underlyings(paths: dict) -> None:
    asof = np.datetime64("2021-06-01")
    s = fhs_scenario_set(paths, ("BTC", "SOL"), asof)
    assert s.info["window_truncated"] and len(s) < 500
    assert s.labels[0] >= "2020-08-12"
    with pytest.raises(InputError):
        fhs_scenario_set(paths, ("SOL",), np.datetime64("2020-12-01"))


def test_iv_changes_are_dvol_after_march_2021_and_proxy_before(paths: dict) -> None:
    p = paths["BTC"]
    i = int(np.searchsorted(p.dates, np.datetime64("2022-05-10")))
    iv = shipped_history().atm_iv["BTC"]
    expected = np.log(iv.value_on(np.datetime64("2022-05-10"))
                      / iv.value_on(np.datetime64("2022-05-09")))
    assert p.iv_changes[i] == pytest.approx(expected)
    assert not p.iv_is_proxy[i]
    assert p.iv_is_proxy[int(np.searchsorted(p.dates, np.datetime64("2020-03-12")))]


def test_historical_set_overlapping_horizon(paths: dict) -> None:
    d = np.array(["2022-05-09", "2022-05-10"], dtype="datetime64[D]")
    s1 = historical_scenario_set(paths, ("BTC",), d, "", 1)
    s2 = historical_scenario_set(paths, ("BTC",), d, "", 2)
    assert not s1.horizon_applied and s2.horizon_applied
    assert s2.log_returns[1, 0] == pytest.approx(s1.log_returns[0, 0] + s1.log_returns[1, 0])
    assert "overlapping" in s2.labels[0]
