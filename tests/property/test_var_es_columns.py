"""One-selection VaR/ES of many columns: equal to the per-portfolio measures, and a column's
figure does not depend on the columns beside it (bit for bit)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from marginproof.models._history import var_es_columns
from marginproof.risk.measures import expected_shortfall, var


@settings(max_examples=40, deadline=None)
@given(n=st.integers(50, 600), cols=st.integers(1, 9), seed=st.integers(0, 2**31 - 1),
       conf=st.sampled_from([0.95, 0.975, 0.99]))
def test_each_column_is_bit_equal_alone_and_in_a_batch(n: int, cols: int, seed: int,
                                                       conf: float) -> None:
    losses = np.random.default_rng(seed).standard_t(3, size=(n, cols)) * 1e4
    v, es = var_es_columns(losses, conf, conf)
    for j in range(cols):
        vj, esj = var_es_columns(losses[:, j:j + 1], conf, conf)
        assert vj[0] == v[j] and esj[0] == es[j]
        assert np.isclose(v[j], var(losses[:, j], conf), rtol=1e-12, atol=0.0)
        assert np.isclose(es[j], expected_shortfall(losses[:, j], conf), rtol=1e-12, atol=0.0)
