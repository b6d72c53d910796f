"""Seeded synthetic universes and books for benchmarks and tests (pure, deterministic).

Instruments are real-looking Deribit names (BTC/ETH inverse options over a strike x expiry
grid, perpetuals and futures) priced off a given market; accounts hold a few random positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from numpy.typing import NDArray

from marginproof.instruments.names import format_expiry, parse_instrument
from marginproof.instruments.portfolio import Portfolio, Position
from marginproof.market.snapshot import MarketSnapshot


@dataclass(frozen=True)
class Universe:
    """Instruments (quantity-1 portfolio) and the market that prices them."""

    portfolio: Portfolio
    market: MarketSnapshot
    underlying_of: NDArray[np.int64]  # (n_instruments,) index into ("BTC", "ETH")


def option_universe(market: MarketSnapshot, n_instruments: int, seed: int = 0) -> Universe:
    """``n_instruments`` BTC/ETH instruments: 2 perps + futures + options, with vols in market.

    Options are spread over weekly expiries (up to a year) and strikes 30 %..300 % of spot.
    """
    rng = np.random.default_rng(seed)
    names: list[str] = ["BTC-PERPETUAL", "ETH_USDC-PERPETUAL"]
    vols: dict[str, float] = {}
    base_day = market.timestamp.replace(hour=8, minute=0, second=0, microsecond=0)
    expiries = [base_day + timedelta(days=7 * (i + 1)) for i in range(52)]
    seen = set(names)
    for e in expiries[:8]:
        n = f"BTC-{format_expiry(e)}"
        names.append(n)
        seen.add(n)
    while len(names) < n_instruments:
        und = "BTC" if rng.random() < 0.6 else "ETH"
        s = market.index(und)
        e = expiries[int(rng.integers(0, len(expiries)))]
        step = 500 if und == "BTC" else 25
        k = max(step, int(round(s * float(rng.uniform(0.3, 3.0)) / step)) * step)
        cp = "C" if rng.random() < 0.5 else "P"
        n = f"{und}-{format_expiry(e)}-{k}-{cp}"
        if n in seen:
            continue
        seen.add(n)
        names.append(n)
        vols[n] = float(rng.uniform(0.35, 1.2))
    names = names[:n_instruments]
    pos = tuple(Position(parse_instrument(n), 1.0) for n in names)
    mkt = MarketSnapshot(market.timestamp, market.index_prices, market.forwards,
                         market.mark_prices, {**market.implied_vols, **vols}, market.rates,
                         market.funding_rates)
    und_idx = np.array([0 if p.instrument.underlying == "BTC" else 1 for p in pos], np.int64)
    return Universe(Portfolio(pos), mkt, und_idx)


def random_accounts(n_accounts: int, positions_per_account: int, n_instruments: int,
                    seed: int = 0) -> tuple[NDArray[np.int64], NDArray[np.int32],
                                            NDArray[np.float64]]:
    """(account, instrument, quantity) triples, shape (n_accounts * positions_per_account,).

    Quantities are signed coins (options) drawn log-uniformly; perp lines are USD face.
    """
    rng = np.random.default_rng(seed)
    n = n_accounts * positions_per_account
    account = np.repeat(np.arange(n_accounts, dtype=np.int64), positions_per_account)
    inst = rng.integers(0, n_instruments, n).astype(np.int32)
    size = np.exp(rng.uniform(np.log(0.1), np.log(50.0), n))
    qty = np.where(rng.random(n) < 0.5, -size, size)
    qty = np.where(inst == 0, qty * 20_000.0, qty)  # BTC-PERPETUAL lines in USD face
    return account, inst, qty
