"""Golden: a single linear position under a normal model matches the closed forms.

Long ``q`` BTC linear perpetual, USDC collateral ``C``, ``grid`` margin (IM = 16 % of the
position's value: its worst scenario is the -16 % move; MM = 0.8 IM), normal one-day log
returns with vol ``sigma`` and no drift, hourly monitoring. Equity ``C + q (S - S0)`` falls
below IM when ``S < B = (q S0 - C) / (0.84 q)``, so (the forecast method's statement):

* the probability of being in call at the horizon is the terminal probability
  ``Phi(ln(B / S0) / sigma)``;
* the probability of a call *by* the horizon is the first-passage probability of the hourly
  random walk of ``ln S`` below ``ln B``: computed here by numerical convolution of the
  Gaussian step density with absorption (exact up to grid error), and compared with the
  continuous-monitoring closed form ``2 Phi(b / sigma)`` shifted by the Broadie-Glasserman-Kou
  continuity correction ``b -> b - 0.5826 sigma sqrt(dt)``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from scipy.stats import norm

from marginproof.forecast import ForecastConfig, forecast, gaussian_dynamics
from marginproof.instruments.portfolio import Portfolio
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.grid import GridModel

T0 = datetime(2022, 4, 15, 4, 0, 38, tzinfo=UTC)
S0, Q, SIGMA, N_STEPS = 40_000.0, 10.0, 0.04, 24
BGK = 0.5826  # -zeta(1/2) / sqrt(2 pi)


def _discrete_first_passage(b: float, sigma_step: float, n_steps: int) -> float:
    """P(min_k W_k <= b) for a Gaussian random walk (numerical convolution with absorption)."""
    dx = sigma_step / 200.0
    lim = b - 2 * sigma_step
    x = np.arange(lim, 12 * sigma_step * math.sqrt(n_steps), dx)
    kx = np.arange(-8 * sigma_step, 8 * sigma_step + dx / 2, dx)
    kern = norm.pdf(kx, scale=sigma_step) * dx
    p = np.zeros_like(x)
    p[np.argmin(np.abs(x))] = 1.0
    absorbed = 0.0
    for _ in range(n_steps):
        p = np.convolve(p, kern, mode="same")
        hit = x <= b
        absorbed += p[hit].sum()
        p[hit] = 0.0
    return float(absorbed)


@pytest.fixture(scope="module")
def result() -> tuple[object, float, float]:
    b_call = -0.05
    B = S0 * math.exp(b_call)
    C = Q * S0 - 0.84 * Q * B
    pf = Portfolio.of({"BTC_USDC-PERPETUAL": Q})
    mkt = MarketSnapshot(T0, {"BTC": S0})
    res = forecast(GridModel(), pf, mkt,
                   ForecastConfig(n_paths=40_000, seed=7, method="exact", call_levels=True),
                   collateral={"USDC": C}, dynamics=gaussian_dynamics(("BTC",),
                                                                        np.array([SIGMA])))
    b_liq = math.log((Q * S0 - C) / (0.872 * Q) / S0)
    return res, b_call, b_liq


def test_terminal_call_probability(result: tuple[object, float, float]) -> None:
    res, b, _ = result
    p = float(norm.cdf(b / SIGMA))
    se = math.sqrt(p * (1 - p) / 40_000)
    assert res.p_call_at[-1] == pytest.approx(p, abs=4 * se)  # type: ignore[attr-defined]


def test_first_passage_call_and_liquidation_probabilities(
        result: tuple[object, float, float]) -> None:
    res, b, b_liq = result
    s_step = SIGMA / math.sqrt(N_STEPS)
    for got, barrier in ((res.p_call, b), (res.p_liquidation, b_liq)):  # type: ignore[attr-defined]
        exact = _discrete_first_passage(barrier, s_step, N_STEPS)
        se = math.sqrt(exact * (1 - exact) / 40_000)
        assert got == pytest.approx(exact, abs=4 * se)
        bgk = 2.0 * norm.cdf((barrier - BGK * s_step) / SIGMA)
        assert bgk == pytest.approx(exact, abs=0.004)  # the closed form with continuity corr.
        continuous = 2.0 * norm.cdf(barrier / SIGMA)
        assert got < continuous  # hourly monitoring sees fewer crossings than continuous


def test_probability_by_step_follows_the_random_walk(result: tuple[object, float, float]
                                                     ) -> None:
    res, b, _ = result
    s_step = SIGMA / math.sqrt(N_STEPS)
    for k in (1, 6, 12):
        exact = _discrete_first_passage(b, s_step, k)
        se = math.sqrt(max(exact * (1 - exact), 1e-6) / 40_000)
        assert res.p_call_by[k] == pytest.approx(exact, abs=4 * se + 1e-4)  # type: ignore


def test_call_level_is_the_barrier(result: tuple[object, float, float]) -> None:
    res, b, b_liq = result
    (lv,) = res.call_levels  # type: ignore[attr-defined]
    assert lv.call_down == pytest.approx(math.expm1(b), abs=1e-5)
    assert lv.liquidation_down == pytest.approx(math.expm1(b_liq), abs=1e-5)
    assert lv.call_up is None and lv.liquidation_up is None  # a long position gains upwards
