"""The numpy twin of the Black-76 kernels (small batches) agrees with the libm kernels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from marginproof.pricing import _kernels as K  # noqa: N812
from marginproof.pricing import _numpy_kernels as NP  # noqa: N812
from marginproof.pricing import dispatch
from marginproof.pricing._black76_reference import ndtr as ref_ndtr
from tests.unit.pricing.test_vectorised_kernels import _book, _close, _edge

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("n", [1, 97, 3_000])
def test_numpy_greeks_equal_the_libm_kernel_on_edges_and_agree_elsewhere(n: int) -> None:
    f, k, t, s, c, d, r = _book(n, seed=3)
    new = np.empty((7, n))
    old = np.empty((7, n))
    NP.greeks_into(f, k, t, s, c, d, r, new)
    K.black76_greeks_kernel_libm(f, k, t, s, c, d, r, old)
    edge = _edge(f, k, t, s) & ~np.isnan(f) & ~np.isnan(s)
    np.testing.assert_array_equal(new[:, edge], old[:, edge])
    g = ~_edge(f, k, t, s)
    scale = np.nan_to_num(f[g], nan=0.0) * 1e-3
    for row in range(7):
        _close(new[row, g], old[row, g], scale, 1e-11)
    assert np.array_equal(np.isnan(new), np.isnan(old))


def test_numpy_price_is_the_greeks_price_row() -> None:
    n = 2_000
    f, k, t, s, c, d, r = _book(n, seed=4)
    g = np.empty((7, n))
    NP.greeks_into(f, k, t, s, c, d, r, g)
    p = np.empty(n)
    NP.price_into(f, k, t, s, c, d, p)
    np.testing.assert_array_equal(p, g[0])


def test_numpy_scenarios_agree_with_the_libm_kernel() -> None:
    n, m = 300, 7
    f, k, t, s, c, d, _ = _book(n, seed=2)
    rng = np.random.default_rng(5)
    moves = rng.uniform(-0.5, 0.5, (m, n))
    moves[3, ::50] = -1.0
    vol_mult = rng.uniform(0.5, 2.0, (m, n))
    vol_mult[2, ::60] = np.nan
    vol_floor = np.where(rng.random((m, n)) < 0.3, 0.4, 0.0)
    new = np.empty((m, n))
    old = np.empty((m, n))
    NP.scenario_into(f, k, t, s, c, d, moves, vol_mult, vol_floor, new)
    K.scenario_values_kernel_libm(f, k, t, s, c, d, moves, vol_mult, vol_floor, old)
    assert np.array_equal(np.isnan(new), np.isnan(old))
    _close(new.ravel(), old.ravel(), np.nan_to_num(np.tile(f, m)) * 1e-3, 1e-11)


def test_ndtr_matches_the_scalar_reference_deep_in_both_tails() -> None:
    x = np.array([-38.0, -10.0, -1.0, 0.0, 0.3, 5.0, 9.0])
    np.testing.assert_array_equal(NP.ndtr(x), [ref_ndtr(float(v)) for v in x])
    assert NP.ndtr(np.array([-38.0]))[0] > 0.0


def test_dispatch_is_compiled_unless_a_small_book_scope_opts_in() -> None:
    # default: the compiled kernels at every size (bulk equals one-by-one bit for bit)
    assert dispatch.price_kernel(1) is K.price_kernel(1)
    assert dispatch.scenario_kernel(NP.SMALL_WORK) is K.scenario_kernel(NP.SMALL_WORK)
    with dispatch.small_batches():
        assert dispatch.price_kernel(NP.SMALL_WORK) is NP.price_into
        assert dispatch.greeks_kernel(1) is NP.greeks_into
        assert dispatch.scenario_kernel(NP.SMALL_WORK) is NP.scenario_into
        assert dispatch.scenario_kernel(NP.SMALL_WORK + 1) is K.scenario_kernel(NP.SMALL_WORK + 1)
        assert dispatch.price_kernel(10**6) is K.black76_price_kernel
    assert dispatch.greeks_kernel(1) is K.greeks_kernel(1)


def test_small_book_margin_agrees_with_the_compiled_path() -> None:
    from marginproof.io.formats import load_market, load_portfolio
    from marginproof.models.registry import get_model

    acct = load_portfolio(ROOT / "examples/portfolio_demo.json")
    mkt = load_market(ROOT / "examples/market_btc_2022-04-15.json")
    for name in ("grid", "dynamic"):
        model = get_model(name)
        compiled = model.margin(acct.portfolio, mkt)
        with dispatch.small_batches():
            small = model.margin(acct.portfolio, mkt)
        assert small.initial_margin == pytest.approx(compiled.initial_margin, rel=1e-12)
        assert small.maintenance_margin == pytest.approx(compiled.maintenance_margin, rel=1e-12)


def test_small_book_margin_loads_neither_numba_nor_scipy() -> None:
    """The CLI's small-book path (issue 20): a grid margin of the demo book in a fresh process."""
    code = (
        "import sys, json\n"
        "import marginproof as mp\n"
        "from marginproof.cli.main import app\n"
        "sys.argv = ['marginproof', 'margin', '-p', 'examples/portfolio_demo.json', '-m',\n"
        "            'examples/market_btc_2022-04-15.json', '--model', 'grid']\n"
        "try:\n    app()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "                        ('numba', 'scipy', 'pandas', 'matplotlib'))))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
