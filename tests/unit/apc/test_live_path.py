"""The live margin path (apc.live): vectorised stage = plain twin = batch buffer path."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginproof.apc.live import (
    MS_PER_HOUR,
    LivePath,
    PathParams,
    PhaseParams,
    margin_path_reference,
)
from marginproof.apc.tools import buffer_with_release
from marginproof.errors import InputError

DAY_MS = 86_400_000
FIG = st.floats(0.0, 1e7, allow_nan=False, allow_infinity=False)
PARAMS = st.builds(
    PathParams,
    release_buffer=st.sampled_from([0.0, 0.25, 0.1]),
    rebuild_speed_per_day=st.sampled_from([0.0, 0.05]),
    speed_limit=st.booleans(),
    up_per_hour=st.sampled_from([0.01, 0.1, 0.5]),
    down_per_hour=st.sampled_from([0.005, 0.02, 0.3]),
    min_coverage=st.sampled_from([0.0, 0.5, 0.8, 1.0]),
    phase=st.just(PhaseParams(0.02, 0.6)),
)


@st.composite
def account_steps(draw: st.DrawFn, n_accounts: int = 4) -> list[tuple[list[int], list[float],
                                                                        int, list[bool],
                                                                        list[bool]]]:
    """Steps of a book of accounts: each step moves a subset at one log time."""
    n = draw(st.integers(1, 25))
    t = draw(st.integers(0, 10**12))
    out = []
    for _ in range(n):
        t += draw(st.sampled_from([0, 1, 100, 60_000, 1_800_000, 3_600_000, DAY_MS]))
        idx = sorted(draw(st.sets(st.integers(0, n_accounts - 1), min_size=1)))
        xs = [draw(FIG) for _ in idx]
        bc = [draw(st.booleans()) for _ in idx]
        dg = [draw(st.booleans()) for _ in idx]
        out.append((idx, xs, t, bc, dg))
    return out


@settings(max_examples=300, deadline=None)
@given(account_steps(), PARAMS, st.booleans())
def test_stage_equals_reference_twin_bit_for_bit(steps: list[tuple[list[int], list[float], int,
                                                                     list[bool], list[bool]]],
                                                 params: PathParams, phased: bool) -> None:
    stage = LivePath(params)
    phases: list[tuple[int, int]] = []
    if phased:
        t0 = steps[0][2] + 1
        stage.add_phase(t0, t0 + 5 * int(MS_PER_HOUR))
        phases = stage.phases
    seq: dict[int, list[tuple[float, int, bool, bool]]] = {}
    got: dict[int, list[tuple[float, float]]] = {}
    for idx, xs, t, bc, dg in steps:
        out = stage.step(np.array(idx), np.array(xs), t, np.array(bc), np.array(dg))
        for j, i in enumerate(idx):
            seq.setdefault(i, []).append((xs[j], t, bc[j], dg[j]))
            got.setdefault(i, []).append((float(out.buffered[j]), float(out.called[j])))
    for i, s in seq.items():
        a, c = margin_path_reference([v[0] for v in s], [v[1] for v in s], [v[2] for v in s],
                                     [v[3] for v in s], params, phases)
        assert [g[0] for g in got[i]] == a.tolist()
        assert [g[1] for g in got[i]] == c.tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.01, 1e6, allow_nan=False), min_size=1, max_size=60),
       st.sampled_from([0.0, 0.25, 0.5]), st.sampled_from([0.0, 0.05]))
def test_daily_fixed_book_path_is_the_batch_buffer_path(values: list[float], b: float,
                                                        g: float) -> None:
    """No speed limit, daily steps, a fixed book: exactly DynamicModel.margin_path's formula."""
    p = PathParams(release_buffer=b, rebuild_speed_per_day=g)
    n = len(values)
    _, c = margin_path_reference(values, [k * DAY_MS for k in range(n)], [False] * n,
                                 [False] * n, p)
    np.testing.assert_array_equal(c, buffer_with_release(np.array(values), b, g))
    stage = LivePath(p)
    got = [float(stage.step(np.array([0]), np.array([v]), k * DAY_MS, False, False).called[0])
           for k, v in enumerate(values)]
    assert got == buffer_with_release(np.array(values), b, g).tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(FIG, st.sampled_from([1, 60_000, 3_600_000, 7_200_000]),
                          st.booleans()), min_size=2, max_size=40),
       st.sampled_from([0.05, 0.1, 0.3]), st.sampled_from([0.01, 0.05]),
       st.sampled_from([0.0, 0.8]))
def test_speed_limit_bounds_every_move(steps: list[tuple[float, int, bool]], u: float, d: float,
                                       f: float) -> None:
    """Rises within (1+u)^h unless forced by the floor f X; falls within (1-d)^h; bad data
    never lowers."""
    p = PathParams(release_buffer=0.25, speed_limit=True, up_per_hour=u, down_per_hour=d,
                   min_coverage=f)
    xs = [s[0] for s in steps]
    ts = np.cumsum([0] + [s[1] for s in steps[1:]]).tolist()
    dg = [s[2] for s in steps]
    _, c = margin_path_reference(xs, ts, [False] * len(xs), dg, p)
    for k in range(1, len(xs)):
        h = (ts[k] - ts[k - 1]) / MS_PER_HOUR
        tol = 1e-12 * max(1.0, c[k - 1])
        assert c[k] >= f * xs[k] - tol
        if c[k] > c[k - 1] * math.pow(1 + u, h) + tol:
            assert c[k] == pytest.approx(f * xs[k]) or (dg[k] and c[k] == c[k - 1])
        if not dg[k]:
            assert c[k] >= c[k - 1] * math.pow(1 - d, h) - tol or c[k] >= f * xs[k] - tol
        else:
            assert c[k] >= c[k - 1]


