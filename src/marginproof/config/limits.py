"""Documented numeric limits of every input, checked at each boundary (files, API, log, feeds).

Finite but absurd values (a fill of 1e308, a price of 1e300) would pass a "finite" check and
then overflow inside the models, so every number that enters marginproof is bounded here, once.
The limits are far outside any real market (a BTC price of 1e9 USD, a position of 1e10
contracts) and tight enough that every product the models form (quantity x price x contract
size x scenario move, summed over 10,000 positions) stays many orders of magnitude below the
float64 overflow (1.8e308). ``docs/formats.md`` lists them; the tests check each boundary.

================================  =========================  =================================
what                              limit                      unit
================================  =========================  =================================
position quantity (and a fill)    ``|q| <= 1e10``            coins, contracts or USD face
collateral amount (and transfer)  ``|c| <= 1e15``            units of the asset
price (index, mark, forward)      ``1e-9 <= p <= 1e9``       USD per coin (marks: their unit)
implied vol                       ``1e-4 <= v <= 10``        decimal per year
rate                              ``|r| <= 1``               continuously compounded per year
funding rate                      ``|f| <= 0.1``             decimal per 8 h
positions per portfolio           ``<= 10,000``
JSON nesting depth                ``<= 32``
JSON body (service)               ``<= 1 MiB``               (``max_body_bytes`` setting)
================================  =========================  =================================
"""

from __future__ import annotations

import math
from typing import Any

from marginproof.errors import InputError

MAX_QUANTITY = 1e10
MAX_COLLATERAL = 1e15
MIN_PRICE = 1e-9
MAX_PRICE = 1e9
MIN_VOL = 1e-4
MAX_VOL = 10.0
MAX_RATE = 1.0
MAX_FUNDING = 0.1
MAX_POSITIONS = 10_000
MAX_JSON_DEPTH = 32
MAX_INT_DIGITS = 19  # a JSON integer longer than this is not a quantity, a time or an id


def _number(value: Any, field: str) -> float:
    """A real JSON number (int or float, never a bool or a string), as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(field, f"must be a number, got {type(value).__name__}")
    try:
        f = float(value)
    except OverflowError:
        raise InputError(field, "is out of range") from None
    if not math.isfinite(f):
        raise InputError(field, "must be finite")
    return f


def check_quantity(value: Any, field: str) -> float:
    """A signed position quantity or fill, ``|q| <= MAX_QUANTITY``."""
    f = _number(value, field)
    if abs(f) > MAX_QUANTITY:
        raise InputError(field, f"|quantity| must be at most {MAX_QUANTITY:g}")
    return f


def check_collateral(value: Any, field: str) -> float:
    """A signed collateral amount or transfer, ``|c| <= MAX_COLLATERAL``."""
    f = _number(value, field)
    if abs(f) > MAX_COLLATERAL:
        raise InputError(field, f"|amount| must be at most {MAX_COLLATERAL:g}")
    return f


def check_price(value: Any, field: str) -> float:
    """A positive price in ``[MIN_PRICE, MAX_PRICE]``."""
    f = _number(value, field)
    if not MIN_PRICE <= f <= MAX_PRICE:
        raise InputError(field, f"price must be in [{MIN_PRICE:g}, {MAX_PRICE:g}]")
    return f


def check_vol(value: Any, field: str) -> float:
    """An implied vol (decimal per year) in ``[MIN_VOL, MAX_VOL]``."""
    f = _number(value, field)
    if not MIN_VOL <= f <= MAX_VOL:
        raise InputError(field, f"implied vol must be in [{MIN_VOL:g}, {MAX_VOL:g}] "
                                "(decimal per year)")
    return f


def check_rate(value: Any, field: str, bound: float = MAX_RATE) -> float:
    """A signed rate, ``|r| <= bound``."""
    f = _number(value, field)
    if abs(f) > bound:
        raise InputError(field, f"|rate| must be at most {bound:g}")
    return f


def price_problem(value: float) -> str:
    """Why ``value`` is not an acceptable price ("" if it is): for judging feed ticks."""
    if not math.isfinite(value):
        return f"is {value!r}"
    if value <= 0.0:
        return f"must be positive, got {value!r}"
    if not MIN_PRICE <= value <= MAX_PRICE:
        return f"{value!r} is outside [{MIN_PRICE:g}, {MAX_PRICE:g}]"
    return ""


def vol_problem(value: float) -> str:
    """Why ``value`` is not an acceptable implied vol ("" if it is)."""
    if not math.isfinite(value):
        return f"is {value!r}"
    if not MIN_VOL <= value <= MAX_VOL:
        return f"vol {value!r} is outside [{MIN_VOL:g}, {MAX_VOL:g}]"
    return ""


def all_finite(obj: Any, path: str = "result") -> str:
    """Path of the first non-finite float inside ``obj`` (dicts, lists, tuples), "" if none.

    Iterative (a deep structure cannot exhaust the stack).
    """
    stack: list[tuple[Any, str]] = [(obj, path)]
    while stack:
        o, p = stack.pop()
        if isinstance(o, float):
            if not math.isfinite(o):
                return p
        elif isinstance(o, dict):
            stack.extend((v, f"{p}.{k}") for k, v in o.items())
        elif isinstance(o, (list, tuple)):
            stack.extend((v, f"{p}[{i}]") for i, v in enumerate(o))
    return ""
