"""Canonical parameter encoding and hashing.

``params_hash`` is ``SHA-256(0x15 || canonical JSON)``, the parameter-file hash of the proofs
spec, so a margin figure can be traced to the exact parameter set that produced it.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from marginproof.errors import InputError

_PARAMS_PREFIX = b"\x15"


def _canonicalise(obj: Any, path: str = "params") -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _canonicalise(v, f"{path}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonicalise(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, float):
        if math.isnan(obj):
            raise InputError(path, "NaN is not a valid parameter value")
        return repr(obj)  # shortest round-trip repr: stable across platforms
    raise InputError(path, f"unsupported parameter type {type(obj).__name__}")


def canonical_json(obj: Any) -> bytes:
    """Canonical UTF-8 JSON: sorted keys, no whitespace, numbers as decimal strings."""
    return json.dumps(
        _canonicalise(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def params_hash(obj: Any) -> str:
    """Hex SHA-256 of ``0x15 || canonical_json(obj)``."""
    return hashlib.sha256(_PARAMS_PREFIX + canonical_json(obj)).hexdigest()


def repo_root() -> Path:
    """Root of the source checkout (the package is installed editable from it)."""
    return Path(__file__).resolve().parents[3]  # src/marginproof/config/params.py


def cache_dir() -> Path:
    """Where derived data is cached between processes (parsed history, scenario sets):
    ``$MARGINPROOF_CACHE_DIR`` or ``~/.cache/marginproof``."""
    import os

    env = os.environ.get("MARGINPROOF_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "marginproof"


def config_dir() -> Path:
    """Directory holding the shipped parameter files (``configs/`` in the checkout)."""
    return repo_root() / "configs"


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML parameter file, naming the file in any error."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise InputError(str(p), "parameter file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(str(p), f"malformed TOML: {exc}") from exc
