"""The committed path: exact collateral, one rounding per field, parameter validation."""

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
    collateral_atoms,
    market_body,
    market_from_body,
    parse_params,
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


def test_collateral_is_exact_floor_and_agrees_with_the_float_valuation(params) -> None:
    mb = market_body(tiny_market())
    prices = asset_prices(params, mb)
    acct = AccountInput("a", (), {"BTC": 12_345_678, "USDC": 1_000_250_000,
                                  "USDT": -1_500_500_000})
    atoms = collateral_atoms(acct, params, prices)
    exact = (Fraction(12_345_678, 10**8) * 40_000 * Fraction(95, 100) + Fraction(1_000_25, 100)
             - Fraction(1_500_5, 10))
    assert atoms == int(exact * 10**6 // 1)
    pol = CollateralPolicy({"BTC": 0.05, "USDC": 0.0, "USDT": 0.02})
    fl = value_collateral({"BTC": 0.12345678, "USDC": 1000.25, "USDT": -1500.5},
                          market_from_body(mb), pol).total_usd
    assert abs(atoms / 1e6 - fl) < 1e-6


def test_negative_equity_clamps_collateral_at_zero(params) -> None:
    mb = market_body(tiny_market())
    acct = AccountInput("a", (), {"USDC": -5_000_000})
    assert collateral_atoms(acct, params, asset_prices(params, mb)) == 0


def test_margin_is_rounded_up_once_and_short_is_derived(params) -> None:
    m = tiny_market()
    accts = account_inputs({"a": [{"instrument": "BTC-PERPETUAL", "quantity": "-100000"}]},
                           {"a": {"USDC": "10"}}, params)
    vals = account_values(accts[0], params, params.model(), m,
                          asset_prices(params, market_body(m)))
    r = params.model().margin(Portfolio.of([("BTC-PERPETUAL", -100000.0)]), m)
    assert vals[1] == -(-Fraction(r.initial_margin) * 10**6 // 1)  # ceil
    assert vals[3] == max(0, vals[2] - vals[0])
    fields = params.fields
    assert vals[fields.index("cr:USDC")] == 10_000_000
    assert vals[fields.index("db:USDC")] == 0


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
