"""``derive-srm``: Derive (Lyra v2) standard risk manager (isolated margin).

Follows ``exchange-presets.md`` section 2 (restating derivexyz/v2-core ``StandardManager.sol``
and ``SRMPortfolioViewer.sol``). One SRM covers many markets (underlyings); all USD. Derive's
**signed** margin of a subaccount is ``cash + sum over markets`` of

* perp: ``-|q| P_perp req`` (req = perp MM or IM); IM also
  ``-(1 - min(c_perp, c_S)) OC S |q|`` when that confidence is below ``perp_threshold``;
  plus the perp's unrealised P&L and unsettled funding;
* options, per expiry (forward ``F``, undiscounted Black-76 marks ``mtm_i``):
  ``max(sum of isolated margins, max-loss margin)``; IM also subtracts
  ``(1 - c) OC S * total shorts`` when ``c = min(c_S, c_fwd, c_vol) < option_threshold``;
* base asset (spot held, ``q >= 0``): ``+q S base_margin_factor`` (IM: times
  ``base_im_scale``, minus ``(1 - c_S) OC q S`` below ``base_threshold``);
* depeg (IM only, ``stable < threshold``): ``-(threshold - stable) factor S (|perp| + shorts)``.

MtM = cash + option MtM + perp P&L + ``q S / stable``. The adapter reports the positive
requirements ``initial_margin = MtM - IM_signed`` (equity minus Derive's margin balance) and
keeps the signed balances in ``details``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from marginproof.errors import InputError
from marginproof.instruments.contracts import InstrumentKind, Settlement
from marginproof.instruments.portfolio import Portfolio
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.base import BaseMarginModel
from marginproof.models.presets.common import (
    SECONDS_PER_YEAR,
    NetPosition,
    b76,
    check_meta,
    expiry_key,
    net_positions,
    number,
    preset_greeks,
    quoted_forward,
    require_mark,
    require_vol,
    seconds_to_expiry,
    table,
    unsupported,
)
from marginproof.models.presets.inputs import MarketInputs, PortfolioInputs
from marginproof.models.result import MarginResult

PRESET = "derive-srm"
MARKET_KEYS = ("perp_mm", "perp_im", "base_margin_factor", "base_im_scale", "max_spot_req",
               "min_spot_req", "mm_call_spot_req", "mm_put_spot_req", "mm_put_mtm_req",
               "unpaired_im_scale", "unpaired_mm_scale", "mm_offset_scale", "perp_threshold",
               "option_threshold", "base_threshold", "oc_factor")
_MARKET_BOUNDS = {"max_spot_req": (0.0, 1.2), "min_spot_req": (0.0, 1.2),
                  "unpaired_im_scale": (1.0, 3.0), "unpaired_mm_scale": (1.0, 3.0),
                  "mm_offset_scale": (1.0, 3.0), "base_im_scale": (0.0, 10.0)}


@dataclass(frozen=True)
class SRMOption:
    strike: float
    is_call: bool
    vol: float
    amount: float
    name: str = ""


@dataclass(frozen=True)
class SRMExpiry:
    sec_to_expiry: float
    forward: float
    options: tuple[SRMOption, ...]
    forward_confidence: float = 1.0
    vol_confidence: float = 1.0  # the vol feed's minimum confidence for the expiry
    label: str = ""


@dataclass(frozen=True)
class SRMMarket:
    underlying: str
    spot: float
    params: Mapping[str, float]
    spot_confidence: float = 1.0
    perp_position: float = 0.0
    perp_price: float = 0.0
    perp_confidence: float = 1.0
    perp_value: float = 0.0
    base_position: float = 0.0
    expiries: tuple[SRMExpiry, ...] = ()


@dataclass(frozen=True)
class SRMMarketResult:
    underlying: str
    margin: float
    mtm: float
    parts: Mapping[str, float]
    expiries: tuple[Mapping[str, Any], ...]
    option_mtm_by_name: Mapping[str, float] = field(default_factory=dict)
    isolated_by_name: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SRMOutcome:
    margin: float  # Derive's signed margin balance
    mtm: float  # cash + every market's MtM
    cash: float
    markets: tuple[SRMMarketResult, ...]


def isolated_margin(o: SRMOption, mtm: float, spot: float, p: Mapping[str, float],
                    initial: bool) -> float:
    """Isolated margin of one option balance (0 for longs; negative for shorts)."""
    if o.amount > 0.0:
        return 0.0
    a = o.amount
    if o.is_call:
        if not initial:
            return mtm + p["mm_call_spot_req"] * spot * a
        otm = (o.strike - spot) / spot if o.strike > spot else 0.0
    else:
        mm = min(p["mm_put_spot_req"] * spot * a, p["mm_put_mtm_req"] * mtm) + mtm
        if not initial:
            return mm
        otm = (spot - o.strike) / spot if spot > o.strike else 0.0
    mult = p["min_spot_req"]
    if p["max_spot_req"] > otm and p["max_spot_req"] - otm > p["min_spot_req"]:
        mult = p["max_spot_req"] - otm
    im = mult * spot * a + mtm
    return im if o.is_call else min(im, mm * p["mm_offset_scale"])


def max_loss(options: Sequence[SRMOption]) -> float:
    """``min over {0} U strikes`` of ``min(0, payoff)`` (before the unpaired-calls term)."""
    worst = 0.0
    for price in [0.0] + [o.strike for o in options]:
        payoff = 0.0
        for o in options:
            diff = price - o.strike
            if o.is_call and diff > 0.0:
                payoff += diff * o.amount
            elif not o.is_call and diff < 0.0:
                payoff += -diff * o.amount
        worst = min(worst, payoff)
    return worst


def evaluate_market(m: SRMMarket, stable: float, depeg: Mapping[str, float], initial: bool
                    ) -> SRMMarketResult:
    """Signed margin and MtM of one market (``StandardManager._getMarketMargin``)."""
    p = m.params
    s = m.spot
    oc = p["oc_factor"]
    parts = dict.fromkeys(("perp", "perp_oracle", "options", "option_oracle", "base",
                           "base_oracle", "depeg", "perp_value"), 0.0)
    if m.perp_position != 0.0:
        parts["perp"] = -abs(m.perp_position) * m.perp_price * (
            p["perp_im"] if initial else p["perp_mm"])
        conf = min(m.perp_confidence, m.spot_confidence)
        if initial and p["perp_threshold"] != 0.0 and conf < p["perp_threshold"]:
            parts["perp_oracle"] = -(1.0 - conf) * oc * s * abs(m.perp_position)
        parts["perp_value"] = m.perp_value
    option_mtm = 0.0
    shorts_total = 0.0
    exp_out: list[Mapping[str, Any]] = []
    by_name: dict[str, float] = {}
    iso_by_name: dict[str, float] = {}
    for e in m.expiries:
        tau = max(e.sec_to_expiry, 0.0) / SECONDS_PER_YEAR
        strikes = np.array([o.strike for o in e.options])
        prices = np.asarray(b76(e.forward, strikes, tau,
                                          np.array([o.vol for o in e.options]),
                                          np.array([o.is_call for o in e.options]), 1.0))
        mtms = prices * np.array([o.amount for o in e.options])
        isos = [isolated_margin(o, float(mtms[i]), s, p, initial)
                for i, o in enumerate(e.options)]
        iso = float(sum(isos))
        iso_by_name.update({o.name: isos[i] for i, o in enumerate(e.options)})
        ml = max_loss(e.options)
        net_calls = sum(o.amount for o in e.options if o.is_call)
        if net_calls < 0.0:
            ml += (p["unpaired_im_scale"] if initial else p["unpaired_mm_scale"]) \
                * e.forward * net_calls
        margin = max(iso, ml)
        shorts = sum(-o.amount for o in e.options if o.amount < 0.0)
        shorts_total += shorts
        conf = min(m.spot_confidence, e.forward_confidence, e.vol_confidence)
        oracle = 0.0
        if initial and p["option_threshold"] != 0.0 and conf < p["option_threshold"]:
            oracle = -(1.0 - conf) * oc * s * shorts
        parts["options"] += margin
        parts["option_oracle"] += oracle
        option_mtm += float(mtms.sum())
        by_name.update({o.name: float(mtms[i]) for i, o in enumerate(e.options)})
        exp_out.append({"expiry": e.label, "sec_to_expiry": e.sec_to_expiry,
                        "forward": e.forward, "mtm": float(mtms.sum()),
                        "isolated_margin": iso, "max_loss_margin": ml,
                        "binding": "isolated" if iso >= ml else "max_loss",
                        "margin": margin, "oracle_contingency": oracle,
                        "min_confidence": conf, "total_shorts": shorts,
                        "net_calls": net_calls})
    if initial and stable < depeg["threshold"]:
        mult = (depeg["threshold"] - stable) * depeg["factor"]
        parts["depeg"] = -(abs(m.perp_position) + shorts_total) * mult * s
    base_mtm = 0.0
    if m.base_position != 0.0:
        notional = m.base_position * s
        parts["base"] = notional * p["base_margin_factor"] * (p["base_im_scale"] if initial
                                                              else 1.0)
        if initial and p["base_threshold"] != 0.0 and m.spot_confidence < p["base_threshold"]:
            parts["base_oracle"] = -(1.0 - m.spot_confidence) * oc * notional
        base_mtm = notional / stable
    margin = float(sum(parts.values()))
    mtm = option_mtm + (m.perp_value if m.perp_position != 0.0 else 0.0) + base_mtm
    return SRMMarketResult(m.underlying, margin, mtm, parts, tuple(exp_out), by_name,
                           iso_by_name)


def evaluate_srm(markets: Sequence[SRMMarket], cash: float, stable: float,
                 depeg: Mapping[str, float], initial: bool) -> SRMOutcome:
    """Derive's signed margin (IM if ``initial`` else MM) and MtM of a subaccount."""
    res = tuple(evaluate_market(m, stable, depeg, initial) for m in markets)
    return SRMOutcome(cash + sum(r.margin for r in res), cash + sum(r.mtm for r in res), cash,
                      res)


