"""t-copula Monte Carlo: tail dependence, seeding, antithetic pairs, nu fit, standard errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from marginproof.errors import InputError
from marginproof.scenarios.montecarlo import (
    TMarginal,
    fit_t_copula_nu,
    mc_var_es,
    pseudo_observations,
    sample_t_copula,
    t_copula_tail_dependence,
)

CORR = np.array([[1.0, 0.6], [0.6, 1.0]])


def test_same_seed_same_scenarios_other_seed_differs() -> None:
    a = sample_t_copula(CORR, 4.0, 2, 6, seed=1)
    b = sample_t_copula(CORR, 4.0, 2, 6, seed=1)
    c = sample_t_copula(CORR, 4.0, 2, 6, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.shape == (2 * 64 * 2, 2)


def test_antithetic_pairs_mirror_the_uniforms() -> None:
    u = sample_t_copula(CORR, 5.0, 1, 5, seed=3)
    np.testing.assert_allclose(u[0::2] + u[1::2], 1.0, atol=1e-12)
    assert np.all((u > 0) & (u < 1))


def test_sample_correlation_and_marginals() -> None:
    u = sample_t_copula(CORR, 6.0, 4, 12, seed=4)
    x = stats.t.ppf(u, 6.0)
    assert np.corrcoef(x.T)[0, 1] == pytest.approx(0.6, abs=0.03)
    assert stats.kstest(u[:, 0], "uniform").pvalue > 0.01


def test_quasi_random_beats_pseudo_random_on_a_known_mean() -> None:
    # E[U] = 1/2 exactly; batch means of Sobol + antithetic are far tighter than plain draws
    q = sample_t_copula(CORR, 4.0, 16, 8, seed=5)[:, 0].reshape(16, -1).mean(axis=1)
    p = sample_t_copula(CORR, 4.0, 16, 8, seed=5, antithetic=False,
                        quasi_random=False)[:, 0].reshape(16, -1).mean(axis=1)
    assert np.std(q) < np.std(p) / 5


def test_nu_fit_recovers_simulated_degrees_of_freedom() -> None:
    u = sample_t_copula(CORR, 4.0, 1, 11, seed=6, antithetic=False, quasi_random=False)
    nu = fit_t_copula_nu(pseudo_observations(u), CORR)
    assert 3.0 < nu < 6.0


def test_unit_variance_marginal() -> None:
    m = TMarginal.unit_variance(5.0)
    z = m.ppf(np.random.default_rng(0).random(400_000))
    assert np.var(z) == pytest.approx(1.0, rel=0.03)


def test_standard_errors_shrink_with_more_scenarios() -> None:
    rng = np.random.default_rng(7)
    small = mc_var_es(rng.standard_t(4, 8 * 512), 8)
    large = mc_var_es(rng.standard_t(4, 8 * 8192), 8)
    assert large.es_se < small.es_se
    assert small.es >= small.var * 0.5 and small.n_batches == 8


def test_tail_dependence_edge_cases() -> None:
    assert t_copula_tail_dependence(1.0, 4.0) == 1.0
    assert t_copula_tail_dependence(0.5, 1e6) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(InputError):
        t_copula_tail_dependence(-1.0, 4.0)
    with pytest.raises(InputError):
        sample_t_copula(CORR, 2.0, 1, 4, seed=1)
