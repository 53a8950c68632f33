"""The database file and its surroundings: permissions of new files, corrupt files, read-only
files and folders, and a full disk.

The suite runs as root in CI, where ``chmod`` does not stop writes. A read-only *file* is made
with ``chattr +i`` (immutable: even root cannot write it); a read-only *folder* with a read-only
bind mount, or else ``chattr +i`` on the folder; a full disk with a small ``tmpfs`` mount. Each
of those tests skips (saying why) where the machine does not allow it; the disk-full test also
has a variant that always runs, where a plugin's ``hive_store_prepare_connection`` sets
``PRAGMA max_page_count`` so that SQLite reports SQLITE_FULL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hive_store
from hive_store.entities import Conversation, Message, User
from hive_store.health import worst
from hive_store.plugins import Plugins


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


# -- permissions --------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_new_databases_and_their_wal_and_shm_are_private(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        path = tmp_path / "new.db"
        with hive_store.open(f"sqlite://{path}") as store:
            store.users.add(User(license_key="secret"))
            # while open, the WAL and the shared-memory index exist too
            files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
            assert all(f.exists() for f in files)
            assert {f.name: oct(mode(f)) for f in files} == {f.name: "0o600" for f in files}
    finally:
        os.umask(old)
    assert mode(path) == 0o600


def test_the_adoption_backup_is_private(tmp_path: Path) -> None:
    from tests.conftest import legacy_fixture

    path = tmp_path / "legacy.db"
    shutil.copy(legacy_fixture("hive-ai-v5.db"), path)
    os.chmod(path, 0o644)  # as the old apps left it
    hive_store.open(f"sqlite://{path}").close()
    backups = [p for p in tmp_path.iterdir() if p.name.startswith("legacy.db.") and
               not p.name.endswith(("-wal", "-shm"))]
    assert backups, "adoption wrote no backup"
    assert [oct(mode(b)) for b in backups] == ["0o600"] * len(backups)


# -- corrupt files ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """A closed database with a few hundred rows, and where its structures are."""
    path = tmp_path_factory.mktemp("pristine") / "pristine.db"
    with hive_store.open(f"sqlite://{path}") as store:
        conv = store.conversations.add(Conversation())
        store.messages.add_many(Message(conversation_id=conv.id, role="user", content="x" * 300)
                                for _ in range(600))
    assert not Path(f"{path}-wal").exists()  # checkpointed on close: the file is complete
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        size = raw.execute("PRAGMA page_size").fetchone()[0]
        count = raw.execute("PRAGMA page_count").fetchone()[0]
        roots = dict(raw.execute("SELECT name, rootpage FROM sqlite_master WHERE rootpage > 0"))
    finally:
        raw.close()
    data = path.read_bytes()
    leaves = [n for n in range(2, count + 1) if data[(n - 1) * size] == 0x0D
              and n != roots["messages"]]
    facts = {"page_size": size, "page_count": count, "messages_root": roots["messages"],
             "index_root": roots["idx_messages_conversation"], "leaf": leaves[len(leaves) // 2],
             "last": count}
    return path, facts


def _page(facts: dict[str, int], name: str, offset: int = 0) -> int:
    return (facts[name] - 1) * facts["page_size"] + offset


CORRUPTIONS: dict[str, Any] = {
    "header magic": lambda f: 0,
    "header page size": lambda f: 16,
    "header format versions": lambda f: 18,
    "schema page b-tree header": lambda f: 100,
    "table root page type": lambda f: _page(f, "messages_root"),
    "table root cell count": lambda f: _page(f, "messages_root", 3),
    "index root page type": lambda f: _page(f, "index_root"),
    "leaf page cell pointer": lambda f: _page(f, "leaf", 8),
    "last page header": lambda f: _page(f, "last"),
    "truncated": None,
}


@pytest.mark.parametrize("where", list(CORRUPTIONS))
def test_a_corrupt_file_is_a_clear_error_on_open_or_in_health(
        tmp_path: Path, pristine: tuple[Path, dict[str, int]], where: str) -> None:
    source, facts = pristine
    path = tmp_path / "corrupt.db"
    shutil.copy(source, path)
    if CORRUPTIONS[where] is None:
        os.truncate(path, facts["page_size"] * (facts["page_count"] // 2))
    else:
        with open(path, "r+b") as f:
            f.seek(CORRUPTIONS[where](facts))
            flipped = bytes(b ^ 0xFF for b in f.read(2))
            f.seek(CORRUPTIONS[where](facts))
            f.write(flipped)
    try:
        store = hive_store.open(f"sqlite://{path}")
    except hive_store.CorruptDatabase as exc:
        assert str(path) in str(exc) and "damaged" in str(exc), str(exc)
        return
    with store:
        results = store.health()
        integrity = [r for r in results if r.name == "integrity"]
        assert integrity and integrity[0].status == "fail", results
        assert worst(results) == "fail"
        assert integrity[0].message.strip()
        try:
            facts_now = store.backend.check_integrity(full=True)
        except hive_store.CorruptDatabase as exc:
            assert "damaged" in str(exc)
        else:
            assert facts_now["ok"] is False
        # reading the damaged table is a hive_store error, never a bare sqlite3 one
        with contextlib.suppress(hive_store.CorruptDatabase):
            store.messages.count()
            list(store.messages.iter())


# -- read-only files and folders ----------------------------------------------------------------


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``chattr +i``: not even root can write (or, for a folder, create files in it)."""
    done = run("chattr", "+i", str(path)) if shutil.which("chattr") else None
    if done is None or done.returncode != 0:
        why = done.stderr.strip() if done is not None else "no chattr"
        pytest.skip(f"chattr +i is not available here ({why}): cannot make a file read-only "
                    "for root")
    try:
        yield
    finally:
        run("chattr", "-i", str(path))


