"""kill -9 at random points, restart, and the margins are bit-identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from marginproof.storage.factory import open_repository

ARGS = ["--replay-date", "2022-04-15", "--accounts", "250", "--fills", "60",
        "--commit-every", "3", "--model", "dynamic"]


def _cmd(url: str) -> list[str]:
    return [sys.executable, "-m", "marginproof.cli.main", "engine", "run", "--database-url", url,
            *ARGS, "--digest"]


def _finish(url: str) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(_cmd(url), capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _progress(url: str) -> tuple[int, int]:
    """``(log entries, engine checkpoint)`` of the database at ``url`` (0s if not created)."""
    try:
        repo = open_repository(url, migrate=False)
    except Exception:  # noqa: BLE001 - not created yet
        return 0, 0
    try:
        return repo.last_seq(), repo.checkpoint("engine-p0of1")
    except Exception:  # noqa: BLE001 - schema not migrated yet
        return 0, 0
    finally:
        repo.close()


def _kill_loop(url: str, n_kills: int, seed: int) -> list[tuple[int, int]]:
    """Start, ``kill -9`` at a random moment while it works, repeat.

    The moment is chosen from progress, not wall time (the machine may be slow): each kill
    waits until the process has made progress -- appended log entries (first kill) or moved
    its checkpoint (later kills) -- then waits a random 0-300 ms more. Returns the
    ``(log size, checkpoint)`` seen after each kill.
    """
    rng = random.Random(seed)
    seen = []
    for k in range(n_kills):
        base = _progress(url)
        p = subprocess.Popen(_cmd(url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 240
        while p.poll() is None and time.monotonic() < deadline:
            log_n, ckpt = _progress(url)
            if (k == 0 and log_n > base[0]) or (k > 0 and ckpt > base[1]):
                break
            time.sleep(0.02)
        # kill soon after progress starts: on a fast, idle machine the whole workload takes
        # well under a second, so a longer random delay would often land after completion
        time.sleep(rng.uniform(0.0, 0.03))
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=60)
        seen.append(_progress(url))
    return seen


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    """The uninterrupted run."""
    return _finish(f"sqlite:///{tmp_path_factory.mktemp('ref') / 'reference.sqlite'}")


@pytest.mark.slow
def test_random_kills_then_restart_give_bit_identical_margin_history(
        tmp_path: Path, reference: dict) -> None:  # type: ignore[type-arg]
    ref = reference
    assert ref["model"] == "dynamic"  # the flagship model, with live factors and draws
    assert ref["processed"] == ref["log_seq"] > 300
    url = f"sqlite:///{tmp_path / 'killed.sqlite'}"
    seen = _kill_loop(url, n_kills=5, seed=20261125)
    final = _finish(url)
    assert final["log_seq"] == ref["log_seq"]  # the workload was appended exactly once
    assert final["recovered_at"] == seen[-1][1]
    assert final["history_digest"] == ref["history_digest"]
    # the kills really interrupted the work (mid-ingestion or mid-processing)
    interrupted = [s for s in seen if s[0] < ref["log_seq"] or 0 < s[1] < ref["log_seq"]]
    assert len(interrupted) >= 3, seen


def test_recovery_on_postgres_gives_the_same_history(pg_dsn: str, unique: str,
                                                     reference: dict) -> None:  # type: ignore[type-arg]
    ref = reference
    url = f"{pg_dsn}?schema={unique}"
    try:
        seen = _kill_loop(url, n_kills=2, seed=7)
        final = _finish(url)
        assert final["history_digest"] == ref["history_digest"], seen
    finally:
        from marginproof.storage.postgres import PostgresRepository

        PostgresRepository(pg_dsn, unique).drop_schema()
