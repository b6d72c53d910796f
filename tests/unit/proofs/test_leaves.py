"""The committed path: exact equity parts, one rounding per field against the operator, declared
scales, stress deficits, parameter validation."""

from __future__ import annotations

from fractions import Fraction

import pytest

from marginproof.errors import InputError
from marginproof.instruments.collateral import value_collateral
from marginproof.instruments.portfolio import CollateralPolicy, Portfolio
from marginproof.proofs.leaves import (
    AccountInput,
    account_inputs,
    account_values,
    asset_prices,
    collateral_parts,
    equity_atoms,
    margin_atoms,
    market_body,
    market_from_body,
    parse_params,
    shocked_market,
    stress_deficits,
)
from marginproof.storage.proofstore import default_params
from tests.unit.proofs.helpers import tiny_market


@pytest.fixture(scope="module")
def params():
    return parse_params(default_params("standard", depth_min=3, privacy=False))


def test_logged_market_round_trips_to_the_same_floats() -> None:
    m = tiny_market(40_123.456789)
    back = market_from_body(market_body(m))
    assert back.index_prices == m.index_prices
    assert back.implied_vols == m.implied_vols
    assert dict(back.forwards["BTC"]) == dict(m.forwards["BTC"])


def test_collateral_parts_are_exact_and_agree_with_the_float_valuation(params) -> None:
    mb = market_body(tiny_market())
    prices = asset_prices(params, mb)
    acct = AccountInput("a", (), {"BTC": 12_345_678, "USDC": 1_000_250_000,
                                  "USDT": -1_500_500_000})
    assets, liabs = collateral_parts(acct, params, prices)
    assert assets == Fraction(12_345_678, 10**8) * 40_000 * Fraction(95, 100) + Fraction(100025,
                                                                                        100)
    assert liabs == Fraction(15005, 10)
    a, lb = equity_atoms(acct, params, market_from_body(mb), prices)
    assert a == int(assets * 10**6 // 1) and lb == -(-liabs * 10**6 // 1)  # floor / ceil
    pol = CollateralPolicy({"BTC": 0.05, "USDC": 0.0, "USDT": 0.02})
    fl = value_collateral({"BTC": 0.12345678, "USDC": 1000.25, "USDT": -1500.5},
                          market_from_body(mb), pol).total_usd
    assert abs((a - lb) / 1e6 - fl) < 2e-6


def test_negative_equity_is_committed_as_liabilities_not_clamped(params) -> None:
    mb = market_body(tiny_market())
    acct = AccountInput("a", (), {"USDC": -5_000_000})
    assert equity_atoms(acct, params, market_from_body(mb), asset_prices(params, mb)) == (
        0, 5_000_000)


def test_short_options_count_as_liabilities(params) -> None:
    """The issue's case: a short straddle's value lowers equity (here as liabilities)."""
    m = tiny_market()
    mb = market_body(m)
    accts = account_inputs({"a": [{"instrument": "BTC-29MAR24-40000-C", "quantity": "-10"},
                                  {"instrument": "BTC-29MAR24-40000-P", "quantity": "-10"}]},
                           {"a": {"USDC": "100000"}}, params)
    assets, liabs = equity_atoms(accts[0], params, m, asset_prices(params, mb))
    assert assets == 100_000 * 10**6
    from marginproof.instruments.equity import account_equity

    eq = account_equity({"USDC": 100_000.0}, portfolio_of_lines(accts[0]), m,
                        CollateralPolicy({"BTC": 0.05, "USDC": 0.0, "USDT": 0.02, "ETH": 0.1}))
    assert eq.positions_usd < -20_000
    assert abs(liabs / 1e6 + eq.positions_usd) < 1e-6
    assert abs((assets - liabs) / 1e6 - eq.total_usd) < 2e-6


def portfolio_of_lines(acct: AccountInput) -> Portfolio:
    from marginproof.proofs.leaves import portfolio_of

    return portfolio_of(acct)


def test_margin_is_rounded_up_once_after_its_float_error_bound(params) -> None:
    m = tiny_market()
    accts = account_inputs({"a": [{"instrument": "BTC-PERPETUAL", "quantity": "-100000"}]},
                           {"a": {"USDC": "10"}}, params)
    vals = account_values(accts[0], params, params.model(), m,
                          asset_prices(params, market_body(m)))
    r = params.model().margin(Portfolio.of([("BTC-PERPETUAL", -100000.0)]), m)
    f = params.fields
    im, mm = vals[f.index("im")], vals[f.index("mm")]
    assert im >= Fraction(r.initial_margin) * 10**6 and mm >= Fraction(r.maintenance_margin) * 10**6
    assert im - Fraction(r.initial_margin) * 10**6 < 2  # the guard is far below one atom here
    assert (im, mm) == margin_atoms(r, 6, "a")
    assert vals[f.index("short")] == max(0, mm + vals[f.index("liabs")] - vals[f.index("assets")])
    assert vals[f.index("cr:USDC")] == 10_000_000
    assert vals[f.index("db:USDC")] == 0


def test_stress_takes_the_venues_worst_scenario(params) -> None:
    m = tiny_market()
    mb = market_body(m)
    prices = asset_prices(params, mb)
    accts = account_inputs({"long": [{"instrument": "BTC-PERPETUAL", "quantity": "400000"}],
                            "short": [{"instrument": "BTC-29MAR24-40000-P", "quantity": "-50"}]},
                           {"long": {"USDC": "1000"}, "short": {"USDC": "1000"}}, params)
    k, totals, deficits = stress_deficits(accts, params, m, prices)
    assert totals[k] == max(totals) and sum(deficits) == totals[k]
    assert "crash" in params.stress[k].name and totals[k] > 0
    crashed = shocked_market(m, params.stress[k])
    assert crashed.index("BTC") < m.index("BTC")
    assert crashed.implied_vols["BTC-29MAR24-40000-P"] > m.implied_vols["BTC-29MAR24-40000-P"]


def test_declared_scales_refuse_excess_digits(params) -> None:
    body = market_body(tiny_market())
    body["index_prices"]["BTC"] = "40000.1234567890123"  # 13 decimals > 12
    with pytest.raises(InputError, match="index_prices.BTC"):
        market_from_body(body, params.price_scale)
    with pytest.raises(InputError, match="quantity decimals"):
        account_inputs({"a": [{"instrument": "BTC-PERPETUAL", "quantity": "1.000000001"}]}, {},
                       params)


def test_monte_carlo_needs_a_logged_recalibration_seed() -> None:
    p = parse_params(default_params("mc", depth_min=3, privacy=False))
    assert p.uses_randomness
    with pytest.raises(InputError, match="recalibration"):
        p.model()
    a, b = p.model(seed=1), p.model(seed=2)
    assert a.params_hash != b.params_hash


def test_rounding_exploit_amounts_with_extra_digits_are_refused(params) -> None:
    with pytest.raises(InputError, match="more than 6 decimals"):
        account_inputs({}, {"a": {"USDC": "0.0000001"}}, params)


def test_unknown_assets_and_duplicate_instruments_are_refused(params) -> None:
    with pytest.raises(InputError, match="collateral assets"):
        account_inputs({}, {"a": {"DOGE": "1"}}, params)
    line = {"instrument": "BTC-PERPETUAL", "quantity": "1"}
    with pytest.raises(InputError, match="listed twice"):
        account_inputs({"a": [line, line]}, {}, params)


def test_accounts_are_ordered_by_id_bytes_not_insertion(params) -> None:
    accts = account_inputs({"b": [], "a": [], "Z": []}, {}, params)
    assert [a.account_id for a in accts] == ["Z", "a", "b"]


def test_params_validation_names_the_field() -> None:
    body = default_params("standard")
    body["assets"][0]["haircut"] = "1.5"
    with pytest.raises(InputError, match="haircut"):
        parse_params(body)
    body = default_params("standard")
    body["model"]["params_hash"] = "0" * 64
    with pytest.raises(InputError, match="params_hash"):
        parse_params(body).model()
