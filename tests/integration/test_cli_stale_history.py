"""History models on a market after the end of their history: warned above a few days, refused
above ``max_history_lag_days`` (a code default when the key is absent; the TOML overrides it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marginproof.cli.main import app
from marginproof.models._history import DEFAULT_MAX_HISTORY_LAG_DAYS, STALE_HISTORY_WARN_DAYS

ROOT = Path(__file__).resolve().parents[2]
MARKET = ROOT / "examples" / "market_btc_2022-04-15.json"
HISTORY_END = "2026-05-16"  # last close of the shipped data


def _files(tmp_path: Path, timestamp: str) -> tuple[Path, Path]:
    """A linear book (nothing expires) and the example market moved to ``timestamp``."""
    mkt = json.loads(MARKET.read_text())
    mkt["timestamp"] = timestamp
    m = tmp_path / f"market_{timestamp[:10]}.json"
    m.write_text(json.dumps(mkt))
    p = tmp_path / "book.json"
    p.write_text(json.dumps({"account_id": "lin", "positions": [
        {"instrument": "BTC_USDT", "quantity": 2.0},
        {"instrument": "BTC-PERPETUAL", "quantity": -60000.0},
        {"instrument": "ETH_USDC-PERPETUAL", "quantity": 20.0}]}))
    return p, m


def _run(args: list[str]) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, args, env={"COLUMNS": "100"})
    return r.exit_code, r.stdout, r.stderr


def test_constants_are_a_small_tolerance_and_a_month() -> None:
    assert STALE_HISTORY_WARN_DAYS == 3 and DEFAULT_MAX_HISTORY_LAG_DAYS == 31


@pytest.mark.parametrize("model", ["fhs", "mc", "dynamic"])
def test_a_market_well_after_the_history_is_refused_naming_the_field(
        model: str, tmp_path: Path) -> None:
    book, mkt = _files(tmp_path, "2026-12-01T04:00:00Z")  # as-of 2026-11-30: 198 days
    code, out, err = _run(["margin", "-p", str(book), "-m", str(mkt), "--model", model])
    assert code == 2, out + err
    line = " ".join(err.split())
    assert "market.timestamp" in line and "stale" in line and "198 days" in line
    assert "max_history_lag_days = 31" in line


def test_a_market_a_few_days_after_the_history_warns_in_one_line(tmp_path: Path) -> None:
    book, mkt = _files(tmp_path, "2026-05-25T04:00:00Z")  # as-of 2026-05-24: 8 days
    code, out, err = _run(["margin", "-p", str(book), "-m", str(mkt), "--model", "fhs"])
    assert code == 0, out + err
    warn = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1 and "stale history" in warn[0] and "8 days" in warn[0], err
    assert "initial margin" in out and "stale" not in out
    code, out, err = _run(["margin", "-p", str(book), "-m", str(mkt), "--model", "fhs",
                           "--json"])
    assert code == 0, out + err
    d = json.loads(out)["details"]
    assert d["history_lag_days"] == 8
    assert len(d["warnings"]) == 1 and "stale history" in d["warnings"][0]


def test_a_lag_within_the_tolerance_is_silent(tmp_path: Path) -> None:
    book, mkt = _files(tmp_path, "2026-05-20T04:00:00Z")  # as-of 2026-05-19: 3 days
    code, out, err = _run(["margin", "-p", str(book), "-m", str(mkt), "--model", "fhs",
                           "--json"])
    assert code == 0, out + err
    d = json.loads(out)["details"]
    assert d["history_lag_days"] == STALE_HISTORY_WARN_DAYS and "warnings" not in d
    assert "warning" not in err


def test_the_shipped_example_market_is_neither_warned_nor_refused() -> None:
    code, out, err = _run(["margin", "-p", str(ROOT / "examples" / "portfolio_demo.json"),
                           "-m", str(MARKET), "--model", "fhs", "--json"])
    assert code == 0, out + err
    d = json.loads(out)["details"]
    assert d["history_lag_days"] <= 1 and "warnings" not in d


def test_the_limit_is_overridden_by_the_model_parameters(tmp_path: Path) -> None:
    book, mkt = _files(tmp_path, "2026-12-01T04:00:00Z")
    text = (ROOT / "configs" / "models" / "fhs.toml").read_text()
    loose = tmp_path / "fhs_loose.toml"
    loose.write_text(text.replace("[risk]\n", "[risk]\nmax_history_lag_days = 365\n", 1))
    code, out, err = _run(["margin", "-p", str(book), "-m", str(mkt), "--model", "fhs",
                           "--config", str(loose), "--json"])
    assert code == 0, out + err
    d = json.loads(out)["details"]
    assert d["history_lag_days"] == 198 and "max_history_lag_days = 365" in d["warnings"][0]
    tight = tmp_path / "fhs_tight.toml"
    tight.write_text(text.replace("[risk]\n", "[risk]\nmax_history_lag_days = 5\n", 1))
    _, few = _files(tmp_path, "2026-05-25T04:00:00Z")
    code, out, err = _run(["margin", "-p", str(book), "-m", str(few), "--model", "fhs",
                           "--config", str(tight)])
    assert code == 2 and "max_history_lag_days = 5" in " ".join(err.split()), out + err


def test_whatif_and_compare_pass_the_warning_on(tmp_path: Path) -> None:
    book, mkt = _files(tmp_path, "2026-05-25T04:00:00Z")
    code, out, err = _run(["whatif", "-p", str(book), "-m", str(mkt), "--model", "fhs",
                           "-t", "BTC-PERPETUAL=1000", "--json"])
    assert code == 0, out + err
    assert "stale history" in json.loads(out)["warnings"][0]
    code, out, err = _run(["compare", "-p", str(book), "-m", str(mkt), "--json"])
    assert code == 0, out + err
    rows = {r["model"]: r for r in json.loads(out)["models"]}
    assert all("stale history" in rows[m]["warnings"][0] for m in ("fhs", "mc", "dynamic"))
    assert "warnings" not in rows["grid"]
