"""The README's quick tour, every command as printed, on the shipped files (issue 20, item 2).

The commands are read from the README's ``## Quick tour`` bash block (``$mp`` is the
``marginproof`` console script of this checkout), so the test follows the README. They run in
order, as separate processes, in a scratch directory holding only a link to ``examples/`` (a
fresh clone's files; ``out/`` and the SQLite database land there). ``$mp serve`` runs until its
web console answers (on a free port through ``MARGINPROOF_PORT``) and is then stopped.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRY = ("import sys; from marginproof.cli.main import app; sys.argv[0] = 'marginproof'; "
         "sys.exit(app())")

pytestmark = pytest.mark.slow


def tour_commands() -> list[str]:
    """The quick tour's command lines, comments stripped, ``a && b`` split, ``mp=`` dropped."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick tour", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README quick tour has no bash block"
    cmds: list[str] = []
    for line in block.group(1).splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()
        if not line or line.startswith("mp="):
            continue
        cmds += [c.strip() for c in line.split("&&")]
    return cmds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _argv(cmd: str, cwd: Path, env: dict[str, str]) -> list[str]:
    assert cmd.startswith("$mp "), cmd
    # the shell expands $(cat FILE) in the README; do the same here, nothing else
    for sub in re.findall(r'"\$\(cat ([^)]+)\)"', cmd):
        cmd = cmd.replace(f'"$(cat {sub})"', shlex.quote((cwd / sub).read_text().strip()))
    return [sys.executable, "-c", ENTRY, *shlex.split(cmd)[1:]]


def test_readme_lists_the_commands_this_test_runs() -> None:
    cmds = tour_commands()
    assert len(cmds) >= 15
    assert all(c.startswith("$mp ") for c in cmds), cmds


@pytest.fixture(scope="module")
def tour_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The scratch directory the commands share (in README order), its env and outputs."""
    d = tmp_path_factory.mktemp("tour")
    (d / "examples").symlink_to(ROOT / "examples")
    pp = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + (os.pathsep + pp if pp else ""),
           "MARGINPROOF_PORT": str(_free_port()), "COLUMNS": "120",
           "PYTHONWARNINGS": "ignore"}
    env.pop("MARGINPROOF_DATABASE_URL", None)
    return {"dir": d, "env": env, "outputs": {}}


def _serve(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    port = env["MARGINPROOF_PORT"]
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        body = ""
        while time.monotonic() < deadline and proc.poll() is None and not body:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    body = r.read().decode()
            except OSError:
                time.sleep(0.5)
        assert proc.poll() is None, f"serve exited early\n{proc.communicate()[0][-3000:]}"
        assert "<html" in body.lower(), f"no web console on port {port}"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# one test per command, in README order (later ones read what earlier ones wrote); calibrate
# and the year-long backtest take minutes each on a loaded 2-core machine
@pytest.mark.timeout(900)
@pytest.mark.parametrize("cmd", tour_commands())
def test_quick_tour_command_runs_as_printed(cmd: str, tour_dir: dict[str, object]) -> None:
    cwd = tour_dir["dir"]
    env = tour_dir["env"]
    outputs = tour_dir["outputs"]
    assert isinstance(cwd, Path) and isinstance(env, dict) and isinstance(outputs, dict)
    argv = _argv(cmd, cwd, env)
    if argv[3] == "serve":
        _serve(argv, cwd, env)
        return
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=840)
    outputs[cmd] = r.stdout
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    assert "n/a" not in r.stdout, r.stdout[-3000:]
    assert "\u2026" not in r.stdout, f"a truncated cell\n{r.stdout[-3000:]}"
    if argv[3] == "margin" and "--json" not in argv:
        # what a risk engineer reads: the currency and the binding scenario
        assert "USD" in r.stdout and "worst scenario" in r.stdout, r.stdout
    if argv[3] == "models":
        from marginproof.models.registry import available_models

        assert set(available_models()) <= set(r.stdout.split()), r.stdout
