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
    b = part.book
    up = unit_pnl
    n_scen = up.shape[1] if n_scenarios is None else n_scenarios
    if up.shape[1] % SCENARIO_BLOCK or not up.flags.c_contiguous:
        up = pad_scenarios(up[:, :n_scen])
    im = np.empty(b.n_accounts)
    arg = np.empty(b.seg_ptr.shape[0] - 1, np.int32)
    account_grid_margin_padded(up, n_scen, b.seg_ptr, b.seg_account, b.inst_idx,
                               b.qty.astype(up.dtype, copy=False),
                               part.inst_min_weight.astype(up.dtype, copy=False), im, arg)
    return part.account_ids, im, mm_fraction * im


def partition_summary(result: tuple[NDArray[np.int64], NDArray[np.float64],
                                    NDArray[np.float64]]) -> dict[str, Any]:
    """What a cycle reports per partition: account count, total IM, SHA-256 of the IM bytes."""
    ids, im, _ = result
    return {"accounts": int(ids.shape[0]), "im_total_usd": float(im.sum()),
            "im_sha256": hashlib.sha256(np.ascontiguousarray(im).tobytes()).hexdigest()}


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
