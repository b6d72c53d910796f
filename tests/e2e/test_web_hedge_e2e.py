"""End-to-end: "Suggest a hedge" on the console's what-if page fills the form with the verified
suggestion, and running the what-if on it gives the IM the suggestion promised."""

from __future__ import annotations

import re
from typing import Any

from _browser import login, shot
from _console_env import ConsoleEnv

from marginproof.instruments.portfolio import Portfolio
from marginproof.models.grid import GridModel


def _usd(text: str) -> float:
    return float(re.sub(r"[^0-9.\\-]", "", text))


def test_suggest_a_hedge_fills_the_whatif_form(page: Any, console: ConsoleEnv) -> None:
    login(page, console, console.keys["alice"])
    page.get_by_role("link", name="What-if").click()
    page.wait_for_selector("#wi-form")
    assert page.get_by_label("An account's current positions").is_checked()
    before = console.container.repo.last_seq()
    held = dict(console.container.repo.account_state("alice")[1])
    page.get_by_role("button", name="Suggest a hedge").click()
    page.wait_for_selector("#wi-hedge table.hedge", timeout=60_000)
    hint = page.locator("#wi-hedge p.hint").inner_text()
    after = float(re.search(r"→ ([0-9,.]+) USD", hint).group(1).replace(",", ""))  # type: ignore[union-attr]
    trades = {}
    for tr in page.locator("#wi-rows tr").all():
        name = tr.locator(".wi-inst").input_value()
        if name:
            trades[name] = float(tr.locator(".wi-qty").input_value())
    assert trades, "the suggestion is in the rows"
    shot(page, "10-whatif-hedge-suggested")
    page.get_by_label("standard", exact=True).uncheck()
    page.get_by_role("button", name="Run what-if").click()
    page.wait_for_function(
        "() => document.querySelectorAll('table.compare tbody tr').length === 1")
    im = _usd(page.locator("table.compare tbody tr td").first.inner_text())
    positions = dict(held)
    for n, q in trades.items():
        positions[n] = positions.get(n, 0.0) + q
    market = console.container.market()
    assert market is not None
    want = GridModel().margin(Portfolio.of({k: v for k, v in positions.items() if v}),
                              market).initial_margin
    assert abs(im - want) <= 1.0 and abs(im - after) <= 1.0
    assert console.container.repo.last_seq() == before  # nothing stored
    assert dict(console.container.repo.account_state("alice")[1]) == held
    shot(page, "11-whatif-hedge-run")
