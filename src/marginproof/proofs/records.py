"""L3: signed epoch records, the hash chain and the epoch log (spec section 6).

``record = {header, root {hash, sums[F]}, totals {field: sum}, privacy?}`` is published as
``{record, sig, key_id}`` with ``sig = Ed25519(op_key, "marginproof/v1/epoch-record" || 0x00 ||
SHA-256(canon(record)))``. Each header carries ``prev_record_hash = SHA-256(canon(previous signed
record))`` (``null`` for the first epoch), and every signed record is a leaf of the RFC 9162 epoch
log, whose tree heads are signed by the operator. :func:`audit_epoch_log` checks all of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from marginproof.errors import InputError
from marginproof.proofs import merklelog
from marginproof.proofs.encoding import (
    PREFIX_HEADER,
    canon,
    parse_canonical,
    parse_hex,
    parse_hex32,
    parse_uint,
    sha256,
)
from marginproof.proofs.errors import VerificationError
from marginproof.proofs.inputlog import TreeHead, verify_sth
from marginproof.proofs.signing import CTX_EPOCH_RECORD, SigningKey, verify_signature
from marginproof.proofs.sumtree import MAX_DEPTH, TreeFormat, format_for_spec

HEADER_KEYS = {"spec", "epoch", "venue", "quote", "assets", "fields", "depth", "input_log",
               "params_hash", "market_hash", "market_timestamp", "cut_timestamp", "model",
               "engine", "prev_record_hash", "recalibration", "stress", "reserves_hash"}
BASE_FIELDS = ["assets", "liabs", "im", "mm", "short", "stress"]


def header_hash(header: Mapping[str, Any]) -> bytes:
    """``SHA-256(0x14 || canon(header))``."""
    return sha256(PREFIX_HEADER, canon(header))


def sign_record(record: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    """``{record, sig, key_id}``."""
    return {"record": dict(record), "sig": key.sign(CTX_EPOCH_RECORD, canon(record)).hex(),
            "key_id": key.key_id}


def signed_record_hash(signed: Mapping[str, Any]) -> str:
    """``SHA-256(canon(signed record))``: what the next header's ``prev_record_hash`` holds."""
    return sha256(canon(signed)).hex()


@dataclass(frozen=True)
class RecordView:
    """A structurally valid, signature-checked epoch record."""

    signed: Mapping[str, Any]
    header: Mapping[str, Any]
    hdr_hash: bytes
    fmt: TreeFormat
    epoch: int
    depth: int
    fields: tuple[str, ...]
    root_hash: bytes
    root_sums: tuple[int, ...]
    privacy: Mapping[str, Any] | None

    @property
    def record_hash(self) -> str:
        return signed_record_hash(self.signed)


def parse_record(signed: Any, where: str = "record") -> RecordView:
    """Check the structure of ``{record, sig, key_id}`` (no signature check)."""
    if not isinstance(signed, dict) or set(signed) != {"record", "sig", "key_id"}:
        raise InputError(where, "must be {record, sig, key_id}")
    rec = signed["record"]
    if not isinstance(rec, dict) or not {"header", "root", "totals", "solvency"} <= set(
            rec) or not set(rec) <= {"header", "root", "totals", "solvency", "privacy"}:
        raise InputError(f"{where}.record", "must be {header, root, totals, solvency[, privacy]}")
    h = rec["header"]
    if not isinstance(h, dict) or set(h) != HEADER_KEYS:
        raise InputError(f"{where}.record.header", f"must have exactly {sorted(HEADER_KEYS)}")
    fmt = format_for_spec(h["spec"], f"{where}.record.header.spec")
    epoch = parse_uint(h["epoch"], f"{where}.record.header.epoch")
    depth = parse_uint(h["depth"], f"{where}.record.header.depth", max_value=MAX_DEPTH)
    fields = h["fields"]
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
        raise InputError(f"{where}.record.header.fields", "must be a non-empty list of names")
    if len(set(fields)) != len(fields) or fields[:len(BASE_FIELDS)] != BASE_FIELDS:
        raise InputError(f"{where}.record.header.fields",
                         f"must start with {', '.join(BASE_FIELDS)} and be unique")
    root = rec["root"]
    if not isinstance(root, dict) or set(root) != {"hash", "sums"}:
        raise InputError(f"{where}.record.root", "must be {hash, sums}")
    root_hash = parse_hex32(root["hash"], f"{where}.record.root.hash")
    if not isinstance(root["sums"], list) or len(root["sums"]) != len(fields):
        raise InputError(f"{where}.record.root.sums", f"must list {len(fields)} sums")
    sums = tuple(parse_uint(s, f"{where}.record.root.sums[{i}]", max_value=fmt.sum_max)
                 for i, s in enumerate(root["sums"]))
    if not isinstance(rec["totals"], dict) or set(rec["totals"]) != set(fields):
        raise InputError(f"{where}.record.totals", "must be an object with exactly the "
                                                   "header's fields")
    for f, v in rec["totals"].items():
        parse_uint(v, f"{where}.record.totals.{f}", max_value=fmt.sum_max)
    parse_hex32(signed["key_id"], f"{where}.key_id")
    parse_hex(signed["sig"], f"{where}.sig", 64)
    prev = h["prev_record_hash"]
    if prev is not None:
        parse_hex32(prev, f"{where}.record.header.prev_record_hash")
    _check_header_shapes(h, f"{where}.record.header")
    _check_solvency_shape(rec["solvency"], h, f"{where}.record.solvency")
    privacy = rec.get("privacy")
    if privacy is not None:
        _check_privacy_shape(privacy, f"{where}.record.privacy")
    return RecordView(signed, h, header_hash(h), fmt, epoch, depth, tuple(fields), root_hash,
                      sums, privacy)


