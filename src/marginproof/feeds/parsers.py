"""Venue message parsers: Deribit (JSON-RPC notifications) and Binance USD-M (stream payloads).

Pure functions from one websocket text frame to :class:`ParseResult`. Structurally malformed
messages are *rejected* (counted and alerted by the shell, never logged); messages that parse
but carry bad numbers (NaN, negative, absurd) become ticks anyway so the engine's validator sees,
flags and alerts on them -- a feed cannot lower a margin by sending garbage.

Formats (as documented by the venues):

* Deribit ``{"jsonrpc":"2.0","method":"subscription","params":{"channel":C,"data":D}}`` with
  ``C`` = ``ticker.<instrument>.<interval>`` (``mark_price``, ``index_price``, options:
  ``mark_iv`` in percent and ``underlying_price``; perpetuals: ``funding_8h``),
  ``deribit_price_index.<index>`` (``price``) or ``markprice.options.<index>`` (list of
  ``{instrument_name, mark_price, iv}``, iv decimal). Subscription replies carry ``id``.
* Binance ``{"e":"bookTicker","u":..,"s":"BTCUSDT","b":..,"a":..,"T":..,"E":..}``,
  ``{"e":"markPriceUpdate","E":..,"s":..,"p":mark,"i":index,"r":funding,"T":next}``,
  ``{"e":"depthUpdate","E":..,"T":..,"s":..,"U":..,"u":..,"pu":..,"b":[[p,q]],"a":[[p,q]]}``,
  raw or wrapped as ``{"stream":..,"data":{..}}``; ``{"result":null,"id":n}`` acknowledges.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from marginproof.engine.ticks import Tick
from marginproof.errors import InputError
from marginproof.instruments.names import parse_instrument

MAX_MESSAGE_BYTES = 4_000_000


@dataclass(frozen=True)
class DepthDiff:
    """A Binance order-book diff (prices/quantities as floats)."""

    symbol: str
    first_id: int
    last_id: int
    prev_last_id: int | None
    exchange_ms: int
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class ParseResult:
    """``ticks`` to log, or a control message (``control``), or a ``rejected`` reason."""

    ticks: tuple[Tick, ...] = ()
    depth: DepthDiff | None = None
    control: bool = False
    rejected: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _reject(reason: str) -> ParseResult:
    return ParseResult(rejected=reason)


def _loads(raw: str | bytes) -> Any:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ValueError("message too large")
    return json.loads(raw)  # NaN/Infinity literals are accepted here and judged later


def _num(v: Any, name: str) -> float:
    """A venue number: JSON number or decimal string (Binance); NaN allowed, junk rejected."""
    if isinstance(v, bool) or v is None:
        raise ValueError(f"{name} is {v!r}")
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        s = v.strip()
        if not s or len(s) > 40:
            raise ValueError(f"{name} is not a number")
        return float(s)
    raise ValueError(f"{name} is not a number")


def _int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{name} must be an integer")
    if not 0 <= v < 2**63:
        raise ValueError(f"{name} out of range")
    return v


def _opt_num(d: dict[str, Any], key: str) -> float | None:
    v = d.get(key)
    return None if v is None else _num(v, key)


_DERIBIT_INDEX = {"btc_usd": "BTC", "eth_usd": "ETH", "sol_usdc": "SOL", "xrp_usdc": "XRP"}


def _index_underlying(index_name: str) -> str:
    und = _DERIBIT_INDEX.get(index_name)
    if und is None:
        base = index_name.split("_")[0].upper()
        if not base.isalpha() or len(base) > 10:
            raise ValueError(f"unknown index {index_name!r}")
        und = base
    return und


def parse_deribit(raw: str | bytes) -> ParseResult:
    """Parse one Deribit websocket frame (see module docstring)."""
    try:
        msg = _loads(raw)
        if not isinstance(msg, dict):
            return _reject("not a JSON object")
        if "id" in msg and ("result" in msg or "error" in msg):
            return ParseResult(control=True, extra={"id": msg.get("id")})
        if msg.get("method") == "heartbeat":
            return ParseResult(control=True)
        if msg.get("method") != "subscription":
            return _reject("not a subscription notification")
        params = msg.get("params")
        if not isinstance(params, dict) or not isinstance(params.get("channel"), str):
            return _reject("params.channel missing")
        channel: str = params["channel"]
        data = params.get("data")
        stream = f"deribit:{channel}"
        if channel.startswith("deribit_price_index."):
            if not isinstance(data, dict):
                return _reject("index data must be an object")
            und = _index_underlying(str(data.get("index_name") or channel.split(".", 1)[1]))
            return ParseResult((Tick("deribit", stream, und, _int(data.get("timestamp"),
                                                                     "timestamp"),
                                     index_price=_num(data.get("price"), "price")),))
        if channel.startswith("markprice.options."):
            if not isinstance(data, list) or not data:
                return _reject("markprice.options data must be a non-empty list")
            und = _index_underlying(channel.split(".", 2)[2])
            vols: dict[str, float] = {}
            ts = 0
            for i, row in enumerate(data[:10_000]):
                if not isinstance(row, dict):
                    return _reject(f"data[{i}] must be an object")
                name = row.get("instrument_name")
                if not isinstance(name, str) or parse_instrument(name).underlying != und:
                    return _reject(f"data[{i}].instrument_name invalid")
                vols[name] = _num(row.get("iv"), "iv")
                ts = max(ts, _int(row.get("timestamp"), "timestamp"))
            return ParseResult((Tick("deribit", stream, und, ts, implied_vols=vols),))
        if channel.startswith("ticker."):
            if not isinstance(data, dict):
                return _reject("ticker data must be an object")
            name = data.get("instrument_name")
            if not isinstance(name, str):
                return _reject("instrument_name missing")
            inst = parse_instrument(name)
            ts = _int(data.get("timestamp"), "timestamp")
            index = _opt_num(data, "index_price")
            mark = _num(data.get("mark_price"), "mark_price")
            if inst.is_option:
                iv = _num(data.get("mark_iv"), "mark_iv") / 100.0
                fwd = _opt_num(data, "underlying_price")
                assert inst.expiry is not None
                exp_ms = str(int(inst.expiry.timestamp() * 1000))
                return ParseResult((Tick("deribit", stream, inst.underlying, ts,
                                         index_price=index, implied_vols={name: iv},
                                         forwards={} if fwd is None else {exp_ms: fwd}),))
            funding = _opt_num(data, "funding_8h")
            return ParseResult((Tick("deribit", stream, inst.underlying, ts, index_price=index,
                                     marks={name: mark},
                                     funding_rates={} if funding is None else {name: funding}),))
        return _reject(f"unsupported channel {channel[:60]!r}")
    except (ValueError, TypeError, KeyError, InputError, RecursionError) as exc:
        return _reject(str(exc)[:200] or type(exc).__name__)


def binance_underlying(symbol: str) -> tuple[str, str]:
    """``BTCUSDT`` -> (``BTC``, ``BTC_USDT-PERPETUAL``): the USD-M linear perpetual."""
    s = symbol.upper()
    for quote in ("USDT", "USDC"):
        if s.endswith(quote) and len(s) > len(quote) and s[: -len(quote)].isalnum():
            base = s[: -len(quote)]
            return base, f"{base}_{quote}-PERPETUAL"
    raise ValueError(f"unsupported symbol {symbol!r}")


def _levels(v: Any, name: str) -> tuple[tuple[float, float], ...]:
    if not isinstance(v, list) or len(v) > 5000:
        raise ValueError(f"{name} must be a list of [price, qty]")
    out = []
    for lv in v:
        if not isinstance(lv, list) or len(lv) < 2:
            raise ValueError(f"{name} level must be [price, qty]")
        p, q = _num(lv[0], f"{name}.price"), _num(lv[1], f"{name}.qty")
        if not (math.isfinite(p) and math.isfinite(q)) or p <= 0 or q < 0:
            raise ValueError(f"{name} level {lv!r} is invalid")
        out.append((p, q))
    return tuple(out)


def parse_binance(raw: str | bytes) -> ParseResult:
    """Parse one Binance USD-M futures websocket frame (see module docstring)."""
    try:
        msg = _loads(raw)
        if not isinstance(msg, dict):
            return _reject("not a JSON object")
        if "id" in msg and "result" in msg:
            return ParseResult(control=True, extra={"id": msg.get("id")})
        inner = msg.get("data")
        data: dict[str, Any] = inner if isinstance(inner, dict) else msg
        event = data.get("e")
        sym = data.get("s")
        if not isinstance(sym, str):
            return _reject("symbol missing")
        und, perp = binance_underlying(sym)
        stream = f"binance:{sym.lower()}@{event}"
        if event == "bookTicker":
            bid, ask = _num(data.get("b"), "b"), _num(data.get("a"), "a")
            ts = _int(data.get("T", data.get("E")), "T")
            seq = _int(data.get("u"), "u")
            if math.isfinite(bid) and math.isfinite(ask) and ask < bid:
                return _reject(f"crossed book: bid {bid} > ask {ask}")
            return ParseResult((Tick("binance", stream, und, ts, seq=seq,
                                     marks={perp: 0.5 * (bid + ask)}),))
        if event == "markPriceUpdate":
            ts = _int(data.get("E"), "E")
            mark = _num(data.get("p"), "p")
            index = _opt_num(data, "i")
            r = data.get("r")
            funding = {} if r in (None, "") else {perp: _num(r, "r")}
            return ParseResult((Tick("binance", stream, und, ts, index_price=index,
                                     marks={perp: mark}, funding_rates=funding),))
        if event == "depthUpdate":
            pu = data.get("pu")
            diff = DepthDiff(sym.upper(), _int(data.get("U"), "U"), _int(data.get("u"), "u"),
                             None if pu is None else _int(pu, "pu"),
                             _int(data.get("T", data.get("E")), "T"),
                             _levels(data.get("b", []), "b"), _levels(data.get("a", []), "a"))
            if diff.last_id < diff.first_id:
                return _reject("depthUpdate u < U")
            return ParseResult(depth=diff)
        return _reject(f"unsupported event {str(event)[:40]!r}")
    except (ValueError, TypeError, KeyError, InputError, RecursionError) as exc:
        return _reject(str(exc)[:200] or type(exc).__name__)
