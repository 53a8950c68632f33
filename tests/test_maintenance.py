"""Maintenance: vacuum really returns pages, optimize, checkpoint, online backup under
concurrent writes (property test), restore (refuses a database open elsewhere, verifies its
source first, keeps the replaced file), the commands, and the background thread."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hive_store_health import Maintenance, MaintenanceError, restore, start_maintenance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hive_store
from hive_store.cli import make_cli
from hive_store.entities import Conversation, Message
from hive_store.plugins import Plugins
from tests.conftest import isolated_plugins


@pytest.fixture
def plugins() -> Plugins:
    return isolated_plugins()


@pytest.fixture
def store(db_path: Path, plugins: Plugins) -> Iterator[hive_store.Store]:
    with hive_store.open(f"sqlite://{db_path}", plugins=plugins) as s:
        yield s


def invoke(plugins: Plugins, *args: str) -> Result:
    result = CliRunner().invoke(make_cli(plugins), list(args))
    assert "Traceback" not in result.output
    return result


def fill_and_delete(store: hive_store.Store, n: int = 400) -> None:
    """Make ``n`` pages' worth of rows, delete them and checkpoint: free pages in the file."""
    conv = store.conversations.add(Conversation())
    store.messages.add_many(Message(conversation_id=conv.id, role="user", content="z" * 3000)
                            for _ in range(n))
    with store.backend.transaction() as conn:
        conn.execute("DELETE FROM messages WHERE conversation_id = ?", (conv.id,))
    Maintenance(store).checkpoint(truncate=True)


def rows(path: Path, sql: str = "SELECT key, value FROM settings ORDER BY key") -> list[Any]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# -- vacuum, optimize, checkpoint ----------------------------------------------------------------


def test_incremental_vacuum_returns_pages(store: hive_store.Store, monkeypatch: Any) -> None:
    fill_and_delete(store)
    work = Maintenance(store)
    before = work.facts()
    assert before["auto_vacuum"] == 2 and before["freelist_count"] >= 350

    transactions = []
    real = store.backend.transaction

    def counting(*args: Any, **kwargs: Any) -> Any:
        transactions.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(store.backend, "transaction", counting)
    limited = work.vacuum(max_pages=10, step_pages=4)
    assert limited["freed_pages"] == 10 and len(transactions) == 3  # 4 + 4 + 2 pages
    result = work.vacuum(step_pages=64)
    after = work.facts()
    assert result["freed_pages"] == before["freelist_count"] - 10
    assert after["freelist_count"] == 0
    assert after["page_count"] == before["page_count"] - before["freelist_count"]
    assert after["size_bytes"] < before["size_bytes"] - 350 * 4096  # the file really shrank
    assert result["after"]["size_bytes"] == after["size_bytes"]
    assert not work.vacuum()["freed_pages"]  # nothing left to do


def test_vacuum_full_enables_incremental_on_an_old_database(plugins: Plugins,
                                                            db_path: Path) -> None:
    raw = sqlite3.connect(db_path, isolation_level=None)
    raw.execute("PRAGMA auto_vacuum = NONE")
    raw.execute("VACUUM")
    raw.close()
    with hive_store.open(f"sqlite://{db_path}", plugins=plugins) as store:
        fill_and_delete(store, 100)
        work = Maintenance(store)
        stuck = work.vacuum()
        assert stuck["freed_pages"] == 0 and "--full" in stuck["note"]
        assert stuck["after"]["freelist_count"] == stuck["before"]["freelist_count"] > 0
        full = work.vacuum(full=True)
        assert full["after"]["auto_vacuum"] == 2 and full["after"]["freelist_count"] == 0
        assert full["freed_pages"] >= 100


def test_optimize_and_analyze(store: hive_store.Store) -> None:
    work = Maintenance(store)
    assert work.optimize()["mode"] == "optimize"
    analyzed = work.optimize(analyze=True)
    assert analyzed["mode"] == "analyze" and analyzed["tables_with_statistics"] > 0
    with store.backend.connection() as conn:
        assert conn.execute("PRAGMA analysis_limit").fetchone()[0] == 0  # put back


