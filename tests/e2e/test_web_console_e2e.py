"""End-to-end: the web console in headless Chromium against a running service.

Log in with a key, watch a margin update arrive over the WebSocket after a replayed tick, drill
into an account, run a what-if, open reports, download and verify an inclusion proof in the
browser (the JavaScript verifier gives the Python verifier's verdict on honest and tampered
proofs), and check that a wrong key sees nothing of another account. Screenshots are saved.
"""

from __future__ import annotations

import json
import re
from typing import Any

from _browser import artifacts_dir, login, shot
from _console_env import ConsoleEnv, schedule_params_change

from marginproof.cli.proofs import evidence
from marginproof.instruments.portfolio import Portfolio
from marginproof.models.grid import GridModel
from marginproof.proofs.errors import VerificationError
from marginproof.proofs.inclusion import load_proof_bytes
from marginproof.proofs.records import verify_record
from marginproof.proofs.verify import verify_account
from marginproof.storage.proofstore import ProofStore, published_keys


def _usd(text: str) -> float:
    return float(re.sub(r"[^0-9.\-]", "", text))


def test_operator_dashboard_ranks_accounts_and_updates_live_after_a_replayed_tick(
        page: Any, console: ConsoleEnv) -> None:
    login(page, console, console.operator_key)
    ids = page.locator("#ranking tbody tr[data-account]").evaluate_all(
        "rs => rs.map(r => r.dataset.account)")
    ov = console.get("/console/api/overview").json()
    assert ids == [a["account_id"] for a in ov["accounts"]]
    assert set(ids) == {"alice", "bob", "carol"}
    utils = [a["utilisation"] if a["utilisation"] is not None else float("inf")
             for a in ov["accounts"]]
    assert utils == sorted(utils, reverse=True)
    page.evaluate("window.__sameDocument = true")
    seq = console.replay_tick("BTC")
    row = page.wait_for_selector(f'#ranking tr[data-account="carol"][data-seq="{seq}"]')
    assert page.evaluate("window.__sameDocument") is True  # pushed over the WebSocket
    m = console.container.repo.latest_margin("carol")
    assert m is not None and m["seq"] == seq and m["cause"].startswith("tick")
    cells = row.query_selector_all("td")
    assert abs(_usd(cells[2].inner_text()) - m["initial_margin"]) <= 1.0
    assert abs(_usd(cells[4].inner_text()) - m["equity"]) <= 1.0
    # alerts: the liquidation signal and a parameter change announced live
    assert page.locator("#alerts").get_by_text("Liquidation").first.is_visible()
    schedule_params_change(console)
    page.locator("#alerts").get_by_text("Parameters scheduled").wait_for()
    shot(page, "01-dashboard-operator")


def test_account_drilldown_shows_components_greeks_risk_matrix_and_history(
        page: Any, console: ConsoleEnv) -> None:
    login(page, console, console.keys["alice"])
    assert page.locator("#ranking tbody tr[data-account]").count() == 1
    page.get_by_role("link", name="alice").click()
    page.wait_for_selector("#acct-margin")
    for heading in ("Margin by component", "Binding scenario", "Positions and collateral",
                    "Greeks by underlying and expiry", "Risk matrix", "Margin history"):
        assert page.get_by_role("heading", name=heading).is_visible(), heading
    hm = page.locator("table.heatmap")
    assert hm.locator("td.binding").count() == 1
    assert page.locator("svg.chart path.line").count() == 3  # IM, MM, equity
    d = console.get("/console/api/accounts/alice/detail", console.keys["alice"]).json()
    loss = d["explanation"]["binding"]["loss"]
    assert abs(_usd(hm.locator("td.binding").inner_text()) + loss) <= 1.0
    seq = console.replay_tick("BTC")
    page.wait_for_selector(f'#acct-margin[data-seq="{seq}"]')
    m = console.container.repo.latest_margin("alice")
    assert m is not None
    im_text = page.locator("#acct-margin .stat-value").first.inner_text()
    assert abs(_usd(im_text) - m["initial_margin"]) <= 1.0
    page.wait_for_function("() => document.querySelectorAll('svg.chart circle').length >= 1")
    shot(page, "02-account-drilldown")


