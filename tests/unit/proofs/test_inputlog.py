"""L1 input log: sequence, signers, key rotation, cuts; tampering is a verification failure."""

from __future__ import annotations

import dataclasses

import pytest

from marginproof.errors import InputError
from marginproof.proofs.errors import VerificationError
from marginproof.proofs.inputlog import (
    keys_body,
    make_sth,
    parse_entry,
    replay_entries,
    sign_entry,
    verify_sth,
)
from marginproof.proofs.signing import SigningKey
from tests.unit.proofs.helpers import tiny_log


def test_honest_log_replays_to_its_state() -> None:
    log = tiny_log(4, epochs=2)
    st = replay_entries(log.entries)
    assert [c.epoch for c in st.cuts] == [1, 2]
    assert len(st.positions) == 4 and st.params is not None
    assert set(st.operator_keys()) == {log.operator.key_id}


def test_entries_round_trip_through_their_canonical_bytes() -> None:
    log = tiny_log(2)
    for e in log.entries:
        assert parse_entry(e.to_bytes(), "e") == e


def test_edited_body_breaks_the_signature() -> None:
    log = tiny_log(3)
    i = next(i for i, e in enumerate(log.entries) if e.kind == "balances")
    body = dict(log.entries[i].body)
    body["accounts"] = body["accounts"][:-1]  # drop an account's balances
    forged = log.entries[:i] + [dataclasses.replace(log.entries[i], body=body)] + \
        log.entries[i + 1:]
    with pytest.raises(VerificationError) as e:
        replay_entries(forged)
    assert e.value.code == f"input_log[{i}].sig"


def test_reordered_or_dropped_entries_are_detected() -> None:
    log = tiny_log(3)
    with pytest.raises(VerificationError, match="reordered, dropped or inserted"):
        replay_entries(log.entries[:2] + log.entries[3:])


def test_unknown_signer_and_wrong_genesis_are_rejected() -> None:
    log = tiny_log(2)
    mallory = SigningKey(b"\x07" * 32)
    e = sign_entry("market", 2, dict(log.entries[2].body), mallory)
    with pytest.raises(VerificationError, match="unknown key"):
        replay_entries(log.entries[:2] + [e])
    with pytest.raises(VerificationError, match="trusted operator"):
        replay_entries(log.entries, trusted_operator=mallory.key_id)


def test_key_rotation_needs_the_old_operator_key() -> None:
    log = tiny_log(2)
    new_op = SigningKey(b"\x09" * 32)
    body = keys_body([("operator", new_op), ("source", log.source)])
    by_source = sign_entry("keys", len(log.entries), body, log.source)
    with pytest.raises(VerificationError, match="rotation needs an operator key"):
        replay_entries(log.entries + [by_source])
    ok = sign_entry("keys", len(log.entries), body, log.operator)
    st = replay_entries(log.entries + [ok])
    assert set(st.operator_keys()) == {new_op.key_id}


def test_cut_epochs_must_increase_by_one() -> None:
    log = tiny_log(2)
    bad = sign_entry("cut", len(log.entries), {"epoch": "3", "timestamp": "t"}, log.source)
    with pytest.raises(VerificationError, match="expected 2"):
        replay_entries(log.entries + [bad])


def test_malformed_body_is_an_input_error() -> None:
    log = tiny_log(2)
    bad = sign_entry("positions", len(log.entries), {"accounts": "nope"}, log.source)
    with pytest.raises(InputError):
        replay_entries(log.entries + [bad])


def test_tree_heads_are_signed_by_the_operator() -> None:
    log = tiny_log(2)
    sth = make_sth("input", 5, bytes(32), 1, log.operator)
    head = verify_sth(sth, {log.operator.key_id: log.operator.public_raw}, "sth")
    assert head.size == 5
    with pytest.raises(VerificationError):
        verify_sth(sth, {log.source.key_id: log.source.public_raw}, "sth")
    sth["sth"]["size"] = "6"
    with pytest.raises(VerificationError):
        verify_sth(sth, {log.operator.key_id: log.operator.public_raw}, "sth")
