"""Helpers of the browser tests: the Chromium binary and flags, screenshots, logging in."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from _console_env import ConsoleEnv

CHROMIUM = os.environ.get("MARGINPROOF_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1440, "height": 900}  # a laptop screen



def artifacts_dir() -> Path:
    d = Path(os.environ.get("ARTIFACTS_DIR") or Path(__file__).parent / "artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


def shot(page: Any, name: str) -> Path:
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def login(page: Any, env: ConsoleEnv, key: str) -> None:
    page.goto(env.base_url + "/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("#ranking tbody tr[data-account]")
