import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marginproof.cli.main import app

runner = CliRunner()
EX = Path(__file__).resolve().parents[3] / "examples"
MKT = str(EX / "market_btc_2022-04-15.json")


def _run(*args: str):
    return runner.invoke(app, list(args))


def test_margin_json_has_the_documented_keys() -> None:
    r = _run("margin", "-p", str(EX / "portfolio_demo.json"), "-m", MKT, "--model", "grid",
             "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    for k in ("initial_margin", "maintenance_margin", "currency", "model", "worst_scenario",
              "greeks", "params_hash", "market_timestamp"):
        assert k in d
    assert d["initial_margin"] > 0 and d["worst_scenario"]["loss"] > 0
    # 1 BTC at 5 % haircut + 50,000 USDC at par
    btc = json.loads(Path(MKT).read_text())["index_prices"]["BTC"]
    assert abs(d["collateral_value_usd"] - (btc * 0.95 + 50_000.0)) < 1e-6


def test_margin_table_is_readable() -> None:
    r = _run("margin", "-p", str(EX / "portfolio_hedged.json"), "-m", MKT)
    assert r.exit_code == 0 and "initial margin" in r.stdout


def test_compare_lists_every_model() -> None:
    r = _run("compare", "-p", str(EX / "portfolio_demo.json"), "-m", MKT, "--json")
    assert r.exit_code == 0, r.output
    names = [row["model"] for row in json.loads(r.stdout)["models"]]
    assert {"grid", "standard"} <= set(names)


def test_explain_prints_binding_component() -> None:
    r = _run("explain", "-p", str(EX / "portfolio_demo.json"), "-m", MKT, "--model", "grid")
    assert r.exit_code == 0 and "binding component" in r.stdout


def _write(tmp: Path, name: str, obj: object) -> str:
    p = tmp / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(p)


def _market(**over: object) -> dict:
    m = json.loads(Path(MKT).read_text())
    m.update(over)
    return m


BAD_CASES = {
    "malformed_json": ("{not json", None, "malformed JSON"),
    "unknown_instrument": ({"positions": [{"instrument": "BTC-FOO", "quantity": 1}]}, None,
                           "positions[0].instrument"),
    "nan_quantity": ('{"positions": [{"instrument": "BTC-PERPETUAL", "quantity": NaN}]}', None,
                     "NaN"),
    "nan_price": (None, _market(index_prices={"BTC": "NaN", "ETH": 3000}), "index_prices.BTC"),
    "negative_price": (None, _market(index_prices={"BTC": -5, "ETH": 3000}), "index_prices.BTC"),
    "zero_price": (None, _market(index_prices={"BTC": 0, "ETH": 3000}), "index_prices.BTC"),
    "absurd_vol": (None, _market(implied_vols={"BTC-6MAY22-44000-C": 80.0}), "implied_vols"),
    "negative_vol": (None, _market(implied_vols={"BTC-6MAY22-44000-C": -0.5}), "implied_vols"),
    "missing_mark": (None, _market(implied_vols={}), "implied_vols.BTC-6MAY22-44000-C"),
    "expired_option": (None, _market(timestamp="2022-06-01T00:00:00Z"), "expired"),
    "naive_time": (None, _market(timestamp="2022-04-15T04:00:00"), "timestamp"),
    "unknown_field": (None, _market(colour="red"), "colour"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_gives_one_line_and_exit_code_2(case: str, tmp_path: Path) -> None:
    port, mkt, expect = BAD_CASES[case]
    pp = _write(tmp_path, "p.json", port) if port is not None else str(EX / "portfolio_demo.json")
    mp = _write(tmp_path, "m.json", mkt) if mkt is not None else MKT
    r = _run("margin", "-p", pp, "-m", mp, "--json")
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.startswith("error:") and expect in err and "\n" not in err
    assert "Traceback" not in r.output and r.stdout == ""


def test_missing_file_and_unknown_model_exit_2(tmp_path: Path) -> None:
    assert _run("margin", "-p", str(tmp_path / "none.json"), "-m", MKT).exit_code == 2
    r = _run("margin", "-p", str(EX / "portfolio_demo.json"), "-m", MKT, "--model", "zzz")
    assert r.exit_code == 2 and "unknown model" in r.stderr


def test_demo_prints_margin_under_each_model_and_runs_the_engine(tmp_path: Path) -> None:
    r = _run("demo", "--accounts", "200", "--db", str(tmp_path / "demo.sqlite"))
    assert r.exit_code == 0, r.output
    assert "grid" in r.stdout and "standard" in r.stdout and "BTC-PERPETUAL" in r.stdout
    assert "margin_batch" in r.stdout and (tmp_path / "demo.sqlite").exists()
    # the engine stage runs the flagship model live and shows its components
    assert "under 'dynamic'" in r.stdout and "recalibrations" in r.stdout
    assert "Margin calls and liquidations" in r.stdout and "APC" in r.stdout


def test_demo_engine_stage_refuses_an_unknown_model(tmp_path: Path) -> None:
    r = _run("demo", "--accounts", "10", "--db", str(tmp_path / "d.sqlite"),
             "--engine-model", "nope")
    assert r.exit_code == 2 and "unknown model" in r.stderr


def test_compare_table_has_no_n_a_and_names_uncovered_models_below() -> None:
    r = _run("compare", "-p", str(EX / "portfolio_demo.json"), "-m", MKT)
    assert r.exit_code == 0, r.output
    assert "n/a" not in r.stdout
    assert "grid" in r.stdout and "USD" in r.stdout
    # the Derive presets do not list BTC_USDT spot: named with the reason, not a row of n/a
    assert "derive-srm: no margin for this book:" in r.stdout


def test_models_lists_every_name_other_commands_accept() -> None:
    from marginproof.models.registry import available_models

    r = _run("models")
    assert r.exit_code == 0, r.output
    assert set(available_models()) <= set(r.stdout.split())


def test_json_is_a_flag_not_an_option_with_a_value() -> None:
    r = _run("margin", "--help")
    assert r.exit_code == 0 and "--json" in r.stdout and "<bool>" not in r.stdout
    r = _run("margin", "-p", str(EX / "portfolio_demo.json"), "-m", MKT, "--json")
    assert r.exit_code == 0, r.output
    json.loads(r.stdout)


def test_help_lists_every_command_without_cutting_its_summary() -> None:
    r = _run("--help")
    assert r.exit_code == 0, r.output
    commands = r.stdout.split("Commands:", 1)[1]
    assert "..." not in commands
    for name in ("margin", "compare", "models", "prove", "serve", "backtest"):
        assert f"  {name} " in commands
