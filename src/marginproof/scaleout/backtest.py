"""Walk-forward backtests partitioned by book or by as-of days, in one process or on Dask.

**By days** (:func:`run_dask_by_days`, the faster split): a day's margins depend only on the
path truncated at that day (the models recalibrate from it; tests check a day's margins are the
same whether computed cold or after a run of earlier days), so blocks of as-of days are margined
and settled on the workers (:func:`marginproof.backtest.continuous.margin_rows`) and only the
small per-book settlement arrays come back; the sequential statistics are applied in day order
in the driver. Every worker sees the whole path. No per-day work is repeated.

**By book** (:func:`run_dask`):
A book's margins, losses and statistics depend only on the book and the market path (the
batch providers margin each book on its own row of a sparse product; tests check that a
book's record is the same whichever books share its run), so the book set splits cleanly:
books are assigned to partitions by a stable hash of their name
(:func:`marginproof.engine.partition.partition_of`, SHA-256: the same on every machine), each
partition runs the ordinary :func:`marginproof.backtest.walk_forward`, and :func:`merge` puts
the per-book summaries and daily records back in the single-process order. The single-process
path runs the very same partition function in a loop, so the two give identical tables (tests
assert equality, bit for bit).

On Dask, the market path and the provider (model and history) are broadcast once; each
partition is one task. Per-day model work that does not depend on the books (scenario sets,
filters) is repeated in every partition: use about one partition per worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from marginproof.backtest.continuous import (
    BacktestConfig,
    ContinuousBacktest,
    Settlement,
    margin_rows,
    walk_forward,
)
from marginproof.backtest.market import MarketPath
from marginproof.backtest.portfolios import BookTemplate, TemplateTable
from marginproof.backtest.providers import MarginProvider
from marginproof.engine.partition import partition_of

_DEFAULT_CONFIG = BacktestConfig()


@dataclass(frozen=True)
class BacktestPart:
    """Result of one partition: its books' positions in the full template list, tables."""

    partition: int
    book_index: NDArray[np.int64]
    summary: pd.DataFrame
    records: pd.DataFrame
    skipped: int
    timings: dict[str, float] = field(default_factory=dict)


def book_partitions(templates: Sequence[BookTemplate], n_partitions: int
                    ) -> list[NDArray[np.int64]]:
    """Indices of the templates in each partition, by stable hash of the book name.

    Raises
    ------
    ValueError
        If book names repeat (a name is a book's identity across processes).
    """
    if n_partitions < 1:
        raise ValueError(f"n_partitions: must be >= 1, got {n_partitions}")
    names = [t.name for t in templates]
    if len(set(names)) != len(names):
        raise ValueError("templates: book names must be unique to partition by name")
    part = np.array([partition_of(n, n_partitions) for n in names], np.int64)
    return [np.flatnonzero(part == p).astype(np.int64) for p in range(n_partitions)]


def run_partition(path: MarketPath, templates: Sequence[BookTemplate],
                  book_index: NDArray[np.int64], provider: MarginProvider,
                  config: BacktestConfig, start: str | None, end: str | None,
                  keep_records: bool = True, partition: int = 0,
                  numba_threads: int | None = None) -> BacktestPart:
    """Walk forward the books ``templates[book_index]`` (the unit of work on a worker)."""
    _pin_threads(numba_threads)
    mine = [templates[int(i)] for i in book_index]
    before = int(getattr(provider, "skipped", 0))
    bt = walk_forward(path, mine, provider, config, start, end, keep_records)
    skipped = int(getattr(provider, "skipped", 0)) - before
    return BacktestPart(partition, np.asarray(book_index, np.int64), bt.summary(),
                        bt.records(), skipped, dict(bt.timings))


