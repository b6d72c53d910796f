"""Backtest statistics against published tables (Basel 1996, Kupiec/Jorion, Acerbi-Szekely)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marginproof.backtest import stats as bs

# BCBS (1996), "Supervisory framework for the use of backtesting...", Table 1 (T = 250, 99 %):
# cumulative probability (%) of x or fewer exceptions.
BASEL_CUM = {0: 8.11, 1: 28.58, 2: 54.32, 3: 75.81, 4: 89.22, 5: 95.88, 6: 98.63, 7: 99.60,
             8: 99.89, 9: 99.97}
BASEL_ZONE = {**dict.fromkeys(range(5), "green"), **dict.fromkeys(range(5, 10), "yellow"),
              10: "red", 11: "red", 25: "red"}
BASEL_PLUS = {0: 0.0, 4: 0.0, 5: 0.40, 6: 0.50, 7: 0.65, 8: 0.75, 9: 0.85, 10: 1.0, 20: 1.0}


@pytest.mark.parametrize("x,cum", sorted(BASEL_CUM.items()))
def test_basel_cumulative_probabilities_match_bcbs_table(x: int, cum: float) -> None:
    tl = bs.traffic_light(x, 250, 0.01)
    assert round(100 * tl.cumulative_probability, 2) == pytest.approx(cum, abs=0.011)


@pytest.mark.parametrize("x,zone", sorted(BASEL_ZONE.items()))
def test_basel_zones_green_0_4_yellow_5_9_red_10(x: int, zone: str) -> None:
    assert bs.traffic_light(x, 250, 0.01).zone == zone


@pytest.mark.parametrize("x,plus", sorted(BASEL_PLUS.items()))
def test_basel_plus_factors(x: int, plus: float) -> None:
    assert bs.traffic_light(x, 250, 0.01).plus_factor == plus


def test_plus_factor_undefined_outside_t250() -> None:
    assert math.isnan(bs.traffic_light(3, 500, 0.01).plus_factor)
    assert bs.zone_bounds(250, 0.01) == (4, 9)


# Kupiec (1995) / Jorion (2007, Value at Risk, Table 6-3): 95 % non-rejection regions of the
# number of exceptions N for p = 0.01: T = 255 -> N < 7; T = 510 -> 1 < N < 11;
# T = 1000 -> 4 < N < 17. p = 0.05, T = 255 -> 6 < N < 21.
# (Jorion states no lower bound for T = 255 at 1 %; by the formula x = 0 gives LR = 5.13 > 3.84.)
@pytest.mark.parametrize("T,p,lo,hi", [(255, 0.01, 1, 6), (510, 0.01, 2, 10),
                                       (1000, 0.01, 5, 16), (255, 0.05, 7, 20),
                                       (1000, 0.05, 38, 64)])
def test_kupiec_nonrejection_regions_match_jorion_table(T: int, p: float, lo: int,
                                                        hi: int) -> None:
    accepted = [x for x in range(T + 1) if bs.kupiec_pof(T, x, p).p_value > 0.05]
    assert min(accepted) == lo and max(accepted) == hi


def test_kupiec_zero_and_all_exceptions_use_0ln0() -> None:
    T, p = 250, 0.01
    assert bs.kupiec_pof(T, 0, p).lr == pytest.approx(-2 * T * math.log(1 - p), rel=1e-14)
    assert bs.kupiec_pof(T, T, p).lr == pytest.approx(-2 * T * math.log(p), rel=1e-14)


def test_kupiec_hand_value() -> None:
    # T = 250, x = 5, p = 0.01: -2[245 ln .99 + 5 ln .01] + 2[245 ln .98 + 5 ln .02]
    lr = -2 * (245 * math.log(0.99) + 5 * math.log(0.01)) + 2 * (245 * math.log(0.98)
                                                                  + 5 * math.log(0.02))
    r = bs.kupiec_pof(250, 5, 0.01)
    assert r.lr == pytest.approx(lr, rel=1e-12)
    assert r.lr == pytest.approx(1.9568, abs=1e-3)
    assert r.p_value == pytest.approx(0.1619, abs=1e-3)


def test_kupiec_zero_at_expected_count() -> None:
    assert bs.kupiec_pof(1000, 10, 0.01).lr == 0.0
    assert bs.kupiec_pof(1000, 10, 0.01).p_value == 1.0


def test_christoffersen_hand_computed_example() -> None:
    seq = np.zeros(20, int)
    seq[[3, 4, 10, 15]] = 1  # transitions: N01 = 3, N11 = 1, N10 = 3, N00 = 12
    c = bs.transition_counts(seq)
    assert (c.n00, c.n01, c.n10, c.n11) == (12, 3, 3, 1)
    pi01, pi11, pi = 3 / 15, 1 / 4, 4 / 19
    lr = -2 * (15 * math.log(1 - pi) + 4 * math.log(pi)) + 2 * (
        12 * math.log(1 - pi01) + 3 * math.log(pi01) + 3 * math.log(1 - pi11) + math.log(pi11))
    assert bs.christoffersen_independence(seq).lr == pytest.approx(lr, rel=1e-12)
    cc = bs.christoffersen_cc(seq, 0.05)
    assert cc.lr == pytest.approx(lr + bs.kupiec_pof(20, 4, 0.05).lr, rel=1e-12)
    assert cc.dof == 2


def test_christoffersen_no_consecutive_exceptions_is_finite() -> None:
    seq = np.zeros(250, int)
    seq[[10, 100, 200]] = 1  # N11 = 0
    r = bs.christoffersen_independence(seq)
    assert math.isfinite(r.lr) and r.lr >= 0 and 0 <= r.p_value <= 1
    assert bs.christoffersen_independence(np.zeros(50, int)).lr == 0.0


def test_christoffersen_clustered_exceptions_reject() -> None:
    seq = np.zeros(500, int)
    seq[100:105] = 1
    assert bs.christoffersen_independence(seq).p_value < 0.01


def test_acerbi_szekely_definitions() -> None:
    L = np.array([1.0, 5.0, 0.5, 6.0])
    var = np.full(4, 2.0)
    es = np.full(4, 4.0)
    assert bs.acerbi_szekely_z1(L, var, es) == pytest.approx(1 - (5 / 4 + 6 / 4) / 2)
    assert bs.acerbi_szekely_z2(L, var, es, 0.5) == pytest.approx(1 - (5 / 4 + 6 / 4) / 2)
    assert bs.acerbi_szekely_z2(L, np.full(4, 10.0), es, 0.025) == 1.0
    assert math.isnan(bs.acerbi_szekely_z1(L, np.full(4, 10.0), es))


def test_z2_zero_mean_under_correct_normal_model_and_thresholds() -> None:
    from scipy import stats

    a = 0.025
    T = 250
    sigma = np.full(T, 2.0)
    var = sigma * stats.norm.ppf(1 - a)
    es = sigma * stats.norm.pdf(stats.norm.ppf(1 - a)) / a
    z = bs.simulate_z2_null(bs.normal_loss_sampler(sigma), var, es, a, 4000, seed=7)
    assert abs(z.mean()) < 0.03
    # Acerbi-Szekely (2014): the 5 % critical value of Z2 is about -0.7 across distributions.
    assert np.quantile(z, 0.05) == pytest.approx(-0.70, abs=0.08)
    assert bs.z2_zone(-0.5) == "green" and bs.z2_zone(-1.0) == "yellow"
    assert bs.z2_zone(-2.0) == "red"


def test_du_escanciano_uniform_u_is_not_rejected_and_tail_heavy_is() -> None:
    rng = np.random.default_rng(3)
    u = rng.uniform(size=5000)
    r = bs.du_escanciano(u, 0.025, 5)
    assert r.u_p_value > 0.01 and r.c_p_value > 0.01
    heavy = np.where(rng.uniform(size=5000) < 0.05, rng.uniform(0, 0.001, 5000), u)
    assert bs.du_escanciano(heavy, 0.025, 5).u_es > 3.0
    H = bs.cumulative_violations(np.array([0.0, 0.0125, 0.025, 0.5]), 0.025)
    assert H.tolist() == [1.0, 0.5, 0.0, 0.0]
