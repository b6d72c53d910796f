"""Fast CLI (issue 20): wall time of the ``marginproof`` command as a cold process.

Each command runs in a fresh interpreter (``subprocess``), exactly as the ``marginproof``
console script does (``marginproof.cli.main:app``), with this checkout's ``src`` first on
``PYTHONPATH``. Commands, on the README's shipped example files:

* ``python -c pass``: the bare interpreter, the baseline of every ratio;
* ``marginproof --help``;
* ``marginproof margin -p examples/portfolio_demo.json -m examples/market_btc_2022-04-15.json``
  with ``--model grid`` and ``--model dynamic``;
* ``marginproof compare`` of the same book and market (every model and preset).

Each command gets its own fresh cache directories (numba's ``NUMBA_CACHE_DIR`` for compiled
kernels; ``MARGINPROOF_CACHE_DIR`` for the parsed shipped history and the Monte Carlo scenario
sets, see ``feeds/history_cache.py`` and ``storage/scenario_store.py``): its first run is
reported separately as the cache-cold run (what a fresh clone pays once) and warms the caches;
then the median of 5 runs (``--quick``: 3), in interleaved rounds so that a change in machine
load hits every command alike. Targets: ``--help`` <= 0.3 s, ``margin`` under ``grid`` <= 0.8 s
and under ``dynamic`` <= 1.5 s, ``compare`` <= 3 s. The machine load (``os.getloadavg``) is
printed before and after.

Run: ``python benchmarks/bench_cli.py [--quick] [--json out]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _roofline import write_json  # noqa: E402

# what the ``marginproof`` console script runs (pyproject: marginproof.cli.main:app)
ENTRY = ("import sys; from marginproof.cli.main import app; sys.argv[0] = 'marginproof'; "
         "sys.exit(app())")
BOOK = ["-p", "examples/portfolio_demo.json", "-m", "examples/market_btc_2022-04-15.json"]
# (key, label, argv after the interpreter, target in s or None)
COMMANDS: list[tuple[str, str, list[str], float | None]] = [
    ("pass", "python -c pass", ["-c", "pass"], None),
    ("help", "marginproof --help", ["-c", ENTRY, "--help"], 0.3),
    ("margin_grid", "marginproof margin (demo book) --model grid",
     ["-c", ENTRY, "margin", *BOOK, "--model", "grid"], 0.8),
    ("margin_dynamic", "marginproof margin (demo book) --model dynamic",
     ["-c", ENTRY, "margin", *BOOK, "--model", "dynamic"], 1.5),
    ("compare", "marginproof compare (demo book, every model)",
     ["-c", ENTRY, "compare", *BOOK], 3.0),
]


def run_once(argv: list[str], cache_dir: str) -> float:
    """Wall time of one cold process (``sys.executable argv``); raises if it fails."""
    src = str(ROOT / "src")
    pp = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": src + (os.pathsep + pp if pp else ""),
           "NUMBA_CACHE_DIR": str(Path(cache_dir) / "numba"),
           "MARGINPROOF_CACHE_DIR": str(Path(cache_dir) / "marginproof"),
           "COLUMNS": "100", "PYTHONWARNINGS": "ignore"}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    dt = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv[-6:])}: exit code {proc.returncode}\n"
                         f"{proc.stderr[-2000:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    repeats = 3 if args.quick else 5
    load0 = os.getloadavg()
    print(f"{repeats} cold processes per command (median), after one cache-cold run; "
          f"load before {load0[0]:.2f}")
    res: dict[str, Any] = {"repeats": repeats, "load_before": load0[0]}
    with tempfile.TemporaryDirectory(prefix="bench_cli_cache_") as tmp:
        caches = {key: str(Path(tmp) / key) for key, *_ in COMMANDS}
        cold = {key: run_once(argv, caches[key]) for key, _, argv, _ in COMMANDS}
        times: dict[str, list[float]] = {key: [] for key, *_ in COMMANDS}
        for _ in range(repeats):
            for key, _, argv, _ in COMMANDS:
                times[key].append(run_once(argv, caches[key]))
    base = statistics.median(times["pass"])
    for key, label, _, goal in COMMANDS:
        med = float(statistics.median(times[key]))
        res[f"{key}_s"] = med
        res[f"{key}_cold_s"] = cold[key]
        res[f"{key}_min_s"] = min(times[key])
        if key != "pass":
            res[f"{key}_ratio_to_pass"] = med / base
        verdict = "" if goal is None else (f"target <= {goal:g} s: "
                                           f"{'met' if med <= goal else 'MISSED'}")
        print(f"{label:48s} median {med:7.3f} s (min {min(times[key]):6.3f}) "
              f"= {med / base:6.1f}x python -c pass; cache-cold first run {cold[key]:7.2f} s"
              f"{'; ' + verdict if verdict else ''}")
    load1 = os.getloadavg()
    res["load_after"] = load1[0]
    print(f"load after {load1[0]:.2f} (1-min averages; {os.cpu_count()} cores, shared)")
    write_json(res, args.json)


if __name__ == "__main__":
    main()
