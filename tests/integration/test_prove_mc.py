"""A Monte Carlo model on the committed path, end to end (issue 19, item 1): ``prove --model
mc`` logs a recalibration entry, the epoch header pins it, the scenarios are seeded from it,
and ``replay`` reproduces the record byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marginproof.cli.main import app
from marginproof.storage.proofstore import ProofStore

pytestmark = pytest.mark.slow


def test_prove_mc_pins_its_recalibration_and_replays_identically(tmp_path: Path) -> None:
    d = tmp_path / "mp"
    r = CliRunner().invoke(app, ["prove", "--epoch", "1", "--out", str(d), "--model", "mc",
                                 "--accounts", "12"])
    assert r.exit_code == 0, r.output
    entries = ProofStore(d).entries()
    recal = [e for e in entries if e.kind == "recalibration"]
    assert len(recal) == 1 and recal[0].body["model"] == "mc"
    header = json.loads((d / "epochs" / "000001" / "record.json").read_bytes())["record"][
        "header"]
    assert json.dumps(header["recalibration"]).count(str(recal[0].seq)) >= 1
    trust = (d / "operator" / "genesis_key_id").read_text().strip()
    r = CliRunner().invoke(app, ["replay", "--epoch", "1", "--dir", str(d), "--trust", trust])
    assert r.exit_code == 0 and "record bytes identical" in r.output, r.output
