"""The committed path: log state at a cut -> per-account integer field vectors.

Determinism rules (spec section 7), as applied here:

1. Money is exact: balances are integers of asset atoms, prices and haircuts are decimal strings
   read with :class:`fractions.Fraction`; collateral is valued exactly and rounded **once**
   (floor). The margin engine works in floats; its IM and MM are quantized **once** per account
   per field, exactly (``Fraction(x)``, then ceil).
2. Iteration order is explicit: accounts by UTF-8 id bytes, positions by instrument name,
   assets in parameter order. No set or hash-ordered container reaches the output.
3. The engine gets the *logged* market (decimal strings -> correctly rounded floats), never the
   feed's floats, so prover and replay see the same inputs.
4. Nothing here reads a clock, the environment, a file or the network.

Parameters (``params`` entry body)::

    {"venue", "format": "marginproof/proofs/v2", "quote": {"symbol": "USD", "scale": "6"},
     "assets": [{"symbol", "scale", "haircut"}], "liabilities": true|false, "depth_min": "10",
     "model": {"name", "params_toml", "params_hash"}, "privacy": {"enabled", "range_base"}}
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

from marginproof.errors import InputError
from marginproof.instruments.collateral import PAR_ASSETS
from marginproof.instruments.portfolio import CollateralPolicy, Portfolio, Position
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.base import MarginModel
from marginproof.models.registry import model_class
from marginproof.proofs.encoding import (
    PREFIX_MARKET,
    PREFIX_PARAMS,
    U64_MAX,
    canon,
    float_to_decimal,
    floor_atoms,
    parse_decimal,
    parse_uint,
    quantize_float,
    sha256,
    to_atoms,
)
from marginproof.proofs.sumtree import TreeFormat, format_for_spec
from marginproof.proofs.tags import id_bytes

BASE_FIELDS = ("coll", "im", "mm", "short")
MAX_SCALE = 18
MARKET_DIGITS = 12


@dataclass(frozen=True)
class AssetSpec:
    symbol: str
    scale: int
    haircut: Fraction


@dataclass(frozen=True)
class EpochParams:
    """Validated ``params`` body."""

    body: Mapping[str, Any]
    venue: str
    fmt: TreeFormat
    quote_symbol: str
    quote_scale: int
    assets: tuple[AssetSpec, ...]
    liabilities: bool
    depth_min: int
    model_name: str
    model_params: Mapping[str, Any]
    model_params_hash: str
    privacy: bool
    range_base: int

    @property
    def fields(self) -> tuple[str, ...]:
        """Field names in vector order: ``coll, im, mm, short, cr:<A>.., db:<A>..``."""
        if not self.liabilities:
            return BASE_FIELDS
        return (BASE_FIELDS + tuple(f"cr:{a.symbol}" for a in self.assets)
                + tuple(f"db:{a.symbol}" for a in self.assets))

    @property
    def params_hash(self) -> str:
        """``SHA-256(0x15 || canonical params body)``."""
        return sha256(PREFIX_PARAMS, canon(self.body)).hex()

    def model(self) -> MarginModel:
        """The margin model built from the logged TOML; its own hash must match the log."""
        m = model_class(self.model_name)(dict(self.model_params))
        if m.params_hash != self.model_params_hash:
            raise InputError("params.model.params_hash",
                             f"logged {self.model_params_hash[:16]}... but the model computes "
                             f"{m.params_hash[:16]}... from the logged TOML")
        return m


def _scale(v: Any, field: str) -> int:
    return parse_uint(v, field, max_value=MAX_SCALE)


def parse_params(body: Mapping[str, Any]) -> EpochParams:
    """Validate a ``params`` entry body (every error names the field)."""
    w = "params"
    need = {"venue", "format", "quote", "assets", "liabilities", "depth_min", "model", "privacy"}
    if not isinstance(body, Mapping) or set(body) != need:
        raise InputError(w, f"params body needs exactly {sorted(need)}")
    venue = body["venue"]
    if not isinstance(venue, str) or not venue:
        raise InputError(f"{w}.venue", "must be a non-empty string")
    fmt = format_for_spec(body["format"], f"{w}.format")
    q = body["quote"]
    if not isinstance(q, Mapping) or set(q) != {"symbol", "scale"}:
        raise InputError(f"{w}.quote", "must be {symbol, scale}")
    assets: list[AssetSpec] = []
    if not isinstance(body["assets"], list):
        raise InputError(f"{w}.assets", "must be a list")
    for i, a in enumerate(body["assets"]):
        p = f"{w}.assets[{i}]"
        if not isinstance(a, Mapping) or set(a) != {"symbol", "scale", "haircut"}:
            raise InputError(p, "must be {symbol, scale, haircut}")
        if not isinstance(a["symbol"], str) or not a["symbol"].isascii() or not a["symbol"]:
            raise InputError(f"{p}.symbol", "must be a non-empty ASCII string")
        h = parse_decimal(a["haircut"], f"{p}.haircut")
        if not 0 <= h < 1:
            raise InputError(f"{p}.haircut", "must be in [0, 1)")
        assets.append(AssetSpec(a["symbol"], _scale(a["scale"], f"{p}.scale"), h))
    syms = [a.symbol for a in assets]
    if len(set(syms)) != len(syms):
        raise InputError(f"{w}.assets", "duplicate asset symbol")
    CollateralPolicy({a.symbol: float(a.haircut) for a in assets})  # same validation as margin
    if not isinstance(body["liabilities"], bool):
        raise InputError(f"{w}.liabilities", "must be true or false")
    depth_min = parse_uint(body["depth_min"], f"{w}.depth_min", max_value=32)
    mdl = body["model"]
    if not isinstance(mdl, Mapping) or set(mdl) != {"name", "params_toml", "params_hash"}:
        raise InputError(f"{w}.model", "must be {name, params_toml, params_hash}")
    if not isinstance(mdl["params_toml"], str):
        raise InputError(f"{w}.model.params_toml", "must be TOML text")
    try:
        mparams = tomllib.loads(mdl["params_toml"])
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{w}.model.params_toml", f"malformed TOML: {exc}") from None
    priv = body["privacy"]
    if not isinstance(priv, Mapping) or set(priv) != {"enabled", "range_base"}:
        raise InputError(f"{w}.privacy", "must be {enabled, range_base}")
    if not isinstance(priv["enabled"], bool):
        raise InputError(f"{w}.privacy.enabled", "must be true or false")
    base = parse_uint(priv["range_base"], f"{w}.privacy.range_base", max_value=16)
    if base not in (2, 4, 16):
        raise InputError(f"{w}.privacy.range_base", "must be 2, 4 or 16")
    return EpochParams(body, venue, fmt, str(q["symbol"]), _scale(q["scale"], f"{w}.quote.scale"),
                       tuple(assets), body["liabilities"], depth_min, str(mdl["name"]), mparams,
                       str(mdl["params_hash"]), priv["enabled"], base)


# -- market ---------------------------------------------------------------------------------
def market_body(m: MarketSnapshot, digits: int = MARKET_DIGITS) -> dict[str, Any]:
    """Freeze a snapshot into a log body: every number a decimal string (``digits`` decimals)."""
    def dec(x: float, f: str) -> str:
        return float_to_decimal(float(x), digits, f)

    def iso(t: datetime) -> str:
        return t.isoformat().replace("+00:00", "Z")

    return {
        "timestamp": iso(m.timestamp),
        "index_prices": {k: dec(v, f"index_prices.{k}") for k, v in sorted(m.index_prices.items())},
        "forwards": {u: {iso(e): dec(f, f"forwards.{u}") for e, f in sorted(c.items())}
                     for u, c in sorted(m.forwards.items())},
        "mark_prices": {k: dec(v, f"mark_prices.{k}") for k, v in sorted(m.mark_prices.items())},
        "implied_vols": {k: dec(v, f"implied_vols.{k}")
                         for k, v in sorted(m.implied_vols.items())},
        "rates": {k: dec(v, f"rates.{k}") for k, v in sorted(m.rates.items())},
        "funding_rates": {k: dec(v, f"funding_rates.{k}")
                          for k, v in sorted(m.funding_rates.items())},
    }


def _ts(s: Any, field: str) -> datetime:
    if not isinstance(s, str) or not s.endswith("Z"):
        raise InputError(field, "must be an ISO-8601 UTC timestamp ending in Z")
    try:
        t = datetime.fromisoformat(s[:-1] + "+00:00")
    except ValueError as exc:
        raise InputError(field, f"bad timestamp: {exc}") from None
    return t


def _num_map(d: Any, field: str, signed: bool) -> dict[str, float]:
    if not isinstance(d, Mapping):
        raise InputError(field, "must be an object")
    out = {}
    for k in sorted(d):
        parse_decimal(d[k], f"{field}.{k}", signed=signed)
        out[k] = float(d[k])  # correctly rounded decimal -> binary64, platform-independent
    return out


def market_from_body(body: Mapping[str, Any]) -> MarketSnapshot:
    """Rebuild the snapshot from its logged form (the only market the committed path sees)."""
    w = "market"
    need = {"timestamp", "index_prices", "forwards", "mark_prices", "implied_vols", "rates",
            "funding_rates"}
    if not isinstance(body, Mapping) or set(body) != need:
        raise InputError(w, f"market body needs exactly {sorted(need)}")
    fwd_raw = body["forwards"]
    if not isinstance(fwd_raw, Mapping):
        raise InputError(f"{w}.forwards", "must be an object")
    forwards = {}
    for u in sorted(fwd_raw):
        curve = fwd_raw[u]
        if not isinstance(curve, Mapping):
            raise InputError(f"{w}.forwards.{u}", "must be an object")
        vals = _num_map(curve, f"{w}.forwards.{u}", False)
        forwards[u] = {_ts(e, f"{w}.forwards.{u}"): vals[e] for e in sorted(curve)}
    return MarketSnapshot(
        timestamp=_ts(body["timestamp"], f"{w}.timestamp"),
        index_prices=_num_map(body["index_prices"], f"{w}.index_prices", False),
        forwards=forwards,
        mark_prices=_num_map(body["mark_prices"], f"{w}.mark_prices", False),
        implied_vols=_num_map(body["implied_vols"], f"{w}.implied_vols", False),
        rates=_num_map(body["rates"], f"{w}.rates", True),
        funding_rates=_num_map(body["funding_rates"], f"{w}.funding_rates", True),
    )


def market_hash(body: Mapping[str, Any]) -> str:
    """``SHA-256(0x16 || canonical market body)``."""
    return sha256(PREFIX_MARKET, canon(body)).hex()


# -- accounts -------------------------------------------------------------------------------
@dataclass(frozen=True)
class AccountInput:
    """One account's logged state: positions (sorted by instrument) and balances (atoms)."""

    account_id: str
    positions: tuple[tuple[str, str], ...]
    balances: Mapping[str, int]


