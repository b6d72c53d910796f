"""L0 encoding: integer amounts, canonical JSON and domain-separated SHA-256.

Everything that is hashed or signed goes through this module:

* amounts are non-negative integers of *atoms* (``10**-scale`` of a unit); decimal strings are
  parsed with an ASCII regex and :class:`fractions.Fraction`, never ``float`` or ``int()``
  (which accepts ``' 42 '``, ``'0_1'`` and non-ASCII digits);
* each computed amount is rounded **once**, against the operator (collateral down, liabilities
  and margin up);
* canonical JSON is UTF-8, sorted keys, no whitespace, only strings/arrays/objects/booleans/null
  (numbers travel as decimal strings); the strict parser rejects duplicate keys, ``NaN``, bare
  numbers and any input that does not re-encode to the same bytes;
* every hash input starts with one prefix byte from :data:`PREFIX` (spec section 3).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from marginproof.errors import InputError

# -- domain-separation prefixes (spec section 3; 0x16 and 0x19 are additions of format v2) -------
PREFIX_LOG_LEAF = b"\x00"       # RFC 6962 leaf, only inside the two transparency logs
PREFIX_LOG_NODE = b"\x01"       # RFC 6962 interior node
PREFIX_SUM_LEAF = b"\x10"       # sum-tree leaf
PREFIX_SUM_NODE_V1 = b"\x11"    # sum-tree node, 128-bit child sums (format v1)
PREFIX_PAD = b"\x12"            # padding-leaf tag
PREFIX_ACCOUNT = b"\x13"        # account tag
PREFIX_HEADER = b"\x14"         # epoch header hash
PREFIX_PARAMS = b"\x15"         # parameter-file hash (= config.params.params_hash)
PREFIX_MARKET = b"\x16"         # market-snapshot body hash (v2 addition)
PREFIX_COM_LEAF = b"\x17"       # commitment-tree leaf (L5)
PREFIX_COM_NODE = b"\x18"       # commitment-tree node (L5)
PREFIX_SUM_NODE_V2 = b"\x19"    # sum-tree node, 64-bit child sums (format v2)
PREFIX_BUNDLE = b"\x1a"         # privacy bundle file hash (v2 addition)

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
U128_MAX = 2**128 - 1

_DEC = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?", re.ASCII)
_SDEC = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?", re.ASCII)
_UINT = re.compile(r"0|[1-9][0-9]*", re.ASCII)
_HEX64 = re.compile(r"[0-9a-f]{64}", re.ASCII)
_HEX = re.compile(r"(?:[0-9a-f]{2})*", re.ASCII)


# -- hashing -------------------------------------------------------------------------------
def sha256(*parts: bytes) -> bytes:
    """SHA-256 of the concatenation of ``parts`` (callers put the prefix byte first)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def u32be(x: int) -> bytes:
    """Big-endian 4-byte unsigned integer."""
    return x.to_bytes(4, "big")


def u64be(x: int) -> bytes:
    """Big-endian 8-byte unsigned integer."""
    return x.to_bytes(8, "big")


