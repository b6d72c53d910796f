"""Strict JSON refuses deep nesting without relying on the interpreter's recursion limit.

The regression: ``eth_account`` (proofs) imports ``py_ecc``, which raises the recursion limit to
100 000; a 50 000-deep body then overflowed a server thread's C stack (a segfault of the whole
test run) instead of raising ``RecursionError``.
"""

from __future__ import annotations

import sys
import threading

from hypothesis import given
from hypothesis import strategies as st

from marginproof.errors import InputError
from marginproof.io.formats import _text_depth, loads_strict
from marginproof.proofs.attest import sign_eip191, verify_eip191


def _refusal_in_thread(text: str) -> BaseException | None:
    out: list[BaseException | None] = [None]

    def run() -> None:
        try:
            loads_strict(text, "body")
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            out[0] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out[0]


def test_deep_body_is_refused_even_with_a_huge_recursion_limit() -> None:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        exc = _refusal_in_thread('{"k": ' + "[" * 50_000 + "]" * 50_000 + "}")
    finally:
        sys.setrecursionlimit(old)
    assert isinstance(exc, InputError)
    assert exc.field == "body" and "nested deeper than" in exc.message


def test_brackets_inside_strings_do_not_count() -> None:
    doc = '{"a": "[[[[\\" [[[[", "b": [[1]], "c": "\\\\"}'
    assert _text_depth(doc.encode()) == 3
    assert loads_strict(doc)["b"] == [[1]]


_json = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6)
                     | st.text(alphabet='[]{}"\\ab', max_size=8),
                     lambda kids: st.lists(kids, max_size=3)
                     | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=4), kids,
                                       max_size=3),
                     max_leaves=30)


def _depth(o: object) -> int:
    if isinstance(o, dict):
        return 1 + max((_depth(v) for v in o.values()), default=0)
    if isinstance(o, list):
        return 1 + max((_depth(v) for v in o), default=0)
    return 0


@given(_json)
def test_text_depth_equals_the_decoded_depth(doc: object) -> None:
    import json

    assert _text_depth(json.dumps(doc).encode()) == _depth(doc)


def test_eth_account_import_leaves_the_recursion_limit_alone() -> None:
    before = sys.getrecursionlimit()
    address, sig = sign_eip191(b"\x01" * 32, b"marginproof")
    verify_eip191(address.lower(), b"marginproof", sig, "test")
    assert sys.getrecursionlimit() == before
