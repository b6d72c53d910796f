"""Browser tests: Debian's chromium driven by Playwright (its own browser download is never used).

``make e2e-deps`` installs chromium (``apt-get install chromium``) when it is missing; a missing
browser is a test failure, never a skip. Screenshots go to ``$ARTIFACTS_DIR`` (default
``tests/e2e/artifacts/``, ignored by git).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _browser import CHROMIUM, FLAGS, VIEWPORT
from _console_env import ConsoleEnv, start_console


@pytest.fixture(scope="session")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleEnv]:
    env = start_console(tmp_path_factory.mktemp("console"))
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"no chromium at {CHROMIUM}: run `make e2e-deps` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # a fresh profile per run; Playwright's own browser download is never used
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport=VIEWPORT, accept_downloads=True)
        try:
            yield ctx
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh tab; JavaScript errors in it fail the test; closed afterwards."""
    pg = browser.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    benign = ("sandboxed", "Failed to load resource")  # blocked report script; 4xx on purpose
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error"
          and not any(b in m.text for b in benign) else None)
    pg.set_default_timeout(20_000)
    yield pg
    pg.close()
    assert not errors, f"JavaScript errors in {request.node.name}: {errors}"
