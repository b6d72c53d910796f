"""Batch re-margin partitioned by a stable account hash, run in-process or on Dask.

Accounts are split with :func:`marginproof.engine.partition.partition_of` (SHA-256 of the account
id), so a partition's accounts are the same in every process and on every machine. Each
partition's positions live where its worker is (built once and kept: in production a worker
loads its partition from storage); a re-margin *cycle* ships only the per-instrument scenario
P&L table of the new market (n_instruments x n_scenarios, a few MB) and gets back per-account
requirements. The single-process path runs the very same partition function in a loop, so the
two give identical numbers (tests assert bit equality).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.engine.partition import partition_of
from marginproof.models.batch import CsrBook, segment_worst_loss


@dataclass(frozen=True)
class Partition:
    """One partition's book: global account numbers (n_accounts,) and their CSR positions."""

    partition: int
    account_ids: NDArray[np.int64]
    book: CsrBook
    min_weight: NDArray[np.floating]


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
    return Partition(partition, mine, book, inst_min_weight[book.inst_idx].astype(qty.dtype))


def margin_partition(part: Partition, unit_pnl: NDArray[np.floating], mm_fraction: float
                     ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Grid IM and MM of one partition's accounts: (account_ids, im, mm), each (n,)."""
    b = part.book
    n_seg = b.seg_ptr.shape[0] - 1
    loss = np.empty(n_seg)
    arg = np.empty(n_seg, np.int32)
    mins = np.empty(n_seg)
    segment_worst_loss(unit_pnl, b.seg_ptr, b.inst_idx, b.qty.astype(unit_pnl.dtype, copy=False),
                       part.min_weight.astype(unit_pnl.dtype, copy=False), loss, arg, mins)
    im = np.bincount(b.seg_account, weights=np.maximum(loss, mins), minlength=b.n_accounts)
    return part.account_ids, im, mm_fraction * im


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


def run_dask(client: Any, part_futures: list[Any], unit_pnl: NDArray[np.floating],
             mm_fraction: float, n_accounts: int) -> tuple[NDArray[np.float64],
                                                           NDArray[np.float64]]:
    """One re-margin cycle on a Dask cluster whose workers already hold the partitions.

    ``part_futures`` are futures of :class:`Partition` objects (built on the workers);
    ``unit_pnl`` is broadcast once per cycle.
    """
    # hash=False: a fresh key per cycle (re-scattering an identical table under the same
    # content key races with the release of the previous cycle's future)
    up = client.scatter(unit_pnl, broadcast=True, hash=False)
    # run each partition where it lives: no partition ever crosses the network
    where = client.who_has(part_futures)
    futs = [client.submit(margin_partition, pf, up, mm_fraction, pure=False,
                          workers=list(where[pf.key]), allow_other_workers=False)
            for pf in part_futures]
    return assemble(n_accounts, client.gather(futs))