def test_checkpoint_passive_truncate_and_a_blocking_reader(store: hive_store.Store,
                                                           db_path: Path) -> None:
    store.messages.add_many(
        Message(conversation_id=store.conversations.add(Conversation()).id, role="user",
                content="w" * 1000) for _ in range(50))
    work = Maintenance(store)
    passive = work.checkpoint()
    assert passive["mode"] == "passive" and passive["complete"]
    assert passive["wal_bytes_after"] == passive["wal_bytes_before"] > 0  # passive keeps it
    truncated = work.checkpoint(truncate=True)
    assert truncated["complete"] and truncated["wal_bytes_after"] == 0

    reader = sqlite3.connect(db_path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM messages").fetchone()
    store.users.add(hive_store.entities.User())
    t0 = time.monotonic()
    blocked = work.checkpoint(truncate=True, timeout=0.2)
    assert time.monotonic() - t0 < 3
    assert not blocked["complete"] and blocked["wal_bytes_after"] > 0
    reader.execute("COMMIT")
    reader.close()
    assert work.checkpoint(truncate=True)["wal_bytes_after"] == 0


def test_maintenance_commands(store: hive_store.Store, plugins: Plugins, db_path: Path) -> None:
    fill_and_delete(store, 100)
    db = str(db_path)
    vac = invoke(plugins, "--db", db, "vacuum", "--json")
    assert vac.exit_code == 0, vac.output
    assert json.loads(vac.output)["after"]["freelist_count"] == 0
    assert "freed 0 pages" in invoke(plugins, "--db", db, "vacuum").output
    opt = invoke(plugins, "--db", db, "optimize", "--analyze")
    assert opt.exit_code == 0 and "analyze" in opt.output
    ckpt = json.loads(invoke(plugins, "--db", db, "--json", "checkpoint", "--truncate").output)
    assert ckpt["mode"] == "truncate" and ckpt["complete"]
    missing = invoke(plugins, "--db", db + ".nope", "vacuum")
    assert missing.exit_code == 1 and "no database at" in missing.output
    assert not Path(db + ".nope").exists()


# -- backup ------------------------------------------------------------------------------------


def test_backup_basics(store: hive_store.Store, plugins: Plugins, db_path: Path,
                       tmp_path: Path) -> None:
    from hive_store.entities import Setting

    store.settings.add_many(Setting(key=f"k{i}", value=str(i)) for i in range(100))
    seen: list[tuple[int, int]] = []
    dest = tmp_path / "backups" / "copy.db"
    with pytest.raises(MaintenanceError, match="does not exist"):  # no folder made for it
        Maintenance(store).backup(dest)
    assert not dest.parent.exists()
    dest.parent.mkdir()
    result = Maintenance(store).backup(dest, progress=lambda d, t: seen.append((d, t)),
                                       step_pages=8)
    assert result["verified"] and result["pages"] == seen[-1][1] and seen[-1][0] == seen[-1][1]
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) > 3
    assert oct(dest.stat().st_mode & 0o777) == "0o600"
    assert rows(dest) == rows(db_path)
    assert rows(dest, "PRAGMA journal_mode") == [("delete",)]  # one self-contained file
    assert not list(dest.parent.glob(".*partial*"))

    with pytest.raises(MaintenanceError, match="exists; use --force"):
        Maintenance(store).backup(dest)
    with pytest.raises(MaintenanceError, match="the database itself"):
        Maintenance(store).backup(db_path, force=True)
    store.settings.add(Setting(key="later", value="x"))
    Maintenance(store).backup(dest, force=True)
    assert ("later", "x") in rows(dest)

    cli = invoke(plugins, "--db", str(db_path), "backup", str(dest))
    assert cli.exit_code == 1 and cli.output.count("\n") == 1 and "--force" in cli.output
    ok = invoke(plugins, "--db", str(db_path), "backup", str(dest), "--force", "--json")
    assert ok.exit_code == 0 and json.loads(ok.output)["dest"] == str(dest)

    holder = sqlite3.connect(dest)  # e.g. someone opened the backup with hive-store (WAL)
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("SELECT count(*) FROM settings").fetchone()
    try:
        with pytest.raises(MaintenanceError, match="open elsewhere"):
            Maintenance(store).backup(dest, force=True)
    finally:
        holder.close()


def test_backup_of_a_memory_store(plugins: Plugins, tmp_path: Path) -> None:
    with hive_store.open(":memory:", plugins=plugins) as store:
        store.users.add(hive_store.entities.User(email="a@example.com"))
        Maintenance(store).backup(tmp_path / "mem.db")
    assert rows(tmp_path / "mem.db", "SELECT email FROM users") == [("a@example.com",)]


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=20),
       prefill=st.integers(0, 40), step_pages=st.sampled_from([1, 3, 16]))
