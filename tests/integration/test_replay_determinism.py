"""Deterministic replay: separate processes with different hash seeds and thread counts
recompute byte-identical epoch records from the input log."""

from __future__ import annotations

from pathlib import Path

import pytest

from marginproof.proofs.encoding import canon, parse_canonical
from tests.integration._proofs_helpers import example_dir, run_cli


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return example_dir(tmp_path_factory.mktemp("proofs"))


def test_two_processes_with_different_seeds_and_threads_emit_identical_record_bytes(
        built: Path, tmp_path: Path) -> None:
    envs = [
        {"PYTHONHASHSEED": "1", "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"},
        {"PYTHONHASHSEED": "987654", "OPENBLAS_NUM_THREADS": "2", "NUMBA_NUM_THREADS": "2"},
    ]
    outs = []
    for i, env in enumerate(envs):
        out = tmp_path / f"record{i}.json"
        r = run_cli(["replay", "--epoch", "2", "--dir", str(built), "--emit-record", str(out)],
                    env)
        assert r.returncode == 0, r.stderr + r.stdout
        assert "record bytes identical" in r.stdout
        outs.append(out.read_bytes())
    published = parse_canonical((built / "epochs" / "000002" / "record.json").read_bytes(), "r")
    assert outs[0] == outs[1] == canon(published["record"])


def test_replay_of_epoch_one_matches_too(built: Path) -> None:
    from typer.testing import CliRunner

    from marginproof.cli.main import app

    r = CliRunner().invoke(app, ["replay", "--epoch", "1", "--dir", str(built)])
    assert r.exit_code == 0, r.output
    assert "record bytes identical" in r.output
