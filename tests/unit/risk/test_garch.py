"""GARCH(1,1)-t wrapper: the spec's arch recipe, VaR formula, boundary flag, fixed filter."""

from __future__ import annotations

import math

import numpy as np
import pytest
from arch import arch_model
from scipy import stats

from marginproof.errors import InputError
from marginproof.feeds.history import shipped_history
from marginproof.risk.garch import fit_garch_t, garch_filter


@pytest.fixture(scope="module")
def btc_window() -> np.ndarray:
    h = shipped_history()
    _, r = h.closes["BTC"].upto(np.datetime64("2022-06-13")).log_returns()
    return r[-1000:]


def test_fit_reproduces_a_direct_arch_call(btc_window: np.ndarray) -> None:
    fit = fit_garch_t(btc_window)
    res = arch_model(100 * btc_window, mean="Constant", vol="GARCH", p=1, q=1, dist="t",
                     rescale=False).fit(disp="off")
    p = res.params
    assert fit.mu == pytest.approx(p["mu"])
    assert fit.alpha == pytest.approx(p["alpha[1]"])
    assert fit.beta == pytest.approx(p["beta[1]"])
    assert fit.nu == pytest.approx(p["nu"])
    assert fit.loglik == pytest.approx(res.loglikelihood)
    s_next = math.sqrt(res.forecast(horizon=1, reindex=False).variance.to_numpy()[-1, 0])
    assert fit.sigma_next_pct == pytest.approx(s_next)
    assert fit.alpha + fit.beta <= 1.0 + 1e-9
    assert 2.0 < fit.nu < 10.0


def test_var99_follows_the_spec_formula(btc_window: np.ndarray) -> None:
    fit = fit_garch_t(btc_window)
    p = 22487.41
    z = stats.t.ppf(0.01, fit.nu) * math.sqrt((fit.nu - 2) / fit.nu)
    assert fit.var_long(p) == pytest.approx(-p * (math.exp((fit.mu + fit.sigma_next_pct * z)
                                                          / 100) - 1))
    assert fit.var_long(p) > 0


def test_filter_with_fixed_params_reproduces_the_fit_forecast(btc_window: np.ndarray) -> None:
    fit = fit_garch_t(btc_window)
    sigma, s_next = garch_filter(btc_window, fit)
    assert sigma.shape == btc_window.shape
    assert s_next == pytest.approx(fit.sigma_next)


def test_integrated_flag_on_igarch_like_series() -> None:
    rng = np.random.default_rng(5)
    n = 1500
    r = np.empty(n)
    s2 = 1e-4
    for t in range(n):  # IGARCH(1,1): alpha + beta = 1
        r[t] = math.sqrt(s2) * rng.standard_t(3) / math.sqrt(3.0)
        s2 = 2e-7 + 0.12 * r[t] ** 2 + 0.88 * s2
    fit = fit_garch_t(r)
    assert fit.alpha + fit.beta == pytest.approx(1.0, abs=0.03)
    assert fit.integrated == (fit.alpha + fit.beta >= 1 - 1e-4)


def test_short_windows_are_rejected() -> None:
    with pytest.raises(InputError):
        fit_garch_t(np.zeros(50))