def test_backup_under_concurrent_writes_is_a_commit_point(
        plugins: Plugins, db_path: Path, sizes: list[int], prefill: int,
        step_pages: int) -> None:
    work_dir = Path(tempfile.mkdtemp(dir=db_path.parent))
    path = work_dir / "live.db"
    shutil.copy(db_path, path)
    batch_size = {}  # seq -> rows, for every batch the writer committed
    committed: list[int] = []
    stop = threading.Event()
    pad = "p" * 300

    def write_batch(store: hive_store.Store, seq: int) -> None:
        n = sizes[seq % len(sizes)]
        with store.backend.transaction() as conn:
            conn.executemany("INSERT INTO settings (key, value, description) VALUES (?, ?, ?)",
                             [(f"b{seq:06d}-{i:03d}", str(seq), pad) for i in range(n)])
        batch_size[seq] = n
        committed.append(seq)

    with hive_store.open(f"sqlite://{path}", plugins=plugins) as store:
        for seq in range(1, prefill + 1):
            write_batch(store, seq)

        def writer() -> None:
            seq = prefill
            while not stop.is_set():
                seq += 1
                write_batch(store, seq)
                time.sleep(0)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            at_start = len(committed)
            waited: list[int] = []

            def progress(done: int, total: int) -> None:
                if not waited:  # make sure writers commit while the backup is running
                    deadline = time.monotonic() + 5
                    while len(committed) < at_start + 2 and time.monotonic() < deadline:
                        time.sleep(0.001)
                    waited.append(len(committed))

            dest = work_dir / "backup.db"
            Maintenance(store).backup(dest, progress=progress, step_pages=step_pages)
        finally:
            stop.set()
            thread.join()
        assert waited and waited[0] >= at_start + 2

    restored = work_dir / "restored.db"
    restore(dest, restored)
    for copy in (dest, restored):
        keys = [k for (k,) in rows(copy, "SELECT key FROM settings WHERE key LIKE 'b%' "
                                          "ORDER BY key")]
        seqs = sorted({int(k[1:7]) for k in keys})
        k = len(seqs)
        assert seqs == list(range(1, k + 1))  # batches 1..k, no gap
        assert at_start <= k < len(committed)  # a commit point during the backup
        assert keys == [f"b{seq:06d}-{i:03d}" for seq in range(1, k + 1)
                        for i in range(batch_size[seq])]  # each batch complete
    shutil.rmtree(work_dir)


# -- restore ----------------------------------------------------------------------------------


def _backup_of(store: hive_store.Store, dest: Path) -> Path:
    Maintenance(store).backup(dest)
    return dest


def test_restore_refuses_a_database_open_elsewhere(store: hive_store.Store, plugins: Plugins,
                                                   db_path: Path, tmp_path: Path) -> None:
    from hive_store.entities import Setting

    store.settings.add(Setting(key="version", value="backup"))
    backup = _backup_of(store, tmp_path / "b.db")
    store.settings.update("version", value="live")
    before = db_path.read_bytes()
    with pytest.raises(MaintenanceError, match="open elsewhere"):
        restore(backup, db_path)  # this very store has it open
    cli = invoke(plugins, "--db", str(db_path), "restore", str(backup))
    assert cli.exit_code == 1 and "open elsewhere" in cli.output
    assert cli.output.strip().count("\n") == 0
    assert db_path.read_bytes() == before and not list(tmp_path.glob("*.pre-restore-*"))
    store.close()

    result = restore(backup, db_path)
    kept = Path(result["replaced_copy"])
    assert kept.parent == db_path.parent and kept.name.startswith("hive-ai.db.pre-restore-")
    assert ("version", "live") in rows(kept, "SELECT key, value FROM settings")
    assert oct(kept.stat().st_mode & 0o777) == "0o600"
    assert not Path(f"{db_path}-journal").exists()
    with hive_store.open(f"sqlite://{db_path}", plugins=plugins) as again:
        assert again.settings.get("version").value == "backup"
        assert hive_store.health.worst(again.health()) == "ok"


def test_restore_refuses_when_another_process_has_it_open(store: hive_store.Store,
                                                          db_path: Path, tmp_path: Path) -> None:
    backup = _backup_of(store, tmp_path / "b.db")
    store.close()
    code = ("import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1])\n"
            "c.execute('SELECT count(*) FROM sqlite_master').fetchone()\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(db_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with pytest.raises(MaintenanceError, match="open elsewhere"):
            restore(backup, db_path)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)
    assert restore(backup, db_path)["replaced_copy"]