@contextlib.contextmanager
def read_only_mount(folder: Path) -> Iterator[None]:
    """A read-only bind mount of ``folder`` onto itself."""
    first = run("mount", "--bind", str(folder), str(folder))
    if first.returncode != 0:
        pytest.skip(f"cannot bind-mount here ({first.stderr.strip()})")
    try:
        again = run("mount", "-o", "remount,bind,ro", str(folder))
        if again.returncode != 0:
            pytest.skip(f"cannot remount read-only ({again.stderr.strip()})")
        yield
    finally:
        run("umount", "-l", str(folder))


def _cli(*args: str) -> Any:
    from click.testing import CliRunner

    from hive_store.cli import make_cli

    result = CliRunner().invoke(make_cli(), list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def _filled(path: Path) -> None:
    with hive_store.open(f"sqlite://{path}") as store:
        store.users.add_many(User(id=f"u{i}") for i in range(10))


def test_a_read_only_file_reads_and_refuses_writes_clearly(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    _filled(path)
    with immutable(path):
        with pytest.raises(PermissionError):  # not even root can write it now
            open(path, "r+b").close()
        with hive_store.open(f"sqlite://{path}") as store:
            assert store.users.count() == 10  # reads work
            for write in (lambda: store.users.add(User(id="new")),
                          lambda: store.users.delete("u1"),
                          lambda: store.record_consensus("q?", [
                              hive_store.StageOutput(stage=s, model="m", answer="a")
                              for s in ("generator", "refiner", "validator", "curator")])):
                with pytest.raises(hive_store.StorageError) as err:
                    write()
                assert "readonly" in str(err.value).replace("-", "")
            assert store.users.count() == 10
    with hive_store.open(f"sqlite://{path}") as store:  # writable again: nothing damaged
        assert store.backend.check_integrity(full=True)["ok"]
        store.users.add(User(id="after"))
        assert store.users.count() == 11


@pytest.mark.parametrize("how", ["bind mount", "chattr"])
def test_a_read_only_folder_reads_and_refuses_writes_clearly(tmp_path: Path, how: str) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    _filled(folder / "existing.db")
    with hive_store.open(f"sqlite://{folder / 'legacy.db'}") as store:  # a rollback-journal
        store.users.add(User(id="x"))                                   # file, as Hive left it
    raw = sqlite3.connect(folder / "legacy.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode = DELETE")
    raw.close()
    lock = read_only_mount(folder) if how == "bind mount" else immutable(folder)
    with lock:
        # a new database cannot be created there
        with pytest.raises(hive_store.StorageError) as err:
            hive_store.open(f"sqlite://{folder / 'new.db'}")
        assert str(folder / "new.db") in str(err.value)
        with pytest.raises(hive_store.StorageError) as err:
            hive_store.open(f"sqlite://{folder / 'sub' / 'new.db'}")
        assert str(folder / "sub") in str(err.value)
        # an existing one (WAL, no -shm can be created: immutable; or a rollback-journal one:
        # mode=ro) opens read-only: reads work, writes are refused naming the reason
        for name, immutable_expected in (("existing.db", True), ("legacy.db", False)):
            with hive_store.open(f"sqlite://{folder / name}") as store:
                backend: Any = store.backend
                assert backend.read_only and backend.immutable is immutable_expected
                assert "read-only" in backend.read_only_reason
                assert store.users.count() in (1, 10)
                assert store.status()["read_only"] is True
                for write in (lambda: store.users.add(User(id="new")),
                              lambda: store.users.delete("u1"),
                              lambda: store.transaction().__enter__()):
                    with pytest.raises(hive_store.StorageError) as err:
                        write()
                    message = str(err.value)
                    assert "read-only" in message and str(folder / name) in message, message
                    assert "attempt to write" not in message
                    assert "unable to open" not in message
            # the commands: read-only ones work and say why, writing ones fail in one line
            db = str(folder / name)
            status = _cli("--db", db, "status")
            assert status.exit_code == 0 and "read-only here" in status.output, status.output
            assert _cli("--db", db, "health").exit_code in (0, 1, 2)
            assert _cli("--db", db, "stats").exit_code == 0
            write = _cli("--db", db, "optimize")
            assert write.exit_code == 1 and write.output.count("\n") == 1
            assert "read-only" in write.output and "writes are refused" in write.output
    assert sorted(p.name for p in folder.iterdir()) == ["existing.db", "legacy.db"]
    with hive_store.open(f"sqlite://{folder / 'existing.db'}") as store:
        assert store.users.count() == 10 and store.backend.check_integrity(full=True)["ok"]
        assert not store.backend.read_only  # type: ignore[attr-defined]


# -- a full disk --------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = run("mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount_point))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); "
                    "test_sqlite_full_via_max_page_count covers SQLITE_FULL")
    try:
        yield mount_point
    finally:
        run("umount", "-l", str(mount_point))


def _fill_until_full(store: hive_store.Store, conv_id: str) -> tuple[int, Exception]:
    """Add 20-message transactions until the disk is full; the committed count and the error."""
    committed = store.messages.count()
    for _ in range(10_000):
        try:
            store.messages.add_many(Message(conversation_id=conv_id, role="user",
                                            content="x" * 2000) for _ in range(20))
        except hive_store.HiveStoreError as exc:
            return committed, exc
        committed += 20
    raise AssertionError("the disk never filled up")


def _assert_full_error(exc: Exception) -> None:
    assert isinstance(exc, hive_store.StorageError), f"{type(exc).__name__}: {exc}"
    assert not isinstance(exc, hive_store.CorruptDatabase)
    assert "full" in str(exc)


def test_a_full_disk_fails_the_write_cleanly_and_the_database_stays_usable(
        small_disk: Path) -> None:
    path = small_disk / "full.db"
    url = f"sqlite://{path}"
    with hive_store.open(url) as store:
        conv = store.conversations.add(Conversation())
        # leave ~200 kB free: the WAL then fills the disk after some transactions
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        ballast = small_disk / "ballast"
        ballast.write_bytes(b"\0" * max(0, free - 200_000))
        committed, exc = _fill_until_full(store, conv.id)
        _assert_full_error(exc)
        assert store.messages.count() == committed  # the failed transaction left nothing
        assert store.backend.check_integrity(full=True)["ok"]  # reads work
        small = False
        with contextlib.suppress(hive_store.StorageError):  # a small write may still fit
            store.users.add(User(id="small"))
            small = True
        ballast.unlink()  # space again: writes work again, in the same store
        store.users.add(User(id="after"))
        assert store.messages.count() == committed
    with hive_store.open(url) as store:
        assert store.backend.check_integrity(full=True)["ok"]
        assert store.messages.count() == committed and store.users.count() == 1 + small


class PageLimit:
    """Caps every connection at its current size plus a few pages: SQLITE_FULL on growth."""

    def __init__(self, extra: int = 150) -> None:
        self.extra = extra

    @hive_store.hookimpl
    def hive_store_prepare_connection(self, connection: sqlite3.Connection) -> None:
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages + self.extra}").fetchall()


