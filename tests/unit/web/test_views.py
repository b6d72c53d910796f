"""Console views: ranking by utilisation, heat maps that are the model's own scenario P&L,
greeks by expiry that add up to the model's greeks, engine rows equal to the engine's margins."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marginproof.demo.book import demo_account, demo_market
from marginproof.engine.core import MarginEngine
from marginproof.engine.entries import EntryKind, LogEntry
from marginproof.instruments.portfolio import Portfolio
from marginproof.instruments.resolved import resolve
from marginproof.io.formats import market_to_dict
from marginproof.models.grid import GridModel
from marginproof.models.registry import get_model
from marginproof.web import views


@pytest.fixture(scope="module")
def book() -> tuple[dict[str, float], object]:
    acct, market = demo_account()
    return {p.instrument.name: p.quantity for p in acct.portfolio.positions}, market


def test_utilisation_is_im_over_equity_and_infinite_without_equity() -> None:
    assert views.utilisation(50.0, 100.0) == 0.5
    assert views.utilisation(0.0, -10.0) == 0.0
    assert math.isinf(views.utilisation(1.0, 0.0))
    assert math.isinf(views.utilisation(1.0, -5.0))


def test_ranking_puts_accounts_without_equity_first_then_highest_utilisation() -> None:
    rows = [
        {"account_id": "a", "initial_margin": 10.0, "maintenance_margin": 8.0, "equity": 100.0,
         "status": "ok"},
        {"account_id": "b", "initial_margin": 90.0, "maintenance_margin": 72.0, "equity": 100.0,
         "status": "ok"},
        {"account_id": "c", "initial_margin": 5.0, "maintenance_margin": 4.0, "equity": -1.0,
         "status": "liquidation"},
        {"account_id": "d", "initial_margin": 0.0, "maintenance_margin": 0.0, "equity": 0.0,
         "status": "ok"},
    ]
    out = views.rank_accounts(rows, limit=3)
    assert [r["account_id"] for r in out["accounts"]] == ["c", "b", "a"]
    assert out["accounts"][0]["utilisation"] is None  # infinite, JSON-safe
    assert out["accounts"][1]["utilisation"] == pytest.approx(0.9)
    assert out["n_accounts"] == 4
    assert out["counts"] == {"ok": 3, "margin_call": 0, "liquidation": 1}


def test_grid_heatmap_cells_are_the_group_scenario_pnl_and_mark_the_binding_loss(book) -> None:
    positions, market = book
    model = GridModel()
    res = model.margin(Portfolio.of(positions), market)
    maps = views.heatmaps(res, model)
    assert {m["group"] for m in maps} == {"BTC", "ETH"}
    unit, shocks = model.scenario_axes()
    names = list(res.position_names)
    for m in maps:
        mask = np.array([n.startswith(m["group"]) for n in names])
        want = np.asarray(res.scenario_pnl)[:, mask].sum(axis=1).reshape(len(unit), len(shocks))
        np.testing.assert_allclose(np.array(m["values"]), want)
        b = m["binding"]
        assert -m["values"][b["row"]][b["column"]] == pytest.approx(b["loss"])
        ws = next(w for w in res.worst_scenarios if w.group == m["group"])
        assert b["loss"] == pytest.approx(ws.loss)
        assert b["loss"] == pytest.approx(max(0.0, -float(np.min(want))))


def test_models_with_their_own_risk_matrix_are_shown_as_is(book) -> None:
    positions, market = book
    model = get_model("fhs")
    res = model.margin(Portfolio.of(positions), market)
    (m,) = views.heatmaps(res, model)
    rm = res.details["risk_matrix"]
    assert m["rows"] == [str(r) for r in rm["rows"]] and m["columns"] == list(rm["columns"])
    np.testing.assert_allclose(np.array(m["values"], float), np.array(rm["values"], float))


def test_table_models_have_no_heatmap_and_other_scenario_models_get_worst_rows(book) -> None:
    positions, market = book
    std = get_model("standard")
    assert views.heatmaps(std.margin(Portfolio.of(positions), market), std) == []
    res = GridModel().margin(Portfolio.of(positions), market)
    (m,) = views.heatmaps(res, std)  # not a grid model: generic worst-scenario table
    total = np.asarray(res.scenario_pnl).sum(axis=1)
    assert m["values"][0][-1] == pytest.approx(float(total.min()))
    assert [r[-1] for r in m["values"]] == sorted(r[-1] for r in m["values"])


def test_greeks_by_expiry_add_up_to_the_model_greeks_per_underlying(book) -> None:
    positions, market = book
    res = GridModel().margin(Portfolio.of(positions), market)
    rows = views.greeks_by_expiry(resolve(Portfolio.of(positions), market))
    assert {r["expiry"] for r in rows} >= {"perpetual", "spot", "2022-05-06", "2022-06-24"}
    for und, g in res.greeks.by_underlying().items():
        for field in ("delta_usd", "vega_usd_per_vol_point", "gamma_coin_per_usd"):
            got = sum(r[field] for r in rows if r["underlying"] == und)
            assert got == pytest.approx(g[field], rel=1e-12, abs=1e-9)


def test_explain_components_add_up_to_the_grid_requirement(book) -> None:
    positions, market = book
    model = GridModel()
    res = model.margin(Portfolio.of(positions), market)
    ex = views.explain(res, model, resolve(Portfolio.of(positions), market), positions)
    by_group: dict[str, float] = {}
    for c in ex["components"]:
        by_group[c["group"]] = max(by_group.get(c["group"], 0.0), c["value"])
    assert sum(by_group.values()) == pytest.approx(ex["initial_margin"])
    assert ex["binding"]["loss"] == pytest.approx(max(w.loss for w in res.worst_scenarios))


def test_engine_snapshot_rows_equal_the_engine_account_margins() -> None:
    acct, _ = demo_account()
    market = demo_market()
    eng = MarginEngine(GridModel())
    pos = {p.instrument.name: p.quantity for p in acct.portfolio.positions}
    entries = [LogEntry(1, EntryKind.MARKET, 1, "t", market_to_dict(market))]
    for i, scale in enumerate((1.0, 3.0, -2.0)):
        body = {"account_id": f"a{i}", "positions": {k: v * scale for k, v in pos.items()},
                "collateral": {"USDC": 10000.0 * (i + 1)}}
        entries.append(LogEntry(i + 2, EntryKind.ACCOUNT, 2, "t", body))
    for e in entries:
        eng.apply(e)
    rows = [views.normalize_row(r, eng.scenario_label)
            for r in views.snapshot_rows(views.engine_snapshot(eng))]
    assert [r["account_id"] for r in rows] == ["a0", "a1", "a2"]
    for r in rows:
        m = eng.account_margin(r["account_id"])
        assert m is not None
        assert (r["initial_margin"], r["maintenance_margin"], r["equity"], r["status"],
                r["seq"], r["held"]) == (m.initial_margin, m.maintenance_margin, m.equity,
                                         m.status, m.seq, m.held)
        assert r["binding_label"] == (m.binding.scenario_label if m.binding else None)


def test_normalize_row_drops_empty_bindings_and_labels_real_ones() -> None:
    row = {"account_id": "x", "binding_underlying": "", "binding_scenario": -1}
    assert views.normalize_row(row, lambda u, j: "no")["binding_label"] is None
    row = {"account_id": "x", "binding_underlying": "BTC", "binding_scenario": 4}
    out = views.normalize_row(row, lambda u, j: f"{u}:{j}")
    assert out["binding_label"] == "BTC:4" and out["binding_scenario"] == 4
