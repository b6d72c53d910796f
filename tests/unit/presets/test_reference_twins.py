"""The vectorised preset engines agree with their plain-Python reference twins."""

from __future__ import annotations

import numpy as np
import pytest

from marginproof.config.params import config_dir, load_toml
from marginproof.models.presets._reference import deribit_position_pnl, pmrm_scenario_pnl
from marginproof.models.presets.deribit_pm import PMPosition, position_pnl
from marginproof.models.presets.derive_pmrm import (
    PMRMCollateral,
    PMRMExpiry,
    PMRMOption,
    PMRMParams,
    PMRMPortfolio,
    evaluate_pmrm,
)

PAIR = {"price_range": 0.16, "volatility_range_up": 0.5, "volatility_range_down": 0.25,
        "short_term_vega_power": 0.3, "long_term_vega_power": 0.13,
        "min_volatility_for_shock_up": 0.5}


def random_pmrm_portfolio(rng: np.random.Generator) -> PMRMPortfolio:
    spot = float(rng.uniform(1000, 100_000))
    exps = []
    for _ in range(int(rng.integers(1, 4))):
        sec = float(rng.choice([0.0, 600.0, 3 * 86400.0, 40 * 86400.0, 400 * 86400.0]))
        fwd = spot * float(rng.uniform(0.98, 1.05))
        opts = tuple(PMRMOption(spot * float(rng.uniform(0.5, 1.6)), bool(rng.integers(2)),
                                float(rng.uniform(0.2, 1.5)), float(rng.normal(0, 3)))
                     for _ in range(int(rng.integers(1, 5))))
        exps.append(PMRMExpiry(sec, fwd, opts, float(rng.uniform(-0.02, 0.2)),
                               fwd * 0.5 if sec < 1800 else 0.0))
    return PMRMPortfolio(
        spot=spot, expiries=tuple(exps), perp_position=float(rng.normal(0, 2)),
        perp_price=spot * 1.001, collaterals=(PMRMCollateral("X", 2.0, spot, 1.0, True),))


@pytest.mark.parametrize("seed", range(8))
def test_pmrm_engine_matches_reference_twin(seed: int) -> None:
    p = PMRMParams.from_mapping(load_toml(config_dir() / "presets" / "derive-pmrm.toml"))
    pf = random_pmrm_portfolio(np.random.default_rng(seed))
    out = evaluate_pmrm(pf, p)
    ref, basis = pmrm_scenario_pnl(pf, p)
    np.testing.assert_allclose(out.scenario_pnl, ref, rtol=1e-9, atol=1e-7)
    assert out.basis_contingency == pytest.approx(basis, rel=1e-9, abs=1e-7)


@pytest.mark.parametrize("seed", range(6))
def test_deribit_risk_vector_matches_reference_twin(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    moves = 0.16 * (np.arange(9) - 4) / 4
    vols = ("down", "none", "up")
    for kind, inverse in (("option", True), ("option", False), ("future", True),
                          ("perpetual", False)):
        pos = PMPosition("X", "BTC", "BTC", kind, inverse, float(rng.normal(0, 5)),
                         float(rng.uniform(20_000, 90_000)), 50_000.0,
                         float(rng.uniform(0.0, 1.0)), float(rng.uniform(20_000, 90_000)),
                         bool(rng.integers(2)), float(rng.uniform(0.2, 1.2)))
        vec = position_pnl(pos, moves, vols, PAIR, 1.0)
        ref = [deribit_position_pnl(pos, float(m), v, PAIR, 1.0) for m in moves for v in vols]
        np.testing.assert_allclose(vec, ref, rtol=1e-10, atol=1e-12)


def test_numpy_black76_matches_the_kernel_and_the_scalar_twin() -> None:
    from marginproof.models.presets.common import b76, b76_delta
    from marginproof.pricing._black76_reference import price
    from marginproof.pricing.black76 import black76_greeks, black76_price

    rng = np.random.default_rng(7)
    n = 400
    f = rng.uniform(10, 200, n)
    k = np.where(rng.random(n) < 0.05, 0.0, rng.uniform(5, 300, n))
    t = np.where(rng.random(n) < 0.1, 0.0, rng.uniform(0, 3, n))
    v = np.where(rng.random(n) < 0.05, 0.0, rng.uniform(0.01, 3, n))
    v[:5] = 40.0  # total vol >= 24
    c = rng.random(n) < 0.5
    d = rng.uniform(0.8, 1.0, n)
    ours = b76(f, k, t, v, c, d)
    np.testing.assert_allclose(ours, black76_price(f, k, t, v, c, d), rtol=1e-12, atol=1e-12)
    ref = [price(*args) for args in zip(f, k, t, v, c, d, strict=True)]
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    live = (k > 0) & (t > 0) & (v > 0)
    delta = black76_greeks(f[live], k[live], t[live], v[live], c[live], 0.0).delta
    np.testing.assert_allclose(b76_delta(f, k, t, v, c)[live], delta, rtol=1e-10, atol=1e-12)
