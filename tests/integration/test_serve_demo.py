"""``marginproof serve --demo``: the first start of the service is never empty (issue 20)."""

from __future__ import annotations

from pathlib import Path

from marginproof.config.settings import Settings
from marginproof.demo.serve import demo_settings, seed_demo
from marginproof.storage.factory import open_repository


def test_demo_seeds_accounts_once_and_replays_the_shipped_day(tmp_path: Path) -> None:
    repo = open_repository(f"sqlite:///{tmp_path / 'd.sqlite'}")
    try:
        assert seed_demo(repo, n_accounts=25) == 25
        ids = repo.list_accounts(limit=100)
        assert len(ids) == 25  # listed like accounts created through the API
        kinds = [e.kind for e in repo.read(0, limit=100)]
        assert str(kinds[0]).endswith("market") and len(kinds) == 26
        assert seed_demo(repo, n_accounts=25) == 0  # a restart adds nothing
        assert repo.last_seq() == 26
    finally:
        repo.close()
    s = demo_settings(Settings(database_url=f"sqlite:///{tmp_path / 'd.sqlite'}"), speed=60)
    (feed,) = [f for f in s.feeds if f.kind == "replay"]
    assert feed.replay_date == "2022-04-15" and feed.speed == 60
    assert demo_settings(s).feeds == s.feeds  # a configured replay feed is kept
