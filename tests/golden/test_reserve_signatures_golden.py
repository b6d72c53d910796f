"""Golden tests of the reserve attestations against the schemes' published test vectors.

* BIP-322 (bitcoin/bips, bip-0322.mediawiki, "Test vectors"): message hashes, ``to_spend`` and
  ``to_sign`` transaction ids, and both published signatures of "" and "Hello World" by
  ``bc1q9vza2e8x573nczrlzms0wvx3gsqjx7vavgkx0l``.
* Bitcoin legacy ``signmessage``: Bitcoin Core's ``util_tests.cpp`` vector ("Trust no one" by
  ``15CRxFdyRpGZLW9w8HnHvVduizdL5jKNbs``).
* EIP-191 ``personal_sign``: the viem documentation's "hello world" by Anvil's first account
  (0xf39F...2266) and the Ethereum execution-API spec's ``eth_sign`` example (0xdeadbeaf by
  0x9b20...bf83).
"""

from __future__ import annotations

import pytest

from marginproof.proofs import attest
from marginproof.proofs.errors import VerificationError

BIP322_ADDR = "bc1q9vza2e8x573nczrlzms0wvx3gsqjx7vavgkx0l"
BIP322_WIF = "L3VFeEujGtevx9w18HD1fhRbCH67Az2dpCymeRE1SoPK6XQtaN2k"
BIP322 = {
    b"": {
        "hash": "c90c269c4f8fcbe6880f72a721ddfbf1914268a794cbb21cfafee13770ae19f1",
        "to_spend": "c5680aa69bb8d860bf82d4e9cd3504b55dde018de765a91bb566283c545a99a7",
        "to_sign": "1e9654e951a5ba44c8604c4de6c67fd78a27e81dcadcfe1edf638ba3aaebaed6",
        "sigs": ("AkcwRAIgM2gBAQqvZX15ZiysmKmQpDrG83avLIT492QBzLnQIxYCIBaTpOaD20qRlEylyxFSeEA2b"
                 "a9YOixpX8z46TSDtS40ASECx/EgAxlkQpQ9hYjgGu6EBCPMVPwVIVJqO4XCsMvViHI=",
                 "AkgwRQIhAPkJ1Q4oYS0htvyuSFHLxRQpFAY56b70UvE7Dxazen0ZAiAtZfFz1S6T6I23MWI2lK/pc"
                 "NTWncuyL8UL+oMdydVgzAEhAsfxIAMZZEKUPYWI4BruhAQjzFT8FSFSajuFwrDL1Yhy"),
    },
    b"Hello World": {
        "hash": "f0eb03b1a75ac6d9847f55c624a99169b5dccba2a31f5b23bea77ba270de0a7a",
        "to_spend": "b79d196740ad5217771c1098fc4a4b51e0535c32236c71f1ea4d61a2d603352b",
        "to_sign": "88737ae86f2077145f93cc4b153ae9a1cb8d56afa511988c149c5c8c9d93bddf",
        "sigs": ("AkcwRAIgZRfIY3p7/DoVTty6YZbWS71bc5Vct9p9Fia83eRmw2QCICK/ENGfwLtptFluMGs2KsqoN"
                 "Sk89pO7F29zJLUx9a/sASECx/EgAxlkQpQ9hYjgGu6EBCPMVPwVIVJqO4XCsMvViHI=",
                 "AkgwRQIhAOzyynlqt93lOKJr+wmmxIens//zPzl9tqIOua93wO6MAiBi5n5EyAcPScOjf1lAqIUIQ"
                 "tr3zKNeavYabHyR8eGhowEhAsfxIAMZZEKUPYWI4BruhAQjzFT8FSFSajuFwrDL1Yhy"),
    },
}


@pytest.mark.parametrize("message", list(BIP322))
def test_bip322_published_vectors(message: bytes) -> None:
    v = BIP322[message]
    assert attest.bip322_message_hash(message).hex() == v["hash"]
    _, _, prog = attest.segwit_decode(BIP322_ADDR, "a")
    spend = attest.to_spend_txid(bytes.fromhex(v["hash"]), attest.p2wpkh_script(prog))
    assert spend[::-1].hex() == v["to_spend"]  # txids are displayed byte-reversed
    assert attest.to_sign_txid(spend)[::-1].hex() == v["to_sign"]
    for sig in v["sigs"]:
        attest.verify_bip322_simple(BIP322_ADDR, message, sig, "a")
    with pytest.raises(VerificationError):  # the other message's signature
        other = b"Hello World" if message == b"" else b""
        attest.verify_bip322_simple(BIP322_ADDR, other, v["sigs"][0], "a")


def test_bip322_published_key_gives_the_published_address_and_signs_verifiably() -> None:
    secret = attest.wif_secret(BIP322_WIF)
    assert attest.p2wpkh_address(secret) == BIP322_ADDR
    sig = attest.sign_bip322_simple(secret, b"Hello World")
    attest.verify_bip322_simple(BIP322_ADDR, b"Hello World", sig, "a")


def test_eip191_published_vectors() -> None:
    attest.verify_eip191(
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", b"hello world",
        "0xa461f509887bd19e312c0c58467ce8ff8e300d3c1a90b608a760c5b80318eaf15fe57c96f9175d6cd4daad"
        "4663763baa7e78836e067d0163e9a2ccf2ff753f5b1b", "a")
    attest.verify_eip191(
        "0x9b2055d370f73ec7d8a03e965129118dc8f5bf83", bytes.fromhex("deadbeaf"),
        "0xa3f20717a250c2b0b729b7e5becbff67fdaef7e0699da4de7ca5895b02a170a12d887fd3b17bfdce3481f1"
        "0bea41f45ba9f709d39ce8325427b57afcfc994cee1b", "a")
    with pytest.raises(VerificationError, match="not by"):
        attest.verify_eip191(
            "0x9b2055d370f73ec7d8a03e965129118dc8f5bf83", b"hello world",
            "0xa461f509887bd19e312c0c58467ce8ff8e300d3c1a90b608a760c5b80318eaf15fe57c96f9175d6cd4"
            "daad4663763baa7e78836e067d0163e9a2ccf2ff753f5b1b", "a")


def test_bitcoin_core_legacy_message_vector() -> None:
    sig = ("IPojfrX2dfPnH26UegfbGQQLrdK844DlHq5157/P6h57WyuS/Qsl+h/WSVGDF4MUi4rWSswW38oimDYfNNU"
           "BUOk=")
    attest.verify_bitcoin_message("15CRxFdyRpGZLW9w8HnHvVduizdL5jKNbs", b"Trust no one", sig, "a")
    with pytest.raises(VerificationError):
        attest.verify_bitcoin_message("15CRxFdyRpGZLW9w8HnHvVduizdL5jKNbs", b"Trust no one.",
                                      sig, "a")


def test_bitcoin_legacy_message_round_trip_and_forgery() -> None:
    secret = attest.wif_secret(BIP322_WIF)
    addr = attest.p2pkh_address(secret)
    sig = attest.sign_bitcoin_message(secret, b"reserves")
    attest.verify_bitcoin_message(addr, b"reserves", sig, "a")
    with pytest.raises(VerificationError):
        attest.verify_bitcoin_message(addr, b"reserves!", sig, "a")
    with pytest.raises(VerificationError, match="base58"):
        attest.verify_bitcoin_message(BIP322_ADDR, b"reserves", sig, "a")
