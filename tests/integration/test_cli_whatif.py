"""``marginproof whatif``: before / after / change equal ``margin`` of the two books (issue 20)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marginproof.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "examples" / "portfolio_demo.json"
MARKET = ROOT / "examples" / "market_btc_2022-04-15.json"


def _json(args: list[str]) -> dict:  # type: ignore[type-arg]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.mark.parametrize("model", ["grid", "dynamic"])
def test_whatif_is_margin_before_and_after_the_trades(model: str, tmp_path: Path) -> None:
    trades = {"BTC-PERPETUAL": 60_000.0, "BTC-24JUN22-40000-P": -3.0}
    w = _json(["whatif", "-p", str(BOOK), "-m", str(MARKET), "--model", model, "--json",
               *[a for n, q in trades.items() for a in ("-t", f"{n}={q:g}")]])
    book = json.loads(BOOK.read_text())
    qty = {p["instrument"]: p["quantity"] for p in book["positions"]}
    for n, q in trades.items():
        qty[n] = qty.get(n, 0.0) + q
    book["positions"] = [{"instrument": n, "quantity": q} for n, q in qty.items() if q]
    after_file = tmp_path / "after.json"
    after_file.write_text(json.dumps(book))
    before = _json(["margin", "-p", str(BOOK), "-m", str(MARKET), "--model", model, "--json"])
    after = _json(["margin", "-p", str(after_file), "-m", str(MARKET), "--model", model,
                   "--json"])
    assert w["before"]["initial_margin"] == pytest.approx(before["initial_margin"], rel=1e-12)
    assert w["after"]["initial_margin"] == pytest.approx(after["initial_margin"], rel=1e-12)
    assert w["after"]["maintenance_margin"] == pytest.approx(after["maintenance_margin"],
                                                             rel=1e-12)
    assert w["delta_initial_margin"] == pytest.approx(
        after["initial_margin"] - before["initial_margin"], rel=1e-9)
    assert w["equity_usd"] == pytest.approx(after["equity_usd"], rel=1e-12)
    assert w["excess_over_initial_margin_usd"] == pytest.approx(
        after["excess_over_initial_margin_usd"], rel=1e-9)
    assert w["model"] == model and w["params_hash"] == after["params_hash"]
    assert w["trades"] == trades


def test_whatif_table_shows_before_after_change_and_equity() -> None:
    r = CliRunner().invoke(app, ["whatif", "-p", str(BOOK), "-m", str(MARKET),
                                 "-t", "BTC-PERPETUAL=60000"], env={"COLUMNS": "100"})
    assert r.exit_code == 0, r.output
    for word in ("before", "after", "change", "initial margin", "equity", "excess over IM",
                 "worst scenario after", "USD"):
        assert word in r.stdout, r.stdout


@pytest.mark.parametrize(("trade", "field"), [("BTC-PERPETUAL=abc", "--trade[0]"),
                                              ("BTC-PERPETUAL", "--trade[0]"),
                                              ("BTC-PERPETUAL=nan", "--trade[0]"),
                                              ("NOT-AN-INSTRUMENT=1", "instrument")])
def test_bad_trade_is_exit_code_2_naming_the_field(trade: str, field: str) -> None:
    r = CliRunner().invoke(app, ["whatif", "-p", str(BOOK), "-m", str(MARKET), "-t", trade])
    assert r.exit_code == 2, r.output
    assert field in r.output and "Traceback" not in r.output