def test_sqlite_full_via_max_page_count(db_path: Path) -> None:
    plugins = Plugins()
    plugins.ensure_loaded()
    plugins.register(PageLimit(), name="page-limit")
    with hive_store.open(f"sqlite://{db_path}", plugins=plugins, max_size=1) as store:
        conv = store.conversations.add(Conversation())
        committed, exc = _fill_until_full(store, conv.id)
        _assert_full_error(exc)
        assert committed > 0 and store.messages.count() == committed
        assert store.backend.check_integrity(full=True)["ok"]
        # deleting frees pages; then the same store writes again
        for m in store.messages.find(limit=40):
            store.messages.delete(m.id)
        store.messages.add(Message(conversation_id=conv.id, role="user", content="fits"))
        assert store.messages.count() == committed - 40 + 1
    with hive_store.open(f"sqlite://{db_path}") as store:
        assert store.backend.check_integrity(full=True)["ok"]
        assert store.messages.count() == committed - 39


@pytest.mark.parametrize("case", ["conflict", "foreign key", "disk full"])
def test_storage_errors_name_the_operation(db_path: Path, case: str) -> None:
    plugins = Plugins()
    plugins.ensure_loaded()
    plugins.register(PageLimit(extra=5), name="page-limit")
    with hive_store.open(f"sqlite://{db_path}", plugins=plugins) as store:
        store.users.add(User(id="a"))
        with pytest.raises(hive_store.HiveStoreError) as err:
            if case == "conflict":
                store.users.add(User(id="a"))
            elif case == "foreign key":
                store.messages.add(Message(conversation_id="none", role="user", content="c"))
            else:
                conv = store.conversations.add(Conversation())
                raise _fill_until_full(store, conv.id)[1]
        assert "adding" in str(err.value) and ("User" in str(err.value)
                                               or "Message" in str(err.value)), str(err.value)
