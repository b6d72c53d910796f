"""marginproof: dynamic, provable margin engine for crypto derivatives.

Public API (``import marginproof as mp``)::

    book = mp.Portfolio.of({"BTC-PERPETUAL": 100_000, "BTC-27DEC26-100000-C": -2})
    market = mp.MarketSnapshot(timestamp, {"BTC": 95_000.0}, implied_vols={...})
    result = mp.get_model("grid").margin(book, market)
    result.initial_margin, result.to_frame()

See ``docs/api.md`` for the full list.
"""

from marginproof.errors import InputError, MarginproofError, UnsupportedInstrumentError
from marginproof.instruments import (
    Account,
    CollateralPolicy,
    Instrument,
    InstrumentKind,
    Portfolio,
    Position,
    Settlement,
    format_instrument,
    parse_instrument,
)
from marginproof.instruments.resolved import ResolvedBook, resolve
from marginproof.io.formats import (
    load_market,
    load_portfolio,
    market_from_dict,
    portfolio_from_dict,
)
from marginproof.market import MarketSnapshot
from marginproof.models import (
    BaseMarginModel,
    MarginModel,
    MarginResult,
    PortfolioGreeks,
    WorstScenario,
    available_models,
    get_model,
)
from marginproof.pricing import Black76Greeks, black76_greeks, black76_price, implied_vol

__version__ = "0.1.0"

__all__ = [
    "Account",
    "BaseMarginModel",
    "Black76Greeks",
    "CollateralPolicy",
    "InputError",
    "Instrument",
    "InstrumentKind",
    "MarginModel",
    "MarginResult",
    "MarginproofError",
    "MarketSnapshot",
    "Portfolio",
    "PortfolioGreeks",
    "Position",
    "ResolvedBook",
    "Settlement",
    "UnsupportedInstrumentError",
    "WorstScenario",
    "available_models",
    "black76_greeks",
    "black76_price",
    "format_instrument",
    "get_model",
    "implied_vol",
    "load_market",
    "load_portfolio",
    "market_from_dict",
    "parse_instrument",
    "portfolio_from_dict",
    "resolve",
]
