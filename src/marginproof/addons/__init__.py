"""Margin add-ons reported separately on the result: liquidity, concentration, funding."""

from marginproof.addons.concentration import concentration_addon
from marginproof.addons.funding import FundingStats, funding_addon, funding_stats
from marginproof.addons.liquidity import (
    ImpactCalibration,
    book_walk_cost,
    calibrate_impact,
    liquidation_cost,
    option_half_spread_vol_points,
    sqrt_impact_cost,
)

__all__ = [
    "FundingStats",
    "ImpactCalibration",
    "book_walk_cost",
    "calibrate_impact",
    "concentration_addon",
    "funding_addon",
    "funding_stats",
    "liquidation_cost",
    "option_half_spread_vol_points",
    "sqrt_impact_cost",
]
