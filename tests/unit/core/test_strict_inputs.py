"""Strict JSON and numeric bounds at the file boundary (CLI): refused with exit 2, never coerced.

Each class of bad input (non-JSON literals, overflowing numbers, duplicate keys, coerced types,
deep nesting, absurd finite values) is tried on the portfolio and the market file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from marginproof.cli.common import print_json
from marginproof.cli.main import app
from marginproof.config import limits
from marginproof.errors import InputError, MarginproofError
from marginproof.io.formats import loads_strict, market_from_dict, portfolio_from_dict

EX = Path(__file__).resolve().parents[3] / "examples"
MKT = EX / "market_btc_2022-04-15.json"
runner = CliRunner()

GOOD_POS = '{"instrument": "BTC-PERPETUAL", "quantity": 1000}'


@pytest.mark.parametrize("text", [
    '{"positions": [{"instrument": "BTC-PERPETUAL", "quantity": NaN}]}',
    '{"positions": [{"instrument": "BTC-PERPETUAL", "quantity": Infinity}]}',
    '{"positions": [{"instrument": "BTC-PERPETUAL", "quantity": -Infinity}]}',
    '{"positions": [{"instrument": "BTC-PERPETUAL", "quantity": 1e400}]}',
    '{"positions": [{"instrument": "BTC-PERPETUAL", "quantity": 1' + "0" * 400 + "}]}",
    '{"positions": [' + GOOD_POS + '], "positions": []}',
    '{"positions": [{"instrument": "BTC-PERPETUAL", "quantity": 1, "quantity": 2}]}',
    '{"positions": [{"instrument": "BTC-PERPETUAL", "quantity": true}]}',
    '{"positions": [{"instrument": "BTC-PERPETUAL", "quantity": "10"}]}',
    '{"positions": [{"instrument": "BTC-PERPETUAL", "quantity": null}]}',
    '{"positions": [{"instrument": 7, "quantity": 1}]}',
    '{"positions": [{"instrument": "BTC-PERPETUAL", "quantity": 1e308}]}',
    '{"positions": [{"instrument": "BTC-PERPETUAL", "quantity": -2e10}]}',
    '{"positions": [' + GOOD_POS + '], "collateral": {"USDC": 1e300}}',
    '{"positions": [' + GOOD_POS + '], "collateral": {"USDC": "5"}}',
    '{"positions": [' + GOOD_POS + '], "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "[" * 100_000 + "]" * 100_000,
    '{"positions": [' + GOOD_POS + '], "account_id": "' + "a" * 200 + '"}',
])
def test_bad_portfolio_files_exit_2_naming_the_problem(text: str, tmp_path: Path) -> None:
    p = tmp_path / "p.json"
    p.write_text(text)
    r = runner.invoke(app, ["margin", "-p", str(p), "-m", str(MKT), "--json"])
    assert r.exit_code == 2, r.output
    assert r.stdout == ""  # nothing computed, nothing printed
    assert "error" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(("key", "value"), [
    ("index_prices", {"BTC": 1e300}), ("index_prices", {"BTC": 1e-12}),
    ("index_prices", {"BTC": True}), ("index_prices", {"BTC": "40000"}),
    ("implied_vols", {"BTC-6MAY22-44000-C": 50.0}), ("implied_vols", {"BTC-6MAY22-44000-C": 0.0}),
    ("rates", {"BTC": 3.0}), ("funding_rates", {"BTC-PERPETUAL": 0.5}),
    ("mark_prices", {"BTC-PERPETUAL": 1e10}),
])
def test_absurd_market_numbers_are_refused(key: str, value: dict[str, object]) -> None:
    data = json.loads(MKT.read_text())
    data[key] = {**data.get(key, {}), **value}
    with pytest.raises(InputError) as err:
        market_from_dict(data)
    assert err.value.field.startswith(key)


def test_the_shipped_files_are_within_the_limits() -> None:
    for f in sorted(EX.glob("*.json")):
        if "bad_" in f.name:
            continue
        d = loads_strict(f.read_text(), f.name)
        (portfolio_from_dict if "positions" in d else market_from_dict)(d)


def test_strict_decoder_refuses_each_class_and_names_the_input() -> None:
    for text in ('{"a": 1, "a": 1}', "[NaN]", "[1e999]", "[" * 33 + "]" * 33, "{", "[1,]"):
        with pytest.raises(InputError) as err:
            loads_strict(text, "body")
        assert err.value.field == "body"
    assert loads_strict("[" * 32 + "]" * 32) is not None  # the documented depth passes
    assert loads_strict('{"a": [1, 2.5, -3e-7, "x", null, true]}') == {
        "a": [1, 2.5, -3e-7, "x", None, True]}


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_quantity_is_accepted_exactly_when_finite_and_within_the_limit(q: float) -> None:
    doc = {"positions": [{"instrument": "BTC-PERPETUAL", "quantity": q}]}
    ok = math.isfinite(q) and abs(q) <= limits.MAX_QUANTITY
    if ok:
        assert portfolio_from_dict(doc).portfolio.positions[0].quantity == q
    else:
        with pytest.raises(InputError):
            portfolio_from_dict(doc)


def test_print_json_never_prints_a_non_finite_number(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(MarginproofError, match=r"result\.im"):
        print_json({"im": float("inf")})
    assert capsys.readouterr().out == ""
    print_json({"rate": float("nan"), "n": [1.0, float("-inf")]}, undefined_as_null=True)
    assert json.loads(capsys.readouterr().out) == {"rate": None, "n": [1.0, None]}
