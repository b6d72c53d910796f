"""L0: decimal parsing, canonical JSON, one rounding against the operator."""

from __future__ import annotations

from fractions import Fraction

import pytest

from marginproof.errors import InputError
from marginproof.proofs.encoding import (
    canon,
    ceil_atoms,
    decimal_string,
    floor_atoms,
    parse_canonical,
    parse_decimal,
    parse_hex32,
    parse_uint,
    quantize_float,
    to_atoms,
)


@pytest.mark.parametrize("bad", [" 42", "42 ", "0_1", "\u0664\u0662", "1e5", "+1", "01", ".5",
                                 "5.", "NaN", "inf", "", "1,5", "0x10", "-1"])
def test_unsigned_decimal_rejects_everything_int_and_float_would_accept(bad: str) -> None:
    with pytest.raises(InputError):
        parse_decimal(bad, "x")


def test_signed_decimal_accepts_minus_but_not_negative_zero() -> None:
    assert parse_decimal("-1.25", "x", signed=True) == Fraction(-5, 4)
    with pytest.raises(InputError, match="negative zero"):
        parse_decimal("-0.00", "x", signed=True)


def test_to_atoms_is_exact_and_refuses_extra_digits() -> None:
    assert to_atoms("0.12345678", 8, "btc") == 12_345_678
    assert to_atoms("-1500.5", 6, "usdt", signed=True) == -1_500_500_000
    with pytest.raises(InputError, match="more than 8 decimals"):
        to_atoms("0.123456789", 8, "btc")  # never rounded silently


def test_rounding_goes_against_the_operator() -> None:
    x = Fraction(1, 3)
    assert floor_atoms(x, 2) == 33  # collateral rounds down
    assert ceil_atoms(x, 2) == 34  # margin and liabilities round up
    assert quantize_float(0.1, 6, "im", up=True) == 100_001  # 0.1 is 0.1000000000000000055...
    assert quantize_float(0.1, 6, "coll", up=False) == 100_000


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1e-9])
def test_quantize_refuses_bad_engine_output(bad: float) -> None:
    with pytest.raises(InputError):
        quantize_float(bad, 6, "im", up=True)


def test_canonical_json_sorts_keys_and_turns_ints_into_strings() -> None:
    assert canon({"b": 1, "a": [True, None, "x"]}) == b'{"a":[true,null,"x"],"b":"1"}'
    with pytest.raises(InputError, match="floats"):
        canon({"a": 1.5})


@pytest.mark.parametrize("bad", [b'{"a":"1","a":"2"}', b'{"a":NaN}', b'{"a":1}',
                                 b'{"b":"1","a":"2"}', b'{"a": "1"}', b'{"a":1e400}',
                                 b"\xff", b'{"a":Infinity}'])
def test_strict_parser_rejects_duplicates_constants_numbers_and_non_canonical(bad: bytes) -> None:
    with pytest.raises(InputError):
        parse_canonical(bad, "doc")


def test_strict_parser_round_trips_canonical_bytes() -> None:
    doc = {"z": ["1", {"y": None}], "é": "ü"}
    assert parse_canonical(canon(doc) + b"\n", "doc") == doc


def test_uint_and_hex_parsers_enforce_exact_forms() -> None:
    assert parse_uint("18446744073709551615", "v") == 2**64 - 1
    for bad in ("18446744073709551616", "007", "-1", " 1"):
        with pytest.raises(InputError):
            parse_uint(bad, "v")
    with pytest.raises(InputError):
        parse_hex32("AB" * 32, "h")  # uppercase is not canonical


def test_decimal_string_rounds_half_even_and_trims() -> None:
    assert decimal_string(Fraction(1, 8), 2) == "0.12"
    assert decimal_string(Fraction(3, 8), 2) == "0.38"
    assert decimal_string(Fraction(-5, 2), 3) == "-2.5"
    assert decimal_string(Fraction(0), 3) == "0"