def test_whatif_adds_a_trade_and_compares_models_without_storing_anything(
        page: Any, console: ConsoleEnv) -> None:
    login(page, console, console.keys["alice"])
    page.get_by_role("link", name="What-if").click()
    page.wait_for_selector("#wi-form")
    assert page.get_by_role("textbox", name="Account", exact=True).input_value() == "alice"
    page.get_by_label("Instrument 1").fill("BTC-PERPETUAL")
    page.get_by_label("Quantity 1").fill("10000")
    page.get_by_label("fhs", exact=True).check()
    before = console.container.repo.last_seq()
    page.get_by_role("button", name="Run what-if").click()
    page.wait_for_selector("#wi-detail table.heatmap", timeout=60_000)
    rows = page.locator("table.compare tbody tr")
    assert rows.count() == 3
    got = {rows.nth(i).locator("th").inner_text(): _usd(rows.nth(i).locator("td").nth(0)
                                                        .inner_text()) for i in range(3)}
    assert set(got) == {"standard", "grid", "fhs"}
    positions = dict(console.container.repo.account_state("alice")[1])
    positions["BTC-PERPETUAL"] = positions.get("BTC-PERPETUAL", 0.0) + 10000.0
    market = console.container.market()
    assert market is not None
    want = GridModel().margin(Portfolio.of(positions), market).initial_margin
    assert abs(got["grid"] - want) <= 1.0
    assert console.container.repo.last_seq() == before  # nothing stored
    shot(page, "03-whatif-account-trade")
    # paste a whole portfolio instead
    page.get_by_label("An empty portfolio").check()
    page.get_by_text("Paste a portfolio (JSON)").click()
    page.locator("#wi-paste").fill(json.dumps({"BTC-PERPETUAL": -50000, "ETH_USDC-PERPETUAL": 8}))
    page.get_by_role("button", name="Load into the rows").click()
    page.get_by_label("fhs", exact=True).uncheck()
    page.get_by_label("standard", exact=True).uncheck()
    page.get_by_role("button", name="Run what-if").click()
    page.wait_for_function(
        "() => document.querySelectorAll('table.compare tbody tr').length === 1")
    im = _usd(page.locator("table.compare tbody tr td").first.inner_text())
    pasted = Portfolio.of({"BTC-PERPETUAL": -50000.0, "ETH_USDC-PERPETUAL": 8.0})
    assert abs(im - GridModel().margin(pasted, market).initial_margin) <= 1.0
    assert console.container.repo.last_seq() == before


def test_reports_are_browsed_and_opened_safely(page: Any, console: ConsoleEnv) -> None:
    login(page, console, console.operator_key)
    page.get_by_role("link", name="Reports").click()
    page.get_by_role("heading", name="Backtest reports").wait_for()
    page.get_by_role("link", name="Grid backtest, BTC 2022").click()
    page.wait_for_selector(".markdown table")
    assert "Kupiec p-value" in page.locator(".markdown").inner_text()
    page.wait_for_function("() => { const i = document.querySelector('.markdown img');"
                           " return i && i.complete && i.naturalWidth > 0; }")
    shot(page, "04-report-backtest")
    page.get_by_role("link", name="Stress: FTX week 2022").click()
    frame = page.frame_locator("iframe.report-frame")
    assert "99.2 %" in frame.locator("#verdict").inner_text()
    assert frame.locator("body").get_attribute("data-ran") is None  # its script never ran
    page.get_by_role("link", name="cascade").click()
    page.wait_for_selector("#report-viewer table")
    assert page.locator("#report-viewer tbody tr").count() == 2
    page.get_by_role("link", name="Stress: FTX week 2022").click()
    frame.locator("#verdict").wait_for()
    shot(page, "05-report-stress")


