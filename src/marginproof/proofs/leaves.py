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
     "prices": {"scale": "12"}, "quantities": {"scale": "8"},
     "model": {"name", "params_toml", "params_hash"}, "privacy": {"enabled", "range_base"},
     "stress": {"scenarios": [{"name", "moves": {U: rel}, "default_move", "iv_mult"}]},
     "reserves": {"max_block_age_s"}}

Every asset, price and quantity has a declared scale: a logged decimal string with more digits
is refused, never rounded.

What a leaf commits (quote atoms unless noted; see :data:`BASE_FIELDS`):

* ``assets``  floor(haircut value of positive balances + positive values of spot and option
  positions), :mod:`marginproof.instruments.equity`;
* ``liabs``   ceil(full value of borrowed balances + absolute value of negative position values);
  ``equity = assets - liabs``, committed as its two non-negative parts;
* ``im``, ``mm`` the model's margin, rounded up once (after the float error bound, see
  :func:`margin_atoms`);
* ``short``   ``max(0, mm + liabs - assets)``: what the account lacks to cover its maintenance
  margin (derived from the rounded values, checkable by the user);
* ``stress``  ``max(0, liabs' - assets')`` valued in the venue's worst stress scenario: what the
  account would owe beyond its collateral after that crash;
* ``cr:<A>``, ``db:<A>`` what the venue owes the user / the user owes the venue in asset ``A``
  (asset atoms, exact; at most one non-zero per asset).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

import numpy as np

from marginproof.errors import InputError
from marginproof.instruments.collateral import PAR_ASSETS
from marginproof.instruments.equity import exact_parts, unit_values_usd
from marginproof.instruments.portfolio import CollateralPolicy, Portfolio, Position
from marginproof.instruments.resolved import resolve
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.base import MarginModel
from marginproof.models.registry import model_class
from marginproof.models.result import MarginResult
from marginproof.proofs.encoding import (
    PREFIX_MARKET,
    PREFIX_PARAMS,
    U64_MAX,
    canon,
    ceil_atoms,
    decimals_of,
    float_to_decimal,
    floor_atoms,
    parse_decimal,
    parse_uint,
    sha256,
    to_atoms,
)
from marginproof.proofs.sumtree import TreeFormat, format_for_spec
from marginproof.proofs.tags import id_bytes

BASE_FIELDS = ("assets", "liabs", "im", "mm", "short", "stress")
MAX_SCALE = 18
MARKET_DIGITS = 12
QUANTITY_DIGITS = 8
MAX_STRESS_SCENARIOS = 32


@dataclass(frozen=True)
class StressScenario:
    """A joint shock applied to every account: relative moves per underlying, vol multiplier."""

    name: str
    moves: Mapping[str, Fraction]
    default_move: Fraction
    iv_mult: Fraction

    def move(self, underlying: str) -> Fraction:
        return self.moves.get(underlying, self.default_move)


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
    price_scale: int = MARKET_DIGITS
    quantity_scale: int = QUANTITY_DIGITS
    stress: tuple[StressScenario, ...] = ()
    max_block_age_s: int = 86_400

    @property
    def fields(self) -> tuple[str, ...]:
        """Field names in vector order: ``assets, liabs, im, mm, short, stress, cr:<A>..,
        db:<A>..``."""
        if not self.liabilities:
            return BASE_FIELDS
        return (BASE_FIELDS + tuple(f"cr:{a.symbol}" for a in self.assets)
                + tuple(f"db:{a.symbol}" for a in self.assets))

    @property
    def params_hash(self) -> str:
        """``SHA-256(0x15 || canonical params body)``."""
        return sha256(PREFIX_PARAMS, canon(self.body)).hex()

    @property
    def uses_randomness(self) -> bool:
        """True for Monte Carlo models (a ``seed`` in a parameter table)."""
        return any(isinstance(v, Mapping) and "seed" in v for v in self.model_params.values())

    def model(self, seed: int | None = None) -> MarginModel:
        """The margin model built from the logged TOML; its own hash must match the log.

        ``seed`` replaces every ``seed`` of the TOML (the committed path passes the seed it
        derives from the logged recalibration entry, never the parameter file's own seed).
        """
        m = model_class(self.model_name)(dict(self.model_params))
        if m.params_hash != self.model_params_hash:
            raise InputError("params.model.params_hash",
                             f"logged {self.model_params_hash[:16]}... but the model computes "
                             f"{m.params_hash[:16]}... from the logged TOML")
        if seed is None:
            if self.uses_randomness:
                raise InputError("input_log.recalibration",
                                 "a Monte Carlo model on the committed path needs a logged "
                                 "recalibration entry to seed its scenarios (none before the cut)")
            return m
        params = {k: ({**v, "seed": seed} if isinstance(v, Mapping) and "seed" in v else v)
                  for k, v in self.model_params.items()}
        return model_class(self.model_name)(params)


