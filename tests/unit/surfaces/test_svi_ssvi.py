"""SVI / SSVI: formulas, arbitrage checks, fits on synthetic and shipped chains."""

from __future__ import annotations

import numpy as np
import pytest

from marginproof.errors import InputError
from marginproof.io import datasets
from marginproof.surfaces import (
    VOGT_PARAMS,
    SVIParams,
    chain_smiles,
    fit_chain,
    fit_ssvi,
    fit_svi,
    fitted_vs_market,
    ssvi_checks,
    ssvi_total_variance,
    svi_butterfly_free,
    svi_g,
    svi_total_variance,
)
from marginproof.surfaces.ssvi import ssvi_derivatives, ssvi_phi
from marginproof.surfaces.svi import svi_derivatives


def test_svi_formula_and_minimum() -> None:
    p = SVIParams(0.02, 0.4, -0.3, 0.05, 0.2)
    k = np.array([-0.5, 0.05, 0.4])
    x = k - 0.05
    np.testing.assert_allclose(svi_total_variance(k, p),
                               0.02 + 0.4 * (-0.3 * x + np.sqrt(x * x + 0.04)))
    grid = np.linspace(-3, 3, 200001)
    assert svi_total_variance(grid, p).min() == pytest.approx(p.min_total_variance, abs=1e-9)


def test_svi_derivatives_match_finite_differences() -> None:
    p = SVIParams(0.01, 0.3, 0.2, -0.1, 0.3)
    k = np.linspace(-1, 1, 11)
    h = 1e-5
    _, w1, w2 = svi_derivatives(k, p)
    wp, wm, w0 = (svi_total_variance(k + h, p), svi_total_variance(k - h, p),
                  svi_total_variance(k, p))
    np.testing.assert_allclose(w1, (wp - wm) / (2 * h), rtol=1e-6)
    np.testing.assert_allclose(w2, (wp - 2 * w0 + wm) / h ** 2, rtol=1e-4)


def test_vogt_parameters_are_flagged_as_arbitrageable() -> None:
    ok, gmin = svi_butterfly_free(SVIParams(*VOGT_PARAMS))
    assert not ok and gmin < 0
    k = np.linspace(-1.5, 1.5, 301)
    neg = k[svi_g(k, SVIParams(*VOGT_PARAMS)) < 0]
    assert 0.5 < neg.min() < neg.max() < 1.5  # the arbitrage sits in the right wing


def test_a_plain_smile_is_butterfly_free() -> None:
    assert svi_butterfly_free(SVIParams(0.04, 0.1, -0.2, 0.0, 0.3))[0]


def test_invalid_svi_parameters_are_rejected() -> None:
    with pytest.raises(InputError):
        SVIParams(0.01, -0.1, 0.0, 0.0, 0.1)
    with pytest.raises(InputError):
        SVIParams(0.01, 0.1, 1.0, 0.0, 0.1)


def test_svi_fit_recovers_an_exact_smile() -> None:
    true = SVIParams(0.01, 0.12, -0.35, 0.03, 0.15)
    k = np.linspace(-0.6, 0.6, 25)
    t = 0.25
    iv = np.sqrt(svi_total_variance(k, true) / t)
    fit = fit_svi(k, iv, t)
    assert fit.rmse_vol_points < 1e-4
    assert fit.atm_vol == pytest.approx(np.sqrt(svi_total_variance(0.0, true) / t), rel=1e-5)
    assert fit.butterfly_free and fit.params.min_total_variance >= 0.0


def test_svi_fit_needs_five_points() -> None:
    with pytest.raises(InputError):
        fit_svi([0.0, 0.1, 0.2, 0.3], [0.5] * 4, 0.1)


def test_ssvi_formula_at_the_money_is_theta() -> None:
    assert float(ssvi_total_variance(0.0, 0.09, -0.3, 0.8, 0.4)) == pytest.approx(0.09)
    th, rho, eta, gam = 0.05, -0.4, 1.1, 0.3
    k = np.linspace(-1, 1, 9)
    h = 1e-5
    w, w1, w2 = ssvi_derivatives(k, th, rho, eta, gam)
    f = lambda x: ssvi_total_variance(x, th, rho, eta, gam)  # noqa: E731
    np.testing.assert_allclose(w, f(k))
    np.testing.assert_allclose(w1, (f(k + h) - f(k - h)) / (2 * h), rtol=1e-6)
    np.testing.assert_allclose(w2, (f(k + h) - 2 * f(k) + f(k - h)) / h ** 2, rtol=1e-4)


