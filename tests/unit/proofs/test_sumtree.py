"""L2: the numpy-packed sum tree equals its per-node twin; range and order rules hold."""

from __future__ import annotations

import numpy as np
import pytest

from marginproof.errors import InputError
from marginproof.proofs.sumtree import (
    FORMAT_V1,
    FORMAT_V2,
    TreeFormat,
    arrange_leaves,
    build_sum_tree,
    depth_for,
    hash_rows,
    reference_root,
)
from marginproof.proofs.tags import pad_secret, pad_tag

HDR = bytes(range(32))


def _leaves(n: int, f: int, high: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tags = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    order = np.lexsort(tags.T[::-1])
    vals = rng.integers(0, high, (n, f), dtype=np.uint64, endpoint=True)
    return np.ascontiguousarray(tags[order]), vals


def _reference(fmt: TreeFormat, tags: np.ndarray, vals: np.ndarray) -> tuple[bytes, tuple]:
    return reference_root(fmt, HDR, [(t.tobytes(), [int(x) for x in v])
                                     for t, v in zip(tags, vals, strict=True)])


@pytest.mark.parametrize("n,f", [(1, 4), (2, 1), (8, 4), (64, 12)])
def test_fast_tree_equals_per_node_reference_v2(n: int, f: int) -> None:
    tags, vals = _leaves(n, f, 2**50)
    tree = build_sum_tree(FORMAT_V2, HDR, tags, vals)
    assert (tree.root_hash, tree.root_sums) == _reference(FORMAT_V2, tags, vals)


def test_fast_tree_equals_reference_v1_including_128_bit_carries() -> None:
    tags, vals = _leaves(32, 3, 2**64 - 1)
    vals[:, 0] = np.uint64(2**64 - 1)  # every sum of this field carries into the high limb
    tree = build_sum_tree(FORMAT_V1, HDR, tags, vals)
    ref = _reference(FORMAT_V1, tags, vals)
    assert (tree.root_hash, tree.root_sums) == ref
    assert tree.root_sums[0] == 32 * (2**64 - 1)


def test_v2_refuses_a_total_beyond_64_bits_instead_of_wrapping() -> None:
    tags, vals = _leaves(4, 2, 1)
    vals[:] = np.uint64(2**63)
    with pytest.raises(InputError, match="exceeds 2\\^64-1"):
        build_sum_tree(FORMAT_V2, HDR, tags, vals)


def test_duplicate_or_unsorted_tags_abort_the_build() -> None:
    tags, vals = _leaves(8, 4, 100)
    dup = tags.copy()
    dup[3] = dup[2]
    with pytest.raises(InputError, match="duplicate"):
        build_sum_tree(FORMAT_V2, HDR, dup, vals)
    with pytest.raises(InputError, match="not sorted"):
        build_sum_tree(FORMAT_V2, HDR, tags[::-1].copy(), vals)


def test_padding_fills_to_a_power_of_two_and_everything_is_sorted() -> None:
    real, vals = _leaves(5, 4, 1000, seed=3)
    ps = pad_secret(b"s" * 32)
    pads = np.frombuffer(b"".join(pad_tag(ps, j) for j in range(3)), np.uint8).reshape(3, 32)
    tags, v, pos = arrange_leaves(real, vals, pads)
    assert tags.shape == (8, 32)
    assert [t.tobytes() for t in tags] == sorted(t.tobytes() for t in tags)
    for i in range(5):
        assert np.array_equal(v[pos[i]], vals[i])
        assert tags[pos[i]].tobytes() == real[i].tobytes()
    assert int(v.sum()) == int(vals.sum())


def test_depth_rule() -> None:
    assert depth_for(1, 10) == 10
    assert depth_for(1_000_000, 10) == 20
    assert depth_for(1 << 20, 10) == 20
    assert depth_for((1 << 20) + 1, 10) == 21


def test_hash_rows_matches_hashlib_row_by_row() -> None:
    import hashlib

    rows = np.arange(5 * 97, dtype=np.uint64).astype(np.uint8).reshape(5, 97)
    out = hash_rows(rows)
    for i in range(5):
        assert out[i].tobytes() == hashlib.sha256(rows[i].tobytes()).digest()


def test_node_hash_commits_to_both_child_sums_not_only_the_total() -> None:
    # Maxwell-style trick: move value between siblings keeping the total; the root must change.
    tags, vals = _leaves(2, 1, 10)
    vals[:] = np.array([[7], [3]], dtype=np.uint64)
    a = build_sum_tree(FORMAT_V2, HDR, tags, vals)
    vals2 = np.array([[3], [7]], dtype=np.uint64)
    b = build_sum_tree(FORMAT_V2, HDR, tags, vals2)
    assert a.root_sums == b.root_sums
    assert a.root_hash != b.root_hash