def _scale(v: Any, field: str) -> int:
    return parse_uint(v, field, max_value=MAX_SCALE)


def parse_params(body: Mapping[str, Any]) -> EpochParams:
    """Validate a ``params`` entry body (every error names the field)."""
    w = "params"
    need = {"venue", "format", "quote", "assets", "liabilities", "depth_min", "model", "privacy",
            "prices", "quantities", "stress", "reserves"}
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
    scales = {}
    for k in ("prices", "quantities"):
        v = body[k]
        if not isinstance(v, Mapping) or set(v) != {"scale"}:
            raise InputError(f"{w}.{k}", "must be {scale}")
        scales[k] = _scale(v["scale"], f"{w}.{k}.scale")
    res = body["reserves"]
    if not isinstance(res, Mapping) or set(res) != {"max_block_age_s"}:
        raise InputError(f"{w}.reserves", "must be {max_block_age_s}")
    max_age = parse_uint(res["max_block_age_s"], f"{w}.reserves.max_block_age_s",
                         max_value=31 * 86_400)
    return EpochParams(body, venue, fmt, str(q["symbol"]), _scale(q["scale"], f"{w}.quote.scale"),
                       tuple(assets), body["liabilities"], depth_min, str(mdl["name"]), mparams,
                       str(mdl["params_hash"]), priv["enabled"], base, scales["prices"],
                       scales["quantities"], parse_stress(body["stress"], f"{w}.stress"),
                       max_age)


def parse_stress(body: Any, where: str) -> tuple[StressScenario, ...]:
    """``{"scenarios": [{name, moves {U: rel}, default_move, iv_mult}]}`` (1..32 scenarios)."""
    if not isinstance(body, Mapping) or set(body) != {"scenarios"} or not isinstance(
            body["scenarios"], list) or not 1 <= len(body["scenarios"]) <= MAX_STRESS_SCENARIOS:
        raise InputError(where, f"must be {{scenarios: [1..{MAX_STRESS_SCENARIOS} scenarios]}}")
    out: list[StressScenario] = []
    for i, sc_ in enumerate(body["scenarios"]):
        p = f"{where}.scenarios[{i}]"
        if not isinstance(sc_, Mapping) or set(sc_) != {"name", "moves", "default_move",
                                                       "iv_mult"}:
            raise InputError(p, "must be {name, moves, default_move, iv_mult}")
        if not isinstance(sc_["name"], str) or not sc_["name"]:
            raise InputError(f"{p}.name", "must be a non-empty string")
        if not isinstance(sc_["moves"], Mapping):
            raise InputError(f"{p}.moves", "must be an object {underlying: relative move}")
        moves = {str(u): parse_decimal(v, f"{p}.moves.{u}", signed=True)
                 for u, v in sorted(sc_["moves"].items())}
        dm = parse_decimal(sc_["default_move"], f"{p}.default_move", signed=True)
        iv = parse_decimal(sc_["iv_mult"], f"{p}.iv_mult")
        if any(m <= -1 or m > 10 for m in (*moves.values(), dm)):
            raise InputError(f"{p}.moves", "relative moves must be in (-1, 10]")
        if not 0 < iv <= 10:
            raise InputError(f"{p}.iv_mult", "must be in (0, 10]")
        out.append(StressScenario(sc_["name"], moves, dm, iv))
    if len({x.name for x in out}) != len(out):
        raise InputError(where, "duplicate scenario name")
    return tuple(out)


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


def _num_map(d: Any, field: str, signed: bool, scale: int = MARKET_DIGITS) -> dict[str, float]:
    if not isinstance(d, Mapping):
        raise InputError(field, "must be an object")
    out = {}
    for k in sorted(d):
        parse_decimal(d[k], f"{field}.{k}", signed=signed)
        if decimals_of(d[k]) > scale:
            raise InputError(f"{field}.{k}", f"{d[k]!r} has more than the declared {scale} "
                                             "price decimals (no silent rounding)")
        out[k] = float(d[k])  # correctly rounded decimal -> binary64, platform-independent
    return out


