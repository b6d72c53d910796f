import math

import numpy as np
import pytest

from marginproof.demo.synthetic import option_universe, random_accounts
from marginproof.instruments.portfolio import Portfolio, Position
from marginproof.instruments.resolved import resolve
from marginproof.models.batch import (
    SCENARIO_BLOCK,
    CsrBook,
    grid_margin_batch,
    instrument_unit_pnl,
    segment_worst_loss,
    segment_worst_loss_reference,
)
from marginproof.models.grid import GridModel
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


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_scen", [1, 7, 63, 64, 65, 200])
def test_blocked_kernel_matches_reference_twin_for_any_scenario_count(n_scen: int,
                                                                      dtype: type) -> None:
    rng = np.random.default_rng(n_scen)
    n_inst, n_pos = 50, 900
    up = rng.normal(size=(n_inst, n_scen)).astype(dtype)
    up[:5] = np.abs(up[:5]) + 0.1  # instruments that gain in every scenario
    seg_ptr = np.unique(np.r_[0, rng.integers(0, n_pos, 300), n_pos]).astype(np.int64)
    inst = rng.integers(0, n_inst, n_pos).astype(np.int32)
    qty = rng.normal(size=n_pos).astype(dtype)
    for s in range(1, 19):  # segments that gain in every scenario: loss 0
        inst[seg_ptr[s]:seg_ptr[s + 1]] = rng.integers(0, 5)
        qty[seg_ptr[s]:seg_ptr[s + 1]] = 1.0
    w = rng.uniform(0, 1, n_pos).astype(dtype)
    n = len(seg_ptr) - 1
    loss, arg, mins = np.empty(n), np.empty(n, np.int32), np.empty(n)
    segment_worst_loss(up, seg_ptr, inst, qty, w, loss, arg, mins)
    rl, ra, rm = segment_worst_loss_reference(up, seg_ptr, inst, qty, w)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(loss, rl, rtol=tol, atol=tol)
    np.testing.assert_allclose(mins, rm, rtol=tol, atol=tol)
    assert (loss[1:19] == 0).all()
    assert np.all((arg >= 0) & (arg < n_scen))
    agree = arg == ra
    if dtype == np.float64:
        assert agree.all()
    else:  # float32 sums may tie or swap near-equal scenarios
        assert agree.mean() > 0.95


def test_padded_table_gives_the_same_result_as_the_plain_one() -> None:
    _, inst, _, _, _, book = _setup()
    model = GridModel()
    plain = grid_margin_batch(model, inst, book, instrument_unit_pnl(model, inst))
    pad = instrument_unit_pnl(model, inst, padded=True)
    assert pad.shape[1] % SCENARIO_BLOCK == 0 and pad.ctypes.data % 64 == 0
    padded = grid_margin_batch(model, inst, book, pad, n_scenarios=plain_n(model, inst))
    np.testing.assert_array_equal(plain.initial_margin, padded.initial_margin)
    np.testing.assert_array_equal(plain.segment_worst_scenario, padded.segment_worst_scenario)


def plain_n(model: GridModel, inst: object) -> int:
    return int(instrument_unit_pnl(model, inst).shape[1])  # type: ignore[arg-type]


def test_fused_account_kernel_equals_segments_plus_bincount_bit_for_bit() -> None:
    _, inst, _, _, _, book = _setup(n_acc=3000)
    model = GridModel()
    for up in (instrument_unit_pnl(model, inst), instrument_unit_pnl(model, inst, np.float32)):
        w = np.where(inst.is_option, 0.01 * inst.index, 0.0)
        n = len(book.seg_ptr) - 1
        loss, arg, mins = np.empty(n), np.empty(n, np.int32), np.empty(n)
        segment_worst_loss(up, book.seg_ptr, book.inst_idx, book.qty, w[book.inst_idx], loss,
                           arg, mins)
        expected = np.bincount(book.seg_account, weights=np.maximum(loss, mins),
                               minlength=book.n_accounts)
        got = grid_margin_batch(model, inst, book, up)
        assert got.initial_margin.tobytes() == expected.tobytes()
        np.testing.assert_array_equal(got.segment_worst_scenario, arg)
