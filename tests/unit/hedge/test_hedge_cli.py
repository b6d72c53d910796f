"""``marginproof hedge``: table and --json, targets, k, quotes files, exit code 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marginproof.cli.main import app

from .conftest import EX

runner = CliRunner()
DEMO = ["-p", str(EX / "portfolio_demo.json"), "-m", str(EX / "market_btc_2022-04-15.json")]


def run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["hedge", *args])


def test_json_output_is_verified_and_in_venue_names() -> None:
    r = run(*DEMO, "--model", "fhs", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["status"] == "suggested" and d["model"] == "fhs"
    assert d["im_after_usd"] < d["im_before_usd"]
    assert all(t["instrument"].startswith(("BTC", "ETH")) for t in d["trades"])
    assert d["cost_usd"] == pytest.approx(sum(t["cost_usd"] for t in d["trades"]))


def test_table_shows_before_after_cost_and_trades() -> None:
    r = run(*DEMO, "-k", "1")
    assert r.exit_code == 0, r.output
    for text in ("initial margin before", "initial margin after (real model)",
                 "cost (spread + fees)", "trades (venue names and units)",
                 "exact search over"):
        assert text in r.stdout


def test_targets_and_a_quotes_file(tmp_path: Path) -> None:
    r = run(*DEMO, "--target", "equity", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["status"] == "already_met"
    q = tmp_path / "q.json"
    q.write_text(json.dumps({"quotes": {"ETH_USDC-PERPETUAL": {
        "bid": 3021.0, "ask": 3023.0, "bid_size": 5.0, "ask_size": 5.0}}}))
    r = run(*DEMO, "--candidates", "ETH_USDC-PERPETUAL", "--quotes", str(q), "--target",
            "im=15000", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    # 5 ETH of depth cannot bring the IM to 15,000: the closest trade is shown, and the
    # infeasible programme's objective is published as null (it was a non-finite number)
    assert d["status"] == "target_unreachable" and "to deposit" in d["reason"]
    assert d["solver"]["surrogate_objective"] is None
    assert d["trades"] and d["trades"][0]["instrument"] == "ETH_USDC-PERPETUAL"
    assert abs(d["trades"][0]["quantity"]) <= 5.0  # the book's depth is the size limit
    assert d["trades"][0]["quote_source"] == "q.json"


@pytest.mark.parametrize(("args", "msg"), [
    (["--target", "excess=lots"], "target"),
    (["--target", "deposit"], "target"),
    (["--model", "standard"], "scenario models"),
    (["--model", "nope"], "unknown model"),
    (["--venue", "binance"], "unknown venue"),
    (["--quotes", "/nonexistent.json"], "file not found"),
])
def test_bad_input_exits_2_naming_the_field(args: list[str], msg: str) -> None:
    r = run(*DEMO, *args)
    assert r.exit_code == 2, r.output
    assert msg in r.output


def test_bad_portfolio_exits_2() -> None:
    r = run("-p", str(EX / "bad_portfolio_unknown_instrument.json"), "-m",
            str(EX / "market_btc_2022-04-15.json"))
    assert r.exit_code == 2 and "positions[0].instrument" in r.output


def test_every_command_in_docs_hedge_runs_as_printed() -> None:
    import re
    import shlex

    doc = (EX.parent / "docs" / "hedge.md").read_text()
    block = re.search(r"```bash\n(.*?)```", doc, re.S)
    assert block is not None
    cmds = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(cmds) >= 5
    for line in cmds:
        argv = shlex.split(line)
        assert argv[:2] == [".venv/bin/marginproof", "hedge"]
        args = [str(EX.parent / a) if a.startswith("examples/") else a for a in argv[2:]]
        r = runner.invoke(app, ["hedge", *args])
        assert r.exit_code == 0, (line, r.output)