def _obj(v: Any, keys: set[str], where: str) -> dict[str, Any]:
    if not isinstance(v, dict) or set(v) != keys:
        raise InputError(where, f"must be an object with exactly {sorted(keys)}")
    for k in keys:
        if not isinstance(v[k], str):
            raise InputError(f"{where}.{k}", "must be a string")
    return v


def _check_header_shapes(h: Mapping[str, Any], where: str) -> None:
    """Every nested header object has exactly its keys, with string values."""
    for k in ("venue", "params_hash", "market_hash", "market_timestamp", "cut_timestamp"):
        if not isinstance(h[k], str):
            raise InputError(f"{where}.{k}", "must be a string")
    parse_hex32(h["params_hash"], f"{where}.params_hash")
    parse_hex32(h["market_hash"], f"{where}.market_hash")
    _obj(h["quote"], {"symbol", "scale"}, f"{where}.quote")
    if not isinstance(h["assets"], list):
        raise InputError(f"{where}.assets", "must be a list")
    for i, a in enumerate(h["assets"]):
        _obj(a, {"symbol", "scale"}, f"{where}.assets[{i}]")
    il = _obj(h["input_log"], {"size", "root"}, f"{where}.input_log")
    parse_uint(il["size"], f"{where}.input_log.size")
    parse_hex32(il["root"], f"{where}.input_log.root")
    _obj(h["model"], {"name", "params_hash", "version"}, f"{where}.model")
    eng = _obj(h["engine"], {"version", "lock_hash"}, f"{where}.engine")
    parse_hex32(eng["lock_hash"], f"{where}.engine.lock_hash")
    if h["recalibration"] is not None:
        rc = _obj(h["recalibration"], {"seq", "leaf_hash"}, f"{where}.recalibration")
        parse_uint(rc["seq"], f"{where}.recalibration.seq")
        parse_hex32(rc["leaf_hash"], f"{where}.recalibration.leaf_hash")
    stv = h["stress"]
    if not isinstance(stv, dict) or set(stv) != {"scenarios", "worst"} or not isinstance(
            stv["scenarios"], list) or not stv["scenarios"] or not all(
            isinstance(x, str) for x in stv["scenarios"]) or stv["worst"] not in stv["scenarios"]:
        raise InputError(f"{where}.stress", "must be {scenarios: [names], worst: one of them}")
    if h["reserves_hash"] is not None:
        parse_hex32(h["reserves_hash"], f"{where}.reserves_hash")


def _opt_uint(v: Any, where: str) -> int | None:
    return None if v is None else parse_uint(v, where, max_value=2**128 - 1)


