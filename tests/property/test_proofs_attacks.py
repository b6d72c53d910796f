"""Attack classes (issue 19): an attacker who controls the operator's key and the files a user
downloads. Each class is a hypothesis property: every honest object verifies, and every object
of the class is refused with a typed reason naming the check or field.

Classes here: RFC 9162 consistency and inclusion proofs on every edge; non-canonical group
encodings; values out of range reaching the builder. Further classes (unknown fields, excess
precision, duplicate accounts, rounding, trust anchors, reserves) live beside the modules they
attack and in ``tests/integration/test_replay_adversarial.py``.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from marginproof.errors import InputError
from marginproof.proofs import merklelog as ml
from marginproof.proofs.errors import VerificationError
from marginproof.proofs.group import IDENTITY, add, base_mul, parse_point
from marginproof.proofs.sumtree import FORMAT_V2, build_sum_tree


def _leaves(n: int) -> list[bytes]:
    return [ml.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


hashes = st.binary(min_size=32, max_size=32)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 70), st.data())
def test_consistency_only_the_honest_proof_verifies(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    m = data.draw(st.integers(0, n))
    old, new = ml.root_of(leaves[:m]), ml.root_of(leaves)
    honest = ml.consistency_proof(leaves, m) if 0 < m < n else []
    ml.verify_consistency(m, n, old, new, honest)
    # any other proof: drop, append, replace or reorder a node, or a random list
    kind = data.draw(st.sampled_from(["drop", "append", "replace", "swap", "random"]))
    forged = list(honest)
    if kind == "drop":
        assume(forged)
        del forged[data.draw(st.integers(0, len(forged) - 1))]
    elif kind == "append":
        forged.insert(data.draw(st.integers(0, len(forged))), data.draw(hashes))
    elif kind == "replace":
        assume(forged)
        forged[data.draw(st.integers(0, len(forged) - 1))] = data.draw(hashes)
    elif kind == "swap":
        assume(len(forged) >= 2 and forged[0] != forged[-1])
        forged[0], forged[-1] = forged[-1], forged[0]
    else:
        forged = data.draw(st.lists(hashes, max_size=8))
    assume(forged != honest)
    with pytest.raises(VerificationError) as e:
        ml.verify_consistency(m, n, old, new, forged)
    assert e.value.code == "log.consistency"


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 70), st.data())
def test_consistency_with_wrong_roots_or_sizes_fails(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    m = data.draw(st.integers(0, n))
    proof = ml.consistency_proof(leaves, m) if 0 < m < n else []
    old, new = ml.root_of(leaves[:m]), ml.root_of(leaves)
    bad_old, bad_new = data.draw(hashes), data.draw(hashes)
    assume(bad_old != old and bad_new != new)
    # (the empty tree is a prefix of every tree: with m = 0 only its own root is checkable)
    for args in ((m, n, bad_old, new), (m, n, old, bad_new))[: 1 if m == 0 else 2]:
        with pytest.raises(VerificationError):
            ml.verify_consistency(*args, proof)
    if m > 0:  # a head larger than the new tree: truncation
        with pytest.raises(VerificationError):
            ml.verify_consistency(n, m - 1, new, old, [])


def test_empty_tree_admits_only_the_empty_proof() -> None:
    leaves = _leaves(5)
    root = ml.root_of(leaves)
    ml.verify_consistency(0, 5, ml.EMPTY_ROOT, root, [])
    ml.verify_consistency(0, 0, ml.EMPTY_ROOT, ml.EMPTY_ROOT, [])
    for proof in ([root], [ml.EMPTY_ROOT], [leaves[0], leaves[1]]):
        with pytest.raises(VerificationError, match="empty proof"):
            ml.verify_consistency(0, 5, ml.EMPTY_ROOT, root, proof)
    with pytest.raises(VerificationError):
        ml.verify_consistency(0, 0, ml.EMPTY_ROOT, root, [])
    with pytest.raises(VerificationError):  # short hashes are not hashes
        ml.verify_consistency(3, 5, ml.root_of(leaves[:3]), root,
                              [h[:31] for h in ml.consistency_proof(leaves, 3)])


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 70), st.data())
def test_inclusion_only_the_honest_path_verifies(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    i = data.draw(st.integers(0, n - 1))
    root = ml.root_of(leaves)
    path = ml.inclusion_path(leaves, i)
    ml.verify_inclusion(i, n, leaves[i], path, root)
    forged = data.draw(st.lists(hashes, max_size=8))
    j = data.draw(st.integers(-2, n + 2))
    assume(forged != path or j != i)
    with pytest.raises(VerificationError):
        ml.verify_inclusion(j, n, leaves[i], forged if forged != path else path, root)


# -- group encodings -----------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_only_canonical_point_encodings_are_accepted(b: bytes) -> None:
    """Whatever bytes parse as a point re-encode to themselves (no second encoding)."""
    try:
        p = parse_point(b, "pt")
    except VerificationError as exc:
        assert exc.code == "pt"
        return
    assert add(p, IDENTITY) == p
    assert bytes(__import__("marginproof.proofs.group", fromlist=["sodium"]).sodium()
                 .crypto_core_ristretto255_add(p, IDENTITY)) == p


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 2**252))
def test_top_bit_variant_of_a_valid_point_is_refused(k: int) -> None:
    p = base_mul(k)
    parse_point(p, "pt")
    bad = p[:31] + bytes([p[31] | 0x80])
    with pytest.raises(VerificationError, match="top bit"):
        parse_point(bad, "pt")


# -- values reaching the builder -----------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(st.integers(1, 4), st.data())
def test_builder_refuses_out_of_range_values_before_any_cast(depth: int,
                                                             data: st.DataObject) -> None:
    n = 1 << depth
    vals = data.draw(st.lists(st.lists(st.integers(-(2**70), 2**70), min_size=3, max_size=3),
                              min_size=n, max_size=n))
    tags = np.frombuffer(b"".join(sorted(hashlib.sha256(bytes([i])).digest() for i in range(n))),
                         dtype=np.uint8).reshape(n, 32)
    bad = any(not 0 <= v < 2**64 for row in vals for v in row)
    arrays = [np.array(vals, dtype=object)]
    if all(-(2**63) <= v < 2**63 for row in vals for v in row):
        arrays.append(np.array(vals, dtype=np.int64))  # the cast that wrapped -1e8 to 2^64-1e8
    for arr in arrays:
        if bad:
            with pytest.raises(InputError) as e:
                build_sum_tree(FORMAT_V2, bytes(32), tags, arr)
            assert e.value.field.startswith("values[")
        else:
            try:
                build_sum_tree(FORMAT_V2, bytes(32), tags, arr)
            except InputError as exc:  # only a sum beyond the v2 capacity may be refused
                assert "2^64-1" in exc.message


# -- unknown fields, at any level, even under the operator's own signature -------------------
def _dict_paths(obj: object, path: tuple = ()) -> list[tuple]:  # type: ignore[type-arg]
    """Every path to a dict inside ``obj`` (lists entered by index)."""
    out = []
    if isinstance(obj, dict):
        out.append(path)
        for k, v in obj.items():
            out += _dict_paths(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _dict_paths(v, (*path, i))
    return out


def _at(obj: object, path: tuple) -> dict:  # type: ignore[type-arg]
    for p in path:
        obj = obj[p]  # type: ignore[index]
    assert isinstance(obj, dict)
    return obj


@pytest.fixture(scope="module")
def private_epoch():  # type: ignore[no-untyped-def]
    from tests.unit.proofs.helpers import tiny_epoch, tiny_log

    log = tiny_log(6, privacy=True)
    res, signed = tiny_epoch(log)
    return log, res, signed


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_an_unknown_field_anywhere_in_a_proof_is_refused(private_epoch, data) -> None:  # type: ignore[no-untyped-def]
    import copy
    import json

    from marginproof.proofs.inclusion import load_proof_bytes

    log, res, _ = private_epoch
    aid = data.draw(st.sampled_from(sorted(res.account_ids)))
    obj = json.loads(res.proof_for(aid, log.ep_secret).to_json())
    paths = _dict_paths(obj)
    path = data.draw(st.sampled_from(paths))
    bad = copy.deepcopy(obj)
    _at(bad, path)[data.draw(st.sampled_from(["x", "extra", "note", "_"]))] = "1"
    with pytest.raises((InputError, VerificationError)):
        load_proof_bytes(json.dumps(bad, separators=(",", ":"), sort_keys=True).encode())


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_an_unknown_field_anywhere_in_a_record_is_refused_even_when_re_signed(
        private_epoch, data) -> None:  # type: ignore[no-untyped-def]
    import copy

    from marginproof.proofs.records import parse_record, sign_record

    log, _, signed = private_epoch
    rec = signed["record"]
    path = data.draw(st.sampled_from(_dict_paths(rec)))
    bad = copy.deepcopy(rec)
    _at(bad, path)[data.draw(st.sampled_from(["x", "extra", "note"]))] = "1"
    forged = sign_record(bad, log.operator)  # the attacker holds the operator key
    with pytest.raises((InputError, VerificationError)):
        parse_record(forged, "record")
