"""Adversarial suite against the verify commands and replay (exit 1 with a precise reason;
exit 2 only for unusable invocations such as a missing file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marginproof.cli.main import app
from marginproof.proofs.encoding import canon, parse_canonical
from marginproof.proofs.inputlog import make_sth
from marginproof.proofs.records import sign_record
from marginproof.storage.proofstore import ProofStore
from tests.integration._proofs_helpers import copy_of, example_dir

runner = CliRunner()


ANCHOR: dict[str, str] = {}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = example_dir(tmp_path_factory.mktemp("proofs"))
    ANCHOR["trust"] = ProofStore(d).operator_keys().operator.key_id
    ANCHOR["keys"] = str(d / "public" / "keys.jsonl")
    return d


def _run(*args: str, anchor: bool = True):
    """The CLI; verify commands get the genesis key as trust anchor unless one is given."""
    a = list(args)
    if anchor and a[0].startswith("verify-") and not {"--trust", "--key",
                                                      "--no-trust-anchor"} & set(a):
        a += ["--trust", ANCHOR["trust"]]
        if a[0] != "verify-log" and "--keys" not in a:
            a += ["--keys", ANCHOR["keys"]]
    return runner.invoke(app, a)


def _rec(d: Path, e: int = 1) -> Path:
    return d / "epochs" / f"{e:06d}" / "record.json"


def _proof(d: Path, aid: str = "acct-00003", e: int = 1, ext: str = "json") -> Path:
    return d / "epochs" / f"{e:06d}" / "proofs" / f"{aid}.{ext}"


def _expect_reject(res, *code_parts: str) -> None:
    assert res.exit_code == 1, res.output
    assert "REJECT" in res.output, res.output
    assert any(c in res.output for c in code_parts), res.output


def test_honest_artifacts_verify(built: Path) -> None:
    for ext in ("json", "bin"):
        r = _run("verify-account", "--proof", str(_proof(built, ext=ext)), "--root",
                 str(_rec(built)))
        assert r.exit_code == 0, r.output
    assert _run("verify-log", "--dir", str(built), "--input-log").exit_code == 0
    r = _run("verify-privacy", "--record", str(_rec(built, 2)), "--bundle",
             str(_rec(built, 2).parent / "privacy.bundle"))
    assert r.exit_code == 0, r.output


def test_tampered_leaf_sum_and_negative_values_are_rejected(built: Path, tmp_path: Path) -> None:
    obj = json.loads(_proof(built).read_bytes())
    cases = {
        "leaf_lower_mm": (("leaf.short", "root.hash"), lambda o: o["leaf"]["values"].__setitem__(
            2, str(int(o["leaf"]["values"][2]) // 2))),
        "sibling_sum": (("root.hash",), lambda o: o["path"][1]["s"].__setitem__(
            0, str(int(o["path"][1]["s"][0]) + 1))),
        "negative_sibling": (("encoding",), lambda o: o["path"][0]["s"].__setitem__(0, "-5")),
        "overflow_sibling": (("encoding",), lambda o: o["path"][0]["s"].__setitem__(
            0, str(2**64))),
        "other_epoch": (("proof.epoch",), lambda o: o.__setitem__("epoch", "2")),
    }
    for name, (code, mutate) in cases.items():
        o = json.loads(json.dumps(obj))
        mutate(o)
        f = tmp_path / f"{name}.json"
        f.write_bytes(canon(o))
        _expect_reject(_run("verify-account", "--proof", str(f), "--root", str(_rec(built))),
                       *code)


def test_someone_elses_leaf_fails_the_tag_check(built: Path, tmp_path: Path) -> None:
    mine = json.loads(_proof(built, "acct-00003").read_bytes())
    theirs = json.loads(_proof(built, "acct-00004").read_bytes())
    theirs["account_id"], theirs["nonce"] = mine["account_id"], mine["nonce"]
    f = tmp_path / "dup.json"
    f.write_bytes(canon(theirs))
    _expect_reject(_run("verify-account", "--proof", str(f), "--root", str(_rec(built))),
                   "leaf.tag")


def test_cross_epoch_replay_of_a_proof(built: Path) -> None:
    _expect_reject(_run("verify-account", "--proof", str(_proof(built, e=1)), "--root",
                        str(_rec(built, 2))), "proof.")


def test_binary_bit_flip_and_truncation(built: Path, tmp_path: Path) -> None:
    raw = bytearray(_proof(built, ext="bin").read_bytes())
    raw[200] ^= 0x10
    f = tmp_path / "flip.bin"
    f.write_bytes(bytes(raw))
    _expect_reject(_run("verify-account", "--proof", str(f), "--root", str(_rec(built))),
                   "REJECT")
    f.write_bytes(_proof(built, ext="bin").read_bytes()[:-1])
    _expect_reject(_run("verify-account", "--proof", str(f), "--root", str(_rec(built))),
                   "encoding")


def test_edited_record_fails_its_signature_and_foreign_keys_are_refused(
        built: Path, tmp_path: Path) -> None:
    rec = parse_canonical(_rec(built).read_bytes(), "r")
    rec["record"]["totals"]["im"] = "0"
    f = tmp_path / "rec.json"
    f.write_bytes(canon(rec))
    _expect_reject(_run("verify-account", "--proof", str(_proof(built)), "--root", str(f),
                        "--keys", str(built / "public" / "keys.jsonl")), "record.sig")
    other = "11" * 32
    _expect_reject(_run("verify-account", "--proof", str(_proof(built)), "--root",
                        str(_rec(built)), "--key", other), "record.key_id")


def test_verifiers_need_a_trust_anchor_and_never_trust_keys_beside_the_record(
        built: Path, tmp_path: Path) -> None:
    """An attacker who rewrites every downloaded file with a key of their own passes only a
    verifier that takes the keys from those files."""
    from marginproof.proofs.inputlog import keys_body, sign_entry
    from marginproof.proofs.signing import SigningKey

    r = _run("verify-account", "--proof", str(_proof(built)), "--root", str(_rec(built)),
             anchor=False)
    assert r.exit_code == 2 and "trust anchor" in r.output, r.output
    r = _run("verify-log", "--dir", str(built), anchor=False)
    assert r.exit_code == 2 and "trust anchor" in r.output, r.output
    # the forger's directory: their own genesis key, record re-signed and totals edited
    d = copy_of(built, tmp_path / "forged")
    evil = SigningKey(bytes([7]) * 32)
    (d / "public" / "keys.jsonl").write_bytes(
        sign_entry("keys", 0, keys_body([("operator", evil)]), evil).to_bytes() + b"\n")
    rec = parse_canonical(_rec(d).read_bytes(), "r")
    _rec(d).write_bytes(canon(sign_record(rec["record"], evil)) + b"\n")
    args = ("verify-account", "--proof", str(_proof(d)), "--root", str(_rec(d)), "--keys",
            str(d / "public" / "keys.jsonl"))
    _expect_reject(_run(*args), "keys[0].source")
    unsafe = _run(*args, "--no-trust-anchor")
    assert unsafe.exit_code == 0 and "WARNING: no trust anchor" in unsafe.output, unsafe.output
    # the record's own directory is never searched for keys
    r = _run("verify-account", "--proof", str(_proof(d)), "--root", str(_rec(d)), "--trust",
             ANCHOR["trust"])
    assert r.exit_code == 2 and "--keys" in r.output, r.output


def test_missing_file_is_a_usage_error(built: Path, tmp_path: Path) -> None:
    r = _run("verify-account", "--proof", str(tmp_path / "nope.json"), "--root", str(_rec(built)))
    assert r.exit_code == 2


def test_fork_and_truncation_of_the_epoch_log(built: Path, tmp_path: Path) -> None:
    d = copy_of(built, tmp_path / "c")
    store = ProofStore(d)
    keys = store.operator_keys()
    sths = store.sths()
    # the operator shows another root for size 2 to someone (a fork), signed with its key
    fork = make_sth("epoch", 2, bytes(32), 2, keys.operator)
    (tmp_path / "fork.json").write_bytes(canon(fork))
    _expect_reject(_run("verify-log", "--dir", str(d), "--known-sth",
                        str(tmp_path / "fork.json")), "fork")
    # truncation: the log now ends at epoch 1, but a user kept the size-2 head
    (tmp_path / "seen.json").write_bytes(canon(sths[1]))
    lines = store.epoch_log_path.read_bytes().splitlines(keepends=True)
    store.epoch_log_path.write_bytes(lines[0])
    (d / "epoch_log" / "sth" / "000002.json").unlink()
    _expect_reject(_run("verify-log", "--dir", str(d), "--known-sth",
                        str(tmp_path / "seen.json")), "truncated")


def test_rewritten_history_breaks_the_chain(built: Path, tmp_path: Path) -> None:
    d = copy_of(built, tmp_path / "c")
    store = ProofStore(d)
    keys = store.operator_keys()
    recs = store.signed_records()
    recs[0]["record"]["header"]["venue"] = "rewritten"
    recs[0] = sign_record(recs[0]["record"], keys.operator)
    store.epoch_log_path.write_bytes(b"".join(canon(r) + b"\n" for r in recs))
    _expect_reject(_run("verify-log", "--dir", str(d)), "")


def test_altered_input_log_fails_replay(built: Path, tmp_path: Path) -> None:
    d = copy_of(built, tmp_path / "c")
    p = d / "input_log" / "entries.jsonl"
    lines = p.read_bytes().splitlines()
    i = next(i for i, ln in enumerate(lines) if b'"kind":"balances"' in ln)
    lines[i] = lines[i].replace(b'"USDC":"', b'"USDC":"1', 1)
    p.write_bytes(b"\n".join(lines) + b"\n")
    _expect_reject(_run("replay", "--epoch", "1", "--dir", str(d), "--trust",
                        (d / "operator" / "genesis_key_id").read_text().strip()), ".sig")


def test_privacy_bundle_tampering(built: Path, tmp_path: Path) -> None:
    b = bytearray((_rec(built).parent / "privacy.bundle").read_bytes())
    b[-5] ^= 1
    f = tmp_path / "b.bundle"
    f.write_bytes(bytes(b))
    _expect_reject(_run("verify-privacy", "--record", str(_rec(built)), "--bundle", str(f)),
                   "privacy.")


def test_malformed_but_signed_evidence_is_a_verdict_not_a_crash(built: Path,
                                                              tmp_path: Path) -> None:
    keys = ProofStore(built).operator_keys()
    rec = parse_canonical(_rec(built).read_bytes(), "r")
    rec["record"]["header"]["engine"] = "not-an-object"
    f = tmp_path / "rec.json"
    f.write_bytes(canon(sign_record(rec["record"], keys.operator)))
    _expect_reject(_run("verify-account", "--proof", str(_proof(built)), "--root", str(f),
                        "--keys", str(built / "public" / "keys.jsonl")), "encoding")
    obj = json.loads(_proof(built).read_bytes())
    obj["privacy"] = {"blinds": "5"}
    p = tmp_path / "p.json"
    p.write_bytes(canon(obj))
    _expect_reject(_run("verify-account", "--proof", str(p), "--root", str(_rec(built))),
                   "privacy")
    d = copy_of(built, tmp_path / "c")
    (d / "epoch_log" / "sth" / "000001.json").write_bytes(b'{"sth":"x"}')
    _expect_reject(_run("verify-log", "--dir", str(d)), "encoding")
    kp = d / "public" / "keys.jsonl"
    kp.write_bytes(kp.read_bytes().replace(b'"role":"source"', b'"role":"operator"'))
    _expect_reject(_run("verify-log", "--dir", str(d)), "keys[0]")


def test_the_service_function_serves_exactly_the_published_proof(built: Path) -> None:
    from marginproof.storage.proofstore import proof_for_account

    p = proof_for_account(built / "epochs" / "000001", "acct-00003")
    assert p.to_json() + b"\n" == _proof(built).read_bytes()
    assert p.public().to_binary() == _proof(built, ext="bin").read_bytes()
    r = _run("proof", "--epoch", "1", "--dir", str(built), "--account", "nobody")
    assert r.exit_code == 2


def test_verify_solvency_from_published_files_and_its_refusals(built: Path,
                                                              tmp_path: Path) -> None:
    rec = _rec(built)
    r = _run("verify-solvency", "--record", str(rec))
    assert r.exit_code == 0 and "SOLVENT" in r.output and "stress" in r.output, r.output
    # a reserves file with one more (unattested) address: its hash differs from the pinned one
    d = copy_of(built, tmp_path / "c")
    rp = d / "epochs" / "000001" / "reserves.json"
    body = parse_canonical(rp.read_bytes(), "r")
    body["snapshots"][0]["balances"][0]["amount"] = "999999"
    rp.write_bytes(canon(body) + b"\n")
    _expect_reject(_run("verify-solvency", "--record", str(_rec(d))), "reserves.hash")
    # the operator (who holds its key) re-signs a record that overstates BTC reserves
    keys = ProofStore(built).operator_keys()
    signed = parse_canonical(rec.read_bytes(), "r")
    row = signed["record"]["solvency"]["assets"][0]
    row["reserves"] = str(int(row["reserves"]) * 10)
    row["net"] = str(int(row["reserves"]) - int(row["liabilities"]))
    f = tmp_path / "rec.json"
    f.write_bytes(canon(sign_record(signed["record"], keys.operator)))
    (tmp_path / "reserves.json").write_bytes((built / "epochs" / "000001" /
                                              "reserves.json").read_bytes())
    _expect_reject(_run("verify-solvency", "--record", str(f)), "solvency.BTC.reserves")
    # a liability omitted from the verdict (liabilities below the tree's total cr:BTC)
    signed = parse_canonical(rec.read_bytes(), "r")
    signed["record"]["solvency"]["assets"][0]["liabilities"] = "0"
    f.write_bytes(canon(sign_record(signed["record"], keys.operator)))
    _expect_reject(_run("verify-solvency", "--record", str(f)), "solvency.BTC.liabilities")
