"""Disk store of expensive scenario sets for one-shot commands (the CLI's small-book path).

The core asks for a set by a key of the model class, its parameter hash, the history digest
and the as-of day (:meth:`marginproof.models._history.HistoryModel.persisted`). This adapter
adds what the core cannot see: a fingerprint of the source of the modules that build the sets
and the versions of the libraries they call (numpy, scipy, arch), so that editing that code or
upgrading a library never serves a set the new code would not build. Files are ``.npz`` of
plain arrays (no pickle) plus the set's ``info`` as JSON, written atomically; an unreadable
file is a miss, an unwritable directory is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import cache
from importlib import metadata
from pathlib import Path

import numpy as np

from marginproof.scenarios.sets import ScenarioSet

#: the modules whose code a persisted set is a function of (relative to the package root)
BUILDERS = ("models/_history.py", "models/montecarlo.py", "scenarios/montecarlo.py",
            "scenarios/sets.py", "risk/garch.py", "risk/ewma.py", "risk/factors.py",
            "risk/history.py", "risk/implied.py", "risk/measures.py")
LIBRARIES = ("numpy", "scipy", "arch")
FORMAT = 1


@cache
def code_fingerprint() -> str:
    """SHA-256 of the builders' source and the libraries' versions (once per process)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(f"scenario-store-v{FORMAT}".encode())
    for rel in BUILDERS:
        h.update(rel.encode())
        h.update((root / rel).read_bytes())
    for lib in LIBRARIES:
        try:
            h.update(f"{lib}={metadata.version(lib)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{lib}=absent".encode())
    return h.hexdigest()


class DiskScenarioStore:
    """:class:`marginproof.models._history.ScenarioStore` on a directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        full = hashlib.sha256(f"{code_fingerprint()}|{key}".encode()).hexdigest()[:40]
        return self.directory / f"scenarios-{full}.npz"

    def load(self, key: str) -> ScenarioSet | None:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                return ScenarioSet(tuple(meta["underlyings"]), tuple(meta["labels"]),
                                   z["log_returns"], z["iv_log_changes"],
                                   bool(meta["horizon_applied"]), meta["info"])
        except Exception:  # truncated or foreign file: a miss, rebuilt by the caller  # noqa: BLE001
            return None

    def save(self, key: str, scenarios: ScenarioSet) -> None:
        meta = {"underlyings": list(scenarios.underlyings), "labels": list(scenarios.labels),
                "horizon_applied": scenarios.horizon_applied, "info": _plain(scenarios.info)}
        tmp: str | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, log_returns=scenarios.log_returns,
                         iv_log_changes=scenarios.iv_log_changes,
                         meta=np.array(json.dumps(meta, allow_nan=False)))
            os.replace(tmp, self._path(key))
            tmp = None
        except (OSError, TypeError, ValueError):
            pass  # unwritable directory or an info value JSON cannot hold: no cache, same result
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)


def _plain(x: object) -> object:
    """``info`` as JSON-ready containers (mapping proxies to dicts, tuples to lists)."""
    if isinstance(x, dict) or hasattr(x, "items"):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x