def test_ssvi_arbitrage_conditions() -> None:
    th = np.array([0.01, 0.05, 0.2, 1.0])
    ok = ssvi_checks(th, -0.5, 2.0 / 1.5, 0.4)  # eta (1 + |rho|) = 2
    assert ok.eta_condition and ok.butterfly_1 and ok.butterfly_2 and ok.arbitrage_free
    bad = ssvi_checks(th, -0.5, 5.0, 0.5)
    assert not bad.eta_condition and not bad.butterfly_2
    assert not ssvi_checks(th[::-1], -0.5, 1.0, 0.4).calendar
    assert float(ssvi_phi(1.0, 1.0, 0.5)) == pytest.approx(1.0 / np.sqrt(2.0))


def test_ssvi_fit_recovers_a_synthetic_surface() -> None:
    ts = np.array([0.05, 0.2, 0.5, 1.0])
    th = np.array([0.01, 0.035, 0.08, 0.15])
    ks = [np.linspace(-0.5, 0.5, 15)] * 4
    vols = [np.sqrt(ssvi_total_variance(k, t_, -0.3, 0.9, 0.45) / T)
            for k, t_, T in zip(ks, th, ts, strict=True)]
    s = fit_ssvi(ks, vols, ts)
    assert s.rmse_vol_points < 1e-3
    np.testing.assert_allclose(s.thetas, th, rtol=1e-4)
    assert s.checks.arbitrage_free and s.g_min >= 0
    # interpolation: theta non-decreasing, flat ATM vol outside
    grid = np.linspace(0.01, 2.0, 200)
    assert np.all(np.diff(s.theta(grid)) >= 0)
    assert s.implied_vol(0.0, 2.0) == pytest.approx(np.sqrt(th[-1] / ts[-1]), rel=1e-4)


@pytest.fixture(scope="module")
def chain_fit():  # type: ignore[no-untyped-def]
    return fit_chain(datasets.option_chain("2022-04-15"))


def test_shipped_chain_fit_quality(chain_fit) -> None:  # type: ignore[no-untyped-def]
    q = chain_fit.quality()
    assert len(q) == 10 and not chain_fit.skipped_expiries
    long = q[q["t_years"] > 0.1]
    assert (long["svi_rmse_vol_points"] < 0.5).all()       # sub-half-point fits past a month
    assert (long["ssvi_rmse_vol_points"] < 2.0).all()
    assert q["svi_butterfly_free"].all()
    assert chain_fit.ssvi.checks.arbitrage_free
    atm = q["svi_atm_vol"].to_numpy()
    assert np.all((atm > 0.3) & (atm < 1.0))


def test_smile_selection_follows_the_spec(chain_fit) -> None:  # type: ignore[no-untyped-def]
    chain = datasets.option_chain("2022-04-15")
    smiles, _ = chain_smiles(chain)
    s = smiles[3]
    g = chain[chain["expiry_unix"] == s.expiry_unix]
    assert s.forward == g["underlying_price"].median()
    assert np.all(np.abs(s.k) <= 0.7)
    assert np.all(np.where(s.is_call, s.strike >= s.forward, s.strike < s.forward))
    assert s.t_years == pytest.approx((s.expiry_unix - g["quote_unixtime"].iloc[0])
                                      / (365 * 86400))


def test_fitted_vs_market_points(chain_fit) -> None:  # type: ignore[no-untyped-def]
    pts = fitted_vs_market(chain_fit)
    assert {"k", "market_iv", "svi_iv", "ssvi_iv", "expiry_unix"} <= set(pts.columns)
    assert len(pts) == sum(len(s.k) for s in chain_fit.smiles)
    far = pts[pts["t_years"] > 0.1]
    assert np.sqrt(np.mean((far["svi_iv"] - far["market_iv"]) ** 2)) < 0.01


def test_a_second_shipped_chain_fits() -> None:
    fit = fit_chain(datasets.option_chain("2021-06-15"))
    q = fit.quality()
    assert len(q) >= 8 and fit.ssvi.checks.arbitrage_free
    assert q["svi_rmse_vol_points"].median() < 1.0
