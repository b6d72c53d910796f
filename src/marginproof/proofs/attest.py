"""Signatures that prove control of on-chain addresses: EIP-191, Bitcoin message signing, BIP-322.

* **Ethereum** ``personal_sign`` (EIP-191 version ``0x45``): ``eth-account`` recovers the signer
  of ``keccak256("\\x19Ethereum Signed Message:\\n" || len || message)``; the recovered address must
  equal the stated one (compared case-insensitively: EIP-55 checksums are a display format).
* **Bitcoin legacy message signing** (``signmessage``, P2PKH only, as BIP-322 restricts it): a
  65-byte compact recoverable signature over ``SHA-256d("\\x18Bitcoin Signed Message:\\n" ||
  varint(len) || message)``; ``coincurve`` (libsecp256k1) recovers the public key, whose HASH160
  must be the address's.
* **BIP-322 simple** for P2WPKH addresses: the base64 witness stack ``[signature, pubkey]`` of the
  virtual ``to_sign`` transaction spending ``to_spend`` (whose scriptSig commits to the tagged
  hash of the message); the signature is checked with ``coincurve`` over the BIP-143 sighash
  (SIGHASH_ALL only, strict DER and low S, as BIP-322 requires), and HASH160 of the key must be
  the address's witness program. Other script types are refused as *inconclusive* (the BIP's
  word), never accepted.

The transaction and address encodings are written here (a few dozen lines, checked against the
BIP-322 test vectors: message hashes, ``to_spend``/``to_sign`` ids and signatures); the curve
arithmetic, signature checks and Keccak come from the libraries. Every failure raises
:class:`~marginproof.proofs.errors.VerificationError` with the attestation's code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import sys
from typing import Any

from marginproof.proofs.errors import VerificationError

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_ETH_ADDR = re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII)
SCHEMES = ("eip191", "bitcoin-message", "bip322-simple")
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


# -- hashing -----------------------------------------------------------------------------------
def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def hash160(data: bytes) -> bytes:
    """RIPEMD-160(SHA-256(data)) (``pycryptodome``: OpenSSL 3 hides RIPEMD-160)."""
    from Crypto.Hash import RIPEMD160

    return bytes(RIPEMD160.new(hashlib.sha256(data).digest()).digest())


def tagged_hash(tag: str, msg: bytes) -> bytes:
    """BIP-340 tagged hash ``SHA-256(SHA-256(tag) || SHA-256(tag) || msg)``."""
    t = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(t + t + msg).digest()


def bip322_message_hash(message: bytes) -> bytes:
    return tagged_hash("BIP0322-signed-message", message)


def varint(n: int) -> bytes:
    """Bitcoin CompactSize."""
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    if n <= 0xFFFFFFFF:
        return b"\xfe" + n.to_bytes(4, "little")
    return b"\xff" + n.to_bytes(8, "little")


# -- addresses ---------------------------------------------------------------------------------
def base58check_decode(s: str, code: str) -> bytes:
    if not s or any(c not in _B58 for c in s):
        raise VerificationError(code, "not a base58 address")
    n = 0
    for c in s:
        n = n * 58 + _B58.index(c)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    raw = b"\x00" * (len(s) - len(s.lstrip("1"))) + raw
    if len(raw) < 5 or sha256d(raw[:-4])[:4] != raw[-4:]:
        raise VerificationError(code, "base58check checksum does not match")
    return raw[:-4]


def _polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        b = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (b >> i) & 1 else 0
    return chk


def segwit_decode(addr: str, code: str) -> tuple[str, int, bytes]:
    """``(hrp, witness version, program)`` of a bech32 / bech32m address (BIP 173 / 350)."""
    if addr.lower() != addr and addr.upper() != addr:
        raise VerificationError(code, "mixed-case bech32 address")
    a = addr.lower()
    pos = a.rfind("1")
    if pos < 1 or pos + 7 > len(a) or len(a) > 90 or any(c not in _BECH32 for c in a[pos + 1:]):
        raise VerificationError(code, "not a bech32 address")
    hrp, data = a[:pos], [_BECH32.index(c) for c in a[pos + 1:]]
    const = _polymod([ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp] + data)
    ver = data[0]
    if const != (1 if ver == 0 else 0x2BC830A3):
        raise VerificationError(code, "bech32 checksum does not match")
    acc, bits, prog = 0, 0, []
    for v in data[1:-6]:
        acc = (acc << 5) | v
        bits += 5
        while bits >= 8:
            bits -= 8
            prog.append((acc >> bits) & 0xFF)
    if bits >= 5 or (acc & ((1 << bits) - 1)):
        raise VerificationError(code, "bech32 padding is not canonical")
    if ver > 16 or not 2 <= len(prog) <= 40 or (ver == 0 and len(prog) not in (20, 32)):
        raise VerificationError(code, "invalid witness program")
    return hrp, ver, bytes(prog)


def p2wpkh_script(program: bytes) -> bytes:
    return b"\x00\x14" + program


# -- Ethereum: EIP-191 personal_sign -----------------------------------------------------------
def _eth_account() -> tuple[Any, Any]:
    """``eth_account``'s ``Account`` and ``encode_defunct``, imported without its side effect.

    Importing it imports ``py_ecc``, which raises the interpreter's recursion limit to 100 000
    for the whole process; deep recursion anywhere (a nested JSON body in a server thread) then
    overflows the C stack -- a segfault -- instead of raising ``RecursionError``. The limit is
    put back; ``eth_account``'s signing and recovery do not recurse that deep.
    """
    limit = sys.getrecursionlimit()
    try:
        from eth_account import Account
        from eth_account.messages import encode_defunct
    finally:
        sys.setrecursionlimit(limit)
    return Account, encode_defunct


def verify_eip191(address: str, message: bytes, signature: str, code: str) -> None:
    """Raise unless ``signature`` (0x + 130 hex) by ``address`` signs ``message`` (EIP-191)."""
    Account, encode_defunct = _eth_account()

    if _ETH_ADDR.fullmatch(address) is None:
        raise VerificationError(code, "not an Ethereum address (0x + 40 hex)")
    if not re.fullmatch(r"0x[0-9a-f]{130}", signature):
        raise VerificationError(code, "signature must be 0x + 130 lowercase hex")
    sig = bytes.fromhex(signature[2:])
    if int.from_bytes(sig[32:64], "big") > SECP256K1_N // 2:
        raise VerificationError(code, "high-S signature (malleable) refused")
    try:
        got = Account.recover_message(encode_defunct(primitive=message), signature=sig)
    except Exception as exc:  # eth-account raises several types for a bad signature
        raise VerificationError(code, f"signature does not recover: {exc}") from None
    if got.lower() != address.lower():
        raise VerificationError(code, f"signed by {got}, not by {address}")


# -- Bitcoin: legacy signmessage (P2PKH) -------------------------------------------------------
def bitcoin_message_hash(message: bytes) -> bytes:
    return sha256d(b"\x18Bitcoin Signed Message:\n" + varint(len(message)) + message)


def verify_bitcoin_message(address: str, message: bytes, signature: str, code: str) -> None:
    """Legacy message signature (base64 65-byte compact) of a mainnet P2PKH ``address``."""
    from coincurve import PublicKey

    raw = base58check_decode(address, code)
    if len(raw) != 21 or raw[0] != 0x00:
        raise VerificationError(code, "legacy message signing covers mainnet P2PKH only "
                                      "(use BIP-322 for other addresses)")
    try:
        sig = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError(code, "signature is not base64") from None
    if len(sig) != 65 or not 27 <= sig[0] <= 34:
        raise VerificationError(code, "not a 65-byte compact signature")
    recid, compressed = (sig[0] - 27) & 3, sig[0] >= 31
    try:
        pub = PublicKey.from_signature_and_message(sig[1:] + bytes([recid]),
                                                   bitcoin_message_hash(message), hasher=None)
    except Exception as exc:  # coincurve raises ValueError/Exception on a bad signature
        raise VerificationError(code, f"signature does not recover a key: {exc}") from None
    if hash160(pub.format(compressed=compressed)) != raw[1:]:
        raise VerificationError(code, f"signature is not by the key of {address}")


# -- Bitcoin: BIP-322 simple (P2WPKH) ----------------------------------------------------------
def to_spend_txid(message_hash: bytes, script_pubkey: bytes) -> bytes:
    """Internal-order txid of BIP-322 ``to_spend``."""
    script_sig = b"\x00\x20" + message_hash
    tx = (b"\x00\x00\x00\x00" + b"\x01" + bytes(32) + b"\xff\xff\xff\xff"
          + varint(len(script_sig)) + script_sig + b"\x00\x00\x00\x00"
          + b"\x01" + bytes(8) + varint(len(script_pubkey)) + script_pubkey + bytes(4))
    return sha256d(tx)


def to_sign_txid(spend_txid: bytes) -> bytes:
    """Internal-order txid of the unsigned BIP-322 ``to_sign`` (witness excluded)."""
    tx = (b"\x00\x00\x00\x00" + b"\x01" + spend_txid + bytes(4) + b"\x00" + bytes(4)
          + b"\x01" + bytes(8) + b"\x01\x6a" + bytes(4))
    return sha256d(tx)


def bip143_sighash_p2wpkh(spend_txid: bytes, program: bytes) -> bytes:
    """BIP-143 SIGHASH_ALL digest of ``to_sign``'s input spending the P2WPKH output (value 0)."""
    outpoint = spend_txid + bytes(4)
    script_code = b"\x19\x76\xa9\x14" + program + b"\x88\xac"
    outputs = bytes(8) + b"\x01\x6a"
    pre = (bytes(4) + sha256d(outpoint) + sha256d(bytes(4)) + outpoint + script_code + bytes(8)
           + bytes(4) + sha256d(outputs) + bytes(4) + (1).to_bytes(4, "little"))
    return sha256d(pre)


