"""L1 input log: signed canonical-JSON entries in an RFC 9162 Merkle log (spec section 5).

Entry (canonical JSON, one per line in the file store)::

    {"kind": k, "seq": "<n>", "source": "<key_id>", "body": {...}, "sig": "<hex>"}

``sig`` is Ed25519 by the ``source`` key over the entry without ``sig`` (context
``marginproof/v1/log-entry``); the Merkle leaf is the whole signed entry. Kinds:

* ``keys``     ``{"keys": [{"role": "operator"|"source", "key_id", "public_key"}]}``; entry 0 is a
  ``keys`` entry signed by an operator key it lists (genesis); later ones (rotation) replace the
  key set and must be signed by a current operator key;
* ``params``   venue, tree format, quote/asset scales and haircuts, model name and TOML text
  (see :mod:`marginproof.proofs.engine`);
* ``market``   a market snapshot with every number as a decimal string;
* ``positions`` ``{"accounts": [{"account", "positions": [{"instrument", "quantity"}]}]}``: each
  listed account's positions are *replaced*;
* ``balances`` ``{"accounts": [{"account", "balances": {asset: signed decimal}}]}``: replaced too;
* ``recalibration`` ``{"model", "reason"}``: a model recalibration; the Monte Carlo scenarios
  of the committed path are seeded from the last one before the cut (its leaf hash), and the
  epoch header pins it (``recalibration {seq, leaf_hash}``);
* ``reserves`` the epoch's attested reserves (:mod:`marginproof.proofs.reserves`);
* ``cut``      ``{"epoch": "<n>", "timestamp"}`` closes epoch n; its inputs are entries
  ``[0, seq + 1)``. Epochs start at 1 and increase by one.

Non-key entries must be signed by a current ``source`` or ``operator`` key. Tree heads
``STH = {log, size, root, epoch}`` are signed by an operator key (context ``sth``).
Timestamps come from entries, never from a clock. The file-based store and the writer the
service uses live in :mod:`marginproof.storage.proofstore` (shell); this module is pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from marginproof.errors import InputError
from marginproof.proofs import merklelog
from marginproof.proofs.encoding import canon, parse_canonical, parse_hex, parse_hex32, parse_uint
from marginproof.proofs.errors import VerificationError
from marginproof.proofs.signing import (
    CTX_LOG_ENTRY,
    CTX_STH,
    SigningKey,
    key_id,
    verify_signature,
)

KINDS = ("market", "positions", "balances", "params", "keys", "cut", "recalibration",
         "reserves")
ROLES = ("operator", "source")


@dataclass(frozen=True)
class LogEntry:
    """One signed input-log entry."""

    kind: str
    seq: int
    source: str
    body: Mapping[str, Any]
    sig: bytes

    def unsigned_obj(self) -> dict[str, Any]:
        return {"kind": self.kind, "seq": str(self.seq), "source": self.source,
                "body": self.body}

    def to_bytes(self) -> bytes:
        """Canonical bytes of the signed entry (the Merkle leaf data)."""
        return canon({**self.unsigned_obj(), "sig": self.sig.hex()})

    @property
    def leaf_hash(self) -> bytes:
        return merklelog.leaf_hash(self.to_bytes())


def sign_entry(kind: str, seq: int, body: Mapping[str, Any], key: SigningKey) -> LogEntry:
    """Build and sign an entry (the body must already be canonical-JSON compatible)."""
    if kind not in KINDS:
        raise InputError("entry.kind", f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    e = LogEntry(kind, seq, key.key_id, dict(body), b"")
    sig = key.sign(CTX_LOG_ENTRY, canon(e.unsigned_obj()))
    return LogEntry(kind, seq, key.key_id, dict(body), sig)


def parse_entry(data: bytes, where: str) -> LogEntry:
    """Strictly parse one entry line (structure only; signatures are checked by the audit)."""
    obj = parse_canonical(data, where)
    if not isinstance(obj, dict) or set(obj) != {"kind", "seq", "source", "body", "sig"}:
        raise InputError(where, "entry must have exactly kind, seq, source, body, sig")
    if obj["kind"] not in KINDS:
        raise InputError(f"{where}.kind", f"unknown kind {obj['kind']!r}")
    if not isinstance(obj["body"], dict):
        raise InputError(f"{where}.body", "must be an object")
    seq = parse_uint(obj["seq"], f"{where}.seq")
    parse_hex32(obj["source"], f"{where}.source")
    sig = parse_hex(obj["sig"], f"{where}.sig", 64)
    return LogEntry(obj["kind"], seq, obj["source"], obj["body"], sig)


def keys_body(keys: Sequence[tuple[str, SigningKey | bytes]]) -> dict[str, Any]:
    """Body of a ``keys`` entry from ``(role, key or raw public key)`` pairs."""
    out = []
    for role, k in keys:
        if role not in ROLES:
            raise InputError("keys.role", f"role must be one of {ROLES}")
        raw = k.public_raw if isinstance(k, SigningKey) else k
        out.append({"role": role, "key_id": key_id(raw), "public_key": raw.hex()})
    return {"keys": out}


def parse_keys(body: Mapping[str, Any], where: str) -> dict[str, tuple[str, bytes]]:
    keys = body.get("keys")
    if set(body) != {"keys"} or not isinstance(keys, list) or not keys:
        raise InputError(f"{where}.body", "keys entry needs a non-empty 'keys' list")
    out: dict[str, tuple[str, bytes]] = {}
    for i, k in enumerate(keys):
        p = f"{where}.body.keys[{i}]"
        if not isinstance(k, dict) or set(k) != {"role", "key_id", "public_key"}:
            raise InputError(p, "must be {role, key_id, public_key}")
        if k["role"] not in ROLES:
            raise InputError(f"{p}.role", f"must be one of {ROLES}")
        raw = parse_hex(k["public_key"], f"{p}.public_key", 32)
        if key_id(raw) != k["key_id"]:
            raise InputError(f"{p}.key_id", "is not SHA-256 of the public key")
        if k["key_id"] in out:
            raise InputError(f"{p}.key_id", "listed twice")
        out[k["key_id"]] = (k["role"], raw)
    if not any(r == "operator" for r, _ in out.values()):
        raise InputError(f"{where}.body", "a keys entry must list at least one operator key")
    return out


@dataclass(frozen=True)
class Cut:
    """An epoch boundary: entries ``[0, size)`` are that epoch's inputs."""

    epoch: int
    size: int
    timestamp: str


