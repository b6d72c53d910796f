"""Example epochs from the shipped data (shell): the demo book plus generated accounts.

Epoch ``e`` uses the shipped Deribit BTC chain ``e - 1`` quote dates after the demo date (cycling
through the shipped dates), the ETH daily close of the day before, the demo desk's book, and
``n_accounts`` generated accounts (fixed seed per epoch: options near the money, BTC inverse
perp, ETH linear perp, BTC spot; BTC/ETH/USDC/USDT balances, a few borrowers and a few accounts
in shortfall). The generated numbers only need to be reproducible here: once logged, the log is
the input, and replay never regenerates them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marginproof.demo.book import DEMO_DATE, demo_account, demo_market
from marginproof.io import datasets
from marginproof.market.snapshot import MarketSnapshot

SEED = 20260425


@dataclass(frozen=True)
class ExampleEpoch:
    """Inputs of one example epoch (floats; the writer freezes them into decimal strings)."""

    market: MarketSnapshot
    positions: dict[str, dict[str, float]]
    balances: dict[str, dict[str, float]]


def example_date(epoch: int) -> str:
    """Shipped chain date used for ``epoch`` (the demo date for epoch 1)."""
    dates = datasets.option_chain_dates()
    start = dates.index(DEMO_DATE)
    return dates[(start + epoch - 1) % len(dates)]


def example_epoch(epoch: int, n_accounts: int = 200, seed: int = SEED) -> ExampleEpoch:
    """Market and accounts of example epoch ``epoch``."""
    date = example_date(epoch)
    market = demo_market(date)
    chain = datasets.option_chain(date)
    ts = market.timestamp.timestamp()
    live = chain[(chain["expiry_unix"] > ts + 3 * 86400)]
    s = market.index("BTC")
    near = live[(live["strike"] > 0.7 * s) & (live["strike"] < 1.3 * s)]
    options = sorted(str(n) for n in near["instrument_name"].unique())
    rng = np.random.default_rng([seed, epoch])
    positions: dict[str, dict[str, float]] = {}
    balances: dict[str, dict[str, float]] = {}
    acct, _ = demo_account(date)
    positions[acct.account_id] = {p.instrument.name: p.quantity for p in acct.portfolio.positions}
    balances[acct.account_id] = dict(acct.collateral)
    for i in range(n_accounts):
        aid = f"acct-{i:05d}"
        pos: dict[str, float] = {}
        k = int(rng.integers(0, 5))
        for _ in range(k):
            kind = rng.random()
            if kind < 0.5 and options:
                name = options[int(rng.integers(0, len(options)))]
                q = round(float(rng.normal(0.0, 8.0)), 2)
            elif kind < 0.7:
                name, q = "BTC-PERPETUAL", round(float(rng.normal(0.0, 150_000.0)), -1)
            elif kind < 0.85:
                name, q = "ETH_USDC-PERPETUAL", round(float(rng.normal(0.0, 40.0)), 3)
            else:
                name, q = "BTC_USDT", round(abs(float(rng.normal(0.0, 3.0))), 4)
            if q != 0.0:
                pos[name] = pos.get(name, 0.0) + q
        bal: dict[str, float] = {}
        notional = sum(abs(q) * (1.0 if n == "BTC-PERPETUAL" else
                                 market.index("ETH") if n.startswith("ETH") else s)
                       for n, q in pos.items())
        scale = max(5_000.0, notional * float(rng.uniform(0.15, 0.8)))  # USD of equity
        u = rng.random()
        if u < 0.04:
            scale *= 0.02  # under-funded: likely in shortfall
        bal["USDC"] = round(scale * float(rng.uniform(0.1, 0.8)), 6)
        bal["BTC"] = round(scale * float(rng.uniform(0.0, 0.5)) / s, 8)
        if rng.random() < 0.4:
            bal["ETH"] = round(scale * float(rng.uniform(0.0, 0.3)) / market.index("ETH"), 9)
        if rng.random() < 0.3:
            bal["USDT"] = round(scale * float(rng.uniform(0.0, 0.3)), 6)
        if 0.04 <= u < 0.09:
            bal["USDC"] = -round(scale * float(rng.uniform(0.05, 0.3)), 6)  # a borrower
        positions[aid] = {n: q for n, q in pos.items() if q != 0.0}
        balances[aid] = {a: v for a, v in bal.items() if v != 0.0}
    return ExampleEpoch(market, positions, balances)
