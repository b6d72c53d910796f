import math

import numpy as np

from marginproof.instruments.portfolio import Portfolio, Position
from marginproof.instruments.resolved import resolve
from marginproof.models.batch import (
    CsrBook,
    grid_margin_batch,
    instrument_unit_pnl,
    segment_worst_loss,
    segment_worst_loss_reference,
)
from marginproof.models.grid import GridModel
from marginproof.synthetic import option_universe, random_accounts
from tests.factories import sample_market


def _setup(n_inst: int = 300, n_acc: int = 400, per: int = 5):
    uni = option_universe(sample_market(), n_inst, seed=1)
    inst = resolve(uni.portfolio, uni.market)
    a, i, q = random_accounts(n_acc, per, n_inst, seed=2)
    book = CsrBook.from_positions(a, i, q, uni.underlying_of, n_acc)
    return uni, inst, a, i, q, book


def test_batch_margin_equals_the_single_portfolio_model() -> None:
    uni, inst, a, i, q, book = _setup()
    model = GridModel()
    batch = grid_margin_batch(model, inst, book)
    for acc in (0, 1, 17, 399):
        sel = a == acc
        pf = Portfolio(tuple(Position(uni.portfolio.positions[k].instrument, float(x))
                             for k, x in zip(i[sel], q[sel], strict=True)))
        r = model.margin(pf, uni.market)
        assert math.isclose(batch.initial_margin[acc], r.initial_margin, rel_tol=1e-9,
                            abs_tol=1e-6)


def test_compiled_kernel_matches_reference_twin() -> None:
    _, inst, _, _, _, book = _setup()
    up = instrument_unit_pnl(GridModel(), inst)
    w = np.where(inst.is_option, 0.01 * inst.index, 0.0)[book.inst_idx]
    n = len(book.seg_ptr) - 1
    loss, arg, mins = np.empty(n), np.empty(n, np.int32), np.empty(n)
    segment_worst_loss(up, book.seg_ptr, book.inst_idx, book.qty, w, loss, arg, mins)
    rl, ra, rm = segment_worst_loss_reference(up, book.seg_ptr, book.inst_idx, book.qty, w)
    np.testing.assert_allclose(loss, rl, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(mins, rm, rtol=1e-12, atol=1e-9)
    assert (arg == ra).mean() > 0.99  # ties may break differently


def test_float32_kernel_agrees_with_float64_reference() -> None:
    _, inst, _, _, _, book = _setup()
    model = GridModel()
    up64 = instrument_unit_pnl(model, inst)
    m64 = grid_margin_batch(model, inst, book, up64).initial_margin
    m32 = grid_margin_batch(model, inst, book, up64.astype(np.float32)).initial_margin
    np.testing.assert_allclose(m32, m64, rtol=2e-5, atol=1e-2)


def test_segments_split_accounts_by_underlying() -> None:
    _, _, a, _, _, book = _setup()
    assert book.seg_ptr[0] == 0 and book.seg_ptr[-1] == len(a)
    assert np.all(np.diff(book.seg_account) >= 0)
