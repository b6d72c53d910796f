"""Golden values: textbook numbers for the dynamic-margin methods (risk-methods.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marginproof.addons import sqrt_impact_cost
from marginproof.apc import buffer_with_release, floor_var_long
from marginproof.feeds.history import fhs_asof, shipped_history
from marginproof.risk.ewma import ewma_sigma
from marginproof.risk.measures import expected_shortfall, var
from marginproof.scenarios.montecarlo import t_copula_tail_dependence
from marginproof.surfaces import VOGT_PARAMS, SVIParams, svi_butterfly_free
from marginproof.surfaces.ssvi import ssvi_checks

# Embrechts, McNeil & Straumann (2002), Table 1: t-copula tail dependence, rho x nu
EMS_TABLE = {
    2: (0.06, 0.18, 0.39, 0.72),
    4: (0.01, 0.08, 0.25, 0.63),
    10: (0.00, 0.01, 0.08, 0.46),
}


@pytest.mark.parametrize("nu", sorted(EMS_TABLE))
def test_t_copula_tail_dependence_matches_embrechts_mcneil_straumann(nu: int) -> None:
    got = [round(t_copula_tail_dependence(r, nu), 2) for r in (-0.5, 0.0, 0.5, 0.9)]
    assert got == list(EMS_TABLE[nu])


def test_acerbi_tasche_es_on_1_to_100() -> None:
    # k = 2.5: (100 + 99 + 0.5 * 98) / 2.5
    assert expected_shortfall(np.arange(1.0, 101.0), 0.975) == pytest.approx(99.2)
    # numpy type-7 VaR: h = 99 * 0.99 = 98.01 -> 99 + 0.01 * (100 - 99)
    assert var(np.arange(1.0, 101.0), 0.99) == pytest.approx(99.01)


def test_normal_es_converges_to_the_closed_form() -> None:
    x = np.random.default_rng(0).standard_normal(2_000_000)
    z = 1.959963984540054
    assert expected_shortfall(x, 0.975) == pytest.approx(math.exp(-z * z / 2) / math.sqrt(
        2 * math.pi) / 0.025, rel=5e-3)


def test_riskmetrics_ewma_of_a_constant_return_converges_to_it() -> None:
    r = np.r_[np.full(30, 0.01), np.full(400, 0.02)]
    assert ewma_sigma(r, 0.94)[-1] == pytest.approx(0.02, rel=1e-9)


def test_vogt_svi_is_arbitrageable_per_gatheral_jacquier() -> None:
    assert VOGT_PARAMS == (-0.0410, 0.1331, 0.3060, 0.3586, 0.4153)
    assert not svi_butterfly_free(SVIParams(*VOGT_PARAMS))[0]


def test_ssvi_eta_condition_guarantees_no_butterfly_arbitrage() -> None:
    th = np.geomspace(1e-4, 50.0, 400)
    for rho in (-0.9, -0.3, 0.0, 0.6):
        for gamma in (0.1, 0.3, 0.5):
            c = ssvi_checks(th, rho, 2.0 / (1.0 + abs(rho)), gamma)
            assert c.butterfly_1 and c.butterfly_2


def test_apc_release_buffer_textbook_path() -> None:
    m = np.array([100.0, 120.0, 140.0, 100.0, 80.0])
    np.testing.assert_allclose(buffer_with_release(m), [125.0, 125.0, 140.0, 125.0, 100.0])


def test_floor_var99_of_btc_with_ten_years_of_bitstamp_coinbase() -> None:
    long = shipped_history().long_closes["BTC"].upto(np.datetime64("2022-06-13"))
    _, r = long.log_returns()
    s = float(np.std(r[-3652:], ddof=1))
    p = long.values[-1]
    assert floor_var_long(p, s) == pytest.approx(p * (1 - math.exp(-2.3263478740408408 * s)))
    assert 0.03 < s < 0.06


def test_square_root_impact_worked_example() -> None:
    # 1,000 BTC at 50,000, 2 bp spread, 3 % daily vol, ADV 40,000, Y = 1:
    # 1000*50000*0.0002/2 + 0.03*50000*1000*sqrt(1000/40000) = 5,000 + 237,170.8
    assert float(sqrt_impact_cost(1000.0, 50_000.0, 2e-4, 0.03, 40_000.0, 1.0)) == pytest.approx(
        5_000.0 + 1_500_000.0 * math.sqrt(0.025))


def test_black_thursday_data_point() -> None:
    c = shipped_history().closes["BTC"]
    assert c.value_on(np.datetime64("2020-03-12")) == 4800.0
    assert c.value_on(np.datetime64("2020-03-11")) == pytest.approx(7934.5, abs=0.05)  # README


def test_fhs_reacts_to_the_crash_of_black_thursday() -> None:
    before = fhs_asof("BTCUSDT", "2020-03-11")
    after = fhs_asof("BTCUSDT", "2020-03-12")
    assert after.sigma_next > 2.0 * before.sigma_next
    assert after.es / 4800.0 > 2.0 * before.es / 7934.5
    assert after.es >= after.var * 0.9
