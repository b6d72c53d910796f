"""The vectorised Black-76 kernels against the scalar libm kernels they replaced (issue 9)."""

from __future__ import annotations

import numpy as np
import pytest

from marginproof.pricing import _kernels as K  # noqa: N812


def _book(n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Random options with every edge case sprinkled in."""
    rng = np.random.default_rng(seed)
    f = rng.uniform(20_000.0, 120_000.0, n)
    k = f * np.exp(rng.uniform(-3.0, 3.0, n))
    t = rng.uniform(1 / 365 / 24, 3.0, n)
    s = rng.uniform(0.05, 3.0, n)
    c = rng.random(n) < 0.5
    d = rng.uniform(0.9, 1.0, n)
    r = rng.uniform(0.0, 0.1, n)
    t[0::97] = 0.0
    t[1::97] = -0.1
    k[2::97] = 0.0
    k[3::97] = -5.0
    s[4::97] = 0.0
    s[5::97] = 1e-13
    s[6::97] = 40.0  # total vol >= MAX_TOTAL_VOL
    f[7::97] = 0.0
    f[8::97] = np.nan
    s[9::97] = np.nan
    f[10::97] = 1e-310  # F/K subnormal
    k[11::97] = 1e300
    s[12::97] = 1e-9  # tiny total vol, generic branch with huge |d1|
    k[13::97] = f[13::97] * 1e-6
    return f, k, t, s, c, d, r


def _edge(f: np.ndarray, k: np.ndarray, t: np.ndarray, s: np.ndarray) -> np.ndarray:
    sd = s * np.sqrt(np.maximum(t, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        x = f / k
    return ~((k > 0) & (sd > K.MIN_TOTAL_VOL) & (sd < K.MAX_TOTAL_VOL)
             & (x >= 2.2250738585072014e-308) & (x <= 1.7976931348623157e308))


def _close(a: np.ndarray, b: np.ndarray, scale: np.ndarray, rtol: float) -> None:
    """|a - b| <= rtol * (|b| + scale), NaN where the other is NaN."""
    assert np.array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(b)
    assert np.all(np.abs(a[ok] - b[ok]) <= rtol * (np.abs(b[ok]) + scale[ok]))


@pytest.mark.parametrize("n", [1, 511, 512, 513, 5_000])
def test_greeks_agree_with_the_libm_kernel_and_edges_are_bit_identical(n: int) -> None:
    f, k, t, s, c, d, r = _book(n)
    new = np.empty((7, n))
    old = np.empty((7, n))
    K.black76_greeks_kernel(f, k, t, s, c, d, r, new)
    K.black76_greeks_kernel_libm(f, k, t, s, c, d, r, old)
    edge = _edge(f, k, t, s)
    np.testing.assert_array_equal(new[:, edge], old[:, edge])
    g = ~edge
    scale = np.nan_to_num(f[g], nan=0.0) * 1e-3  # errors measured against a 0.1 % of F floor
    for row in range(7):
        _close(new[row, g], old[row, g], scale, 1e-11)
    ser = np.empty((7, n))
    K.black76_greeks_kernel_serial(f, k, t, s, c, d, r, ser)
    np.testing.assert_array_equal(ser, new)


def test_price_kernel_is_the_greeks_price_row() -> None:
    n = 3_000
    f, k, t, s, c, d, r = _book(n, seed=1)
    g = np.empty((7, n))
    K.black76_greeks_kernel(f, k, t, s, c, d, r, g)
    p = np.empty(n)
    K.black76_price_kernel(f, k, t, s, c, d, p)
    np.testing.assert_array_equal(p, g[0])
    K.black76_price_kernel_serial(f, k, t, s, c, d, p)
    np.testing.assert_array_equal(p, g[0])
    old = np.empty(n)
    K.black76_price_kernel_libm(f, k, t, s, c, d, old)
    edge = _edge(f, k, t, s)
    np.testing.assert_array_equal(p[edge], old[edge])
    _close(p[~edge], old[~edge], f[~edge] * 1e-3, 1e-11)


def test_scenario_kernel_agrees_with_the_libm_kernel() -> None:
    n, m = 1_500, 7
    f, k, t, s, c, d, _ = _book(n, seed=2)
    rng = np.random.default_rng(5)
    moves = rng.uniform(-0.5, 0.5, (m, n))
    moves[3, ::50] = -1.0  # forward moved to 0: F/K = 0, scalar path
    vol_mult = rng.uniform(0.5, 2.0, (m, n))
    vol_mult[2, ::60] = np.nan
    vol_floor = np.where(rng.random((m, n)) < 0.3, 0.4, 0.0)
    new = np.empty((m, n))
    old = np.empty((m, n))
    K.scenario_values_kernel(f, k, t, s, c, d, moves, vol_mult, vol_floor, new)
    K.scenario_values_kernel_libm(f, k, t, s, c, d, moves, vol_mult, vol_floor, old)
    ser = np.empty((m, n))
    K.scenario_values_kernel_serial(f, k, t, s, c, d, moves, vol_mult, vol_floor, ser)
    np.testing.assert_array_equal(ser, new)
    for j in range(m):
        fj = f * (1.0 + moves[j])
        sj = np.maximum(s * vol_mult[j], vol_floor[j])
        edge = _edge(fj, k, t, sj) | np.isnan(s * vol_mult[j])
        np.testing.assert_array_equal(new[j, edge], old[j, edge])
        _close(new[j, ~edge], old[j, ~edge], np.nan_to_num(f[~edge]) * 1e-3, 1e-11)


def _host_has_avx2_fma() -> bool:
    try:
        import llvmlite.binding as ll

        feats = ll.get_host_cpu_features()
        return bool(feats.get("avx2") and feats.get("fma"))
    except Exception:  # pragma: no cover
        return False


@pytest.mark.skipif(not _host_has_avx2_fma(), reason="needs an AVX2+FMA host")
def test_greeks_loop_is_vectorised_without_libm_calls() -> None:
    n = 8
    f, k, t, s, c, d, r = _book(n)
    # a fresh, uncached compilation of the block function (a cache-loaded one has no asm text)
    blk = K.njit(fastmath=K._FASTMATH, error_model="numpy")(K._greeks_block.py_func)
    blk(f, k, t, s, c, d, r, np.empty((7, n)), 0, n)
    asm = blk.inspect_asm(blk.signatures[0])
    packed_fma = [ln for ln in asm.splitlines() if "vfmadd" in ln and "pd" in ln and "ymm" in ln]
    assert len(packed_fma) > 50  # the exp/log/N polynomials, 4 lanes per instruction
