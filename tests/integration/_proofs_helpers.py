"""Shared example epochs for the proofs integration tests (built once per session)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

_CACHE: dict[str, Path] = {}


def run_cli(args: list[str], env: dict[str, str] | None = None,
            timeout: float = 240.0) -> subprocess.CompletedProcess[str]:
    """``marginproof ARGS`` in a fresh interpreter."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "marginproof.cli.main", *args],
                          capture_output=True, text=True, env=e, timeout=timeout)


def example_dir(base: Path) -> Path:
    """Two proven example epochs (12 generated accounts + the demo desk, D_min 4, privacy on).

    Read-only for tests: copy it (:func:`copy_of`) before tampering.
    """
    if "dir" not in _CACHE:
        from typer.testing import CliRunner

        from marginproof.cli.main import app

        d = base / "example"
        for epoch in (1, 2):  # in-process: only the replays need fresh interpreters
            r = CliRunner().invoke(app, ["prove", "--epoch", str(epoch), "--out", str(d),
                                         "--accounts", "12", "--depth-min", "4",
                                         "--workers", "1"])
            assert r.exit_code == 0, r.output
        _CACHE["dir"] = d
    return _CACHE["dir"]


def copy_of(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