def _check_solvency_shape(sv: Any, h: Mapping[str, Any], where: str) -> None:
    """Exact keys at every level of the ``solvency`` section (no unknown field passes)."""
    attested = h["reserves_hash"] is not None
    keys = {"assets", "stress", "insurance_fund_quote", "max_block_age_s"} | (
        {"reserves_hash", "custodian_keys", "blocks", "insurance_fund"} if attested else set())
    if not isinstance(sv, dict) or set(sv) != keys:
        raise InputError(where, f"must be an object with exactly {sorted(keys)}")
    if not isinstance(sv["assets"], list):
        raise InputError(f"{where}.assets", "must be a list")
    for i, row in enumerate(sv["assets"]):
        p = f"{where}.assets[{i}]"
        if not isinstance(row, dict) or set(row) != {"asset", "liabilities", "receivables",
                                                     "reserves", "net", "verdict"}:
            raise InputError(p, "must be {asset, liabilities, receivables, reserves, net, "
                                "verdict}")
        parse_uint(row["liabilities"], f"{p}.liabilities", max_value=2**128 - 1)
        parse_uint(row["receivables"], f"{p}.receivables", max_value=2**128 - 1)
        _opt_uint(row["reserves"], f"{p}.reserves")
        if row["net"] is not None and (not isinstance(row["net"], str) or not row["net"].lstrip(
                "-").isdigit()):
            raise InputError(f"{p}.net", "must be a signed integer string or null")
        if row["verdict"] not in ("solvent", "insolvent", "not-attested"):
            raise InputError(f"{p}.verdict", "must be solvent, insolvent or not-attested")
    st = sv["stress"]
    if not isinstance(st, dict) or set(st) != {"scenario", "shortfall", "by_scenario",
                                               "covered_by_insurance_fund"}:
        raise InputError(f"{where}.stress", "must be {scenario, shortfall, by_scenario, "
                                            "covered_by_insurance_fund}")
    parse_uint(st["shortfall"], f"{where}.stress.shortfall", max_value=2**128 - 1)
    if not isinstance(st["by_scenario"], list):
        raise InputError(f"{where}.stress.by_scenario", "must be a list")
    for j, x in enumerate(st["by_scenario"]):
        parse_uint(x, f"{where}.stress.by_scenario[{j}]", max_value=2**128 - 1)
    if st["covered_by_insurance_fund"] not in (None, True, False):
        raise InputError(f"{where}.stress.covered_by_insurance_fund", "must be a boolean or null")
    _opt_uint(sv["insurance_fund_quote"], f"{where}.insurance_fund_quote")
    parse_uint(sv["max_block_age_s"], f"{where}.max_block_age_s")
    if attested:
        parse_hex32(sv["reserves_hash"], f"{where}.reserves_hash")
        if not isinstance(sv["custodian_keys"], list):
            raise InputError(f"{where}.custodian_keys", "must be a list")
        for j, k in enumerate(sv["custodian_keys"]):
            parse_hex32(k, f"{where}.custodian_keys[{j}]")
        if not isinstance(sv["blocks"], list):
            raise InputError(f"{where}.blocks", "must be a list")
        for j, b in enumerate(sv["blocks"]):
            bb = _obj(b, {"chain", "height", "hash"}, f"{where}.blocks[{j}]")
            parse_uint(bb["height"], f"{where}.blocks[{j}].height")
            parse_hex32(bb["hash"], f"{where}.blocks[{j}].hash")
        if not isinstance(sv["insurance_fund"], dict):
            raise InputError(f"{where}.insurance_fund", "must be an object")
        for k, v in sv["insurance_fund"].items():
            parse_uint(v, f"{where}.insurance_fund.{k}", max_value=2**128 - 1)