def market_from_body(body: Mapping[str, Any], scale: int = MARKET_DIGITS) -> MarketSnapshot:
    """Rebuild the snapshot from its logged form (the only market the committed path sees).

    Every number must respect the declared price scale (``params.prices.scale``)."""
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
        vals = _num_map(curve, f"{w}.forwards.{u}", False, scale)
        forwards[u] = {_ts(e, f"{w}.forwards.{u}"): vals[e] for e in sorted(curve)}
    return MarketSnapshot(
        timestamp=_ts(body["timestamp"], f"{w}.timestamp"),
        index_prices=_num_map(body["index_prices"], f"{w}.index_prices", False, scale),
        forwards=forwards,
        mark_prices=_num_map(body["mark_prices"], f"{w}.mark_prices", False, scale),
        implied_vols=_num_map(body["implied_vols"], f"{w}.implied_vols", False, scale),
        rates=_num_map(body["rates"], f"{w}.rates", True, scale),
        funding_rates=_num_map(body["funding_rates"], f"{w}.funding_rates", True, scale),
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
            if decimals_of(p["quantity"]) > params.quantity_scale:
                raise InputError(f"{f}.quantity", f"{p['quantity']!r} has more than the declared "
                                                  f"{params.quantity_scale} quantity decimals")
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


def collateral_parts(acct: AccountInput, params: EpochParams,
                     prices: Mapping[str, Fraction]) -> tuple[Fraction, Fraction]:
    """Exact ``(assets, liabilities)`` of the balances, USD.

    Positive balances count ``amount x price x (1 - haircut)``, debts ``|amount| x price`` (no
    haircut relief), as in :func:`marginproof.instruments.collateral.value_collateral`.
    """
    assets, liabs = Fraction(0), Fraction(0)
    for a in params.assets:
        atoms = acct.balances.get(a.symbol, 0)
        if atoms == 0:
            continue
        v = Fraction(atoms, 10**a.scale) * prices[a.symbol]
        if atoms > 0:
            assets += v * (1 - a.haircut)
        else:
            liabs -= v
    return assets, liabs


def portfolio_of(acct: AccountInput) -> Portfolio:
    """Positions in instrument order, quantities as correctly rounded floats."""
    return Portfolio(tuple(Position.of(n, float(q), f"accounts.{acct.account_id}.positions.{n}")
                           for n, q in acct.positions))


def equity_atoms(acct: AccountInput, params: EpochParams, market: MarketSnapshot,
                 prices: Mapping[str, Fraction]) -> tuple[int, int]:
    """``(assets, liabs)`` in quote atoms: exact parts (:func:`instruments.equity.exact_parts`),
    assets rounded down and liabilities up (against the operator)."""
    ca, cl = collateral_parts(acct, params, prices)
    if acct.positions:
        book = resolve(portfolio_of(acct), market)
        a, lb = exact_parts(ca, cl, [float(q) for q in book.quantity],
                            [float(u) for u in unit_values_usd(book)])
    else:
        a, lb = ca, cl
    return floor_atoms(a, params.quote_scale), ceil_atoms(lb, params.quote_scale)


def margin_atoms(r: MarginResult, scale: int, where: str) -> tuple[int, int]:
    """``(im, mm)`` in quote atoms: the model's floats, rounded up **once** after adding a bound
    on their own float rounding error, so the committed figure never favours the venue.

    The bound is Higham's ``gamma_n * B`` with ``n`` the number of terms the model adds
    (positions and components, plus two for the maintenance scaling) and ``B`` the largest sum
    of absolute terms it adds: the components, and each scenario row of its P&L matrix.
    """
    im, mm = float(r.initial_margin), float(r.maintenance_margin)
    for name, x in (("im", im), ("mm", mm)):
        if not math.isfinite(x):
            raise InputError(f"{where}.{name}", f"engine returned a non-finite value {x!r}")
        if x < 0.0:
            raise InputError(f"{where}.{name}", f"engine returned a negative amount {x!r}")
    comps = [abs(float(v)) for v in r.components.values()]
    pnl = np.asarray(r.scenario_pnl, dtype=np.float64)
    b = Fraction(math.fsum(comps))
    if pnl.size:
        b += Fraction(float(np.abs(pnl).sum(axis=1).max()))
    b = max(b, Fraction(im), Fraction(mm))
    n = len(r.position_names) + len(comps) + 2
    u = Fraction(1, 2**53)
    guard = b * (n * u) / (1 - n * u)
    return (ceil_atoms(Fraction(im) + guard, scale), ceil_atoms(Fraction(mm) + guard, scale))


def shocked_market(market: MarketSnapshot, s: StressScenario) -> MarketSnapshot:
    """The market after ``s``: index, forwards and delta-one marks move by the scenario's
    relative move of their underlying; options are repriced from their implied vols times
    ``iv_mult`` (option marks are dropped, vols implied from them kept). Stable coins and the
    quote currency do not move."""
    from marginproof.instruments.names import parse_instrument

    def mv(u: str) -> float:
        return 0.0 if u in PAR_ASSETS else float(s.move(u))

    idx = {k: v * (1.0 + mv(k)) for k, v in market.index_prices.items()}
    fwd = {u: {e: f * (1.0 + mv(u)) for e, f in c.items()} for u, c in market.forwards.items()}
    marks, vols = {}, {}
    for name, m in market.mark_prices.items():
        inst = parse_instrument(name, f"market.mark_prices.{name}")
        if inst.is_option:
            if name not in market.implied_vols:
                book = resolve(Portfolio((Position(inst, 1.0),)), market)
                vols[name] = float(book.vol[0]) * float(s.iv_mult)
            continue
        marks[name] = m * (1.0 + mv(inst.underlying))
    for name, v in market.implied_vols.items():
        vols[name] = v * float(s.iv_mult)
    return MarketSnapshot(timestamp=market.timestamp, index_prices=idx, forwards=fwd,
                          mark_prices=marks, implied_vols=vols, rates=dict(market.rates),
                          funding_rates=dict(market.funding_rates))


def stress_prices(params: EpochParams, prices: Mapping[str, Fraction],
                  s: StressScenario) -> dict[str, Fraction]:
    """Collateral prices after ``s`` (exact; par assets unchanged)."""
    return {a: (p if a in PAR_ASSETS or a == params.quote_symbol else p * (1 + s.move(a)))
            for a, p in prices.items()}


def stress_deficits(accounts: Sequence[AccountInput], params: EpochParams,
                    market: MarketSnapshot, prices: Mapping[str, Fraction]
                    ) -> tuple[int, list[int], list[int]]:
    """The venue's worst stress scenario and every account's deficit in it.

    For each scenario, each account's equity after the shock (same definition and rounding as
    the leaves); its deficit is ``max(0, liabs - assets)``. The worst scenario maximises the
    total deficit (ties: the first). Returns ``(index, totals per scenario, deficits)``.
    """
    per: list[list[int]] = []
    for s in params.stress:
        m = shocked_market(market, s)
        px = stress_prices(params, prices, s)
        row = []
        for a in accounts:
            assets, liabs = equity_atoms(a, params, m, px)
            row.append(max(0, liabs - assets))
        per.append(row)
    totals = [sum(r) for r in per]
    k = max(range(len(totals)), key=lambda i: (totals[i], -i))
    return k, totals, per[k]


def account_values(acct: AccountInput, params: EpochParams, model: MarginModel,
                   market: MarketSnapshot, prices: Mapping[str, Fraction],
                   stress: int = 0) -> tuple[int, ...]:
    """The field vector of one account (see :attr:`EpochParams.fields`)."""
    w = f"accounts.{acct.account_id}"
    assets, liabs = equity_atoms(acct, params, market, prices)
    if acct.positions:
        r = model.margin(portfolio_of(acct), market)
        if r.currency != params.quote_symbol:
            raise InputError(f"{w}.margin", f"model margins in {r.currency}, quote is "
                                            f"{params.quote_symbol}")
        im, mm = margin_atoms(r, params.quote_scale, w)
    else:
        im = mm = 0
    vals = [assets, liabs, im, mm, max(0, mm + liabs - assets), stress]
    if params.liabilities:
        vals += [max(acct.balances.get(a.symbol, 0), 0) for a in params.assets]
        vals += [max(-acct.balances.get(a.symbol, 0), 0) for a in params.assets]
    for name, v in zip(params.fields, vals, strict=True):
        if not 0 <= v <= U64_MAX:
            raise InputError(f"{w}.{name}", f"{v} atoms do not fit 64 bits")
    return tuple(vals)
