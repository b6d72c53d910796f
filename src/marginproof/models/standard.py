"""``standard``: per-instrument exchange-style margin tables.

Method (all USD, each position alone, summed):

* futures, perpetuals and short spot: notional ``|q| * price`` charged at marginal tier rates
  (``configs/models/standard.toml``), times an underlying multiplier;
* short options (per coin): ``IM = max(base - OTM/S, floor) * S + mark`` for calls,
  ``OTM = max(K - S, 0)``; puts use ``OTM = max(S - K, 0)`` and ``IM >= MM``;
  ``MM = mm_rate * S + mark``;
* long options and long spot: nothing beyond the premium / purchase price.

Contributions are the per-position IMs; there are no scenarios.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from marginproof.errors import InputError
from marginproof.instruments.portfolio import Portfolio
from marginproof.instruments.resolved import resolve
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.base import BaseMarginModel
from marginproof.models.result import MarginResult, aggregate_greeks


def tiered_charge(notional_usd: float, tiers: list[Mapping[str, float]], key: str) -> float:
    """Sum of ``rate * slice`` over the notional slices of a marginal tier table."""
    charged = 0.0
    lower = 0.0
    for tier in tiers:
        upper = float(tier["up_to_notional_usd"])
        if notional_usd <= lower:
            break
        charged += (min(notional_usd, upper) - lower) * float(tier[key])
        lower = upper
    return charged


class StandardModel(BaseMarginModel):
    """Per-position table margin (see module docstring)."""

    name = "standard"
    default_config = "models/standard.toml"

    def _validate(self, params: Mapping[str, Any]) -> None:
        tiers = params.get("futures", {}).get("tiers")
        if not tiers:
            raise InputError("params.futures.tiers", "at least one tier is required")
        prev = 0.0
        for i, t in enumerate(tiers):
            up = float(t["up_to_notional_usd"])
            if up <= prev:
                raise InputError(f"params.futures.tiers[{i}]", "tiers must increase")
            for k in ("im_rate", "mm_rate"):
                if not 0.0 <= float(t[k]) <= 1.0:
                    raise InputError(f"params.futures.tiers[{i}].{k}", "must be in [0, 1]")
            if float(t["mm_rate"]) > float(t["im_rate"]):
                raise InputError(f"params.futures.tiers[{i}].mm_rate", "must not exceed im_rate")
            prev = up
        if not math.isinf(prev):
            raise InputError("params.futures.tiers", "the last tier must be unbounded (inf)")

    def margin(self, portfolio: Portfolio, market: MarketSnapshot) -> MarginResult:
        book = resolve(portfolio, market)
        p = self.params
        tiers = p["futures"]["tiers"]
        mult_tab = p["futures"].get("underlying_multiplier", {"default": 1.0})
        o = p["options"]
        n = len(book)
        im = np.zeros(n)
        mm = np.zeros(n)
        coin_q = book.coin_quantity
        for i in range(n):
            und = book.underlyings[book.underlying_idx[i]]
            s = float(book.index[i])
            q = float(coin_q[i])
            if book.kind[i] == 3:  # option
                if q >= 0:
                    continue
                mark = float(book.mark_usd[i])
                k = float(book.strike[i])
                otm = max(k - s, 0.0) if book.is_call[i] else max(s - k, 0.0)
                rate = max(float(o["short_base_rate"]) - otm / s, float(o["short_floor_rate"]))
                mm_i = float(o["short_mm_rate"]) * s + mark
                im_i = rate * s + mark
                if not book.is_call[i]:
                    im_i = max(im_i, mm_i)
                im[i] = -q * im_i
                mm[i] = -q * mm_i
                continue
            if book.kind[i] == 0 and q >= 0:  # long spot: fully paid
                continue
            notional = abs(q) * float(book.forward[i])
            mult = float(mult_tab.get(und, mult_tab.get("default", 1.0)))
            im[i] = mult * tiered_charge(notional, tiers, "im_rate")
            mm[i] = mult * tiered_charge(notional, tiers, "mm_rate")
        return MarginResult(
            model=self.name,
            params_hash=self.params_hash,
            market_timestamp=market.timestamp,
            currency="USD",
            initial_margin=float(im.sum()),
            maintenance_margin=float(mm.sum()),
            worst_scenarios=(),
            scenario_labels=(),
            scenario_pnl=np.zeros((0, n)),
            position_names=book.names,
            contributions=im,
            greeks=aggregate_greeks(book),
            components={"futures": float(im[book.kind != 3].sum()),
                        "short_options": float(im[book.kind == 3].sum())},
            details={"maintenance_by_position": mm.tolist()},
        )
