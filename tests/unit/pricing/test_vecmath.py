"""The call-free exp, log and normal CDF of ``_vecmath`` against the libm and exact references."""

from __future__ import annotations

import math
from decimal import Decimal, getcontext
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from marginproof.pricing._kernels import njit
from marginproof.pricing._vecmath import exp_hl, exp_neg_half_sq, log_pos, ncdf

getcontext().prec = 50
_SQRT2 = Decimal(2).sqrt()


@njit(cache=False, error_model="numpy")
def _exp_all(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        out[i] = exp_hl(x[i], 0.0)


@njit(cache=False, error_model="numpy")
def _gauss_all(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        out[i] = exp_neg_half_sq(x[i])


@njit(cache=False, error_model="numpy")
def _log_all(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        out[i] = log_pos(x[i])


@njit(cache=False, error_model="numpy")
def _ncdf_all(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        out[i] = ncdf(x[i], exp_neg_half_sq(x[i]))


def _apply(kernel: object, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    kernel(x, out)  # type: ignore[operator]
    return out


def _gauss_ref(u: float) -> float:
    """exp(-u^2/2) to ~1 ulp: the rounding error of u*u carried exactly."""
    p = u * u
    e = float(Fraction(u) ** 2 - Fraction(p))
    return math.exp(-0.5 * p) * math.exp(-0.5 * e)


def _ncdf_ref(u: float) -> float:
    """N(u) = erfc(-u/sqrt 2)/2 with the rounding error of u/sqrt 2 corrected to first order."""
    v = -u / math.sqrt(2.0)
    dv = float(Decimal(-u) / _SQRT2 - Decimal(v))
    return 0.5 * (math.erfc(v) - dv * 2.0 / math.sqrt(math.pi) * math.exp(-v * v))


def test_exp_matches_libm_over_the_whole_range() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-745.0, 709.0, 100_000), rng.uniform(-1.0, 1.0, 20_000),
                        [0.0, -0.0, 1e-300, -1e-300, 0.5 * math.log(2), -708.4, -745.1, 709.0]])
    got = _apply(_exp_all, x)
    ref = np.array([math.exp(v) for v in x])
    normal = ref >= 2.2250738585072014e-308
    assert np.all(np.abs(got[normal] - ref[normal]) <= 1.0 * np.spacing(ref[normal]))
    assert np.all(np.abs(got[~normal] - ref[~normal]) <= 5e-324)  # subnormal: 1 unit
    assert _apply(_exp_all, np.array([-746.0, -800.0, -1e300]))[0] == 0.0


def test_gaussian_factor_keeps_full_precision_in_the_tails() -> None:
    u = np.random.default_rng(2).uniform(-38.0, 38.0, 20_000)
    got = _apply(_gauss_all, u)
    ref = np.array([_gauss_ref(v) for v in u])
    ok = ref > 1e-300
    assert np.max(np.abs(got[ok] - ref[ok]) / ref[ok]) < 5e-16


def test_log_within_one_ulp_of_libm() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([np.exp(rng.uniform(-707.0, 709.0, 100_000)),
                        1.0 + rng.uniform(-1e-3, 1e-3, 20_000),
                        [1.0, 2.0, 0.5, math.sqrt(0.5), math.sqrt(2.0), 2.2250738585072014e-308,
                         1.7976931348623157e308]])
    got = _apply(_log_all, x)
    ref = np.array([math.log(v) for v in x])
    assert np.all(np.abs(got - ref) <= np.spacing(np.abs(ref)))


def test_normal_cdf_relative_error_below_1e15_down_the_tail() -> None:
    rng = np.random.default_rng(4)
    u = np.concatenate([rng.uniform(-38.4, 38.4, 30_000), rng.uniform(-1.0, 1.0, 5_000),
                        [0.0, 0.67448975, -0.67448975, 5.656854249492381, -5.656854249492381]])
    got = _apply(_ncdf_all, u)
    ref = np.array([_ncdf_ref(v) for v in u])
    ok = ref > 1e-300
    assert np.max(np.abs(got[ok] - ref[ok]) / ref[ok]) < 1e-15
    assert got[np.flatnonzero(u == 0.0)[0]] == 0.5


@given(st.floats(-745.0, 709.0))
def test_exp_property(x: float) -> None:
    got = float(_apply(_exp_all, np.array([x]))[0])
    assert math.isclose(got, math.exp(x), rel_tol=2.3e-16, abs_tol=5e-324)


@given(st.floats(2.2250738585072014e-308, 1.7976931348623157e308))
def test_log_property(x: float) -> None:
    got = float(_apply(_log_all, np.array([x]))[0])
    ref = math.log(x)
    assert abs(got - ref) <= float(np.spacing(abs(ref)))


@given(st.floats(-38.4, 38.4))
def test_normal_cdf_property(u: float) -> None:
    got = _apply(_ncdf_all, np.array([u, -u]))
    ref = _ncdf_ref(u)
    assert math.isclose(got[0], ref, rel_tol=1e-15, abs_tol=1e-300)
    assert abs(got[0] + got[1] - 1.0) <= 4.5e-16  # N(u) + N(-u) = 1


@pytest.mark.parametrize("u", [-40.0, -38.5, -37.0])
def test_normal_cdf_far_tail_reaches_subnormals(u: float) -> None:
    got = float(_apply(_ncdf_all, np.array([u]))[0])
    ref = _ncdf_ref(u)
    assert got == pytest.approx(ref, rel=1e-6, abs=1e-323)
