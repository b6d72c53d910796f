"""Service benchmark: one day of hourly data for many accounts, and the what-if endpoint.

Run: ``.venv/bin/python benchmarks/bench_service.py [--quick] [--accounts N]``.

Part 1 (engine + storage, SQLite WAL, in-process bus): N synthetic accounts that all hold BTC
(so every BTC tick moves all N), then the 48 hourly BTC/ETH index ticks of 2022-04-15:

* engine tick-to-margin-event latency: ``engine.apply(tick)`` + publishing the margin batch
  (p50/p99 over the BTC ticks, which move every account);
* service path, paced: tick appended to the input log -> engine -> batch published, one tick
  at a time (p50/p99), and the sustained ticks/s *including* writing every account's margin row
  to the history table;
* the same ticks at maximum speed (all appended at once): ticks/s sustained;
* ratio to a naive baseline (``GridModel.margin`` per account, full revaluation, timed on a
  sample and scaled to N), and the engine's achieved memory traffic as a fraction of a
  STREAM-like numpy copy probe measured in the same run.

Part 2 (HTTP): ``marginproof serve`` on 127.0.0.1 in a subprocess; what-if requests (open loop,
latency from the scheduled send) under ``grid`` at 200 and 500 req/s (targets p99 <= 10 ms and
<= 25 ms) and under ``dynamic`` at 100 and 200 req/s; a ramp of rates per model until >= 1 % of
requests are shed with 429 (the onset); the closed-loop maximum with 8 clients; and ``/health``
latency while two heavy Monte Carlo what-ifs run (target <= 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from marginproof.engine.core import EngineConfig, MarginEngine
from marginproof.engine.entries import EntryKind, LogEntry
from marginproof.feeds.replay import replay_day
from marginproof.instruments.portfolio import Portfolio
from marginproof.models.grid import GridModel
from marginproof.service.gateway import InputGateway
from marginproof.service.runner import EngineRunner
from marginproof.service.workload import synthetic_accounts
from marginproof.storage.factory import open_repository


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def stream_probe_gbs(n_mb: int = 200) -> float:
    """Copy bandwidth (GB/s, read + write) of a large numpy array: the roofline reference."""
    a = np.ones(n_mb * 1024 * 1024 // 8)
    b = np.empty_like(a)
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(b, a)
        dt = time.perf_counter() - t
        best = max(best, 2 * a.nbytes / dt / 1e9)
    return best


def part_engine(n_accounts: int) -> dict[str, float]:
    day = replay_day("2022-04-15", ("BTCUSDT", "ETHUSDT"))
    accounts = synthetic_accounts(n_accounts, day.market)
    out: dict[str, float] = {"accounts": float(n_accounts)}

    # -- engine alone: apply + publish to an in-memory sink ------------------------------
    eng = MarginEngine(GridModel(), EngineConfig())
    seq = 0
    t0_ms = int(day.market.timestamp.timestamp() * 1000)

    def entry(kind: EntryKind, body: dict) -> LogEntry:  # type: ignore[type-arg]
        nonlocal seq
        seq += 1
        return LogEntry(seq, kind, t0_ms + seq, "bench", body)

    sink: list[object] = []
    eng.apply(entry(EntryKind.MARKET, dict(day.seed_entry().body)))
    t = time.perf_counter()
    for a in accounts:
        eng.apply(entry(EntryKind.ACCOUNT, dict(a.body)))
    out["account_entries_per_s"] = n_accounts / (time.perf_counter() - t)
    lat_btc: list[float] = []
    moved: list[int] = []
    for tk in day.tick_entries():
        e = entry(EntryKind.TICK, dict(tk.body))
        t = time.perf_counter()
        res = eng.apply(e)
        if res.batch is not None:
            sink.append(res.batch.summary())
        dt = time.perf_counter() - t
        if tk.body["underlying"] == "BTC" and res.batch is not None:
            lat_btc.append(dt)
            moved.append(len(res.batch))
    out["engine_p50_ms"] = 1e3 * pct(lat_btc, 50)
    out["engine_p99_ms"] = 1e3 * pct(lat_btc, 99)
    out["accounts_moved_per_btc_tick"] = float(np.median(moved))
    # memory traffic of one BTC tick: scenario P&L written + read (argmin/gather) + CSR + cols
    n_scen = len(GridModel().scenario_labels())
    bytes_per_tick = n_accounts * n_scen * 8 * 3 + n_accounts * 4 * 8 * 4
    out["engine_gbs"] = bytes_per_tick / pct(lat_btc, 50) / 1e9

    # -- naive baseline: full GridModel.margin per account, sampled ---------------------
    model = GridModel()
    sample = accounts[: min(200, n_accounts)]
    t = time.perf_counter()
    for a in sample:
        model.margin(Portfolio.of(dict(a.body["positions"])), day.market)
    per_account = (time.perf_counter() - t) / len(sample)
    out["naive_tick_ms"] = 1e3 * per_account * n_accounts
    out["speedup_vs_naive"] = out["naive_tick_ms"] / out["engine_p50_ms"]

    # -- service path: log -> runner -> bus -> history (SQLite WAL) ----------------------
    with tempfile.TemporaryDirectory() as tmp:
        repo = open_repository(f"sqlite:///{Path(tmp) / 'bench.sqlite'}")
        gw = InputGateway(repo)
        published: list[object] = []
        runner = EngineRunner(repo, GridModel(), EngineConfig(),
                              publish=lambda s, d, i, o: published.append(o), gateway=gw,
                              commit_every=1)
        gw.append([day.seed_entry()])
        t = time.perf_counter()
        for i in range(0, len(accounts), 2000):
            gw.append(accounts[i:i + 2000])
        out["log_append_accounts_per_s"] = n_accounts / (time.perf_counter() - t)
        runner.commit_every = 5000
        t = time.perf_counter()
        runner.run_until_idle()
        out["setup_runner_s"] = time.perf_counter() - t
        runner.commit_every = 1
        ticks = day.tick_entries()
        half = len(ticks) // 2
        t = time.perf_counter()
        for tk in ticks[:half]:  # paced: one tick at a time
            gw.append([tk])
            runner.step()
        paced_s = time.perf_counter() - t
        paced_lat = [x for x in runner.latencies_s]
        runner.latencies_s.clear()
        out["service_paced_p50_ms"] = 1e3 * pct(paced_lat, 50)
        out["service_paced_p99_ms"] = 1e3 * pct(paced_lat, 99)
        out["service_paced_ticks_per_s_with_history"] = half / paced_s
        t = time.perf_counter()
        gw.append(ticks[half:])  # max speed: everything at once
        runner.run_until_idle()
        burst_s = time.perf_counter() - t
        out["service_burst_ticks_per_s_with_history"] = (len(ticks) - half) / burst_s
        rows = sum(len(b) for b in published if hasattr(b, "account_ids"))
        out["history_rows_written"] = float(rows)
        repo.close()
    out["stream_probe_gbs"] = stream_probe_gbs()
    out["engine_fraction_of_probe"] = out["engine_gbs"] / out["stream_probe_gbs"]
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _raw_client(host: str, port: int, request: bytes, schedule: list[float],
                      cursor: list[int], lat: list[float], status: list[int]) -> None:
    """One keep-alive HTTP/1.1 connection taking the next scheduled send time.

    Latency counts from the *scheduled* time (open loop, no coordinated omission). Hand-written
    on asyncio streams because a generic async HTTP client costs more CPU per request than the
    server does, and the load generator would measure itself.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while cursor[0] < len(schedule):
            t_sched = schedule[cursor[0]]
            cursor[0] += 1
            delay = t_sched - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if t_sched == 0.0:  # closed loop: from the actual send
                t_sched = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t_sched)
            status.append(int(head.split(b" ", 2)[1]))
    finally:
        writer.close()


