"""Attested reserves: the example body verifies; each forgery class is refused with its reason."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginproof.demo.proofs import example_reserves
from marginproof.errors import InputError
from marginproof.proofs.errors import VerificationError
from marginproof.proofs.reserves import verify_reserves

SCALES = {"BTC": 8, "ETH": 9, "USDC": 6, "USDT": 6}
CUT = "2022-04-15T08:00:00Z"
LIAB = {"BTC": 150_000_000, "ETH": 10 * 10**9, "USDC": 5_000_000 * 10**6, "USDT": 10**12}
BASE = example_reserves(1, "v", CUT, LIAB, SCALES)


def _check(body: Any, epoch: int = 1, cut: str = CUT):
    return verify_reserves(body, venue="v", epoch=epoch, cut_timestamp=cut, scales=SCALES,
                           max_block_age_s=86_400)


def test_example_reserves_verify_and_cover_the_liabilities() -> None:
    r = _check(BASE)
    assert all(r.amounts[a] >= LIAB[a] for a in LIAB)
    assert r.addresses == 4 and len(r.custodians) == 1
    assert r.insurance_fund == {"USDC": 2_500_000 * 10**6}


def _mut(fn) -> dict[str, Any]:
    b = copy.deepcopy(BASE)
    fn(b)
    return b


CASES = {
    "bad BIP-322 signature": (lambda b: b["attestations"][0].__setitem__(
        "signature", b["attestations"][1]["signature"]), "attestations[0].signature"),
    "EIP-191 signature of another address": (lambda b: b["attestations"][2].__setitem__(
        "signature", b["attestations"][3]["signature"]), "attestations[2].signature"),
    "duplicate address": (lambda b: b["attestations"].append(
        copy.deepcopy(b["attestations"][0])), "attested twice"),
    "a reserve counted twice": (lambda b: b["snapshots"][0]["balances"].append(
        copy.deepcopy(b["snapshots"][0]["balances"][0])), "listed twice"),
    "unattested balance": (lambda b: b["attestations"].pop(1), "no signed attestation"),
    "stale block": (lambda b: b["snapshots"][0].__setitem__(
        "timestamp", "2022-04-13T08:00:00Z"), "stale block"),
    "block after the cut": (lambda b: b["snapshots"][1].__setitem__(
        "timestamp", "2022-04-15T09:00:00Z"), "after the cut"),
    "signature for another block": (lambda b: b["snapshots"][0].__setitem__(
        "height", str(int(b["snapshots"][0]["height"]) - 1)), "attestations[0].signature"),
    "second snapshot of a chain": (lambda b: b["snapshots"].append(
        copy.deepcopy(b["snapshots"][0])), "two snapshots"),
    "custodian counted twice": (lambda b: b["custodians"].append(
        copy.deepcopy(b["custodians"][0])), "custodian counted twice"),
    "custodian statement edited": (
        lambda b: b["custodians"][0]["statement"]["balances"].__setitem__("USDC", "99999999999"),
        "custodians[0].sig"),
    "reserves of another epoch": (lambda b: b.__setitem__("epoch", "2"), "stale reserves"),
    "unknown field": (lambda b: b.__setitem__("note", "x"), "reserves"),
    "unknown field in a balance row": (lambda b: b["snapshots"][0]["balances"][0].__setitem__(
        "memo", "x"), "balances[0]"),
    "excess decimals": (lambda b: b["snapshots"][0]["balances"][0].__setitem__(
        "amount", "1.000000001"), "more than 8 decimals"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_forgery_class_is_refused_with_its_reason(name: str) -> None:
    mutate, reason = CASES[name]
    with pytest.raises((VerificationError, InputError)) as e:
        _check(_mut(mutate))
    assert reason in str(e.value), str(e.value)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 3), st.integers(0, 200), st.integers(1, 255))
def test_any_corrupted_signature_is_refused(k: int, pos: int, x: int) -> None:
    b = copy.deepcopy(BASE)
    sig = b["attestations"][k]["signature"]
    i = pos % len(sig)
    ch = sig[i]
    alphabet = "0123456789abcdef" if sig.startswith("0x") else \
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    if i < 2 and sig.startswith("0x") or ch == "=":
        return
    new = alphabet[(alphabet.index(ch) + x) % len(alphabet)]
    if new == ch:
        return
    b["attestations"][k]["signature"] = sig[:i] + new + sig[i + 1:]
    try:
        _check(b)
    except (VerificationError, InputError):
        return
    # base64's last character may carry unused padding bits: same bytes, same signature
    import base64

    assert base64.b64decode(b["attestations"][k]["signature"]) == base64.b64decode(sig)
