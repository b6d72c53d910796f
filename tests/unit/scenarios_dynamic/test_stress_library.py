"""Stress library: historical windows ended by the as-of day, hypothetical shocks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marginproof.errors import InputError
from marginproof.feeds.history import shipped_history
from marginproof.risk.factors import factor_path
from marginproof.scenarios.stress import (
    concat_sets,
    historical_stress_set,
    hypothetical_stress_set,
    parse_shocks,
    parse_windows,
)

WINDOWS = parse_windows([
    {"name": "Black Thursday", "start": "2020-03-11", "end": "2020-03-13"},
    {"name": "FTX", "start": "2022-11-06", "end": "2022-11-09"},
], "w")


@pytest.fixture(scope="module")
def paths() -> dict:
    h = shipped_history()
    return {u: factor_path(u, h.closes[u], h.atm_iv.get("BTC"), 0.94)
            for u in ("BTC", "ETH", "SOL")}


def test_only_windows_ended_by_asof_are_used(paths: dict) -> None:
    s = historical_stress_set(paths, ("BTC",), WINDOWS, np.datetime64("2022-06-01"))
    assert len(s) == 3 and all(lab.startswith("Black Thursday") for lab in s.labels)
    s2 = historical_stress_set(paths, ("BTC",), WINDOWS, np.datetime64("2023-01-01"))
    assert len(s2) == 7


def test_black_thursday_is_the_real_move(paths: dict) -> None:
    s = historical_stress_set(paths, ("BTC",), WINDOWS, np.datetime64("2021-01-01"))
    c = shipped_history().closes["BTC"]
    r = math.log(c.value_on(np.datetime64("2020-03-12")) / c.value_on(np.datetime64("2020-03-11")))
    assert s.log_returns[1, 0] == pytest.approx(r)
    assert math.expm1(r) < -0.35


def test_dates_without_data_for_an_underlying_are_dropped(paths: dict) -> None:
    s = historical_stress_set(paths, ("BTC", "SOL"), WINDOWS, np.datetime64("2023-01-01"))
    assert len(s) == 4  # SOL did not trade in March 2020


def test_two_day_mpor_uses_overlapping_moves(paths: dict) -> None:
    s = historical_stress_set(paths, ("BTC",), WINDOWS, np.datetime64("2021-01-01"), 2.0)
    assert s.horizon_applied and "2d overlapping" in s.labels[0]


def test_hypothetical_shocks() -> None:
    shocks = parse_shocks([{"name": "crash", "moves": {"BTC": -0.3}, "default_move": -0.4,
                            "iv_mult": 1.5}], "s")
    s = hypothetical_stress_set(("BTC", "SOL"), shocks)
    np.testing.assert_allclose(np.expm1(s.log_returns[0]), [-0.3, -0.4])
    np.testing.assert_allclose(np.exp(s.iv_log_changes[0]), [1.5, 1.5])
    assert s.horizon_applied


def test_bad_library_entries_are_rejected() -> None:
    with pytest.raises(InputError):
        parse_shocks([{"name": "x", "default_move": -1.2}], "s")
    with pytest.raises(InputError):
        parse_windows([{"name": "x", "start": "2022-01-02", "end": "2022-01-01"}], "w")
    a = hypothetical_stress_set(("BTC",), parse_shocks([{"name": "x"}], "s"))
    b = hypothetical_stress_set(("ETH",), parse_shocks([{"name": "x"}], "s"))
    with pytest.raises(InputError):
        concat_sets([a, b])
