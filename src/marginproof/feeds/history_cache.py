"""On-disk cache of the shipped market history, keyed by the bytes of its source files.

Parsing the shipped CSVs with pandas costs a cold CLI process about 0.5 s (0.4 s of it to
import pandas), more than the dynamic margin of a small book itself (``bench_cli.py``). The
parsed :class:`~marginproof.risk.history.MarketHistory` is stored once as an ``.npz`` (plain
arrays, no pickle) under a key of the SHA-256 of every source file's content, the list of
underlyings and a format version, so a changed or replaced data file is never served from a
stale copy. A cache that cannot be read or written is ignored: the files are parsed as
before. The directory is ``$MARGINPROOF_CACHE_DIR`` or ``~/.cache/marginproof``.

This module imports neither pandas nor the CSV readers unless the cache misses.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from marginproof.config.params import cache_dir
from marginproof.risk.history import DailySeries, FundingSeries, MarketHistory

#: bumped whenever ``load_market_history`` changes what it derives from the files
FORMAT = 1
#: the files ``marginproof.feeds.history.load_market_history`` reads, relative to the data dir
SOURCE_FILES = (
    "spot/binance_spot_1d_from_1h.csv.gz",
    "options/deribit_btc_dvol_1h_2021_2025.csv.gz",
    "options/deribit_btc_dvol_daily_2022_2025.csv.gz",
    "perp/binance_usdm_funding_rates.csv.gz",
    "perp/bitmex_xbtusd_funding_2016_2020.csv.gz",
    "spot/btc_usd_daily_bitstamp_coinbase_2011_2025.csv.gz",
)
_DAILY = ("closes", "volumes", "atm_iv", "long_closes")
#: the underlyings with shipped history
UNDERLYINGS = ("BTC", "ETH", "SOL")


def history_key(root: Path, underlyings: Sequence[str]) -> str | None:
    """Hex key of the source files' contents and the request; None if a file is missing."""
    h = hashlib.sha256(f"history-v{FORMAT}|{','.join(underlyings)}".encode())
    for rel in SOURCE_FILES:
        try:
            data = (root / rel).read_bytes()
        except OSError:
            return None  # let the loader raise its own error naming the file
        h.update(f"|{rel}|{len(data)}|".encode())
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()[:32]


def _to_arrays(hist: MarketHistory) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for group in _DAILY:
        for name, s in getattr(hist, group).items():
            arrays[f"{group}|{name}|t"] = np.asarray(s.dates)
            arrays[f"{group}|{name}|v"] = np.asarray(s.values)
    for name, f in hist.funding.items():
        arrays[f"funding|{name}|t"] = np.asarray(f.times)
        arrays[f"funding|{name}|v"] = np.asarray(f.rates)
    arrays["sources"] = np.array(json.dumps(dict(hist.sources), sort_keys=True))
    return arrays


def _from_arrays(z: np.lib.npyio.NpzFile) -> MarketHistory:
    groups: dict[str, dict[str, object]] = {g: {} for g in (*_DAILY, "funding")}
    for key in z.files:
        if key == "sources" or not key.endswith("|t"):
            continue
        group, name, _ = key.split("|")
        t, v = z[key], z[f"{group}|{name}|v"]
        groups[group][name] = (FundingSeries(t, v) if group == "funding" else DailySeries(t, v))
    sources = json.loads(str(z["sources"]))
    return MarketHistory(closes=groups["closes"], volumes=groups["volumes"],  # type: ignore[arg-type]
                         atm_iv=groups["atm_iv"], funding=groups["funding"],  # type: ignore[arg-type]
                         long_closes=groups["long_closes"], sources=sources)  # type: ignore[arg-type]


def cached_market_history(root: Path | None = None,
                          underlyings: Sequence[str] | None = None) -> MarketHistory:
    """``load_market_history(root, underlyings)``, served from the on-disk cache when the
    source files are byte-identical to those it was built from."""
    from marginproof.config.params import repo_root  # io.datasets' data_dir, without pandas

    root = root or repo_root() / "data"
    unders = tuple(underlyings or UNDERLYINGS)
    key = history_key(root, unders)
    path = cache_dir() / f"history-{key}.npz" if key else None
    if path is not None and path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                return _from_arrays(z)
        except Exception:  # a truncated or foreign file: rebuild it below  # noqa: BLE001
            pass
    from marginproof.feeds.history import load_market_history

    hist = load_market_history(root, unders)
    if path is not None:
        _store(path, hist)
    return hist


def _store(path: Path, hist: MarketHistory) -> None:
    """Write ``hist`` to ``path`` atomically; on a read-only or full disk, do nothing."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **_to_arrays(hist))  # type: ignore[arg-type]
        os.replace(tmp, path)  # atomic: a reader sees no file or the whole new one
        tmp = None
    except OSError:
        pass  # the parsed history is still returned
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


@lru_cache(maxsize=2)
def shipped_history() -> MarketHistory:
    """The shipped history, loaded once per process (the default provider of the models) and
    kept parsed on disk between processes."""
    return cached_market_history()
