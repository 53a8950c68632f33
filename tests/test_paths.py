"""Files and paths (issues 14.6, 14.2, 12.5, 13.4): names with URI characters, special files,
folders hive-store does (not) create, world-readable files, temporary files of killed runs,
bare paths with ``?``, damaged files in ``status``, read-only commands that change nothing,
and the notice of a write waiting for another process.

Special files are private ones made here (``mknod`` for a character device, where the
machine allows it; a FIFO, a socket and a folder always), never the system's ``/dev/null``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hive_store_health import Maintenance, MaintenanceError, restore

import hive_store
import hive_store.cli
from hive_store.cli import make_cli
from hive_store.entities import Setting
from tests.conftest import FIXTURES, isolated_plugins, legacy_fixture

LEGACY = sorted(p.name for p in FIXTURES.glob("*.db"))


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(make_cli(), list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def digest(*paths: Path) -> list[str | None]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for p in paths]


# -- names with URI characters ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bk#1.bak", "pct%41.db.bak", "a?b.bak", "x&mode=rw.bak",
                                  "sp ace.bak"])
def test_backup_and_restore_use_exactly_the_file_named(store: hive_store.Store, tmp_path: Path,
                                                        name: str) -> None:
    store.settings.add_many(Setting(key=f"k{i}", value="v") for i in range(50))
    folder = tmp_path / "out"
    folder.mkdir()
    dest = folder / name
    result = Maintenance(store).backup(dest)
    assert result["verified"] and result["dest"] == str(dest)
    assert sorted(p.name for p in folder.iterdir()) == [name]  # no stray file, no half file
    target = folder / "restored.db"
    restore(dest, target)
    with hive_store.open(f"sqlite://{target}", plugins=isolated_plugins()) as back:
        assert back.settings.count() == 50


def test_restore_reads_only_the_file_named_never_a_similar_one(store: hive_store.Store,
                                                               tmp_path: Path) -> None:
    good = tmp_path / "backup.db"
    Maintenance(store).backup(good)
    junk = tmp_path / "backup.db#junk"
    junk.write_bytes(b"garbage, not a database\n" * 100)
    target = tmp_path / "target.db"
    shutil.copy(good, target)
    before = digest(target)
    with pytest.raises(MaintenanceError, match="not a usable SQLite database"):
        restore(junk, target)
    assert digest(target) == before


# -- special files ---------------------------------------------------------------------------------


@pytest.fixture(params=["character device", "fifo", "socket", "folder"])
def special(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "special"
    kind = request.param
    held: list[Any] = []
    if kind == "character device":
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a private /dev/null
        except (PermissionError, OSError) as exc:
            pytest.skip(f"cannot make a device node here ({exc}); the FIFO, socket and "
                        "folder cases cover non-regular files")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        held.append(sock)
    else:
        path.mkdir()
    yield path
    for sock in held:
        sock.close()


def _kind(path: Path) -> int:
    return stat.S_IFMT(os.lstat(path).st_mode)


def test_backup_never_replaces_a_special_file(store: hive_store.Store, special: Path) -> None:
    kind = _kind(special)
    with pytest.raises(MaintenanceError, match=r"not a backup file|is a directory"):
        Maintenance(store).backup(special, force=True)
    result = invoke("--db", str(store.url.path), "backup", "--force", str(special))
    if special.is_dir():  # click's own check of DEST: a usage error
        assert result.exit_code == 2 and "is a directory" in result.output
    else:
        assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert _kind(special) == kind  # still the same device / FIFO / socket / folder
    assert not [p for p in special.parent.iterdir() if ".partial-" in p.name]


def test_restore_refuses_a_special_database_or_backup(store: hive_store.Store, tmp_path: Path,
                                                      special: Path) -> None:
    good = tmp_path / "good.bak"
    Maintenance(store).backup(good)
    kind = _kind(special)
    with pytest.raises(MaintenanceError, match=r"not a database file|not a backup file"):
        restore(good, special)
    result = invoke("--db", str(special), "restore", str(good))
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "special" in result.output
    with pytest.raises(MaintenanceError):
        restore(special, tmp_path / "target.db")
    assert _kind(special) == kind
    assert not (tmp_path / "target.db").exists()


def test_opening_a_special_file_is_refused_without_waiting(special: Path) -> None:
    for read_only in (False, True):
        with pytest.raises(hive_store.StorageError, match=r"not a database file|is a directory"):
            hive_store.open(f"sqlite://{special}", read_only=read_only)


# -- temporary files of killed runs ----------------------------------------------------------------

KILLED_BACKUP = """
import sys, time
import hive_store
from hive_store_health import Maintenance

