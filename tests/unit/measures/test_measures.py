"""Pure risk measures: numpy-linear VaR, Acerbi-Tasche ES with fractional k."""

from __future__ import annotations

import numpy as np
import pytest

from marginproof.errors import InputError
from marginproof.risk.measures import (
    es_weights,
    expected_shortfall,
    full_revaluation_loss,
    tail_count,
    var,
    worst_loss,
)


def test_var_is_numpy_linear_quantile() -> None:
    x = np.random.default_rng(0).standard_t(3, 777)
    assert var(x, 0.99) == np.quantile(x, 0.99)
    m = np.random.default_rng(1).normal(size=(500, 3))
    np.testing.assert_array_equal(var(m, 0.975), np.quantile(m, 0.975, axis=0))


def test_tail_count_guards_floating_point() -> None:
    assert 500 * (1 - 0.975) != 12.5  # the trap the guard exists for
    assert tail_count(500, 0.975) == 12.5
    assert tail_count(1000, 0.975) == 25.0
    assert tail_count(250, 0.99) == 2.5


def test_es_with_integer_k_is_mean_of_k_largest() -> None:
    x = np.arange(1.0, 1001.0)  # k = 25
    assert expected_shortfall(x, 0.975) == pytest.approx(np.mean(np.arange(976.0, 1001.0)))


def test_es_with_fractional_k_weights_the_next_loss() -> None:
    x = np.arange(1.0, 501.0)  # k = 12.5: 12 largest + 0.5 * 13th
    expected = (np.sum(np.arange(489.0, 501.0)) + 0.5 * 488.0) / 12.5
    assert expected_shortfall(x, 0.975) == pytest.approx(expected, rel=1e-15)


def test_es_with_k_below_one_is_the_worst_loss() -> None:
    x = np.array([3.0, -1.0, 7.0, 2.0])
    assert expected_shortfall(x, 0.9) == 7.0  # k = 0.4


def test_es_weights_reproduce_es_and_sum_to_one() -> None:
    x = np.random.default_rng(2).normal(size=500)
    w = es_weights(x, 0.975)
    assert w.sum() == pytest.approx(1.0)
    assert w @ x == pytest.approx(expected_shortfall(x, 0.975), rel=1e-12)


def test_es_2d_matches_columns() -> None:
    m = np.random.default_rng(3).normal(size=(500, 4))
    es = expected_shortfall(m, 0.975)
    for j in range(4):
        assert es[j] == pytest.approx(expected_shortfall(m[:, j], 0.975), rel=1e-14)


def test_worst_loss() -> None:
    assert worst_loss([1.0, 5.0, -2.0]) == 5.0


@pytest.mark.parametrize("conf", [0.0, 1.0, 99.0, -0.5, float("nan")])
def test_confidence_outside_unit_interval_is_rejected(conf: float) -> None:
    with pytest.raises(InputError):
        var([1.0, 2.0], conf)
    with pytest.raises(InputError):
        expected_shortfall([1.0, 2.0], conf)


def test_nan_and_empty_losses_are_rejected() -> None:
    with pytest.raises(InputError):
        var([1.0, float("nan")], 0.99)
    with pytest.raises(InputError):
        expected_shortfall([], 0.975)


def test_full_revaluation_loss_is_not_linear() -> None:
    r = np.array([-0.5, 0.5])
    loss = full_revaluation_loss(r, 100.0, 2.0)
    np.testing.assert_allclose(loss, -200.0 * (np.exp(r) - 1.0))
    assert loss[0] != pytest.approx(-200.0 * r[0])
    np.testing.assert_allclose(full_revaluation_loss(r, 100.0, -2.0), -loss)