def merge(templates: Sequence[BookTemplate], parts: Sequence[BacktestPart]
          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-book summary and daily records in the order a single-process run gives them.

    Summary rows follow the template order; records are ordered by date, then template order
    (as :meth:`ContinuousBacktest.records`).
    """
    parts = [p for p in parts if len(p.book_index)]
    if not parts:
        return pd.DataFrame(), pd.DataFrame()
    summary = pd.concat([p.summary for p in parts], ignore_index=True)
    order = np.concatenate([p.book_index for p in parts])
    summary = summary.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
    rank = {t.name: k for k, t in enumerate(templates)}
    records = pd.concat([p.records for p in parts], ignore_index=True)
    if len(records):
        key = records["portfolio"].map(rank)
        records = (records.assign(_book=key)
                   .sort_values(["date", "_book"], kind="stable")
                   .drop(columns="_book").reset_index(drop=True))
    return summary, records


def run_local(path: MarketPath, templates: Sequence[BookTemplate], provider: MarginProvider,
              n_partitions: int, config: BacktestConfig = _DEFAULT_CONFIG,
              start: str | None = None, end: str | None = None, keep_records: bool = True,
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The single-process reference run: every partition in turn, then :func:`merge`."""
    parts = [run_partition(path, templates, idx, provider, config, start, end, keep_records, p)
             for p, idx in enumerate(book_partitions(templates, n_partitions)) if len(idx)]
    return merge(templates, parts)


def run_dask(client: Any, path: MarketPath, templates: Sequence[BookTemplate],
             provider: MarginProvider, n_partitions: int,
             config: BacktestConfig = _DEFAULT_CONFIG, start: str | None = None,
             end: str | None = None, keep_records: bool = True, numba_threads: int | None = 1,
             ) -> tuple[tuple[pd.DataFrame, pd.DataFrame], list[BacktestPart]]:
    """The same run on a Dask cluster: one task per partition.

    Returns
    -------
    (summary, records), parts
        The merged tables (as :func:`run_local`) and the per-partition results (timings,
        refused book-days).
    """
    path_f = client.scatter(path, broadcast=True, hash=False)
    prov_f = client.scatter(provider, broadcast=True, hash=False)
    futs = [client.submit(run_partition, path_f, list(templates), idx, prov_f, config, start,
                          end, keep_records, p, numba_threads, pure=False)
            for p, idx in enumerate(book_partitions(templates, n_partitions)) if len(idx)]
    parts: list[BacktestPart] = client.gather(futs)
    return merge(templates, parts), parts


def day_blocks(rows: range, n_blocks: int) -> list[range]:
    """``rows`` cut into ``n_blocks`` contiguous ranges of near-equal length (none empty)."""
    if n_blocks < 1:
        raise ValueError(f"n_blocks: must be >= 1, got {n_blocks}")
    n = len(rows)
    edges = [rows.start + (n * b) // n_blocks for b in range(n_blocks + 1)]
    return [range(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def _pin_threads(numba_threads: int | None) -> None:
    """Set the compiled kernels' thread count for the calling thread (numba's setting is
    per thread, so it must run inside the task). A worker left at its default starts a
    parallel region on every core and its idle OpenMP threads spin, stealing the core of
    the worker next to it (measured: +40 % CPU per task)."""
    if numba_threads is not None:
        numba.set_num_threads(int(numba_threads))


def _settle_block(path: MarketPath, templates: Sequence[BookTemplate],
                  provider: MarginProvider, horizon_days: int, rows: range,
                  numba_threads: int | None = None) -> list[Settlement]:
    _pin_threads(numba_threads)
    table = TemplateTable.build(list(templates), path.underlyings)
    return margin_rows(path, table, provider, rows, horizon_days)


def _backtest(path: MarketPath, templates: Sequence[BookTemplate], provider: MarginProvider,
              config: BacktestConfig, start: str | None, end: str | None, keep_records: bool
              ) -> ContinuousBacktest:
    s = path.index_of(start) if start is not None else 0
    e = path.index_of(end) if end is not None else None
    return ContinuousBacktest(list(templates), provider, path.underlyings, config, s, e,
                              keep_records)


def run_local_by_days(path: MarketPath, templates: Sequence[BookTemplate],
                      provider: MarginProvider, n_blocks: int,
                      config: BacktestConfig = _DEFAULT_CONFIG, start: str | None = None,
                      end: str | None = None, keep_records: bool = True
                      ) -> ContinuousBacktest:
    """Single-process twin of :func:`run_dask_by_days` (same blocks, in turn)."""
    bt = _backtest(path, templates, provider, config, start, end, keep_records)
    for rows in day_blocks(bt.rows_to_margin(path), n_blocks):
        bt.apply_rows(_settle_block(path, templates, provider, config.horizon_days, rows))
    return bt


def run_dask_by_days(client: Any, path: MarketPath, templates: Sequence[BookTemplate],
                     provider: MarginProvider, n_blocks: int,
                     config: BacktestConfig = _DEFAULT_CONFIG, start: str | None = None,
                     end: str | None = None, keep_records: bool = True,
                     numba_threads: int | None = 1) -> ContinuousBacktest:
    """Walk-forward with blocks of as-of days margined on a Dask cluster.

    ``numba_threads`` is the compiled kernels' thread count inside each task (1: one worker
    per core; None leaves the worker's default). Returns the driver's
    :class:`ContinuousBacktest`, fully settled: ``summary()`` and ``records()`` equal those of
    :func:`marginproof.backtest.walk_forward`.
    """
    bt = _backtest(path, templates, provider, config, start, end, keep_records)
    path_f = client.scatter(path, broadcast=True, hash=False)
    prov_f = client.scatter(provider, broadcast=True, hash=False)
    futs = [client.submit(_settle_block, path_f, list(templates), prov_f,
                          config.horizon_days, rows, numba_threads, pure=False)
            for rows in day_blocks(bt.rows_to_margin(path), n_blocks)]
    for f in futs:  # in day order: the statistics are sequential
        bt.apply_rows(f.result())
    return bt
