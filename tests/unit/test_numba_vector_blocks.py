"""The vector-block intrinsics of the grid kernel against plain numpy (reference twin)."""

import numba
import numpy as np
import pytest

from marginproof.jit.ext import block_axpy, block_min_first, block_scale


@numba.njit
def _scaled_sum_min(acc, table, rows, col, qs):  # type: ignore[no-untyped-def]
    block_scale(acc, table, rows[0], col, qs[0])
    for p in range(1, rows.shape[0]):
        block_axpy(acc, table, rows[p], col, qs[p])
    return block_min_first(acc)


@numba.njit
def _min_first(acc):  # type: ignore[no-untyped-def]
    return block_min_first(acc)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_sum_and_minimum_equal_numpy_for_any_column_offset(dtype: type) -> None:
    rng = np.random.default_rng(7)
    table = rng.normal(size=(40, 128)).astype(dtype)
    rows = rng.integers(0, 40, 5)
    qs = rng.normal(size=5).astype(dtype)
    for col in (0, 64):
        acc = np.empty(64, dtype)
        m, i = _scaled_sum_min(acc, table, rows, col, qs)
        ref = qs[0] * table[rows[0], col:col + 64]
        for r, q in zip(rows[1:], qs[1:], strict=True):
            ref = ref + q * table[r, col:col + 64]
        np.testing.assert_array_equal(acc, ref)  # same order of adds: bit for bit
        assert m == ref.min() and i == int(np.argmin(ref))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_minimum_names_the_first_of_tied_scenarios(dtype: type) -> None:
    acc = np.zeros(64, dtype)
    acc[[63, 5, 40]] = -2.5
    assert _min_first(acc) == (-2.5, 5)
    acc[:] = 1.0  # all equal: the first scenario
    assert _min_first(acc) == (1.0, 0)
    acc[63] = -np.inf
    assert _min_first(acc) == (-np.inf, 63)
