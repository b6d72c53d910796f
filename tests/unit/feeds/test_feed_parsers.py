"""Venue parsers: real message shapes parse to ticks; any other input is rejected, never a crash."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginproof.feeds.depth import DepthBook, DepthGapError
from marginproof.feeds.parsers import parse_binance, parse_deribit
from marginproof.feeds.recorded import binance_messages, deribit_messages


@pytest.fixture(scope="module")
def deribit_frames() -> list[tuple[str, str]]:
    return deribit_messages("2022-04-15", max_options=12)


@pytest.fixture(scope="module")
def binance() -> tuple[list[tuple[str, str]], dict]:  # type: ignore[type-arg]
    return binance_messages(400)


def test_every_recorded_deribit_frame_parses_and_keeps_the_shipped_values(deribit_frames):
    results = [parse_deribit(f) for _, f in deribit_frames]
    assert not [r.rejected for r in results if r.rejected]
    index_tick = results[0].ticks[0]
    assert index_tick.underlying == "BTC" and index_tick.index_price and index_tick.index_price > 0
    opt = json.loads(deribit_frames[1][1])["params"]["data"]
    (t,) = results[1].ticks
    assert t.implied_vols == ((opt["instrument_name"], opt["mark_iv"] / 100.0),)
    assert t.forwards[0][1] == opt["underlying_price"]
    (last,) = results[-1].ticks
    assert len(last.implied_vols) == 12  # markprice.options: iv already decimal
    assert all(0.05 < v < 3.0 for _, v in last.implied_vols)


def test_every_recorded_binance_frame_parses(binance):
    frames, _ = binance
    kinds = {"bookTicker": 0, "depthUpdate": 0, "markPriceUpdate": 0}
    for _, f in frames:
        r = parse_binance(f)
        assert not r.rejected
        kinds[json.loads(f)["e"]] += 1
    assert all(kinds.values())
    bt = json.loads(frames[0][1])
    (t,) = parse_binance(frames[0][1]).ticks
    assert t.marks == (("BTC_USDT-PERPETUAL", 0.5 * (float(bt["b"]) + float(bt["a"]))),)
    assert t.seq == bt["u"]
    mp = next(f for s, f in frames if s.endswith("@markPrice"))
    (t,) = parse_binance(mp).ticks
    assert t.funding_rates[0][1] == float(json.loads(mp)["r"])


def test_wrapped_combined_stream_frames_parse_like_raw_ones(binance):
    frames, _ = binance
    raw = frames[0][1]
    wrapped = json.dumps({"stream": frames[0][0], "data": json.loads(raw)})
    assert parse_binance(wrapped).ticks == parse_binance(raw).ticks


def test_nan_prices_become_ticks_for_the_validator_to_flag_not_silent_drops():
    f = json.dumps({"e": "markPriceUpdate", "E": 1, "s": "BTCUSDT", "p": "NaN", "i": "1",
                    "r": "0.0001", "T": 2})
    (t,) = parse_binance(f).ticks
    assert math.isnan(t.marks[0][1])


@pytest.mark.parametrize("frame", [
    "", "null", "[]", "{", '{"e":"bookTicker"}', '{"e":"bookTicker","s":"BTCUSDT","b":"1"}',
    '{"e":"bookTicker","s":"BTCUSDT","b":"2","a":"1","u":1,"T":1}',  # crossed
    '{"e":"bookTicker","s":"???","b":"1","a":"2","u":1,"T":1}',
    '{"e":"depthUpdate","s":"BTCUSDT","U":5,"u":4,"T":1,"b":[],"a":[]}',
    '{"e":"depthUpdate","s":"BTCUSDT","U":1,"u":2,"T":1,"b":[["x","1"]],"a":[]}',
    '{"e":"weird","s":"BTCUSDT"}',
])
def test_malformed_binance_frames_are_rejected_with_a_reason(frame: str) -> None:
    assert parse_binance(frame).rejected


@pytest.mark.parametrize("frame", [
    "", "42", '{"method":"subscription"}',
    '{"method":"subscription","params":{"channel":"ticker.NOPE.100ms","data":{}}}',
    '{"method":"subscription","params":{"channel":"ticker.BTC-PERPETUAL.100ms",'
    '"data":{"instrument_name":"BTC-PERPETUAL","timestamp":"x","mark_price":1}}}',
    '{"method":"subscription","params":{"channel":"markprice.options.btc_usd","data":[]}}',
    '{"method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms","data":{}}}',
])
def test_malformed_deribit_frames_are_rejected_with_a_reason(frame: str) -> None:
    assert parse_deribit(frame).rejected


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids,
                                                              max_size=6),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.text(max_size=200), st.binary(max_size=200),
                     json_values.map(lambda v: json.dumps(v))))
def test_parsers_never_crash_on_arbitrary_input(raw: str | bytes) -> None:
    for parse in (parse_deribit, parse_binance):
        r = parse(raw)
        assert r.rejected or r.control or r.ticks or r.depth is not None


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_parsers_never_crash_on_mutated_real_frames(data, deribit_frames, binance) -> None:
    frames = [(parse_deribit, f) for _, f in deribit_frames[:5]] + \
        [(parse_binance, f) for _, f in binance[0][:6]]
    parse, frame = data.draw(st.sampled_from(frames))
    msg = json.loads(frame)
    target = msg["params"]["data"] if "params" in msg else msg
    if isinstance(target, list):
        target = target[0]
    key = data.draw(st.sampled_from(sorted(target)))
    target[key] = data.draw(json_values)
    r = parse(json.dumps(msg))
    assert r.rejected or r.control or r.ticks or r.depth is not None


def test_depth_book_applies_chained_diffs_and_detects_a_gap(binance) -> None:
    frames, snap = binance
    book = DepthBook("BTCUSDT")
    book.seed(snap["lastUpdateId"], [(float(p), float(q)) for p, q in snap["bids"]],
              [(float(p), float(q)) for p, q in snap["asks"]])
    diffs = [parse_binance(f).depth for s, f in frames if s.endswith("@depth")]
    assert all(d is not None for d in diffs)
    for d in diffs[:50]:
        assert book.apply(d)  # type: ignore[arg-type]
    mid = book.mid()
    assert mid is not None and 60_000 < mid < 63_000
    with pytest.raises(DepthGapError):
        book.apply(diffs[52])  # type: ignore[arg-type]  # skipped one: pu does not chain
