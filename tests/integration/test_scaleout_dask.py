"""Batch re-margin on a local Dask cluster equals the single-process run, bit for bit."""

import distributed
import numpy as np

from marginproof.demo.synthetic import option_universe, random_accounts
from marginproof.instruments.resolved import resolve
from marginproof.models.batch import (
    CsrBook,
    grid_margin_batch,
    instrument_unit_pnl,
    pad_scenarios,
)
from marginproof.models.grid import GridModel
from marginproof.scaleout.batch import (
    DaskBatch,
    account_partitions,
    balanced_placement,
    build_partition,
    margin_partition,
    partition_summary,
    run_local,
)
from tests.factories import sample_market


def _problem(n_acc: int = 2_000, n_inst: int = 200):
    uni = option_universe(sample_market(), n_inst, seed=3)
    inst = resolve(uni.portfolio, uni.market)
    model = GridModel()
    up = instrument_unit_pnl(model, inst).astype(np.float32)
    a, i, q = random_accounts(n_acc, 5, n_inst, seed=4)
    q = q.astype(np.float32)
    names = [f"acct-{k}" for k in range(n_acc)]
    w = np.where(inst.is_option, 0.01 * inst.index, 0.0)
    return uni, inst, model, up, a, i, q, names, w


def test_partitioned_local_run_equals_unpartitioned_batch() -> None:
    uni, inst, model, up, a, i, q, names, w = _problem()
    part_of = account_partitions(names, 4)
    parts = [build_partition(p, part_of, a, i, q, uni.underlying_of, w) for p in range(4)]
    im, mm = run_local(parts, up, 0.8, len(names))
    whole = grid_margin_batch(model, inst, CsrBook.from_positions(a, i, q, uni.underlying_of,
                                                                  len(names)), up)
    np.testing.assert_allclose(im, whole.initial_margin, rtol=0, atol=0)
    assert np.all(np.isfinite(mm))


def test_held_buffers_follow_each_new_table_and_fetched_results_do_not_change_later() -> None:
    uni, inst, model, up, a, i, q, names, w = _problem()
    part_of = account_partitions(names, 4)
    parts = [build_partition(p, part_of, a, i, q, uni.underlying_of, w) for p in range(4)]
    up2 = (up * np.float32(1.5)).astype(np.float32)  # a new market: another table
    ref1 = run_local(parts, up, 0.8, len(names))
    ref2 = run_local(parts, up2, 0.8, len(names))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        client.wait_for_workers(2)
        batch = DaskBatch.place(client, parts, len(names))
        batch.cycle(up, 0.8)
        first = batch.fetch_results()
        s2 = batch.cycle(up2, 0.8)
        second = batch.fetch_results()
        batch.cycle(up, 0.8)
        third = batch.fetch_results()
    assert len(batch.placement) == 2 and all(batch.placement.values())
    for got, ref in ((first, ref1), (second, ref2), (third, ref1)):
        assert got[0].tobytes() == ref[0].tobytes() and got[1].tobytes() == ref[1].tobytes()
    assert s2 == [{"partition": p.partition, **partition_summary(margin_partition(p, up2, 0.8))}
                  for p in parts]
    assert not np.array_equal(ref1[0], ref2[0])  # the second table really differs


def test_partition_hosts_keep_results_and_match_single_process_for_1_and_2_workers() -> None:
    uni, inst, model, up, a, i, q, names, w = _problem()
    part_of = account_partitions(names, 5)
    parts = [build_partition(p, part_of, a, i, q, uni.underlying_of, w) for p in range(5)]
    ref_im, ref_mm = run_local(parts, up, 0.8, len(names))
    local = [{"partition": p.partition, **partition_summary(margin_partition(p, up, 0.8))}
             for p in parts]
    for n_workers in (1, 2):
        with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                      processes=True, dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            client.wait_for_workers(n_workers)
            for share in (True, False):  # table via the node's shared file, or with the call
                with DaskBatch.place(client, parts, len(names), share_table=share) as batch:
                    held = sorted(p for ps in batch.placement.values() for p in ps)
                    assert held == list(range(5)) and len(batch.placement) == n_workers
                    assert all(batch.placement.values())  # every worker holds partitions
                    assert batch.same_node == (set(batch.hosts) if share else set())
                    s1 = batch.cycle(pad_scenarios(up), 0.8, up.shape[1])
                    s2 = batch.cycle(up, 0.8)  # unpadded table, second cycle: same results
                    im, mm = batch.fetch_results()
                assert s1 == local and s2 == local
                assert im.tobytes() == ref_im.tobytes() and mm.tobytes() == ref_mm.tobytes()


def test_balanced_placement_is_deterministic_and_balanced() -> None:
    uni, inst, model, up, a, i, q, names, w = _problem()
    part_of = account_partitions(names, 16)
    parts = [build_partition(p, part_of, a, i, q, uni.underlying_of, w) for p in range(16)]
    pl = balanced_placement(parts, ["tcp://b", "tcp://a"])
    assert pl == balanced_placement(parts, ["tcp://a", "tcp://b"])
    assert sorted(k for ks in pl.values() for k in ks) == list(range(16))
    loads = [sum(parts[k].account_ids.shape[0] for k in ks) for ks in pl.values()]
    assert max(loads) - min(loads) <= max(p.account_ids.shape[0] for p in parts)
