"""The compiled CSR account-risk kernel against its plain twin."""

from __future__ import annotations

import numpy as np
import pytest

from marginproof.errors import InputError
from marginproof.scenarios._account_kernels import numpy_linear_ranks
from marginproof.scenarios._account_risk_reference import account_risk_reference
from marginproof.scenarios.account_risk import account_risk


def _book(rng: np.random.Generator, n_acc: int, n_inst: int, max_pos: int,
          idx_dtype: type = np.int32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nnz = rng.integers(0, max_pos + 1, n_acc)
    ip = np.concatenate([[0], np.cumsum(nnz)])
    return ip, rng.integers(0, n_inst, ip[-1]).astype(idx_dtype), rng.normal(size=ip[-1])


@pytest.mark.parametrize("n_scen", [1000, 500, 129, 40, 2, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_matches_reference_twin(n_scen: int, dtype: type) -> None:
    rng = np.random.default_rng(n_scen)
    ip, ins, q = _book(rng, 200, 15, 6)
    pnl = rng.standard_t(3, size=(n_scen, 15)).astype(dtype)
    pnl[:, :4] = np.round(pnl[:, :4])  # ties between scenarios
    got = account_risk(ip, ins, q, pnl)
    ref = account_risk_reference(ip, ins, q, pnl)
    for a, b in zip((got.worst_loss, got.var, got.es), ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("conf_var", "conf_es"), [(0.95, 0.9), (0.5, 0.99), (0.999, 0.975)])
def test_kernel_matches_reference_at_other_levels(conf_var: float, conf_es: float) -> None:
    rng = np.random.default_rng(11)
    ip, ins, q = _book(rng, 100, 10, 4, np.int64)
    pnl = rng.normal(size=(777, 10))
    got = account_risk(ip, ins, q, pnl, conf_var, conf_es, n_chunks=3)
    ref = account_risk_reference(ip, ins, q, pnl, conf_var, conf_es)
    for a, b in zip((got.worst_loss, got.var, got.es), ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_account_loss_is_the_sparse_product() -> None:
    pnl = np.array([[1.0, -2.0], [3.0, 0.5], [-4.0, 1.0]])
    ip = np.array([0, 2])
    r = account_risk(ip, np.array([0, 1]), np.array([2.0, 1.0]), pnl, 0.5, 0.5)
    losses = -(2.0 * pnl[:, 0] + pnl[:, 1])  # [0, -6.5, 7]
    assert r.worst_loss[0] == 7.0
    assert r.var[0] == np.quantile(losses, 0.5)


def test_empty_accounts_have_zero_risk() -> None:
    r = account_risk(np.array([0, 0, 0]), np.array([], np.int64), np.array([]),
                     np.ones((10, 2)))
    np.testing.assert_array_equal(r.es, [0.0, 0.0])


def test_numpy_linear_ranks() -> None:
    x = np.random.default_rng(0).normal(size=1000)
    lo, hi, g = numpy_linear_ranks(1000, 0.99)
    d = np.sort(x)[::-1]
    assert d[lo] <= np.quantile(x, 0.99) <= d[hi]
    assert (lo, hi) == (10, 9) and g == pytest.approx(0.01)


def test_bad_csr_is_rejected() -> None:
    pnl = np.ones((5, 2))
    with pytest.raises(InputError):
        account_risk(np.array([0, 3]), np.array([0, 1]), np.array([1.0, 1.0]), pnl)
    with pytest.raises(InputError):
        account_risk(np.array([0, 1]), np.array([2]), np.array([1.0]), pnl)
    with pytest.raises(InputError):
        account_risk(np.array([0, 1]), np.array([0.0]), np.array([1.0]), pnl)


@pytest.mark.parametrize("kind", ["flat", "two_values", "one_spike"])
def test_tail_bound_is_exact_on_degenerate_loss_vectors(kind: str) -> None:
    # the fast path bounds the k-th largest loss from class maxima by bisection: ties and
    # flat vectors must not lose a tail scenario
    n_scen = 1000
    pnl = np.zeros((n_scen, 3))
    if kind == "flat":
        pnl[:, 0] = -5.0
    elif kind == "two_values":
        pnl[::2, 0] = -1.0
        pnl[1::2, 0] = -2.0
    else:
        pnl[:, 0] = -1.0
        pnl[137, 0] = -100.0
    pnl[:, 1] = np.linspace(-1.0, 1.0, n_scen)
    ip = np.array([0, 1, 2, 4])
    ins = np.array([0, 1, 0, 1])
    q = np.array([1.0, 3.0, 2.0, -1.0])
    got = account_risk(ip, ins, q, pnl)
    ref = account_risk_reference(ip, ins, q, pnl)
    for a, b in zip((got.worst_loss, got.var, got.es), ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
