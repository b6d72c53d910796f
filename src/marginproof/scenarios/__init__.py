"""Scenario generation and full revaluation of resolved books."""

from marginproof.scenarios.revalue import scenario_pnl_usd

__all__ = ["scenario_pnl_usd"]