def test_vol_spike_rises_within_the_speed_limit() -> None:
    """A figure jumping 60 % is phased in at 10 %/h (beyond the 25 % buffer), floor 0.8 X."""
    p = PathParams(release_buffer=0.25, speed_limit=True, up_per_hour=0.10, down_per_hour=0.02,
                   min_coverage=0.8)
    hour = int(MS_PER_HOUR)
    xs = [100.0, 100.0, 200.0, 200.0, 200.0, 200.0, 200.0]
    ts = [0, hour, 2 * hour, 3 * hour, 4 * hour, 5 * hour, 6 * hour]
    a, c = margin_path_reference(xs, ts, [False] * 7, [False] * 7, p)
    assert c[1] == 125.0  # buffer holds
    # the figure doubles: floor 0.8 * 200 = 160 binds above 125 * 1.1 = 137.5
    assert c[2] == 160.0
    assert c[3] == pytest.approx(176.0)  # +10 % in the hour
    assert c[4] == pytest.approx(193.6)
    assert c[5] == 200.0 and a[5] == 200.0  # reached the buffered figure (buffer used up)


def test_recalibration_lowering_margin_is_phased_not_applied_at_once() -> None:
    p = PathParams(release_buffer=0.0, speed_limit=True, up_per_hour=0.1, down_per_hour=0.02,
                   min_coverage=0.8)
    hour = int(MS_PER_HOUR)
    _, c = margin_path_reference([100.0, 50.0, 50.0], [0, 1000, 1000 + 10 * hour],
                                 [False] * 3, [False] * 3, p)
    assert c[1] == pytest.approx(100.0 * 0.98 ** (1000 / MS_PER_HOUR))
    assert c[2] == pytest.approx(c[1] * 0.98 ** 10)
    assert c[2] > 50.0


def test_speed_limit_does_not_depend_on_tick_frequency() -> None:
    p = PathParams(speed_limit=True, up_per_hour=0.1, min_coverage=0.0)
    hour = int(MS_PER_HOUR)
    _, coarse = margin_path_reference([100.0, 300.0], [0, hour], [False, False],
                                      [False, False], p)
    n = 360
    _, fine = margin_path_reference([100.0] + [300.0] * n, [0] + [hour * (k + 1) // n
                                                                  for k in range(n)],
                                    [False] * (n + 1), [False] * (n + 1), p)
    assert fine[-1] == pytest.approx(coarse[-1], rel=1e-12)
    assert coarse[-1] == pytest.approx(110.0)


def test_new_positions_are_margined_in_full_while_a_rise_is_phased() -> None:
    """A lag from a market move is carried as an amount: a fill adds its full margin."""
    p = PathParams(release_buffer=0.0, speed_limit=True, up_per_hour=0.1, min_coverage=0.5)
    a, c = margin_path_reference([100.0, 150.0, 250.0, 0.0], [0, 1, 1, 1],
                                 [False, False, True, True], [False] * 4, p)
    lag = a[1] - c[1]
    assert lag > 40.0
    assert a[2] - c[2] == pytest.approx(lag)  # book grew: same amount of lag, no more
    assert c[3] == 0.0  # closed out: nothing called


def test_bad_data_never_lowers_and_does_not_release_the_buffer() -> None:
    p = PathParams(release_buffer=0.25, speed_limit=True)
    a, c = margin_path_reference([100.0, 10.0, 10.0], [0, 1, 2], [False] * 3,
                                 [False, True, True], p)
    assert c[1] == c[0] == 125.0 and a[1] == 125.0
    stage = LivePath(p)
    stage.step(np.array([0]), np.array([100.0]), 0, False, False)
    out = stage.step(np.array([0]), np.array([10.0]), 1, False, True)
    assert out.called[0] == 125.0 and out.held[0]


def test_hold_only_for_models_without_apc() -> None:
    p = PathParams.from_model_params({"grid": {}})
    assert p.hold_only
    _, c = margin_path_reference([100.0, 50.0, 80.0], [0, 1, 2], [False] * 3,
                                 [False, False, True], p)
    assert c.tolist() == [100.0, 50.0, 80.0]


def test_params_from_model_table_and_errors() -> None:
    p = PathParams.from_model_params({"apc": {"release_buffer": 0.25, "speed_limit": {
        "enabled": True, "up_per_hour": 0.2, "down_per_hour": 0.01, "min_coverage": 0.9},
        "market_response": {"phase_up_per_hour": 0.01, "phase_min_coverage": 0.5}}})
    assert (p.speed_limit, p.up_per_hour, p.down_per_hour, p.min_coverage) == (True, 0.2, 0.01,
                                                                                0.9)
    assert p.phase == PhaseParams(0.01, 0.5)
    with pytest.raises(InputError, match=r"params.apc.speed_limit.down_per_hour"):
        PathParams.from_model_params({"apc": {"speed_limit": {"down_per_hour": 1.5}}})
    with pytest.raises(InputError, match=r"params.apc.speed_limit.enabled"):
        PathParams.from_model_params({"apc": {"speed_limit": {"enabled": "yes"}}})
    with pytest.raises(InputError, match="x"):
        LivePath(p).step(np.array([0]), np.array([math.nan]), 0, False, False)


def test_preview_does_not_change_state() -> None:
    stage = LivePath(PathParams(release_buffer=0.25))
    stage.step(np.array([0, 1]), np.array([100.0, 10.0]), 0, False, False)
    before = stage.called(np.array([0, 1])).copy()
    pv = stage.preview(np.array([0]), np.array([300.0]), 10, False, False)
    assert pv.called[0] == 300.0
    np.testing.assert_array_equal(stage.called(np.array([0, 1])), before)
