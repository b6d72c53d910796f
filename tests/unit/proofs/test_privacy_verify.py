"""L5 bundle (public solvency check) and the user's verification with precise reasons."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from marginproof.proofs.errors import VerificationError
from marginproof.proofs.privacy import verify_bundle
from marginproof.proofs.records import sign_record, verify_record
from marginproof.proofs.tags import account_nonce
from marginproof.proofs.verify import verify_account
from tests.unit.proofs.helpers import tiny_epoch, tiny_log


@pytest.fixture(scope="module")
def epoch():
    log = tiny_log(6, privacy=True)
    res, signed = tiny_epoch(log, 1)
    view = verify_record(signed, {log.operator.key_id: log.operator.public_raw})
    return log, res, signed, view


def _totals(view):
    s = dict(zip(view.fields, view.root_sums, strict=True))
    return s["assets"], s["liabs"], s["mm"]


def test_bundle_verifies_and_counts_flagged_accounts(epoch) -> None:
    log, res, _, view = epoch
    data = res.privacy.bundle_bytes()
    out = verify_bundle(dict(view.privacy), view.hdr_hash, view.depth, _totals(view), data,
                        b"seed" * 8)
    assert out["leaves"] == 8
    short = sum(1 for a in res.account_ids
                if res.tree.values[res.leaf_index[a]][res.params.fields.index("short")] > 0)
    assert out["flagged"] == short > 0


def test_bundle_tampering_is_named(epoch) -> None:
    _, res, _, view = epoch
    data = bytearray(res.privacy.bundle_bytes())
    with pytest.raises(VerificationError) as e:
        verify_bundle(dict(view.privacy), view.hdr_hash, view.depth, _totals(view),
                      bytes(data[:-1]), b"s" * 32)
    assert e.value.code == "privacy.bundle_hash"
    sec = dict(view.privacy)
    with pytest.raises(VerificationError) as e:
        t = _totals(view)
        verify_bundle(sec, view.hdr_hash, view.depth, (t[0] - 1, t[1], t[2]), bytes(data),
                      b"s" * 32)
    assert e.value.code == "privacy.root_opening.assets"


def test_every_user_verifies_including_the_privacy_opening(epoch) -> None:
    log, res, _, view = epoch
    for aid in res.account_ids:
        chk = verify_account(res.proof_for(aid, log.ep_secret), record=view, account_id=aid,
                             nonce=account_nonce(log.ep_secret, aid))
        assert any("privacy" in c for c in chk.checks)


def test_user_check_failures_have_specific_codes(epoch) -> None:
    log, res, signed, view = epoch
    p = res.proof_for("user-001", log.ep_secret)
    cases = {
        "proof.epoch": dataclasses.replace(p, epoch=2),
        "proof.hdr_hash": dataclasses.replace(p, hdr_hash=bytes(32)),
        "proof.depth": dataclasses.replace(p, depth=p.depth + 1),
        "leaf.tag": dataclasses.replace(p, account_id="user-002"),
        "leaf.short": dataclasses.replace(
            p, values=p.values[:4] + (p.values[4] + 1,) + p.values[5:]),
        "root.hash": dataclasses.replace(p, tag=bytes(32), account_id=None, nonce=None),
        # an id without its nonce: the tag, the only link of the leaf to the account, is
        # unchecked, so someone else's leaf would pass (issue 19)
        "leaf.nonce": dataclasses.replace(p, nonce=None),
        "leaf.account_id": dataclasses.replace(p, account_id=None),
        # the record publishes a privacy layer: a proof without its part is refused, not
        # verified with the privacy check silently skipped
        "privacy.missing": dataclasses.replace(p, privacy=None),
    }
    public = dataclasses.replace(p, account_id=None, nonce=None, privacy=None)
    chk = verify_account(public, record=view)  # the public form: said what it cannot show
    assert any("tag: NOT checked" in c for c in chk.not_checked)
    assert any("privacy: NOT checked" in c for c in chk.not_checked)
    for code, bad in cases.items():
        with pytest.raises(VerificationError) as e:
            verify_account(bad, record=view)
        assert e.value.code == code, code
    with pytest.raises(VerificationError) as e:
        verify_account(p, record=view, expected={"assets": p.values[0] + 1})
    assert e.value.code == "leaf.values.assets"
    bl = dict(p.privacy)
    bl["blinds"] = [bl["blinds"][1], bl["blinds"][0], bl["blinds"][2]]
    with pytest.raises(VerificationError) as e:
        verify_account(dataclasses.replace(p, privacy=bl), record=view)
    assert e.value.code == "privacy.opening"
    # unknown fields and non-canonical encodings in the private section are refused
    from marginproof.errors import InputError

    for mutate in (lambda d: d.__setitem__("extra", "1"),
                   lambda d: d["path"][0].__setitem__("x", "1"),
                   lambda d: d["blinds"].__setitem__(0, d["blinds"][0].upper()),
                   lambda d: d["path"][0]["c"].__setitem__(
                       0, d["path"][0]["c"][0][:-2] + format(int(d["path"][0]["c"][0][-2:], 16)
                                                             | 0x80, "02x"))):
        bad = copy.deepcopy(dict(p.privacy))
        mutate(bad)
        with pytest.raises((InputError, VerificationError)):
            verify_account(dataclasses.replace(p, privacy=bad), record=view)


def test_cross_epoch_replay_of_a_proof_is_rejected() -> None:
    log = tiny_log(4, epochs=2)
    r1, s1 = tiny_epoch(log, 1)
    from marginproof.proofs.records import signed_record_hash

    r2, s2 = tiny_epoch(log, 2, signed_record_hash(s1))
    v2 = verify_record(s2, {log.operator.key_id: log.operator.public_raw})
    with pytest.raises(VerificationError) as e:
        verify_account(r1.proof_for("user-000", log.ep_secret), record=v2)
    assert e.value.code == "proof.epoch"
    relabelled = dataclasses.replace(r1.proof_for("user-000", log.ep_secret), epoch=2)
    with pytest.raises(VerificationError) as e:
        verify_account(relabelled, record=v2)
    assert e.value.code == "proof.hdr_hash"


def test_duplicate_leaf_trick_is_impossible(epoch) -> None:
    # two users shown the same leaf: the second user's tag check fails
    log, res, _, view = epoch
    p = res.proof_for("user-000", log.ep_secret)
    with pytest.raises(VerificationError) as e:
        verify_account(p, record=view, account_id="user-003",
                       nonce=account_nonce(log.ep_secret, "user-003"))
    assert e.value.code == "leaf.tag"


def test_a_forged_record_with_a_lower_total_fails_the_signature(epoch) -> None:
    log, _, signed, _ = epoch
    bad = copy.deepcopy(signed)
    bad["record"]["root"]["sums"][2] = "0"
    with pytest.raises(VerificationError) as e:
        verify_record(bad, {log.operator.key_id: log.operator.public_raw})
    assert e.value.code == "record.sig"
    other = sign_record(bad["record"], log.source)  # signed, but not by the operator
    with pytest.raises(VerificationError) as e:
        verify_record(other, {log.operator.key_id: log.operator.public_raw})
    assert e.value.code == "record.key_id"
