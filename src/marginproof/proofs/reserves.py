"""Attested reserves of one epoch and the public solvency verdict (issue 23).

Reserves body (the public ``reserves.json`` of an epoch, and the ``reserves`` input-log entry)::

    {"venue", "epoch",
     "snapshots": [{"chain": "bitcoin"|"ethereum", "height", "hash", "timestamp",
                    "balances": [{"address", "asset", "amount"}]}],
     "attestations": [{"chain", "address", "scheme", "signature"}],
     "custodians": [{"statement": {"custodian", "venue", "epoch", "as_of", "balances": {A: amt}},
                     "public_key", "sig"}],
     "insurance_fund": {A: amount}}

* Each on-chain balance counts only if its address signed :func:`attestation_message`, which
  names the venue, the epoch, the chain and the snapshot's block (height and hash): a signature
  for another block, epoch or venue does not verify. Schemes: :mod:`marginproof.proofs.attest`.
* A snapshot's block must not be after the cut nor older than ``params.reserves.max_block_age_s``
  before it (a stale block is refused).
* Refused, each with its reason: a bad signature, an unattested balance, an address attested or
  listed twice, an address in two snapshots of one chain, a custodian statement for another
  venue or epoch, a custodian counted twice, an unknown asset, excess decimals.
* A custodian's statement is an Ed25519 signature (context ``marginproof/v1/custodian``) over its
  canonical JSON; the record pins each custodian key id, which users compare with the key the
  custodian publishes (the verifier cannot know it otherwise).

What stays trusted: that the snapshot's balances are those of the chain at that block (anyone
with a node can check: height, hash and addresses are public) and the custodian keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from marginproof.errors import InputError
from marginproof.proofs.attest import SCHEMES, verify_attestation
from marginproof.proofs.encoding import canon, parse_hex, parse_hex32, parse_uint, sha256, to_atoms
from marginproof.proofs.errors import VerificationError
from marginproof.proofs.signing import CTX_CUSTODIAN, key_id, verify_signature

PREFIX_RESERVES = b"\x1b"
CHAINS = {"bitcoin": ("BTC",), "ethereum": ("ETH", "USDC", "USDT")}
SCHEMES_BY_CHAIN = {"bitcoin": ("bip322-simple", "bitcoin-message"), "ethereum": ("eip191",)}


def attestation_message(venue: str, epoch: int, chain: str, height: int, block_hash: str,
                        address: str) -> bytes:
    """The exact text an address signs (UTF-8): binds venue, epoch, chain, block and address."""
    return (f"marginproof reserves attestation\nvenue: {venue}\nepoch: {epoch}\nchain: {chain}\n"
            f"block: {height} {block_hash}\naddress: {address}").encode()


def reserves_hash(body: Mapping[str, Any]) -> str:
    """``SHA-256(0x1b || canonical reserves body)`` (pinned by the record)."""
    return sha256(PREFIX_RESERVES, canon(body)).hex()


@dataclass(frozen=True)
class Reserves:
    """Verified reserves: per-asset atoms, insurance fund, and what backs them."""

    body: Mapping[str, Any]
    amounts: Mapping[str, int]
    insurance_fund: Mapping[str, int]
    addresses: int
    custodians: tuple[str, ...]
    blocks: tuple[tuple[str, int, str], ...]

    @property
    def hash(self) -> str:
        return reserves_hash(self.body)


def _ts(s: Any, field: str) -> datetime:
    if not isinstance(s, str) or not s.endswith("Z"):
        raise InputError(field, "must be an ISO-8601 UTC timestamp ending in Z")
    try:
        return datetime.fromisoformat(s[:-1] + "+00:00")
    except ValueError as exc:
        raise InputError(field, f"bad timestamp: {exc}") from None


def _exact(obj: Any, keys: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping) or set(obj) != keys:
        raise InputError(where, f"must be an object with exactly {sorted(keys)}")
    return obj


def verify_reserves(body: Any, *, venue: str, epoch: int, cut_timestamp: str,
                    scales: Mapping[str, int], max_block_age_s: int,
                    code: str = "reserves") -> Reserves:
    """Check a reserves body completely (see module docstring); raise naming the failure.

    Structural faults raise :class:`InputError` (field named), failed checks
    :class:`VerificationError` (``reserves.*`` codes).
    """
    b = _exact(body, {"venue", "epoch", "snapshots", "attestations", "custodians",
                      "insurance_fund"}, code)
    if b["venue"] != venue:
        raise VerificationError(f"{code}.venue", f"reserves are for venue {b['venue']!r}")
    if parse_uint(b["epoch"], f"{code}.epoch") != epoch:
        raise VerificationError(f"{code}.epoch", f"reserves are for epoch {b['epoch']}, not "
                                                 f"{epoch} (stale reserves)")
    cut = _ts(cut_timestamp, "cut_timestamp")
    amounts = {a: 0 for a in scales}
    listed: set[tuple[str, str]] = set()
    pairs: set[tuple[tuple[str, str], str]] = set()
    blocks = []
    if not isinstance(b["snapshots"], list):
        raise InputError(f"{code}.snapshots", "must be a list")
    chains_seen: set[str] = set()
    for i, snap in enumerate(b["snapshots"]):
        p = f"{code}.snapshots[{i}]"
        s = _exact(snap, {"chain", "height", "hash", "timestamp", "balances"}, p)
        chain = s["chain"]
        if chain not in CHAINS:
            raise InputError(f"{p}.chain", f"unknown chain {chain!r}; one of {sorted(CHAINS)}")
        if chain in chains_seen:
            raise VerificationError(f"{p}.chain", f"two snapshots of {chain}: one block per "
                                                  "chain, or a balance could be counted twice")
        chains_seen.add(chain)
        height = parse_uint(s["height"], f"{p}.height")
        parse_hex32(s["hash"], f"{p}.hash")
        t = _ts(s["timestamp"], f"{p}.timestamp")
        age = (cut - t).total_seconds()
        if age < 0:
            raise VerificationError(f"{p}.timestamp", f"block {height} is after the cut")
        if age > max_block_age_s:
            raise VerificationError(f"{p}.timestamp", f"stale block {height}: {age:.0f} s before "
                                                      f"the cut (limit {max_block_age_s} s)")
        blocks.append((chain, height, s["hash"]))
        if not isinstance(s["balances"], list):
            raise InputError(f"{p}.balances", "must be a list")
        for j, row in enumerate(s["balances"]):
            q = f"{p}.balances[{j}]"
            r = _exact(row, {"address", "asset", "amount"}, q)
            if r["asset"] not in CHAINS[chain] or r["asset"] not in scales:
                raise InputError(f"{q}.asset", f"{r['asset']!r} is not an asset of {chain} "
                                               "in the parameters")
            if not isinstance(r["address"], str) or not r["address"]:
                raise InputError(f"{q}.address", "must be a non-empty string")
            key = (chain, r["address"].lower() if chain == "ethereum" else r["address"])
            if (key, r["asset"]) in pairs:
                raise VerificationError(f"{q}.address", f"{r['address']} {r['asset']} listed "
                                                        "twice (a reserve counted twice)")
            pairs.add((key, r["asset"]))
            listed.add(key)
            amounts[r["asset"]] += to_atoms(r["amount"], scales[r["asset"]], f"{q}.amount")
    attested: set[tuple[str, str]] = set()
    if not isinstance(b["attestations"], list):
        raise InputError(f"{code}.attestations", "must be a list")
    heights = {c: (h, hh) for c, h, hh in blocks}
    for i, att in enumerate(b["attestations"]):
        p = f"{code}.attestations[{i}]"
        a = _exact(att, {"chain", "address", "scheme", "signature"}, p)
        chain, addr = a["chain"], a["address"]
        if chain not in heights:
            raise VerificationError(f"{p}.chain", f"no snapshot of {chain!r} to attest against")
        if a["scheme"] not in SCHEMES_BY_CHAIN[chain]:
            raise InputError(f"{p}.scheme", f"{a['scheme']!r} does not sign {chain} addresses; "
                                            f"one of {SCHEMES_BY_CHAIN[chain]} (all: {SCHEMES})")
        if not isinstance(addr, str) or not isinstance(a["signature"], str):
            raise InputError(p, "address and signature must be strings")
        key = (chain, addr.lower() if chain == "ethereum" else addr)
        if key in attested:
            raise VerificationError(f"{p}.address", f"{addr} attested twice (duplicate address)")
        h, hh = heights[chain]
        verify_attestation(a["scheme"], addr,
                           attestation_message(venue, epoch, chain, h, hh, addr),
                           a["signature"], f"{p}.signature")
        attested.add(key)
    for key in listed:
        if key not in attested:
            raise VerificationError(f"{code}.attestations", f"{key[0]} address {key[1]} has a "
                                                           "balance but no signed attestation")
    extra = attested - listed
    if extra:
        raise VerificationError(f"{code}.attestations", f"attested addresses with no balance in "
                                                        f"the snapshot: {sorted(extra)[:3]}")
    custodians: list[str] = []
    if not isinstance(b["custodians"], list):
        raise InputError(f"{code}.custodians", "must be a list")
    for i, c in enumerate(b["custodians"]):
        p = f"{code}.custodians[{i}]"
        cs = _exact(c, {"statement", "public_key", "sig"}, p)
        st = _exact(cs["statement"], {"custodian", "venue", "epoch", "as_of", "balances"},
                    f"{p}.statement")
        raw = parse_hex(cs["public_key"], f"{p}.public_key", 32)
        kid = key_id(raw)
        verify_signature(raw, CTX_CUSTODIAN, canon(st), parse_hex(cs["sig"], f"{p}.sig", 64),
                         f"{p}.sig")
        if st["venue"] != venue or st["epoch"] != str(epoch):
            raise VerificationError(f"{p}.statement", "statement is for another venue or epoch")
        t = _ts(st["as_of"], f"{p}.statement.as_of")
        age = (cut - t).total_seconds()
        if not 0 <= age <= max_block_age_s:
            raise VerificationError(f"{p}.statement.as_of", "statement is stale or after the cut")
        if kid in custodians:
            raise VerificationError(f"{p}.public_key", "custodian counted twice")
        custodians.append(kid)
        if not isinstance(st["balances"], Mapping):
            raise InputError(f"{p}.statement.balances", "must be an object")
        for asset, amt in sorted(st["balances"].items()):
            if asset not in scales:
                raise InputError(f"{p}.statement.balances.{asset}", "unknown asset")
            amounts[asset] += to_atoms(amt, scales[asset], f"{p}.statement.balances.{asset}")
    fund_raw = b["insurance_fund"]
    if not isinstance(fund_raw, Mapping):
        raise InputError(f"{code}.insurance_fund", "must be an object {asset: amount}")
    fund = {}
    for asset, amt in sorted(fund_raw.items()):
        if asset not in scales:
            raise InputError(f"{code}.insurance_fund.{asset}", "unknown asset")
        fund[asset] = to_atoms(amt, scales[asset], f"{code}.insurance_fund.{asset}")
    return Reserves(dict(b), amounts, fund, len(listed), tuple(custodians), tuple(blocks))


def solvency_section(reserves: Reserves | None, assets: Sequence[str],
                     totals: Mapping[str, int], fund_quote_atoms: int | None,
                     stress: Mapping[str, Any], max_block_age_s: int) -> dict[str, Any]:
    """The record's ``solvency`` object (public verdict per asset, stress line)."""
    rows = []
    for a in assets:
        liab = totals.get(f"cr:{a}", 0)
        row: dict[str, Any] = {"asset": a, "liabilities": str(liab),
                               "receivables": str(totals.get(f"db:{a}", 0))}
        if reserves is None:
            row.update({"reserves": None, "net": None, "verdict": "not-attested"})
        else:
            r = reserves.amounts.get(a, 0)
            row.update({"reserves": str(r), "net": str(r - liab),
                        "verdict": "solvent" if r >= liab else "insolvent"})
        rows.append(row)
    out: dict[str, Any] = {"assets": rows, "stress": dict(stress)}
    if reserves is not None:
        out["reserves_hash"] = reserves.hash
        out["custodian_keys"] = list(reserves.custodians)
        out["blocks"] = [{"chain": c, "height": str(h), "hash": hh} for c, h, hh in reserves.blocks]
        out["insurance_fund"] = {k: str(v) for k, v in sorted(reserves.insurance_fund.items())}
    out["insurance_fund_quote"] = None if fund_quote_atoms is None else str(fund_quote_atoms)
    out["max_block_age_s"] = str(max_block_age_s)
    return out
