"""Market response to a margin increase (apc.market_response) on the cascade simulation."""

from __future__ import annotations

import numpy as np
import pytest

from marginproof.apc.market_response import (
    MarketResponseParams,
    assess,
    depth_within,
)
from marginproof.errors import InputError
from marginproof.stress.cascade import DepthProfile, OrderBook, Population, simulate_cascade

PRICE = 100_000.0


def thin_book(usd_per_pct: float = 2e6) -> OrderBook:
    """A linear book: ``usd_per_pct`` of depth per 1 % from mid, both sides."""
    d = np.linspace(0.0, 0.05, 51)
    prof = DepthProfile(d, d * 100.0 * usd_per_pct, usd_per_pct * 100.0)
    return OrderBook(prof, prof)


def population(n: int = 200, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    coins = rng.uniform(0.5, 3.0, n)  # longs
    im = 0.1 * coins * PRICE
    equity = im * rng.uniform(0.8, 1.3, n)  # many close to their IM
    return coins, im, equity


PARAMS = MarketResponseParams(enabled=True, rise_threshold=0.1, min_share=0.25,
                              min_accounts=10, depth_band=0.02, max_forced_to_depth=0.5,
                              phase_hours=12.0)


def test_per_account_rates_equal_one_rate_when_all_equal() -> None:
    pop = Population.synthetic(300, seed=4)
    book = thin_book()
    f = np.array([PRICE, PRICE * 0.97, PRICE * 0.95])
    one = simulate_cascade("v", f, ["a", "b", "c"], np.full(3, 0.05), np.full(3, 0.06), 0.5,
                           book, pop)
    per = simulate_cascade("v", f, ["a", "b", "c"], np.full((3, 300), 0.05),
                           np.full((3, 300), 0.06), 0.5, book, pop)
    assert one.totals == per.totals
    with pytest.raises(InputError, match="cascade"):
        simulate_cascade("v", f, ["a", "b", "c"], np.full((3, 7), 0.05), np.full(3, 0.06), 0.5,
                         book, pop)


def test_large_increase_against_thin_depth_is_phased() -> None:
    coins, im, equity = population()
    new = im * 1.6
    rep = assess("BTC", im, new, np.full(im.shape, 0.75), equity, coins, PRICE,
                 thin_book(2e5), PARAMS, now_ms=1_000, phased_im=im * 1.05)
    assert rep.checked and rep.n_rising == im.shape[0]
    assert rep.forced_selling_usd > 0.0 and rep.liquidated_accounts > 0
    assert rep.forced_to_depth == pytest.approx(rep.forced_selling_usd / rep.depth_usd)
    assert rep.phase and rep.phase_until_ms == 1_000 + 12 * 3_600_000
    assert rep.forced_selling_phased_usd is not None
    assert rep.forced_selling_phased_usd < rep.forced_selling_usd


def test_deep_book_absorbs_the_increase() -> None:
    coins, im, equity = population()
    rep = assess("BTC", im, im * 1.6, np.full(im.shape, 0.75), equity, coins, PRICE,
                 thin_book(1e9), PARAMS, now_ms=0)
    assert rep.checked and not rep.phase and rep.forced_to_depth < 0.5


def test_few_rising_accounts_skip_the_check() -> None:
    coins, im, equity = population()
    new = im.copy()
    new[:5] *= 2.0
    rep = assess("BTC", im, new, np.full(im.shape, 0.75), equity, coins, PRICE, thin_book(1e3),
                 PARAMS, now_ms=0)
    assert not rep.checked and not rep.phase and rep.n_rising == 5


def test_forced_selling_is_attributable_to_the_increase_only() -> None:
    """Accounts already under their MM are liquidated in both runs: not counted."""
    coins, im, equity = population()
    equity = equity * 0.1  # everyone is under MM already
    rep = assess("BTC", im, im * 1.6, np.full(im.shape, 0.75), equity, coins, PRICE,
                 thin_book(2e5), PARAMS, now_ms=0)
    assert rep.checked and rep.forced_selling_usd == pytest.approx(0.0, abs=1e-6)


def test_depth_within_and_params() -> None:
    b = thin_book(1e6)
    assert depth_within(b, 0.02) == pytest.approx(2e6)
    assert depth_within(b, 0.10) == pytest.approx(1e7)
    p = MarketResponseParams.from_model_params({"apc": {"market_response": {
        "enabled": True, "phase_hours": 6}}})
    assert p.enabled and p.phase_hours == 6.0
    assert not MarketResponseParams.from_model_params({"grid": {}}).enabled
    with pytest.raises(InputError, match="params.apc.market_response.depth_band"):
        MarketResponseParams.from_model_params({"apc": {"market_response": {"depth_band": 0}}})
