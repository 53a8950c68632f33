"""``hive_store.open(url, read_only=True)``: inspect a file without changing a byte of it."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

import hive_store
from hive_store import StageOutput
from tests.conftest import FIXTURES, legacy_fixture

LEGACY = sorted(p.name for p in FIXTURES.glob("*.db"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stages() -> list[StageOutput]:
    return [StageOutput(stage=s, model="m", answer=f"{s} answer")
            for s in ("generator", "refiner", "validator", "curator")]


def test_there_are_legacy_fixtures_to_try() -> None:
    assert len(LEGACY) >= 5


@pytest.mark.parametrize("name", LEGACY)
def test_a_legacy_file_is_read_but_not_changed(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    shutil.copy(legacy_fixture(name), path)
    before = digest(path)
    with hive_store.open(str(path), read_only=True) as store:
        assert store.backend.read_only
        assert store.backend.describe()["pragmas"]["journal_mode"] != "wal"
        assert store.conversations.count() >= 0
        with pytest.raises(hive_store.StorageError, match="read-only"):
            store.log_activity("export")
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no journal, no backup


def test_a_current_file_is_read_but_not_changed(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    with hive_store.open(str(path)) as store:
        run = store.record_consensus("How does WAL work?", stages())
    before = digest(path)
    with hive_store.open(f"sqlite:///{path}", read_only=True) as store:
        assert store.conversations.get(run.conversation_id) == run.conversation
        for attempt in (lambda: store.record_consensus("again?", stages()),
                        lambda: store.conversations.delete(run.conversation_id),
                        lambda: store.transaction().__enter__()):
            with pytest.raises(hive_store.StorageError, match="read-only"):
                attempt()
        store.memory.search("WAL")  # plugins read, write nothing
    assert digest(path) == before
    with hive_store.open(str(path)) as store:  # and the file is still a normal store
        assert store.conversations.count() == 1


def test_read_only_in_the_url(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    hive_store.open(str(path)).close()
    with hive_store.open(f"sqlite:///{path}?read_only=1") as store:
        assert store.backend.read_only


def test_a_missing_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(hive_store.StorageError, match="no database file"):
        hive_store.open(str(path), read_only=True)
    assert not path.exists()


def test_read_only_and_migrate_are_exclusive(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    hive_store.open(str(path)).close()
    with pytest.raises(hive_store.ConfigurationError, match="cannot be migrated"):
        hive_store.open(str(path), read_only=True, migrate=True)
    with pytest.raises(hive_store.ConfigurationError, match="in-memory"):
        hive_store.open(":memory:", read_only=True)


@pytest.mark.parametrize("name", ["a?b.db", "c#d.db", "pct%41.db", "sp ace.db"])
def test_file_names_with_uri_characters(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with hive_store.open(str(path)) as store:
        store.log_activity("export")
    before = digest(path)
    with hive_store.open(str(path), read_only=True) as store:
        assert store.activity_log.count() == 1
    assert digest(path) == before
    assert {p.name for p in tmp_path.iterdir()} <= {name, f"{name}-wal", f"{name}-shm"}
