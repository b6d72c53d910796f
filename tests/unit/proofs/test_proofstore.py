"""Shell helpers of the proofs layer: the process-parallel hasher gives the same tree."""

from __future__ import annotations

import numpy as np

from marginproof.proofs.sumtree import FORMAT_V1, FORMAT_V2, build_sum_tree, sort_by_tag
from marginproof.storage.proofstore import ProcessHasher, ProcessMapper


def test_process_hasher_builds_the_identical_tree() -> None:
    rng = np.random.default_rng(5)
    tags = rng.integers(0, 256, (1024, 32), dtype=np.uint8)
    tags = np.ascontiguousarray(tags[sort_by_tag(tags)])
    vals = rng.integers(0, 2**40, (1024, 4), dtype=np.uint64)
    for fmt in (FORMAT_V1, FORMAT_V2):
        ref = build_sum_tree(fmt, bytes(32), tags, vals)
        with ProcessHasher(2, min_rows=16) as h:
            par = build_sum_tree(fmt, bytes(32), tags, vals, h)
            again = build_sum_tree(fmt, bytes(32), tags, vals, h)  # buffers reused
        assert np.array_equal(ref.hashes, par.hashes) and np.array_equal(ref.sums, par.sums)
        assert again.root_hash == ref.root_hash


def test_process_mapper_preserves_order() -> None:
    with ProcessMapper(2) as m:
        assert m(abs, list(range(-50, 0))) == list(range(50, 0, -1))
