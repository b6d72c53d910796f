"""The vectorised Black-76 kernels against the scalar libm kernels they replaced (issue 9)."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

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


# The property a test of generated code checks is "the loop is vectorised and calls no libm",
# never one register file: LLVM picks 128-, 256- or 512-bit vectors by target (AVX2 hosts and
# Intel AVX-512 parts tuned for 256 bits use ymm, AMD Zen 4 uses zmm, aarch64 NEON uses v.2d).
# Intrinsics that lower to one vector instruction on every 64-bit target we run on; anything
# else in the vector loop (erfc, exp, log, llvm.exp.*, ...) would be a libm call per lane.
_LANEWISE_INTRINSICS = re.compile(
    r"llvm\.(fma|fmuladd|fabs|sqrt|minnum|maxnum|minimum|maximum|copysign|floor|ceil|trunc"
    r"|rint|nearbyint|round|roundeven|masked\.\w+|vector\.reduce\.\w+|assume|prefetch"
    r"|experimental\.noalias\.scope\.decl|lifetime\.\w+)(\.[\w.]+)?$"
)
# Packed (not scalar: ...sd / fmadd d-registers) fused multiply-adds, any vector width.
_PACKED_FMA = {
    "x86_64": re.compile(r"^\s*v?f(?:n)?m(?:add|sub|addsub|subadd)\d{3}pd\s"),
    "aarch64": re.compile(r"^\s*(?:fml[as]\s+v\d+\.2d|fml[as]\s+z\d+\.d|fm(?:ad|sb)\s+z\d+\.d)"),
}


def _vector_bodies(ir: str) -> list[str]:
    """The loop vectoriser's ``vector.body`` blocks of an LLVM IR module (label to next label)."""
    blocks = re.split(r"\n(?=[\w.$\-]+:)", ir)
    return [b for b in blocks if re.match(r"vector\.body\d*:", b)]


def _called(block: str) -> set[str]:
    return set(re.findall(r"\bcall\b[^@]*@([\w.$\-]+)\(", block))


def _host_fma() -> tuple[str, bool]:
    """The host architecture and whether LLVM may use fused multiply-add there."""
    arch = platform.machine().lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)
    if arch != "x86_64":
        return arch, arch == "aarch64"  # FMA is part of the aarch64 base ISA
    from numba.core import config

    if config.CPU_FEATURES:  # NUMBA_CPU_FEATURES overrides the host's (cross-target checks)
        return arch, "+fma" in config.CPU_FEATURES.split(",")
    import llvmlite.binding as ll

    return arch, bool(ll.get_host_cpu_features().get("fma"))


_ARCH, _HAS_FMA = _host_fma()


def _fresh_block_compile() -> tuple[str, str]:
    """LLVM IR and assembly of a fresh, uncached compilation of the greeks block function (a
    cache-loaded one has neither)."""
    n = 8
    f, k, t, s, c, d, r = _book(n)
    blk = K.njit(fastmath=K._FASTMATH, error_model="numpy")(K._greeks_block.py_func)
    blk(f, k, t, s, c, d, r, np.empty((7, n)), 0, n)
    sig = blk.signatures[0]
    return blk.inspect_llvm(sig), blk.inspect_asm(sig)


def test_greeks_loop_is_vectorised_without_libm_calls() -> None:
    ir, asm = _fresh_block_compile()
    bodies = _vector_bodies(ir)
    assert len(bodies) == 1, "the generic-branch loop was not vectorised"
    body = bodies[0]
    # vector lanes of any width: <2 x double> (SSE2/NEON), <4 x ...> (AVX2), <8 x ...> (AVX-512)
    widths = {int(w) for w in re.findall(r"<(\d+) x double>", body)}
    assert widths and min(widths) >= 2
    calls = _called(body)
    libm = sorted(c for c in calls if not _LANEWISE_INTRINSICS.match(c))
    assert not libm, f"scalar calls in the vector loop: {libm}"
    vector_fmas = re.findall(r"@llvm\.fma\.v\d+f64\(", body)
    assert len(vector_fmas) > 50  # the exp/log/N polynomials, one FMA per coefficient
    # the whole function still has the scalar edge-case pass (libm erfc/exp/log) after the loop
    assert "erfc" in _called(ir)


@pytest.mark.skipif(_ARCH not in _PACKED_FMA or not _HAS_FMA,
                    reason=f"packed-FMA mnemonics are known for x86-64 with FMA and aarch64; this "
                           f"target is {_ARCH} (fma={_HAS_FMA}), where llvm.fma may lower to "
                           f"a libm call")
def test_greeks_loop_assembles_to_packed_fmas() -> None:
    _, asm = _fresh_block_compile()
    packed = [ln for ln in asm.splitlines() if _PACKED_FMA[_ARCH].match(ln)]
    assert len(packed) > 50, f"{len(packed)} packed FMAs in the block function's assembly"


@pytest.mark.parametrize(("arch", "line", "packed"), [
    ("x86_64", "\tvfmadd213pd\t%ymm1, %ymm2, %ymm3", True),
    ("x86_64", "\tvfmadd213pd\t%zmm1, %zmm2, %zmm3", True),
    ("x86_64", "\tvfnmadd231pd\t%xmm1, %xmm2, %xmm3", True),
    ("x86_64", "\tvfmadd213sd\t%xmm1, %xmm2, %xmm3", False),
    ("x86_64", "\tvmulpd\t%zmm1, %zmm2, %zmm3", False),
    ("aarch64", "\tfmla\tv0.2d, v1.2d, v2.2d", True),
    ("aarch64", "\tfmla\tz0.d, p0/m, z1.d, z2.d", True),
    ("aarch64", "\tfmadd\td0, d1, d2, d3", False),
])
def test_packed_fma_patterns_cover_every_vector_width(arch: str, line: str, packed: bool) -> None:
    assert bool(_PACKED_FMA[arch].match(line)) is packed


def test_vector_loop_check_rejects_a_libm_call() -> None:
    v8 = "<8 x double>"
    ir = ("entry:\n  br label %vector.body\nvector.body:\n"
          f"  %a = call {v8} @llvm.fma.v8f64({v8} %x, {v8} %y, {v8} %z)\n"
          "  %b = call double @erfc(double %q)\n"
          f"  %c = call {v8} @llvm.exp.v8f64({v8} %a)\n"
          "  br label %middle.block\nmiddle.block:\n  ret void\n")
    (body,) = _vector_bodies(ir)
    bad = sorted(c for c in _called(body) if not _LANEWISE_INTRINSICS.match(c))
    assert bad == ["erfc", "llvm.exp.v8f64"]


@pytest.mark.skipif(_ARCH != "x86_64", reason="cross-target code generation is checked on x86-64")
@pytest.mark.skipif(os.environ.get("NUMBA_CPU_NAME") is not None,
                    reason="already running under a chosen target CPU")
@pytest.mark.parametrize("cpu", ["znver4", "skylake-avx512"])
def test_generated_code_checks_hold_for_other_x86_tunings(cpu: str, tmp_path: Path) -> None:
    """The two checks above pass when LLVM tunes for another x86 CPU with this host's
    features: Zen 4 uses 512-bit zmm vectors where an AVX-512 host has them (the issue-20 host),
    Skylake-AVX512 prefers 256-bit ymm; an AVX2-only host gets ymm from both."""
    env = {**os.environ, "NUMBA_CPU_NAME": cpu, "NUMBA_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider", __file__,
         "-k", "vectorised_without_libm or assembles_to_packed"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout
