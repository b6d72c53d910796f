"""Compiled implied vol: ``py_lets_be_rational`` itself, numba-compiled as a private copy.

The solver is Jäckel's "Let's be rational" (P. Jäckel, *Let's Be Rational*, Wilmott 2015,
pp. 40-53; reference code at www.jaeckel.org) as ported to Python by ``py_lets_be_rational``
(with its dependencies ``cody_special``: Cody's erf/erfcx and AS241 inverse normal, and
``piecewise_rational``: the rational cubic interpolation of the initial guess). We do not
re-implement it: :func:`_private_jit_copy` takes the library's own function objects (their
bytecode), rebinds their globals in a *private* namespace in which every library function is
replaced by its ``numba.njit`` twin, and compiles that. The result is the library's arithmetic,
operation for operation, without the per-call Python overhead (~30 us per option).

Why a private copy rather than the library's switch ``PY_LETS_BE_RATIONAL_ENABLE_NUMBA=1``:

* the switch is broken in the installed version (1.1.2): it jit-compiles the helpers of
  ``lets_be_rational`` but not the functions they call in ``cody_special`` /
  ``piecewise_rational``, so the first call fails with a numba ``TypingError``
  ("Untyped global name 'erfcx_cody'"); the top-level solver is not jitted at all;
* it is process-global and must be set before the first import of the library, so it would
  silently change the plain-Python reference path (:func:`implied_vol_one`) used by other code
  and by the tests that check this kernel against it.

The copy touches no module state: the library modules, their globals and the environment are
left as they are (the reference twin stays pure Python).

Floating-point semantics: the kernels use numba's ``error_model="numpy"`` (IEEE inf/NaN on
division by zero or overflow, as in Jäckel's C++ code) instead of Python exceptions, which
cannot be caught inside a parallel loop. Every outcome that is not a finite positive vol is
mapped to NaN, as the reference wrapper does with exceptions. The only raise left in the
library code (``AboveMaximumException`` when the normalised price reaches ``exp(x/2)``) is
pre-checked with the same floating-point operations, so it is never reached.

The two entry points are cached on disk by numba (``cache=True``), with the library code they
call compiled in. numba keys that cache on *this* file only: after upgrading
``py_lets_be_rational`` / ``cody_special`` / ``piecewise_rational``, clear
``pricing/__pycache__/_iv_kernel.*.nb[ic]`` (the agreement tests against the plain-Python
reference would flag a stale cache that changes results).

Set ``MARGINPROOF_DISABLE_NUMBA=1`` to run the copy as plain Python (slow, for debugging).
"""

from __future__ import annotations

import importlib
import math
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

# one switch for every pricing kernel (MARGINPROOF_DISABLE_NUMBA): the shim lives in _kernels
from marginproof.pricing._kernels import njit, prange  # noqa: E402

# By import_module: the packages shadow some submodules by functions of the same name
# (``cody_special.erf_cody`` is the function erf_cody, not the module).
_lbr_module = importlib.import_module("py_lets_be_rational.lets_be_rational")
#: The modules whose functions make up the solver, in dependency order.
_SOURCE_MODULES: tuple[types.ModuleType, ...] = tuple(
    importlib.import_module(name) for name in (
        "cody_special.erf_cody",
        "cody_special.normaldistribution",
        "piecewise_rational.rationalcubic",
        "py_lets_be_rational.lets_be_rational",
    )
)
#: Householder(3) iterations after the rational initial guess: the library's default (2).
_MAX_ITERATIONS: int = int(_lbr_module.implied_volatility_maximum_iterations)


def _private_jit_copy(
    modules: Iterable[types.ModuleType], jit: Callable[[Callable[..., Any]], Any],
    wrappers: Mapping[str, Callable[[Any], Any]] | None = None,
) -> dict[str, Any]:
    """Compile-ready copies of every function defined in ``modules``, calling each other.

    Parameters
    ----------
    modules : modules whose own functions (``f.__module__ == m.__name__``) are copied.
    jit : decorator applied to each copy (``numba.njit(...)``, or identity).
    wrappers : optional ``"<module>.<name>" -> factory``; the factory receives the jitted copy
        and returns the (jitted) function that the other copies call instead.

    Returns
    -------
    dict[str, Any]
        ``"<module>.<name>" -> jitted copy``. Each copy has a private globals dict (a shallow
        copy of its module's) in which every copied function, under whatever name it was
        imported, is replaced by its jitted copy; the original modules are not modified.
    """
    mods = tuple(modules)
    originals: list[tuple[types.ModuleType, str, types.FunctionType]] = []
    by_id: dict[int, types.FunctionType] = {}  # id(object as found in a module) -> function
    for m in mods:
        for name, obj in vars(m).items():
            fn = getattr(obj, "py_func", obj)  # the library may have jitted it (env switch)
            if isinstance(fn, types.FunctionType) and fn.__module__ == m.__name__:
                originals.append((m, name, fn))
                by_id[id(obj)] = fn
                by_id[id(fn)] = fn
    private_globals = {m.__name__: dict(vars(m)) for m in mods}
    jitted: dict[int, Any] = {}  # id(original function) -> jitted copy
    out: dict[str, Any] = {}
    for m, name, fn in originals:
        copy = types.FunctionType(fn.__code__, private_globals[m.__name__], fn.__name__,
                                  fn.__defaults__, fn.__closure__)
        copy.__qualname__ = fn.__qualname__
        copy.__doc__ = fn.__doc__
        key = f"{m.__name__}.{name}"
        jitted[id(fn)] = jit(copy)
        if wrappers and key in wrappers:
            jitted[id(fn)] = wrappers[key](jitted[id(fn)])
        out[key] = jitted[id(fn)]
    for g in private_globals.values():  # rebind every reference (also cross-module imports)
        for name, obj in list(g.items()):
            fn = by_id.get(id(obj))
            if fn is not None:
                g[name] = jitted[id(fn)]
    return out


_JIT_OPTIONS: dict[str, Any] = {"nogil": True, "error_model": "numpy"}


def _python_domain_inverse_norm_cdf(inner: Any) -> Any:
    """``inverse_norm_cdf`` with the reference's outcome outside (0, 1): NaN.

    The library returns ``log(u)`` / ``log(1 - u)`` there. Under CPython that raises
    ValueError (the reference then gives NaN); compiled it would be -inf / NaN and the solver
    would carry on from a zero initial guess and, after its two iterations, return an
    unconverged number. This happens only when the initial-guess map underflows, i.e. for
    normalised prices around 1e-300 and below (subnormal prices).
    """

    @njit(**_JIT_OPTIONS)
    def inverse_norm_cdf(u: float) -> float:
        if u <= 0.0 or u >= 1.0:
            return math.nan
        r: float = inner(u)
        return r

    return inverse_norm_cdf


_COPY = _private_jit_copy(
    _SOURCE_MODULES, njit(**_JIT_OPTIONS),
    {"cody_special.normaldistribution.inverse_norm_cdf": _python_domain_inverse_norm_cdf},
)
#: ``implied_volatility_from_a_transformed_rational_guess_with_limited_iterations(price, F, K,
#: T, q, N)``: the library's (undiscounted) solver, compiled.
_lbr_implied_vol = _COPY[
    f"{_lbr_module.__name__}."
    "implied_volatility_from_a_transformed_rational_guess_with_limited_iterations"
]


@njit(cache=True, **_JIT_OPTIONS)
def iv_one(price: float, forward: float, strike: float, t_years: float, is_call: bool,
           discount: float) -> float:
    """Compiled twin of :func:`marginproof.pricing.implied_vol.implied_vol_one`.

    Same steps and the same floating-point operations: undiscount, convert an ITM price to the
    OTM side through parity (C - P = F - K), require 0 < OTM price < its upper bound (F for a
    call, K for a put), then the library solver; NaN where the reference returns NaN
    (including where the library would raise). Returns a vol per year (decimal).
    """
    if not (math.isfinite(price) and math.isfinite(forward) and math.isfinite(strike)
            and math.isfinite(t_years) and math.isfinite(discount)):
        return math.nan
    if forward <= 0 or strike <= 0 or t_years <= 0 or discount <= 0:
        return math.nan
    p = price / discount
    otm_call = strike >= forward
    if is_call != otm_call:
        p = p - (forward - strike) if is_call else p + (forward - strike)
    upper = forward if otm_call else strike
    if not (0.0 < p < upper):
        return math.nan
    q = 1.0 if otm_call else -1.0
    # The library raises AboveMaximumException iff the normalised OTM price reaches
    # b_max = exp(x/2) (x mapped to the call side); same operations as in the library.
    x = math.log(forward / strike)
    beta = p / (math.sqrt(forward) * math.sqrt(strike))
    x_call = -x if q < 0 else x
    if beta >= math.exp(0.5 * x_call):
        return math.nan
    vol = _lbr_implied_vol(p, forward, strike, t_years, q, _MAX_ITERATIONS)
    return vol if math.isfinite(vol) and vol > 0 else math.nan


@njit(parallel=True, cache=True, **_JIT_OPTIONS)
def iv_array(price: NDArray[np.float64], forward: NDArray[np.float64],
             strike: NDArray[np.float64], t_years: NDArray[np.float64],
             is_call: NDArray[np.bool_], discount: NDArray[np.float64],
             out: NDArray[np.float64]) -> None:
    """``out[i] = iv_one(price[i], ..., discount[i])`` in parallel; all arrays shape (n,)."""
    for i in prange(out.shape[0]):
        out[i] = iv_one(price[i], forward[i], strike[i], t_years[i], is_call[i], discount[i])
