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


def test_fused_scans_equal_their_numpy_twin() -> None:
    from marginproof.forecast.lattice import grid_scan, tail_scan, tail_scan_reference

    rng = np.random.default_rng(9)
    n_opt, n_u = 6, 2
    grp = np.array([0, 0, 0, 1, 1, 1], np.int64)
    lat = build_lattice(rng.uniform(900, 1100, n_opt), rng.uniform(800, 1200, n_opt),
                        rng.uniform(0.02, 0.5, n_opt), rng.uniform(0.3, 0.9, n_opt),
                        (rng.random(n_opt) < 0.5).astype(float), np.ones(n_opt),
                        rng.normal(0, 3, n_opt), np.arange(n_opt), n_opt,
                        np.array([[-0.5, 0.5]] * n_opt), np.array([[-0.8, 0.8]] * n_opt),
                        0.02, 0.04)
    B, n_m, n_v = 13, 7, 3
    slx, sly = rng.uniform(-0.1, 0.1, (B, n_u)), rng.uniform(-0.2, 0.2, (B, n_u))
    kx = np.where(rng.random((B, n_u)) < 0.5, 1.0, rng.uniform(0.9, 1.2, (B, n_u)))
    ky = rng.uniform(0.9, 1.2, (B, n_u))
    dlx = rng.uniform(-0.3, 0.3, (n_m * n_v, n_opt))
    dly = rng.uniform(-0.4, 0.4, (n_m * n_v, n_opt))
    lyf = np.where(rng.random((n_m * n_v, n_opt)) < 0.3, 0.1, -np.inf)
    lin = rng.normal(0, 1e4, (B, n_u))
    r_und = rng.uniform(-0.2, 0.2, (n_m * n_v, n_u))
    for k_tot, k_und in ((5, 5), (1, 0)):
        tt = np.full((B, k_tot), -np.inf)
        tu = np.full((B, n_u, k_und), -np.inf)
        tail_scan(lat.values, lat.lx0, lat.ly0, lat.hx, lat.hy, grp, slx, sly, kx, ky, dlx, dly,
                  lyf, lin, r_und, np.expm1(r_und), tt, tu)
        rt, ru = tail_scan_reference(lat, grp, slx, sly, kx, ky, dlx, dly, lyf, lin, r_und,
                                     k_tot, k_und)
        assert np.allclose(tt, rt, rtol=1e-10, atol=1e-6)
        assert np.allclose(tu, ru, rtol=1e-10, atol=1e-6)
    # grid structure: moves x vol shocks, unit scales
    dlx_g = np.repeat(dlx[:n_m], n_v, axis=0)
    dly_g = np.tile(dly[:n_v], (n_m, 1))
    lyf_g = np.tile(lyf[:n_v], (n_m, 1))
    m_und = np.repeat(np.expm1(r_und[:n_m]), n_v, axis=0)
    one = np.ones((B, n_u))
    rt, ru = tail_scan_reference(lat, grp, slx, sly, one, one, dlx_g, dly_g, lyf_g, lin,
                                 np.log1p(m_und), 1, 1)
    wt, wu = np.full(B, -np.inf), np.full((B, n_u), -np.inf)
    grid_scan(lat.values, lat.lx0, lat.ly0, lat.hx, lat.hy, grp, slx, sly, dlx[:n_m],
              dly[:n_v], lyf[:n_v], lin, m_und[::n_v], wt, wu)
    assert np.allclose(wt, rt[:, 0], rtol=1e-10, atol=1e-6)
    assert np.allclose(wu, ru[:, :, 0], rtol=1e-10, atol=1e-6)


def test_measure_from_top_equals_the_measures() -> None:
    from marginproof.forecast.evaluators import measure_columns, measure_from_top, tail_size

    rng = np.random.default_rng(5)
    for n in (500, 123, 1148, 63):
        a = rng.standard_t(3, (n, 9))
        for measure in ("es", "var"):
            k = tail_size(n, 0.99, 0.975, measure)
            top = -np.sort(-a, axis=0)[:k].T
            assert np.allclose(measure_from_top(top, n, 0.99, 0.975, measure, 1.3),
                               measure_columns(a, 0.99, 0.975, measure, 1.3), rtol=1e-12)
