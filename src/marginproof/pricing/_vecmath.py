"""Call-free, branch-free float64 exp, log and normal CDF that LLVM can auto-vectorise.

Numba's pip llvmlite has no SVML (dropped in numba 0.62: the SVML patch does not apply to
LLVM >= 20), so every ``math.exp``/``math.log``/``math.erfc`` in a loop is a scalar libm call
and the loop is not vectorised. The functions here use only +, *, fma, division, compares
(selects) and integer bit manipulation, so a loop of them compiles to AVX2 code (4 lanes).

* :func:`exp_hl` -- ``exp(hi + lo)``: Cody-Waite reduction by ln 2 (fdlibm split constants),
  degree-13 Taylor polynomial on ``|r| <= ln2/2`` (truncation < 5e-18), ``2**n`` built from the
  exponent bits in two factors so results down to the subnormal range round once. The ``lo``
  word lets callers pass an argument more precise than one double (``-x*x/2`` via fma).
* :func:`log_pos` -- ``log(x)`` for normal positive finite ``x``: exponent/mantissa split
  with the mantissa in ``[sqrt(2)/2, sqrt(2))``, then fdlibm's ``log1p`` kernel
  (``s = f/(2+f)``, Remez polynomial Lg1..Lg7); < 1 ulp.
* :func:`ncdf` -- standard normal CDF ``N(u)`` by W. J. Cody's rational Chebyshev
  approximations (ACM TOMS 715, ANORM; the ones R's ``pnorm`` uses) in the three ranges
  ``|u| <= 0.67448975``, ``<= sqrt(32)``, beyond; the three rationals are evaluated for every
  lane and the numerator/denominator selected, so there is one division. The Gaussian factor
  ``exp(-u*u/2)`` is passed in (callers share it with the pdf) and computed with the fma
  error term of ``u*u``, so tails keep full relative accuracy (``N(-38) ~ 3e-316``).

Callers compile with ``error_model="numpy"``: the python error model puts a zero test (a
branch) before every division, which stops vectorisation. Inputs outside the documented
domains (NaN, inf, zero or negative ``log`` arguments) give unspecified finite or NaN results:
callers must route such lanes elsewhere.

Numba's on-disk cache of the kernels that inline these functions is keyed by the kernels' own
source file only: after editing this file, delete ``pricing/__pycache__/*.nbi`` and ``*.nbc``.

With ``MARGINPROOF_DISABLE_NUMBA=1`` the bit casts and fma fall back to plain Python (struct
and exact rationals), so the same code runs interpreted.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable
from fractions import Fraction
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

if os.environ.get("MARGINPROOF_DISABLE_NUMBA") == "1":  # pragma: no cover - debugging aid

    def njit(*args: Any, **kwargs: Any) -> Callable[[F], F]:
        def wrap(fn: F) -> F:
            return fn

        return wrap

    def as_int(x: float) -> int:
        """Bits of a float64 as a signed int64."""
        return int(struct.unpack("<q", struct.pack("<d", x))[0])

    def as_float(i: int) -> float:
        """Float64 whose bits are the int64 ``i``."""
        return float(struct.unpack("<d", struct.pack("<q", i))[0])

    def fma(a: float, b: float, c: float) -> float:
        """``a*b + c`` rounded once."""
        if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
            return a * b + c
        return float(Fraction(a) * Fraction(b) + Fraction(c))

else:
    from llvmlite import ir
    from numba import njit, types
    from numba.extending import intrinsic

    @intrinsic
    def _as_int(typingctx: Any, x: Any) -> Any:
        sig = types.int64(types.float64)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.bitcast(args[0], ir.IntType(64))

        return sig, codegen

    @intrinsic
    def _as_float(typingctx: Any, i: Any) -> Any:
        sig = types.float64(types.int64)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.bitcast(args[0], ir.DoubleType())

        return sig, codegen

    @intrinsic
    def _fma(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
        sig = types.float64(types.float64, types.float64, types.float64)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.fma(*args)

        return sig, codegen

    @njit(inline="always")
    def as_int(x: float) -> int:
        """Bits of a float64 as a signed int64."""
        return _as_int(x)  # type: ignore[call-arg]

    @njit(inline="always")
    def as_float(i: int) -> float:
        """Float64 whose bits are the int64 ``i``."""
        return _as_float(i)  # type: ignore[call-arg]

    @njit(inline="always")
    def fma(a: float, b: float, c: float) -> float:
        """``a*b + c`` rounded once (llvm.fma: one vfmadd on FMA hardware)."""
        return _fma(a, b, c)  # type: ignore[call-arg]


# --- exp ---------------------------------------------------------------------------------
_INV_LN2 = 1.44269504088896338700e00
_LN2_HI = 6.93147180369123816490e-01  # fdlibm: low 32 bits zero, so n * LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
# adding 1.5 * 2**52 rounds to an integer held in the low mantissa bits (|n| < 2**51)
_ROUND = 6755399441055744.0
_ROUND_BITS = 0x4338000000000000
_EXP_MIN = -746.0  # exp below this is 0 in float64 (round to nearest)
_EXP_MAX = 709.7  # below the overflow threshold 709.78
# 1/k! for k = 2..13
_E2 = 1.0 / 2
_E3 = 1.0 / 6
_E4 = 1.0 / 24
_E5 = 1.0 / 120
_E6 = 1.0 / 720
_E7 = 1.0 / 5040
_E8 = 1.0 / 40320
_E9 = 1.0 / 362880
_E10 = 1.0 / 3628800
_E11 = 1.0 / 39916800
_E12 = 1.0 / 479001600
_E13 = 1.0 / 6227020800


@njit(cache=True, inline="always")
def exp_hl(hi: float, lo: float) -> float:
    """``exp(hi + lo)`` with ``|lo|`` at most about ``ulp(hi)``; flushes to 0 below -746 and
    saturates near 709.7 (callers here only pass arguments <= 0)."""
    x = hi if hi > _EXP_MIN else _EXP_MIN
    x = x if x < _EXP_MAX else _EXP_MAX
    tr = x * _INV_LN2 + _ROUND
    n = tr - _ROUND
    ni = as_int(tr) - _ROUND_BITS
    # x - n*LN2_HI is exact (n has <= 11 bits, LN2_HI 21 trailing zero bits)
    r = fma(-n, _LN2_HI, x) + fma(-n, _LN2_LO, lo)
    p = fma(r, _E13, _E12)
    p = fma(p, r, _E11)
    p = fma(p, r, _E10)
    p = fma(p, r, _E9)
    p = fma(p, r, _E8)
    p = fma(p, r, _E7)
    p = fma(p, r, _E6)
    p = fma(p, r, _E5)
    p = fma(p, r, _E4)
    p = fma(p, r, _E3)
    p = fma(p, r, _E2)
    p = fma(p, r * r, r) + 1.0
    # 2**n = 2**n1 * 2**n2 with both halves normal for n in [-1076, 1024]
    n1 = ni >> 1
    n2 = ni - n1
    return p * as_float((n1 + 1023) << 52) * as_float((n2 + 1023) << 52)


@njit(cache=True, inline="always")
def exp_neg_half_sq(u: float) -> float:
    """``exp(-u*u/2)`` with the rounding error of ``u*u`` kept (fma), i.e. accurate to a few
    ulp even where ``u*u/2`` is large."""
    p = u * u
    e = fma(u, u, -p)
    return exp_hl(-0.5 * p, -0.5 * e)


# --- log ---------------------------------------------------------------------------------
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_SQRTH_BITS = 0x3FE6A09E00000000  # ~ sqrt(2)/2, high word only (as fdlibm/musl)
_ONE_BITS = 0x3FF0000000000000
_MANT_MASK = 0x000FFFFFFFFFFFFF


@njit(cache=True, inline="always")
def log_pos(x: float) -> float:
    """``log(x)`` for positive normal finite ``x`` (< 1 ulp); undefined elsewhere."""
    ix = as_int(x) + (_ONE_BITS - _SQRTH_BITS)
    kk = (ix >> 52) - 1023
    m = as_float((ix & _MANT_MASK) + _SQRTH_BITS)  # in [sqrt(2)/2, sqrt(2))
    dk = as_float(kk + _ROUND_BITS) - _ROUND  # int64 -> float64 without cvtqq2pd (AVX2 lacks it)
    f = m - 1.0
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * fma(w, fma(w, _LG6, _LG4), _LG2)
    t2 = z * fma(w, fma(w, fma(w, _LG7, _LG5), _LG3), _LG1)
    rr = t2 + t1
    return s * (hfsq + rr) + dk * _LN2_LO - hfsq + f + dk * _LN2_HI


# --- normal CDF (Cody, ACM TOMS 715) -------------------------------------------------------
_A0 = 2.2352520354606839287
_A1 = 161.02823106855587881
_A2 = 1067.6894854603709582
_A3 = 18154.981253343561249
_A4 = 0.065682337918207449113
_B0 = 47.20258190468824187
_B1 = 976.09855173777669322
_B2 = 10260.932208618978205
_B3 = 45507.789335026729956
_C0 = 0.39894151208813466764
_C1 = 8.8831497943883759412
_C2 = 93.506656132177855979
_C3 = 597.27027639480026226
_C4 = 2494.5375852903726711
_C5 = 6848.1904505362823326
_C6 = 11602.651437647350124
_C7 = 9842.7148383839780218
_C8 = 1.0765576773720192317e-8
_D0 = 22.266688044328115691
_D1 = 235.38790178262499861
_D2 = 1519.377599407554805
_D3 = 6485.558298266760755
_D4 = 18615.571640885098091
_D5 = 34900.952721145977266
_D6 = 38912.003286093271411
_D7 = 19685.429676859990727
_P0 = 0.21589853405795699
_P1 = 0.1274011611602473639
_P2 = 0.022235277870649807
_P3 = 0.001421619193227893466
_P4 = 2.9112874951168792e-5
_P5 = 0.02307344176494017303
_Q0 = 1.28426009614491121
_Q1 = 0.468238212480865118
_Q2 = 0.0659881378689285515
_Q3 = 0.00378239633202758244
_Q4 = 7.29751555083966205e-5
_INV_SQRT_2PI = 0.398942280401432677939946059934
_SPLIT_A = 0.67448975
_SPLIT_C = 5.656854249492380195206754896838  # sqrt(32)


@njit(cache=True, inline="always")
def ncdf(u: float, g: float) -> float:
    """Standard normal CDF ``N(u)`` given ``g = exp(-u*u/2)`` (see :func:`exp_neg_half_sq`).

    Relative error a few ulp for finite ``u`` (the lower tail down to the subnormal range);
    ``N(u) = 1 - Q`` above 0 has absolute error ~1e-16.
    """
    y = abs(u)
    # |u| <= 0.674: N = 1/2 + u * A(u^2) / B(u^2)
    sq = u * u
    na = u * fma(fma(fma(fma(_A4, sq, _A0), sq, _A1), sq, _A2), sq, _A3)
    da = fma(fma(fma(sq + _B0, sq, _B1), sq, _B2), sq, _B3)
    # |u| <= sqrt(32): Q = g * C(y) / D(y)
    nb = fma(fma(fma(fma(fma(fma(fma(fma(_C8, y, _C0), y, _C1), y, _C2), y, _C3), y, _C4), y,
                          _C5), y, _C6), y, _C7)
    db = fma(fma(fma(fma(fma(fma(fma(y + _D0, y, _D1), y, _D2), y, _D3), y, _D4), y, _D5), y,
                     _D6), y, _D7)
    # beyond: Q = g * (1/sqrt(2 pi) - z P(z) / Q(z)) / y with z = 1/u^2
    z = 1.0 / (sq if sq > 1.0 else 1.0)  # only used where |u| > sqrt(32); no 1/0 at u = 0
    pc = fma(fma(fma(fma(fma(_P5, z, _P0), z, _P1), z, _P2), z, _P3), z, _P4)
    qc = fma(fma(fma(fma(z + _Q0, z, _Q1), z, _Q2), z, _Q3), z, _Q4)
    nc = fma(_INV_SQRT_2PI, qc, -z * pc)
    dc = qc * y
    small = y <= _SPLIT_A
    mid = y <= _SPLIT_C
    num = na if small else (nb if mid else nc)
    den = da if small else (db if mid else dc)
    ratio = num / den
    q = g * ratio
    tail = q if u < 0.0 else 1.0 - q
    return 0.5 + ratio if small else tail


def ncdf_of(u: float) -> float:
    """``N(u)`` from :func:`ncdf` and :func:`exp_neg_half_sq` (a convenience for tests)."""
    return float(ncdf(u, exp_neg_half_sq(u)))