def _witness_stack(data: bytes, code: str) -> list[bytes]:
    def read_varint(o: int) -> tuple[int, int]:
        if o >= len(data):
            raise VerificationError(code, "truncated witness")
        b = data[o]
        if b < 0xFD:
            return b, o + 1
        w = {0xFD: 2, 0xFE: 4, 0xFF: 8}[b]
        if o + 1 + w > len(data):
            raise VerificationError(code, "truncated witness")
        v = int.from_bytes(data[o + 1:o + 1 + w], "little")
        if v < (0xFD, 0x10000, 0x100000000)[(2, 4, 8).index(w)]:
            raise VerificationError(code, "non-minimal CompactSize in the witness")
        return v, o + 1 + w

    n, o = read_varint(0)
    items = []
    for _ in range(n):
        ln, o = read_varint(o)
        if o + ln > len(data):
            raise VerificationError(code, "truncated witness item")
        items.append(data[o:o + ln])
        o += ln
    if o != len(data):
        raise VerificationError(code, "trailing bytes after the witness stack")
    return items


def _strict_low_s_der(sig: bytes, code: str) -> None:
    """BIP-66 strict DER (with the sighash byte stripped) and low S."""
    if len(sig) < 8 or len(sig) > 72 or sig[0] != 0x30 or sig[1] != len(sig) - 2:
        raise VerificationError(code, "signature is not strict DER")
    lr = sig[3]
    if sig[2] != 0x02 or 5 + lr >= len(sig) or sig[4 + lr] != 0x02:
        raise VerificationError(code, "signature is not strict DER")
    ls = sig[5 + lr]
    if 6 + lr + ls != len(sig) or lr == 0 or ls == 0:
        raise VerificationError(code, "signature is not strict DER")
    r, s = sig[4:4 + lr], sig[6 + lr:]
    for x in (r, s):
        if x[0] & 0x80 or (len(x) > 1 and x[0] == 0 and not x[1] & 0x80):
            raise VerificationError(code, "signature is not strict DER")
    if int.from_bytes(s, "big") > SECP256K1_N // 2:
        raise VerificationError(code, "high-S signature refused (BIP-322 LOW_S)")


