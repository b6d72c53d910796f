"""Inclusion proofs: codecs, sizes, path verification with precise failure codes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from marginproof.errors import InputError
from marginproof.proofs.epoch import proof_from_tree
from marginproof.proofs.errors import VerificationError
from marginproof.proofs.inclusion import (
    proof_from_binary,
    proof_from_json,
    recompute_root,
)
from marginproof.proofs.sumtree import FORMAT_V1, FORMAT_V2, build_sum_tree

HDR = bytes(32)


def _tree(fmt=FORMAT_V2, n=16, f=4):
    rng = np.random.default_rng(1)
    tags = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    tags = np.ascontiguousarray(tags[np.lexsort(tags.T[::-1])])
    vals = rng.integers(0, 2**40, (n, f), dtype=np.uint64)
    return build_sum_tree(fmt, HDR, tags, vals)


@pytest.mark.parametrize("fmt", [FORMAT_V1, FORMAT_V2])
def test_every_leaf_proof_round_trips_and_reaches_the_root(fmt) -> None:
    tree = _tree(fmt)
    for i in range(16):
        p = proof_from_tree(tree, 7, i)
        assert proof_from_binary(p.to_binary()) == p
        assert proof_from_json(p.to_json()) == p
        assert recompute_root(p) == (tree.root_hash, tree.root_sums)


def test_binary_sizes_match_the_formula() -> None:
    assert FORMAT_V2.proof_size(4, 20) == 1_400  # <= 1.5 KB at 2^20 leaves
    assert FORMAT_V1.proof_size(4, 20) == 2_040  # the spec's layout
    assert FORMAT_V1.proof_size(3, 20) == 1_712
    p = proof_from_tree(_tree(FORMAT_V2), 1, 3)
    assert len(p.to_binary()) == FORMAT_V2.proof_size(4, 4)


def test_binary_decoder_rejects_trailing_bytes_and_wrong_magic() -> None:
    b = proof_from_tree(_tree(), 1, 0).to_binary()
    with pytest.raises(InputError, match="trailing"):
        proof_from_binary(b + b"\x00")
    with pytest.raises(InputError, match="magic"):
        proof_from_binary(b"XXXX" + b[4:])
    with pytest.raises(InputError, match="sum-width"):
        proof_from_binary(b[:7] + b"\x10" + b[8:])


def test_json_decoder_rejects_out_of_range_sums() -> None:
    p = proof_from_tree(_tree(), 1, 0)
    obj = p.to_json_obj()
    obj["path"][0]["s"][0] = str(2**64)
    from marginproof.proofs.encoding import canon

    with pytest.raises(InputError, match="exceeds"):
        proof_from_json(canon(obj))


def test_tampering_gives_a_precise_code() -> None:
    tree = _tree()
    p = proof_from_tree(tree, 1, 5)
    h, s = p.path[2]
    bad = dataclasses.replace(p, path=p.path[:2] + ((h, (s[0] + 1,) + s[1:]),) + p.path[3:])
    assert recompute_root(bad) != (tree.root_hash, tree.root_sums)
    neg = dataclasses.replace(p, path=((h, (-1,) + s[1:]),) + p.path[1:])
    with pytest.raises(VerificationError, match="range"):
        recompute_root(neg)
    over = dataclasses.replace(p, path=((h, (2**64 - 1,) + s[1:]),) + p.path[1:])
    with pytest.raises(VerificationError, match="overflow"):
        recompute_root(over)
    with pytest.raises(VerificationError) as e:
        recompute_root(dataclasses.replace(p, index=1 << p.depth))
    assert e.value.code == "proof.index"
    with pytest.raises(VerificationError) as e:
        recompute_root(dataclasses.replace(p, path=p.path[:-1]))
    assert e.value.code == "proof.depth"


def test_json_proof_formatting_is_free_but_types_are_strict() -> None:
    import json

    tree = _tree()
    p = proof_from_tree(tree, 1, 2)
    pretty = json.dumps(p.to_json_obj(), indent=2).encode()
    assert proof_from_json(pretty) == p  # hashes never cover the file bytes
    obj = p.to_json_obj()
    obj["path"][0]["s"][1] = str(int(obj["path"][0]["s"][1]) + 1)
    bad = proof_from_json(json.dumps(obj, indent=1).encode())
    assert recompute_root(bad)[0] != tree.root_hash
    for raw in (b'{"epoch": 1}', b'{"a":"1","a":"2"}', b'{"epoch": NaN}'):
        with pytest.raises(InputError):
            proof_from_json(raw)
