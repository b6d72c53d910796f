"""CLI reports end to end on the shipped data: files written, JSON valid, bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from marginproof.cli.main import app

runner = CliRunner()


def _ok(args: list[str]) -> None:
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output


def test_backtest_writes_report_figures_tables_and_json(tmp_path: Path) -> None:
    out = tmp_path / "bt"
    _ok(["backtest", "--model", "grid", "--from", "2022-05-01", "--to", "2022-05-31",
         "--n-random", "2", "--out", str(out)])
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and "Kupiec" in html
    s = json.loads((out / "summary.json").read_text())
    assert s["model"] == "grid" and s["from"] == "2022-05-01" and s["to"] == "2022-05-31"
    rec = pd.read_parquet(out / "records.parquet")
    assert rec["date"].max() == "2022-05-31" and len(rec) == s["book_days"]
    assert {"margin_usd", "loss_usd", "exception"} <= set(rec.columns)
    assert (out / "figures" / "traffic_light.png").stat().st_size > 10_000


def test_stress_and_compare_models(tmp_path: Path) -> None:
    out = tmp_path / "st"
    _ok(["stress", "--model", "grid", "--episode", "yen-2024", "--portfolios",
         "singles,adversarial", "--venues", "standard,grid", "--accounts", "200",
         "--out", str(out)])
    s = json.loads((out / "summary.json").read_text())
    assert s["episode"] == "yen-2024" and len(s["cascade"]["venues"]) == 2
    assert {x["shock"] for x in s["shocks"]} >= {"spot-50", "vol-x2", "corr-1"}
    assert (out / "figures" / "cascade.png").exists()
    cmp_ = tmp_path / "cmp"
    _ok(["compare-models", "--models", "grid,standard,ewma-var", "--from", "2022-06-01",
         "--to", "2022-06-20", "--portfolios", "singles,hedged", "--out", str(cmp_)])
    m = pd.read_parquet(cmp_ / "models.parquet")
    assert list(m["model"]) == ["grid", "standard", "ewma-var"]
    assert "compare.png" in (cmp_ / "report.html").read_text()


def test_bad_input_exits_2(tmp_path: Path) -> None:
    for args in (["backtest", "--model", "nope", "--out", str(tmp_path)],
                 ["stress", "--model", "grid", "--episode", "nope", "--out", str(tmp_path)],
                 ["backtest", "--model", "grid", "--from", "1999-01-01", "--out",
                  str(tmp_path)]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2, r.output
