"""EWMA recursion: seed, index convention, sigma_next, correlation shrinkage."""

from __future__ import annotations

import numpy as np
import pytest

from marginproof.errors import InputError
from marginproof.risk.ewma import (
    ewma_correlation,
    ewma_covariance,
    ewma_sigma,
    ewma_sigma_next,
    ewma_variance,
    shrink_correlation,
)


def _loop(r: np.ndarray, lam: float) -> list[float]:
    s2 = [float(np.mean(r[:30] ** 2))]
    for x in r:
        s2.append(lam * s2[-1] + (1.0 - lam) * (x * x))
    return s2


def test_seed_is_mean_of_first_30_squared_returns() -> None:
    r = np.random.default_rng(0).normal(0, 0.03, 100)
    v = ewma_variance(r, 0.94)
    assert v[0] == np.mean(r[:30] ** 2)


def test_index_convention_forecast_for_r_t_is_made_after_r_t_minus_1() -> None:
    r = np.zeros(40)
    r[35] = 0.1  # a shock on day 35 moves the forecast for day 36, not 35
    v = ewma_variance(r, 0.94)
    assert v[35] == pytest.approx(0.94 ** 35 * 0.0)
    assert v[36] == pytest.approx(0.06 * 0.01)
    assert v.shape == (41,)


def test_matches_textbook_loop_exactly_for_two_decays() -> None:
    r = np.random.default_rng(1).standard_t(4, 600) * 0.02
    for lam in (0.94, 0.97):
        np.testing.assert_array_equal(ewma_variance(r, lam), np.array(_loop(r, lam)))
        # any other grouping of (1 - lam) r^2 agrees to the last few ulps
        alt = [float(np.mean(r[:30] ** 2))]
        for x in r:
            alt.append(lam * alt[-1] + ((1.0 - lam) * x) * x)
        np.testing.assert_allclose(ewma_variance(r, lam), alt, rtol=1e-14)


def test_hand_computed_three_step_example() -> None:
    r = np.full(30, 0.01)
    r = np.concatenate([r, [0.05, -0.02]])
    s0 = 1e-4
    s1 = 0.94 * s0 + 0.06 * 1e-4
    s2 = 0.94 * s1 + 0.06 * 0.0025
    s3 = 0.94 * s2 + 0.06 * 0.0004
    v = ewma_variance(r, 0.94)
    assert v[31] == pytest.approx(s2, rel=1e-14)
    assert v[32] == pytest.approx(s3, rel=1e-14)
    assert ewma_sigma_next(r, 0.94) == pytest.approx(np.sqrt(s3), rel=1e-14)
    assert ewma_sigma(r)[-1] == pytest.approx(np.sqrt(s3), rel=1e-14)


def test_sigma_next_uses_only_past_data() -> None:
    r = np.random.default_rng(2).normal(0, 0.02, 300)
    full = ewma_sigma(r)
    assert ewma_sigma_next(r[:200]) == full[200]


@pytest.mark.parametrize("lam", [0.0, 1.0, 1.5])
def test_bad_decay_is_rejected(lam: float) -> None:
    with pytest.raises(InputError):
        ewma_variance(np.ones(40), lam)


def test_too_few_returns_or_nan_are_rejected() -> None:
    with pytest.raises(InputError):
        ewma_variance(np.ones(10))
    with pytest.raises(InputError):
        ewma_variance(np.r_[np.ones(40), np.nan])


def test_ewma_covariance_diagonal_matches_univariate() -> None:
    x = np.random.default_rng(3).normal(0, 0.02, (400, 3))
    c = ewma_covariance(x, 0.94)
    for j in range(3):
        assert c[j, j] == pytest.approx(ewma_variance(x[:, j], 0.94)[-1], rel=1e-10)


def test_correlation_is_unit_diagonal_and_positive_definite() -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(size=(500, 1))
    x = np.hstack([z, z + 1e-9 * rng.normal(size=(500, 1)), rng.normal(size=(500, 1))])
    r = ewma_correlation(x, 0.94, shrinkage=0.0)
    np.testing.assert_allclose(np.diag(r), 1.0)
    assert np.linalg.eigvalsh(r).min() >= 1e-6


def test_shrinkage_moves_towards_identity() -> None:
    r = np.array([[1.0, 0.9], [0.9, 1.0]])
    s = shrink_correlation(r, 0.5)
    assert s[0, 1] == pytest.approx(0.45)
    bad = np.array([[1.0, 0.99, -0.99], [0.99, 1.0, 0.99], [-0.99, 0.99, 1.0]])
    assert np.linalg.eigvalsh(shrink_correlation(bad, 0.0)).min() >= 1e-6
