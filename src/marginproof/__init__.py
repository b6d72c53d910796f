"""marginproof: dynamic, provable margin engine for crypto derivatives.

Public API (``import marginproof as mp``)::

    book = mp.Portfolio.of({"BTC-PERPETUAL": 100_000, "BTC-27DEC26-100000-C": -2})
    market = mp.MarketSnapshot(timestamp, {"BTC": 95_000.0}, implied_vols={...})
    result = mp.get_model("grid").margin(book, market)
    result.initial_margin, result.to_frame()

See ``docs/api.md`` for the full list.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The public names and the module each one lives in. They are imported on first use (PEP 562),
# so that ``import marginproof.<anything>`` (the CLI's ``--help`` above all) does not pay for
# numba, pandas and scipy; ``import marginproof as mp; mp.get_model`` works as before.
_LAZY: dict[str, str] = {
    "InputError": "marginproof.errors",
    "MarginproofError": "marginproof.errors",
    "UnsupportedInstrumentError": "marginproof.errors",
    "Account": "marginproof.instruments",
    "CollateralPolicy": "marginproof.instruments",
    "Instrument": "marginproof.instruments",
    "InstrumentKind": "marginproof.instruments",
    "Portfolio": "marginproof.instruments",
    "Position": "marginproof.instruments",
    "Settlement": "marginproof.instruments",
    "format_instrument": "marginproof.instruments",
    "parse_instrument": "marginproof.instruments",
    "ResolvedBook": "marginproof.instruments.resolved",
    "resolve": "marginproof.instruments.resolved",
    "load_market": "marginproof.io.formats",
    "load_portfolio": "marginproof.io.formats",
    "market_from_dict": "marginproof.io.formats",
    "portfolio_from_dict": "marginproof.io.formats",
    "MarketSnapshot": "marginproof.market",
    "BaseMarginModel": "marginproof.models",
    "MarginModel": "marginproof.models",
    "MarginResult": "marginproof.models",
    "PortfolioGreeks": "marginproof.models",
    "WorstScenario": "marginproof.models",
    "available_models": "marginproof.models",
    "get_model": "marginproof.models",
    "Black76Greeks": "marginproof.pricing",
    "black76_greeks": "marginproof.pricing",
    "black76_price": "marginproof.pricing",
    "implied_vol": "marginproof.pricing",
}

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'marginproof' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

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
