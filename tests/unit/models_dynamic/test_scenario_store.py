"""A persisted Monte Carlo scenario set gives the margin the build gives, bit for bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from marginproof.demo.book import demo_account
from marginproof.models._history import scenario_store
from marginproof.models.registry import get_model
from marginproof.scenarios.sets import ScenarioSet
from marginproof.storage import scenario_store as ss
from marginproof.storage.scenario_store import DiskScenarioStore


class Counting(DiskScenarioStore):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.hits = 0
        self.saves = 0

    def load(self, key: str) -> ScenarioSet | None:
        out = super().load(key)
        self.hits += out is not None
        return out

    def save(self, key: str, scenarios: ScenarioSet) -> None:
        self.saves += 1
        super().save(key, scenarios)


@pytest.fixture(scope="module")
def demo() -> Any:
    acct, market = demo_account()
    return acct.portfolio, market


def test_stored_set_gives_the_built_margin(demo: Any, tmp_path: Path) -> None:
    book, market = demo
    plain = get_model("mc").margin(book, market)
    store = Counting(tmp_path)
    with scenario_store(store):
        first = get_model("mc").margin(book, market)
        second = get_model("mc").margin(book, market)  # a fresh model: from the store
    assert (store.saves, store.hits) == (1, 1)
    assert len(list(tmp_path.glob("scenarios-*.npz"))) == 1
    for r in (first, second):
        assert r.initial_margin == plain.initial_margin
        assert r.maintenance_margin == plain.maintenance_margin
        assert r.params_hash == plain.params_hash


def test_other_parameters_or_code_miss_the_store(demo: Any, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    book, market = demo
    store = Counting(tmp_path)
    with scenario_store(store):
        get_model("mc").margin(book, market)
        monkeypatch.setattr(ss, "code_fingerprint", lambda: "edited")
        get_model("mc").margin(book, market)
    assert (store.saves, store.hits) == (2, 0)


def test_store_round_trips_arrays_and_info(tmp_path: Path) -> None:
    s = ScenarioSet(("BTC", "ETH"), ("a", "b", "c"), np.arange(6.0).reshape(3, 2) / 7,
                    np.ones((3, 2)) / 3, False,
                    {"asof": "2022-04-14", "nested": {"x": (1, 2.5)}, "flag": True})
    store = DiskScenarioStore(tmp_path)
    store.save("k", s)
    got = store.load("k")
    assert got is not None
    np.testing.assert_array_equal(got.log_returns, s.log_returns)
    np.testing.assert_array_equal(got.iv_log_changes, s.iv_log_changes)
    assert got.labels == s.labels and got.underlyings == s.underlyings
    assert got.info["nested"] == {"x": [1, 2.5]} and got.info["flag"] is True
    assert store.load("other") is None
    next(tmp_path.glob("*.npz")).write_bytes(b"truncated")
    assert store.load("k") is None