store = hive_store.open(sys.argv[1])

def progress(done, total):
    if 0 < done < total:
        print("copying", flush=True)
        time.sleep(120)  # killed here

Maintenance(store).backup(sys.argv[2], progress=progress, step_pages=1)
"""


def test_a_killed_backup_leaves_no_file_the_next_run_keeps(tmp_path: Path) -> None:
    db = tmp_path / "hive.db"
    with hive_store.open(f"sqlite://{db}", plugins=isolated_plugins()) as store:
        store.settings.add_many(Setting(key=f"k{i}", value="x" * 500) for i in range(200))
    dest = tmp_path / "backup.db"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BACKUP, str(db), str(dest)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "copying"
    finally:
        proc.kill()
        proc.wait(30)
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".backup.db.partial-")]
    assert leftovers and not dest.exists()  # killed half-way: only a temporary file
    live = tmp_path / f".backup.db.partial-{os.getpid()}-1"  # a run still going: kept
    live.write_bytes(b"in progress")
    with hive_store.open(f"sqlite://{db}", plugins=isolated_plugins()) as store:
        Maintenance(store).backup(dest)
    assert sorted(p.name for p in tmp_path.iterdir() if ".partial-" in p.name) == [live.name]
    with hive_store.open(f"sqlite://{dest}", read_only=True) as copy:
        assert copy.settings.count() == 200


# -- folders ---------------------------------------------------------------------------------------


def test_no_folder_is_created_for_a_mistyped_path(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "deeper" / "hive.db"
    with pytest.raises(hive_store.StorageError, match="does not exist"):
        hive_store.open(f"sqlite://{missing}")
    result = invoke("--db", str(missing), "init")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "does not exist" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_default_folder_is_created_private(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("HIVE_STORE_DB", raising=False)
    old = os.umask(0o022)
    try:
        with hive_store.open(plugins=isolated_plugins()) as store:
            store.settings.add(Setting(key="k", value="v"))
    finally:
        os.umask(old)
    assert mode(home / ".hive") == 0o700
    assert mode(home / ".hive" / "hive-ai.db") == 0o600


# -- world-readable files --------------------------------------------------------------------------


def test_a_world_readable_database_is_reported_once_and_its_wal_made_private(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "shared.db"
    hive_store.open(f"sqlite://{path}", plugins=isolated_plugins()).close()
    os.chmod(path, 0o644)  # as the old apps (or a copy) left it
    caplog.set_level(logging.WARNING, logger="hive_store.sqlite")
    for n in range(2):
        with hive_store.open(f"sqlite://{path}", plugins=isolated_plugins()) as store:
            store.settings.add(Setting(key=f"k{n}", value="v"))
            for side in ("-wal", "-shm"):
                assert mode(Path(f"{path}{side}")) == 0o600, side
            checks = {r.name: r for r in store.health()}
            assert checks["permissions"].status == "warn"
            assert "chmod 600" in checks["permissions"].message
            assert "readable" in store.status()["permissions_warning"]
    warnings = [r for r in caplog.records if "readable by every user" in r.getMessage()]
    assert len(warnings) == 1  # once per file and process
    assert mode(path) == 0o644  # the user's file keeps its mode: warned, not changed


def test_an_empty_world_readable_file_becomes_a_private_database(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o666)
    os.close(fd)
    os.chmod(path, 0o666)
    with hive_store.open(f"sqlite://{path}", plugins=isolated_plugins()) as store:
        store.settings.add(Setting(key="k", value="v"))
        assert {mode(Path(f"{path}{s}")) for s in ("", "-wal", "-shm")} == {0o600}
        assert {r.name: r.status for r in store.health()}["permissions"] == "ok"


# -- bare paths with "?" ---------------------------------------------------------------------------


def test_a_bare_path_with_options_takes_them(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with hive_store.open("x.db?max_size=3", plugins=isolated_plugins()) as store:
        assert store.backend.pool.config.max_size == 3  # type: ignore[attr-defined]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.db"]
    with pytest.raises(hive_store.ConfigurationError, match="max_size='abc' is not a number"):
        hive_store.open("y.db?max_size=abc")
    result = invoke("--db", "z.db?max_size=abc", "status")
    assert result.exit_code == 1 and "not a number" in result.output
    result = invoke("--db", "z.db?max_size=abc", "init")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    with pytest.raises(hive_store.ConfigurationError, match="unknown sqlite option 'colour'"):
        hive_store.open("z.db?colour=blue")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.db"]  # nothing else created
    with hive_store.open("what?.db", plugins=isolated_plugins()):  # no options: a name
        pass
    assert (tmp_path / "what?.db").is_file()


# -- damaged files in the read-only commands -------------------------------------------------------


def test_status_health_and_stats_on_a_file_whose_tail_is_zeroed(tmp_path: Path) -> None:
    path = tmp_path / "tail.db"
    with hive_store.open(f"sqlite://{path}", plugins=isolated_plugins()) as store:
        store.settings.add_many(Setting(key=f"k{i}", value="v" * 300) for i in range(2000))
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(b"\0" * (size - size // 2))
    for command, code in (("status", 1), ("stats", 1), ("health", 2)):
        result = invoke("--db", str(path), command)
        assert result.exit_code == code, (command, result.output)
        if code == 1:
            assert result.output.count("\n") == 1 and "damaged" in result.output, result.output
    with pytest.raises(hive_store.CorruptDatabase), \
            hive_store.open(f"sqlite://{path}", read_only=True) as store:
        store.status()


# -- read-only commands change nothing (13.4) -----------------------------------------------


def _listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.endswith("-shm")}


@pytest.mark.parametrize("name", LEGACY)
def test_status_health_and_stats_leave_a_legacy_file_byte_identical(tmp_path: Path,
                                                                    name: str) -> None:
    path = tmp_path / name
    shutil.copy(legacy_fixture(name), path)
    before = digest(path, Path(f"{path}-wal"))
    listing = _listing(tmp_path)
    status = invoke("--db", str(path), "--json", "status")
    assert status.exit_code == 0, status.output
    facts = json.loads(status.output)
    assert facts["legacy"] and facts["schema_version"] == 0  # said, not done
    assert "not adopted yet" in invoke("--db", str(path), "status").output
    assert invoke("--db", str(path), "health").exit_code in (0, 1, 2)
    assert invoke("--db", str(path), "stats").exit_code in (0, 1)
    assert digest(path, Path(f"{path}-wal")) == before
    assert _listing(tmp_path) == listing  # no journal, no backup, no -wal


def test_status_health_and_stats_leave_a_current_file_byte_identical(tmp_path: Path) -> None:
    live = tmp_path / "live.db"
    path = tmp_path / "hive.db"
    with hive_store.open(f"sqlite://{live}") as store:  # every plugin: memory, health, …
        store.record_consensus("How does WAL work?", [
            hive_store.StageOutput(stage=s, model="m", answer=f"{s} answer")
            for s in ("generator", "refiner", "validator", "curator")])
        store.settings.add_many(Setting(key=f"k{i}", value="v") for i in range(100))
        # a copy while it is open: committed frames still in the -wal, as after a crash
        shutil.copy(live, path)
        shutil.copy(f"{live}-wal", f"{path}-wal")
    assert Path(f"{path}-wal").stat().st_size > 0
    with hive_store.open(f"sqlite://{path}", plugins=isolated_plugins()) as other:
        # written without the memory plugin: its change log has a backlog to catch up on
        other.record_consensus("Written while the memory plugin was away?", [
            hive_store.StageOutput(stage=s, model="m", answer=f"{s} answer")
            for s in ("generator", "refiner", "validator", "curator")])
        shutil.copy(path, tmp_path / "copy.db")
        shutil.copy(f"{path}-wal", tmp_path / "copy.db-wal")
    path = tmp_path / "copy.db"
    before = digest(path, Path(f"{path}-wal"))
    listing = _listing(tmp_path)
    for args in (["status"], ["--json", "status"], ["health"], ["health", "--full"],
                 ["stats"], ["--json", "stats"]):
        result = invoke("--db", str(path), *args)
        assert result.exit_code in (0, 1), (args, result.output)
        assert digest(path, Path(f"{path}-wal")) == before, args
    assert _listing(tmp_path) == listing
    status = json.loads(invoke("--db", str(path), "--json", "status").output)
    assert status["legacy"] is None and status["row_counts"]["settings"] == 100
    health = json.loads(invoke("--db", str(path), "--json", "health").output)
    memory = {c["name"]: c for c in health["checks"]}["memory_index"]
    assert memory["status"] == "warn" and "not searchable yet" in memory["message"]


# -- a write waiting for another process -----------------------------------------------------------


@contextlib.contextmanager
def _writer_elsewhere(path: Path) -> Iterator[threading.Event]:
    """Another connection (as another process would) holds the write lock until ``release``
    is set."""
    release = threading.Event()
    locked = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            locked.set()
            release.wait(60)
            conn.execute("COMMIT")
        finally:
            conn.close()

    t = threading.Thread(target=hold)
    t.start()
    assert locked.wait(30)
    try:
        yield release
    finally:
        release.set()
        t.join(60)


def test_a_write_waiting_for_another_process_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "wait.db"
    hive_store.open(f"sqlite://{path}", plugins=isolated_plugins()).close()
    heard: list[float | None] = []
    with _writer_elsewhere(path) as release:
        def on_wait(seconds: float | None) -> None:
            heard.append(seconds)
            release.set()  # the other writer finishes once we have said we wait

        with hive_store.open(f"sqlite://{path}", plugins=isolated_plugins(),
                             on_wait=on_wait) as store:
            store.settings.add(Setting(key="after", value="the wait"))
            assert store.settings.get("after").value == "the wait"
    assert heard and heard[-1] is None
    assert all(isinstance(s, float) and s > 0 for s in heard[:-1]) and len(heard) >= 2
    with pytest.raises(hive_store.ConfigurationError, match="keyword option"):
        hive_store.open(f"sqlite://{path}?on_wait=print")


def test_the_command_shows_the_wait_on_a_terminal(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "wait.db"
    hive_store.open(f"sqlite://{path}").close()
    shown: list[float | None] = []
    notice = hive_store.cli.writer_wait_notice
    monkeypatch.setattr(hive_store.cli, "_stderr_is_terminal", lambda: True)
    with _writer_elsewhere(path) as release:
        def spy(seconds: float | None) -> None:
            shown.append(seconds)
            notice(seconds)
            release.set()

        monkeypatch.setattr(hive_store.cli, "writer_wait_notice", spy)
        result = CliRunner().invoke(make_cli(), ["--db", str(path), "optimize"])
    assert result.exit_code == 0, result.output
    assert "waiting for another writer (1 s)…" in result.output
    assert shown and shown[-1] is None