def check_solvency(view: RecordView, where: str = "record") -> None:
    """The solvency section agrees with the tree's totals: per asset, liabilities = total
    ``cr``, receivables = total ``db``, ``net = reserves - liabilities`` and the verdict follows;
    the stress shortfall is the total ``stress`` field and its coverage follows from the fund.
    """
    sv = view.signed["record"]["solvency"]
    totals = dict(zip(view.fields, view.root_sums, strict=True))
    assets = [a["symbol"] for a in view.header["assets"]]
    want_assets = assets if any(f.startswith("cr:") for f in view.fields) else []
    if [r["asset"] for r in sv["assets"]] != want_assets:
        raise VerificationError(f"{where}.solvency.assets", "assets differ from the header's")
    attested = view.header["reserves_hash"] is not None
    for r in sv["assets"]:
        a = r["asset"]
        p = f"{where}.solvency.{a}"
        if int(r["liabilities"]) != totals[f"cr:{a}"]:
            raise VerificationError(f"{p}.liabilities", "liabilities differ from the tree's "
                                                        f"total cr:{a}")
        if int(r["receivables"]) != totals[f"db:{a}"]:
            raise VerificationError(f"{p}.receivables", f"differ from the tree's total db:{a}")
        if not attested:
            if r["reserves"] is not None or r["net"] is not None or r["verdict"] != \
                    "not-attested":
                raise VerificationError(f"{p}.verdict", "reserves stated without attestation")
            continue
        if r["reserves"] is None or r["net"] is None:
            raise VerificationError(f"{p}.reserves", "attested record without reserves")
        res, liab = int(r["reserves"]), int(r["liabilities"])
        if int(r["net"]) != res - liab:
            raise VerificationError(f"{p}.net", "net is not reserves - liabilities")
        if r["verdict"] != ("solvent" if res >= liab else "insolvent"):
            raise VerificationError(f"{p}.verdict", f"verdict {r['verdict']} does not follow "
                                                    f"from reserves {res} vs liabilities {liab}")
    if attested and sv["reserves_hash"] != view.header["reserves_hash"]:
        raise VerificationError(f"{where}.solvency.reserves_hash", "differs from the header's")
    st = sv["stress"]
    if st["scenario"] != view.header["stress"]["worst"]:
        raise VerificationError(f"{where}.solvency.stress.scenario", "not the header's worst")
    if int(st["shortfall"]) != totals["stress"]:
        raise VerificationError(f"{where}.solvency.stress.shortfall",
                                "differs from the tree's total stress field")
    by = [int(x) for x in st["by_scenario"]]
    names = view.header["stress"]["scenarios"]
    if len(by) != len(names) or by[names.index(st["scenario"])] != totals["stress"] or \
            max(by) != totals["stress"]:
        raise VerificationError(f"{where}.solvency.stress.by_scenario",
                                "the named scenario is not the worst one")
    fund = sv["insurance_fund_quote"]
    cov = st["covered_by_insurance_fund"]
    if (fund is None) != (cov is None) or (fund is not None and cov != (int(fund) >=
                                                                        totals["stress"])):
        raise VerificationError(f"{where}.solvency.stress.covered_by_insurance_fund",
                                "coverage does not follow from the insurance fund")


def _check_privacy_shape(p: Any, where: str) -> None:
    keys = {"scheme", "fields", "range_base", "root", "root_commitments", "blind_totals",
            "bundle_hash"}
    if not isinstance(p, dict) or set(p) != keys:
        raise InputError(where, f"must be an object with exactly {sorted(keys)}")
    if p["fields"] != ["assets", "liabs", "mm"] or p["scheme"] != "mp-pedersen/v2":
        raise InputError(where, "unsupported privacy scheme or fields")
    parse_uint(p["range_base"], f"{where}.range_base", max_value=16)
    parse_hex32(p["root"], f"{where}.root")
    parse_hex32(p["bundle_hash"], f"{where}.bundle_hash")
    for k in ("root_commitments", "blind_totals"):
        if not isinstance(p[k], list) or len(p[k]) != 3:
            raise InputError(f"{where}.{k}", "must list three values")
        for i, x in enumerate(p[k]):
            parse_hex32(x, f"{where}.{k}[{i}]")


def verify_record(signed: Any, operator_keys: Mapping[str, bytes],
                  where: str = "record") -> RecordView:
    """Structure, signature under a trusted operator key, and ``totals == root.sums``."""
    view = parse_record(signed, where)
    raw = operator_keys.get(signed["key_id"])
    if raw is None:
        raise VerificationError(f"{where}.key_id",
                                "record signed by a key that is not a trusted operator key")
    verify_signature(raw, CTX_EPOCH_RECORD, canon(signed["record"]),
                     bytes.fromhex(signed["sig"]), f"{where}.sig")
    totals = signed["record"]["totals"]
    expect = {f: str(s) for f, s in zip(view.fields, view.root_sums, strict=True)}
    if totals != expect:
        raise VerificationError(f"{where}.totals", "published totals differ from the root sums")
    check_solvency(view, where)
    return view


def load_record_bytes(data: bytes, where: str = "record") -> Any:
    """Strict canonical parse of a signed record file."""
    return parse_canonical(data, where)


# -- the epoch log ----------------------------------------------------------------------------
def epoch_log_leaves(signed_records: Sequence[Mapping[str, Any]]) -> list[bytes]:
    """RFC 9162 leaf hashes: the canonical bytes of each signed record."""
    return [merklelog.leaf_hash(canon(s)) for s in signed_records]


@dataclass(frozen=True)
class LogAudit:
    """Summary of a successful epoch-log audit."""

    records: int
    epochs: tuple[int, ...]
    sth: TreeHead | None
    known_checked: int


def check_chain(views: Sequence[RecordView]) -> None:
    """Epochs strictly increase and each ``prev_record_hash`` links to the previous record."""
    prev: RecordView | None = None
    for i, v in enumerate(views):
        want = None if prev is None else prev.record_hash
        if v.header["prev_record_hash"] != want:
            raise VerificationError(f"epoch_log[{i}].prev_record_hash",
                                    f"epoch {v.epoch} does not link to the previous record "
                                    "(history rewritten or records reordered)")
        if prev is not None and v.epoch <= prev.epoch:
            raise VerificationError(f"epoch_log[{i}].epoch",
                                    f"epoch {v.epoch} after {prev.epoch}: epochs must increase")
        prev = v


