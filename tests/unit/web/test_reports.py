"""Report library: kinds and titles from the files; nothing outside the directory is served."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from marginproof.errors import InputError
from marginproof.web.reports import ReportLibrary


@pytest.fixture
def lib(tmp_path: Path) -> ReportLibrary:
    root = tmp_path / "reports"
    (root / "backtest" / "btc").mkdir(parents=True)
    (root / "backtest" / "btc" / "report.md").write_text("# BTC backtest\n\ntext\n")
    (root / "backtest" / "btc" / "chart.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "stress").mkdir()
    (root / "stress" / "ftx.html").write_text("<html><head><title>FTX &amp; co</title></head>")
    (root / "eth_stress_2021.json").write_text('{"title": "ETH stress 2021", "rows": []}')
    (root / "out-1" / "figures").mkdir(parents=True)  # as `marginproof backtest --out` writes
    (root / "out-1" / "report.html").write_text("<title>Backtest of dynamic</title>")
    (root / "out-1" / "summary.json").write_text("{}")
    (root / "out-1" / "figures" / "f.png").write_bytes(b"png")
    (root / "notes.exe").write_text("no")
    (root / ".hidden.md").write_text("# hidden")
    (tmp_path / "secret.md").write_text("# secret")
    os.symlink(tmp_path / "secret.md", root / "link.md")
    return ReportLibrary(root)


def test_reports_are_listed_with_kind_title_and_format(lib: ReportLibrary) -> None:
    by_path = {r.path: r for r in lib.reports()}
    assert by_path["backtest/btc/report.md"].kind == "backtest"
    assert by_path["backtest/btc/report.md"].title == "BTC backtest"
    assert by_path["stress/ftx.html"].title == "FTX & co"
    assert by_path["stress/ftx.html"].format == "html"
    assert by_path["eth_stress_2021.json"].kind == "stress"
    assert by_path["eth_stress_2021.json"].title == "ETH stress 2021"
    assert by_path["out-1/report.html"].kind == "backtest"  # from its title
    assert not any(p.startswith("out-1/") and p != "out-1/report.html" for p in by_path)
    # a report folder is one entry (its chart is an asset); no hidden or unknown files
    assert "backtest/btc/chart.png" not in by_path
    assert not any(p.endswith((".exe", ".hidden.md")) for p in by_path)


def test_a_missing_directory_lists_nothing(tmp_path: Path) -> None:
    assert ReportLibrary(tmp_path / "nope").reports() == []


def test_files_inside_are_served_with_their_media_type(lib: ReportLibrary) -> None:
    p = lib.resolve("backtest/btc/chart.png")
    assert p.name == "chart.png" and lib.media_type(p) == "image/png"


@pytest.mark.parametrize("bad", ["../secret.md", "backtest/../../secret.md", "/etc/passwd",
                                 "link.md", ".hidden.md", "notes.exe", "stress//ftx.html",
                                 "stress\\ftx.html", "missing.md", "", "a\x00.md",
                                 "backtest/./btc/report.md"])
def test_paths_outside_the_directory_or_of_other_types_are_refused(lib: ReportLibrary,
                                                                   bad: str) -> None:
    with pytest.raises(InputError):
        lib.resolve(bad)
