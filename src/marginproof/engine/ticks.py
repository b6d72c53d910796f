"""Market ticks: venue-neutral, validated-shape market updates for one underlying.

A tick carries whatever a venue message said about one underlying at one exchange time: index
price, marks (futures/perps in USD per coin), implied vols (decimal), forwards per expiry
(USD) and funding rates (decimal per 8 h). Values are kept as given (even NaN): judging them is
the :mod:`marginproof.engine.quality` validator's job, so a bad tick is detected, not dropped
silently. Mappings are stored as sorted tuples so a tick's canonical form is deterministic.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marginproof.errors import InputError

Pairs = tuple[tuple[str, float], ...]
PairsIn = Mapping[str, float] | Pairs


def _pairs(m: PairsIn | None, field_name: str) -> Pairs:
    if m is None:
        return ()
    items = m.items() if isinstance(m, Mapping) else m
    out: dict[str, float] = {}
    for k, v in items:
        if not isinstance(k, str) or not k:
            raise InputError(field_name, f"key {k!r} must be a non-empty string")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError(f"{field_name}.{k}", f"must be a number, got {v!r}")
        out[k] = float(v)
    return tuple(sorted(out.items()))


def _num(v: Any) -> float | str:
    """JSON-safe float: NaN and infinities become strings so the log can carry bad ticks."""
    f = float(v)
    if math.isfinite(f):
        return f
    return repr(f)


def _unnum(v: Any, field_name: str) -> float:
    if isinstance(v, str) and v in ("nan", "inf", "-inf"):
        return float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(field_name, f"must be a number, got {v!r}")
    return float(v)


@dataclass(frozen=True, slots=True, init=False)
class Tick:
    """One market update.

    Attributes
    ----------
    source : str
        Feed that produced it (``deribit``, ``binance``, ``replay``, ...).
    stream : str
        Ordering key: ticks of one stream must arrive in exchange-time / sequence order.
    underlying : str
        ``BTC``, ``ETH`` ...
    exchange_ms : int
        Venue timestamp, milliseconds since the Unix epoch (UTC).
    seq : int or None
        Venue sequence number (Binance ``u``, Deribit ``change_id``) when the venue has one.
    index_price : float or None
        Index (spot) price, USD per coin.
    marks : pairs (instrument, USD per coin)
        Futures, perpetual and spot marks.
    implied_vols : pairs (option, decimal per year)
    forwards : pairs (expiry in ms as str, USD)
        Forward (underlying future) price per option expiry.
    funding_rates : pairs (perpetual, decimal per 8 h)
    """

    source: str
    stream: str
    underlying: str
    exchange_ms: int
    seq: int | None
    index_price: float | None
    marks: Pairs
    implied_vols: Pairs
    forwards: Pairs
    funding_rates: Pairs

    def __init__(self, source: str, stream: str, underlying: str, exchange_ms: int,
                 seq: int | None = None, index_price: float | None = None,
                 marks: PairsIn = (), implied_vols: PairsIn = (), forwards: PairsIn = (),
                 funding_rates: PairsIn = ()) -> None:
        for name, v in (("source", source), ("stream", stream), ("underlying", underlying)):
            if not isinstance(v, str) or not v:
                raise InputError(f"tick.{name}", "must be a non-empty string")
        if isinstance(exchange_ms, bool) or not isinstance(exchange_ms, int):
            raise InputError("tick.exchange_ms", "must be an integer (ms since epoch)")
        if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
            raise InputError("tick.seq", "must be an integer or null")
        if index_price is not None and (isinstance(index_price, bool)
                                        or not isinstance(index_price, (int, float))):
            raise InputError("tick.index_price", "must be a number or null")
        set_ = object.__setattr__
        set_(self, "source", source)
        set_(self, "stream", stream)
        set_(self, "underlying", underlying)
        set_(self, "exchange_ms", exchange_ms)
        set_(self, "seq", seq)
        set_(self, "index_price", None if index_price is None else float(index_price))
        set_(self, "marks", _pairs(marks, "tick.marks"))
        set_(self, "implied_vols", _pairs(implied_vols, "tick.implied_vols"))
        set_(self, "forwards", _pairs(forwards, "tick.forwards"))
        set_(self, "funding_rates", _pairs(funding_rates, "tick.funding_rates"))
        if (self.index_price is None and not self.marks and not self.implied_vols
                and not self.forwards and not self.funding_rates):
            raise InputError("tick", "carries no market value")

    def values(self) -> list[tuple[str, float]]:
        """Every (key, value) the tick carries; keys are ``index:<und>``, ``mark:<name>`` ..."""
        out: list[tuple[str, float]] = []
        if self.index_price is not None:
            out.append((f"index:{self.underlying}", self.index_price))
        out += [(f"mark:{k}", v) for k, v in self.marks]
        out += [(f"vol:{k}", v) for k, v in self.implied_vols]
        out += [(f"fwd:{self.underlying}:{k}", v) for k, v in self.forwards]
        return out

    def payload_digest(self) -> str:
        """SHA-256 of the market content (not source/seq): equal digests = same information."""
        body = self.to_dict()
        for k in ("source", "stream", "seq"):
            body.pop(k)
        raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (non-finite numbers as strings) for the input log."""
        return {
            "source": self.source,
            "stream": self.stream,
            "underlying": self.underlying,
            "exchange_ms": self.exchange_ms,
            "seq": self.seq,
            "index_price": None if self.index_price is None else _num(self.index_price),
            "marks": {k: _num(v) for k, v in self.marks},
            "implied_vols": {k: _num(v) for k, v in self.implied_vols},
            "forwards": {k: _num(v) for k, v in self.forwards},
            "funding_rates": {k: _num(v) for k, v in self.funding_rates},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Tick:
        """Inverse of :meth:`to_dict`; raises ``InputError`` on a malformed record."""
        if not isinstance(d, Mapping):
            raise InputError("tick", "must be an object")

        def m(name: str) -> Pairs:
            raw = d.get(name) or {}
            if not isinstance(raw, Mapping):
                raise InputError(f"tick.{name}", "must be an object")
            return tuple((str(k), _unnum(v, f"tick.{name}.{k}")) for k, v in raw.items())

        ip = d.get("index_price")
        return cls(
            source=d.get("source"),  # type: ignore[arg-type]  # checked in __init__
            stream=d.get("stream"),  # type: ignore[arg-type]
            underlying=d.get("underlying"),  # type: ignore[arg-type]
            exchange_ms=d.get("exchange_ms"),  # type: ignore[arg-type]
            seq=d.get("seq"),
            index_price=None if ip is None else _unnum(ip, "tick.index_price"),
            marks=m("marks"), implied_vols=m("implied_vols"), forwards=m("forwards"),
            funding_rates=m("funding_rates"),
        )