def account_inputs(positions: Mapping[str, Sequence[Any]],
                   balances: Mapping[str, Mapping[str, Any]],
                   params: EpochParams) -> list[AccountInput]:
    """Validate and order every account (by UTF-8 id bytes)."""
    scales = {a.symbol: a.scale for a in params.assets}
    ids = sorted(set(positions) | set(balances), key=lambda s: s.encode("utf-8"))
    out = []
    for aid in ids:
        id_bytes(aid, f"accounts.{aid}")
        lines = []
        for i, p in enumerate(positions.get(aid, [])):
            f = f"accounts.{aid}.positions[{i}]"
            if not isinstance(p, Mapping) or set(p) != {"instrument", "quantity"}:
                raise InputError(f, "must be {instrument, quantity}")
            if not isinstance(p["instrument"], str):
                raise InputError(f"{f}.instrument", "must be a string")
            parse_decimal(p["quantity"], f"{f}.quantity", signed=True)
            lines.append((p["instrument"], p["quantity"]))
        lines.sort()
        names = [n for n, _ in lines]
        if len(set(names)) != len(names):
            raise InputError(f"accounts.{aid}.positions", "an instrument is listed twice")
        bal: dict[str, int] = {}
        for asset, amount in balances.get(aid, {}).items():
            if asset not in scales:
                raise InputError(f"accounts.{aid}.balances.{asset}",
                                 "asset is not in the parameters' collateral assets")
            bal[asset] = to_atoms(amount, scales[asset], f"accounts.{aid}.balances.{asset}",
                                  signed=True)
        out.append(AccountInput(aid, tuple(lines), bal))
    return out


