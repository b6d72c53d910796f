"""Deterministic replay: separate processes with different hash seeds and thread counts
recompute byte-identical epoch records from the input log."""

from __future__ import annotations

import os
import subprocess
import sys
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
        r = run_cli(["replay", "--epoch", "2", "--dir", str(built), "--emit-record", str(out),
                     "--trust", _genesis(built)], env)
        assert r.returncode == 0, r.stderr + r.stdout
        assert "record bytes identical" in r.stdout
        outs.append(out.read_bytes())
    published = parse_canonical((built / "epochs" / "000002" / "record.json").read_bytes(), "r")
    assert outs[0] == outs[1] == canon(published["record"])


def test_replay_of_epoch_one_matches_too(built: Path) -> None:
    from typer.testing import CliRunner

    from marginproof.cli.main import app

    r = CliRunner().invoke(app, ["replay", "--epoch", "1", "--dir", str(built), "--trust",
                                 _genesis(built)])
    assert r.exit_code == 0, r.output
    assert "record bytes identical" in r.output


def test_replay_needs_a_trust_anchor_and_refuses_another_genesis_key(built: Path) -> None:
    from typer.testing import CliRunner

    from marginproof.cli.main import app

    r = CliRunner().invoke(app, ["replay", "--epoch", "1", "--dir", str(built)])
    assert r.exit_code == 2 and "--trust" in r.output, r.output
    # the keys beside the record are not trusted: a genesis key other than the pinned one
    # (a forger who rewrote the whole log with their own key) is refused
    r = CliRunner().invoke(app, ["replay", "--epoch", "1", "--dir", str(built), "--trust",
                                 "ab" * 32])
    assert r.exit_code == 1 and "genesis key" in r.output, r.output


def _genesis(d: Path) -> str:
    return (d / "operator" / "genesis_key_id").read_text().strip()


_MARGIN_DIGEST = """
import hashlib
from marginproof.demo.book import demo_account
from marginproof.models.registry import get_model
a, m = demo_account()
book = a.portfolio
for i in range(8):
    book = book + a.portfolio.scaled(1.0 + 0.37 * i)  # 63 positions: vectorised loop bodies
out = []
for name in ("grid", "standard"):
    r = get_model(name).margin(book, m)
    out += [r.initial_margin.hex(), r.maintenance_margin.hex(),
            hashlib.sha256(r.scenario_pnl.tobytes()).hexdigest()]
print(hashlib.sha256("".join(out).encode()).hexdigest())
"""


def test_engine_floats_are_bit_identical_across_numba_thread_counts() -> None:
    """The committed path quantizes engine floats; they must not depend on the thread count
    of the parallel pricing kernels (rule 3 of the determinism pins)."""
    digests = []
    for threads in ("1", "2"):
        env = {**os.environ, "NUMBA_NUM_THREADS": threads}
        r = subprocess.run([sys.executable, "-c", _MARGIN_DIGEST], capture_output=True,
                           text=True, env=env, timeout=240)
        assert r.returncode == 0, r.stderr
        digests.append(r.stdout.strip().splitlines()[-1])
    assert digests[0] == digests[1]
