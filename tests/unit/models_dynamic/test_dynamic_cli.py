"""CLI: fhs, surface, apc and calibrate commands."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marginproof.cli.main import app
from marginproof.config.params import load_toml
from marginproof.feeds.history import fhs_asof
from marginproof.models.dynamic import DynamicModel

runner = CliRunner()


def test_fhs_command_matches_the_api() -> None:
    r = runner.invoke(app, ["fhs", "--symbol", "BTCUSDT", "--date", "2022-06-13",
                            "--quantity", "-1", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    est = fhs_asof("BTCUSDT", "2022-06-13", -1.0)
    assert out["es_0.975"] == est.es and out["var_0.99"] == est.var


def test_bad_input_exits_2_with_one_line() -> None:
    r = runner.invoke(app, ["fhs", "--symbol", "BTCUSDT", "--date", "1999-01-01"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["surface", "--date", "2020-01-01"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["calibrate", "--lambdas", "x"])
    assert r.exit_code == 2


def test_surface_command_writes_fitted_points(tmp_path: Path) -> None:
    pts = tmp_path / "points.csv"
    r = runner.invoke(app, ["surface", "--date", "2022-04-15", "--json", "--points-out",
                            str(pts)])
    assert r.exit_code == 0, r.output
    chains = json.loads(r.stdout)["chains"]
    assert chains[0]["expiries"] == 10 and chains[0]["ssvi_arbitrage_free"]
    assert pts.read_text().startswith("quote_date,expiry_unix,t_years,forward,strike,k,")


def test_apc_command_reports_every_tool() -> None:
    r = runner.invoke(app, ["apc", "--start", "2022-05-01", "--end", "2022-06-15", "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)["metrics"]
    assert set(m) == {"base", "buffer_static_25", "buffer_release_0.25",
                      "buffer_release_0.25_speed_5pct", "stressed_weight_25", "floor_10y"}
    assert m["buffer_static_25"]["cost_avg_A_over_M"] == pytest.approx(1.25)


def test_calibrate_writes_a_loadable_parameter_file_with_provenance(tmp_path: Path) -> None:
    out = tmp_path / "dyn.toml"
    r = runner.invoke(app, ["calibrate", "--end", "2022-12-31", "--lambdas", "0.94,0.97",
                            "--scalings", "1.0,1.1", "--out", str(out), "--json",
                            # a small, uncached run: the full book set and references take
                            # many minutes (docs/backtesting.md has the full command)
                            "--portfolios", "singles,hedged", "--underlyings", "BTC",
                            "--references", "grid",
                            "--frontier-models", "none", "--weights", "0.25",
                            "--fractions", "0.5", "--releases", "0.25", "--floors", "1",
                            "--start", "2020-01-01", "--cache", str(tmp_path / "cache")])
    assert r.exit_code == 0, r.output
    p = tomllib.loads(out.read_text())
    assert p["fhs"]["lambda"] in (0.94, 0.97) and p["risk"]["scaling"] in (1.0, 1.1)
    prov = p["provenance"]
    assert "--end 2022-12-31" in prov["command"] and "--start 2020-01-01" in prov["command"]
    assert prov["data_sha256"] and prov["base_config_params_hash"]
    assert [f["test_year"] for f in prov["folds"]] == [2021, 2022]
    assert all(f["test_days"] > 300 and f["train_days"] > 300 for f in prov["folds"])
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["chosen"] == prov["chosen"] and summary["frontier"]
    DynamicModel(load_toml(out))  # the written file is a valid model configuration
