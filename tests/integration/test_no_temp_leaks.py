"""Issue 18 item 6: no ``marginproof`` process leaves a copy of libsodium in the temp directory.

``rbcl`` writes its bundled libsodium to a new temp file at import. The proofs layer imports it
only when a group operation is needed and unlinks the file once it is loaded. Each process runs
with a private, empty ``TMPDIR``, which must still be empty when it exits.
"""

from __future__ import annotations

from pathlib import Path

from tests.integration._proofs_helpers import run_cli


def _leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir())


def test_non_proof_command_never_loads_sodium(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    r = run_cli(["models"], env={"TMPDIR": str(tmp)})
    assert r.returncode == 0, r.stderr
    assert _leftovers(tmp) == []


def test_proving_with_privacy_cleans_up(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "mp"
    r = run_cli(["prove", "--epoch", "1", "--out", str(out), "--accounts", "2",
                 "--depth-min", "2", "--workers", "2"], env={"TMPDIR": str(tmp)})
    assert r.returncode == 0, r.stderr
    assert (out / "epochs" / "000001" / "privacy.bundle").exists()  # the group was used
    assert _leftovers(tmp) == []
