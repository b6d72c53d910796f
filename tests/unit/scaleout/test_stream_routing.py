"""Partitioned streaming core: routing + merge reproduce the single-process partition engines.

The transport is simulated: messages of the market subject and of each partition's account
subject are delivered in random interleavings, with duplicates, as JetStream may do.
"""

from __future__ import annotations

import numpy as np
import pytest

from marginproof.engine.core import EngineConfig, MarginEngine
from marginproof.engine.entries import EntryKind, LogEntry
from marginproof.models.grid import GridModel
from marginproof.scaleout.stream import (
    MARKET,
    OutputDigest,
    PartitionMerge,
    Routed,
    StreamGapError,
    apply_message,
    reference_digests,
    route_all,
)
from marginproof.scaleout.stream_worker import synthetic_log

N = 4


@pytest.fixture(scope="module")
def log() -> list[LogEntry]:
    return synthetic_log(240, 30, n_fills=20, params_change=True, malformed=True)


@pytest.fixture(scope="module")
def reference(log: list[LogEntry]) -> dict[int, OutputDigest]:
    return reference_digests(log, N)


def _deliver(msgs: list[Routed], rng: np.random.Generator, dup: float
             ) -> tuple[dict[int, OutputDigest], dict[int, MarginEngine]]:
    """Each subject keeps its order; subjects interleave at random; some messages twice."""
    queues: dict[str | int, list[Routed]] = {}
    for r in msgs:
        queues.setdefault(r.target, []).append(r)
        if rng.random() < dup:
            queues[r.target].append(r)
    engines = {p: MarginEngine(GridModel(), EngineConfig(n_partitions=N, partition=p))
               for p in range(N)}
    merges = {p: PartitionMerge(p) for p in range(N)}
    digests = {p: OutputDigest() for p in range(N)}
    pos = dict.fromkeys(queues, 0)
    while any(pos[k] < len(q) for k, q in queues.items()):
        live = [k for k, q in queues.items() if pos[k] < len(q)]
        k = live[int(rng.integers(len(live)))]
        r = queues[k][pos[k]]
        pos[k] += 1
        if k == MARKET:
            for m in merges.values():
                m.push_market(r.payload)
        else:
            merges[int(k)].push_account(r.payload)
        for p, m in merges.items():
            while (x := m.next_ready()) is not None:
                for o in apply_message(engines[p], x):
                    digests[p].update(o)
    assert all(m.backlog() == 0 for m in merges.values())
    return digests, engines


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_any_interleaving_reproduces_the_partition_engines_bit_for_bit(log, reference, seed):
    msgs = route_all(log, N, batch_size=17)
    digests, engines = _deliver(msgs, np.random.default_rng(seed), dup=0.1)
    for p in range(N):
        assert digests[p].hexdigest() == reference[p].hexdigest()
        assert digests[p].rows == reference[p].rows
        assert engines[p].last_seq == log[-1].seq
    assert sum(d.rows for d in digests.values()) > 240 * 15


def test_every_account_lands_on_exactly_one_partition(log):
    msgs = route_all(log, N, batch_size=50)
    seen: dict[str, int] = {}
    for r in msgs:
        if r.target == MARKET:
            continue
        for e in r.payload["entries"]:
            a = e["b"]["account_id"]
            assert seen.setdefault(a, int(r.target)) == r.target
    assert len(set(seen.values())) == N
    assert len(seen) >= 240


def test_entries_every_engine_reacts_to_are_broadcast(log):
    msgs = route_all(log, N)
    market = {e["s"]: e for r in msgs if r.target == MARKET for e in r.payload["entries"]}
    kinds = {e["k"] for e in market.values()}
    assert {"tick", "market", "params"} <= kinds
    # the malformed account entry and the entry activating the parameter set
    assert any(e["k"] == "account" and e["b"]["account_id"] == "bad-1" for e in market.values())
    params = next(e for e in market.values() if e["k"] == "params")
    activating = [e for e in market.values() if e["s"] > params["s"]
                  and e["t"] >= params["b"]["effective_at_ms"]]
    assert activating  # the first entry at/after the effective time reaches every partition


def test_a_lost_message_is_detected():
    log = synthetic_log(60, 6, n_fills=4)
    msgs = route_all(log, 2, batch_size=5)
    m = PartitionMerge(0)
    acc = [r for r in msgs if r.target == 0]
    m.push_account(acc[0].payload)
    assert not m.push_account(acc[0].payload)  # duplicate dropped
    with pytest.raises(StreamGapError):
        m.push_account(acc[2].payload)
    mk = [r for r in msgs if r.target == MARKET and r.payload["entries"]]
    m.push_market(mk[0].payload)
    with pytest.raises(StreamGapError):
        m.push_market(mk[2].payload)


def test_skip_to_refuses_to_go_back():
    eng = MarginEngine(GridModel())
    eng.skip_to(5, 1000)
    assert eng.last_seq == 5 and eng.clock_ms == 1000
    with pytest.raises(ValueError, match="skip back"):
        eng.skip_to(4, 0)
    # and a gap that was not declared is still refused
    with pytest.raises(ValueError, match="gap"):
        eng.apply(LogEntry(7, EntryKind.PARAMS, 1000, "t", {"model": "other"}))
