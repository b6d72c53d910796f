"""Properties of the L0 encoding: canonical JSON is a bijection; amounts are exact."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marginproof.errors import InputError
from marginproof.proofs.encoding import canon, decimal_string, parse_canonical, to_atoms

json_values = st.recursive(
    st.none() | st.booleans() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_canonical_json_round_trips(obj) -> None:
    assert parse_canonical(canon(obj), "doc") == obj


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), min_size=2,
                       max_size=5))
def test_any_whitespace_or_reordering_is_rejected(d) -> None:
    data = canon(d)
    with pytest.raises(InputError):
        parse_canonical(b"{ " + data[1:], "doc")
    descending = dict(sorted(d.items(), reverse=True))  # >= 2 distinct keys: not sorted
    raw = json.dumps(descending, separators=(",", ":"), ensure_ascii=False).encode()
    with pytest.raises(InputError, match="not canonical"):
        parse_canonical(raw, "doc")


@given(st.integers(-(10**20), 10**20), st.integers(0, 12))
def test_amounts_round_trip_exactly_at_their_scale(atoms, scale) -> None:
    s = decimal_string(Fraction(atoms, 10**scale), scale)
    assert to_atoms(s, scale, "x", signed=True) == atoms