@dataclass
class LogState:
    """The venue state after replaying entries in order (used at a cut)."""

    keys: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    params: Mapping[str, Any] | None = None
    market: Mapping[str, Any] | None = None
    positions: dict[str, list[Any]] = field(default_factory=dict)
    balances: dict[str, dict[str, Any]] = field(default_factory=dict)
    cuts: list[Cut] = field(default_factory=list)
    key_history: list[dict[str, tuple[str, bytes]]] = field(default_factory=list)
    recalibration: tuple[int, bytes] | None = None  # (seq, RFC 6962 leaf hash) of the last one
    reserves: Mapping[str, Any] | None = None

    def operator_keys(self) -> dict[str, bytes]:
        return {k: raw for k, (role, raw) in self.keys.items() if role == "operator"}


def _accounts_list(body: Mapping[str, Any], where: str, item: str) -> list[dict[str, Any]]:
    accts = body.get("accounts")
    if set(body) != {"accounts"} or not isinstance(accts, list):
        raise InputError(f"{where}.body", "needs exactly an 'accounts' list")
    seen: set[str] = set()
    for i, a in enumerate(accts):
        if not isinstance(a, dict) or set(a) != {"account", item}:
            raise InputError(f"{where}.body.accounts[{i}]", f"must be {{account, {item}}}")
        if not isinstance(a["account"], str) or not a["account"]:
            raise InputError(f"{where}.body.accounts[{i}].account", "must be a non-empty string")
        if a["account"] in seen:  # never "last wins": one entry states each account once
            raise InputError(f"{where}.body.accounts[{i}].account",
                             f"account {a['account']!r} appears twice in one entry")
        seen.add(a["account"])
    return accts


