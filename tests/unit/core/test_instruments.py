from datetime import UTC, datetime

import pytest

from marginproof.errors import InputError
from marginproof.instruments import (
    InstrumentKind,
    Portfolio,
    Settlement,
    format_instrument,
    parse_instrument,
)

NAMES = [
    "BTC-27DEC26-100000-C", "BTC-7JUN24-60000-P", "BTC-PERPETUAL", "ETH-PERPETUAL",
    "BTC_USDC-PERPETUAL", "BTC-27DEC26", "ETH_USDC-27DEC26", "BTC_USDC-27DEC26-100000-P",
    "BTC_USDT", "XRP_USDC-27DEC26-0d625-C",
]


@pytest.mark.parametrize("name", NAMES)
def test_parse_then_print_is_identity(name: str) -> None:
    assert format_instrument(parse_instrument(name)) == name


def test_option_terms_are_parsed() -> None:
    inst = parse_instrument("BTC-27DEC26-100000-C")
    assert inst.kind is InstrumentKind.OPTION and inst.settlement is Settlement.INVERSE
    assert inst.strike == 100_000.0 and inst.is_call
    assert inst.expiry == datetime(2026, 12, 27, 8, tzinfo=UTC)
    assert inst.settlement_currency == "BTC"


def test_linear_products_settle_in_the_stable_coin() -> None:
    perp = parse_instrument("BTC_USDC-PERPETUAL")
    assert perp.kind is InstrumentKind.PERPETUAL and not perp.is_inverse
    assert perp.settlement_currency == "USDC"
    assert parse_instrument("BTC_USDT").kind is InstrumentKind.SPOT


@pytest.mark.parametrize("bad", [
    "", "btc-perpetual", "BTC-32DEC26", "BTC-27XYZ26-1-C", "BTC-27DEC26-100000-X",
    "BTC-27DEC26-abc-C", "BTC", "BTC_EUR-PERPETUAL", "BTC-27DEC26-0-C", " BTC-PERPETUAL",
    "BTC-1-2-3-4",
])
def test_bad_names_are_rejected_naming_the_field(bad: str) -> None:
    with pytest.raises(InputError) as e:
        parse_instrument(bad, "positions[3].instrument")
    assert e.value.field == "positions[3].instrument"


def test_portfolio_rejects_nan_quantity() -> None:
    with pytest.raises(InputError, match=r"positions\[0\].quantity"):
        Portfolio.of([("BTC-PERPETUAL", float("nan"))])


def test_scaled_portfolio_scales_every_quantity() -> None:
    p = Portfolio.of({"BTC-PERPETUAL": 10.0, "BTC-27DEC26-100000-C": -2.0}).scaled(3)
    assert [x.quantity for x in p.positions] == [30.0, -6.0]