def verify_bip322_simple(address: str, message: bytes, signature: str, code: str) -> None:
    """BIP-322 *simple* signature of a mainnet P2WPKH ``address`` (others: inconclusive)."""
    from coincurve import PublicKey

    hrp, ver, prog = segwit_decode(address, code)
    if hrp != "bc":
        raise VerificationError(code, "only mainnet (bc1...) addresses are accepted")
    if ver != 0 or len(prog) != 20:
        raise VerificationError(code, "inconclusive: only P2WPKH is checked here (BIP-322 "
                                      "verifiers without a full script interpreter)")
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError(code, "signature is not base64") from None
    stack = _witness_stack(raw, code)
    if len(stack) != 2 or len(stack[1]) != 33 or stack[1][0] not in (2, 3):
        raise VerificationError(code, "P2WPKH witness must be [signature, compressed pubkey]")
    sig, pub = stack
    if not sig or sig[-1] != 0x01:
        raise VerificationError(code, "only SIGHASH_ALL is allowed")
    _strict_low_s_der(sig[:-1], code)
    if hash160(pub) != prog:
        raise VerificationError(code, "witness key does not hash to the address")
    spend = to_spend_txid(bip322_message_hash(message), p2wpkh_script(prog))
    digest = bip143_sighash_p2wpkh(spend, prog)
    try:
        ok = PublicKey(pub).verify(sig[:-1], digest, hasher=None)
    except Exception as exc:
        raise VerificationError(code, f"malformed key or signature: {exc}") from None
    if not ok:
        raise VerificationError(code, "BIP-322 signature does not verify")


