"""One equity (issue 19 item 3): `marginproof margin`, the service and a verified proof agree on
the same account: collateral after haircuts plus the value of its spot and option positions."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from marginproof.cli.main import app
from marginproof.io.formats import load_market, load_portfolio, market_to_dict
from marginproof.proofs.epoch import compute_epoch
from marginproof.proofs.records import sign_record, verify_record
from marginproof.proofs.tags import account_nonce
from marginproof.proofs.verify import verify_account
from marginproof.storage.proofstore import (
    InputLogWriter,
    ProofStore,
    default_params,
    new_epoch_secret,
)
from tests.integration._service_helpers import running_service
from tests.unit.proofs.helpers import ENGINE

ROOT = Path(__file__).resolve().parents[2]
PORTFOLIO = ROOT / "examples" / "portfolio_demo.json"
MARKET = ROOT / "examples" / "market_btc_2022-04-15.json"
SCALES = {"BTC": 8, "ETH": 9, "USDC": 6, "USDT": 6}


def _proof_equity(tmp: Path) -> float:
    acct, mkt = load_portfolio(PORTFOLIO), load_market(MARKET)
    store = ProofStore(tmp / "mp")
    keys = store.operator_keys(create=True)
    w = InputLogWriter(store, keys)
    w.append_genesis()
    w.append_params(default_params("grid", depth_min=2, privacy=False))
    w.append_market(mkt)
    w.append_positions({acct.account_id: {p.instrument.name: p.quantity
                                          for p in acct.portfolio.positions}})
    w.append_balances({acct.account_id: dict(acct.collateral)}, SCALES)
    w.cut(1, mkt.timestamp.isoformat().replace("+00:00", "Z"))
    sec = new_epoch_secret(keys, 1)
    res = compute_epoch(store.entries(), 1, sec, None, ENGINE)
    signed = sign_record(res.record, keys.operator)
    view = verify_record(signed, {keys.operator.key_id: keys.operator.public_raw})
    chk = verify_account(res.proof_for(acct.account_id, sec), record=view,
                         account_id=acct.account_id, nonce=account_nonce(sec, acct.account_id))
    return (chk.values["assets"] - chk.values["liabs"]) / 10**6


def test_cli_service_and_verified_proof_agree_on_equity(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["margin", "-p", str(PORTFOLIO), "-m", str(MARKET), "--json"])
    assert r.exit_code == 0, r.output
    cli = json.loads(r.output)
    # the option positions are in it: equity is not the collateral alone
    assert abs(cli["position_value_usd"]) > 1_000.0
    assert cli["equity_usd"] == cli["collateral_value_usd"] + cli["position_value_usd"]
    assert cli["excess_over_initial_margin_usd"] == cli["equity_usd"] - cli["initial_margin"]

    acct = load_portfolio(PORTFOLIO)
    with running_service(tmp_path, seed_market=False) as svc:
        r2 = svc.client.post("/market", json={"snapshot": market_to_dict(load_market(MARKET))},
                             headers=svc.op())
        assert r2.status_code == 202, r2.text
        r3 = svc.client.post("/accounts", json={
            "account_id": "eq-1",
            "positions": {p.instrument.name: p.quantity for p in acct.portfolio.positions},
            "collateral": dict(acct.collateral)}, headers=svc.op())
        assert r3.status_code == 202, r3.text
        service = svc.wait_margin("eq-1", int(r3.json()["seq"]))["equity"]

    proof = _proof_equity(tmp_path)
    assert abs(service - cli["equity_usd"]) <= 1e-6 * max(1.0, abs(cli["equity_usd"]))
    assert abs(proof - cli["equity_usd"]) <= 2e-6  # two one-atom roundings against the operator