# more than the what-if lane holds (2 running + 32 queued by default), so that past saturation
# requests reach the lane's 429 instead of waiting in the load generator
OPEN_LOOP_CONNECTIONS = 64


async def _load(url: str, key: str, body: dict, rate: float, seconds: float,  # type: ignore[type-arg]
                concurrency: int | None, statuses: list[int] | None = None
                ) -> tuple[list[float], float, int]:
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    request = (f"POST /whatif HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
               ).encode() + payload
    lat: list[float] = []
    status: list[int] = []
    t0 = time.perf_counter() + 0.2
    if concurrency is None:  # open loop at a fixed rate over OPEN_LOOP_CONNECTIONS
        schedule = [t0 + i / rate for i in range(int(rate * seconds))]
        conns = OPEN_LOOP_CONNECTIONS
    else:  # closed loop: every connection sends as soon as its previous answer arrived
        schedule = [0.0] * 1_000_000
        conns = concurrency
    cursor = [0]
    # the load generator's own cyclic-GC pauses would count as service latency: none while
    # it runs (it allocates little; collected after)
    gc.collect()
    gc.disable()
    tasks = [asyncio.create_task(_raw_client(host, int(port), request, schedule, cursor, lat,
                                             status)) for _ in range(conns)]
    if concurrency is None:
        await asyncio.gather(*tasks)
    else:
        await asyncio.sleep(seconds + 0.2)
        cursor[0] = len(schedule)
        await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    gc.enable()
    if statuses is not None:
        statuses.extend(status)
    return lat, len(status) / elapsed, sum(1 for s in status if s != 200)