def asset_prices(params: EpochParams, market_body_: Mapping[str, Any]) -> dict[str, Fraction]:
    """Exact USD price of each collateral asset from the logged index (par stables at 1)."""
    idx = market_body_["index_prices"]
    out = {}
    for a in params.assets:
        if a.symbol == params.quote_symbol or (a.symbol in PAR_ASSETS and a.symbol not in idx):
            out[a.symbol] = Fraction(1)
        elif a.symbol in idx:
            out[a.symbol] = parse_decimal(idx[a.symbol], f"market.index_prices.{a.symbol}")
        else:
            raise InputError(f"market.index_prices.{a.symbol}",
                             "no index price for a collateral asset")
    return out


def collateral_atoms(acct: AccountInput, params: EpochParams,
                     prices: Mapping[str, Fraction]) -> int:
    """``floor(sum_+ amount * price * (1 - haircut) - sum_- |amount| * price)``, at least 0.

    Debts count at full value (no haircut relief), as in
    :func:`marginproof.instruments.collateral.value_collateral`.
    """
    total = Fraction(0)
    for a in params.assets:
        atoms = acct.balances.get(a.symbol, 0)
        if atoms == 0:
            continue
        v = Fraction(atoms, 10**a.scale) * prices[a.symbol]
        total += v * (1 - a.haircut) if atoms > 0 else v
    return max(0, floor_atoms(total, params.quote_scale))


