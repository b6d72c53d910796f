"""Batch re-margin partitioned by a stable account hash, run in-process or on Dask.

Accounts are split with :func:`marginproof.engine.partition.partition_of` (SHA-256 of the account
id), so a partition's accounts are the same in every process and on every machine. Each
partition's positions live where its worker is (built once and kept: in production a worker
loads its partition from storage); a re-margin *cycle* ships only the per-instrument scenario
P&L table of the new market (n_instruments x n_scenarios, a few MB) and gets back one small
summary per partition (account count, total IM, SHA-256 of the IM vector): the per-account
results stay in worker memory (:class:`Cycle`) and are fetched only when asked for. The
single-process path runs the very same partition function in a loop, so the
two give identical numbers (tests assert bit equality).
"""

from __future__ import annotations

import hashlib
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
                     n_scenarios: int | None = None, numba_threads: int | None = None,
                     ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Grid IM and MM of one partition's accounts: (account_ids, im, mm), each (n,).

    ``unit_pnl`` may come from :func:`marginproof.models.batch.pad_scenarios` (then give
    ``n_scenarios``); ``numba_threads`` sets the kernel's threads for the calling thread (on a
    Dask worker it must be set inside the task: numba's setting is per thread, and a worker
    left at its default opens an OpenMP region on every core whose idle threads spin on the
    neighbouring worker's core).
    """
    if numba_threads is not None:
        numba.set_num_threads(int(numba_threads))
    n_scen = unit_pnl.shape[1] if n_scenarios is None else n_scenarios
    im = partition_im(part, unit_pnl, n_scen)
    return part.account_ids, im, mm_fraction * im


def partition_im(part: Partition, unit_pnl: NDArray[np.floating], n_scenarios: int
                 ) -> NDArray[np.float64]:
    """Grid IM of one partition's accounts, shape (n_accounts,) (the kernel call of
    :func:`margin_partition`, without MM).

    Parameters
    ----------
    part : Partition
    unit_pnl : (n_instruments, n_scenarios) or padded (n_instruments, n_padded)
    n_scenarios : int
        Real scenario count (columns beyond are padding).
    """
    b = part.book
    up = unit_pnl
    if up.shape[1] % SCENARIO_BLOCK or not up.flags.c_contiguous:
        up = pad_scenarios(up[:, :n_scenarios])
    im = np.empty(b.n_accounts)
    arg = np.empty(b.seg_ptr.shape[0] - 1, np.int32)
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


@dataclass(frozen=True)
class Cycle:
    """One re-margin cycle on Dask: results stay on the workers.

    ``summaries`` (one dict per partition, see :func:`partition_summary`) is all that crossed
    the network back; ``results`` are futures (one per worker) of lists of per-partition
    (ids, im, mm) arrays, held in worker memory while referenced: :meth:`fetch` brings them to
    the caller when needed.
    """

    summaries: list[dict[str, Any]]
    results: list[Any]
    n_accounts: int

    def fetch(self, client: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Global (n_accounts,) IM and MM arrays (moves every result: tests, audits)."""
        return assemble(self.n_accounts,
                        [r for batch in client.gather(self.results) for r in batch])


def run_dask_cycle(client: Any, part_futures: list[Any], unit_pnl: NDArray[np.floating],
                   mm_fraction: float, n_accounts: int, n_scenarios: int | None = None,
                   placement: dict[str, list[str]] | None = None,
                   numba_threads: int | None = 1) -> Cycle:
    """One re-margin cycle on a Dask cluster whose workers already hold the partitions.

    ``part_futures`` are futures of :class:`Partition` objects (built or scattered on the
    workers); ``unit_pnl`` (ideally already padded, with ``n_scenarios``) is broadcast once per
    cycle. Each partition runs where it lives; only per-partition summaries are gathered.
    ``placement`` (future key -> workers, from :func:`placement_of`) saves a scheduler round
    trip per cycle.
    """
    # hash=False: a fresh key per cycle (re-scattering an identical table under the same
    # content key races with the release of the previous cycle's future)
    up = client.scatter(unit_pnl, broadcast=True, hash=False)
    where = placement if placement is not None else placement_of(client, part_futures)
    # one task per worker over the partitions it holds (a task costs ~1 ms of scheduling;
    # the partitions are already local, so grouping moves nothing), then one summary task
    by_worker: dict[str, list[Any]] = {}
    order: list[int] = []
    for pf in part_futures:
        by_worker.setdefault(where[pf.key][0], []).append(pf)
    for pfs in by_worker.values():
        order.extend(part_futures.index(pf) for pf in pfs)
    results, summaries = [], []
    for w, pfs in by_worker.items():
        r = client.submit(_margin_many, pfs, up, mm_fraction, n_scenarios, numba_threads,
                          pure=False, workers=[w], allow_other_workers=False)
        results.append(r)
        summaries.append(client.submit(_summaries, r, pure=False, workers=[w],
                                       allow_other_workers=False))
    flat = [x for batch in client.gather(summaries) for x in batch]
    in_order = [flat[i] for i in np.argsort(order, kind="stable")]  # partition order
    return Cycle(in_order, results, n_accounts)


def _margin_many(parts: list[Partition], unit_pnl: NDArray[np.floating], mm_fraction: float,
                 n_scenarios: int | None, numba_threads: int | None
                 ) -> list[tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]]:
    return [margin_partition(p, unit_pnl, mm_fraction, n_scenarios, numba_threads)
            for p in parts]


