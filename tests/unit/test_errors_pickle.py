"""Errors cross the worker pools intact: a pickled error keeps its type and fields."""

from __future__ import annotations

import pickle

from marginproof.errors import InputError, UnsupportedInstrumentError
from marginproof.proofs.errors import VerificationError


def test_input_errors_survive_a_pickle_round_trip_with_their_field() -> None:
    for exc in (InputError("positions[2].quantity", "must be finite"),
                UnsupportedInstrumentError("instrument", "not covered")):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc)
        assert (back.field, back.message, str(back)) == (exc.field, exc.message, str(exc))


def test_verification_errors_survive_a_pickle_round_trip_with_their_code() -> None:
    exc = VerificationError("path[3].sums.range", "out of range")
    back = pickle.loads(pickle.dumps(exc))
    assert (type(back), back.code, back.message) == (VerificationError, exc.code, exc.message)