def portfolio_of(acct: AccountInput) -> Portfolio:
    """Positions in instrument order, quantities as correctly rounded floats."""
    return Portfolio(tuple(Position.of(n, float(q), f"accounts.{acct.account_id}.positions.{n}")
                           for n, q in acct.positions))


def account_values(acct: AccountInput, params: EpochParams, model: MarginModel,
                   market: MarketSnapshot, prices: Mapping[str, Fraction]) -> tuple[int, ...]:
    """The field vector of one account (see :attr:`EpochParams.fields`)."""
    w = f"accounts.{acct.account_id}"
    coll = collateral_atoms(acct, params, prices)
    if acct.positions:
        r = model.margin(portfolio_of(acct), market)
        if r.currency != params.quote_symbol:
            raise InputError(f"{w}.margin", f"model margins in {r.currency}, quote is "
                                            f"{params.quote_symbol}")
        im = quantize_float(float(r.initial_margin), params.quote_scale, f"{w}.im", up=True)
        mm = quantize_float(float(r.maintenance_margin), params.quote_scale, f"{w}.mm", up=True)
    else:
        im = mm = 0
    vals = [coll, im, mm, max(0, mm - coll)]
    if params.liabilities:
        vals += [max(acct.balances.get(a.symbol, 0), 0) for a in params.assets]
        vals += [max(-acct.balances.get(a.symbol, 0), 0) for a in params.assets]
    for name, v in zip(params.fields, vals, strict=True):
        if not 0 <= v <= U64_MAX:
            raise InputError(f"{w}.{name}", f"{v} atoms do not fit 64 bits")
    return tuple(vals)

