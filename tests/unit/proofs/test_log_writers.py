"""The input-log writers refuse, before signing, what the epoch computation would refuse.

The log is append-only and every epoch replays it from entry 0: one bad entry written into
it would make every later epoch unprovable (issue 19, item 1).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from marginproof.errors import InputError
from marginproof.io.formats import load_market
from marginproof.proofs.leaves import market_body
from marginproof.proofs.verify import VerificationError
from marginproof.storage.proofstore import InputLogWriter, ProofStore, default_params

ROOT = Path(__file__).resolve().parents[3]
MARKET = ROOT / "examples" / "market_btc_2022-04-15.json"
SCALES = {"BTC": 8, "ETH": 9, "USDC": 6, "USDT": 6}


@pytest.fixture
def writer(tmp_path: Path) -> InputLogWriter:
    store = ProofStore(tmp_path / "mp")
    w = InputLogWriter(store, store.operator_keys(create=True))
    w.append_genesis()
    w.append_params(default_params("grid", depth_min=2, privacy=False))
    w.append_market(load_market(MARKET))
    return w


def _size(w: InputLogWriter) -> int:
    return len(w.store.entries())


def test_an_unknown_instrument_is_refused_before_it_is_signed(writer: InputLogWriter) -> None:
    n = _size(writer)
    with pytest.raises(InputError) as e:
        writer.append_positions({"c": {"FOO-BAR": "1"}})
    assert "instrument" in e.value.field
    assert _size(writer) == n  # nothing written


def test_a_balance_beyond_the_committable_range_is_refused(writer: InputLogWriter) -> None:
    n = _size(writer)
    with pytest.raises(InputError) as e:
        writer.append_balances({"b": {"USDC": 10**30}}, SCALES)
    assert e.value.field.endswith("balances.USDC")
    with pytest.raises(InputError):  # an asset the parameters do not declare
        writer.append_balances({"b": {"DOGE": 1}}, {**SCALES, "DOGE": 8})
    assert _size(writer) == n


def test_one_entry_naming_an_account_twice_is_refused_even_through_the_raw_store(
        writer: InputLogWriter) -> None:
    n = _size(writer)
    body = {"accounts": [{"account": "a", "balances": {"USDC": "1"}},
                         {"account": "a", "balances": {"USDC": "2"}}]}
    with pytest.raises(InputError) as e:
        writer.store.append("balances", body, writer.keys.source)
    assert "appears twice" in e.value.message
    with pytest.raises((InputError, VerificationError)):  # garbage is not signed either
        writer.store.append("positions", {"nope": 1}, writer.keys.source)
    assert _size(writer) == n


def test_excess_precision_is_refused_or_rounded_by_the_stated_rule(
        writer: InputLogWriter) -> None:
    with pytest.raises(InputError) as e:
        writer.append_balances({"a": {"USDC": "12.5000005"}}, SCALES)
    assert "decimals" in e.value.message
    with pytest.raises(InputError):
        writer.append_positions({"a": {"BTC-PERPETUAL": "1.000000001"}})
    # rounding="up": the signed balance rounds toward +infinity -- a credit (owed by the venue)
    # up, a debt down in size -- never in the venue's favour
    e1 = writer.append_balances({"a": {"USDC": "12.5000005"}, "b": {"USDC": "-12.5000005"}},
                                SCALES, rounding="up")
    got = {a["account"]: a["balances"]["USDC"] for a in e1.body["accounts"]}
    assert got == {"a": "12.500001", "b": "-12.5"}


def test_a_market_body_the_epoch_cannot_read_is_refused(writer: InputLogWriter) -> None:
    n = _size(writer)
    body = market_body(load_market(MARKET))
    body["index_prices"] = {**body["index_prices"], "BTC": "-1"}
    with pytest.raises(InputError):
        writer.store.append("market", body, writer.keys.source)
    assert _size(writer) == n