# -- proofs -----------------------------------------------------------------------------------
def _py_verdict(console: ConsoleEnv, proof: bytes, signed: Any, trust: str | None = None,
                account_id: str | None = None) -> tuple[bool, Any]:
    """What `marginproof verify-account` decides on the same evidence."""
    keys_path = ProofStore(console.proofs_dir).keys_path
    try:
        p = evidence(load_proof_bytes, proof)
        trusted = evidence(published_keys, keys_path, trust)
        rec = evidence(lambda: verify_record(signed, trusted))
        res = evidence(lambda: verify_account(p, record=rec, account_id=account_id))
    except VerificationError as exc:
        return False, exc.code
    return True, res


def test_a_user_downloads_and_verifies_their_proof_in_the_browser(
        page: Any, console: ConsoleEnv) -> None:
    login(page, console, console.keys["alice"])
    page.get_by_role("link", name="Proofs").click()
    page.get_by_role("button", name="Download my proof").wait_for()
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download my proof").click()
    saved = artifacts_dir() / "proof-alice.json"
    dl.value.save_as(str(saved))
    page.get_by_role("button", name="Verify in this browser").click()
    verdict = page.wait_for_selector("#pf-verdict")
    assert verdict.get_attribute("data-valid") == "true", verdict.inner_text()
    latest = console.get("/console/api/proofs/latest").json()
    ok, res = _py_verdict(console, saved.read_bytes(), latest["record"])
    assert ok, res
    text = verdict.inner_text()
    assert f"leaf {res.index} of epoch {res.epoch}" in text
    for field, atoms in res.values.items():
        if field in ("coll", "im", "mm", "short"):
            assert str(atoms) in text
    js_checks = page.locator("ul.checks-done li").all_inner_texts()
    assert js_checks == [c for c in res.checks if not c.startswith("privacy")]
    shot(page, "06-proof-valid")
    # a tampered file is rejected, with the same check the Python verifier names
    obj = json.loads(saved.read_bytes())
    obj["leaf"]["values"][1] = str(int(obj["leaf"]["values"][1]) + 1)  # im + 1 atom
    bad = artifacts_dir() / "proof-alice-tampered.json"
    bad.write_text(json.dumps(obj, indent=2))
    ok, code = _py_verdict(console, bad.read_bytes(), latest["record"])
    assert not ok
    page.locator("#pf-file").set_input_files(str(bad))
    page.get_by_role("button", name="Verify in this browser").click()
    page.wait_for_selector('#pf-verdict[data-valid="false"]')
    assert page.get_attribute("#pf-verdict", "data-code") == code
    shot(page, "07-proof-tampered")


