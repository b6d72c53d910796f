"""Cheapest hedge: the trade that cuts an account's margin the most for the least cost.

Core (pure): :mod:`~marginproof.hedge.quotes` (quotes, fees, lots, book-walk costs),
:mod:`~marginproof.hedge.candidates` (the candidate set), :mod:`~marginproof.hedge.convex`
(convex expressions as linear programmes, HiGHS), :mod:`~marginproof.hedge.surrogates` and
:mod:`~marginproof.hedge.presets` (each model's IM as a convex function of the trade),
:mod:`~marginproof.hedge.optimize` (solve, verify with the real model, polish),
:mod:`~marginproof.hedge.bruteforce` (the naive baseline). Shell: :mod:`~marginproof.hedge.sources`
(quotes from files and the shipped order books, ``configs/hedge.toml``). See ``docs/hedge.md``.
"""

from marginproof.hedge.candidates import Candidate, CandidateSet, build_candidates
from marginproof.hedge.optimize import Target, equity_of, suggest_hedge
from marginproof.hedge.quotes import FeeSchedule, Level, LotSizes, Quote
from marginproof.hedge.result import HedgeResult, HedgeTrade

__all__ = [
    "Candidate",
    "CandidateSet",
    "FeeSchedule",
    "HedgeResult",
    "HedgeTrade",
    "Level",
    "LotSizes",
    "Quote",
    "Target",
    "build_candidates",
    "equity_of",
    "suggest_hedge",
]
