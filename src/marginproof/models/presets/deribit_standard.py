"""``deribit-standard``: Deribit standard (per-position) margin.

Follows ``exchange-presets.md`` section 4. Each net position is margined alone and the
requirements are added up per settlement currency (positive numbers, in that currency):

* futures and perpetuals, size ``Q`` coins (inverse: USD face / mark):
  ``IM = Q (im_base + Q per_coin)``, ``MM = Q (mm_base + Q per_coin)`` coins; linear (USDC)
  contracts are converted to USDC at the index;
* inverse options, per contract, in coin (``mark`` the option mark in coin, ``S`` the index):
  short call ``IM = max(0.15 - OTM/S, 0.10) + mark``, ``MM = 0.075 + mark`` with
  ``OTM = max(K - S, 0)``; short put ``MM = max(0.075, 0.075 mark) + mark``,
  ``IM = max(max(0.15 - OTM/S, 0.10) + mark, MM)`` with ``OTM = max(S - K, 0)``;
  long options carry no margin (premium paid); no spread offsets;
* settled (expired) contracts and long spot balances (fully paid) carry no margin; short spot
  is refused. Several currencies: the sum in USD at the index.

Option marks come from ``mark_prices`` (coin); without one, the implied vol and the expiry's
forward give the Black-76 mark (``B76 / F``). Linear options and spot are not covered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from marginproof.errors import InputError
from marginproof.instruments.contracts import InstrumentKind
from marginproof.instruments.names import format_expiry
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
    seconds_to_expiry,
    table,
    unsupported,
)
from marginproof.models.result import MarginResult

PRESET = "deribit-standard"
_SETTLEMENTS = ("inverse", "linear")


def futures_margin(q_coin: float, base: float, per_coin: float) -> float:
    """``Q (base + Q per_coin)`` for ``Q = |q_coin|``, in coin."""
    q = abs(q_coin)
    return q * (base + q * per_coin)


def short_option_margin(is_call: bool, mark: float, strike: float, index: float,
                        o: Mapping[str, float]) -> tuple[float, float]:
    """``(IM, MM)`` per short inverse option contract, coin."""
    otm = max(strike - index, 0.0) if is_call else max(index - strike, 0.0)
    rate = max(o["short_base_rate"] - otm / index, o["short_floor_rate"])
    if is_call:
        return rate + mark, o["short_call_mm_rate"] + mark
    mm = max(o["short_put_mm_rate"], o["short_put_mm_mark_rate"] * mark) + mark
    return max(rate + mark, mm), mm


class DeribitStandardModel(BaseMarginModel):
    """Deribit standard margin (see module docstring, docs/models/deribit-standard.md)."""

    name = "deribit-standard"
    default_config = "presets/deribit-standard.toml"

    def _validate(self, params: Mapping[str, Any]) -> None:
        check_meta(params)
        for und, tab in table(params, "futures").items():
            path = f"futures.{und}"
            if not isinstance(tab, Mapping):
                raise InputError(f"params.{path}", "must be a table")
            for k in ("im_base", "mm_base", "per_coin"):
                number(tab, k, path, 0.0, 1.0)
            if tab["mm_base"] > tab["im_base"]:
                raise InputError(f"params.{path}.mm_base", "must not exceed im_base")
            st = tab.get("settlements")
            if not isinstance(st, list) or not st or any(s not in _SETTLEMENTS for s in st):
                raise InputError(f"params.{path}.settlements",
                                 f"must be a non-empty list from {_SETTLEMENTS}")
        o = table(params, "options")
        for k in ("short_base_rate", "short_floor_rate", "short_call_mm_rate",
                  "short_put_mm_rate", "short_put_mm_mark_rate"):
            number(o, k, "options", 0.0, 1.0)
        unds = o.get("underlyings")
        if not isinstance(unds, list) or not all(isinstance(u, str) for u in unds):
            raise InputError("params.options.underlyings", "must be a list of names")

    def _rows(self, portfolio: Portfolio, market: MarketSnapshot
              ) -> tuple[list[dict[str, Any]], list[NetPosition], list[str]]:
        fut = self.params["futures"]
        o = {k: float(v) for k, v in self.params["options"].items() if k != "underlyings"}
        opt_unds = list(self.params["options"]["underlyings"])
        rows: list[dict[str, Any]] = []
        kept: list[NetPosition] = []
        settled: list[str] = []
        for pos in net_positions(portfolio):
            inst = pos.instrument
            und = inst.underlying
            if inst.kind is InstrumentKind.SPOT:
                if pos.quantity > 0.0:  # fully paid: no margin
                    settled.append(f"{pos.name} (spot, fully paid)")
                    continue
                raise unsupported(pos, PRESET, "short spot cannot be held on Deribit")
            if inst.expiry is not None and inst.expiry <= market.timestamp:
                settled.append(pos.name)
                continue
            ccy = inst.settlement_currency
            if inst.kind is InstrumentKind.OPTION:
                if not inst.is_inverse:
                    raise unsupported(pos, PRESET, "only inverse (coin-settled) option "
                                      "formulas are published for standard margin")
                if und not in opt_unds:
                    raise unsupported(pos, PRESET, f"no option parameters for {und} "
                                      f"(configured: {', '.join(opt_unds)})")
                s = market.index(und, f"index_prices.{und}")
                im = mm = 0.0
                mark = self._option_mark(pos, market)
                if pos.quantity < 0.0:
                    assert inst.strike is not None
                    im_c, mm_c = short_option_margin(bool(inst.is_call), mark, inst.strike, s, o)
                    im, mm = -pos.quantity * im_c, -pos.quantity * mm_c
                rows.append({"position": pos.name, "currency": ccy, "kind": "option",
                             "quantity_coin": pos.quantity, "mark_coin": mark, "index": s,
                             "initial_margin": im, "maintenance_margin": mm})
            else:
                if und not in fut:
                    raise unsupported(pos, PRESET, f"no futures parameters for {und} "
                                      f"(configured: {', '.join(fut)})")
                tab = fut[und]
                settlement = "inverse" if inst.is_inverse else "linear"
                if settlement not in tab["settlements"]:
                    raise unsupported(pos, PRESET, f"{und} has {settlement} contracts "
                                      "without parameters (configured: "
                                      f"{', '.join(tab['settlements'])})")
                s = market.index(und, f"index_prices.{und}")
                price = market.mark_prices.get(pos.name)
                if price is None and inst.expiry is not None:
                    price = quoted_forward(market, und, inst.expiry)
                if price is None:
                    raise InputError(f"mark_prices.{pos.name}", f"missing: {PRESET} needs the "
                                     f"mark of {pos.name} to size it in coin (no default)")
                q = pos.quantity / price if inst.is_inverse else pos.quantity
                im = futures_margin(q, float(tab["im_base"]), float(tab["per_coin"]))
                mm = futures_margin(q, float(tab["mm_base"]), float(tab["per_coin"]))
                if not inst.is_inverse:
                    im, mm = im * s, mm * s
                rows.append({"position": pos.name, "currency": ccy, "kind": inst.kind.value,
                             "quantity_coin": q, "mark": float(price), "index": s,
                             "im_rate": float(tab["im_base"]) + abs(q) * float(tab["per_coin"]),
                             "mm_rate": float(tab["mm_base"]) + abs(q) * float(tab["per_coin"]),
                             "initial_margin": im, "maintenance_margin": mm})
            kept.append(pos)
        return rows, kept, settled

    @staticmethod
    def _option_mark(pos: NetPosition, market: MarketSnapshot) -> float:
        """Option mark in coin: the quoted mark, else Black-76 from its vol and forward."""
        mk = market.mark_prices.get(pos.name)
        if mk is not None:
            return float(mk)
        inst = pos.instrument
        assert inst.expiry is not None and inst.strike is not None
        vol = market.implied_vols.get(pos.name)
        if vol is None:
            raise InputError(f"mark_prices.{pos.name}", f"missing: {PRESET} needs the option's "
                             "mark (coin) or its implied vol")
        f = quoted_forward(market, inst.underlying, inst.expiry)
        if f is None:
            f = market.mark_prices.get(f"{inst.underlying}-{format_expiry(inst.expiry)}")
        if f is None:
            raise InputError(f"forwards.{inst.underlying}.{expiry_key(inst.expiry)}",
                             f"missing: pricing {pos.name} from its vol needs the forward")
        t = seconds_to_expiry(market, inst.expiry) / SECONDS_PER_YEAR
        return float(b76(f, inst.strike, t, vol, bool(inst.is_call), 1.0)) / f

    def margin(self, portfolio: Portfolio, market: MarketSnapshot) -> MarginResult:
        rows, kept, settled = self._rows(portfolio, market)
        ccys = list(dict.fromkeys(r["currency"] for r in rows))
        usd = {c: (float(market.index_prices.get(c, 1.0)) if c in ("USDC", "USDT")
                   else market.index(c, f"index_prices.{c}")) for c in ccys}
        single = len(ccys) <= 1
        currency = ccys[0] if len(ccys) == 1 else "USD"
        k = {c: (1.0 if single else usd[c]) for c in ccys}
        im = np.array([r["initial_margin"] * k[r["currency"]] for r in rows])
        mm = np.array([r["maintenance_margin"] * k[r["currency"]] for r in rows])
        by_ccy: dict[str, Any] = {}
        components: dict[str, float] = {}
        for c in ccys:
            sel = [r for r in rows if r["currency"] == c]
            fut_im = sum(r["initial_margin"] for r in sel if r["kind"] != "option")
            opt_im = sum(r["initial_margin"] for r in sel if r["kind"] == "option")
            by_ccy[c] = {"initial_margin": fut_im + opt_im,
                         "maintenance_margin": sum(r["maintenance_margin"] for r in sel),
                         "futures_initial_margin": fut_im, "options_initial_margin": opt_im,
                         "usd_per_unit": usd[c]}
            pre = "" if single else f"{c}:"
            components[pre + "futures"] = fut_im * k[c]
            components[pre + "short_options"] = opt_im * k[c]
        n = len(rows)
        return MarginResult(
            model=self.name, params_hash=self.params_hash, market_timestamp=market.timestamp,
            currency=currency, initial_margin=float(im.sum()), maintenance_margin=float(mm.sum()),
            worst_scenarios=(), scenario_labels=(), scenario_pnl=np.zeros((0, n)),
            position_names=tuple(r["position"] for r in rows), contributions=im,
            greeks=preset_greeks(kept, market), components=components,
            details={"convention": "positive requirements in the settlement currency (one "
                                   "currency), or their sum in USD at the index",
                     "positions": rows, "by_currency": by_ccy, "settled_positions": settled,
                     "maintenance_by_position": mm.tolist(),
                     "initial_margin_usd": sum(by_ccy[c]["initial_margin"] * usd[c]
                                               for c in ccys),
                     "maintenance_margin_usd": sum(by_ccy[c]["maintenance_margin"] * usd[c]
                                                   for c in ccys)})
