"""The presets through the CLI: margin/compare/explain, --json, --config copies, exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marginproof.cli.main import app
from marginproof.config.params import config_dir

runner = CliRunner()
EX = Path(__file__).resolve().parents[3] / "examples" / "presets"
PRESETS = ("deribit-standard", "deribit-pm", "derive-pmrm", "derive-srm")
CASES = {
    "deribit-standard": ("deribit_btc_options_portfolio.json", "deribit_btc_market.json", "BTC"),
    "deribit-pm": ("deribit_pme_api_example_portfolio.json", "deribit_pme_api_example_market.json",
                   "BTC"),
    "derive-pmrm": ("derive_pmrm_portfolio.json", "derive_market.json", "USD"),
    "derive-srm": ("derive_srm_portfolio.json", "derive_market.json", "USD"),
}


def run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


@pytest.mark.parametrize("preset", PRESETS)
def test_margin_json_reports_native_currency_and_positive_requirements(preset: str) -> None:
    pf, mk, ccy = CASES[preset]
    r = run("margin", "--model", preset, "-p", str(EX / pf), "-m", str(EX / mk), "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["model"] == preset and d["currency"] == ccy
    assert d["initial_margin"] > 0 and d["maintenance_margin"] > 0
    if preset.startswith("derive"):
        det = d["details"]
        assert d["initial_margin"] == pytest.approx(
            det["mark_to_market"] + (det["cash"] if preset == "derive-pmrm" else 0.0)
            - det["derive_im_signed"])


def test_deribit_pm_cli_reproduces_the_api_reference_example() -> None:
    pf, mk, _ = CASES["deribit-pm"]
    d = json.loads(run("margin", "--model", "deribit-pm", "-p", str(EX / pf), "-m",
                       str(EX / mk), "--json").stdout)
    assert d["initial_margin"] == pytest.approx(0.122861343, rel=1e-8)
    assert d["maintenance_margin"] == pytest.approx(0.050274504784, rel=1e-8)


def test_compare_has_one_row_per_model_and_preset() -> None:
    pf, mk, _ = CASES["derive-pmrm"]
    r = run("compare", "-p", str(EX / pf), "-m", str(EX / mk), "--json")
    assert r.exit_code == 0, r.output
    rows = {row["model"]: row for row in json.loads(r.stdout)["models"]}
    for preset in PRESETS:
        assert preset in rows
    assert rows["derive-pmrm"]["worst_scenario"]
    assert "error" in rows["deribit-standard"]  # linear options: not covered


@pytest.mark.parametrize(("preset", "title"), [("deribit-pm", "risk matrix"),
                                               ("derive-pmrm", "Derive PMRM scenario P&L")])
def test_explain_prints_the_risk_matrix_and_binding_component(preset: str, title: str) -> None:
    pf, mk, _ = CASES[preset]
    r = run("explain", "--model", preset, "-p", str(EX / pf), "-m", str(EX / mk))
    assert r.exit_code == 0, r.output
    assert title in r.stdout and "binding component" in r.stdout


def test_a_copied_preset_with_one_change_needs_no_code(tmp_path: Path) -> None:
    text = (config_dir() / "presets" / "deribit-pm.toml").read_text()
    mine = tmp_path / "my.toml"
    mine.write_text(re.sub(r"(?m)^mm_factor = 0\.8", "mm_factor = 0.7", text))
    pf, mk, _ = CASES["deribit-pm"]
    base = json.loads(run("margin", "--model", "deribit-pm", "-p", str(EX / pf), "-m",
                          str(EX / mk), "--json").stdout)
    r = run("margin", "--model", "deribit-pm", "--config", str(mine), "-p", str(EX / pf), "-m",
            str(EX / mk), "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["params_hash"] != base["params_hash"]
    rmm = d["details"]["by_currency"]["BTC"]["risk_matrix_margin"]
    assert d["maintenance_margin"] == pytest.approx(0.7 * rmm)


def test_unsupported_instrument_exits_2_naming_the_field() -> None:
    pf, mk, _ = CASES["derive-pmrm"]
    r = run("margin", "--model", "deribit-standard", "-p", str(EX / pf), "-m", str(EX / mk))
    assert r.exit_code == 2
    assert "positions[0].instrument" in r.output


def test_bad_preset_inputs_in_a_file_exit_2_naming_the_field(tmp_path: Path) -> None:
    mkt = json.loads((EX / "derive_market.json").read_text())
    mkt["preset_inputs"]["confidences"]["index"]["ETH"] = 1.5
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps(mkt))
    pf = str(EX / CASES["derive-pmrm"][0])
    r = run("margin", "--model", "derive-pmrm", "-p", pf, "-m", str(bad))
    assert r.exit_code == 2 and "preset_inputs.confidences.index.ETH" in r.output
    mkt["preset_inputs"]["confidences"]["index"]["ETH"] = 1.0
    mkt["preset_inputs"]["confidence"] = {}  # typo: unknown keys are refused
    bad.write_text(json.dumps(mkt))
    r = run("margin", "--model", "derive-pmrm", "-p", pf, "-m", str(bad))
    assert r.exit_code == 2 and "preset_inputs" in r.output


@pytest.mark.parametrize(("preset", "table", "key"), [
    ("deribit-standard", "options", "short_floor_rate"), ("deribit-pm", "general", "mm_factor"),
    ("derive-pmrm", "margin", "mm_factor"), ("derive-srm", "depeg", "factor"),
])
def test_params_hash_follows_every_parameter_change(preset: str, table: str, key: str) -> None:
    from marginproof.config.params import load_toml
    from marginproof.models.registry import model_class

    raw = load_toml(config_dir() / "presets" / f"{preset}.toml")
    cls = model_class(preset)
    same = cls(load_toml(config_dir() / "presets" / f"{preset}.toml"))
    assert cls().params_hash == same.params_hash
    raw[table][key] = float(raw[table][key]) * 0.9
    assert cls(raw).params_hash != cls().params_hash
    for k in ("version", "date", "source"):
        assert cls().params["meta"][k]
