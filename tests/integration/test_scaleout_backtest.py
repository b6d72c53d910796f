"""Walk-forward backtests partitioned by book: local and Dask runs equal the plain run."""

from __future__ import annotations

import distributed
import numpy as np
import pandas as pd
import pytest

from marginproof.backtest.batch_dynamic import HistoryBatchProvider
from marginproof.backtest.continuous import BacktestConfig, walk_forward
from marginproof.backtest.portfolios import portfolio_set
from marginproof.feeds.history import load_market_history
from marginproof.models.registry import model_class
from marginproof.reports.history import daily_path
from marginproof.scaleout.backtest import (
    book_partitions,
    day_blocks,
    run_dask,
    run_dask_by_days,
    run_local,
    run_local_by_days,
)

UNDERLYINGS = ("BTC", "ETH")
START, END = "2022-05-01", "2022-06-15"  # includes the LUNA/3AC drawdown


@pytest.fixture(scope="module")
def problem():  # type: ignore[no-untyped-def]
    path = daily_path(UNDERLYINGS)
    model = model_class("dynamic")(None, load_market_history())  # type: ignore[call-arg]
    templates = (portfolio_set(("singles", "hedged"), UNDERLYINGS)
                 + portfolio_set(("random",), UNDERLYINGS, 10, seed=3))
    plain = walk_forward(path, templates, HistoryBatchProvider(model), BacktestConfig(),
                         START, END)
    return path, model, templates, plain.summary(), plain.records()


def test_books_are_partitioned_by_a_stable_hash_of_their_name(problem) -> None:  # type: ignore[no-untyped-def]
    _, _, templates, _, _ = problem
    parts = book_partitions(templates, 3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(templates)))
    assert [p.tolist() for p in parts] == [p.tolist() for p in book_partitions(templates, 3)]
    with pytest.raises(ValueError, match="unique"):
        book_partitions([templates[0], templates[0]], 2)


def test_partitioned_local_run_equals_the_plain_walk_forward(problem) -> None:  # type: ignore[no-untyped-def]
    path, model, templates, summary, records = problem
    s, r = run_local(path, templates, HistoryBatchProvider(model), 3, BacktestConfig(), START,
                     END)
    assert len(r) > 500
    pd.testing.assert_frame_equal(s, summary, check_exact=True)
    pd.testing.assert_frame_equal(r, records, check_exact=True)


def test_day_blocks_cover_the_rows_in_order() -> None:
    blocks = day_blocks(range(10, 33), 4)
    assert [list(b) for b in blocks] == [list(range(10, 15)), list(range(15, 21)),
                                         list(range(21, 27)), list(range(27, 33))]
    assert day_blocks(range(5, 7), 4) == [range(5, 6), range(6, 7)]
    assert day_blocks(range(3, 3), 2) == []


def test_day_partitioned_local_run_equals_the_plain_walk_forward(problem) -> None:  # type: ignore[no-untyped-def]
    path, model, templates, summary, records = problem
    bt = run_local_by_days(path, templates, HistoryBatchProvider(model), 3, BacktestConfig(),
                           START, END)
    pd.testing.assert_frame_equal(bt.summary(), summary, check_exact=True)
    pd.testing.assert_frame_equal(bt.records(), records, check_exact=True)


def test_dask_cluster_backtests_are_identical_to_single_process(problem) -> None:  # type: ignore[no-untyped-def]
    path, model, templates, summary, records = problem
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, env={"NUMBA_NUM_THREADS": "1"}
                                  ) as cluster, distributed.Client(cluster) as client:
        (s, r), parts = run_dask(client, path, templates, HistoryBatchProvider(model), 2,
                                 BacktestConfig(), START, END)
        bt = run_dask_by_days(client, path, templates, HistoryBatchProvider(model), 4,
                              BacktestConfig(), START, END)
    assert len(parts) == 2
    pd.testing.assert_frame_equal(s, summary, check_exact=True)
    pd.testing.assert_frame_equal(r, records, check_exact=True)
    pd.testing.assert_frame_equal(bt.summary(), summary, check_exact=True)
    pd.testing.assert_frame_equal(bt.records(), records, check_exact=True)