def market_params(params: Mapping[str, Any], underlying: str) -> dict[str, float]:
    tab = table(params, f"markets.{underlying}")
    out: dict[str, float] = {}
    for k in MARKET_KEYS:
        lo, hi = _MARKET_BOUNDS.get(k, (0.0, 1.0))
        out[k] = number(tab, k, f"markets.{underlying}", lo, hi)
    unknown = set(tab) - set(MARKET_KEYS)
    if unknown:
        raise InputError(f"params.markets.{underlying}.{sorted(unknown)[0]}", "unknown parameter")
    if out["perp_mm"] > out["perp_im"] or out["perp_mm"] <= 0.0 or out["perp_im"] >= 1.0:
        raise InputError(f"params.markets.{underlying}.perp_mm",
                         "need 0 < perp_mm <= perp_im < 1 (StandardManager's check)")
    return out


class DeriveSRMModel(BaseMarginModel):
    """Derive standard manager (see module docstring, docs/models/derive-srm.md)."""

    name = "derive-srm"
    default_config = "presets/derive-srm.toml"

    def _validate(self, params: Mapping[str, Any]) -> None:
        check_meta(params)
        d = table(params, "depeg")
        number(d, "threshold", "depeg", 0.0, 1.0)
        number(d, "factor", "depeg", 0.0, 3.0)
        for und in table(params, "markets"):
            market_params(params, und)

    def inputs(self, portfolio: Portfolio, market: MarketSnapshot
               ) -> tuple[list[SRMMarket], float, float, list[NetPosition]]:
        """Engine markets, cash and stable price for ``portfolio`` at ``market``."""
        conf_markets = table(self.params, "markets")
        mi = MarketInputs(market)
        pi = PortfolioInputs(portfolio.preset_inputs)
        by_und: dict[str, list[NetPosition]] = {}
        positions = net_positions(portfolio)
        for pos in positions:
            inst = pos.instrument
            if inst.settlement is not Settlement.LINEAR or inst.quote != "USDC":
                raise unsupported(pos, PRESET, "Derive lists USDC-settled options and "
                                  f"perpetuals only (e.g. {inst.underlying}_USDC-...)")
            if inst.kind not in (InstrumentKind.OPTION, InstrumentKind.PERPETUAL):
                why = ("hold spot as a base asset in the portfolio collateral"
                       if inst.kind is InstrumentKind.SPOT else "Derive has no dated futures")
                raise unsupported(pos, PRESET, why)
            if inst.underlying not in conf_markets:
                raise unsupported(pos, PRESET, f"no SRM market for {inst.underlying} "
                                  f"(configured: {', '.join(conf_markets)})")
            by_und.setdefault(inst.underlying, []).append(pos)
        cash = 0.0
        base: dict[str, float] = {}
        for asset, amount in portfolio.collateral.items():
            a = float(amount)
            if asset == "USDC":
                cash = a
            elif asset in conf_markets:
                if a < 0.0:
                    raise InputError(f"collateral.{asset}", "base asset balances must be >= 0")
                base[asset] = a
                by_und.setdefault(asset, [])
            else:
                raise InputError(f"collateral.{asset}", f"{PRESET} holds USDC cash and the base "
                                 f"assets of its markets ({', '.join(conf_markets)}) only")
        held_perps = {p.name for ps in by_und.values() for p in ps
                      if p.instrument.kind is InstrumentKind.PERPETUAL}
        for name in sorted(pi.perp_names() - held_perps):
            raise InputError(f"portfolio.preset_inputs.perp_unrealised_pnl.{name}",
                             "given for a perpetual that is not held")
        markets: list[SRMMarket] = []
        for und, ps in by_und.items():
            perp = next((p for p in ps if p.instrument.kind is InstrumentKind.PERPETUAL), None)
            by_exp: dict[Any, list[NetPosition]] = {}
            for p in ps:
                if p.instrument.kind is InstrumentKind.OPTION:
                    by_exp.setdefault(p.instrument.expiry, []).append(p)
            expiries: list[SRMExpiry] = []
            for exp in sorted(by_exp):
                sec = seconds_to_expiry(market, exp)
                key = expiry_key(exp)
                fwd = quoted_forward(market, und, exp)
                if fwd is None:
                    raise InputError(f"forwards.{und}.{key}", f"missing: {PRESET} needs the "
                                     "forward of every option expiry (within the last hour "
                                     "before expiry, give the settlement price)")
                opts = []
                for p in by_exp[exp]:
                    inst = p.instrument
                    assert inst.strike is not None
                    vol = (require_vol(market, p.name, PRESET) if sec > 0.0
                           else float(market.implied_vols.get(p.name, 0.0)))
                    opts.append(SRMOption(inst.strike, bool(inst.is_call), vol, p.quantity,
                                          p.name))
                vconf = min(mi.vol_confidence(p.name) for p in by_exp[exp])
                expiries.append(SRMExpiry(sec, fwd, tuple(opts), mi.forward_confidence(und, exp),
                                          vconf, key))
            markets.append(SRMMarket(
                underlying=und, spot=market.index(und, f"index_prices.{und}"),
                params=market_params(self.params, und), spot_confidence=mi.index_confidence(und),
                perp_position=perp.quantity if perp else 0.0,
                perp_price=require_mark(market, perp.name, PRESET) if perp else 0.0,
                perp_confidence=mi.perp_confidence(perp.name) if perp else 1.0,
                perp_value=pi.perp_value(perp.name) if perp else 0.0,
                base_position=base.get(und, 0.0), expiries=tuple(expiries)))
        return markets, cash, mi.stable_price(), positions

    def margin(self, portfolio: Portfolio, market: MarketSnapshot) -> MarginResult:
        markets, cash, stable, positions = self.inputs(portfolio, market)
        depeg = {k: float(v) for k, v in self.params["depeg"].items()}
        im = evaluate_srm(markets, cash, stable, depeg, True)
        mm = evaluate_srm(markets, cash, stable, depeg, False)
        names = tuple(p.name for p in positions)
        contrib = np.zeros(len(names))
        components: dict[str, float] = {}
        for r in im.markets:
            components[f"market:{r.underlying}"] = r.mtm - r.margin
            for i, p in enumerate(positions):
                if p.name in r.isolated_by_name:  # standalone (isolated) option requirement
                    contrib[i] = r.option_mtm_by_name[p.name] - r.isolated_by_name[p.name]
                elif (p.instrument.kind is InstrumentKind.PERPETUAL
                      and p.instrument.underlying == r.underlying):
                    contrib[i] = -(r.parts["perp"] + r.parts["perp_oracle"])
        details: dict[str, Any] = {
            "sign_convention": (
                "derive_im_signed / derive_mm_signed are Derive's margin balances (cash + "
                "market margins, healthy iff >= 0). initial_margin / maintenance_margin are the "
                "positive requirements: MtM (incl. cash) - signed balance."),
            "derive_im_signed": im.margin, "derive_mm_signed": mm.margin,
            "derive_requirement_im_signed": im.margin - im.mtm,
            "derive_requirement_mm_signed": mm.margin - mm.mtm,
            "mark_to_market": im.mtm, "equity": im.mtm, "cash": cash, "stable_price": stable,
            "markets": {r.underlying: {
                "im_signed": r.margin, "mm_signed": m.margin, "mtm": r.mtm,
                "im_parts": dict(r.parts), "mm_parts": dict(m.parts),
                "expiries_im": list(r.expiries), "expiries_mm": list(m.expiries)}
                for r, m in zip(im.markets, mm.markets, strict=True)},
        }
        return MarginResult(
            model=self.name, params_hash=self.params_hash, market_timestamp=market.timestamp,
            currency="USD", initial_margin=im.mtm - im.margin,
            maintenance_margin=mm.mtm - mm.margin, worst_scenarios=(), scenario_labels=(),
            scenario_pnl=np.zeros((0, len(names))), position_names=names, contributions=contrib,
            greeks=preset_greeks(positions, market), components=components, details=details)