def audit_epoch_log(signed_records: Sequence[Any], sths: Sequence[Any],
                    operator_keys: Mapping[str, bytes],
                    known_sths: Sequence[Any] = ()) -> LogAudit:
    """Full audit of a published epoch log (public checks 1, 3, 8, 9).

    ``sths`` are the operator's published tree heads in order; ``known_sths`` are heads this
    verifier saw earlier (possibly from another view of the log): each must be consistent with
    the current log, else the log was truncated, rewritten or forked.
    """
    views = [verify_record(s, operator_keys, f"epoch_log[{i}]")
             for i, s in enumerate(signed_records)]
    check_chain(views)
    leaves = epoch_log_leaves(signed_records)
    heads = [verify_sth(s, operator_keys, f"sth[{i}]") for i, s in enumerate(sths)]
    prev_head: TreeHead | None = None
    for i, hd in enumerate(heads):
        if hd.log != "epoch":
            raise VerificationError(f"sth[{i}].log", "not an epoch-log tree head")
        if hd.size > len(leaves) or hd.size == 0:
            raise VerificationError(f"sth[{i}].size", f"tree head of size {hd.size} but the log "
                                                      f"has {len(leaves)} records (truncated)")
        if merklelog.root_of(leaves[:hd.size]) != hd.root:
            raise VerificationError(f"sth[{i}].root", f"root at size {hd.size} differs from the "
                                                      "published records (rewritten history)")
        if hd.epoch != views[hd.size - 1].epoch:
            raise VerificationError(f"sth[{i}].epoch", "tree head names the wrong epoch")
        if prev_head is not None:
            merklelog.verify_consistency(prev_head.size, hd.size, prev_head.root, hd.root,
                                         merklelog.consistency_proof(leaves[:hd.size],
                                                                     prev_head.size))
        prev_head = hd
    latest = heads[-1] if heads else None
    if latest is not None and latest.size != len(leaves):
        raise VerificationError("sth.latest", f"latest tree head covers {latest.size} of "
                                              f"{len(leaves)} records")
    for i, k in enumerate(known_sths):
        kh = verify_sth(k, operator_keys, f"known_sth[{i}]")
        check_known_head(kh, leaves, f"known_sth[{i}]")
    return LogAudit(len(views), tuple(v.epoch for v in views), latest, len(known_sths))


def check_known_head(known: TreeHead, leaves: Sequence[bytes], where: str) -> None:
    """A head seen earlier must be a prefix of the current log (consistency proof)."""
    if known.log != "epoch":
        raise VerificationError(f"{where}.log", "not an epoch-log tree head")
    n = len(leaves)
    if known.size > n:
        raise VerificationError(f"{where}.size", f"you saw a log of {known.size} records, it "
                                                 f"now has {n}: the log was truncated")
    if known.size == n:
        if merklelog.root_of(leaves) != known.root:
            raise VerificationError(f"{where}.root", f"fork: the same size {n} has another root")
        return
    merklelog.verify_consistency(known.size, n, known.root, merklelog.root_of(leaves),
                                 merklelog.consistency_proof(leaves, known.size)
                                 if known.size else [])


def record_in_log(signed: Mapping[str, Any], log_records: Sequence[Any], sths: Sequence[Any],
                  operator_keys: Mapping[str, bytes]) -> int:
    """User check 2: the record is a leaf of the epoch log under the latest signed tree head.

    Returns the tree size. Uses an RFC 9162 inclusion proof, as a light client would.
    """
    if not sths:
        raise VerificationError("epoch_log.sth", "no signed tree head published")
    head = verify_sth(sths[-1], operator_keys, "sth.latest")
    leaves = epoch_log_leaves(log_records)
    if head.size > len(leaves):
        raise VerificationError("sth.latest.size", "tree head larger than the published log")
    mine = merklelog.leaf_hash(canon(signed))
    try:
        index = leaves[:head.size].index(mine)
    except ValueError:
        raise VerificationError("epoch_log.inclusion", "this record is not in the epoch "
                                "log (a record shown only to you: fork)") from None
    merklelog.verify_inclusion(index, head.size, mine,
                               merklelog.inclusion_path(leaves[:head.size], index), head.root)
    return head.size
