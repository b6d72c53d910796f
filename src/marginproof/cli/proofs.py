"""Proof commands: ``prove``, ``proof``, ``verify-account``, ``verify-log``, ``verify-privacy``,
``replay``.

Exit codes of the verify commands and ``replay``: 0 valid; 1 invalid, with one line
``REJECT <check>: <reason>`` on stderr (tampering, forks, bad signatures, *and* evidence files
that do not even parse: a verifier's verdict on a malformed proof is "invalid"); 2 for usage
errors (missing or unreadable files, bad options), like the rest of the CLI.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from marginproof.cli.common import err_console, handle_errors, print_json
from marginproof.errors import InputError
from marginproof.proofs import merklelog
from marginproof.proofs.encoding import parse_canonical, parse_hex, parse_strict, parse_uint
from marginproof.proofs.errors import VerificationError
from marginproof.proofs.reserves import reserves_hash, verify_reserves
from marginproof.proofs.signing import key_id

EXIT_REJECT = 1
T = TypeVar("T")
# ``--out`` names where a command writes: only ``prove`` writes the proofs directory; the
# commands that read it take ``--dir`` (``proof`` writes its file to ``-o/--output``)
DirOpt = Annotated[Path, typer.Option("--dir", help="Proofs directory (read)")]
OutDirOpt = Annotated[Path, typer.Option("--out", "--dir",
                                         help="Proofs directory (written)")]
EpochOpt = Annotated[int, typer.Option("--epoch", min=1, help="Epoch number")]
WorkersOpt = Annotated[int, typer.Option(help="Processes for hashing and range proofs")]


def _say(msg: str, **_: Any) -> None:
    """Plain output line (no wrapping: hashes stay on one line)."""
    typer.echo(msg)


def _reject(exc: VerificationError) -> typer.Exit:
    err_console.print(f"[bold red]REJECT[/] {exc.code}: {exc.message}", highlight=False)
    return typer.Exit(EXIT_REJECT)


def evidence(fn: Callable[..., T], *args: Any) -> T:
    """Process evidence: a structural error is a rejection (exit 1), not a usage error.

    Evidence comes from a possibly hostile party, so any failure to even read it is a verdict
    ("invalid") with the field that broke, never a traceback.
    """
    try:
        return fn(*args)
    except VerificationError:
        raise
    except InputError as exc:
        raise VerificationError(f"{exc.field}.encoding", exc.message) from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError) as exc:
        raise VerificationError("evidence.malformed", f"{type(exc).__name__}: {exc}") from None


ANCHOR_HELP = ("no trust anchor: pin the venue's genesis operator key id with --trust KEYID (or "
               "its public key with --key HEX), taken from a channel other than the files being "
               "checked; keys found beside a record are never trusted on their own "
               "(--no-trust-anchor skips this, and says so)")
TrustOpt = Annotated[str | None, typer.Option(
    "--trust", help="Trust anchor: the genesis operator key id (64 hex), published out of band")]
KeyOpt = Annotated[str | None, typer.Option(
    "--key", help="Trust anchor: one operator public key (64 hex); no rotation")]
KeysOpt = Annotated[Path | None, typer.Option(
    "--keys", help="The venue's published keys.jsonl (key history, checked from --trust)")]
NoAnchorOpt = Annotated[bool, typer.Option(
    "--no-trust-anchor", help="Accept the keys in the checked files without an anchor (UNSAFE: "
                              "whoever wrote the files chose the keys)")]


@dataclasses.dataclass(frozen=True)
class Trusted:
    """Operator keys a verifier accepts, and how they were anchored."""

    keys: dict[str, bytes]
    anchored: bool


def trusted_keys(key: str | None, keys_file: Path | None, trust: str | None,
                 no_anchor: bool) -> Trusted:
    """Operator keys from an explicit anchor; never from files found next to the evidence.

    ``--key`` trusts exactly that key. ``--trust KEYID`` walks the published key history
    (``--keys``) from a genesis entry that must be signed by KEYID. Without either, the command
    refuses (exit 2) unless ``--no-trust-anchor`` is given.
    """
    from marginproof.storage.proofstore import published_keys, read_bytes
    if key:
        raw = parse_hex(key, "--key", 32)
        return Trusted({key_id(raw): raw}, True)
    if trust is not None:
        parse_hex(trust, "--trust", 32)
    elif not no_anchor:
        raise InputError("--trust", ANCHOR_HELP)
    if keys_file is None:
        raise InputError("--keys", "need the published key history (--keys keys.jsonl, or --log/"
                                   "--dir for the venue's published directory)")
    read_bytes(keys_file)
    return Trusted(evidence(published_keys, keys_file, trust), trust is not None)


def _unanchored_note(t: Trusted) -> None:
    if not t.anchored:
        _say("  WARNING: no trust anchor (--no-trust-anchor): the operator keys are the ones in "
             "the checked files, so a forger who wrote them all would pass")


DEFAULT_WORKERS = max(1, min(2, os.cpu_count() or 1))


def register(app: typer.Typer) -> None:
    """Attach the proof commands to ``app``."""

    @app.command()
    @handle_errors
    def prove(
        epoch: EpochOpt,
        out: OutDirOpt,
        accounts: Annotated[int, typer.Option(help="Generated accounts (example log)")] = 200,
        model: Annotated[str, typer.Option(help="Margin model (example log)")] = "grid",
        privacy: Annotated[bool, typer.Option(help="Commitments and range proofs")] = True,
        depth_min: Annotated[int, typer.Option(help="Minimum tree depth D_min")] = 10,
        fmt: Annotated[str, typer.Option("--format", help="v2 (64-bit sums) or v1")] = "v2",
        write_proofs: Annotated[bool, typer.Option(help="Write every user's proof")] = True,
        workers: WorkersOpt = DEFAULT_WORKERS,
    ) -> None:
        """Build epoch N: tree, signed record, epoch-log entry and per-account proofs.

        On an empty directory the input log is seeded with the example (shipped demo chain and
        generated accounts); an example log gets the next epoch's inputs appended automatically.
        """
        from marginproof.proofs.epoch import compute_epoch
        from marginproof.proofs.inputlog import make_sth
        from marginproof.proofs.leaves import parse_params
        from marginproof.proofs.records import sign_record, signed_record_hash
        from marginproof.storage.proofstore import (
            InputLogWriter,
            ProcessHasher,
            ProcessMapper,
            ProofStore,
            default_params,
            engine_info,
            new_epoch_secret,
        )
        store = ProofStore(out)
        keys = store.operator_keys(create=True)
        anchor_file = store.root / "operator" / "genesis_key_id"
        writer = InputLogWriter(store, keys)
        entries = store.entries()
        example_flag = store.root / "input_log" / "EXAMPLE"
        if not entries:
            if fmt not in ("v1", "v2"):
                raise InputError("--format", "must be v1 or v2")
            writer.append_genesis()
            # the trust anchor verifiers pin (--trust): the operator publishes it out of band
            anchor_file.write_text(keys.operator.key_id + "\n")
            writer.append_params(default_params(
                model, depth_min=depth_min, privacy=privacy,
                fmt=f"marginproof/proofs/{fmt}"))
            example_flag.write_text(f"accounts={accounts}\n")
            entries = store.entries()
        cuts = [e for e in entries if e.kind == "cut"]
        have = {int(e.body["epoch"]) for e in cuts}
        if epoch not in have:
            last = max(have, default=0)
            if not example_flag.exists():
                raise InputError("--epoch", f"the input log has no cut for epoch {epoch}")
            if epoch != last + 1:
                raise InputError("--epoch", f"next epoch of this log is {last + 1}")
            from marginproof.demo.proofs import example_epoch, example_reserves, liabilities_of

            n = int(example_flag.read_text().split("=")[1])
            ex = example_epoch(epoch, n)
            logged = parse_params(entries[1].body)
            if epoch == 1 and logged.uses_randomness:
                # the committed path's Monte Carlo scenarios are seeded from a logged entry
                # the epoch header pins, never from the parameter file's own seed
                writer.append_recalibration(logged.model_name,
                                            "example log: scenario set for the first epoch")
            writer.append_market(ex.market)
            writer.append_positions(ex.positions)
            scales = {"BTC": 8, "ETH": 9, "USDC": 6, "USDT": 6}
            writer.append_balances(ex.balances, scales)
            cut_ts = ex.market.timestamp.isoformat().replace("+00:00", "Z")
            venue = str(entries[1].body["venue"])
            writer.append_reserves(example_reserves(epoch, venue, cut_ts,
                                                    liabilities_of(ex.balances, scales), scales))
            writer.cut(epoch, cut_ts)
            entries = store.entries()
        recs = store.signed_records()
        prev = None
        if epoch > 1:
            if not recs or int(recs[-1]["record"]["header"]["epoch"]) != epoch - 1:
                raise InputError("--epoch", f"prove epoch {epoch - 1} first")
            prev = signed_record_hash(recs[-1])
        elif recs:
            raise InputError("--epoch", "epoch 1 is already in the epoch log")
        ep_secret = new_epoch_secret(keys, epoch)
        t0 = time.perf_counter()
        with ProcessHasher(workers) as hasher, ProcessMapper(workers) as mapper:
            res = compute_epoch(entries, epoch, ep_secret, prev, engine_info(), hasher=hasher,
                                mapper=mapper)
        t1 = time.perf_counter()
        signed = sign_record(res.record, keys.operator)
        d = store.save_epoch(res, signed, ep_secret, write_proofs)
        sth = store.append_record(signed, keys.operator)
        il = res.header["input_log"]
        store.publish_input_sth(make_sth("input", int(il["size"]), bytes.fromhex(il["root"]),
                                         epoch, keys.operator))
        totals = res.record["totals"]
        _say(f"epoch {epoch}: {len(res.account_ids)} accounts, depth "
                      f"{res.tree.depth}, fields {', '.join(res.params.fields)} ({t1 - t0:.1f} s)")
        _say(f"root {res.record['root']['hash']}")
        _say("totals (quote atoms, scale "
                      f"{res.params.quote_scale}): assets {totals['assets']}, liabs "
                      f"{totals['liabs']}, im {totals['im']}, mm {totals['mm']}, short "
                      f"{totals['short']}, stress {totals['stress']}")
        _say(f"record  {d / 'record.json'}")
        _say(f"trust anchor (genesis key id, publish out of band): {keys.operator.key_id}")
        _say(f"epoch log size {sth['sth']['size']}, root {sth['sth']['root'][:16]}...")
        if write_proofs:
            _say(f"proofs  {d / 'proofs'} (JSON and binary per account)")

    @app.command("proof")
    @handle_errors
    def proof_cmd(
        epoch: EpochOpt,
        directory: DirOpt,
        account: Annotated[str, typer.Option(help="Account id")],
        binary: Annotated[bool, typer.Option(help="Compact binary instead of JSON")] = False,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="File")] = None,
    ) -> None:
        """Export one account's proof (what the service serves to the account's owner)."""
        from marginproof.storage.proofstore import ProofStore, proof_for_account
        p = proof_for_account(ProofStore(directory).epoch_dir(epoch), account)
        data = p.public().to_binary() if binary else p.to_json() + b"\n"
        if output is None:
            if binary:
                raise InputError("--output", "binary proofs need --output FILE")
            _say(data.decode(), highlight=False, soft_wrap=True)
        else:
            output.write_bytes(data)
            _say(f"wrote {len(data)} bytes to {output}")

    @app.command("verify-account")
    @handle_errors
    def verify_account_cmd(
        proof: Annotated[Path, typer.Option("--proof", help="Proof file (JSON or binary)")],
        root: Annotated[str, typer.Option(
            "--root", help="Signed record file (full check) or a 64-hex root hash")],
        key: KeyOpt = None,
        keys: KeysOpt = None,
        trust: TrustOpt = None,
        no_trust_anchor: NoAnchorOpt = False,
        epoch: Annotated[int | None, typer.Option(help="Epoch (needed with a bare root)")] = None,
        account_id: Annotated[str | None, typer.Option(help="Your account id")] = None,
        nonce: Annotated[str | None, typer.Option(help="Your nonce (hex)")] = None,
        expect: Annotated[list[str] | None, typer.Option(
            help="Your own statement, FIELD=ATOMS (repeatable)")] = None,
        log: Annotated[Path | None, typer.Option(
            help="Proofs directory: also check the record is in the signed epoch log")] = None,
        json_out: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Check one account's inclusion proof offline (exit 0 valid, 1 invalid)."""
        from marginproof.proofs.inclusion import load_proof_bytes
        from marginproof.proofs.records import record_in_log, verify_record
        from marginproof.proofs.verify import verify_account
        from marginproof.storage.proofstore import ProofStore, read_bytes
        raw = read_bytes(proof)
        expected = {}
        for item in expect or []:
            name, _, val = item.partition("=")
            expected[name] = parse_uint(val, f"--expect {name}")
        nn = parse_hex(nonce, "--nonce", 32) if nonce else None
        rpath = Path(root)
        is_hex = len(root) == 64 and all(c in "0123456789abcdef" for c in root)
        if is_hex and epoch is None:
            raise InputError("--epoch", "required with a bare root hash (the proof's epoch "
                                        "field is not covered by any hash)")
        anchor: Trusted | None = None
        if not is_hex:
            read_bytes(rpath)
        try:
            if not is_hex:
                kfile = keys if keys is not None or log is None else ProofStore(log).keys_path
                anchor = trusted_keys(key, kfile, trust, no_trust_anchor)
            p = evidence(load_proof_bytes, raw)
            if is_hex:
                res = evidence(lambda: verify_account(
                    p, root_hash=bytes.fromhex(root), epoch=epoch, account_id=account_id,
                    nonce=nn, expected=expected))
            else:
                assert anchor is not None
                trusted = anchor.keys
                signed = evidence(parse_canonical, read_bytes(rpath), str(rpath))
                rec = evidence(lambda: verify_record(signed, trusted))
                res = evidence(lambda: verify_account(p, record=rec, account_id=account_id,
                                                      nonce=nn, expected=expected))
                if log is not None:
                    store = ProofStore(log)
                    read_bytes(store.epoch_log_path)
                    size = evidence(record_in_log, signed, evidence(store.signed_records),
                                    evidence(store.sths), trusted)
                    res = dataclasses.replace(res, checks=res.checks + (
                        f"record is leaf of the signed epoch log (tree size {size})",))
        except VerificationError as exc:
            raise _reject(exc) from None
        if json_out:
            print_json({"valid": True, "epoch": res.epoch, "index": res.index,
                        "values": res.values, "checks": list(res.checks),
                        "not_checked": list(res.not_checked),
                        "anchored": anchor is not None and anchor.anchored})
            return
        vals = ", ".join(f"{k}={v}" for k, v in res.values.items())
        _say(f"OK epoch {res.epoch} leaf {res.index}: {vals}", highlight=False)
        for c in res.checks:
            _say(f"  checked: {c}")
        for c in res.not_checked:
            _say(f"  WARNING: {c}")
        if is_hex:
            _say("  note: bare root hash: header and signature not checked")
        elif anchor is not None:
            _unanchored_note(anchor)

    @app.command("verify-log")
    @handle_errors
    def verify_log_cmd(
        directory: DirOpt,
        known_sth: Annotated[list[Path] | None, typer.Option(
            help="Tree head you saw before (repeatable): must be consistent with the log")] = None,
        keys: KeysOpt = None,
        trust: TrustOpt = None,
        key: KeyOpt = None,
        no_trust_anchor: NoAnchorOpt = False,
        input_log: Annotated[bool, typer.Option(
            help="Also audit the (private) input log against every record")] = False,
    ) -> None:
        """Audit the epoch log: signatures, hash chain, tree heads, consistency (exit 0/1)."""
        from marginproof.proofs.inputlog import find_cut, log_root, replay_entries, verify_sth
        from marginproof.proofs.records import audit_epoch_log, parse_record
        from marginproof.storage.proofstore import ProofStore, read_bytes
        store = ProofStore(directory)
        read_bytes(store.epoch_log_path)
        known_raw = [read_bytes(k) for k in known_sth or []]
        try:
            anchor = trusted_keys(key, keys or store.keys_path, trust, no_trust_anchor)
            trusted = anchor.keys
            recs = evidence(store.signed_records)
            heads = evidence(store.sths)
            known = [evidence(parse_strict, b, "known_sth") for b in known_raw]
            audit = evidence(audit_epoch_log, recs, heads, trusted, known)
            if input_log:
                entries = evidence(store.entries)
                # the input log's genesis must be the pinned key too (not only the records)
                evidence(lambda: replay_entries(entries, trusted_operator=trust))
                for r in recs:
                    v = evidence(parse_record, r)
                    cut = evidence(find_cut, entries, v.epoch)
                    il = v.header["input_log"]
                    if str(cut.size) != il["size"] or log_root(entries, cut.size).hex() != \
                            il["root"]:
                        raise VerificationError(f"epoch {v.epoch}.input_log", "input log does "
                                                "not match the root the record committed to")
                leaves = [e.leaf_hash for e in entries]
                for i, obj in enumerate(evidence(store.input_sths)):
                    ih = evidence(verify_sth, obj, trusted, f"input_sth[{i}]")
                    if ih.log != "input" or ih.size > len(leaves) or \
                            merklelog.root_of(leaves[:ih.size]) != ih.root:
                        raise VerificationError(f"input_sth[{i}]", "input-log tree head does "
                                                "not match the entries (rewritten or truncated)")
        except VerificationError as exc:
            raise _reject(exc) from None
        head = audit.sth
        _say(f"OK epoch log: {audit.records} records (epochs "
                      f"{', '.join(map(str, audit.epochs))}), chain linked, signatures valid")
        if head is not None:
            _say(f"  latest tree head: size {head.size}, root {head.root.hex()}")
        if audit.known_checked:
            _say(f"  {audit.known_checked} known tree head(s) consistent (no fork, no "
                          "truncation)")
        if input_log:
            _say("  input log: signatures, sequence, per-epoch roots and input tree heads verified")
        _unanchored_note(anchor)

    @app.command("verify-privacy")
    @handle_errors
    def verify_privacy_cmd(
        record: Annotated[Path, typer.Option("--record", help="Signed record file")],
        bundle: Annotated[Path, typer.Option("--bundle", help="privacy.bundle file")],
        key: KeyOpt = None,
        keys: KeysOpt = None,
        trust: TrustOpt = None,
        no_trust_anchor: NoAnchorOpt = False,
    ) -> None:
        """Public solvency check: commitment tree, root openings, every range proof."""
        from marginproof.proofs.privacy import verify_bundle
        from marginproof.proofs.records import verify_record
        from marginproof.storage.proofstore import read_bytes
        data = read_bytes(bundle)
        raw = read_bytes(record)
        try:
            anchor = trusted_keys(key, keys, trust, no_trust_anchor)
            trusted = anchor.keys
            signed = evidence(parse_canonical, raw, str(record))
            rec = evidence(lambda: verify_record(signed, trusted))
            if rec.privacy is None:
                raise VerificationError("record.privacy", "this record has no privacy section")
            sums = dict(zip(rec.fields, rec.root_sums, strict=True))
            t0 = time.perf_counter()
            out = evidence(verify_bundle, dict(rec.privacy), rec.hdr_hash, rec.depth,
                           (sums["assets"], sums["liabs"], sums["mm"]), data,
                           secrets.token_bytes(32))
            dt = time.perf_counter() - t0
        except VerificationError as exc:
            raise _reject(exc) from None
        _say(f"OK privacy bundle of epoch {rec.epoch}: {out['leaves']} leaves, "
                      f"{out['flagged']} flagged (shortfall), every range proof verifies "
                      f"({dt:.1f} s, batched)")
        _say(f"  root commitments open to totals assets={sums['assets']} "
             f"liabs={sums['liabs']} mm={sums['mm']}")
        _unanchored_note(anchor)

    @app.command("verify-solvency")
    @handle_errors
    def verify_solvency_cmd(
        record: Annotated[Path, typer.Option("--record", help="Signed record file")],
        reserves: Annotated[Path | None, typer.Option(
            "--reserves", help="The epoch's published reserves.json (default: beside the "
                               "record)")] = None,
        key: KeyOpt = None,
        keys: KeysOpt = None,
        trust: TrustOpt = None,
        no_trust_anchor: NoAnchorOpt = False,
        custodian_key: Annotated[list[str] | None, typer.Option(
            help="Custodian key id you trust (repeatable): every statement must be by one")] = None,
        json_out: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Public solvency check from published files: record, reserves, keys (exit 0 solvent,
        1 rejected or insolvent, 2 usage)."""
        from marginproof.proofs.records import verify_record
        from marginproof.storage.proofstore import read_bytes
        raw = read_bytes(record)
        rpath = reserves if reserves is not None else record.parent / "reserves.json"
        try:
            anchor = trusted_keys(key, keys, trust, no_trust_anchor)
            signed = evidence(parse_canonical, raw, str(record))
            rec = evidence(lambda: verify_record(signed, anchor.keys))
            sv = signed["record"]["solvency"]
            h = rec.header
            res_out = None
            if h["reserves_hash"] is not None:
                body = evidence(parse_canonical, read_bytes(rpath), str(rpath))
                if reserves_hash(body) != h["reserves_hash"]:
                    raise VerificationError("reserves.hash", "reserves file differs from the one "
                                                             "the record pins")
                scales = {a["symbol"]: int(a["scale"]) for a in h["assets"]}
                res_out = evidence(lambda: verify_reserves(
                    body, venue=h["venue"], epoch=rec.epoch, cut_timestamp=h["cut_timestamp"],
                    scales=scales, max_block_age_s=int(sv["max_block_age_s"])))
                for row in sv["assets"]:
                    if int(row["reserves"]) != res_out.amounts.get(row["asset"], 0):
                        raise VerificationError(f"solvency.{row['asset']}.reserves",
                                                "stated reserves differ from the attested sum")
                if {k: str(v) for k, v in res_out.insurance_fund.items()} != sv["insurance_fund"]:
                    raise VerificationError("solvency.insurance_fund", "differs from the file")
                if list(res_out.custodians) != sv["custodian_keys"]:
                    raise VerificationError("solvency.custodian_keys", "differ from the file")
                if [{"chain": c, "height": str(hh), "hash": x} for c, hh, x in
                        res_out.blocks] != sv["blocks"]:
                    raise VerificationError("solvency.blocks", "differ from the file")
                pins = set(custodian_key or [])
                if pins and not set(res_out.custodians) <= pins:
                    raise VerificationError("reserves.custodians", "a statement is signed by a "
                                                                   "custodian key you do not trust")
        except VerificationError as exc:
            raise _reject(exc) from None
        insolvent = [r["asset"] for r in sv["assets"] if r["verdict"] == "insolvent"]
        if json_out:
            print_json({"valid": True, "epoch": rec.epoch, "assets": sv["assets"],
                        "stress": sv["stress"], "insolvent": insolvent,
                        "anchored": anchor.anchored})
        else:
            _say(f"epoch {rec.epoch}: record signature, totals and solvency section verified")
            for r in sv["assets"]:
                _say(f"  {r['asset']:>5}: reserves {r['reserves']}, liabilities "
                     f"{r['liabilities']}, net {r['net']} -> {r['verdict'].upper()}")
            st = sv["stress"]
            cov = st["covered_by_insurance_fund"]
            _say(f"  stress ({st['scenario']}): aggregate shortfall {st['shortfall']} quote atoms"
                 f", insurance fund {sv['insurance_fund_quote']} -> "
                 f"{'covered' if cov else 'NOT covered' if cov is False else 'no fund stated'}")
            if res_out is not None:
                _say(f"  reserves: {res_out.addresses} signed addresses at blocks "
                     + ", ".join(f"{c} {hh}" for c, hh, _ in res_out.blocks)
                     + f"; {len(res_out.custodians)} custodian statement(s)"
                     + ("" if custodian_key else " (custodian keys not pinned: "
                        "--custodian-key)"))
            _unanchored_note(anchor)
        if insolvent:
            err_console.print(f"INSOLVENT: reserves below liabilities for {', '.join(insolvent)}")
            raise typer.Exit(EXIT_REJECT)

    @app.command()
    @handle_errors
    def replay(
        epoch: EpochOpt,
        directory: DirOpt,
        force: Annotated[bool, typer.Option(help="Compare even under another engine")] = False,
        emit_record: Annotated[Path | None, typer.Option(
            help="Write the recomputed record bytes here")] = None,
        workers: WorkersOpt = 1,
        trust: TrustOpt = None,
        no_trust_anchor: NoAnchorOpt = False,
    ) -> None:
        """Auditor: recompute epoch N from the input log; must match the record byte for byte.

        The input log's genesis entry must be signed by the ``--trust`` key id (pinned out of
        band): the record's signature is checked against the keys that log establishes."""
        from marginproof.proofs.epoch import replay_epoch
        from marginproof.proofs.records import parse_record, signed_record_hash
        from marginproof.proofs.verify import summary
        from marginproof.storage.proofstore import (
            ProcessHasher,
            ProcessMapper,
            ProofStore,
            engine_info,
            load_epoch_secret,
            load_tree,
            read_bytes,
        )
        if trust is not None:
            parse_hex(trust, "--trust", 32)
        elif not no_trust_anchor:
            raise InputError("--trust", ANCHOR_HELP)
        store = ProofStore(directory)
        d = store.epoch_dir(epoch)
        raw_rec = read_bytes(d / "record.json")
        ep_secret = load_epoch_secret(d)
        try:
            entries = evidence(store.entries)
            published = evidence(parse_canonical, raw_rec, "record.json")
            recs = evidence(store.signed_records)
            prev = None
            if epoch > 1:
                views = [evidence(parse_record, r, f"epoch_log[{i}]") for i, r in enumerate(recs)]
                before = [v for v in views if v.epoch == epoch - 1]
                if before:
                    prev = signed_record_hash(before[0].signed)
            leaves = None
            if (d / "tree" / "tags.npy").exists():
                tr = load_tree(d)
                leaves = (tr.tags, tr.values)
            with ProcessHasher(workers) as hasher, ProcessMapper(workers) as mapper:
                rep = evidence(lambda: replay_epoch(
                    entries, published, ep_secret, engine_info(), force=force,
                    published_leaves=leaves, expected_prev=prev, hasher=hasher, mapper=mapper,
                    trusted_operator=trust))
        except VerificationError as exc:
            raise _reject(exc) from None
        _unanchored_note(Trusted({}, trust is not None))
        if emit_record is not None:
            emit_record.write_bytes(rep.record_bytes)
        note = " (FORCED under a different engine: not authoritative)" if rep.forced else ""
        _say(f"OK replay of epoch {rep.epoch}: {rep.accounts} accounts, record bytes "
                      f"identical (sha256 {rep.record_hash}){note}")
        _say(f"  {summary(parse_record(published))['totals']}")