def _mutations(proof: dict[str, Any], record: dict[str, Any], other_nonce: str
               ) -> list[tuple[str, bytes, dict[str, Any], str | None]]:
    """(name, proof bytes, signed record, trusted key id) cases, one tampering each."""
    def js(o: Any, **kw: Any) -> bytes:
        return json.dumps(o, **kw).encode()

    def edit(fn: Any) -> dict[str, Any]:
        o = json.loads(json.dumps(proof))
        fn(o)
        return o

    def redit(fn: Any) -> dict[str, Any]:
        o = json.loads(json.dumps(record))
        fn(o)
        return o

    flip = lambda h: ("0" if h[0] != "0" else "1") + h[1:]  # noqa: E731
    p0 = load_proof_bytes(js(proof))
    cases: list[tuple[str, bytes, dict[str, Any], str | None]] = [
        ("honest", js(proof, separators=(",", ":"), sort_keys=True), record, None),
        ("honest, pretty-printed", js(proof, indent=1), record, None),
        ("honest, binary (no nonce)", p0.public().to_binary(), record, None),
        ("trusted genesis key pinned", js(proof), record, record["key_id"]),
        ("wrong trusted key", js(proof), record, "ab" * 32),
        ("leaf value", js(edit(lambda o: o["leaf"]["values"].__setitem__(
            0, str(int(o["leaf"]["values"][0]) + 1)))), record, None),
        ("sibling hash", js(edit(lambda o: o["path"][0].__setitem__("h", flip(o["path"][0]["h"])))),
         record, None),
        ("sibling sum", js(edit(lambda o: o["path"][1]["s"].__setitem__(
            0, str(int(o["path"][1]["s"][0]) + 7)))), record, None),
        ("sibling sum out of range", js(edit(lambda o: o["path"][1]["s"].__setitem__(
            0, str(2**64 - 1)))), record, None),
        ("index", js(edit(lambda o: o.__setitem__("index", str(int(o["index"]) ^ 1)))), record,
         None),
        ("epoch", js(edit(lambda o: o.__setitem__("epoch", "2"))), record, None),
        ("header hash", js(edit(lambda o: o.__setitem__("hdr_hash", flip(o["hdr_hash"])))),
         record, None),
        ("someone else's nonce", js(edit(lambda o: o.__setitem__("nonce", other_nonce))), record,
         None),
        ("depth", js(edit(lambda o: o.__setitem__("depth", str(int(o["depth"]) + 1)))), record,
         None),
        ("duplicate key", js(proof)[:-1] + b', "epoch": "1"}', record, None),
        ("bare number", js(edit(lambda o: o.__setitem__("index", 0))), record, None),
        ("record totals", js(proof), redit(lambda r: r["record"]["totals"].__setitem__(
            "im", "1")), None),
        ("record signature", js(proof), redit(lambda r: r.__setitem__("sig", flip(r["sig"]))),
         None),
        ("record root", js(proof), redit(lambda r: r["record"]["root"].__setitem__(
            "hash", flip(r["record"]["root"]["hash"]))), None),
        ("record header shape", js(proof), redit(lambda r: r["record"]["header"].__setitem__(
            "quote", {"symbol": "USD"})), None),
    ]
    return cases


def test_the_browser_verifier_agrees_with_the_python_verifier(page: Any,
                                                               console: ConsoleEnv) -> None:
    login(page, console, console.keys["alice"])
    latest = console.get("/console/api/proofs/latest").json()
    mine = console.get("/console/api/proofs/mine", console.keys["alice"]).content
    bobs = json.loads(console.get("/console/api/proofs/mine", console.keys["bob"]).content)
    cases = _mutations(json.loads(mine), latest["record"], bobs["nonce"])
    payload = [{"name": n, "proof": list(b), "record": r, "trust": t} for n, b, r, t in cases]
    js_out = page.evaluate("""async ({cases, keys}) => {
        const v = await import('/console/static/verify.js');
        const out = [];
        for (const c of cases) {
            out.push(await v.verifyProofFile(new Uint8Array(c.proof),
                {signedRecord: c.record, keyEntries: keys, trust: c.trust}));
        }
        return out;
    }""", {"cases": payload, "keys": latest["keys"]})
    n_valid = 0
    for (name, proof, record, trust), got in zip(cases, js_out, strict=True):
        ok, res = _py_verdict(console, proof, record, trust)
        assert got["valid"] is ok, (name, got, res)
        if ok:
            n_valid += 1
            assert got["index"] == str(res.index) and got["epoch"] == str(res.epoch), name
            assert got["values"] == {k: str(v) for k, v in res.values.items()}, name
            assert got["checks"] == [c for c in res.checks if not c.startswith("privacy")], name
        else:
            assert got["code"] == res, (name, got)
    assert n_valid == 4  # the honest forms; every tampering is rejected by both