# -- canonical JSON ------------------------------------------------------------------------
def _check_canon(obj: Any, path: str) -> Any:
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise InputError(path, f"object key {k!r} is not a string")
            out[k] = _check_canon(v, f"{path}.{k}")
        return out
    if isinstance(obj, (list, tuple)):
        return [_check_canon(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, float):
        raise InputError(path, "floats are not allowed in canonical JSON (use decimal strings)")
    raise InputError(path, f"unsupported type {type(obj).__name__} in canonical JSON")


def canon(obj: Any) -> bytes:
    """Canonical UTF-8 JSON bytes of ``obj``; Python ints become decimal strings.

    Raises :class:`InputError` for floats or any other non-JSON type.
    """
    return json.dumps(_check_canon(obj, "json"), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def _no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _no_number(text: str) -> Any:
    raise ValueError(f"bare number {text} is not allowed (numbers are decimal strings)")


def parse_strict(data: bytes, what: str) -> Any:
    """Parse JSON strictly but without the byte-exactness rule: no duplicate keys, no
    ``NaN``/``Infinity``, no bare numbers, valid UTF-8. Used for inclusion proofs and tree
    heads, whose hashes and signatures are always over the *re-encoded* canonical bytes, so
    their file formatting carries no meaning."""
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise InputError(what, f"not UTF-8: {exc}") from None
    try:
        obj = json.loads(text, object_pairs_hook=_no_dupes, parse_constant=_no_constant,
                         parse_int=_no_number, parse_float=_no_number)
    except ValueError as exc:
        raise InputError(what, f"malformed JSON: {exc}") from None
    canon(obj)  # only JSON types
    return obj


def parse_canonical(data: bytes, what: str) -> Any:
    """Parse canonical JSON strictly (see module docstring); ``what`` names the input in errors.

    For parameters, log entries and epoch records (spec section 2). A single trailing newline
    is tolerated (files are written with one); anything else that does not re-encode to
    identical bytes is rejected.
    """
    raw = data[:-1] if data.endswith(b"\n") else data
    obj = parse_strict(raw, what)
    if canon(obj) != raw:
        raise InputError(what, "not canonical JSON (sorted keys, no whitespace, strings only)")
    return obj


# -- decimal strings and integers ------------------------------------------------------------
def parse_decimal(s: Any, field: str, *, signed: bool = False) -> Fraction:
    """Exact value of an ASCII decimal string (``"12.5"``; ``"-3"`` only if ``signed``).

    No exponent, whitespace, ``+``, ``_`` or non-ASCII digits; ``-0`` is rejected as
    non-canonical.
    """
    if not isinstance(s, str):
        raise InputError(field, f"must be a decimal string, got {type(s).__name__}")
    rx = _SDEC if signed else _DEC
    if rx.fullmatch(s) is None:
        raise InputError(field, f"not a {'signed ' if signed else ''}decimal string: {s!r}")
    v = Fraction(s)
    if s.startswith("-") and v == 0:
        raise InputError(field, f"negative zero {s!r} is not canonical")
    return v


def decimals_of(s: str) -> int:
    """Number of fractional digits written in a decimal string."""
    return len(s.split(".", 1)[1]) if "." in s else 0


def to_atoms(s: Any, scale: int, field: str, *, signed: bool = False) -> int:
    """Integer atoms of a decimal amount at ``scale`` decimals; more digits is an error."""
    v = parse_decimal(s, field, signed=signed)
    assert isinstance(s, str)
    if decimals_of(s) > scale:
        raise InputError(field, f"{s!r} has more than {scale} decimals (no silent rounding)")
    atoms = v * 10**scale
    assert atoms.denominator == 1
    return int(atoms)


def parse_uint(s: Any, field: str, *, max_value: int = U64_MAX) -> int:
    """Canonical unsigned decimal integer string in ``[0, max_value]``."""
    if not isinstance(s, str) or _UINT.fullmatch(s) is None:
        raise InputError(field, f"must be a canonical unsigned integer string, got {s!r}")
    if len(s) > len(str(max_value)) or int(s) > max_value:
        raise InputError(field, f"{s} exceeds {max_value}")
    return int(s)


def parse_hex32(s: Any, field: str) -> bytes:
    """32 bytes from exactly 64 lowercase hex characters."""
    if not isinstance(s, str) or _HEX64.fullmatch(s) is None:
        raise InputError(field, "must be 64 lowercase hex characters")
    return bytes.fromhex(s)


def parse_hex(s: Any, field: str, n_bytes: int | None = None) -> bytes:
    """Bytes from lowercase hex (optionally of a fixed length)."""
    if not isinstance(s, str) or _HEX.fullmatch(s) is None:
        raise InputError(field, "must be lowercase hex")
    b = bytes.fromhex(s)
    if n_bytes is not None and len(b) != n_bytes:
        raise InputError(field, f"must be {n_bytes} bytes, got {len(b)}")
    return b


# -- rounding, once, against the operator ----------------------------------------------------
def floor_atoms(x: Fraction, scale: int) -> int:
    """``floor(x * 10**scale)``: for amounts in the user's favour that the venue may count
    (collateral value)."""
    return int(math.floor(x * 10**scale))


def ceil_atoms(x: Fraction, scale: int) -> int:
    """``ceil(x * 10**scale)``: for requirements and liabilities (margin, what is owed)."""
    return int(math.ceil(x * 10**scale))


def quantize_float(x: float, scale: int, field: str, *, up: bool) -> int:
    """Atoms of an engine float, rounded once (``up`` for margin); exact via ``Fraction(x)``.

    NaN, infinities and negatives are refused: a margin is never lowered on bad data.
    """
    if not math.isfinite(x):
        raise InputError(field, f"engine returned a non-finite value {x!r}")
    if x < 0.0:
        raise InputError(field, f"engine returned a negative amount {x!r}")
    q = Fraction(x)
    return ceil_atoms(q, scale) if up else floor_atoms(q, scale)


def decimal_string(x: Fraction, digits: int) -> str:
    """Decimal string of ``x`` rounded half-even to ``digits`` decimals, trailing zeros cut.

    Used to freeze engine floats (market data) into log entries; the log value, not the
    original float, is what the committed path uses.
    """
    scaled = x * 10**digits
    n = round(scaled)  # Fraction.__round__ is exact, half-even
    sign = "-" if n < 0 else ""
    n = abs(n)
    whole, frac = divmod(n, 10**digits)
    if digits == 0 or frac == 0:
        return f"{sign}{whole}" if (whole or frac) else "0"
    fs = str(frac).rjust(digits, "0").rstrip("0")
    return f"{sign}{whole}.{fs}"


def float_to_decimal(x: float, digits: int, field: str) -> str:
    """Exact-then-rounded decimal string of a finite float (see :func:`decimal_string`)."""
    if not math.isfinite(x):
        raise InputError(field, f"must be finite, got {x!r}")
    return decimal_string(Fraction(x), digits)
