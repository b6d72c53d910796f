"""A deterministic synthetic book of many accounts over the shipped market (benchmarks, crash
tests and demos).

Each account holds 1-4 positions drawn (with a seeded generator) from: the BTC inverse
perpetual, the BTC linear perpetual, BTC options of the shipped chain, the ETH linear
perpetual; plus USDC and BTC collateral. Entries carry dedupe keys, so appending the workload
again after a crash appends nothing twice.
"""

from __future__ import annotations

import numpy as np

from marginproof.engine.entries import EntryKind
from marginproof.market.snapshot import MarketSnapshot
from marginproof.storage.base import NewEntry


def synthetic_accounts(n: int, market: MarketSnapshot, seed: int = 7, n_options: int = 40,
                       all_btc: bool = True) -> list[NewEntry]:
    """``n`` ``account`` entries; with ``all_btc`` every account holds a BTC position."""
    rng = np.random.default_rng(seed)
    live = [k for k in sorted(market.implied_vols) if k.startswith("BTC-")]
    idx = market.index("BTC")
    # options nearest the money, by |ln(K/S)|
    strikes = np.array([float(k.split("-")[2]) for k in live])
    order = np.argsort(np.abs(np.log(strikes / idx)))
    options = [live[i] for i in order[:n_options]]
    others = ["BTC_USDT-PERPETUAL", *options]
    if "ETH" in market.index_prices:
        others.append("ETH_USDC-PERPETUAL")
    out: list[NewEntry] = []
    for i in range(n):
        k = int(rng.integers(0, 4))
        picks = [others[int(j)] for j in rng.choice(len(others), size=k, replace=False)]
        positions: dict[str, float] = {}
        if all_btc or not picks:
            positions["BTC-PERPETUAL"] = float(rng.integers(-50, 51) or 1) * 1000.0
        for name in picks:
            size = float(rng.integers(-20, 21) or 1)
            positions[name] = size * (0.1 if name.startswith("BTC-") and name.count("-") == 3
                                      else 0.5)
        collateral = {"USDC": float(rng.integers(0, 200)) * 1000.0,
                      "BTC": float(rng.integers(0, 20)) / 10.0}
        out.append(NewEntry(EntryKind.ACCOUNT, {"account_id": f"acct-{i:06d}",
                                                "positions": positions,
                                                "collateral": collateral},
                            "workload", dedupe_key=f"workload:{seed}:account:{i}"))
    return out


def synthetic_fills(n: int, n_accounts: int, seed: int = 11) -> list[NewEntry]:
    """``n`` fills on random accounts of :func:`synthetic_accounts` (BTC inverse perp)."""
    rng = np.random.default_rng(seed)
    return [NewEntry(EntryKind.FILL, {"account_id": f"acct-{int(rng.integers(0, n_accounts)):06d}",
                                      "instrument": "BTC-PERPETUAL",
                                      "quantity": float(rng.integers(-10, 11) or 1) * 100.0},
                     "workload", dedupe_key=f"workload:{seed}:fill:{i}") for i in range(n)]
