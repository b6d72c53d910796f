"""Two streaming engine processes on NATS JetStream reproduce the single-process run exactly.

A small book (accounts, ticks, fills, transfers, a parameter change, malformed entries) is
routed to the market subject and the per-partition account subjects of a stream unique to this
test; two ``python -m marginproof.scaleout.stream_worker`` processes own partitions {0, 2} and
{1, 3} of 4. Their per-partition digests (every margin row as IEEE bytes and every event) must
equal those of the four partition engines reading the whole log in this process, every account
must be handled by exactly one worker, and the final margins must be the reference's bit for
bit. Processes are killed and the stream deleted whatever happens.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from marginproof.bus.jetstream import NatsBus
from marginproof.engine.core import EngineConfig, MarginEngine
from marginproof.models.grid import GridModel
from marginproof.scaleout.stream import combined_digest, reference_digests, route_all
from marginproof.scaleout.stream_worker import publish_routed, synthetic_log

N_PARTITIONS = 4
OWNERS = ([0, 2], [1, 3])


def _spawn(nats_url: str, stream: str, prefix: str, parts: list[int], report: Path
           ) -> subprocess.Popen[str]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "marginproof.scaleout.stream_worker", "--nats", nats_url,
         "--stream", stream, "--prefix", prefix, "--partitions", ",".join(map(str, parts)),
         "--of", str(N_PARTITIONS), "--report", str(report), "--report-accounts",
         "--exit-on-stop"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env)


def test_two_worker_processes_equal_the_single_process_run(nats_url: str, unique: str,
                                                           tmp_path: Path) -> None:
    stream, prefix = unique.upper(), unique
    log = synthetic_log(300, 40, n_fills=25, params_change=True, malformed=True)
    msgs = route_all(log, N_PARTITIONS, batch_size=40)
    reports = [tmp_path / f"w{k}.json" for k in range(len(OWNERS))]
    procs: list[subprocess.Popen[str]] = []

    async def publish() -> None:
        bus = await NatsBus.connect(nats_url, stream=stream, prefix=prefix)
        try:
            # first half before the workers start (they replay it), the rest while they run
            half = len(msgs) // 2
            await publish_routed(bus, prefix, msgs[:half])
            procs.extend(_spawn(nats_url, stream, prefix, parts, rep)
                         for parts, rep in zip(OWNERS, reports, strict=True))
            await asyncio.sleep(0.5)
            await publish_routed(bus, prefix, msgs[half:])
            await publish_routed(bus, prefix, msgs[half:half + 5])  # re-sent: de-duplicated
        finally:
            await bus.close()

    async def delete_stream() -> None:
        bus = await NatsBus.connect(nats_url, stream=stream, prefix=prefix)
        await bus.delete_stream()
        await bus.close()

    try:
        asyncio.run(asyncio.wait_for(publish(), 60))
        deadline = time.monotonic() + 120
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
        for p in procs:
            assert p.returncode == 0, p.stderr.read() if p.stderr else ""
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        asyncio.run(delete_stream())

    got = [json.loads(r.read_text()) for r in reports]
    ref = reference_digests(log, N_PARTITIONS)
    digests = {int(p): d for rep in got for p, d in rep["digests"].items()}
    assert digests == {p: d.hexdigest() for p, d in ref.items()}
    assert combined_digest(digests) == combined_digest({p: d.hexdigest()
                                                        for p, d in ref.items()})
    assert {int(p): n for rep in got for p, n in rep["rows"].items()} == \
        {p: d.rows for p, d in ref.items()}
    for rep in got:
        assert set(rep["last_seq"].values()) == {log[-1].seq}
        assert "end" in rep["barriers"]

    # every account handled by exactly one worker, with the reference's margins bit for bit
    owners: dict[str, int] = {}
    for k, rep in enumerate(got):
        for ids in rep["accounts"].values():
            for a in ids:
                assert owners.setdefault(a, k) == k, f"{a} handled by two workers"
    assert len(owners) == 300  # the malformed account entry creates no account
    assert set(owners.values()) == {0, 1}
    margins = {a: v for rep in got for a, v in rep["margins"].items()}
    for p in range(N_PARTITIONS):
        eng = MarginEngine(GridModel(), EngineConfig(n_partitions=N_PARTITIONS, partition=p))
        for e in log:
            eng.apply(e)
        for i, a in enumerate(eng.acc_ids):
            assert margins[a] == [float(eng.im[i]).hex(), float(eng.mm[i]).hex(),
                                  float(eng.equity[i]).hex(), int(eng.status[i])]
