"""A real ``marginproof`` service for browser tests: uvicorn on 127.0.0.1 (free port) in a thread,
embedded defaults (SQLite in a temporary directory, in-process bus), the replayed 2022-04-15
market, three accounts with keys, a reports directory and a proven epoch (``prove --epoch 1``).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from typer.testing import CliRunner

from marginproof.bootstrap import Container, bootstrap
from marginproof.cli.main import app as cli_app
from marginproof.config.settings import Settings
from marginproof.demo.book import demo_account
from marginproof.feeds.replay import ReplayDay, replay_day
from marginproof.service.app import create_app
from marginproof.service.auth import create_key
from marginproof.storage.proofstore import InputLogWriter, ProofStore, default_params
from marginproof.web.config import WebSettings

ACCOUNTS = ("alice", "bob", "carol")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ConsoleEnv:
    base_url: str
    container: Container
    operator_key: str
    keys: dict[str, str]
    day: ReplayDay
    proofs_dir: Path
    reports_dir: Path
    positions: dict[str, dict[str, float]]
    collateral: dict[str, dict[str, float]]
    _next_tick: int = 0
    server: Any = None
    thread: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def op(self) -> dict[str, str]:
        return {"X-API-Key": self.operator_key}

    def get(self, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
        return httpx.get(self.base_url + path, headers={"X-API-Key": key or self.operator_key},
                         timeout=30, **kw)

    def post(self, path: str, body: Any, key: str | None = None) -> httpx.Response:
        return httpx.post(self.base_url + path, json=body,
                          headers={"X-API-Key": key or self.operator_key}, timeout=60)

    def latest_seq(self, account_id: str) -> int:
        row = self.container.repo.latest_margin(account_id)
        return -1 if row is None else int(row["seq"])

    def wait_margin(self, account_id: str, min_seq: int, timeout_s: float = 30.0) -> int:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            s = self.latest_seq(account_id)
            if s >= min_seq:
                return s
            time.sleep(0.02)
        raise AssertionError(f"no margin for {account_id} at seq >= {min_seq}")

    def replay_tick(self, underlying: str = "BTC") -> int:
        """Append the next replayed hourly tick of ``underlying``; returns its log seq."""
        ticks = [t for t in self.day.tick_entries() if t.body["underlying"] == underlying]
        entry = ticks[self._next_tick % len(ticks)]
        self._next_tick += 1
        (res,) = self.container.gateway.append([entry])
        assert not res.duplicate
        return int(res.seq)

    def run_on_server(self, coro: Any, timeout_s: float = 60.0) -> Any:
        """Run ``coro`` on the service's event loop (bus, evaluator) and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.extra["loop"]).result(timeout_s)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(timeout=30)


def _write_reports(d: Path) -> None:
    (d / "backtest" / "grid-btc-2022").mkdir(parents=True)
    (d / "stress").mkdir(parents=True)
    (d / "backtest" / "grid-btc-2022" / "report.md").write_text(
        "# Grid backtest, BTC 2022\n\n"
        "Walk-forward backtest of the `grid` model on daily BTC closes.\n\n"
        "| metric | value |\n|---|---|\n| days | 365 |\n| exceptions | 3 |\n"
        "| Kupiec p-value | 0.41 |\n| traffic light | green |\n\n"
        "![exceptions per month](chart.svg)\n")
    (d / "backtest" / "grid-btc-2022" / "chart.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="240" height="60"><rect width="240" '
        'height="60" fill="#e5effa"/><rect x="10" y="20" width="30" height="30" fill="#0b5cad"/>'
        '<rect x="50" y="40" width="30" height="10" fill="#0b5cad"/></svg>')
    (d / "stress" / "ftx-week.html").write_text(
        "<!doctype html><html><head><title>Stress: FTX week 2022</title>"
        "<style>body{font-family:sans-serif} td{padding:4px}</style></head><body>"
        "<h1>Stress: FTX week 2022</h1><p id='verdict'>Worst loss covered by IM on 99.2 % "
        "of accounts.</p><table><tr><td>accounts</td><td>1200</td></tr></table>"
        "<script>document.body.dataset.ran = 'yes'</script></body></html>")
    (d / "stress" / "cascade.json").write_text(json.dumps(
        [{"step": 1, "liquidated": 3, "price_impact_pct": -1.2},
         {"step": 2, "liquidated": 7, "price_impact_pct": -2.9}]))