def _summaries(results: list[tuple[NDArray[np.int64], NDArray[np.float64],
                                   NDArray[np.float64]]]) -> list[dict[str, Any]]:
    return [partition_summary(r) for r in results]


def placement_of(client: Any, part_futures: list[Any]) -> dict[str, list[str]]:
    """Workers holding each partition future (no partition ever moves afterwards)."""
    who = client.who_has(part_futures)
    return {pf.key: list(who[pf.key]) for pf in part_futures}


def run_dask(client: Any, part_futures: list[Any], unit_pnl: NDArray[np.floating],
             mm_fraction: float, n_accounts: int) -> tuple[NDArray[np.float64],
                                                           NDArray[np.float64]]:
    """:func:`run_dask_cycle` and :meth:`Cycle.fetch`: global IM and MM arrays."""
    return run_dask_cycle(client, part_futures, unit_pnl, mm_fraction, n_accounts).fetch(client)


# --- long-lived partition hosts: the per-cycle path without the scheduler ---------------------


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
        self.mm_fraction = float("nan")
        self.cycle_no = 0

    def load(self, parts: list[Partition]) -> list[int]:
        """Take ownership of ``parts`` (replacing any held); returns their partition numbers."""
        self.parts = list(parts)
        self.im = {}
        self.cycle_no = 0
        return [p.partition for p in self.parts]

    def cycle(self, unit_pnl: NDArray[np.floating], n_scenarios: int, mm_fraction: float,
              cycle_no: int) -> list[dict[str, Any]]:
        """Margin every held partition; keep the IM; return one summary dict per partition
        (:func:`partition_summary` plus ``"partition"``), in held order."""
        numba.set_num_threads(1)
        table = unit_pnl
        if table.ctypes.data % 64 or table.shape[1] % SCENARIO_BLOCK:
            # rows on cache lines (the received buffer has arbitrary alignment); 5 MB: ~1 ms
            table = pad_scenarios(np.ascontiguousarray(table[:, :n_scenarios]))
        out = []
        for p in self.parts:
            im = partition_im(p, table, n_scenarios)
            self.im[p.partition] = im
            out.append({"partition": p.partition, **_summary_of(im)})
        self.mm_fraction = mm_fraction
        self.cycle_no = cycle_no
        return out

    def fetch(self, cycle_no: int) -> list[tuple[NDArray[np.int64], NDArray[np.float64],
                                                 NDArray[np.float64]]]:
        """(account_ids, im, mm) of every held partition from cycle ``cycle_no``."""
        if cycle_no != self.cycle_no:
            raise RuntimeError(f"holding cycle {self.cycle_no}, asked for {cycle_no}")
        return [(p.account_ids, self.im[p.partition], self.mm_fraction * self.im[p.partition])
                for p in self.parts]


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

    Per cycle: the scenario table goes straight from the client to each worker (no scheduler
    hop, no task graph), each host margins its partitions on one core, and only the
    per-partition summaries come back (``len(parts)`` small dicts). Full per-account arrays
    are fetched on demand (:meth:`fetch_results`). Placement is fixed at :meth:`place`.

    Create the client with ``direct_to_workers=True`` so calls go straight to the workers
    (otherwise Dask relays them, table included, through the scheduler). Dask binds an actor
    handle to the *default* client: use one client per process while a batch is live.
    """

    def __init__(self, client: Any, hosts: dict[str, Any], placement: dict[str, list[int]],
                 n_accounts: int, host_futures: list[Any] | None = None) -> None:
        self.client = client
        self.hosts = hosts
        self._host_futures = host_futures or []  # keep the actors alive while we are
        self.placement = placement
        self.n_accounts = n_accounts
        self.cycle_no = 0
        self.summaries: list[dict[str, Any]] = []

    @classmethod
    def place(cls, client: Any, parts: list[Partition], n_accounts: int) -> DaskBatch:
        """Start a host on every worker and hand it its partitions (moved once)."""
        workers = sorted(client.scheduler_info()["workers"])
        if not workers:
            raise RuntimeError("no Dask workers")
        by_worker = balanced_placement(parts, workers)
        futs = {w: client.submit(PartitionHost, actor=True, workers=[w],
                                 allow_other_workers=False, pure=False) for w in workers}
        hosts = {w: f.result() for w, f in futs.items()}
        loads = [hosts[w].load([parts[k] for k in ks]) for w, ks in by_worker.items()]
        placement = {w: f.result() for w, f in zip(by_worker, loads, strict=True)}
        return cls(client, hosts, placement, n_accounts, list(futs.values()))

    def cycle(self, unit_pnl: NDArray[np.floating], mm_fraction: float,
              n_scenarios: int | None = None) -> list[dict[str, Any]]:
        """One re-margin cycle; returns (and keeps in ``summaries``) one summary per partition,
        sorted by partition number."""
        n_scen = unit_pnl.shape[1] if n_scenarios is None else n_scenarios
        self.cycle_no += 1
        calls = [h.cycle(unit_pnl, n_scen, mm_fraction, self.cycle_no)
                 for h in self.hosts.values()]
        got = [s for c in calls for s in c.result()]
        self.summaries = sorted(got, key=lambda s: s["partition"])
        return self.summaries

    def fetch_results(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Global (n_accounts,) IM and MM of the latest cycle (moves every result)."""
        if self.cycle_no == 0:
            raise RuntimeError("no cycle run yet")
        calls = [h.fetch(self.cycle_no) for h in self.hosts.values()]
        return assemble(self.n_accounts, [r for c in calls for r in c.result()])
