"""Batch re-margin partitioned by a stable account hash, run in-process or on Dask.

Accounts are split with :func:`marginproof.engine.partition.partition_of` (SHA-256 of the account
id), so a partition's accounts are the same in every process and on every machine. Each
partition's positions live where its worker is (built once and kept: in production a worker
loads its partition from storage); a re-margin *cycle* ships only the per-instrument scenario
P&L table of the new market (n_instruments x n_scenarios, a few MB) and gets back one small
summary per partition (account count, total IM, SHA-256 of the IM vector): the per-account
results stay in worker memory (:class:`PartitionHost`, one Dask actor per worker, driven by
:class:`DaskBatch`) and are fetched only when asked for. The single-process path runs the very
same partition function in a loop, so the two give identical numbers (tests assert bit
equality).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

from marginproof.engine.partition import partition_of
from marginproof.models.batch import (
    SCENARIO_BLOCK,
    CsrBook,
    account_grid_margin_padded,
    pad_scenarios,
)
from marginproof.scaleout.node_table import (
    NodeTableReader,
    NodeTableWriter,
    node_id,
    shm_dir,
)


@dataclass(frozen=True)
class Partition:
    """One partition's book: global account numbers (n_accounts,), CSR positions, and the
    short-option minimum weight of every instrument (n_instruments,)."""

    partition: int
    account_ids: NDArray[np.int64]
    book: CsrBook
    inst_min_weight: NDArray[np.floating]


def account_partitions(account_names: list[str], n_partitions: int) -> NDArray[np.int64]:
    """Partition of every account name, shape (n_accounts,)."""
    return np.array([partition_of(a, n_partitions) for a in account_names], np.int64)


def build_partition(partition: int, part_of_account: NDArray[np.int64],
                    account: NDArray[np.int64], inst_idx: NDArray[np.int32],
                    qty: NDArray[np.floating], inst_underlying: NDArray[np.int64],
                    inst_min_weight: NDArray[np.floating]) -> Partition:
    """Select the positions of ``partition``'s accounts and lay them out as CSR."""
    mine = np.flatnonzero(part_of_account == partition)
    local = np.full(part_of_account.shape[0], -1, np.int64)
    local[mine] = np.arange(mine.shape[0])
    sel = local[account] >= 0
    book = CsrBook.from_positions(local[account[sel]], inst_idx[sel], qty[sel], inst_underlying,
                                  int(mine.shape[0]))
    return Partition(partition, mine, book, np.asarray(inst_min_weight).astype(qty.dtype))