def replay_entries(entries: Sequence[LogEntry], *, trusted_operator: str | None = None,
                   stop: int | None = None) -> LogState:
    """Verify entries ``[0, stop)`` (sequence, keys, signatures, kinds) and return the state.

    Raises :class:`VerificationError` on a bad signature, a wrong signer or a sequence gap (a
    tampered or reordered log) and :class:`InputError` on malformed bodies.
    """
    st = LogState()
    n = len(entries) if stop is None else stop
    if n > len(entries):
        raise VerificationError("input_log.size", f"log has {len(entries)} entries, need {n}")
    for i in range(n):
        e = entries[i]
        where = f"input_log[{i}]"
        if e.seq != i:
            raise VerificationError(f"{where}.seq", f"entry {i} carries seq {e.seq} "
                                                    "(reordered, dropped or inserted entry)")
        if i == 0:
            if e.kind != "keys":
                raise VerificationError(f"{where}.kind", "the first entry must be a keys entry")
            keys = parse_keys(e.body, where)
            if e.source not in keys or keys[e.source][0] != "operator":
                raise VerificationError(f"{where}.source", "genesis keys entry must be signed "
                                                           "by an operator key it lists")
            if trusted_operator is not None and e.source != trusted_operator:
                raise VerificationError(f"{where}.source", f"genesis key {e.source[:16]}... is "
                                                           "not the trusted operator key")
            signer = keys[e.source]
        else:
            if e.source not in st.keys:
                raise VerificationError(f"{where}.source", "signed by an unknown key")
            signer = st.keys[e.source]
            if e.kind == "keys" and signer[0] != "operator":
                raise VerificationError(f"{where}.source", "key rotation needs an operator key")
        verify_signature(signer[1], CTX_LOG_ENTRY, canon(e.unsigned_obj()), e.sig,
                         f"{where}.sig")
        if e.kind == "keys":
            st.keys = parse_keys(e.body, where)
            st.key_history.append(dict(st.keys))
        elif e.kind == "params":
            st.params = e.body
        elif e.kind == "market":
            st.market = e.body
        elif e.kind == "recalibration":
            if set(e.body) != {"model", "reason"} or not all(
                    isinstance(e.body[k], str) for k in ("model", "reason")):
                raise InputError(f"{where}.body", "recalibration needs exactly model and reason")
            st.recalibration = (i, e.leaf_hash)
        elif e.kind == "reserves":
            st.reserves = e.body
        elif e.kind == "positions":
            for a in _accounts_list(e.body, where, "positions"):
                if not isinstance(a["positions"], list):
                    raise InputError(f"{where}.body", "positions must be a list")
                st.positions[a["account"]] = a["positions"]
        elif e.kind == "balances":
            for a in _accounts_list(e.body, where, "balances"):
                if not isinstance(a["balances"], dict):
                    raise InputError(f"{where}.body", "balances must be an object")
                st.balances[a["account"]] = a["balances"]
        else:  # cut
            if set(e.body) != {"epoch", "timestamp"} or not isinstance(e.body["timestamp"], str):
                raise InputError(f"{where}.body", "cut needs exactly epoch and timestamp")
            ep = parse_uint(e.body["epoch"], f"{where}.body.epoch")
            expected = st.cuts[-1].epoch + 1 if st.cuts else 1
            if ep != expected:
                raise VerificationError(f"{where}.body.epoch",
                                        f"cut for epoch {ep}, expected {expected}")
            st.cuts.append(Cut(ep, i + 1, e.body["timestamp"]))
    return st


def find_cut(entries: Sequence[LogEntry], epoch: int) -> Cut:
    """The cut entry of ``epoch`` (structure only; audit with :func:`replay_entries`)."""
    for e in entries:
        if e.kind == "cut" and e.body.get("epoch") == str(epoch):
            return Cut(epoch, e.seq + 1, str(e.body.get("timestamp")))
    raise InputError("epoch", f"the input log has no cut for epoch {epoch}")


def log_root(entries: Sequence[LogEntry], size: int) -> bytes:
    """RFC 9162 root of the first ``size`` entries."""
    return merklelog.root_of([e.leaf_hash for e in entries[:size]])


# -- signed tree heads -----------------------------------------------------------------------
def make_sth(log: str, size: int, root: bytes, epoch: int, key: SigningKey) -> dict[str, Any]:
    """``{sth: {log, size, root, epoch}, sig, key_id}`` signed with context ``sth``."""
    sth = {"log": log, "size": str(size), "root": root.hex(), "epoch": str(epoch)}
    return {"sth": sth, "sig": key.sign(CTX_STH, canon(sth)).hex(), "key_id": key.key_id}


@dataclass(frozen=True)
class TreeHead:
    log: str
    size: int
    root: bytes
    epoch: int
    key_id: str


def parse_sth(obj: Any, where: str) -> tuple[TreeHead, bytes]:
    """Structure of a signed tree head -> (head, signature)."""
    if not isinstance(obj, dict) or set(obj) != {"sth", "sig", "key_id"}:
        raise InputError(where, "must be {sth, sig, key_id}")
    s = obj["sth"]
    if not isinstance(s, dict) or set(s) != {"log", "size", "root", "epoch"}:
        raise InputError(f"{where}.sth", "must be {log, size, root, epoch}")
    if s["log"] not in ("input", "epoch"):
        raise InputError(f"{where}.sth.log", "must be 'input' or 'epoch'")
    head = TreeHead(s["log"], parse_uint(s["size"], f"{where}.sth.size"),
                    parse_hex32(s["root"], f"{where}.sth.root"),
                    parse_uint(s["epoch"], f"{where}.sth.epoch"),
                    parse_hex32(obj["key_id"], f"{where}.key_id").hex())
    return head, parse_hex(obj["sig"], f"{where}.sig", 64)


def verify_sth(obj: Any, operator_keys: Mapping[str, bytes], where: str) -> TreeHead:
    """Parse and check the signature of a tree head against the operator keys."""
    head, sig = parse_sth(obj, where)
    raw = operator_keys.get(head.key_id)
    if raw is None:
        raise VerificationError(f"{where}.key_id", "tree head signed by a key that is not a "
                                                   "trusted operator key")
    verify_signature(raw, CTX_STH, canon(obj["sth"]), sig, f"{where}.sig")
    return head
