"""Small, fast proofs fixtures built with the pure core (no files, no shipped data)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from marginproof.market.snapshot import MarketSnapshot
from marginproof.proofs.epoch import EngineInfo, EpochResult, compute_epoch
from marginproof.proofs.inputlog import LogEntry, keys_body, sign_entry
from marginproof.proofs.leaves import market_body
from marginproof.proofs.records import sign_record, signed_record_hash
from marginproof.proofs.signing import SigningKey
from marginproof.storage.proofstore import default_params

ENGINE = EngineInfo("test-engine/1", "0" * 64)
T0 = datetime(2024, 1, 2, 8, 0, tzinfo=UTC)
OPTIONS = ("BTC-29MAR24-40000-C", "BTC-29MAR24-40000-P", "BTC-29MAR24-45000-C")


def tiny_market(btc: float = 40_000.0) -> MarketSnapshot:
    """BTC and ETH, one BTC expiry with three options."""
    return MarketSnapshot(
        timestamp=T0,
        index_prices={"BTC": btc, "ETH": 2_500.0},
        forwards={"BTC": {datetime(2024, 3, 29, 8, 0, tzinfo=UTC): btc * 1.012}},
        implied_vols={OPTIONS[0]: 0.55, OPTIONS[1]: 0.58, OPTIONS[2]: 0.6},
    )


def tiny_accounts(n: int, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Positions and balances bodies (decimal strings) for ``n`` accounts."""
    rng = np.random.default_rng(seed)
    pos, bal = [], []
    for i in range(n):
        aid = f"user-{i:03d}"
        lines = []
        if i % 4 != 3:
            lines.append({"instrument": "BTC-PERPETUAL",
                          "quantity": str(int(rng.integers(-200, 200)) * 100)})
        if i % 3 == 0:
            lines.append({"instrument": OPTIONS[i % 3], "quantity": f"-{1 + i % 5}.5"})
        if i % 5 == 1:
            lines.append({"instrument": "ETH_USDC-PERPETUAL", "quantity": "12.125"})
        b = {"USDC": f"{int(rng.integers(1_000, 90_000))}.25", "BTC": "0.12345678"}
        if i % 7 == 2:
            b["USDT"] = "-1500.5"  # a borrower
        if i % 6 == 5:
            b = {"USDC": "10"}  # under-funded: shortfall
        pos.append({"account": aid, "positions": lines})
        bal.append({"account": aid, "balances": b})
    return {"accounts": pos}, {"accounts": bal}


@dataclass(frozen=True)
class TinyLog:
    entries: list[LogEntry]
    operator: SigningKey
    source: SigningKey
    ep_secret: bytes


def tiny_log(n_accounts: int = 8, *, privacy: bool = False, depth_min: int = 3,
             fmt: str = "marginproof/proofs/v2", liabilities: bool = True,
             model: str = "standard", epochs: int = 1, seed: int = 0) -> TinyLog:
    """A signed input log with ``epochs`` cuts (prices move 2 % per epoch)."""
    op = SigningKey(bytes(range(32)))
    src = SigningKey(bytes(range(1, 33)))
    entries: list[LogEntry] = []

    def add(kind: str, body: dict[str, Any], key: SigningKey) -> None:
        entries.append(sign_entry(kind, len(entries), body, key))

    add("keys", keys_body([("operator", op), ("source", src)]), op)
    add("params", default_params(model, depth_min=depth_min, privacy=privacy, fmt=fmt,
                                 liabilities=liabilities, venue="test-venue"), src)
    for e in range(1, epochs + 1):
        add("market", market_body(tiny_market(40_000.0 * 1.02 ** (e - 1))), src)
        p, b = tiny_accounts(n_accounts, seed + e)
        add("positions", p, src)
        add("balances", b, src)
        add("cut", {"epoch": str(e), "timestamp": f"2024-01-0{1 + e}T08:00:00Z"}, src)
    return TinyLog(entries, op, src, bytes(range(100, 132)))


def tiny_epoch(log: TinyLog, epoch: int = 1, prev: str | None = None
               ) -> tuple[EpochResult, dict[str, Any]]:
    """Compute and sign one epoch of ``log``."""
    res = compute_epoch(log.entries, epoch, log.ep_secret, prev, ENGINE)
    return res, sign_record(res.record, log.operator)


def chain(log: TinyLog, epochs: int) -> list[dict[str, Any]]:
    """Signed records of epochs 1..n, linked."""
    out: list[dict[str, Any]] = []
    prev = None
    for e in range(1, epochs + 1):
        _, signed = tiny_epoch(log, e, prev)
        out.append(signed)
        prev = signed_record_hash(signed)
    return out