# -- scopes -------------------------------------------------------------------------------------
def test_a_wrong_key_sees_nothing_of_another_account(page: Any, console: ConsoleEnv) -> None:
    bob = console.keys["bob"]
    login(page, console, bob)
    assert page.locator("#ranking tbody tr[data-account]").evaluate_all(
        "rs => rs.map(r => r.dataset.account)") == ["bob"]
    statuses = page.evaluate("""async (key) => {
        const h = {'X-API-Key': key, 'Content-Type': 'application/json'};
        const get = async (u) => (await fetch(u, {headers: h})).status;
        return {
            detail: await get('/console/api/accounts/alice/detail'),
            margin: await get('/accounts/alice/margin'),
            history: await get('/accounts/alice/history'),
            proof: await get('/console/api/proofs/mine?account_id=alice'),
            whatif: (await fetch('/console/api/whatif', {method: 'POST', headers: h,
                body: JSON.stringify({account_id: 'alice', trades: []})})).status,
        };
    }""", bob)
    assert statuses == {"detail": 403, "margin": 403, "history": 403, "proof": 403,
                        "whatif": 403}
    # the stream of bob's key: a tick re-margins alice too, bob hears only of himself
    page.evaluate("""(key) => {
        window.__msgs = [];
        const url = `ws://${location.host}/console/api/stream`;
        const ws = new WebSocket(url, ['mp.v1', 'mp.key.' + key]);
        ws.onmessage = (e) => window.__msgs.push(e.data);
    }""", bob)
    page.wait_for_function("() => window.__msgs.length >= 1")
    seq = console.replay_tick("BTC")
    console.wait_margin("alice", seq)
    page.wait_for_function("(seq) => window.__msgs.some(m => JSON.parse(m).type === 'update' "
                           "&& JSON.parse(m).margins.some(r => r.seq === seq))", arg=seq)
    msgs = page.evaluate("window.__msgs")
    assert any('"bob"' in m for m in msgs) and not any("alice" in m for m in msgs)
    page.goto(console.base_url + "/#account/alice")
    page.get_by_text("This key may not see that account.").wait_for()
    shot(page, "08-wrong-key-refused")
    page.goto(console.base_url + "/#dashboard")
    page.wait_for_selector(f'#ranking tr[data-account="bob"][data-seq="{seq}"]')
    assert "alice" not in page.content().replace("#account/alice", "")


def test_keyboard_and_screen_reader_basics(page: Any, console: ConsoleEnv) -> None:
    page.goto(console.base_url + "/")
    page.wait_for_selector("#api-key:focus")  # the log-in field has focus on arrival
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Log in"
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")  # before the log-in field: the skip link, first in order
    assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    login(page, console, console.operator_key)
    # every view: each form control has a label, the view heading takes focus
    for view in ("dashboard", "whatif", "reports", "proofs", "account/carol"):
        page.goto(f"{console.base_url}/#{view}")
        page.wait_for_function(
            "() => document.activeElement && document.activeElement.tagName === 'H1'")
        unlabelled = page.evaluate("""() => [...document.querySelectorAll(
            'main input, main select, main textarea')].filter(e => !e.closest('[hidden]'))
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                    && !e.getAttribute('aria-labelledby')).map(e => e.id || e.outerHTML)""")
        assert unlabelled == [], (view, unlabelled)
    # keyboard only: from the dashboard heading, Tab reaches the first account link; Enter opens it
    page.goto(console.base_url + "/#dashboard")
    page.wait_for_selector("#ranking a")
    first = page.locator("#ranking tbody tr").first.get_attribute("data-account")
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('#ranking') !== null"):
            break
    assert page.evaluate("document.activeElement.textContent") == first
    page.keyboard.press("Enter")
    page.wait_for_selector("#acct-margin")
    assert page.evaluate("document.activeElement.id") == "acct-title"
    # tables have captions or labelled sections; charts have text alternatives
    assert page.evaluate("[...document.querySelectorAll('svg.chart')].every(s => "
                         "s.getAttribute('aria-label') || s.getAttribute('aria-labelledby'))")
    assert page.evaluate("[...document.querySelectorAll('main .view:not([hidden]) table')]"
                         ".every(t => t.querySelector('caption'))")


def test_bad_input_never_breaks_the_page(page: Any, console: ConsoleEnv) -> None:
    login(page, console, console.operator_key)
    page.goto(console.base_url + "/#whatif")
    page.wait_for_selector("#wi-form")
    page.get_by_label("Instrument 1").fill("NOT-AN-INSTRUMENT")
    page.get_by_role("button", name="Run what-if").click()
    page.wait_for_selector("table.compare .error")
    assert "instrument" in page.locator("table.compare .error").first.inner_text().lower()
