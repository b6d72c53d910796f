"""The forecast's batch twins equal ``model.margin`` on simulated markets; the proxy is close."""

from __future__ import annotations

import numpy as np
import pytest

from marginproof.forecast.evaluators import (
    GenericEvaluator,
    LatticeSpec,
    es_columns,
    make_evaluator,
)
from marginproof.forecast.lattice import build_lattice, lattice_pnl, lattice_pnl_reference
from marginproof.forecast.states import StepStates
from marginproof.instruments.portfolio import Account
from marginproof.instruments.resolved import resolve
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.registry import get_model
from marginproof.risk.measures import expected_shortfall


def _states(n_u: int, n_pos: int, n: int, t_hours: float, seed: int,
            alive: np.ndarray | None = None, funding: np.ndarray | None = None) -> StepStates:
    rng = np.random.default_rng(seed)
    x = np.exp(rng.normal(0.0, 0.08, (n, n_u)))
    y = np.exp(rng.normal(0.0, 0.15, (n, n_u)))
    one = np.ones((n, n_u))
    f = np.full((n, n_pos), np.nan) if funding is None else funding
    return StepStates(t_hours, x, y, one, one.copy(), None, f,
                      np.ones(n_pos, bool) if alive is None else alive)


@pytest.mark.parametrize("name", ["grid", "fhs", "dynamic", "mc"])
def test_exact_twin_equals_model_margin(name: str, demo_account: Account,
                                        demo_market: MarketSnapshot) -> None:
    model = get_model(name)
    pf = demo_account.portfolio
    book = resolve(pf, demo_market)
    n_pos = len(book)
    rates = np.full((6, n_pos), np.nan)
    j = book.names.index("ETH_USDC-PERPETUAL")
    rates[:, j] = np.linspace(-0.001, 0.002, 6)
    st = _states(len(book.underlyings), n_pos, 6, 5.0, 1, funding=rates)
    ev = make_evaluator(model, pf, book, demo_market)
    assert not isinstance(ev, GenericEvaluator)
    im, mm = ev.margins(st, "exact")
    im_ref, mm_ref = GenericEvaluator(model, pf, book, demo_market).margins(st, "exact")
    assert np.allclose(im, im_ref, rtol=1e-9, atol=1e-6)
    assert np.allclose(mm, mm_ref, rtol=1e-9, atol=1e-6)
    assert len(set(np.round(im, 6))) > 1  # states differ


def test_exact_twin_with_expired_positions(demo_account: Account,
                                           demo_market: MarketSnapshot) -> None:
    model = get_model("dynamic")
    pf = demo_account.portfolio
    book = resolve(pf, demo_market)
    alive = ~np.array(["6MAY22" in n for n in book.names])
    st = _states(len(book.underlyings), len(book), 4, 3.0, 2, alive=alive)
    im, _ = make_evaluator(model, pf, book, demo_market).margins(st, "exact")
    im_ref, _ = GenericEvaluator(model, pf, book, demo_market).margins(st, "exact")
    assert np.allclose(im, im_ref, rtol=1e-9)


@pytest.mark.parametrize("name", ["grid", "fhs", "dynamic"])
def test_proxy_close_to_exact(name: str, demo_account: Account,
                              demo_market: MarketSnapshot) -> None:
    model = get_model(name)
    pf = demo_account.portfolio
    book = resolve(pf, demo_market)
    st = _states(len(book.underlyings), len(book), 40, 12.0, 3)
    ev = make_evaluator(model, pf, book, demo_market, LatticeSpec())
    exact, _ = ev.margins(st, "exact")
    proxy, _ = ev.margins(st, "proxy")
    err = np.abs(proxy - exact) / exact
    assert err.max() < 0.005


def test_es_columns_equals_expected_shortfall() -> None:
    rng = np.random.default_rng(0)
    for n, conf in ((500, 0.975), (123, 0.99), (63, 0.975), (1148, 0.975), (40, 0.5)):
        a = rng.standard_t(3, (n, 7))
        a[:5, 0] = a[5, 0]  # ties
        assert np.allclose(es_columns(a, conf), expected_shortfall(a, conf), rtol=1e-12)


def test_lattice_kernel_equals_numpy_twin() -> None:
    rng = np.random.default_rng(4)
    n_opt = 5
    f = rng.uniform(900, 1100, n_opt)
    k = rng.uniform(800, 1200, n_opt)
    t = rng.uniform(0.01, 0.5, n_opt)
    v = rng.uniform(0.3, 0.9, n_opt)
    c = (rng.random(n_opt) < 0.5).astype(float)
    w = rng.normal(0, 3, n_opt)
    grp = np.array([0, 0, 1, 1, 1])
    lat = build_lattice(f, k, t, v, c, np.ones(n_opt), w, grp, 2,
                        np.array([[-0.5, 0.5], [-0.4, 0.6]]), np.array([[-0.7, 0.7]] * 2),
                        0.02, 0.05)
    S, B = 30, 17
    slx = rng.uniform(-0.1, 0.1, (B, 2))
    sly = rng.uniform(-0.2, 0.2, (B, 2))
    kx = rng.uniform(0.9, 1.2, (B, 2))
    ky = rng.uniform(0.9, 1.2, (B, 2))
    dlx = rng.uniform(-0.3, 0.3, (S, 2))
    dly = rng.uniform(-0.4, 0.4, (S, 2))
    lyf = np.where(rng.random((S, 2)) < 0.3, 0.1, -np.inf)
    col = np.array([0, 1], np.int64)
    out = np.zeros((S, B, 2))
    lattice_pnl(lat.values, lat.lx0, lat.ly0, lat.hx, lat.hy, slx, sly, kx, ky, dlx, dly, lyf,
                col, out)
    ref = lattice_pnl_reference(lat, slx, sly, kx, ky, dlx, dly, lyf, col, 2)
    assert np.allclose(out, ref, rtol=1e-12, atol=1e-9)
    # at the nodes the lattice is exact Black-76
    from marginproof.pricing.black76 import black76_price

    g0 = grp == 0
    i, j = 7, 9
    lx = lat.lx0[0] + i * lat.hx[0]
    ly = lat.ly0[0] + j * lat.hy[0]
    direct = float(np.sum(w[g0] * black76_price(f[g0] * np.exp(lx), k[g0], t[g0],
                                                v[g0] * np.exp(ly), c[g0].astype(bool))))
    assert lat.values[0, i, j] == pytest.approx(direct, rel=1e-12)