def _open_loop(url: str, key: str, body: dict, rate: float,  # type: ignore[type-arg]
               seconds: float) -> dict[str, float]:
    """Open-loop what-ifs at ``rate`` req/s: achieved rate, p50/p99 of the 200s, 429s, errors."""
    statuses: list[int] = []
    lat, rps, _ = asyncio.run(_load(url, key, body, rate, seconds, None, statuses))
    ok = [x for x, st in zip(lat, statuses, strict=True) if st == 200]
    n = max(len(statuses), 1)
    return {"rate": rate, "achieved": rps, "p50_ms": 1e3 * pct(ok, 50),
            "p99_ms": 1e3 * pct(ok, 99), "n": float(len(statuses)),
            "shed_429": float(sum(st == 429 for st in statuses)),
            "shed_fraction": sum(st == 429 for st in statuses) / n,
            "errors": float(sum(st not in (200, 429) for st in statuses))}


def _health_under_heavy(url: str, key: str, heavy: dict, n_heavy: int,  # type: ignore[type-arg]
                        ) -> dict[str, float]:
    """``/health`` latency (polled every 20 ms) while ``n_heavy`` heavy what-ifs run."""
    import httpx

    async def run() -> tuple[list[float], list[float], list[int]]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            health: list[float] = []
            heavy_s: list[float] = []
            codes: list[int] = []

            async def one_heavy() -> None:
                t = time.perf_counter()
                r = await client.post("/whatif", json=heavy, headers={"X-API-Key": key})
                heavy_s.append(time.perf_counter() - t)
                codes.append(r.status_code)

            jobs = [asyncio.create_task(one_heavy()) for _ in range(n_heavy)]
            await asyncio.sleep(0.05)
            while not all(j.done() for j in jobs):
                t = time.perf_counter()
                r = await client.get("/health")
                health.append(time.perf_counter() - t)
                codes.append(r.status_code)
                await asyncio.sleep(0.02)
            await asyncio.gather(*jobs)
            return health, heavy_s, codes

    health, heavy_s, codes = asyncio.run(run())
    return {"health_p50_ms": 1e3 * pct(health, 50), "health_p99_ms": 1e3 * pct(health, 99),
            "health_max_ms": 1e3 * max(health, default=float("nan")),
            "health_polls": float(len(health)), "heavy_s": max(heavy_s),
            "heavy_errors": float(sum(c != 200 for c in codes))}


