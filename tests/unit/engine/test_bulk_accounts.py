"""``MarginEngine.apply_accounts``: the bulk path gives the margins of the one-by-one path."""

from __future__ import annotations

import numpy as np
import pytest
from _engine_helpers import Log, account_body

from marginproof.apc.stage import live_margin_path
from marginproof.engine import EngineConfig, EntryKind, LogEntry, MarginEngine, Tick
from marginproof.models.grid import GridModel
from marginproof.models.registry import get_model

NAMES = ["BTC-PERPETUAL", "BTC_USDT", "ETH_USDC-PERPETUAL"]


def _bodies(market, n: int) -> list[dict]:  # type: ignore[no-untyped-def]
    opts = sorted(n for n in market.implied_vols if "29APR22" in n or "24JUN22" in n)[::7][:12]
    names = NAMES + opts
    rng = np.random.default_rng(3)
    out = []
    for k in range(n):
        pick = rng.choice(len(names), size=int(rng.integers(1, 5)), replace=False)
        pos = {names[i]: float(rng.integers(-5, 6) or 1) *
               (10_000.0 if names[i] == "BTC-PERPETUAL" else 1.0) for i in pick}
        out.append(account_body(f"acct-{k}", pos, {"USDC": 1000.0 * k, "BTC": 0.1}))
    # an account replaced later in the run, and a malformed one (refused, changes nothing)
    out.append(account_body("acct-1", {"BTC-PERPETUAL": -20_000.0}, {"USDC": 5.0}))
    out.append({"account_id": "bad", "positions": {"NOT-AN-INSTRUMENT": 1.0}})
    return out


def _engines(model, demo, config: EngineConfig, n: int,  # type: ignore[no-untyped-def]
             advance_ms: int = 1):
    acct, market = demo
    from marginproof.io.formats import market_to_dict

    t0 = int(market.timestamp.timestamp() * 1000)
    one, bulk = MarginEngine(model, config), MarginEngine(model, config)
    lg1, lg2 = Log(t0), Log(t0)
    one.apply(lg1(EntryKind.MARKET, market_to_dict(market)))
    bulk.apply(lg2(EntryKind.MARKET, market_to_dict(market)))
    bodies = _bodies(market, n)
    outs = [one.apply(lg1(EntryKind.ACCOUNT, b, advance_ms)) for b in bodies]
    run = [lg2(EntryKind.ACCOUNT, b, advance_ms) for b in bodies]
    out = bulk.apply_accounts(run)
    return one, bulk, outs, out, lg1, lg2


def _same(one: MarginEngine, bulk: MarginEngine) -> None:
    assert one.acc_ids == bulk.acc_ids
    n = len(one.books)
    for name in ("im", "mm", "equity", "figure_im", "status", "held"):
        np.testing.assert_array_equal(getattr(one, name)[:n], getattr(bulk, name)[:n], name)


@pytest.mark.parametrize("name", ["grid", "dynamic"])
def test_bulk_load_gives_the_margins_of_one_by_one(demo, name):
    model = GridModel() if name == "grid" else get_model("dynamic")
    one, bulk, _, out, _, _ = _engines(model, demo, EngineConfig(margin_path=live_margin_path),
                                       12)
    _same(one, bulk)
    assert out.batch is not None and len(out.batch) == 12


@pytest.mark.parametrize("name", ["grid", "dynamic"])
def test_bulk_load_of_entries_logged_at_one_time_equals_one_by_one_after_a_tick(demo, name):
    """The live path compounds its release and speed limit from each account's last step: with
    one log time for the whole run (a book import) the two paths are the same afterwards."""
    model = GridModel() if name == "grid" else get_model("dynamic")
    one, bulk, outs, out, lg1, lg2 = _engines(model, demo, EngineConfig(
        margin_path=live_margin_path), 12, advance_ms=0)
    _same(one, bulk)
    assert bulk.last_seq == one.last_seq and bulk.clock_ms == one.clock_ms
    assert out.batch is not None and out.batch.cause == "account"
    assert len(out.batch) == 12 and out.batch.seq == bulk.last_seq
    assert [e.problem for e in out.events if getattr(e, "problem", "") == "rejected_entry"] \
        == ["rejected_entry"]
    assert bulk.account_margin("acct-1").initial_margin == one.account_margin(  # type: ignore
        "acct-1").initial_margin
    _, market = demo
    tick = Tick("t", "t:BTC", "BTC", lg1.clock_ms + 10, index_price=market.index("BTC") * 1.01)
    a = one.apply(lg1(EntryKind.TICK, tick.to_dict()))
    b = bulk.apply(lg2(EntryKind.TICK, tick.to_dict()))
    assert a.batch is not None and b.batch is not None
    np.testing.assert_array_equal(a.batch.initial_margin, b.batch.initial_margin)
    _same(one, bulk)
    assert one.state_digest() == bulk.state_digest()


def test_bulk_load_respects_partitions(demo):
    cfg = EngineConfig(n_partitions=2, partition=1)
    one, bulk, _, _, _, _ = _engines(GridModel(), demo, cfg, 10)
    _same(one, bulk)
    assert 0 < len(bulk.books) < 10


def test_bulk_load_refuses_what_it_cannot_do_without_applying_anything(demo, log,
                                                                       market_entry):
    eng = MarginEngine(GridModel())
    eng.apply(market_entry(log))
    seq = eng.last_seq
    good = log(EntryKind.ACCOUNT, account_body("a", {"BTC-PERPETUAL": 1000.0}, {}))
    fill = log(EntryKind.FILL, {"account_id": "a", "instrument": "BTC-PERPETUAL",
                                "quantity": 1.0})
    with pytest.raises(ValueError, match="account entries only"):
        eng.apply_accounts([good, fill])
    gap = LogEntry(good.seq + 5, EntryKind.ACCOUNT, good.logged_at_ms, "t", good.body)
    with pytest.raises(ValueError, match="gap"):
        eng.apply_accounts([good, gap])
    with pytest.raises(ValueError):
        eng.apply_accounts([])
    assert eng.last_seq == seq and len(eng.books) == 0
    out = eng.apply_accounts([good])
    assert out.batch is not None and out.batch.account_ids == ("a",)