def margin_partition(part: Partition, unit_pnl: NDArray[np.floating], mm_fraction: float,
                     n_scenarios: int | None = None,
                     ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Grid IM and MM of one partition's accounts: (account_ids, im, mm), each (n,).

    ``unit_pnl`` may come from :func:`marginproof.models.batch.pad_scenarios` (then give
    ``n_scenarios``).
    """
    n_scen = unit_pnl.shape[1] if n_scenarios is None else n_scenarios
    im = partition_im(part, unit_pnl, n_scen)
    return part.account_ids, im, mm_fraction * im


def partition_im(part: Partition, unit_pnl: NDArray[np.floating], n_scenarios: int,
                 out: NDArray[np.float64] | None = None,
                 arg_out: NDArray[np.int32] | None = None) -> NDArray[np.float64]:
    """Grid IM of one partition's accounts, shape (n_accounts,) (the kernel call of
    :func:`margin_partition`, without MM).

    Parameters
    ----------
    part : Partition
    unit_pnl : (n_instruments, n_scenarios) or padded (n_instruments, n_padded)
    n_scenarios : int
        Real scenario count (columns beyond are padding).
    out, arg_out : (n_accounts,) float64 and (n_segments,) int32, optional
        Buffers to write the IM and the binding scenarios into (a long-lived host reuses them:
        a fresh multi-MB array per call is a fresh ``mmap`` and thousands of page faults
        under Dask's ``MALLOC_TRIM_THRESHOLD_``, measured ~10 % of the kernel time).
    """
    b = part.book
    up = unit_pnl
    if up.shape[1] % SCENARIO_BLOCK or not up.flags.c_contiguous:
        up = pad_scenarios(up[:, :n_scenarios])
    im = np.empty(b.n_accounts) if out is None else out
    arg = np.empty(b.seg_ptr.shape[0] - 1, np.int32) if arg_out is None else arg_out
    account_grid_margin_padded(up, n_scenarios, b.seg_ptr, b.seg_account, b.inst_idx,
                               b.qty.astype(up.dtype, copy=False),
                               part.inst_min_weight.astype(up.dtype, copy=False), im, arg)
    return im


def partition_summary(result: tuple[NDArray[np.int64], NDArray[np.float64],
                                    NDArray[np.float64]]) -> dict[str, Any]:
    """What a cycle reports per partition: account count, total IM, SHA-256 of the IM bytes."""
    ids, im, _ = result
    return _summary_of(im)


def _summary_of(im: NDArray[np.float64]) -> dict[str, Any]:
    im = np.ascontiguousarray(im, np.float64)
    return {"accounts": int(im.shape[0]), "im_total_usd": float(im.sum()),
            "im_sha256": hashlib.sha256(im.data).hexdigest()}


def assemble(n_accounts: int, results: list[tuple[NDArray[np.int64], NDArray[np.float64],
                                                   NDArray[np.float64]]]
             ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Scatter partition results back into global (n_accounts,) IM and MM arrays."""
    im = np.full(n_accounts, np.nan)
    mm = np.full(n_accounts, np.nan)
    for ids, i, m in results:
        im[ids] = i
        mm[ids] = m
    return im, mm


def run_local(parts: list[Partition], unit_pnl: NDArray[np.floating], mm_fraction: float,
              n_accounts: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The single-process reference run: every partition in turn."""
    return assemble(n_accounts, [margin_partition(p, unit_pnl, mm_fraction) for p in parts])


# --- long-lived partition hosts: a cycle without the scheduler --------------------------------


class PartitionHost:
    """The partitions one Dask worker owns and their latest results (a Dask actor).

    Created once per worker (:meth:`DaskBatch.place`); afterwards a cycle is one direct
    client -> worker call per worker carrying the scenario table, answered with one summary
    per partition. The per-account IM stays here until :meth:`fetch`. Numba runs on one thread
    (the calling thread's setting: one worker = one core).
    """

    def __init__(self) -> None:
        self.parts: list[Partition] = []
        self.im: dict[int, NDArray[np.float64]] = {}
        self._arg: dict[int, NDArray[np.int32]] = {}
        self._table: NDArray[np.floating] | None = None  # aligned copy of the received table
        self.last_timing_s: dict[str, float] = {}  # last cycle: table copy, kernel, digests
        self._shared = NodeTableReader()
        self.mm_fraction = float("nan")
        self.cycle_no = 0

    def load(self, parts: list[Partition]) -> list[int]:
        """Take ownership of ``parts`` (replacing any held); returns their partition numbers."""
        self.parts = list(parts)
        # output buffers allocated once and overwritten by every cycle (see partition_im)
        self.im = {p.partition: np.empty(p.book.n_accounts) for p in self.parts}
        self._arg = {p.partition: np.empty(p.book.seg_ptr.shape[0] - 1, np.int32)
                     for p in self.parts}
        self.cycle_no = 0
        return [p.partition for p in self.parts]

    def node(self) -> str:
        """The worker's node identity (:func:`~marginproof.scaleout.node_table.node_id`)."""
        return node_id()

    def cycle(self, unit_pnl: NDArray[np.floating], n_scenarios: int, mm_fraction: float,
              cycle_no: int) -> list[dict[str, Any]]:
        """Margin every held partition on a table sent with the call; keep the IM; return one
        summary dict per partition (:func:`partition_summary` plus ``"partition"``), in held
        order."""
        t0 = time.perf_counter()
        table = unit_pnl
        if table.ctypes.data % 64 or table.shape[1] % SCENARIO_BLOCK:
            # rows on cache lines (the received buffer has arbitrary alignment): copy into a
            # held aligned buffer (5 MB: ~1 ms), allocated again only when the shape changes
            table = self._table = pad_scenarios(table[:, :n_scenarios], out=self._table)
        return self._margin(table, n_scenarios, mm_fraction, cycle_no, t0)

    def cycle_shared(self, path: str, mm_fraction: float, cycle_no: int
                     ) -> list[dict[str, Any]]:
        """:meth:`cycle` on the table the driver wrote to this node's shared file ``path``
        (:class:`~marginproof.scaleout.node_table.NodeTableWriter`): nothing but the name
        travels, the table is read in place."""
        t0 = time.perf_counter()
        table, n_scen, seq = self._shared.open(path, cycle_no)
        out = self._margin(table, n_scen, mm_fraction, cycle_no, t0)
        self._shared.check(seq)
        return out

    def _margin(self, table: NDArray[np.floating], n_scenarios: int, mm_fraction: float,
                cycle_no: int, t0: float) -> list[dict[str, Any]]:
        # numba's thread count is per calling thread: a worker left at its default opens an
        # OpenMP region on every core whose idle threads spin on the neighbouring worker's core
        numba.set_num_threads(1)
        t1 = time.perf_counter()
        for p in self.parts:
            partition_im(p, table, n_scenarios, self.im[p.partition], self._arg[p.partition])
        t2 = time.perf_counter()
        out = [{"partition": p.partition, **_summary_of(self.im[p.partition])}
               for p in self.parts]
        self.last_timing_s = {"table_s": t1 - t0, "kernel_s": t2 - t1,
                              "digest_s": time.perf_counter() - t2}
        self.mm_fraction = mm_fraction
        self.cycle_no = cycle_no
        return out

    def timing(self) -> dict[str, float]:
        """Seconds spent by the last cycle in this worker: ``table_s`` (aligning the received
        table), ``kernel_s``, ``digest_s`` (the summaries' SHA-256)."""
        return dict(self.last_timing_s)

    def fetch(self, cycle_no: int) -> list[tuple[NDArray[np.int64], NDArray[np.float64],
                                                 NDArray[np.float64]]]:
        """(account_ids, im, mm) of every held partition from cycle ``cycle_no``."""
        if cycle_no != self.cycle_no:
            raise RuntimeError(f"holding cycle {self.cycle_no}, asked for {cycle_no}")
        return [(p.account_ids, self.im[p.partition].copy(),
                 self.mm_fraction * self.im[p.partition]) for p in self.parts]


def balanced_placement(parts: list[Partition], workers: list[str]) -> dict[str, list[int]]:
    """Worker -> indices into ``parts``: largest partition first to the least-loaded worker
    (by account count, ties by address): deterministic and balanced."""
    load = dict.fromkeys(sorted(workers), 0)
    out: dict[str, list[int]] = {w: [] for w in load}
    order = sorted(range(len(parts)),
                   key=lambda k: (-parts[k].account_ids.shape[0], parts[k].partition))
    for k in order:
        w = min(load, key=lambda w: (load[w], w))
        out[w].append(k)
        load[w] += int(parts[k].account_ids.shape[0])
    return {w: sorted(ks, key=lambda k: parts[k].partition) for w, ks in out.items()}


class DaskBatch:
    """Re-margin cycles over partitions held by one :class:`PartitionHost` per Dask worker.

    Per cycle each host margins its partitions on one core and only the per-partition summaries
    come back (``len(parts)`` small dicts); full per-account arrays are fetched on demand
    (:meth:`fetch_results`). Placement is fixed at :meth:`place`. The scenario table reaches a
    worker on another node with the call (straight from the client: no scheduler hop, no task
    graph); workers on the driver's node read the one copy the driver writes to ``/dev/shm``
    (:mod:`~marginproof.scaleout.node_table`, ``share_table=True``, the default).

    Create the client with ``direct_to_workers=True`` so calls go straight to the workers
    (otherwise Dask relays them, table included, through the scheduler). Dask binds an actor
    handle to the *default* client: use one client per process while a batch is live. Call
    :meth:`close` (or use the batch as a context manager) to remove the shared file.
    """

    def __init__(self, client: Any, hosts: dict[str, Any], placement: dict[str, list[int]],
                 n_accounts: int, host_futures: list[Any] | None = None,
                 same_node: frozenset[str] = frozenset()) -> None:
        self.client = client
        self.hosts = hosts
        self._host_futures = host_futures or []  # keep the actors alive while we are
        self.placement = placement
        self.n_accounts = n_accounts
        self.same_node = same_node  # workers that read the driver's shared table
        directory = shm_dir() if same_node else None
        self._writer = NodeTableWriter(directory) if directory is not None else None
        if self._writer is None:
            self.same_node = frozenset()
        self.cycle_no = 0
        self.summaries: list[dict[str, Any]] = []

    @classmethod
    def place(cls, client: Any, parts: list[Partition], n_accounts: int,
              share_table: bool = True) -> DaskBatch:
        """Start a host on every worker and hand it its partitions (moved once).

        ``share_table=False`` sends the table to every worker even on the driver's node.
        """
        workers = sorted(client.scheduler_info()["workers"])
        if not workers:
            raise RuntimeError("no Dask workers")
        by_worker = balanced_placement(parts, workers)
        futs = {w: client.submit(PartitionHost, actor=True, workers=[w],
                                 allow_other_workers=False, pure=False) for w in workers}
        hosts = {w: f.result() for w, f in futs.items()}
        loads = [hosts[w].load([parts[k] for k in ks]) for w, ks in by_worker.items()]
        placement = {w: f.result() for w, f in zip(by_worker, loads, strict=True)}
        here = node_id()
        same = frozenset(w for w, h in hosts.items() if share_table and h.node().result() == here)
        return cls(client, hosts, placement, n_accounts, list(futs.values()), same)

    def cycle(self, unit_pnl: NDArray[np.floating], mm_fraction: float,
              n_scenarios: int | None = None) -> list[dict[str, Any]]:
        """One re-margin cycle; returns (and keeps in ``summaries``) one summary per partition,
        sorted by partition number."""
        n_scen = unit_pnl.shape[1] if n_scenarios is None else n_scenarios
        self.cycle_no += 1
        path = ""
        if self._writer is not None:
            path = self._writer.write(unit_pnl, n_scen, self.cycle_no)
        calls = [h.cycle_shared(path, mm_fraction, self.cycle_no) if w in self.same_node
                 else h.cycle(unit_pnl, n_scen, mm_fraction, self.cycle_no)
                 for w, h in self.hosts.items()]
        got = [s for c in calls for s in c.result()]
        self.summaries = sorted(got, key=lambda s: s["partition"])
        return self.summaries

    def timings(self) -> dict[str, dict[str, float]]:
        """Worker -> :meth:`PartitionHost.timing` of the latest cycle (where the time goes)."""
        return {w: h.timing().result() for w, h in self.hosts.items()}

    def fetch_results(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Global (n_accounts,) IM and MM of the latest cycle (moves every result)."""
        if self.cycle_no == 0:
            raise RuntimeError("no cycle run yet")
        calls = [h.fetch(self.cycle_no) for h in self.hosts.values()]
        return assemble(self.n_accounts, [r for c in calls for r in c.result()])

    def close(self) -> None:
        """Remove the shared table file (the hosts live as long as the cluster)."""
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> DaskBatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
