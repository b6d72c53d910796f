"""Websocket feed clients against a local server playing recorded venue frames (127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from marginproof.bootstrap import bootstrap
from marginproof.config.settings import Settings
from marginproof.engine.entries import EntryKind
from marginproof.feeds.chains import market_from_chain
from marginproof.feeds.recorded import binance_messages, deribit_messages, deribit_notification
from marginproof.feeds.runtime import StaleWatchdog
from marginproof.feeds.server import RecordedVenueServer
from marginproof.feeds.websocket import BinanceClient, DeribitClient
from marginproof.io import datasets
from marginproof.io.formats import market_to_dict
from marginproof.storage.base import NewEntry


async def _drained(client, n_frames: int, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until the client has handled every frame (+1 for the subscription reply)."""
    for _ in range(int(timeout_s / 0.05)):
        if client.stats.frames >= n_frames + 1:
            await asyncio.sleep(0.05)
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"client handled {client.stats.frames} of {n_frames + 1} frames")


def _container(tmp_path: Path, seed: bool = True):  # type: ignore[no-untyped-def]
    # recorded frames carry their historical exchange times: no live-latency check here
    c = bootstrap(Settings(database_url=f"sqlite:///{tmp_path / 'feed.sqlite'}",
                           max_tick_delay_ms=10**13))
    if seed:  # the operator's reference market (the guard range-checks first prints on it)
        seed_market = market_from_chain(datasets.option_chain("2022-04-15"))
        c.gateway.append([NewEntry(EntryKind.MARKET, market_to_dict(seed_market), "operator")])
    return c


def test_deribit_client_logs_ticks_that_margin_an_option_book(tmp_path: Path) -> None:
    frames = deribit_messages("2022-04-15", max_options=10)
    option = json.loads(frames[1][1])["params"]["data"]["instrument_name"]
    c = _container(tmp_path)

    async def main() -> None:
        server = await RecordedVenueServer("deribit", frames).start()
        c.gateway.append([NewEntry(EntryKind.ACCOUNT, {
            "account_id": "opt-desk", "positions": {option: -3.0, "BTC-PERPETUAL": 10_000},
            "collateral": {"BTC": 1.0}}, "test")])
        client = DeribitClient(server.url, [ch for ch, _ in frames], c.gateway, c.metrics)
        client.start()
        await asyncio.wait_for(server.done.wait(), 20)
        await _drained(client, len(frames))
        await client.stop()
        await server.stop()
        assert client.stats.rejected == 0 and client.stats.ticks == len(frames)

    asyncio.run(main())
    runner = c.runners[0]
    runner.run_until_idle()
    m = runner.engine.account_margin("opt-desk")
    assert m is not None and m.initial_margin > 0 and not m.held
    latest = c.repo.latest_margin("opt-desk")
    assert latest is not None and latest["initial_margin"] == m.initial_margin
    c.repo.close()


def test_binance_client_follows_book_ticker_mark_price_and_depth(tmp_path: Path) -> None:
    frames, snap = binance_messages(300)
    c = _container(tmp_path, seed=False)

    async def main() -> BinanceClient:
        server = await RecordedVenueServer("binance", frames).start()
        client = BinanceClient(server.url, ["btcusdt@bookTicker", "btcusdt@markPrice",
                                            "btcusdt@depth"], c.gateway, c.metrics,
                               depth_snapshot=lambda sym: snap)
        client.start()
        await asyncio.wait_for(server.done.wait(), 20)
        await _drained(client, len(frames))
        await client.stop()
        await server.stop()
        return client

    client = asyncio.run(main())
    assert client.stats.rejected == 0 and client.stats.gaps == 0
    kinds = {e.body["stream"].split("@")[-1] for e in c.repo.read(0, limit=10_000)}
    assert kinds == {"bookTicker", "markPriceUpdate", "depthUpdate"}
    c.repo.close()


def test_bad_venue_ticks_are_flagged_and_margins_held(tmp_path: Path) -> None:
    good = deribit_messages("2022-04-15", max_options=4)
    ts = json.loads(good[0][1])["params"]["data"]["timestamp"]
    idx = json.loads(good[0][1])["params"]["data"]["price"]
    ch = "deribit_price_index.btc_usd"

    def ix(t: int, p: float | str) -> tuple[str, str]:
        return ch, deribit_notification(ch, {"index_name": "btc_usd", "price": p,
                                             "timestamp": t})

    bad = [ix(ts + 10, "NaN"), ix(ts + 11, idx * 1.5), ix(ts + 5, idx), ix(ts + 12, idx * 1.001),
           ix(ts + 12, idx * 1.001)]
    frames = good + bad
    c = _container(tmp_path)
    c.gateway.append([NewEntry(EntryKind.ACCOUNT, {
        "account_id": "short-perp", "positions": {"BTC-PERPETUAL": -50_000},
        "collateral": {"USDC": 10_000}}, "test")])

    async def main() -> None:
        server = await RecordedVenueServer("deribit", frames).start()
        client = DeribitClient(server.url, [ch for ch, _ in good], c.gateway, c.metrics)
        client.start()
        await asyncio.wait_for(server.done.wait(), 20)
        await _drained(client, len(frames))
        await client.stop()
        await server.stop()
        assert client.stats.duplicates == 1  # the repeated frame is deduplicated at the log

    asyncio.run(main())
    r = c.runners[0]
    ims: list[list[str]] = []
    states: list[tuple[float, bool]] = []

    def listen(out):  # type: ignore[no-untyped-def]
        ims.append([(e.problem if hasattr(e, "problem") else e.type) for e in out.events])
        m = r.engine.account_margin("short-perp")
        if m is not None:
            states.append((m.initial_margin, m.held))

    r.listeners.append(listen)
    r.run_until_idle()
    problems = [p for ev in ims for p in ev]
    assert problems.count("nan") == 1 and problems.count("jump") == 1
    assert problems.count("out_of_order") == 1
    checked = 0
    for (im0, _), (im1, held1) in zip(states, states[1:], strict=False):
        if held1 and im0 > 0:  # while held, never below the last margin
            assert im1 >= im0
            checked += 1
    assert checked >= 1
    m = r.engine.account_margin("short-perp")
    assert m is not None and not m.held  # the last good tick lifted the hold
    c.repo.close()


def test_watchdog_marks_a_silent_stream_stale_once(tmp_path: Path) -> None:
    c = _container(tmp_path, seed=False)

    async def main() -> list[str]:
        client = DeribitClient("ws://127.0.0.1:9", [], c.gateway, c.metrics)
        client.stats.last_seen["deribit:deribit_price_index.btc_usd"] = 0.0
        client.stats.underlying_of["deribit:deribit_price_index.btc_usd"] = "BTC"
        wd = StaleWatchdog([client], c.gateway, c.metrics, stale_after_s=0.1)
        first = await wd.check_once()
        second = await wd.check_once()
        return first + second

    flagged = asyncio.run(main())
    assert flagged == ["deribit:deribit_price_index.btc_usd"]
    (entry,) = c.repo.read(0)
    assert entry.kind is EntryKind.FEED_STATUS and entry.body["status"] == "stale"
    c.repo.close()
