"""Deribit-style instrument names: parse and print.

Grammar (expiry at 08:00 UTC, Deribit's settlement time)::

    BTC-PERPETUAL            inverse perpetual, amount in USD
    BTC_USDC-PERPETUAL       linear perpetual settled in USDC, amount in BTC
    BTC-27DEC26              inverse future
    BTC_USDC-27DEC26         linear future
    BTC-27DEC26-100000-C     inverse (coin-settled) European option, amount in BTC
    BTC_USDC-27DEC26-100000-P  linear (USDC-settled) European option
    BTC_USDT                 spot pair
Strikes with a fractional part use ``d`` for the decimal point (``XRP_USDC-27DEC26-0d625-C``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from marginproof.errors import InputError
from marginproof.instruments.contracts import Instrument, InstrumentKind, Settlement

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DATE_RE = re.compile(r"^(\d{1,2})([A-Z]{3})(\d{2})$")
_ASSET_RE = re.compile(r"^[A-Z][A-Z0-9]{1,9}$")
_STABLES = ("USDC", "USDT", "USD")
EXPIRY_HOUR_UTC = 8


def parse_expiry(token: str, field: str = "instrument") -> datetime:
    """Parse ``27DEC26`` into ``2026-12-27 08:00 UTC``."""
    m = _DATE_RE.match(token)
    if not m or m.group(2) not in _MONTHS:
        raise InputError(field, f"bad expiry date {token!r} (expected e.g. 27DEC26)")
    day, mon, yy = int(m.group(1)), _MONTHS.index(m.group(2)) + 1, int(m.group(3))
    try:
        return datetime(2000 + yy, mon, day, EXPIRY_HOUR_UTC, tzinfo=UTC)
    except ValueError as exc:
        raise InputError(field, f"bad expiry date {token!r}: {exc}") from exc


def format_expiry(expiry: datetime) -> str:
    """Format an expiry as Deribit does (no leading zero): ``7JUN24``."""
    return f"{expiry.day}{_MONTHS[expiry.month - 1]}{expiry.year % 100:02d}"


def _parse_strike(token: str, field: str) -> float:
    if not re.fullmatch(r"\d+(d\d+)?", token):
        raise InputError(field, f"bad strike {token!r}")
    strike = float(token.replace("d", "."))
    if strike <= 0:
        raise InputError(field, f"strike must be positive, got {token!r}")
    return strike


def _format_strike(strike: float) -> str:
    if float(strike).is_integer():
        return str(int(strike))
    return repr(float(strike)).replace(".", "d")


def _parse_base(token: str, field: str) -> tuple[str, str | None]:
    """``BTC`` -> (BTC, None); ``BTC_USDC`` -> (BTC, USDC)."""
    parts = token.split("_")
    if len(parts) > 2 or not all(_ASSET_RE.match(p) for p in parts):
        raise InputError(field, f"bad underlying {token!r}")
    if len(parts) == 2:
        if parts[1] not in _STABLES:
            raise InputError(field, f"unsupported quote currency {parts[1]!r}")
        return parts[0], parts[1]
    return parts[0], None


def parse_instrument(name: str, field: str = "instrument") -> Instrument:
    """Parse a Deribit-style name into an :class:`Instrument`.

    Raises
    ------
    InputError
        If the name does not follow the grammar above (names the field).
    """
    if not isinstance(name, str) or not name or name != name.strip():
        raise InputError(field, f"bad instrument name {name!r}")
    tokens = name.split("-")
    # upper case everywhere except the "d" decimal point of a strike
    if any(tok != tok.upper() for i, tok in enumerate(tokens) if not (len(tokens) == 4 and i == 2)):
        raise InputError(field, f"instrument names are upper case: {name!r}")
    base, quote = _parse_base(tokens[0], field)
    linear = quote is not None
    settlement = Settlement.LINEAR if linear else Settlement.INVERSE
    settle_quote = quote or "USD"
    if len(tokens) == 1:
        if not linear:
            raise InputError(field, f"spot pairs need a quote currency, e.g. {base}_USDT")
        return Instrument(
            name=name, underlying=base, kind=InstrumentKind.SPOT, settlement=Settlement.LINEAR,
            quote=settle_quote,
        )
    if len(tokens) == 2:
        if tokens[1] == "PERPETUAL":
            return Instrument(
                name=name, underlying=base, kind=InstrumentKind.PERPETUAL,
                settlement=settlement, quote=settle_quote,
            )
        expiry = parse_expiry(tokens[1], field)
        return Instrument(
            name=name, underlying=base, kind=InstrumentKind.FUTURE, settlement=settlement,
            quote=settle_quote, expiry=expiry,
        )
    if len(tokens) == 4:
        expiry = parse_expiry(tokens[1], field)
        strike = _parse_strike(tokens[2], field)
        if tokens[3] not in ("C", "P"):
            raise InputError(field, f"option type must be C or P in {name!r}")
        return Instrument(
            name=name, underlying=base, kind=InstrumentKind.OPTION, settlement=settlement,
            quote=settle_quote, expiry=expiry, strike=strike, is_call=tokens[3] == "C",
        )
    raise InputError(field, f"unrecognised instrument name {name!r}")


def format_instrument(inst: Instrument) -> str:
    """Print the canonical Deribit-style name of an instrument."""
    base = inst.underlying if inst.settlement is Settlement.INVERSE else (
        f"{inst.underlying}_{inst.quote}"
    )
    if inst.kind is InstrumentKind.SPOT:
        return f"{inst.underlying}_{inst.quote}"
    if inst.kind is InstrumentKind.PERPETUAL:
        return f"{base}-PERPETUAL"
    assert inst.expiry is not None
    if inst.kind is InstrumentKind.FUTURE:
        return f"{base}-{format_expiry(inst.expiry)}"
    assert inst.strike is not None
    return f"{base}-{format_expiry(inst.expiry)}-{_format_strike(inst.strike)}-" + (
        "C" if inst.is_call else "P"
    )