def _prove_epoch(store_dir: Path, day: ReplayDay, positions: dict[str, dict[str, float]],
                 collateral: dict[str, dict[str, float]]) -> None:
    store = ProofStore(store_dir)
    writer = InputLogWriter(store, store.operator_keys(create=True))
    writer.append_genesis()
    writer.append_params(default_params("grid", depth_min=4, privacy=True,
                                        venue="marginproof-e2e"))
    writer.append_market(day.market)
    writer.append_positions(positions)
    writer.append_balances(collateral, {"BTC": 8, "ETH": 9, "USDC": 6, "USDT": 6})
    writer.cut(1, day.market.timestamp.isoformat().replace("+00:00", "Z"))
    res = CliRunner().invoke(cli_app, ["prove", "--epoch", "1", "--out", str(store_dir),
                                       "--workers", "1"])
    assert res.exit_code == 0, res.output


def start_console(tmp: Path) -> ConsoleEnv:
    """Start the service with the console and seed it (see module docstring)."""
    settings = Settings(database_url=f"sqlite:///{tmp / 'svc.sqlite'}",
                        params_min_notice_s=3600.0, engine_model="grid")
    container = bootstrap(settings)
    op_key, _ = create_key(container.repo, "operator", None, "risk-desk", "e2e",
                           container.clock_ms())
    day = replay_day("2022-04-15", ("BTCUSDT", "ETHUSDT"), hours=24)
    reports = tmp / "reports"
    _write_reports(reports)
    acct, _ = demo_account()
    base_pos = {p.instrument.name: p.quantity for p in acct.portfolio.positions}
    base_pos = {k: v for k, v in base_pos.items() if k in day.market.implied_vols
                or "-" not in k or k.endswith("PERPETUAL")}
    positions = {
        "alice": base_pos,
        "bob": {"BTC-PERPETUAL": -20000.0, "ETH_USDC-PERPETUAL": 10.0},
        "carol": {"BTC-PERPETUAL": 250000.0},
    }
    collateral = {"alice": {"BTC": 1.0, "USDC": 50000.0}, "bob": {"USDC": 20000.0},
                  "carol": {"BTC": 0.2, "USDC": 1000.0}}
    proofs = tmp / "proofs"
    _prove_epoch(proofs, day, positions, collateral)

    app = create_app(container)
    app.state.web_settings = WebSettings(reports_dir=str(reports), proofs_dir=str(proofs),
                                         stream_flush_s=0.1)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            ws="auto", lifespan="on")
    server = uvicorn.Server(config)
    loops: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        loops.append(asyncio.get_running_loop())  # tests run coroutines on it (run_on_server)
        await server.serve()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True,
                              name="uvicorn-e2e")
    thread.start()
    base = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    else:
        raise AssertionError("the service did not start")
    env = ConsoleEnv(base, container, op_key, {}, day, proofs, reports, positions, collateral,
                     server=server, thread=thread)
    (seed,) = container.gateway.append([day.seed_entry()])
    for a in ACCOUNTS:
        r = env.post("/accounts", {"account_id": a, "positions": positions[a],
                                   "collateral": collateral[a]})
        assert r.status_code == 202, r.text
    for a in ACCOUNTS:
        r = env.post("/keys", {"scope": "account", "account_id": a, "label": a})
        assert r.status_code == 201, r.text
        env.keys[a] = r.json()["key"]
    last = container.repo.last_seq()
    for a in ACCOUNTS:
        env.wait_margin(a, 1)
    env.extra["seed_seq"] = seed.seq
    env.extra["app"] = app
    env.extra["loop"] = loops[0]
    env.extra["accounts_seq"] = last
    return env


def schedule_params_change(env: ConsoleEnv) -> dict[str, Any]:
    """Schedule the shipped grid parameters again, two hours ahead (an alert on the dashboard)."""
    from datetime import UTC, datetime, timedelta

    params = dict(env.container.engine_model().params)
    when = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    r = httpx.put(env.base_url + "/parameters/grid", json={"params": params, "effective_at": when},
                  headers=env.op(), timeout=30)
    assert r.status_code == 202, r.text
    return r.json()  # type: ignore[no-any-return]


__all__ = ["ACCOUNTS", "ConsoleEnv", "schedule_params_change", "start_console"]
