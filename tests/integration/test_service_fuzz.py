"""Schemathesis fuzzing of the API from its OpenAPI schema: no 5xx, no state change on 4xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from _service_helpers import Service, demo_positions, running_service
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable


@pytest.fixture(scope="module")
def fuzz_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("fuzz"), params_min_notice_s=3600.0) as s:
        pos, coll = demo_positions()
        s.client.post("/accounts", json={"account_id": "alice", "positions": pos,
                                         "collateral": coll}, headers=s.op())
        s.wait_margin("alice")
        yield s


def _state(s: Service) -> tuple[Any, ...]:
    repo = s.container.repo
    keys = repo.list_keys()
    return (repo.last_seq(), tuple((k.key_id, k.revoked_at_ms) for k in keys),
            len(repo.params_changes()), tuple(repo.list_accounts()))


def test_api_never_errors_and_rejections_change_nothing(fuzz_service: Service) -> None:
    """Every operation of the published schema, fuzzed with schema-valid and invalid data."""
    s = fuzz_service
    api = schemathesis.openapi.from_asgi("/openapi.json", s.client.app)
    n_ops = 0
    calls = {"n": 0, "rejected": 0}
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    for result, mode in [(r, m) for r in api.get_all_operations() for m in modes]:
        op = result.ok()
        n_ops += mode is modes[0]

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True, database=None)
        def run(case: Any) -> None:
            before = _state(s)
            response = case.call(headers={"X-API-Key": s.operator_key})
            calls["n"] += 1
            assert response.status_code < 500, (case.method, case.path, response.text[:300])
            if response.status_code >= 400:
                calls["rejected"] += 1
                assert _state(s) == before, (case.method, case.path, response.status_code)

        try:
            run()
        except Unsatisfiable:
            assert mode is modes[1]  # nothing to make invalid (no parameters, no body)
    assert n_ops >= 14
    assert calls["n"] >= 10 * n_ops and calls["rejected"] >= 5 * n_ops
    print(f"schemathesis: {calls['n']} calls on {n_ops} operations, "
          f"{calls['rejected']} rejected with no state change")
