"""Walk-forward engine: extreme models, no look-ahead, incremental == batch, statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marginproof.apc.metrics import procyclicality_metrics
from marginproof.backtest import stats as bs
from marginproof.backtest.continuous import (
    BacktestConfig,
    ContinuousBacktest,
    category_summary,
    walk_forward,
)
from marginproof.backtest.market import MarketPath
from marginproof.backtest.portfolios import (
    TemplateTable,
    instantiate,
    portfolio_set,
    round_strike,
)
from marginproof.backtest.providers import (
    ConstantProvider,
    EwmaVarProvider,
    GridBatchProvider,
    ModelProvider,
)
from marginproof.models.registry import get_model

CFG = BacktestConfig(horizon_days=1, alpha=0.01, min_history_days=60)
TEMPLATES = portfolio_set(("singles", "adversarial", "hedged", "random"), n_random=3, seed=5)


def _alter_after(path: MarketPath, row: int, factor: float = 3.0) -> MarketPath:
    c = path.closes.copy()
    iv = path.iv.copy()
    c[row + 1:] *= factor
    iv[row + 1:] *= 0.5
    return MarketPath(path.times, path.bar, path.underlyings, c, iv, path.iv_is_proxy)


def test_infinite_margin_has_no_exceptions_and_is_green(path: MarketPath) -> None:
    bt = walk_forward(path, TEMPLATES, ConstantProvider(math.inf), CFG)
    s = bt.summary()
    assert (s["n_obs"] > 300).all()
    assert (s["n_exceptions"] == 0).all()
    assert set(s["zone"]) == {"green"}


def test_zero_margin_model_is_red(path: MarketPath) -> None:
    s = walk_forward(path, TEMPLATES, ConstantProvider(0.0), CFG).summary()
    singles = s[s["category"] == "singles"]
    assert (singles["zone"] == "red").all()
    assert (singles["kupiec_p"] < 1e-6).all()


def test_margins_unchanged_when_future_data_is_altered(path: MarketPath) -> None:
    cut = 200
    altered = _alter_after(path, cut)
    grid = get_model("grid")
    for prov in (EwmaVarProvider(n_scenarios=50), GridBatchProvider(grid)):
        a = walk_forward(path, TEMPLATES, prov, CFG, end=str(path.times[cut])[:10]).records()
        b = walk_forward(altered, TEMPLATES, prov, CFG, end=str(path.times[cut])[:10]).records()
        assert len(a) == len(b) > 0
        # margins of every date <= cut identical; losses identical except the last as-of day
        assert np.array_equal(a["margin_usd"].to_numpy(), b["margin_usd"].to_numpy())
        keep = a["date"] < str(path.times[cut])[:10]
        assert np.array_equal(a.loc[keep, "loss_usd"].to_numpy(),
                              b.loc[keep, "loss_usd"].to_numpy())


def test_provider_sees_only_history_up_to_asof(path: MarketPath) -> None:
    seen: list[tuple[int, int]] = []

    class Spy(ConstantProvider):
        def day_margins(self, history, books):  # type: ignore[no-untyped-def]
            seen.append((len(history) - 1, books.row))
            return super().day_margins(history, books)

    walk_forward(path, TEMPLATES[:2], Spy(0.1), CFG)
    assert seen and all(last == row for last, row in seen)


def test_incremental_updates_equal_full_run(path: MarketPath) -> None:
    prov = EwmaVarProvider(n_scenarios=50)
    full = walk_forward(path, TEMPLATES, prov, CFG)
    inc = ContinuousBacktest(TEMPLATES, prov, path.underlyings, CFG)
    for n in range(CFG.min_history_days, len(path) + 1, 37):
        inc.update(path.upto(n - 1))
    inc.update(path)
    a, b = full.summary(), inc.summary()
    assert a.drop(columns=["zone"]).equals(b.drop(columns=["zone"]))
    assert full.records().equals(inc.records())


def test_append_one_day_margins_only_that_day(path: MarketPath) -> None:
    calls: list[int] = []

    class Count(ConstantProvider):
        def day_margins(self, history, books):  # type: ignore[no-untyped-def]
            calls.append(books.row)
            return super().day_margins(history, books)

    bt = ContinuousBacktest(TEMPLATES, Count(0.05), path.underlyings, CFG)
    bt.update(path.upto(300))
    n = len(calls)
    settled = bt.update(path.upto(301))
    assert len(calls) == n + 1 and calls[-1] == 300 and settled == 1


def test_running_statistics_equal_batch_formulas(path: MarketPath) -> None:
    bt = walk_forward(path, TEMPLATES, EwmaVarProvider(n_scenarios=100), CFG)
    rec = bt.records()
    s = bt.summary().set_index("portfolio")
    for name, g in rec.groupby("portfolio"):
        exc = g["exception"].to_numpy().astype(int)
        cs = bs.coverage_summary(exc, 0.01)
        row = s.loc[name]
        assert row["n_exceptions"] == cs.n_exceptions
        assert row["kupiec_lr"] == pytest.approx(cs.kupiec_lr, abs=1e-9)
        assert row["christoffersen_ind_lr"] == pytest.approx(cs.christoffersen_ind_lr, abs=1e-9)
        assert row["zone"] == cs.zone
        L, v, e = (g[c].to_numpy() for c in ("loss_usd", "var_usd", "es_usd"))
        if np.all(e > 0):
            assert row["as_z2"] == pytest.approx(bs.acerbi_szekely_z2(L, v, e, 0.025), rel=1e-9)
            z1 = bs.acerbi_szekely_z1(L, v, e)
            assert (math.isnan(z1) and math.isnan(row["as_z1"])) or row["as_z1"] == \
                pytest.approx(z1, rel=1e-9)
        de = bs.du_escanciano(g["u"].to_numpy(), 0.025, 5)
        assert row["de_u_es"] == pytest.approx(de.u_es, rel=1e-9, abs=1e-12)
        assert row["de_c_es"] == pytest.approx(de.c_es, rel=1e-9, abs=1e-12)
        m = g["margin_usd"].to_numpy()
        if np.all(m > 0):
            pm = procyclicality_metrics(m)
            assert row["peak_to_trough"] == pytest.approx(pm.peak_to_trough, rel=1e-12)
            for n in (1, 5, 30):
                assert row[f"max_{n}d_ratio"] == pytest.approx(pm.max_increase_ratio[n],
                                                               rel=1e-12)
                assert row[f"max_{n}d_increase_usd"] == pytest.approx(
                    pm.max_increase_abs[n], rel=1e-12)
    cat = category_summary(bt.summary())
    assert set(cat["category"]) == {"singles", "adversarial", "hedged", "random"}


def test_ewma_var_single_long_has_roughly_nominal_exceptions(path: MarketPath) -> None:
    s = walk_forward(path, TEMPLATES, EwmaVarProvider(n_scenarios=400), CFG).summary()
    longs = s[(s["category"] == "singles") & s["portfolio"].str.startswith("long ")]
    # normal VaR on t(4) returns: more than 1 % but far from the zero-margin rate (~50 %)
    assert (longs["exception_rate"] < 0.06).all()


def test_grid_batch_provider_equals_per_book_model(path: MarketPath) -> None:
    grid = get_model("grid")
    table = TemplateTable.build(TEMPLATES, path.underlyings)
    books = instantiate(table, path, 250)
    a = GridBatchProvider(grid).day_margins(path.upto(250), books).margin
    b = ModelProvider(grid).day_margins(path.upto(250), books).margin
    assert np.allclose(a, b, rtol=1e-9, atol=1e-6)


def test_instantiation_resizes_to_notional_and_hedges_delta(path: MarketPath) -> None:
    table = TemplateTable.build(TEMPLATES, path.underlyings)
    books = instantiate(table, path, 250)
    names = [t.name for t in TEMPLATES]
    k = names.index("long BTC")
    legs = np.flatnonzero(books.portfolio_idx == k)
    assert books.coins[legs[0]] * path.closes[250, 0] == pytest.approx(1e6)
    k = names.index("BTC delta-hedged short straddle 30d")
    p = books.portfolio(k)
    assert [pos.instrument.kind.value for pos in p.positions] == ["option", "option",
                                                                  "perpetual"]
    # a short ATM straddle is short about zero delta; the hedge is small against 1 M notional
    assert abs(p.positions[2].quantity * path.closes[250, 0]) < 2e5
    assert round_strike(31234.5) == 31230.0 and round_strike(0.0123456) == 0.01235


def test_small_black76_twin_equals_the_kernel() -> None:
    from marginproof.backtest.portfolios import b76_price_delta
    from marginproof.pricing.black76 import black76_greeks, black76_price

    rng = np.random.default_rng(0)
    n = 500
    f = rng.uniform(100, 200, n)
    k = rng.uniform(50, 300, n)
    t = rng.uniform(1 / 365, 1.0, n)
    v = rng.uniform(0.2, 1.5, n)
    c = rng.uniform(size=n) < 0.5
    p, d = b76_price_delta(f, k, t, v, c)
    assert np.allclose(p, black76_price(f, k, t, v, c), rtol=1e-10, atol=1e-10)
    assert np.allclose(d, black76_greeks(f, k, t, v, c).delta, rtol=1e-10, atol=1e-12)


def test_hourly_walk_forward_runs_with_bars_as_horizon() -> None:
    from tests.unit.backtest._paths import synthetic_path

    d = synthetic_path(300, seed=4, vol_daily=0.03 / np.sqrt(24))
    times = np.datetime64("2021-01-01T00:00", "s") + (np.arange(len(d)) * 3600).astype(
        "timedelta64[s]")
    hourly = MarketPath(times, np.timedelta64(1, "h"), d.underlyings, d.closes, d.iv,
                        d.iv_is_proxy)
    cfg = BacktestConfig(horizon_days=1, min_history_days=100)
    bt = walk_forward(hourly, TEMPLATES[:4], EwmaVarProvider(n_scenarios=50, horizon_days=1 / 24),
                      cfg)
    s = bt.summary()
    assert (s["n_obs"] == len(hourly) - 100 - 1).all()
    assert (s["exception_rate"] < 0.2).all()


def test_accumulator_state_round_trips_through_json(path: MarketPath) -> None:
    import json

    from marginproof.backtest.continuous import StatsAccumulator

    prov = EwmaVarProvider(n_scenarios=50)
    bt = ContinuousBacktest(TEMPLATES, prov, path.underlyings, CFG)
    bt.update(path.upto(300))
    restored = StatsAccumulator.from_state(json.loads(json.dumps(bt.acc.to_state())))
    full = walk_forward(path, TEMPLATES, prov, CFG)
    bt.acc = restored
    bt.update(path)
    assert bt.summary().drop(columns=["zone"]).equals(full.summary().drop(columns=["zone"]))
