"""Project-wide test configuration."""

from __future__ import annotations

import os
import tempfile

from hypothesis import HealthCheck, settings

# Derived-data caches (parsed history, scenario sets) of this test session live in a fresh
# directory, never in the user's ~/.cache: a test sees what a fresh clone sees.
os.environ.setdefault("MARGINPROOF_CACHE_DIR", tempfile.mkdtemp(prefix="marginproof-tests-"))
# services started by tests start their worker processes on first use (warming them at start
# is tested on its own, tests/unit/service/test_isolation.py)
os.environ.setdefault("MARGINPROOF_WORK_WARM_UP", "0")

# No deadlines and no "too slow" health check in either profile: data generation and the
# examples themselves run slower on a loaded or smaller host, which is not a test failure.
settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(
    "ci" if os.environ.get("CI", "").lower() not in ("", "0", "false", "no") else "dev"
)


def pytest_collection_modifyitems(config: object, items: list) -> None:  # type: ignore[type-arg]
    """Run the browser tests last.

    Playwright's sync API keeps an event loop running in the main thread while its
    session-scoped browser is open; tests that call ``asyncio.run`` must not follow it.
    """
    items.sort(key=lambda item: "/tests/e2e/" in str(getattr(item, "path", "")))
