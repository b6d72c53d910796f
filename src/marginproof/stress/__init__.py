"""Stress testing: crash-window replays, hypothetical shocks, liquidation cascades (pure core).

See ``docs/backtesting.md`` sections 4 and 5.
"""

from marginproof.stress.cascade import OrderBook, Population, order_book, simulate_cascade
from marginproof.stress.episodes import EPISODES, SHOCKS, Episode, Shock, episode
from marginproof.stress.replay import ReplayResult, hypothetical_shocks, replay

__all__ = ["EPISODES", "SHOCKS", "Episode", "OrderBook", "Population", "ReplayResult", "Shock",
           "episode", "hypothetical_shocks", "order_book", "replay", "simulate_cascade"]
