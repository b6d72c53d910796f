"""A running service over SQLite (or given URLs) with an operator key, for API tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from marginproof.bootstrap import Container, bootstrap
from marginproof.config.settings import Settings
from marginproof.demo.book import demo_account, demo_market
from marginproof.io.formats import market_to_dict
from marginproof.service.app import create_app
from marginproof.service.auth import create_key


@dataclass
class Service:
    client: TestClient
    container: Container
    operator_key: str

    def op(self) -> dict[str, str]:
        return {"X-API-Key": self.operator_key}

    def wait_margin(self, account_id: str, min_seq: int = 0, timeout_s: float = 20.0
                    ) -> dict[str, Any]:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            r = self.client.get(f"/accounts/{account_id}/margin", headers=self.op())
            if r.status_code == 200 and r.json()["seq"] >= min_seq:
                return r.json()  # type: ignore[no-any-return]
            time.sleep(0.02)
        raise AssertionError(f"no margin for {account_id} at seq >= {min_seq}")

    def account_key(self, account_id: str) -> str:
        r = self.client.post("/keys", json={"scope": "account", "account_id": account_id,
                                            "label": account_id}, headers=self.op())
        assert r.status_code == 201, r.text
        return r.json()["key"]  # type: ignore[no-any-return]


@contextmanager
def running_service(tmp_path: Path, seed_market: bool = True, **overrides: Any
                    ) -> Iterator[Service]:
    # these service tests check grid figures; the default model in force (dynamic) has its own
    settings = Settings(**{"database_url": f"sqlite:///{tmp_path / 'svc.sqlite'}",
                           "params_min_notice_s": 0.0, "engine_model": "grid", **overrides})
    container = bootstrap(settings)
    key, _ = create_key(container.repo, "operator", None, "ops", "test", container.clock_ms())
    app = create_app(container)
    with TestClient(app) as client:
        svc = Service(client, container, key)
        if seed_market:
            r = client.post("/market", json={"snapshot": market_to_dict(demo_market())},
                            headers=svc.op())
            assert r.status_code == 202, r.text
        yield svc


def demo_positions() -> tuple[dict[str, float], dict[str, float]]:
    acct, _ = demo_account()
    return ({p.instrument.name: p.quantity for p in acct.portfolio.positions},
            dict(acct.collateral))