def test_restore_verifies_its_source(store: hive_store.Store, db_path: Path,
                                     tmp_path: Path) -> None:
    backup = _backup_of(store, tmp_path / "b.db")
    store.close()
    before = db_path.read_bytes()
    damaged = tmp_path / "damaged.db"
    shutil.copy(backup, damaged)
    with damaged.open("r+b") as fh:
        fh.seek(5 * 4096)
        fh.write(os.urandom(4096))
    with pytest.raises(MaintenanceError, match=r"failed integrity_check|not a usable"):
        restore(damaged, db_path)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(MaintenanceError, match="not a Hive one"):
        restore(other, db_path)
    with pytest.raises(MaintenanceError, match="no backup file"):
        restore(tmp_path / "missing.db", db_path)
    with pytest.raises(MaintenanceError, match="same file"):
        restore(db_path, db_path)
    assert db_path.read_bytes() == before


def test_restore_to_a_new_or_unreadable_target(store: hive_store.Store, plugins: Plugins,
                                               tmp_path: Path) -> None:
    backup = _backup_of(store, tmp_path / "b.db")
    new = tmp_path / "new" / "hive.db"
    missing = invoke(plugins, "--db", str(new), "restore", str(backup))
    assert missing.exit_code == 1 and "does not exist" in missing.output
    assert not new.parent.exists()  # no folder made for a mistyped --db
    new.parent.mkdir()
    created = invoke(plugins, "--db", str(new), "restore", str(backup), "--json")
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["replaced_copy"] is None
    assert rows(new, "PRAGMA journal_mode") == [("wal",)]
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"garbage" * 1000)
    result = restore(backup, junk)
    assert Path(result["replaced_copy"]).read_bytes() == b"garbage" * 1000
    assert rows(junk, "SELECT count(*) FROM conversations") == [(0,)]


# -- the background thread ---------------------------------------------------------------------


def _maintenance_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("hive-store-maintenance")]


def test_background_maintenance(plugins: Plugins, db_path: Path) -> None:
    with hive_store.open(f"sqlite://{db_path}", plugins=plugins) as store:
        assert not _maintenance_threads()  # off by default
        fill_and_delete(store, 200)
        store.users.add(hive_store.entities.User())  # something in the WAL
        handle = start_maintenance(store, interval=0.02, wal_threshold=1,
                                   freelist_threshold=0.05, min_free_pages=1, step_pages=16)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("vacuum" in a for a in handle.actions):
            time.sleep(0.01)
        assert any("vacuum" in a for a in handle.actions), handle.last_error
        assert any("checkpoint" in a for a in handle.actions)
        assert Maintenance(store).facts()["freelist_count"] == 0
        assert handle.running and handle.last_error is None
        other = start_maintenance(store, interval=60)
        assert other.stop() and not other.running and other.stop()  # idempotent
    assert not handle.running and not _maintenance_threads()  # stopped and joined on close
    with pytest.raises(hive_store.StoreClosed):
        start_maintenance(store)


def test_maintenance_tick_and_validation(store: hive_store.Store) -> None:
    fill_and_delete(store, 60)
    handle = start_maintenance(store, interval=3600, freelist_threshold=0.0, min_free_pages=1)
    try:
        done = handle.tick()
        assert done["vacuum"]["freed_pages"] >= 60 and handle.runs == 1
        assert handle.tick() == {}  # nothing over the thresholds any more
    finally:
        handle.stop()
    for bad in ({"interval": 0}, {"freelist_threshold": 2}, {"step_pages": 0}):
        with pytest.raises(hive_store.ConfigurationError):
            start_maintenance(store, **bad)


def test_backup_progress_bar_only_on_a_terminal(store: hive_store.Store, plugins: Plugins,
                                                db_path: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import hive_store_health.cli as health_cli

    quiet = CliRunner().invoke(make_cli(plugins), ["--db", str(db_path), "backup",
                                                   str(tmp_path / "a.db")])
    assert quiet.exit_code == 0 and "backing up" not in quiet.output
    monkeypatch.setattr(health_cli, "_stderr_is_terminal", lambda: True)
    bar = CliRunner().invoke(make_cli(plugins), ["--db", str(db_path), "backup",
                                                 str(tmp_path / "b.db")])
    assert bar.exit_code == 0 and "backup written to" in bar.output
    assert rows(tmp_path / "b.db") == rows(db_path)


def test_file_system_errors_are_one_line(store: hive_store.Store, plugins: Plugins,
                                         db_path: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(MaintenanceError, match=r"a-file is not a folder"):
        Maintenance(store).backup(blocker / "x.db")
    result = invoke(plugins, "--db", str(db_path), "backup", str(blocker / "x.db"))
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith("Error: ") and "is not a folder" in result.output
