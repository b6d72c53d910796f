"""Collateral valuation: balances x index price x (1 - haircut), in USD.

Stable coins listed in ``CollateralPolicy.par_assets`` are valued at their index price when the
market quotes one and at par otherwise; their haircut is what covers a depeg. Any other asset
needs an index price and a haircut, or it is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from marginproof.errors import InputError
from marginproof.instruments.portfolio import CollateralPolicy
from marginproof.market.snapshot import MarketSnapshot

PAR_ASSETS = ("USD", "USDC", "USDT")


@dataclass(frozen=True)
class CollateralValuation:
    """Collateral value per asset and in total, USD, after haircuts (debts count in full)."""

    total_usd: float
    by_asset_usd: Mapping[str, float]
    gross_usd: float


def value_collateral(
    balances: Mapping[str, float], market: MarketSnapshot, policy: CollateralPolicy | None = None
) -> CollateralValuation:
    """Value collateral balances with haircuts.

    Negative balances (borrowed assets) count at full value with no haircut relief.

    Raises
    ------
    InputError
        An asset with no haircut entry or no index price.
    """
    pol = policy or CollateralPolicy()
    by: dict[str, float] = {}
    gross = 0.0
    for asset, amount in sorted(balances.items()):
        if asset not in pol.haircuts:
            raise InputError(f"collateral.{asset}", "no haircut configured for this asset")
        if asset in PAR_ASSETS and asset not in market.index_prices:
            px = 1.0
        else:
            px = market.index(asset, f"collateral.{asset}")
        v = float(amount) * px
        gross += v
        by[asset] = v * (1.0 - float(pol.haircuts[asset])) if v > 0 else v
    return CollateralValuation(sum(by.values()), by, gross)
