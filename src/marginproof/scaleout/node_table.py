"""One copy per node of a cycle's scenario table, shared by the workers on that node.

Ray's object store keeps one copy of a broadcast object per node and lets every worker there
read it without a copy; Dask has no such store and ships the table to each worker. On the
driver's own node this module fills that gap: the driver writes the padded table once per cycle
into a file in ``/dev/shm`` (page-aligned, so every 64-scenario row starts on a cache line) and
each worker maps it read-only. A cycle then carries only the file name, the workers of one node
share the table's cache lines, and nothing is pickled, sent, received or re-aligned.

The file is a 64-byte header (``seq``, ``cycle_no``, ``n_instruments``, ``width``, ``n_scenarios``,
dtype code, as int64) followed by the table. Writes follow a sequence lock: ``seq`` is made odd,
the table and ``cycle_no`` are written, then ``seq`` is made even; a reader checks that ``seq`` is
even and unchanged around its work and that ``cycle_no`` is the one it was called for, so a
cycle never silently uses a table that was being rewritten. (Cycles are sequential, so this
only guards against a caller that abandoned a cycle and started the next one.)
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from marginproof.models.batch import pad_scenarios, padded_width

HEADER_BYTES = 64
_DTYPES: dict[int, np.dtype[np.floating]] = {1: np.dtype(np.float32), 2: np.dtype(np.float64)}
_CODES: dict[np.dtype[np.floating], int] = {v: k for k, v in _DTYPES.items()}


def node_id() -> str:
    """This machine's identity: host name and kernel boot id (equal only on the same node)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "no-boot-id"
    return f"{socket.gethostname()}/{boot}"


def shm_dir() -> Path | None:
    """``/dev/shm`` when it exists and is writable (Linux), else ``None`` (no node sharing)."""
    d = Path("/dev/shm")
    return d if d.is_dir() and os.access(d, os.W_OK) else None


class NodeTableWriter:
    """The driver's side: one shared file, rewritten in place every cycle.

    Parameters
    ----------
    directory : Path
        Where the file lives (``/dev/shm``: memory, never disk).
    """

    def __init__(self, directory: Path) -> None:
        self._base = directory / f"marginproof-table-{uuid.uuid4().hex}"
        self._generation = 0
        self.path = self._base.with_suffix(".0")
        self._map: np.memmap | None = None
        self._shape: tuple[int, int, np.dtype[np.generic]] | None = None

    def write(self, unit_pnl: NDArray[np.floating], n_scenarios: int, cycle_no: int) -> str:
        """Publish the table of cycle ``cycle_no``; returns the file path for the readers.

        Parameters
        ----------
        unit_pnl : (n_instruments, n_scenarios) or padded (n_instruments, n_padded)
        n_scenarios : int
            Real scenario count (padding columns beyond are written as zeros).
        """
        n_inst = int(unit_pnl.shape[0])
        width = padded_width(n_scenarios)
        dtype = np.dtype(unit_pnl.dtype)
        if dtype not in _CODES:
            raise ValueError(f"unit_pnl: dtype {dtype} is not float32 or float64")
        if self._shape != (n_inst, width, dtype):
            # a new file for a new shape: truncating a file that readers have mapped would
            # crash them (SIGBUS); an unlinked file stays valid for whoever still maps it
            if self._shape is not None:
                self.path.unlink(missing_ok=True)
                self._generation += 1
                self.path = self._base.with_suffix(f".{self._generation}")
            self._map = np.memmap(self.path, np.uint8, "w+",
                                  shape=(HEADER_BYTES + n_inst * width * dtype.itemsize,))
            self._shape = (n_inst, width, dtype)
        assert self._map is not None
        head = self._map[:HEADER_BYTES].view(np.int64)
        table = self._map[HEADER_BYTES:].view(dtype).reshape(n_inst, width)
        head[0] += 1 if head[0] % 2 == 0 else 2  # odd: being written
        pad_scenarios(unit_pnl[:, :n_scenarios], out=table)
        head[1:6] = (cycle_no, n_inst, width, n_scenarios, _CODES[dtype])
        head[0] += 1  # even: complete
        return str(self.path)

    def close(self) -> None:
        """Remove the file (workers' mappings stay valid until they drop them)."""
        self._map = None
        self._shape = None
        self.path.unlink(missing_ok=True)


class NodeTableReader:
    """A worker's side: the mapping of the driver's file, opened once and kept."""

    def __init__(self) -> None:
        self._path = ""
        self._map: np.memmap | None = None

    def open(self, path: str, cycle_no: int) -> tuple[NDArray[np.floating], int, int]:
        """The table of ``cycle_no`` (read-only view, no copy), its real scenario count and the
        sequence number to pass to :meth:`check` after use."""
        if path != self._path or self._map is None:
            self._map = np.memmap(path, np.uint8, "r")
            self._path = path
        head = self._map[:HEADER_BYTES].view(np.int64)
        seq, got_cycle, n_inst, width, n_scen, code = (int(x) for x in head[:6])
        if seq % 2 or got_cycle != cycle_no:
            raise RuntimeError(f"shared table {path}: holds cycle {got_cycle} (seq {seq}), "
                               f"asked for cycle {cycle_no}")
        dtype = _DTYPES[code]
        table = self._map[HEADER_BYTES:HEADER_BYTES + n_inst * width * dtype.itemsize]
        return table.view(dtype).reshape(n_inst, width), n_scen, seq

    def check(self, seq: int) -> None:
        """Raise if the table was rewritten since :meth:`open` returned ``seq``."""
        assert self._map is not None
        now = int(self._map[:8].view(np.int64)[0])
        if now != seq:
            raise RuntimeError(f"shared table {self._path} was rewritten during the cycle "
                               f"(seq {seq} -> {now})")
