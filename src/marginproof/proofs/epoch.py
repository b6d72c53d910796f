"""Build (prove) and replay one epoch: input log -> leaves -> sum tree -> record.

:func:`compute_epoch` is the single committed path; the prover signs its record and the auditor's
replay (:func:`replay_epoch`) calls the very same function on the logged entries and compares
bytes. Parallelism is injected (``hasher`` for the tree loop, ``mapper`` for the privacy proofs)
so this module stays pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from marginproof.errors import InputError
from marginproof.proofs.encoding import canon, floor_atoms, sha256
from marginproof.proofs.errors import VerificationError
from marginproof.proofs.inclusion import InclusionProof
from marginproof.proofs.inputlog import LogEntry, find_cut, log_root, replay_entries
from marginproof.proofs.leaves import (
    EpochParams,
    account_inputs,
    account_values,
    asset_prices,
    market_from_body,
    market_hash,
    parse_params,
    stress_deficits,
    stress_prices,
)
from marginproof.proofs.privacy import (
    Mapper,
    PrivacyTree,
    build_privacy,
    private_section,
    serial_map,
)
from marginproof.proofs.records import header_hash, parse_record, verify_record
from marginproof.proofs.reserves import Reserves, solvency_section, verify_reserves
from marginproof.proofs.sumtree import (
    Hasher,
    SumTree,
    arrange_leaves,
    build_sum_tree,
    checked_values,
    depth_for,
    hash_rows,
)
from marginproof.proofs.tags import account_nonce, pad_secret, pad_tag, tag_chunk

ENGINE_VERSION = "marginproof-proofs/3"
PREFIX_MC_SEED = b"\x1c"


def mc_seed(recalibration_leaf: bytes) -> int:
    """Monte Carlo seed of the committed path: ``SHA-256(0x1c || leaf hash)`` of the logged
    recalibration entry, first 8 bytes (never the parameter file's own seed)."""
    return int.from_bytes(sha256(PREFIX_MC_SEED, recalibration_leaf)[:8], "big")


@dataclass(frozen=True)
class EngineInfo:
    """Engine identity written into the header: version and hash of the pinned environment."""

    version: str
    lock_hash: str


def lock_hash(pins: Mapping[str, str]) -> str:
    """Hash of the pinned environment (package versions, Python, platform): ``SHA-256(canon)``."""
    return sha256(canon(dict(pins))).hex()


@dataclass(frozen=True)
class EpochResult:
    """Everything one epoch produces (the operator keeps the tree; the record is public)."""

    params: EpochParams
    header: Mapping[str, Any]
    hdr_hash: bytes
    record: Mapping[str, Any]
    tree: SumTree
    account_ids: tuple[str, ...]
    leaf_index: Mapping[str, int]
    privacy: PrivacyTree | None
    reserves: Reserves | None = None

    @property
    def record_bytes(self) -> bytes:
        return canon(self.record)

    def proof_for(self, account_id: str, ep_secret: bytes) -> InclusionProof:
        """The user's private proof (with nonce, id and, if enabled, the privacy opening)."""
        if account_id not in self.leaf_index:
            raise InputError("account_id", f"no account {account_id!r} in epoch "
                                           f"{self.header['epoch']}")
        i = self.leaf_index[account_id]
        priv = None if self.privacy is None else private_section(self.privacy, ep_secret, i)
        return proof_from_tree(self.tree, int(self.header["epoch"]), i, account_id,
                               account_nonce(ep_secret, account_id), priv)


def tag_all(ep_secret: bytes, ids: Sequence[str], mapper: Mapper = serial_map,
            chunk: int = 65_536) -> bytes:
    """Concatenated tags of ``ids`` (in order), chunked through ``mapper`` when large."""
    if len(ids) <= chunk:
        return tag_chunk((ep_secret, ids))
    jobs = [(ep_secret, ids[i:i + chunk]) for i in range(0, len(ids), chunk)]
    return b"".join(mapper(tag_chunk, jobs))


def proof_from_tree(tree: SumTree, epoch: int, index: int, account_id: str | None = None,
                    nonce: bytes | None = None,
                    privacy: Mapping[str, Any] | None = None) -> InclusionProof:
    """Inclusion proof of leaf ``index``."""
    return InclusionProof(tree.fmt, epoch, tree.hdr_hash, tree.depth, index,
                          tree.tags[index].tobytes(),
                          tuple(int(v) for v in tree.values[index]), tuple(tree.path(index)),
                          account_id, nonce, privacy)


# a balance beyond this many atoms cannot be committed (leaf values are < 2^64 and sums of
# assets over an account must stay in range): refused when written, not at the next cut
MAX_BALANCE_ATOMS = 2**62


def check_entry(entries: Sequence[LogEntry], entry: LogEntry) -> None:
    """Refuse ``entry``, appended after ``entries``, if the epoch computation would refuse it.

    The input-log writers call this *before* the entry is written: the log is append-only and
    every epoch replays it from entry 0, so one bad entry signed into it would make every
    later epoch unprovable. Checked: sequence, signature and structure (as the replay does,
    one account per entry), parameters, the market body at the declared price scale, and for
    positions and balances the accounts' lines under the parameters in force (declared
    quantity and asset scales, instrument names, balances in committable range).

    Raises
    ------
    InputError, VerificationError
        Naming the field, as the epoch computation would.
    """
    from marginproof.instruments.names import parse_instrument

    st = replay_entries([*entries, entry])
    where = f"input_log[{entry.seq}]"
    params = parse_params(st.params) if st.params is not None else None
    scale = () if params is None else (params.price_scale,)
    if entry.kind == "params":
        return  # parsed above (it is the params in force now)
    if entry.kind == "market":
        market_from_body(entry.body, *scale)
    elif entry.kind in ("positions", "balances"):
        ids = [a["account"] for a in entry.body["accounts"]]
        if entry.kind == "positions":
            market = None if st.market is None else market_from_body(st.market, *scale)
            # each distinct name once (a venue's books share a small instrument universe)
            checked: set[str] = set()
            for a in entry.body["accounts"]:
                for i, line in enumerate(a["positions"]):
                    name = line.get("instrument") if isinstance(line, Mapping) else None
                    name = name if isinstance(name, str) else ""
                    if name in checked:
                        continue
                    f = f"{where}.body.accounts.{a['account']}.positions[{i}].instrument"
                    parse_instrument(name, f)
                    if market is not None:  # priceable on the market in force (else the cut
                        # could not margin it; a later market entry must come first)
                        _check_priceable(name, market, f)
                    checked.add(name)
        if params is None:
            return  # scales are declared by the params entry: checked again at the cut
        accts = account_inputs({a: st.positions[a] for a in ids if a in st.positions},
                               {a: st.balances[a] for a in ids if a in st.balances}, params)
        for acc in accts:
            for asset, atoms in acc.balances.items():
                if abs(atoms) >= MAX_BALANCE_ATOMS:
                    raise InputError(f"{where}.body.accounts.{acc.account_id}.balances.{asset}",
                                     f"{atoms} atoms is beyond the committable range "
                                     f"(|balance| < 2^62 atoms)")


def _check_priceable(name: str, market: Any, field: str) -> None:
    from marginproof.instruments.portfolio import Portfolio
    from marginproof.instruments.resolved import resolve

    try:
        resolve(Portfolio.of({name: 1.0}), market)
    except InputError as exc:
        raise InputError(field, f"{name}: {exc.message} (not priceable on the logged "
                                "market)") from None


def compute_epoch(entries: Sequence[LogEntry], epoch: int, ep_secret: bytes,
                  prev_record_hash: str | None, engine: EngineInfo, *,
                  hasher: Hasher = hash_rows, mapper: Mapper = serial_map,
                  trusted_operator: str | None = None) -> EpochResult:
    """The committed path of one epoch (see module docstring)."""
    cut = find_cut(entries, epoch)
    st = replay_entries(entries, stop=cut.size, trusted_operator=trusted_operator)
    if st.params is None or st.market is None:
        raise InputError("input_log", f"epoch {epoch} has no params or market entry before its cut")
    params = parse_params(st.params)
    market = market_from_body(st.market, params.price_scale)
    prices = asset_prices(params, st.market)
    model = params.model(None if st.recalibration is None else mc_seed(st.recalibration[1]))
    accounts = account_inputs(st.positions, st.balances, params)
    if not accounts:
        raise InputError("input_log", f"epoch {epoch} has no accounts")
    worst, stress_totals, deficits = stress_deficits(accounts, params, market, prices)
    values = np.array([account_values(a, params, model, market, prices, d)
                       for a, d in zip(accounts, deficits, strict=True)],
                      dtype=object).reshape(len(accounts), len(params.fields))
    reserves: Reserves | None = None
    if st.reserves is not None:
        reserves = verify_reserves(st.reserves, venue=params.venue, epoch=epoch,
                                   cut_timestamp=cut.timestamp,
                                   scales={a.symbol: a.scale for a in params.assets},
                                   max_block_age_s=params.max_block_age_s)
    ids = [a.account_id for a in accounts]
    real_tags = np.frombuffer(tag_all(ep_secret, ids, mapper), dtype=np.uint8).reshape(-1, 32)
    depth = depth_for(len(ids), params.depth_min)
    ps = pad_secret(ep_secret)
    n_pad = (1 << depth) - len(ids)
    pads = np.frombuffer(b"".join(pad_tag(ps, j) for j in range(n_pad)),
                         dtype=np.uint8).reshape(-1, 32)
    tags, vals, position = arrange_leaves(
        real_tags, checked_values(values, "accounts"), pads)
    header = {
        "spec": params.fmt.spec,
        "epoch": str(epoch),
        "venue": params.venue,
        "quote": {"symbol": params.quote_symbol, "scale": str(params.quote_scale)},
        "assets": [{"symbol": a.symbol, "scale": str(a.scale)} for a in params.assets],
        "fields": list(params.fields),
        "depth": str(depth),
        "input_log": {"size": str(cut.size), "root": log_root(entries, cut.size).hex()},
        "params_hash": params.params_hash,
        "market_hash": market_hash(st.market),
        "market_timestamp": str(st.market["timestamp"]),
        "cut_timestamp": cut.timestamp,
        "model": {"name": params.model_name, "params_hash": params.model_params_hash,
                  "version": str(params.model_params.get("meta", {}).get("version", ""))},
        "engine": {"version": engine.version, "lock_hash": engine.lock_hash},
        "prev_record_hash": prev_record_hash,
        "recalibration": None if st.recalibration is None else {
            "seq": str(st.recalibration[0]), "leaf_hash": st.recalibration[1].hex()},
        "stress": {"scenarios": [x.name for x in params.stress],
                   "worst": params.stress[worst].name},
        "reserves_hash": None if reserves is None else reserves.hash,
    }
    hdr = header_hash(header)
    tree = build_sum_tree(params.fmt, hdr, tags, vals, hasher)
    totals = dict(zip(params.fields, tree.root_sums, strict=True))
    fund_quote = None
    if reserves is not None:
        spx = stress_prices(params, prices, params.stress[worst])
        scales = {a.symbol: a.scale for a in params.assets}
        fund_quote = floor_atoms(sum((Fraction(v, 10**scales[k]) * spx[k]
                                      for k, v in reserves.insurance_fund.items()), Fraction(0)),
                                 params.quote_scale)
    stress_line = {"scenario": params.stress[worst].name, "shortfall": str(totals["stress"]),
                   "by_scenario": [str(t) for t in stress_totals],
                   "covered_by_insurance_fund": None if fund_quote is None
                   else fund_quote >= totals["stress"]}
    record: dict[str, Any] = {
        "header": header,
        "root": {"hash": tree.root_hash.hex(), "sums": [str(s) for s in tree.root_sums]},
        "totals": {f: str(s) for f, s in totals.items()},
        "solvency": solvency_section(reserves, [a.symbol for a in params.assets]
                                     if params.liabilities else [], totals, fund_quote,
                                     stress_line, params.max_block_age_s),
    }
    privacy = None
    if params.privacy:
        privacy = build_privacy(ep_secret, hdr, [t.tobytes() for t in tags],
                                [int(v) for v in vals[:, 0]], [int(v) for v in vals[:, 1]],
                                [int(v) for v in vals[:, 3]], params.range_base, mapper)
        record["privacy"] = privacy.record_section()
    return EpochResult(params, header, hdr, record, tree, tuple(ids),
                       {a: int(position[i]) for i, a in enumerate(ids)}, privacy, reserves)


@dataclass(frozen=True)
class ReplayReport:
    """Outcome of a replay that matched."""

    epoch: int
    accounts: int
    record_hash: str
    forced: bool
    record_bytes: bytes


def first_difference(published: Mapping[str, Any], recomputed: Mapping[str, Any],
                     path: str = "record") -> str | None:
    """Dotted path of the first differing field of two JSON objects (sorted keys)."""
    if isinstance(published, Mapping) and isinstance(recomputed, Mapping):
        for k in sorted(set(published) | set(recomputed)):
            if k not in published or k not in recomputed:
                return f"{path}.{k}"
            d = first_difference(published[k], recomputed[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(published, list) and isinstance(recomputed, list):
        if len(published) != len(recomputed):
            return f"{path} (length)"
        for i, (a, b) in enumerate(zip(published, recomputed, strict=True)):
            d = first_difference(a, b, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if published == recomputed else path


def replay_epoch(entries: Sequence[LogEntry], published: Any, ep_secret: bytes,
                 engine: EngineInfo, *, force: bool = False,
                 published_leaves: tuple[np.ndarray, np.ndarray] | None = None,
                 expected_prev: str | None = None, hasher: Hasher = hash_rows,
                 mapper: Mapper = serial_map,
                 trusted_operator: str | None = None) -> ReplayReport:
    """Auditor checks 11-13: recompute the epoch and demand identical record bytes.

    ``published`` is the signed record; ``published_leaves`` (operator's sorted tags and values,
    if available) lets a mismatch name the first differing account and field.
    ``trusted_operator``: the genesis operator key id the auditor pinned out of band; the
    input log's genesis entry must be signed by it (else whoever wrote the files chose the
    keys the record is checked against).
    """
    view = parse_record(published, "published")
    h = view.header
    if h["engine"]["version"] != engine.version or h["engine"]["lock_hash"] != engine.lock_hash:
        if not force:
            raise VerificationError(
                "replay.engine", f"record was made by engine {h['engine']['version']} "
                f"(lock {h['engine']['lock_hash'][:12]}...), this is {engine.version} (lock "
                f"{engine.lock_hash[:12]}...): refusing (use --force to compare anyway)")
        engine = EngineInfo(h["engine"]["version"], h["engine"]["lock_hash"])
    if expected_prev is not None and h["prev_record_hash"] != expected_prev:
        raise VerificationError("replay.prev_record_hash",
                                "record does not link to the previous record of the epoch log")
    cut = find_cut(entries, view.epoch)
    st = replay_entries(entries, stop=cut.size, trusted_operator=trusted_operator)
    signer = st.operator_keys().get(published["key_id"])
    if signer is None:
        raise VerificationError("replay.key_id", "record not signed by an operator key of the "
                                                 "input log at the cut")
    verify_record(published, st.operator_keys(), "published")
    if str(cut.size) != h["input_log"]["size"] or log_root(entries, cut.size).hex() != \
            h["input_log"]["root"]:
        raise VerificationError("replay.input_log", "input log entries [0, size) do not hash to "
                                                    "the root in the header (log was altered)")
    res = compute_epoch(entries, view.epoch, ep_secret, h["prev_record_hash"], engine,
                        hasher=hasher, mapper=mapper)
    if res.record_bytes == canon(published["record"]):
        return ReplayReport(view.epoch, len(res.account_ids), sha256(res.record_bytes).hex(),
                            force, res.record_bytes)
    where = first_difference(published["record"], res.record) or "record"
    detail = ""
    if published_leaves is not None:
        detail = _first_leaf_difference(res, published_leaves)
    raise VerificationError("replay.mismatch", f"recomputed record differs at {where}{detail}")


def _first_leaf_difference(res: EpochResult, published: tuple[np.ndarray, np.ndarray]) -> str:
    ptags, pvals = published
    for aid in sorted(res.account_ids, key=lambda s: s.encode("utf-8")):
        i = res.leaf_index[aid]
        tag = res.tree.tags[i].tobytes()
        ours = res.tree.values[i]
        hit = np.nonzero(np.all(ptags == np.frombuffer(tag, np.uint8), axis=1))[0]
        if hit.size == 0:
            return f"; first differing account {aid!r}: missing from the published tree"
        theirs = pvals[int(hit[0])]
        for j, name in enumerate(res.params.fields):
            if int(theirs[j]) != int(ours[j]):
                return (f"; first differing account {aid!r} field {name}: published "
                        f"{int(theirs[j])}, recomputed {int(ours[j])}")
    return "; every account's leaf matches (difference is in the header or padding)"
