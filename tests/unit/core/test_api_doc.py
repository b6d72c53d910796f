"""docs/api.md and the package agree: every module and name the API table lists imports."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "api.md"
ROWS = [ln for ln in DOC.read_text().splitlines() if ln.startswith("| `marginproof.")]


def test_the_api_table_is_found() -> None:
    assert len(ROWS) >= 20


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.split("`")[1][:60])
def test_every_listed_name_imports(row: str) -> None:
    cells = row.split("|")
    head = re.match(r"\s*`(marginproof[\w.]*)", cells[1])
    assert head, row
    path = head.group(1)
    try:
        mod = importlib.import_module(path)
    except ImportError:  # a function's dotted path: module.function(...)
        parent, _, attr = path.rpartition(".")
        assert hasattr(importlib.import_module(parent), attr), path
        return
    missing = [n for n in re.findall(r"`([A-Za-z_]\w*)[`(]", cells[2]) if not hasattr(mod, n)]
    assert not missing, f"{path}: {missing} listed in docs/api.md but not importable"
