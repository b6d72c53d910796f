"""Live engine (issue 16): tick -> margin latency, recalibration, memory, for many accounts.

Workload: N accounts x 5 positions on BTC and ETH over the shipped 2022-04-15 market (replay
seed): every account holds the BTC inverse perpetual (so every BTC tick moves every account)
plus 4 positions drawn (seeded) from 30 BTC options and 30 ETH options nearest the money (expiry
>= 29APR22), BTC and ETH futures (29APR22, 24JUN22), the ETH inverse and linear perpetuals and
the BTC linear perpetual; USDC and BTC collateral. The shipped chain quotes no ETH options: the
ETH options (and forwards) are the BTC surface and forward curve at equal moneyness (vols x1.15),
added to the market snapshot the engine is seeded with. Models: ``dynamic`` with its shipped
parameters (FHS window 500, the stressed-period set, the 10-year floor set and the historical
and hypothetical stress sets, add-ons) and ``grid`` beside it, each run by the real
:class:`MarginEngine` with the service's margin path (``live_margin_path``: APC live path then
hold-never-lower), each size in its own process.

* **load**: the account entries go in through ``MarginEngine.apply_accounts`` (the bulk path:
  one re-margin at the end); ``apply`` one by one re-margins every account as it arrives and
  costs O(N^2) (its per-entry time is measured on the first accounts and printed);
* **tick -> margin latency**: a BTC index tick (within one sampling interval, so no
  recalibration) arrives as a feed dict, becomes a log entry, ``engine.apply`` margins the N
  accounts it moved, and the margin batch and the events are published on the in-process bus
  (``InProcessBus``, the service's embedded bus) as ``EngineRunner`` publishes them (JSON
  summary + the object); latency = arrival -> the subscriber has received the batch. The
  durable input-log append and the history commit are not in it (``bench_service``);
* **floor**: the scenario rows every position must read -- the engine's own unit P&L table and
  account entries of that tick, every position's row accumulated into its account's loss vector
  with no tail selection (``gather_floor``), timed alone; fraction = floor / p50 latency;
* **ticks/s sustained**: ticks back to back (the next one arrives as soon as the previous batch
  is published), and what happens to ticks that arrive faster: the engine and runner do not
  conflate (see the printed note);
* **recalibration**: a BTC tick that starts a new sampling interval (live EWMA vol sampled ->
  new core scenario set, valuation clock stepped -> every account re-margined on both
  underlyings), tick -> batch on the bus; ratio to a batch recompute of the same accounts:
  ``model.margin`` of the bound model per account (``dynamic`` has no vectorised batch path:
  timed on a sample and scaled to N; its figures are checked against the engine's) and for
  ``grid`` its vectorised ``grid_margin_batch`` over every account (resolve + unit P&L + kernel);
* **memory**: RSS (``/proc/self/status``) of each process after loading and ticking, and the
  engine's share (RSS after minus RSS before building the engine); log-log slopes of RSS and of
  the p50 latency against accounts.

The machine has 2 cores shared with other jobs: the load average is printed before and after.
Run: ``python benchmarks/bench_live.py [--quick] [--json out]``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _roofline import write_json  # noqa: E402
from numba import njit, prange  # noqa: E402

from marginproof.apc.stage import live_margin_path  # noqa: E402
from marginproof.bus.inprocess import InProcessBus  # noqa: E402
from marginproof.engine import EngineConfig, EntryKind, LogEntry, MarginEngine, Tick  # noqa: E402
from marginproof.feeds.replay import replay_day  # noqa: E402
from marginproof.instruments.portfolio import Portfolio  # noqa: E402
from marginproof.instruments.resolved import resolve  # noqa: E402
from marginproof.io.formats import market_to_dict  # noqa: E402
from marginproof.market.snapshot import MarketSnapshot  # noqa: E402
from marginproof.models.batch import CsrBook, grid_margin_batch  # noqa: E402
from marginproof.models.registry import get_model  # noqa: E402
from marginproof.risk.history import asof_date  # noqa: E402

HOUR = 3_600_000
PREFIX = "mp"
TARGET_P99_MS = {"dynamic": 100.0, "grid": 30.0}
SHORT_EXPIRIES = ("15APR22", "16APR22", "17APR22", "22APR22")


def rss_mib() -> float:
    """Resident set size of this process now (MiB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


# -- workload ---------------------------------------------------------------------------------
def bench_market() -> MarketSnapshot:
    """The shipped 2022-04-15 seed with perp marks and ETH options/forwards (module docstring)."""
    m = replay_day("2022-04-15", ("BTCUSDT", "ETHUSDT")).market
    s_btc, s_eth = m.index("BTC"), m.index("ETH")
    vols = dict(m.implied_vols)
    fw_btc = dict(m.forwards["BTC"])
    for n, v in m.implied_vols.items():
        _, exp, k, cp = n.split("-")
        vols[f"ETH-{exp}-{round(float(k) * s_eth / s_btc / 25) * 25}-{cp}"] = v * 1.15
    marks = {**m.mark_prices, "BTC-PERPETUAL": s_btc, "BTC_USDC-PERPETUAL": s_btc,
             "ETH-PERPETUAL": s_eth, "ETH_USDC-PERPETUAL": s_eth}
    return MarketSnapshot(m.timestamp, m.index_prices,
                          {"BTC": fw_btc, "ETH": {e: f * s_eth / s_btc for e, f in fw_btc.items()}},
                          marks, vols, m.rates, m.funding_rates)


def _near_money(m: MarketSnapshot, und: str, n: int) -> list[str]:
    s = m.index(und)
    cand = []
    for k in m.implied_vols:
        parts = k.split("-")
        if parts[0] == und and parts[1] not in SHORT_EXPIRIES:
            cand.append((abs(np.log(float(parts[2]) / s)), k))
    return sorted(k for _, k in sorted(cand)[:n])


def account_bodies(n: int, m: MarketSnapshot, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` account bodies of 5 positions each (module docstring)."""
    pool = [*_near_money(m, "BTC", 30), *_near_money(m, "ETH", 30), "BTC-29APR22", "BTC-24JUN22",
            "ETH-29APR22", "ETH-24JUN22", "ETH-PERPETUAL", "ETH_USDC-PERPETUAL",
            "BTC_USDC-PERPETUAL"]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        pos = {"BTC-PERPETUAL": float(rng.integers(-50, 51) or 1) * 1000.0}
        for j in rng.choice(len(pool), 4, replace=False):
            name = pool[int(j)]
            q = float(rng.integers(-20, 21) or 1)
            inverse = "_" not in name and name.count("-") == 1  # inverse perp/future: USD
            pos[name] = q * (1000.0 if inverse else 0.5 if name.count("-") == 3 else 1.0)
        out.append({"account_id": f"acct-{i:06d}", "positions": pos,
                    "collateral": {"USDC": float(rng.integers(0, 200)) * 1000.0,
                                   "BTC": float(rng.integers(0, 20)) / 10.0}})
    return out


class Feed:
    """Gap-free log entries and BTC index ticks (random walk, 0.1 % steps, 1 s apart)."""

    def __init__(self, t0_ms: int, btc: float) -> None:
        self.seq = 0
        self.t_ms = t0_ms
        self.px = btc
        self.rng = np.random.default_rng(5)

    def entry(self, kind: EntryKind, body: dict[str, Any], at_ms: int | None = None
              ) -> LogEntry:
        self.seq += 1
        return LogEntry(self.seq, kind, self.t_ms + 5 if at_ms is None else at_ms, "bench",
                        body)

    def tick(self, dt_ms: int = 1000) -> dict[str, Any]:
        """The next BTC tick as the feed delivers it (a dict), ``dt_ms`` after the last."""
        self.t_ms += dt_ms
        self.px *= float(np.exp(self.rng.normal(0.0, 0.001)))
        return Tick("bench", "bench:BTC", "BTC", self.t_ms, index_price=round(self.px, 2)
                    ).to_dict()

    def next_interval(self) -> dict[str, Any]:
        """A tick just after the next sampling-interval boundary (hour)."""
        nxt = (self.t_ms // HOUR + 1) * HOUR + 500
        return self.tick(nxt - self.t_ms)


def build(model_name: str, n: int, per_entry_sample: int = 0
          ) -> tuple[MarginEngine, Feed, dict[str, float]]:
    m = bench_market()
    model = get_model(model_name)
    bodies = account_bodies(n, m)
    info: dict[str, float] = {}
    rss0 = rss_mib()
    eng = MarginEngine(model, EngineConfig(margin_path=live_margin_path))
    t0 = int(m.timestamp.timestamp() * 1000)
    feed = Feed(t0, m.index("BTC"))
    eng.apply(feed.entry(EntryKind.MARKET, market_to_dict(m), t0))
    if per_entry_sample:  # the normal entry path, on the first accounts (then bulk for the rest)
        t = time.perf_counter()
        for b in bodies[:per_entry_sample]:
            eng.apply(feed.entry(EntryKind.ACCOUNT, b, t0 + 1))
        info["apply_one_by_one_ms_per_account"] = 1e3 * (time.perf_counter() - t) / \
            per_entry_sample
        bodies = bodies[per_entry_sample:]
    t = time.perf_counter()
    out = eng.apply_accounts([feed.entry(EntryKind.ACCOUNT, b, t0 + 1) for b in bodies])
    info["bulk_load_s"] = time.perf_counter() - t
    assert out.batch is not None and len(eng.books) == n
    info["held_after_load"] = float(eng.held[:n].sum())
    info["rss_before_engine_mib"] = rss0
    feed.t_ms = t0 + 60_000
    return eng, feed, info


# -- the tick path, on the bus ----------------------------------------------------------------
class BusPath:
    """``engine.apply`` then publish as :class:`EngineRunner` does; a subscriber receives."""

    def __init__(self, eng: MarginEngine, feed: Feed) -> None:
        self.eng = eng
        self.feed = feed
        self.bus = InProcessBus()
        self.got: dict[int, float] = {}
        self.arrived = asyncio.Event()

    async def start(self) -> None:
        async def on_batch(msg: Any) -> None:
            self.got[int(msg.obj.seq)] = time.perf_counter()
            self.arrived.set()

        await self.bus.subscribe(f"{PREFIX}.events.*.margin_batch", on_batch, "bench")

    async def publish(self, out: Any) -> None:
        p = self.eng.config.partition
        if out.batch is not None:
            b = out.batch
            await self.bus.publish(f"{PREFIX}.events.{p}.margin_batch",
                                   json.dumps(b.summary()).encode(), b.event_id, b)
        for ev in out.events:
            await self.bus.publish(f"{PREFIX}.events.{p}.{ev.type}",
                                   json.dumps(ev.to_dict()).encode(), ev.event_id, ev)

    async def one(self, body: dict[str, Any]) -> tuple[float, int, str]:
        """One tick: arrival -> batch received on the bus; ``(seconds, accounts, cause)``."""
        t_arr = time.perf_counter()
        self.arrived.clear()
        out = self.eng.apply(self.feed.entry(EntryKind.TICK, body))
        await self.publish(out)
        if out.batch is None:
            return float("nan"), 0, ""
        while out.seq not in self.got:
            await self.arrived.wait()
            self.arrived.clear()
        return self.got[out.seq] - t_arr, len(out.batch), out.batch.cause


# -- floor -----------------------------------------------------------------------------------
@njit(cache=True, parallel=True)
def gather_floor(indptr: np.ndarray, inst: np.ndarray, qty: np.ndarray, table: np.ndarray,
                 n_chunks: int, out: np.ndarray) -> None:
    """Every position's row of ``table`` accumulated into its row's loss vector (the engine
    kernel's gathers and adds, same order and chunking, no tail selection)."""
    n_rows = indptr.shape[0] - 1
    n_cols = table.shape[1]
    chunk = (n_rows + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        buf = np.zeros(n_cols)
        acc = 0.0
        for a in range(c * chunk, min(n_rows, c * chunk + chunk)):
            for p in range(indptr[a], indptr[a + 1]):
                q = qty[p]
                row = table[inst[p]]
                for s in range(n_cols):
                    buf[s] -= q * row[s]
            acc += buf[a % n_cols]
        out[c] = acc


def floor_inputs(eng: MarginEngine) -> list[tuple[np.ndarray, ...]]:
    """(indptr, inst, qty, table) of every pass the model's kernel makes over the accounts."""
    ctx = eng.context()
    b = eng.books
    n = len(b)
    rows = np.arange(n, dtype=np.int64)
    out = []
    ad: Any = eng.adapter
    if ad.kind == "scenario":
        assert ctx.snapshot is not None
        asof = asof_date(ctx.snapshot.timestamp)
        cid = b.combo_of[rows]
        for ci in np.unique(cid).tolist():
            sel = rows[cid == ci]
            c = ad.combo(ctx, b.combos[ci], asof)
            table, offsets = ad._table(ctx, c)
            er, ei, eq, _ = ad._entries(ctx, sel, c, offsets)
            ip = np.concatenate([[0], np.cumsum(np.bincount(er, minlength=sel.size))])
            out.append((ip.astype(np.int64), ei, eq, table))
    else:
        for u in b.und_names:
            book = b.books[u]
            q, _ = book.csr()
            out.append((q.indptr.astype(np.int64), q.indices.astype(np.int64), q.data,
                        ad.columns(ctx, u)))
    return out


def time_floor(inputs: list[tuple[np.ndarray, ...]], repeats: int = 20
               ) -> tuple[float, float, float]:
    """Best time of the gather floor over every pass with all numba threads and with one (on a
    shared machine a descheduled thread stalls a parallel pass: the floor is the lower), and
    the bytes of rows read."""
    import numba

    n_chunks = 16 * (os.cpu_count() or 1)
    res = np.zeros(n_chunks)
    threads = numba.get_num_threads()
    best = {}
    for nt in (threads, 1):
        numba.set_num_threads(nt)
        for ip, ins, q, t in inputs:
            gather_floor(ip, ins, q, t, n_chunks, res)
        b = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for ip, ins, q, t in inputs:
                gather_floor(ip, ins, q, t, n_chunks, res)
            b = min(b, time.perf_counter() - t0)
        best[nt] = b
    numba.set_num_threads(threads)
    nbytes = float(sum(ins.size * t.shape[1] * 8 for _, ins, _, t in inputs))
    return best[threads], best[1], nbytes


# -- batch recompute ----------------------------------------------------------------------------
def _grid_batch(eng: MarginEngine, model: Any, snap: MarketSnapshot) -> np.ndarray:
    """Grid IM of every account from scratch: resolve, unit P&L, the vectorised kernel."""
    b = eng.books
    names = sorted({x for u in b.und_names for x in b.books[u].names})
    rb = resolve(Portfolio.of({x: 1.0 for x in names}), snap)
    col = {x: k for k, x in enumerate(rb.names)}
    acc, inst, qty = [], [], []
    for u in b.und_names:
        bk = b.books[u]
        m = bk.n_entries
        acc.append(bk.row_acc[bk.e_row[:m]])
        inst.append(np.array([col[x] for x in bk.names], np.int32)[bk.e_col[:m]])
        qty.append(bk.e_val[:m])
    book = CsrBook.from_positions(np.concatenate(acc), np.concatenate(inst),
                                  np.concatenate(qty), rb.underlying_idx, len(b))
    return np.asarray(grid_margin_batch(model, rb, book).initial_margin)


def batch_recompute(eng: MarginEngine, sample: int) -> dict[str, float]:
    """The same accounts margined in one run by the model's batch path (see docstring)."""
    n = len(eng.books)
    snap = eng.valuation_snapshot()
    assert snap is not None
    model: Any = eng.live_model
    if model.name == "grid":
        best, im = float("inf"), np.zeros(0)
        for _ in range(3):  # the first call compiles the kernel: best of 3
            t = time.perf_counter()
            im = _grid_batch(eng, model, snap)
            best = min(best, time.perf_counter() - t)
        rel = np.abs(im - eng.figure_im[:n]) / np.maximum(np.abs(eng.figure_im[:n]), 1.0)
        return {"batch_s": best, "batch_sampled": 0.0, "batch_max_rel_diff": float(rel.max())}
    k = min(sample, n)
    idx = np.linspace(0, n - 1, k).astype(np.int64)
    pfs = [eng.books.portfolio(int(i)) for i in idx]
    model.margin(pfs[0], snap)  # warm caches (scenario sets), as the engine has them warm
    t = time.perf_counter()
    ims = [model.margin(p, snap).initial_margin for p in pfs]
    dt = (time.perf_counter() - t) / k * n
    rel = np.abs(np.array(ims) - eng.figure_im[idx]) / np.maximum(eng.figure_im[idx], 1.0)
    return {"batch_s": dt, "batch_sampled": float(k), "batch_max_rel_diff": float(rel.max())}


# -- one size, one model, in this process -----------------------------------------------------
def profile_tick(path: BusPath, loop: asyncio.AbstractEventLoop) -> list[tuple[str, float]]:
    pr = cProfile.Profile()
    pr.enable()
    loop.run_until_complete(path.one(path.feed.tick()))
    pr.disable()
    st = pstats.Stats(pr)
    rows = []
    for (file, line, fn), (_, _, tt, _, _) in st.stats.items():  # type: ignore[attr-defined]
        rows.append((f"{Path(file).name}:{line}({fn})", float(tt)))
    rows.sort(key=lambda r: -r[1])
    return rows[:8]


def worker(model_name: str, n: int, n_ticks: int, full: bool, sample: int) -> dict[str, Any]:
    eng, feed, res = build(model_name, n, per_entry_sample=200 if full else 0)
    loop = asyncio.new_event_loop()
    path = BusPath(eng, feed)
    loop.run_until_complete(path.start())
    for _ in range(3):  # warm-up (compiled kernels, caches)
        loop.run_until_complete(path.one(feed.tick()))
    lat, moved = [], []
    t_all = time.perf_counter()
    for _ in range(n_ticks):  # back to back: the next tick arrives when the last is published
        dt, k, cause = loop.run_until_complete(path.one(feed.tick()))
        assert cause == "tick:BTC", cause
        lat.append(dt)
        moved.append(k)
    t_all = time.perf_counter() - t_all
    res.update(accounts=n, ticks=n_ticks, p50_ms=1e3 * pct(lat, 50), p99_ms=1e3 * pct(lat, 99),
               max_ms=1e3 * max(lat), moved_per_tick=float(min(moved)),
               ticks_per_s=n_ticks / t_all, accounts_per_s=n_ticks * n / t_all)
    res["rss_mib"] = rss_mib()
    res["rss_hwm_mib"] = hwm_mib()
    res["engine_rss_mib"] = res["rss_mib"] - res["rss_before_engine_mib"]
    if not full:
        loop.run_until_complete(path.bus.close())
        loop.close()
        return res
    t_all, t_one, nbytes = time_floor(floor_inputs(eng))
    t_floor = min(t_all, t_one)
    res.update(floor_ms=1e3 * t_floor, floor_all_threads_ms=1e3 * t_all,
               floor_one_thread_ms=1e3 * t_one, floor_rows_gb=nbytes / 1e9,
               floor_gbs=nbytes / t_floor / 1e9, fraction_of_floor=t_floor / pct(lat, 50),
               n_columns=float(max(t.shape[1] for *_, t in floor_inputs(eng))))
    res["profile"] = profile_tick(path, loop)
    # recalibration: ticks that start a new sampling interval (new vol, new scenario sets)
    rec = []
    for _ in range(3):
        dt, k, cause = loop.run_until_complete(path.one(feed.next_interval()))
        assert k == n, (k, n)
        rec.append(dt)
        res["recalibration_cause"] = cause
        loop.run_until_complete(path.one(feed.tick()))  # one ordinary tick in between
    res["recalibration_s"] = statistics.median(rec)
    res["recalibration_max_s"] = max(rec)
    t = time.perf_counter()
    out = eng.apply(feed.entry(EntryKind.RECALIBRATE, {"reason": "bench", "changed_by": "b"}))
    loop.run_until_complete(path.publish(out))
    res["recalibrate_entry_s"] = time.perf_counter() - t
    res.update(batch_recompute(eng, sample))
    res["recalibration_ratio_to_batch"] = res["recalibration_s"] / res["batch_s"]
    res["rss_mib"] = rss_mib()
    res["rss_hwm_mib"] = hwm_mib()
    res["engine_rss_mib"] = res["rss_mib"] - res["rss_before_engine_mib"]
    loop.run_until_complete(path.bus.close())
    loop.close()
    return res


def run_worker(model_name: str, n: int, n_ticks: int, full: bool, sample: int,
               timeout_s: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tf:
        out = tf.name
    cmd = [sys.executable, __file__, "--worker", model_name, "--accounts", str(n),
           "--ticks", str(n_ticks), "--sample", str(sample), "--json", out] + \
        (["--full-measure"] if full else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode:
        raise RuntimeError(f"worker {model_name} {n} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(Path(out).read_text()))


def slope(xs: list[float], ys: list[float]) -> float:
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


CONFLATION = (
    "conflation: none. The engine applies every logged tick in order (entries are gap-free and "
    "replayed bit-identically after a crash), and EngineRunner reads the durable input log up "
    "to commit_every entries per step; the in-process bus's subscription queues are unbounded "
    "asyncio queues. Ticks that arrive faster than the engine processes them wait in the input "
    "log (bounded only by disk) and are each applied later: queued without bound, never "
    "conflated. The ticks/s figure is the back-to-back processing rate, i.e. the highest "
    "arrival rate that does not build a backlog.")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--accounts", type=int, default=None)
    ap.add_argument("--ticks", type=int, default=None)
    ap.add_argument("--sample", type=int, default=None)
    ap.add_argument("--full-measure", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        r = worker(args.worker, args.accounts, args.ticks, args.full_measure, args.sample)
        write_json(r, args.json)
        return
    load0 = os.getloadavg()
    sizes = [2_000, 5_000, 10_000] if args.quick else [10_000, 30_000, 100_000]
    n_big = args.accounts or sizes[-1]
    sizes[-1] = n_big
    ticks = {"dynamic": 10 if args.quick else 40, "grid": 30 if args.quick else 100}
    sample = 30 if args.quick else 200
    print(f"bench_live: {n_big:,} accounts x 5 positions (BTC/ETH options, futures, perps), "
          f"live engine + in-process bus; load before {load0[0]:.2f} {load0[1]:.2f} "
          f"{load0[2]:.2f} (1/5/15 min; {os.cpu_count()} cores, shared)")
    res: dict[str, Any] = {"accounts": n_big, "load_before": load0[0]}
    per_size: dict[str, list[dict[str, Any]]] = {}
    for model_name in ("dynamic", "grid"):
        runs = []
        for n in sizes:
            full = n == n_big
            r = run_worker(model_name, n, ticks[model_name] if full else max(5, ticks[
                model_name] // 4), full, sample, 3600)
            runs.append(r)
            print(f"  [{model_name} {n:>7,} accounts] tick p50 {r['p50_ms']:8.1f} ms, p99 "
                  f"{r['p99_ms']:8.1f} ms, RSS {r['rss_mib']:7.0f} MiB (engine "
                  f"{r['engine_rss_mib']:6.0f} MiB), bulk load {r['bulk_load_s']:.1f} s",
                  flush=True)
        per_size[model_name] = runs
    for model_name, runs in per_size.items():
        big = runs[-1]
        k = model_name
        res[f"{k}_p50_ms"] = big["p50_ms"]
        res[f"{k}_p99_ms"] = big["p99_ms"]
        res[f"{k}_ticks_per_s"] = big["ticks_per_s"]
        res[f"{k}_accounts_per_s"] = big["accounts_per_s"]
        res[f"{k}_floor_ms"] = big["floor_ms"]
        res[f"{k}_fraction_of_floor"] = big["fraction_of_floor"]
        res[f"{k}_recalibration_s"] = big["recalibration_s"]
        res[f"{k}_recalibration_ratio_to_batch"] = big["recalibration_ratio_to_batch"]
        res[f"{k}_batch_s"] = big["batch_s"]
        res[f"{k}_rss_gib"] = big["rss_mib"] / 1024.0
        res[f"{k}_engine_rss_gib"] = big["engine_rss_mib"] / 1024.0
        xs = [float(r["accounts"]) for r in runs]
        res[f"{k}_slope_latency"] = slope(xs, [r["p50_ms"] for r in runs])
        res[f"{k}_slope_rss"] = slope(xs, [r["rss_mib"] for r in runs])
        res[f"{k}_slope_engine_rss"] = slope(xs, [max(r["engine_rss_mib"], 1.0) for r in runs])
        tgt = TARGET_P99_MS[k]
        print(f"{k}: {n_big:,} accounts, {big['n_columns']:.0f} scenario columns per position "
              f"row, every account moved by each BTC tick ({big['moved_per_tick']:,.0f})")
        if "apply_one_by_one_ms_per_account" in big:
            print(f"  load: apply() one by one {big['apply_one_by_one_ms_per_account']:.2f} ms"
                  f" per account on the first 200 (O(N^2): each re-margin scans the touched "
                  f"books), bulk apply_accounts {big['bulk_load_s']:.1f} s for all")
        print(f"  tick -> margin on the bus   p50 {big['p50_ms']:8.1f} ms   p99 "
              f"{big['p99_ms']:8.1f} ms   (target p99 <= {tgt:g} ms: "
              f"{'met' if big['p99_ms'] <= tgt else 'NOT met'}; {big['ticks']} ticks)")
        print(f"  floor (rows every position reads, {big['floor_rows_gb']:.2f} GB, timed alone)"
              f" {big['floor_ms']:.1f} ms = {big['floor_gbs']:.0f} GB/s (all threads "
              f"{big['floor_all_threads_ms']:.1f} ms, one thread {big['floor_one_thread_ms']:.1f}"
              f" ms): tick at {big['fraction_of_floor']:.0%} of it")
        print(f"  sustained {big['ticks_per_s']:.2f} ticks/s = {big['accounts_per_s']:,.0f} "
              "account margins/s (back to back)")
        print(f"  recalibration ({big['recalibration_cause']}) {big['recalibration_s']*1e3:.0f}"
              f" ms (max {big['recalibration_max_s']*1e3:.0f}); recalibrate entry (new draw) "
              f"{big['recalibrate_entry_s']*1e3:.0f} ms")
        how = (f"model.margin per account, {big['batch_sampled']:.0f} sampled, scaled"
               if big["batch_sampled"] else "grid_margin_batch, vectorised, all accounts")
        print(f"  batch recompute of the same accounts ({how}) {big['batch_s']:.2f} s; "
              f"max rel. diff to the engine's figures {big['batch_max_rel_diff']:.1e}; "
              f"recalibration / batch = {big['recalibration_ratio_to_batch']:.3f} (target <= 1:"
              f" {'met' if big['recalibration_ratio_to_batch'] <= 1.0 else 'NOT met'})")
        print(f"  RSS {big['rss_mib']:.0f} MiB (peak {big['rss_hwm_mib']:.0f}), engine share "
              f"{big['engine_rss_mib']:.0f} MiB (target <= 2048 MiB RSS: "
              f"{'met' if big['rss_mib'] <= 2048 else 'NOT met'})")
        print(f"  log-log slope vs accounts ({', '.join(f'{int(x):,}' for x in xs)}): p50 "
              f"latency {res[f'{k}_slope_latency']:.2f}, RSS {res[f'{k}_slope_rss']:.2f}, "
              f"engine RSS {res[f'{k}_slope_engine_rss']:.2f}")
        tot = sum(t for _, t in big["profile"])
        print("  where one tick's time goes (cProfile, own time): " + "; ".join(
            f"{name} {1e3 * t:.0f} ms" for name, t in big["profile"][:6]) +
            f" (top 6 of {1e3 * tot:.0f} ms in the top 8)")
    print(CONFLATION)
    load1 = os.getloadavg()
    res["load_after"] = load1[0]
    print(f"load after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    write_json(res, args.json)


if __name__ == "__main__":
    main()