def part_whatif(seconds: float) -> dict[str, Any]:
    """What-if over HTTP against ``marginproof serve`` (issue 18's benchmark figures).

    The per-key token bucket (default 200 tokens/s, a ``dynamic`` what-if costs 3) is raised
    for the run so that the figures show the service itself (worker pool, 429 shedding), not
    one key's quota; every other setting is the default.
    """
    import tomllib

    import httpx

    from marginproof.config.params import config_dir
    from marginproof.demo.book import demo_account, demo_market
    from marginproof.io.formats import market_to_dict

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{Path(tmp) / 'svc.sqlite'}"
        env = {**os.environ, "MARGINPROOF_DATABASE_URL": db,
               "MARGINPROOF_RATE_LIMIT_PER_S": "100000", "MARGINPROOF_RATE_LIMIT_BURST": "100000"}
        exe = [sys.executable, "-m", "marginproof.cli.main"]
        key = json.loads(subprocess.run([*exe, "keys", "create", "--scope", "operator"],
                                        env=env, capture_output=True, text=True,
                                        check=True).stdout)["key"]
        port = _free_port()
        proc = subprocess.Popen([*exe, "serve", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            h = {"X-API-Key": key}
            httpx.post(f"{url}/market", json={"snapshot": market_to_dict(demo_market())},
                       headers=h, timeout=30).raise_for_status()
            acct, _ = demo_account()
            pos = {p.instrument.name: p.quantity for p in acct.portfolio.positions}
            trades = [{"instrument": "BTC-PERPETUAL", "quantity": 10_000}]
            bodies = {m: {"model": m, "positions": pos, "trades": trades}
                      for m in ("grid", "dynamic")}
            for body in bodies.values():  # warm the workers (model, scenario sets)
                for _ in range(300):
                    if httpx.post(f"{url}/whatif", json=body, headers=h,
                                  timeout=60).status_code == 200:
                        break
                    time.sleep(0.1)
                # concurrent, so that every worker process has seen this model and book
                asyncio.run(_load(url, key, body, 0.0, 1.0, 4))
            # fixed rates (targets: grid p99 <= 10 ms at 200 req/s, <= 25 ms at 500 req/s)
            for m, rate in (("grid", 200.0), ("grid", 500.0), ("dynamic", 100.0),
                            ("dynamic", 200.0)):
                out[f"{m}@{rate:.0f}"] = _open_loop(url, key, bodies[m], rate, seconds)
            # where shedding starts: the lowest rate with >= 1 % of requests answered 429
            for m, rates in (("grid", (400.0, 800.0, 1200.0, 1600.0)),
                             ("dynamic", (300.0, 400.0, 600.0, 800.0, 1200.0))):
                onset = None
                for rate in rates:
                    r = _open_loop(url, key, bodies[m], rate, max(2.0, seconds / 2))
                    out[f"{m}_ramp@{rate:.0f}"] = r
                    if r["shed_fraction"] >= 0.01:
                        onset = rate
                        break
                out[f"{m}_429_onset_rps"] = onset
            lat, rps, errors = asyncio.run(_load(url, key, bodies["grid"], 0.0, seconds / 2, 8))
            out["whatif_max_rps_8_clients"] = rps
            out["whatif_max_p99_ms"] = 1e3 * pct(lat, 99)
            # mean time a what-if spends in the pool (worker + hand-off), grid and dynamic
            # runs above, before the heavy Monte Carlo ones below
            m = httpx.get(f"{url}/metrics", timeout=10).text
            vals = dict(line.rsplit(" ", 1) for line in m.splitlines()
                        if line.startswith("marginproof_whatif_seconds_"))
            out["whatif_handler_ms"] = 1e3 * float(vals["marginproof_whatif_seconds_sum"]) / \
                float(vals["marginproof_whatif_seconds_count"])
            # /health while the what-if workers run heavy Monte Carlo what-ifs (capped params)
            mc = tomllib.loads((config_dir() / "models" / "mc.toml").read_text())
            mc["mc"]["log2_points"] = 12
            mc["mc"]["n_batches"] = 16
            heavy = {"model": "mc", "params": mc, "positions": pos, "trades": trades}
            out["health"] = _health_under_heavy(url, key, heavy, 2)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10,000 accounts, 4 s of load")
    ap.add_argument("--accounts", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--skip-engine", action="store_true")
    args = ap.parse_args()
    n = args.accounts or (10_000 if args.quick else 100_000)
    seconds = args.seconds or (4.0 if args.quick else 10.0)
    print(f"bench_service: {n:,} accounts, one day (2022-04-15) of hourly BTC+ETH ticks",
          flush=True)
    if args.skip_engine:
        _print_http(part_whatif(seconds))
        return
    e = part_engine(n)
    print(f"  account entries into the engine        {e['account_entries_per_s']:>12,.0f} /s")
    print(f"  accounts moved per BTC tick            {e['accounts_moved_per_btc_tick']:>12,.0f}")
    print(f"  engine tick->margin event  p50 / p99   {e['engine_p50_ms']:>8.1f} / "
          f"{e['engine_p99_ms']:.1f} ms   (target p99 < 100 ms)")
    print(f"  naive full revaluation per tick        {e['naive_tick_ms']:>12,.0f} ms   "
          f"-> incremental engine x{e['speedup_vs_naive']:,.0f} faster")
    print(f"  engine memory traffic                  {e['engine_gbs']:>12.2f} GB/s = "
          f"{100 * e['engine_fraction_of_probe']:.0f} % of the copy probe "
          f"({e['stream_probe_gbs']:.1f} GB/s)")
    print(f"  service path (log->engine->bus) p50/p99 {e['service_paced_p50_ms']:>7.1f} / "
          f"{e['service_paced_p99_ms']:.1f} ms per tick (paced)")
    paced = e["service_paced_ticks_per_s_with_history"]
    print(f"  sustained ticks/s incl. history rows   {paced:>12.2f} "
          f"(paced), {e['service_burst_ticks_per_s_with_history']:.2f} (max speed)")
    print(f"  history rows written (SQLite WAL)      {e['history_rows_written']:>12,.0f}")
    print(f"  log append (account entries)           {e['log_append_accounts_per_s']:>12,.0f} /s;"
          f" initial margining {e['setup_runner_s']:.1f} s")
    if not args.skip_http:
        _print_http(part_whatif(seconds))


def _print_http(w: dict[str, Any]) -> None:
    targets = {"grid@200": 10.0, "grid@500": 25.0}
    print(f"  what-if over HTTP (open loop, {OPEN_LOOP_CONNECTIONS} connections, load generator on "
          "the same 2 cores;"
          " per-key rate limit raised for the run)")
    for k in ("grid@200", "grid@500", "dynamic@100", "dynamic@200"):
        r = w[k]
        goal = targets.get(k)
        verdict = "" if goal is None else (f" (target p99 <= {goal:g} ms: "
                                           f"{'met' if r['p99_ms'] <= goal else 'MISSED'})")
        print(f"    {k.replace('@', ' @ '):16s} req/s: achieved {r['achieved']:7.1f}, p50 "
              f"{r['p50_ms']:6.1f} ms, p99 {r['p99_ms']:7.1f} ms{verdict}, 429 "
              f"{r['shed_429']:.0f}/{r['n']:.0f}, errors {r['errors']:.0f}")
    for m in ("grid", "dynamic"):
        steps = [k for k in w if k.startswith(f"{m}_ramp@")]
        ramp = ", ".join(f"{w[k]['rate']:.0f}: {w[k]['achieved']:.0f} ok-rate, "
                         f"{100 * w[k]['shed_fraction']:.0f} % 429" for k in steps)
        onset = w[f"{m}_429_onset_rps"]
        print(f"    {m} 429 onset (>= 1 % shed): "
              f"{'not reached' if onset is None else f'{onset:.0f} req/s'} [{ramp}]")
    print(f"    what-if max (grid, 8 closed-loop clients): {w['whatif_max_rps_8_clients']:.0f} "
          f"req/s, p99 {w['whatif_max_p99_ms']:.1f} ms; time in the worker pool "
          f"{w['whatif_handler_ms']:.2f} ms/request (mean over the runs above, queueing at "
          "saturation included)")
    hh = w["health"]
    print(f"    /health during 2 heavy mc what-ifs (log2_points 12, 16 batches, "
          f"{hh['heavy_s']:.1f} s): p50 {hh['health_p50_ms']:.1f} ms, p99 "
          f"{hh['health_p99_ms']:.1f} ms, max {hh['health_max_ms']:.1f} ms over "
          f"{hh['health_polls']:.0f} polls (target <= 50 ms: "
          f"{'met' if hh['health_p99_ms'] <= 50 else 'MISSED'}), errors "
          f"{hh['heavy_errors']:.0f}")


if __name__ == "__main__":
    main()
