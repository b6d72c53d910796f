"""What-if: the margin of a book before and after some trades, the change, equity and excess.

One definition for the service's ``POST /whatif`` (:mod:`marginproof.service.tasks`) and the
CLI's ``marginproof whatif``. Pure: a model, two portfolios and a market in, a frozen result
out; nothing is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from marginproof.instruments.equity import account_equity
from marginproof.instruments.portfolio import CollateralPolicy, Portfolio
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.base import MarginModel
from marginproof.models.result import MarginResult


@dataclass(frozen=True)
class WhatIf:
    """Margin after the trades (``after``), before them, the change, equity and excess.

    Attributes
    ----------
    after : MarginResult
        The model's result on the book with the trades.
    before_initial_margin, before_maintenance_margin : float
        The book without them (0 for an empty book), in ``after.currency``.
    delta_initial_margin, delta_maintenance_margin : float
        After minus before.
    collateral_value_usd, equity_usd : float
        Of the book after the trades (:func:`marginproof.instruments.equity.account_equity`).
    excess_over_initial_margin_usd, excess_over_maintenance_margin_usd : float or None
        Equity minus margin; None when the margin is not in USD (never netted across
        currencies).
    """

    after: MarginResult
    before_initial_margin: float
    before_maintenance_margin: float
    delta_initial_margin: float
    delta_maintenance_margin: float
    collateral_value_usd: float
    equity_usd: float
    excess_over_initial_margin_usd: float | None
    excess_over_maintenance_margin_usd: float | None


def with_trades(book: Portfolio, trades: Mapping[str, float]) -> Portfolio:
    """``book`` with ``trades`` (instrument -> signed quantity) added; a line netted to zero is
    dropped. Collateral and preset inputs are kept."""
    qty: dict[str, float] = {}
    for p in book.positions:
        qty[p.instrument.name] = qty.get(p.instrument.name, 0.0) + p.quantity
    for name, q in trades.items():
        qty[name] = qty.get(name, 0.0) + float(q)
    lines = Portfolio.of({n: q for n, q in qty.items() if q != 0.0})
    return Portfolio(lines.positions, dict(book.collateral), dict(book.preset_inputs))


def what_if(model: MarginModel, before: Portfolio, after: Portfolio, market: MarketSnapshot,
            policy: CollateralPolicy | None = None,
            before_margin: tuple[float, float] | None = None) -> WhatIf:
    """Margin of ``before`` and ``after`` under ``model`` on ``market`` (see :class:`WhatIf`).

    Equity is that of ``after``'s positions and collateral under ``policy`` (the default
    haircuts when None). ``before_margin``: ``(IM, MM)`` of ``before`` under the same model
    and market, when the caller already has it (a service answering many what-ifs on one
    account); it is then not recomputed.

    Callers publish only finite figures (``config.limits.all_finite``).

    Raises
    ------
    InputError
        Bad instruments or market data (named by field).
    """
    result = model.margin(after, market)
    if before == after:
        b_im, b_mm = result.initial_margin, result.maintenance_margin
    elif before_margin is not None:
        b_im, b_mm = before_margin
    elif len(before):
        b = model.margin(before, market)
        b_im, b_mm = b.initial_margin, b.maintenance_margin
    else:
        b_im = b_mm = 0.0
    eq = account_equity(dict(after.collateral), after, market, policy)
    usd = result.currency == "USD"
    out = WhatIf(
        after=result, before_initial_margin=float(b_im), before_maintenance_margin=float(b_mm),
        delta_initial_margin=float(result.initial_margin) - float(b_im),
        delta_maintenance_margin=float(result.maintenance_margin) - float(b_mm),
        collateral_value_usd=float(eq.collateral_usd), equity_usd=float(eq.total_usd),
        excess_over_initial_margin_usd=eq.total_usd - float(result.initial_margin) if usd
        else None,
        excess_over_maintenance_margin_usd=eq.total_usd - float(result.maintenance_margin)
        if usd else None)
    return out
