"""The health plugin's checks, each against a database made to fail it, and `hive-store health`
(exit codes 0 ok / 1 warn / 2 fail, the JSON shape, one-line errors)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hive_store_health
import pytest
from click.testing import CliRunner, Result
from hive_store_health import HealthOptions, Maintenance
from hive_store_health.checks import check_pool

import hive_store
from hive_store.cli import make_cli
from hive_store.health import HealthResult
from hive_store.migrations import MigrationSet
from hive_store.plugins import Plugins
from tests.conftest import isolated_plugins

EXPECTED_CHECKS = ["integrity", "foreign_keys", "pragmas", "wal", "permissions", "freelist",
                   "disk_space", "pool", "migrations", "plugins"]
NOTES_V1 = "-- @name: notes\nCREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);\n"


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def clean_env() -> None:
    """Marks tests that use :func:`clean_plugins` (kept for readability)."""


clean_plugins = isolated_plugins


class SetPlugin:
    def __init__(self, *sets: MigrationSet) -> None:
        self.sets = sets

    @hive_store.hookimpl
    def hive_store_register_migrations(self) -> list[MigrationSet]:
        return list(self.sets)


def notes(*files: tuple[str, str]) -> SetPlugin:
    return SetPlugin(MigrationSet.from_sql("notes", files, ("hive_store",)))


def by_name(results: Any) -> dict[str, HealthResult]:
    checks = results.checks if hasattr(results, "checks") else results
    return {r.name: r for r in checks}


def invoke(plugins: Plugins, *args: str) -> Result:
    result = CliRunner().invoke(make_cli(plugins), list(args))
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def file_store(clean_env: None, db_path: Path) -> Iterator[hive_store.Store]:
    with hive_store.open(f"sqlite://{db_path}", plugins=clean_plugins()) as s:
        yield s


def corrupt_page(path: Path, page: int) -> None:
    """Write garbage over one page of the file (1-based page number, 4096-byte pages)."""
    with path.open("r+b") as fh:
        fh.seek((page - 1) * 4096)
        fh.write(b"\xde\xad\xbe\xef" * 1024)


# -- registration and the healthy case ------------------------------------------------------


def test_checks_registered_once_in_order(file_store: hive_store.Store) -> None:
    names = [r.name for r in file_store.health()]
    assert names == EXPECTED_CHECKS  # integrity/pragmas moved here, not also run by sqlite
    assert all(r.ok for r in file_store.health()), [
        (r.name, r.message) for r in file_store.health() if not r.ok]
    report = hive_store_health.run(file_store, full=True)
    assert report.status == "ok" and by_name(report)["integrity"].details == {
        "pragma": "integrity_check"}
    assert by_name(file_store.health())["integrity"].details == {"pragma": "quick_check"}


def test_memory_store_skips_the_file_checks(clean_env: None) -> None:
    with hive_store.open(":memory:", plugins=clean_plugins()) as store:
        results = by_name(store.health())
    assert set(results) == set(EXPECTED_CHECKS) - {"wal", "permissions", "freelist",
                                                   "disk_space"}
    assert all(r.ok for r in results.values())
    assert results["pragmas"].details["journal_mode"] == "memory"


def test_commands_come_through_the_register_commands_hook(clean_env: None) -> None:
    plugins = clean_plugins()
    info = {p.name: p for p in plugins.info()}
    assert "hive_store_register_commands" in info["health"].hooks
    cli = make_cli(plugins)
    assert {"health", "stats", "vacuum", "optimize", "checkpoint", "backup",
            "restore"} <= set(cli.commands)


# -- each check against a database made to fail it ------------------------------------------------


@pytest.mark.parametrize("page", [3, 6])
def test_corrupt_page_fails_integrity_without_crashing(clean_env: None, db_path: Path,
                                                       tmp_path: Path, page: int) -> None:
    broken = tmp_path / "broken.db"
    shutil.copy(db_path, broken)
    corrupt_page(broken, page)
    plugins = clean_plugins()
    with hive_store.open(f"sqlite://{broken}", plugins=plugins, migrate=False) as store:
        quick = by_name(hive_store_health.run(store))
        full = hive_store_health.run(store, full=True)
    assert quick["integrity"].status == "fail"
    assert quick["integrity"].details["pragma"] == "quick_check"
    assert quick["integrity"].details["problems"]
    assert by_name(full)["integrity"].status == "fail" and full.status == "fail"
    assert "integrity_check" in by_name(full)["integrity"].message
    assert [r.name for r in full.checks] == EXPECTED_CHECKS  # every check still reported
    result = invoke(plugins, "--db", str(broken), "health")
    assert result.exit_code == 2 and "integrity" in result.output and "fail" in result.output


def test_garbage_file_is_reported_as_a_failed_open(clean_env: None, tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 500)
    result = invoke(clean_plugins(), "--db", str(junk), "health", "--json")
    assert result.exit_code == 2
    data = json.loads(result.output)
    assert data["status"] == "fail" and data["checks"][0]["name"] == "open"
    missing = invoke(clean_plugins(), "--db", str(tmp_path / "nope.db"), "--json", "health")
    assert missing.exit_code == 2 and "no database at" in missing.output
    assert not (tmp_path / "nope.db").exists()  # health never creates a database


def test_foreign_key_violation(file_store: hive_store.Store, db_path: Path) -> None:
    raw = sqlite3.connect(db_path, isolation_level=None)
    raw.execute("PRAGMA foreign_keys = OFF")
    raw.execute("INSERT INTO messages (id, conversation_id, role, content) "
                "VALUES ('m-orphan', 'no-such-conversation', 'user', 'hi')")
    raw.close()
    result = by_name(file_store.health())["foreign_keys"]
    assert result.status == "fail"
    assert result.details["by_table"] == {"messages": 1}
    assert result.details["examples"][0]["parent"] == "conversations"


def test_pragmas_not_in_force_on_a_pooled_connection(clean_env: None, db_path: Path) -> None:
    class Unsafe:
        @hive_store.hookimpl
        def hive_store_prepare_connection(self, connection: sqlite3.Connection,
                                          backend: Any) -> None:
            connection.execute("PRAGMA synchronous = OFF")

    with hive_store.open(f"sqlite://{db_path}", plugins=clean_plugins(Unsafe())) as store:
        result = by_name(store.health())["pragmas"]
    assert result.status == "fail"
    assert result.details["wrong"] == {"synchronous": {"expected": 1, "actual": 0}}


def test_every_idle_pooled_connection_is_checked(file_store: hive_store.Store) -> None:
    backend: Any = file_store.backend
    conns = [backend.pool.checkout() for _ in range(3)]
    conns[1].execute("PRAGMA busy_timeout = 5")  # one connection drifted
    for conn in conns:
        backend.pool.checkin(conn)
    result = by_name(file_store.health())["pragmas"]
    assert result.status == "fail" and result.details["connections_checked"] >= 3
    assert result.details["wrong"]["busy_timeout"]["actual"] == 5
    assert by_name(file_store.health())["pool"].details["timeouts"] == 0


def test_big_wal_held_by_an_open_reader(file_store: hive_store.Store, db_path: Path) -> None:
    from hive_store.entities import Conversation, Message

    reader = sqlite3.connect(db_path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM conversations").fetchone()  # pins a snapshot
    conv = file_store.conversations.add(Conversation())
    for _ in range(4):
        file_store.messages.add_many(
            Message(conversation_id=conv.id, role="user", content="x" * 2000)
            for _ in range(200))
    opts: dict[str, Any] = {"wal_warn_bytes": 256 * 1024, "wal_starvation_frames": 10}
    held = by_name(hive_store_health.run(file_store, **opts))["wal"]
    assert held.status == "warn"
    assert held.details["starved"] and held.details["remaining_frames"] >= 10
    assert "checkpoint starvation" in held.message and "WAL is" in held.message
    failing = by_name(hive_store_health.run(file_store, wal_fail_bytes=256 * 1024))["wal"]
    assert failing.status == "fail"

    reader.execute("COMMIT")
    reader.close()
    released = by_name(hive_store_health.run(file_store, **opts))["wal"]
    assert not released.details["starved"] and released.details["remaining_frames"] == 0
    assert released.status == "warn"  # the file stays big until truncated
    assert Maintenance(file_store).checkpoint(truncate=True)["wal_bytes_after"] == 0
    assert by_name(hive_store_health.run(file_store, **opts))["wal"].ok


def test_full_pool(clean_env: None, db_path: Path) -> None:
    with hive_store.open(f"sqlite://{db_path}", plugins=clean_plugins(), max_size=1,
                         connection_timeout=0.2) as store:
        pool: Any = store.backend.pool  # type: ignore[attr-defined]
        held = pool.checkout()
        try:
            results = by_name(store.health())
        finally:
            pool.checkin(held)
        after = by_name(store.health())["pool"]
    assert results["pool"].status == "fail"  # saturated while checkouts time out
    assert results["pool"].details["in_use"] == 1 and results["pool"].details["timeouts"] >= 1
    assert "1 of 1 connections in use" in results["pool"].message
    # the checks that needed a connection failed with the timeout, none crashed
    assert results["integrity"].status == "fail" and "PoolTimeout" in results["integrity"].message
    assert after.status == "warn" and "timed out" in after.message  # free again, but it happened


def test_saturation_alone_warns(clean_env: None, db_path: Path) -> None:
    with hive_store.open(f"sqlite://{db_path}", plugins=clean_plugins(), max_size=4) as store:
        backend: Any = store.backend
        held = [backend.pool.checkout() for _ in range(4)]
        try:
            result = check_pool(store)
        finally:
            for conn in held:
                backend.pool.checkin(conn)
    assert result is not None and result.status == "warn"
    assert result.details["saturation"] == 1.0


def test_pending_migration(clean_env: None, fresh_db: Path) -> None:
    later = clean_plugins(notes(("0001_notes.sql", NOTES_V1)))
    with hive_store.open(f"sqlite://{fresh_db}", plugins=later, migrate=False) as store:
        result = by_name(store.health())["migrations"]
    assert result.status == "warn"
    assert result.details["pending"] == [{"namespace": "notes", "version": 1, "name": "notes"}]
    assert "hive-store migrate" in result.message
    cli = invoke(later, "--db", str(fresh_db), "health")
    assert cli.exit_code == 1 and "pending" in cli.output
    # health never migrates
    with sqlite3.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM hive_store_migrations "
                            "WHERE namespace = 'notes'").fetchone()[0] == 0


def test_drift_and_unknown_migrations(clean_env: None, fresh_db: Path) -> None:
    v2 = ("0002_more.sql", "-- @name: more\nALTER TABLE notes ADD COLUMN extra TEXT;\n")
    hive_store.open(f"sqlite://{fresh_db}",
                    plugins=clean_plugins(notes(("0001_notes.sql", NOTES_V1), v2))).close()
    edited = NOTES_V1 + "-- an edit after the fact\n"
    drifted = clean_plugins(notes(("0001_notes.sql", edited), v2))
    with hive_store.open(f"sqlite://{fresh_db}", plugins=drifted, migrate=False) as store:
        drift = by_name(store.health())["migrations"]
    assert drift.status == "fail" and "drift" in drift.message
    assert [(d["namespace"], d["version"]) for d in drift.details["drift"]] == [("notes", 1)]
    assert invoke(drifted, "--db", str(fresh_db), "health").exit_code == 2

    older_code = clean_plugins(notes(("0001_notes.sql", NOTES_V1)))
    with hive_store.open(f"sqlite://{fresh_db}", plugins=older_code, migrate=False) as store:
        unknown = by_name(store.health())["migrations"]
    assert unknown.status == "fail" and "does not know" in unknown.message
    assert unknown.details["unknown"] == [{"namespace": "notes", "version": 2, "name": "more"}]


def test_failed_plugin(clean_env: None, tmp_path: Path) -> None:
    class Misspelled:
        @hive_store.hookimpl
        def hive_store_register_health_check(self) -> list[Any]:  # missing "s"
            return []

    plugins = clean_plugins()
    assert plugins.register(Misspelled(), name="misspelled-test") is None
    with hive_store.open(f"sqlite://{tmp_path / 'p.db'}", plugins=plugins) as store:
        result = by_name(store.health())["plugins"]
        strict = by_name(hive_store_health.run(store, plugin_failure_status="fail"))["plugins"]
    assert result.status == "warn" and "misspelled-test" in result.message
    assert result.details["failures"][0]["stage"] == "validate"
    assert strict.status == "fail"


def test_free_pages_and_disk_space_thresholds(file_store: hive_store.Store) -> None:
    from hive_store.entities import Conversation, Message

    conv = file_store.conversations.add(Conversation())
    file_store.messages.add_many(
        Message(conversation_id=conv.id, role="user", content="y" * 3000) for _ in range(300))
    with file_store.transaction():
        for m in file_store.messages.find(conversation_id=conv.id):
            file_store.messages.delete(m)
    Maintenance(file_store).checkpoint()
    free = by_name(hive_store_health.run(file_store, freelist_min_bytes=0,
                                         freelist_warn_ratio=0.2))["freelist"]
    assert free.status == "warn" and "hive-store vacuum" in free.message
    assert free.details["auto_vacuum"] == "incremental" and free.details["freelist_count"] > 0
    huge = 1 << 62
    assert by_name(hive_store_health.run(file_store, disk_warn_bytes=huge))[
        "disk_space"].status == "warn"
    assert by_name(hive_store_health.run(file_store, disk_fail_bytes=huge))[
        "disk_space"].status == "fail"


def test_freelist_without_auto_vacuum_suggests_a_full_vacuum(clean_env: None,
                                                             db_path: Path) -> None:
    raw = sqlite3.connect(db_path, isolation_level=None)
    raw.execute("PRAGMA auto_vacuum = NONE")
    raw.execute("VACUUM")
    raw.close()
    with hive_store.open(f"sqlite://{db_path}", plugins=clean_plugins()) as store:
        result = hive_store_health.run(store, freelist_warn_ratio=0.0, freelist_min_bytes=0)
    free = by_name(result)["freelist"]
    assert free.status == "warn" and "vacuum --full" in free.message


def test_a_raising_check_fails_but_never_crashes(clean_env: None, fresh_db: Path) -> None:
    class Flaky:
        @hive_store.hookimpl
        def hive_store_register_health_checks(self) -> list[Any]:
            def check_sensor(store: Any) -> HealthResult:
                raise RuntimeError("sensor offline")

            return [check_sensor]

    plugins = clean_plugins(Flaky())
    result = invoke(plugins, "--db", str(fresh_db), "health", "--json")
    assert result.exit_code == 2
    data = json.loads(result.output)
    sensor = next(c for c in data["checks"] if c["name"] == "sensor")
    assert sensor["status"] == "fail" and "sensor offline" in sensor["message"]


# -- options --------------------------------------------------------------------------------


def test_options_configure_parse_and_validate(file_store: hive_store.Store) -> None:
    hive_store_health.configure(file_store, wal_warn_bytes=0)
    assert by_name(file_store.health())["wal"].status == "warn"  # store.health() sees it
    hive_store_health.configure(file_store, HealthOptions())
    assert by_name(file_store.health())["wal"].ok
    parsed = HealthOptions.parse(["wal_warn_bytes=10", "freelist-warn-ratio=0.5",
                                  "wal_probe_checkpoint=no", "plugin_failure_status=fail"])
    assert (parsed.wal_warn_bytes, parsed.freelist_warn_ratio, parsed.wal_probe_checkpoint,
            parsed.plugin_failure_status) == (10, 0.5, False, "fail")
    for bad in (["nope=1"], ["wal_warn_bytes"], ["wal_warn_bytes=ten"],
                ["freelist_warn_ratio=2"], ["plugin_failure_status=bad"]):
        with pytest.raises(hive_store.HiveStoreError):
            HealthOptions.parse(bad)
    with pytest.raises(hive_store.HiveStoreError, match="unknown health option"):
        hive_store_health.run(file_store, no_such_threshold=1)


# -- the command ----------------------------------------------------------------------------


def test_health_command_exit_codes_and_json(clean_env: None, fresh_db: Path) -> None:
    plugins = clean_plugins()
    ok = invoke(plugins, "--db", str(fresh_db), "health")
    assert ok.exit_code == 0, ok.output
    assert "health: ok" in ok.output and "integrity" in ok.output and "disk_space" in ok.output

    data = json.loads(invoke(plugins, "--db", str(fresh_db), "health", "--json").output)
    assert set(data) == {"status", "checks"} and data["status"] == "ok"
    assert [c["name"] for c in data["checks"]] == EXPECTED_CHECKS
    for check in data["checks"]:
        assert set(check) == {"name", "status", "message", "details", "duration_ms"}
        assert check["status"] in ("ok", "warn", "fail") and isinstance(check["details"], dict)
        assert isinstance(check["duration_ms"], float) and check["duration_ms"] >= 0
    grouped = json.loads(invoke(plugins, "--db", str(fresh_db), "--json", "health").output)
    assert [c["name"] for c in grouped["checks"]] == EXPECTED_CHECKS

    warn = invoke(plugins, "--db", str(fresh_db), "health", "-o", "wal_warn_bytes=0")
    assert warn.exit_code == 1 and "health: warn" in warn.output
    fail = invoke(plugins, "--db", str(fresh_db), "health", "--full", "-o", "wal_fail_bytes=0")
    assert fail.exit_code == 2 and "health: fail" in fail.output

    bad = invoke(plugins, "--db", str(fresh_db), "health", "-o", "bogus=1")
    assert bad.exit_code == 2 and "bad health option" in bad.output
    assert bad.output.strip().splitlines()[-1].startswith("Error:")


def test_no_secrets_in_health_output(clean_env: None, fresh_db: Path) -> None:
    with hive_store.open(f"sqlite://{fresh_db}", plugins=clean_plugins()) as store:
        from hive_store.entities import Configuration

        store.configurations.add(Configuration(key="openrouter_api_key",
                                               value="sk-or-secret-123"))
    out = invoke(clean_plugins(), "--db", str(fresh_db), "health", "--json", "--full").output
    assert "sk-or-secret-123" not in out
