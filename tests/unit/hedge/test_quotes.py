"""Quotes, book-walk costs, fees, lots; quotes files, the shipped books, the configuration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginproof.errors import InputError
from marginproof.hedge.quotes import (
    FeeSchedule,
    Level,
    LotSizes,
    Quote,
    cost_ladder,
    round_to_lot,
)
from marginproof.hedge.sources import chain_quotes, load_config, load_quotes, quotes_from_dict
from marginproof.instruments.names import parse_instrument

from .conftest import case

DERIBIT = FeeSchedule("deribit", 0.0005, 0.0003, 0.0005, 0.125)


def test_inverse_perpetual_cost_is_the_coin_pnl_given_up_plus_the_fee() -> None:
    inst = parse_instrument("BTC-PERPETUAL")
    q = Quote(inst.name, (Level(39_990.0, 1e6),), (Level(40_010.0, 1e6),))
    lad = cost_ladder(inst, q, 40_000.0, 40_000.0, DERIBIT)
    # one USD of face bought at 40,010 instead of 40,000: 10 * S / (p r) USD, plus 0.05 % x S/p
    assert lad.buy_cost[0] == pytest.approx(10 * 40_000 / (40_010 * 40_000)
                                            + 0.0005 * 40_000 / 40_010)
    total, spread, fee = lad.cost(100_000.0)
    assert total == pytest.approx(spread + fee)
    assert spread == pytest.approx(100_000 * 10 / 40_010, rel=1e-12)


def test_option_fee_is_capped_at_an_eighth_of_the_premium() -> None:
    inst = parse_instrument("BTC-24JUN22-80000-C")  # far out of the money: a tiny premium
    q = Quote(inst.name, (Level(0.0005, 10.0),), (Level(0.001, 10.0),))
    lad = cost_ladder(inst, q, 0.00075, 40_000.0, DERIBIT)
    assert lad.buy_fee[0] == pytest.approx(0.125 * 0.001 * 40_000)  # not 0.0003 x S = 12 USD
    assert lad.buy_cost[0] == pytest.approx(0.00025 * 40_000 + 0.125 * 0.001 * 40_000)


def test_walking_the_book_costs_more_per_unit_and_stops_at_its_depth() -> None:
    inst = parse_instrument("BTC_USDC-PERPETUAL")
    q = Quote(inst.name, (Level(99.0, 1.0), Level(98.0, 2.0)), (Level(101.0, 1.0),
                                                                  Level(103.0, 1.0)))
    lad = cost_ladder(inst, q, 100.0, 100.0, FeeSchedule("x", 0.0, 0.0, 0.0, 0.125))
    assert list(lad.buy_cost) == [1.0, 3.0]
    assert lad.cost(1.5)[0] == pytest.approx(1.0 + 0.5 * 3.0)
    assert lad.cost(-3.0)[0] == pytest.approx(1.0 + 2 * 2.0)
    assert lad.average_price(2.0) == pytest.approx(102.0)
    with pytest.raises(InputError, match="depth"):
        lad.cost(2.5)
    curve = lad.cost_curve(np.array([-3.0, -0.5, 0.0, 1.5, 2.5]))
    np.testing.assert_allclose(curve[:4], [5.0, 0.5, 0.0, 2.5])
    assert curve[4] == np.inf


def test_a_quote_through_the_mark_is_never_a_gain() -> None:
    inst = parse_instrument("BTC_USDC-PERPETUAL")
    q = Quote(inst.name, (Level(101.0, 1.0),), (Level(102.0, 1.0),))
    lad = cost_ladder(inst, q, 100.0, 100.0, FeeSchedule("x", 0.0, 0.0, 0.0, 0.125))
    assert lad.sell_cost[0] == 0.0  # selling above the mark: zero cost, not a profit


@pytest.mark.parametrize(("bids", "asks", "field"), [
    ((Level(101.0, 1.0),), (Level(100.0, 1.0),), "crossed"),
    ((Level(-1.0, 1.0),), (), "bids[0].price"),
    ((Level(1.0, 0.0),), (), "bids[0].size"),
    ((Level(1.0, 1.0), Level(2.0, 1.0)), (), "best first"),
])
def test_bad_quotes_name_the_field(bids: tuple[Level, ...], asks: tuple[Level, ...],
                                   field: str) -> None:
    with pytest.raises(InputError, match=field.replace("[", r"\[").replace("]", r"\]")):
        Quote("BTC-PERPETUAL", bids, asks)


@settings(max_examples=60, deadline=None)
@given(st.floats(-1e4, 1e4), st.sampled_from([0.1, 1.0, 10.0, 0.001]),
       st.floats(0.0, 5e3), st.floats(0.0, 5e3))
def test_lot_rounding_stays_within_the_limits(q: float, lot: float, lo: float, hi: float
                                              ) -> None:
    r = round_to_lot(q, lot, lo, hi)
    assert -lo - 1e-9 <= r <= hi + 1e-9
    assert abs(r / lot - round(r / lot)) < 1e-6
    if -lo + lot <= q <= hi - lot:
        assert abs(r - q) <= lot / 2 + 1e-9


def test_lots_follow_the_most_specific_entry(hedge_config) -> None:  # type: ignore[no-untyped-def]
    lots = hedge_config.lots["deribit"]
    assert lots.lot(parse_instrument("BTC-24JUN22-40000-C")) == 0.1
    assert lots.lot(parse_instrument("ETH-24JUN22-3000-C")) == 1.0
    assert lots.lot(parse_instrument("BTC-PERPETUAL")) == 10.0
    assert lots.lot(parse_instrument("SOL_USDC-PERPETUAL")) == 0.001
    assert LotSizes({}).lot(parse_instrument("BTC-PERPETUAL")) == 1e-4


def test_quotes_file_round_trip_and_errors(tmp_path: Path) -> None:
    doc = {"quotes": {"BTC-PERPETUAL": {"bid": 40_000.0, "ask": 40_001.0, "bid_size": 1e5,
                                        "ask_size": 2e5},
                      "BTC-24JUN22-40000-C": {"bids": [[0.079, 12.5]], "asks": [[0.08, 10],
                                                                               [0.081, 5]]}}}
    p = tmp_path / "q.json"
    p.write_text(json.dumps(doc))
    qs = load_quotes(p)
    assert qs["BTC-PERPETUAL"].ask_size == 2e5
    assert qs["BTC-24JUN22-40000-C"].ask_size == 15.0
    assert qs["BTC-PERPETUAL"].source == "q.json"
    with pytest.raises(InputError, match="bid_size"):
        quotes_from_dict({"quotes": {"BTC-PERPETUAL": {"bid": 1.0}}})
    with pytest.raises(InputError, match="quotes.BTC-PERPETUAL.bid"):
        quotes_from_dict({"quotes": {"BTC-PERPETUAL": {"bid": float("nan"), "bid_size": 1}}})
    with pytest.raises(InputError, match="extra|Extra"):
        quotes_from_dict({"quotes": {"X": {"price": 1.0}}})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="malformed JSON"):
        load_quotes(bad)


def test_shipped_chain_quotes_are_found_at_the_example_market_time() -> None:
    _, mkt = case("grid")
    qs = chain_quotes(mkt, 7200.0)
    q = qs["BTC-24JUN22-40000-C"]
    assert q.bid is not None and q.ask is not None and q.bid < q.ask
    assert q.bid_size > 0 and "Deribit chain 2022-04-15" in q.source
    assert len(qs) > 300
    _, far = case("derive-pmrm")  # 2026: no shipped chain that close
    assert chain_quotes(far, 7200.0) == {}


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    cfg = load_config()
    assert cfg.fees["deribit"].delta_one_rate == 0.0005
    assert cfg.fees["derive"].base_fee_option_usd == 0.5
    assert cfg.quote_model.delta_one.offsets.size == 6
    text = (Path(__file__).resolve().parents[3] / "configs" / "hedge.toml").read_text()
    bad = tmp_path / "h.toml"
    bad.write_text(text.replace("delta_one_rate = 0.0005", "delta_one_rate = -1"))
    with pytest.raises(InputError, match="hedge.venues.deribit.fees.delta_one_rate"):
        load_config(bad)
    bad.write_text(text.replace("time_limit_s = 5.0", "time_limit_s = 0.0"))
    with pytest.raises(InputError, match="hedge.defaults.time_limit_s"):
        load_config(bad)
