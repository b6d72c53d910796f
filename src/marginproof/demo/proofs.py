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
                pos[name] = round(pos.get(name, 0.0) + q, 8)  # quantities at scale 8
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


# -- example reserves ---------------------------------------------------------------------------
DEMO_KEY_LABEL = b"marginproof demo reserve key (public, for the example only)"
CUSTODIAN_NAME = "Example Custody Ltd (demo)"
INSURANCE_FUND = {"USDC": "2500000"}


def demo_secret(i: int) -> bytes:
    """Deterministic example key ``i`` (published in this file: demo data, never real funds)."""
    import hashlib

    return hashlib.sha256(DEMO_KEY_LABEL + i.to_bytes(4, "big")).digest()


def example_reserves(epoch: int, venue: str, cut_timestamp: str,
                     liabilities: dict[str, int], scales: dict[str, int],
                     cover: float = 1.08) -> dict[str, object]:
    """A complete, valid reserves body covering ``liabilities`` (asset atoms) by ``cover``.

    BTC sits in one BIP-322 (P2WPKH) and one legacy-signed (P2PKH) address; ETH, USDT and part
    of USDC at two EIP-191 addresses; the rest of USDC with a custodian's signed statement.
    Blocks are example blocks 10 minutes before the cut (height and hash are made up: a real
    venue takes them from its node).
    """
    import hashlib
    from datetime import datetime, timedelta

    from marginproof.proofs import attest
    from marginproof.proofs.encoding import canon, decimal_string
    from marginproof.proofs.reserves import attestation_message
    from marginproof.proofs.signing import CTX_CUSTODIAN, SigningKey

    t_cut = datetime.fromisoformat(cut_timestamp.replace("Z", "+00:00"))
    ts = (t_cut - timedelta(minutes=10)).isoformat().replace("+00:00", "Z")

    def amt(asset: str, share: float) -> str:
        from fractions import Fraction

        atoms = int(liabilities.get(asset, 0) * cover * share) + 10**scales[asset]
        return decimal_string(Fraction(atoms, 10**scales[asset]), scales[asset])

    blocks = {c: (str(700_000 + 144 * epoch if c == "bitcoin" else 15_000_000 + 7_200 * epoch),
                  hashlib.sha256(f"example {c} block {epoch}".encode()).hexdigest())
              for c in ("bitcoin", "ethereum")}
    btc1 = attest.p2wpkh_address(demo_secret(1))
    btc2 = attest.p2pkh_address(demo_secret(2))
    eth = [attest.sign_eip191(demo_secret(k), b"")[0] for k in (3, 4)]
    snaps = [
        {"chain": "bitcoin", "height": blocks["bitcoin"][0], "hash": blocks["bitcoin"][1],
         "timestamp": ts, "balances": [
             {"address": btc1, "asset": "BTC", "amount": amt("BTC", 0.7)},
             {"address": btc2, "asset": "BTC", "amount": amt("BTC", 0.3)}]},
        {"chain": "ethereum", "height": blocks["ethereum"][0], "hash": blocks["ethereum"][1],
         "timestamp": ts, "balances": [
             {"address": eth[0], "asset": "ETH", "amount": amt("ETH", 1.0)},
             {"address": eth[0], "asset": "USDC", "amount": amt("USDC", 0.6)},
             {"address": eth[1], "asset": "USDT", "amount": amt("USDT", 1.0)}]},
    ]

    def msg(chain: str, address: str) -> bytes:
        h, hh = blocks[chain]
        return attestation_message(venue, epoch, chain, int(h), hh, address)

    atts = [
        {"chain": "bitcoin", "address": btc1, "scheme": "bip322-simple",
         "signature": attest.sign_bip322_simple(demo_secret(1), msg("bitcoin", btc1))},
        {"chain": "bitcoin", "address": btc2, "scheme": "bitcoin-message",
         "signature": attest.sign_bitcoin_message(demo_secret(2), msg("bitcoin", btc2))},
    ] + [{"chain": "ethereum", "address": a, "scheme": "eip191",
          "signature": attest.sign_eip191(demo_secret(k), msg("ethereum", a))[1]}
         for k, a in zip((3, 4), eth, strict=True)]
    cust = SigningKey(demo_secret(5))
    statement = {"custodian": CUSTODIAN_NAME, "venue": venue, "epoch": str(epoch), "as_of": ts,
                 "balances": {"USDC": amt("USDC", 0.4)}}
    custodians = [{"statement": statement, "public_key": cust.public_raw.hex(),
                   "sig": cust.sign(CTX_CUSTODIAN, canon(statement)).hex()}]
    return {"venue": venue, "epoch": str(epoch), "snapshots": snaps, "attestations": atts,
            "custodians": custodians, "insurance_fund": dict(INSURANCE_FUND)}


def liabilities_of(balances: dict[str, dict[str, float]], scales: dict[str, int]
                   ) -> dict[str, int]:
    """Total credits (what the venue owes) per asset, atoms (rounded up)."""
    import math
    from decimal import Decimal
    from fractions import Fraction

    out = dict.fromkeys(scales, 0)
    for bal in balances.values():
        for a, v in bal.items():
            if v > 0:
                out[a] += math.ceil(Fraction(Decimal(repr(float(v)))) * 10**scales[a])
    return out
