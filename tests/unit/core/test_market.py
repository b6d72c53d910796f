import math
from datetime import UTC, datetime

import pytest

from marginproof.errors import InputError
from marginproof.instruments import Account, Portfolio
from marginproof.instruments.collateral import value_collateral
from marginproof.instruments.resolved import resolve
from marginproof.market import MarketSnapshot
from tests.factories import CALL, T0, sample_market


@pytest.mark.parametrize("price", [float("nan"), -1.0, 0.0, float("inf"), "abc"])
def test_bad_index_price_is_rejected_naming_the_field(price: object) -> None:
    with pytest.raises(InputError) as e:
        MarketSnapshot(T0, {"BTC": price})  # type: ignore[dict-item]
    assert e.value.field == "index_prices.BTC"


@pytest.mark.parametrize("vol", [-0.2, 0.0, float("nan"), 55.0])
def test_negative_zero_nan_or_absurd_vol_is_rejected(vol: float) -> None:
    with pytest.raises(InputError) as e:
        MarketSnapshot(T0, {"BTC": 1.0}, implied_vols={CALL: vol})
    assert e.value.field == f"implied_vols.{CALL}"


def test_naive_timestamp_is_rejected() -> None:
    with pytest.raises(InputError, match="timestamp"):
        MarketSnapshot(datetime(2026, 1, 1), {"BTC": 1.0})


def test_snapshot_is_immutable() -> None:
    m = sample_market()
    with pytest.raises(TypeError):
        m.index_prices["BTC"] = 1.0  # type: ignore[index]


def test_expired_option_is_rejected() -> None:
    m = MarketSnapshot(datetime(2027, 1, 1, tzinfo=UTC), {"BTC": 90_000.0},
                       implied_vols={CALL: 0.5})
    with pytest.raises(InputError, match="expired"):
        resolve(Portfolio.of([(CALL, 1.0)]), m)


def test_option_without_mark_or_vol_is_rejected() -> None:
    m = MarketSnapshot(T0, {"BTC": 90_000.0})
    with pytest.raises(InputError) as e:
        resolve(Portfolio.of([(CALL, 1.0)]), m)
    assert e.value.field == f"implied_vols.{CALL}"


def test_unknown_underlying_is_rejected() -> None:
    with pytest.raises(InputError, match="no index price for DOGE"):
        resolve(Portfolio.of([("DOGE-PERPETUAL", 1.0)]), sample_market())


def test_inverse_mark_in_coin_implies_the_vol_that_priced_it() -> None:
    base = sample_market()
    book = resolve(Portfolio.of([(CALL, 1.0)]), base)
    mark_coin = book.mark_usd[0] / book.forward[0]
    m2 = MarketSnapshot(T0, {"BTC": 90_000.0}, mark_prices={CALL: mark_coin})
    book2 = resolve(Portfolio.of([(CALL, 1.0)]), m2)
    assert math.isclose(book2.vol[0], 0.55, rel_tol=1e-9)


def test_collateral_is_valued_with_haircuts() -> None:
    a = Account("a", Portfolio(()), {"BTC": 1.0, "USDC": 1000.0})
    v = value_collateral(a.collateral, sample_market())
    assert math.isclose(v.total_usd, 90_000.0 * 0.95 + 1000.0)


def test_collateral_in_unconfigured_asset_is_refused() -> None:
    with pytest.raises(InputError, match="collateral.PEPE"):
        value_collateral({"PEPE": 1.0}, sample_market())
