"""End-to-end: the account page's forecast panel runs ``GET /accounts/{id}/forecast`` and shows
the call probability the API returns, fan charts against time and the call levels; a
``margin_warning`` on the bus raises the warning badge; a key without access gets the error line.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from _browser import login, shot
from _console_env import ConsoleEnv

QUERY = "/accounts/alice/forecast?horizon_hours=24&n_paths=1000"


def _open_alice(page: Any, console: ConsoleEnv) -> None:
    login(page, console, console.keys["alice"])
    page.get_by_role("link", name="alice").click()
    page.wait_for_selector("#acct-margin")
    assert page.get_by_role("heading", name="Forecast (next 24 h)").is_visible()


def _pct(text: str) -> float:
    m = re.search(r"(-?[0-9.]+) %", text)
    assert m, text
    return float(m.group(1))


def test_forecast_panel_matches_the_api(page: Any, console: ConsoleEnv) -> None:
    _open_alice(page, console)
    page.get_by_role("button", name="Run forecast").click()
    # the rest of the page stays usable while the forecast runs
    assert page.get_by_role("heading", name="Margin history").is_visible()
    page.wait_for_selector("#fc-result", timeout=60_000)
    api = console.get(QUERY, console.keys["alice"]).json()

    p_call = _pct(page.locator("#fc-p-call").inner_text())
    assert 0.0 <= p_call <= 100.0
    assert abs(p_call - 100 * api["p_call_within_horizon"]) <= 0.05
    assert float(page.locator("#fc-p-call").get_attribute("data-p")) == \
        api["p_call_within_horizon"]
    p_liq = _pct(page.locator("#fc-p-liq").inner_text())
    assert abs(p_liq - 100 * api["p_liquidation_within_horizon"]) <= 0.05
    assert f"{round(api['now']['equity']):,} USD" in page.locator("#fc-probs").inner_text()

    fan = page.locator("svg#fc-fan")
    assert fan.locator("path.band").count() == 4  # equity and IM, 5-95 % and 25-75 %
    medians = fan.locator("path.line").evaluate_all("ps => ps.map(p => p.getAttribute('d'))")
    assert len(medians) == 2
    assert all(d.count("L") == len(api["times"]) - 1 for d in medians)  # one point per hour
    ticks = fan.locator("text.tick-label").evaluate_all(
        "ts => ts.map(t => [t.textContent, t.dataset.t])")
    assert len(ticks) >= 4
    assert all(re.fullmatch(r"\d\d:\d\d", label) for label, _ in ticks)
    assert api["times"][0][:13] <= ticks[0][1][:13] and ticks[-1][1][:13] <= api["times"][-1][:13]
    assert fan.get_by_text("time (UTC)").count() == 1
    excess = page.locator("svg#fc-fan-excess")
    assert excess.locator("path.band").count() == 3
    assert excess.locator("line.ref-liq").count() == 1  # the zero-excess line is drawn

    levels = page.locator("table.levels tbody tr")
    assert levels.count() == len(api["call_levels"]) >= 1
    first = api["call_levels"][0]
    assert levels.first.locator("th").inner_text() == first["underlying"]
    meta = page.locator("#fc-meta").inner_text()
    assert f"Model {api['model']}" in meta and f"seed {api['seed']}" in meta
    assert page.locator("#fc-meta .hash").first.get_attribute("title") == api["params_hash"]

    page.locator("#acct-forecast").screenshot(path="/tmp/forecast_panel.png")
    shot(page, "12-account-forecast")

    # a margin_warning published the way the service's evaluator publishes it
    w = console.extra["app"].state.margin_warnings
    ev = {"type": "margin_warning", "account_id": "alice", "p_call": 0.42,
          "p_liquidation": 0.07, "threshold": 0.05, "horizon_hours": 24.0,
          "model": api["model"], "params_hash": api["params_hash"],
          "market_timestamp": api["market_timestamp"], "seed": api["seed"],
          "forecast_hash": api["forecast_hash"], "status": api["now"]["status"],
          "initial_margin": api["now"]["initial_margin"], "equity": api["now"]["equity"],
          "call_levels": api["call_levels"], "evaluated_at_ms": console.container.clock_ms()}
    assert page.locator("#acct-warning-badge").count() == 0
    console.run_on_server(w._publish(ev))
    badge = page.locator("#acct-warning-badge")
    badge.wait_for()
    assert badge.is_visible()
    assert "42.0 %" in page.locator("#acct-warning").inner_text()
    assert "margin warning" in page.locator("#acct-ev-wrap").inner_text()
    shot(page, "13-account-margin-warning")


def test_forecast_with_a_key_without_access_shows_the_error_line(
        page: Any, console: ConsoleEnv) -> None:
    _open_alice(page, console)
    # the page keeps its stream; the forecast goes out with bob's key, which may not see alice
    page.evaluate("k => sessionStorage.setItem('marginproof.apiKey', k)", console.keys["bob"])
    assert console.get(QUERY, console.keys["bob"]).status_code == 403
    page.get_by_role("button", name="Run forecast").click()
    err = page.locator("#fc-error")
    err.wait_for(timeout=30_000)
    assert "403" in err.inner_text() and "may not see" in err.inner_text()
    assert page.locator("#fc-result").count() == 0


@pytest.mark.parametrize("account", ["bob", "carol"])
def test_operator_forecasts_a_leveraged_account(page: Any, console: ConsoleEnv,
                                                account: str) -> None:
    login(page, console, console.operator_key)
    page.locator("#ranking").get_by_role("link", name=account, exact=True).click()
    page.wait_for_selector("#acct-margin")
    page.get_by_role("button", name="Run forecast").click()
    page.wait_for_selector("#fc-result, #fc-error", timeout=60_000)
    api = console.get(f"/accounts/{account}/forecast?horizon_hours=24&n_paths=1000").json()
    p_call = _pct(page.locator("#fc-p-call").inner_text())
    assert 0.0 <= p_call <= 100.0
    assert abs(p_call - 100 * api["p_call_within_horizon"]) <= 0.05
    page.locator("#acct-forecast").screenshot(path=f"/tmp/forecast_panel_{account}.png")
    shot(page, f"14-account-forecast-{account}")