def verify_attestation(scheme: str, address: str, message: bytes, signature: str,
                       code: str) -> None:
    """Dispatch on ``scheme`` (one of :data:`SCHEMES`)."""
    if scheme == "eip191":
        verify_eip191(address, message, signature, code)
    elif scheme == "bitcoin-message":
        verify_bitcoin_message(address, message, signature, code)
    elif scheme == "bip322-simple":
        verify_bip322_simple(address, message, signature, code)
    else:
        raise VerificationError(code, f"unknown scheme {scheme!r}; one of {', '.join(SCHEMES)}")


# -- signers (the demo's example reserves and the tests) ---------------------------------------
def wif_secret(wif: str) -> bytes:
    """32-byte secret of a mainnet WIF private key (compressed-key form)."""
    raw = base58check_decode(wif, "wif")
    if raw[0] != 0x80 or len(raw) != 34 or raw[-1] != 0x01:
        raise VerificationError("wif", "expected a mainnet compressed-key WIF")
    return raw[1:33]


def p2wpkh_address(secret: bytes) -> str:
    """``bc1q...`` address of a secret's compressed public key."""
    from coincurve import PrivateKey

    prog = hash160(PrivateKey(secret).public_key.format(compressed=True))
    data = [0] + _to5(prog)
    hrp = "bc"
    values = [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp] + data
    pm = _polymod(values + [0] * 6) ^ 1
    chk = [(pm >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32[d] for d in data + chk)


def _to5(b: bytes) -> list[int]:
    acc, bits, out = 0, 0, []
    for x in b:
        acc = (acc << 8) | x
        bits += 8
        while bits >= 5:
            bits -= 5
            out.append((acc >> bits) & 31)
    if bits:
        out.append((acc << (5 - bits)) & 31)
    return out


def p2pkh_address(secret: bytes) -> str:
    """``1...`` address of a secret's compressed public key."""
    from coincurve import PrivateKey

    payload = b"\x00" + hash160(PrivateKey(secret).public_key.format(compressed=True))
    raw = payload + sha256d(payload)[:4]
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\x00"))) + out


def sign_bip322_simple(secret: bytes, message: bytes) -> str:
    """BIP-322 simple signature (base64 witness) by the P2WPKH key ``secret``."""
    from coincurve import PrivateKey

    key = PrivateKey(secret)
    pub = key.public_key.format(compressed=True)
    prog = hash160(pub)
    digest = bip143_sighash_p2wpkh(to_spend_txid(bip322_message_hash(message),
                                                 p2wpkh_script(prog)), prog)
    sig = key.sign(digest, hasher=None) + b"\x01"  # libsecp256k1 signs low-S
    wit = b"\x02" + varint(len(sig)) + sig + varint(len(pub)) + pub
    return base64.b64encode(wit).decode()


def sign_bitcoin_message(secret: bytes, message: bytes) -> str:
    """Legacy compact signature (compressed key) by ``secret``."""
    from coincurve import PrivateKey

    rec = PrivateKey(secret).sign_recoverable(bitcoin_message_hash(message), hasher=None)
    return base64.b64encode(bytes([31 + rec[64]]) + rec[:64]).decode()


def sign_eip191(secret: bytes, message: bytes) -> tuple[str, str]:
    """``(address, 0x-signature)`` of an EIP-191 personal_sign by ``secret``."""
    Account, encode_defunct = _eth_account()

    acct = Account.from_key(secret)
    sig = Account.sign_message(encode_defunct(primitive=message), secret).signature
    return str(acct.address), "0x" + bytes(sig).hex()
