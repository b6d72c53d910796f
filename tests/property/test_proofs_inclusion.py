"""Properties of inclusion proofs: every honest proof verifies; any single-bit change to a
leaf, a sibling, a sum, the root, the epoch or the signature fails with a specific reason."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from marginproof.errors import InputError
from marginproof.proofs.epoch import proof_from_tree
from marginproof.proofs.errors import VerificationError
from marginproof.proofs.inclusion import load_proof_bytes, recompute_root
from marginproof.proofs.records import verify_record
from marginproof.proofs.sumtree import FORMAT_V1, FORMAT_V2, build_sum_tree, reference_root
from marginproof.proofs.tags import account_nonce
from marginproof.proofs.verify import verify_account
from tests.unit.proofs.helpers import tiny_epoch, tiny_log

# codes a tampered proof may legitimately fail with (each names the broken check)
PROOF_CODES = {"proof.epoch", "proof.hdr_hash", "proof.depth", "proof.fields", "proof.format",
               "proof.index", "leaf.tag", "leaf.short", "leaf.cr_db", "root.hash", "root.sums"}


@pytest.fixture(scope="module")
def epoch():
    log = tiny_log(6)
    res, signed = tiny_epoch(log, 1)
    keys = {log.operator.key_id: log.operator.public_raw}
    return log, res, signed, keys, verify_record(signed, keys)


def _reject_code(data: bytes, view, aid=None, nonce=None) -> str:
    try:
        p = load_proof_bytes(data)
    except InputError as exc:
        return f"encoding:{exc.field}"
    with pytest.raises(VerificationError) as e:
        verify_account(p, record=view, account_id=aid, nonce=nonce)
    return e.value.code


@given(n=st.integers(1, 40), k=st.integers(0, 2), v1=st.booleans(), seed=st.integers(0, 2**32))
def test_every_honest_proof_verifies_and_matches_the_reference_root(n, k, v1, seed) -> None:
    fmt = FORMAT_V1 if v1 else FORMAT_V2
    rng = np.random.default_rng(seed)
    size = 1 << max(0, (n - 1).bit_length())
    tags = rng.integers(0, 256, (size, 32), dtype=np.uint8)
    tags = np.ascontiguousarray(tags[np.lexsort(tags.T[::-1])])
    vals = rng.integers(0, 2**45, (size, 4 + 2 * k), dtype=np.uint64)
    hdr = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
    tree = build_sum_tree(fmt, hdr, tags, vals)
    ref = reference_root(fmt, hdr, [(t.tobytes(), [int(x) for x in v]) for t, v in
                                    zip(tags, vals, strict=True)])
    assert (tree.root_hash, tree.root_sums) == ref
    for i in range(size):
        p = proof_from_tree(tree, 1, i)
        assert recompute_root(load_proof_bytes(p.to_binary())) == ref
        assert recompute_root(load_proof_bytes(p.to_json())) == ref


def test_every_single_bit_flip_of_a_binary_proof_is_rejected(epoch) -> None:
    """Exhaustive over all bit positions (header, epoch, hdr_hash, index, tag, values, path)."""
    log, res, _, _, view = epoch
    aid = res.account_ids[2]
    honest = res.proof_for(aid, log.ep_secret).public().to_binary()
    verify_account(load_proof_bytes(honest), record=view)
    nonce = account_nonce(log.ep_secret, aid)
    codes = set()
    for bit in range(len(honest) * 8):
        b = bytearray(honest)
        b[bit // 8] ^= 1 << (bit % 8)
        code = _reject_code(bytes(b), view, aid, nonce)
        assert code.startswith("encoding:") or code in PROOF_CODES | {
            f"path[{i}].sums.overflow" for i in range(8)}, (bit, code)
        codes.add(code.split(":")[0])
    assert {"proof.epoch", "proof.hdr_hash", "leaf.tag", "root.hash"} <= codes


@given(data=st.data())
def test_single_bit_flips_in_structured_proof_fields_fail_specifically(epoch, data) -> None:
    log, res, _, _, view = epoch
    aid = data.draw(st.sampled_from(res.account_ids))
    p = res.proof_for(aid, log.ep_secret)
    where = data.draw(st.sampled_from(["value", "sibling_hash", "sibling_sum", "epoch", "tag",
                                       "hdr_hash", "index"]))
    bit = data.draw(st.integers(0, 63))
    if where == "value":
        j = data.draw(st.integers(0, len(p.values) - 1))
        vals = list(p.values)
        vals[j] ^= 1 << bit
        bad = dataclasses.replace(p, values=tuple(vals))
        allowed = {"leaf.short", "leaf.cr_db", "root.hash"}
    elif where in ("sibling_hash", "sibling_sum"):
        lv = data.draw(st.integers(0, p.depth - 1))
        h, s = p.path[lv]
        if where == "sibling_hash":
            hb = bytearray(h)
            hb[bit // 8 % 32] ^= 1 << (bit % 8)
            node = (bytes(hb), s)
        else:
            j = data.draw(st.integers(0, len(s) - 1))
            node = (h, s[:j] + (s[j] ^ (1 << bit),) + s[j + 1:])
        bad = dataclasses.replace(p, path=p.path[:lv] + (node,) + p.path[lv + 1:])
        allowed = {"root.hash", f"path[{lv}].sums.overflow"} | {
            f"path[{i}].sums.overflow" for i in range(p.depth)}
    elif where == "epoch":
        bad = dataclasses.replace(p, epoch=p.epoch ^ (1 << bit))
        allowed = {"proof.epoch"}
    elif where == "index":
        bad = dataclasses.replace(p, index=p.index ^ (1 << bit))
        allowed = {"proof.index", "root.hash"}
    else:
        field = "tag" if where == "tag" else "hdr_hash"
        b = bytearray(getattr(p, field))
        b[bit // 8 % 32] ^= 1 << (bit % 8)
        bad = dataclasses.replace(p, **{field: bytes(b)})
        allowed = {"leaf.tag"} if where == "tag" else {"proof.hdr_hash"}
    nonce = account_nonce(log.ep_secret, aid)
    with pytest.raises(VerificationError) as e:
        verify_account(bad, record=view, account_id=aid, nonce=nonce)
    assert e.value.code in allowed, (where, e.value.code)


@given(data=st.data())
def test_single_bit_flips_in_the_signed_record_fail_the_signature(epoch, data) -> None:
    _, _, signed, keys, _ = epoch
    bad = copy.deepcopy(signed)
    where = data.draw(st.sampled_from(["sig", "root", "sum", "epoch", "total"]))
    bit = data.draw(st.integers(0, 255))
    if where == "sig":
        s = bytearray(bytes.fromhex(bad["sig"]))
        s[bit // 8 % 64] ^= 1 << (bit % 8)
        bad["sig"] = s.hex()
        allowed = {"record.sig"}
    elif where == "root":
        h = bytearray(bytes.fromhex(bad["record"]["root"]["hash"]))
        h[bit // 8] ^= 1 << (bit % 8)
        bad["record"]["root"]["hash"] = h.hex()
        allowed = {"record.sig"}
    elif where == "sum":
        j = data.draw(st.integers(0, len(bad["record"]["root"]["sums"]) - 1))
        s = int(bad["record"]["root"]["sums"][j]) ^ (1 << (bit % 64))
        bad["record"]["root"]["sums"][j] = str(s)
        allowed = {"record.sig"}
    elif where == "epoch":
        bad["record"]["header"]["epoch"] = str(1 ^ (1 << (bit % 64)))
        allowed = {"record.sig"}
    else:
        bad["record"]["totals"]["mm"] = str(int(bad["record"]["totals"]["mm"]) ^ (1 << (bit % 64)))
        allowed = {"record.sig"}
    with pytest.raises(VerificationError) as e:
        verify_record(bad, keys)
    assert e.value.code in allowed
