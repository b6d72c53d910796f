"""Schemathesis fuzzing of the API from its OpenAPI schema: no 5xx, no state change on 4xx."""

from __future__ import annotations

import json
import re
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


def _mutations(body: Any) -> list[tuple[str, str]]:
    """Raw JSON texts derived from a schema-valid body: non-JSON numbers, overflow, absurd
    finite values, duplicate keys, deep nesting."""
    text = json.dumps(body)
    out: list[tuple[str, str]] = []
    m = re.search(r"(?<=[:\[,] )-?\d+(\.\d+)?([eE][-+]?\d+)?", text)
    if m is not None:
        for lit in ("NaN", "Infinity", "-Infinity", "1e400", "1e308", "-1e300", "true", '"10"'):
            out.append((lit, text[:m.start()] + lit + text[m.end():]))
    if isinstance(body, dict) and body:
        k = next(iter(body))
        dup = json.dumps(k) + ": " + json.dumps(body[k])
        out.append(("duplicate", "{" + dup + ", " + text[1:]))
        out.append(("deep", "{" + json.dumps(k) + ": " + "[" * 50_000 + "]" * 50_000 + "}"))
    return out


def test_nan_huge_and_duplicate_key_bodies_are_refused_and_change_nothing(
        fuzz_service: Service) -> None:
    """Every operation with a JSON body: schema-generated bodies, each mutated into the bad
    classes above and sent raw. A mutated body may still be valid (a huge number where the
    schema has no bound is refused by the model, a duplicate of an equal value ...), but none
    may give a 5xx, a non-JSON reply, or change state when refused."""
    s = fuzz_service
    api = schemathesis.openapi.from_asgi("/openapi.json", s.client.app)
    stats = {"sent": 0, "refused": 0, "ops": 0}
    for result in api.get_all_operations():
        op = result.ok()
        if op.method.upper() not in ("POST", "PUT"):
            continue
        stats["ops"] += 1

        @given(case=op.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE))
        @settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True, database=None)
        def run(case: Any) -> None:
            if not isinstance(case.body, (dict, list)):
                return
            for what, raw in _mutations(case.body):
                before = _state(s)
                r = s.client.request(case.method, case.formatted_path, params=case.query,
                                     content=raw, headers={"X-API-Key": s.operator_key,
                                                           "content-type": "application/json"})
                stats["sent"] += 1
                assert r.status_code < 500, (case.method, case.formatted_path, what, r.text)
                json.loads(r.text or "null", parse_constant=_no_constant)
                if r.status_code >= 400:
                    stats["refused"] += 1
                    assert _state(s) == before, (case.formatted_path, what)
                if what in ("NaN", "Infinity", "-Infinity", "1e400", "deep"):
                    assert r.status_code in (400, 404, 422), (case.formatted_path, what,
                                                              r.status_code)

        run()
    assert stats["ops"] >= 7 and stats["sent"] >= 100
    assert stats["refused"] >= 0.9 * stats["sent"]
    print(f"raw bodies: {stats['sent']} sent to {stats['ops']} operations, "
          f"{stats['refused']} refused with no state change")


def _no_constant(c: str) -> None:
    raise AssertionError(f"{c} in a reply")
