"""The on-disk history cache serves exactly what parsing the shipped files gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from marginproof.feeds import history_cache as hc
from marginproof.feeds.history import load_market_history
from marginproof.io.datasets import data_dir
from marginproof.risk.history import MarketHistory


def _equal(a: MarketHistory, b: MarketHistory) -> None:
    for group in ("closes", "volumes", "atm_iv", "long_closes"):
        ga, gb = getattr(a, group), getattr(b, group)
        assert sorted(ga) == sorted(gb), group
        for name in ga:
            assert ga[name].dates.dtype == gb[name].dates.dtype
            np.testing.assert_array_equal(ga[name].dates, gb[name].dates)
            np.testing.assert_array_equal(ga[name].values, gb[name].values)
    assert sorted(a.funding) == sorted(b.funding)
    for name in a.funding:
        np.testing.assert_array_equal(a.funding[name].times, b.funding[name].times)
        np.testing.assert_array_equal(a.funding[name].rates, b.funding[name].rates)
    assert dict(a.sources) == dict(b.sources)


@pytest.fixture(scope="module")
def parsed() -> MarketHistory:
    return load_market_history()


def test_cold_and_warm_cache_equal_the_parsed_files(parsed: MarketHistory, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARGINPROOF_CACHE_DIR", str(tmp_path))
    cold = hc.cached_market_history()
    files = list(tmp_path.glob("history-*.npz"))
    assert len(files) == 1
    warm = hc.cached_market_history()
    _equal(cold, parsed)
    _equal(warm, parsed)


def test_a_changed_source_file_changes_the_key(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for rel in hc.SOURCE_FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data_dir() / rel, root / rel)
    before = hc.history_key(root, hc.UNDERLYINGS)
    assert before == hc.history_key(data_dir(), hc.UNDERLYINGS)
    with (root / hc.SOURCE_FILES[0]).open("ab") as fh:
        fh.write(b"\0")
    assert hc.history_key(root, hc.UNDERLYINGS) != before
    assert hc.history_key(root, ("BTC",)) != hc.history_key(root, hc.UNDERLYINGS)
    (root / hc.SOURCE_FILES[1]).unlink()
    assert hc.history_key(root, hc.UNDERLYINGS) is None


def test_a_corrupt_cache_file_is_rebuilt(parsed: MarketHistory, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARGINPROOF_CACHE_DIR", str(tmp_path))
    key = hc.history_key(data_dir(), hc.UNDERLYINGS)
    (tmp_path / f"history-{key}.npz").write_bytes(b"not an npz")
    _equal(hc.cached_market_history(), parsed)
    _equal(hc.cached_market_history(), parsed)  # the rebuilt file loads


def test_an_unwritable_cache_directory_still_gives_the_history(
        parsed: MarketHistory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the directory should be")
    monkeypatch.setenv("MARGINPROOF_CACHE_DIR", str(blocker / "sub"))
    _equal(hc.cached_market_history(), parsed)
    assert not list(tmp_path.glob("**/*.tmp"))
