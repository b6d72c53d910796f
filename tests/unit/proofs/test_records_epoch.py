"""L3/L4: records, the epoch log audit, compute and replay of an epoch."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from marginproof.errors import InputError
from marginproof.proofs import merklelog
from marginproof.proofs.encoding import canon
from marginproof.proofs.epoch import EngineInfo, compute_epoch, replay_epoch
from marginproof.proofs.errors import VerificationError
from marginproof.proofs.inputlog import make_sth, sign_entry
from marginproof.proofs.records import (
    audit_epoch_log,
    epoch_log_leaves,
    sign_record,
    verify_record,
)
from tests.unit.proofs.helpers import ENGINE, chain, tiny_epoch, tiny_log


@pytest.fixture(scope="module")
def log3():
    return tiny_log(6, epochs=3)


@pytest.fixture(scope="module")
def records(log3):
    return chain(log3, 3)


def _keys(log):
    return {log.operator.key_id: log.operator.public_raw}


def _sths(log, records):
    leaves = epoch_log_leaves(records)
    return [make_sth("epoch", n, merklelog.root_of(leaves[:n]),
                     int(records[n - 1]["record"]["header"]["epoch"]), log.operator)
            for n in range(1, len(records) + 1)]


def test_compute_is_deterministic_and_totals_equal_root_sums(log3) -> None:
    a, _ = tiny_epoch(log3, 1)
    b, _ = tiny_epoch(log3, 1)
    assert a.record_bytes == b.record_bytes
    assert [int(x) for x in a.record["root"]["sums"]] == \
        [int(a.record["totals"][f]) for f in a.params.fields]


def test_every_account_proof_verifies_against_the_signed_record(log3) -> None:
    from marginproof.proofs.verify import verify_account

    res, signed = tiny_epoch(log3, 1)
    view = verify_record(signed, _keys(log3))
    for aid in res.account_ids:
        verify_account(res.proof_for(aid, log3.ep_secret), record=view)


def test_record_signature_and_totals_are_checked(log3, records) -> None:
    bad = copy.deepcopy(records[0])
    bad["record"]["totals"]["assets"] = "1"
    with pytest.raises(VerificationError) as e:
        verify_record(bad, _keys(log3))
    assert e.value.code == "record.sig"
    resigned = sign_record(bad["record"], log3.operator)
    with pytest.raises(VerificationError) as e:
        verify_record(resigned, _keys(log3))
    assert e.value.code == "record.totals"
    extra = copy.deepcopy(records[0])
    extra["record"]["totals"]["coll"] = "1"  # a total the header does not list
    with pytest.raises(InputError) as ie:
        verify_record(sign_record(extra["record"], log3.operator), _keys(log3))
    assert ie.value.field == "record.record.totals"


def test_log_audit_passes_and_detects_rewrites_forks_and_truncation(log3, records) -> None:
    sths = _sths(log3, records)
    audit = audit_epoch_log(records, sths, _keys(log3), known_sths=[sths[0], sths[1]])
    assert audit.epochs == (1, 2, 3)
    # rewrite epoch 2 (re-signed by the operator): the chain to epoch 3 breaks
    rew = copy.deepcopy(records)
    rew[1]["record"]["header"]["venue"] = "other"
    rew[1] = sign_record(rew[1]["record"], log3.operator)
    with pytest.raises(VerificationError, match="does not link"):
        audit_epoch_log(rew, sths, _keys(log3))
    # a fork that rebuilt the tail consistently is caught by a tree head the user kept
    fork = rew[:2]
    with pytest.raises(VerificationError, match="rewritten or forked|fork"):
        audit_epoch_log(fork, _sths(log3, fork), _keys(log3), known_sths=[sths[1]])
    # truncation
    with pytest.raises(VerificationError, match="truncated"):
        audit_epoch_log(records[:2], _sths(log3, records[:2]), _keys(log3),
                        known_sths=[sths[2]])
    # reordered records
    with pytest.raises(VerificationError):
        audit_epoch_log([records[1], records[0], records[2]], [], _keys(log3))


def test_replay_matches_and_names_the_first_difference(log3, records) -> None:
    rep = replay_epoch(log3.entries, records[1], log3.ep_secret, ENGINE,
                       expected_prev=records[1]["record"]["header"]["prev_record_hash"])
    assert rep.epoch == 2 and rep.record_bytes == canon(records[1]["record"])
    # the operator published a lower margin for one account than the engine computes
    res, _ = tiny_epoch(log3, 1)
    tags, vals = res.tree.tags.copy(), res.tree.values.copy()
    i = res.leaf_index["user-000"]
    vals[i, res.params.fields.index("im")] -= 1
    from marginproof.proofs.sumtree import build_sum_tree

    forged_tree = build_sum_tree(res.tree.fmt, res.hdr_hash, tags, vals)
    rec = copy.deepcopy(records[0]["record"])
    rec["root"] = {"hash": forged_tree.root_hash.hex(),
                   "sums": [str(s) for s in forged_tree.root_sums]}
    rec["totals"] = {f: str(s) for f, s in zip(res.params.fields, forged_tree.root_sums,
                                               strict=True)}
    rec.pop("privacy", None)
    forged = sign_record(rec, log3.operator)
    with pytest.raises(VerificationError) as e:
        replay_epoch(log3.entries, forged, log3.ep_secret, ENGINE, published_leaves=(tags, vals))
    assert e.value.code == "replay.mismatch"
    assert "user-000" in e.value.message and "field im" in e.value.message


def test_replay_refuses_another_engine_unless_forced(log3, records) -> None:
    other = EngineInfo("other-engine/9", "f" * 64)
    with pytest.raises(VerificationError) as e:
        replay_epoch(log3.entries, records[0], log3.ep_secret, other)
    assert e.value.code == "replay.engine"
    rep = replay_epoch(log3.entries, records[0], log3.ep_secret, other, force=True)
    assert rep.forced


def test_replay_detects_an_altered_input_log(log3, records) -> None:
    entries = list(log3.entries)
    i = next(i for i, e in enumerate(entries) if e.kind == "positions")
    body = copy.deepcopy(dict(entries[i].body))
    body["accounts"][0]["positions"] = []
    entries[i] = sign_entry("positions", i, body, log3.source)  # re-signed by the source
    with pytest.raises(VerificationError) as e:
        replay_epoch(entries, records[0], log3.ep_secret, ENGINE)
    assert e.value.code == "replay.input_log"


def test_edited_params_change_the_params_hash(log3) -> None:
    entries = list(log3.entries)
    body = copy.deepcopy(dict(entries[1].body))
    body["assets"][0]["haircut"] = "0.01"  # a friendlier haircut
    entries[1] = dataclasses.replace(sign_entry("params", 1, body, log3.source))
    a = compute_epoch(log3.entries, 1, log3.ep_secret, None, ENGINE)
    b = compute_epoch(entries, 1, log3.ep_secret, None, ENGINE)
    assert a.header["params_hash"] != b.header["params_hash"]


def test_a_record_shown_only_to_one_user_is_not_in_the_epoch_log(log3, records) -> None:
    from marginproof.proofs.records import record_in_log

    sths = _sths(log3, records)
    assert record_in_log(records[1], records, sths, _keys(log3)) == 3
    private = copy.deepcopy(records[1])
    private["record"]["header"]["venue"] = "for-your-eyes-only"
    private = sign_record(private["record"], log3.operator)
    with pytest.raises(VerificationError) as e:
        record_in_log(private, records, sths, _keys(log3))
    assert e.value.code == "epoch_log.inclusion"
