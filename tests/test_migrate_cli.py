"""The migration lifecycle from the command line: list, dry run, up/down with --to, --force,
--verify."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

import hive_store
from hive_store.cli import make_cli
from hive_store.entities import Setting
from hive_store.migrations import MigrationSet
from hive_store.plugins import Plugins
from tests.conftest import legacy_fixture, legacy_manifest

NOTES = [
    ("0001_notes.sql", "-- @name: notes\nCREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"
                       "\n-- @down\nDROP TABLE notes;"),
    ("0002_tags.sql", "-- @name: tags\nCREATE TABLE tags (id INTEGER PRIMARY KEY);"
                      "\nINSERT INTO tags VALUES (1);\n-- @down\nDELETE FROM tags WHERE id = 1;"
                      "\nDROP TABLE tags;"),
    ("0003_no_down.sql", "-- @name: no_down\nCREATE TABLE nd (a INT);"),
]


class Notes:
    def __init__(self, files: list[tuple[str, str]]) -> None:
        self.files = files

    @hive_store.hookimpl
    def hive_store_register_migrations(self) -> list[MigrationSet]:
        return [MigrationSet.from_sql("notes", self.files, ("hive_store",))]


def cli(files: list[tuple[str, str]] = NOTES):
    p = Plugins()
    p.ensure_loaded()
    p.register(Notes(files), name="notes")
    return p, make_cli(p)


def run(files, *args: str):
    _, group = cli(files)
    result = CliRunner().invoke(group, list(args))
    assert "Traceback" not in result.output
    return result


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_list_and_dry_run_change_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "h.db")
    listing = json.loads(run(NOTES[:2], "--db", db, "--json", "migrate", "--list").output)
    pending = [(p["set"], p["version"]) for p in listing["pending"]
               if p["set"] in ("hive_store", "notes")]
    assert pending == [("hive_store", 1), ("hive_store", 2), ("hive_store", 3),
                       ("hive_store", 4), ("notes", 1), ("notes", 2)]
    dry = run(NOTES[:2], "--db", db, "migrate", "--dry-run")
    assert "CREATE TABLE notes" in dry.output and "pending" in dry.output
    assert "notes" not in tables(Path(db))


def test_up_to_a_version_then_down_with_force(tmp_path: Path) -> None:
    db = str(tmp_path / "h.db")
    hive_store.open(db).close()
    up = run(NOTES[:2], "--db", db, "--json", "migrate", "--set", "notes", "--to", "1")
    assert [(r["set"], r["version"]) for r in json.loads(up.output)["ran"]] == [("notes", 1)]
    assert "notes" in tables(Path(db)) and "tags" not in tables(Path(db))
    listing = run(NOTES[:2], "--db", db, "migrate", "--list").output
    assert "applied  notes 0001 notes" in listing and " ms" in listing
    assert "held     notes at 1" in listing and "held     notes 0002 tags" in listing
    hive_store.open(db, plugins=cli(NOTES[:2])[0]).close()  # the hold keeps notes at 1
    assert "tags" not in tables(Path(db))
    lifted = run(NOTES[:2], "--db", db, "migrate")
    assert "up  notes 0002 tags" in lifted.output and "lifted the hold on notes" in lifted.output
    # tags holds a row: going down would drop it
    refused = run(NOTES[:2], "--db", db, "migrate", "--set", "notes", "--to", "1")
    assert refused.exit_code == 1
    assert "would drop data: rows of tags (1 rows)" in refused.output
    assert "nothing was changed" in refused.output
    assert "tags" in tables(Path(db))
    down = run(NOTES[:2], "--db", db, "migrate", "--set", "notes", "--to", "0", "--force")
    assert down.exit_code == 0, down.output
    assert "down  notes 0002 tags" in down.output and "down  notes 0001 notes" in down.output
    assert not {"notes", "tags"} & tables(Path(db))
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM hive_store_migrations WHERE namespace='notes'"
                            ).fetchone()[0] == 0


def test_down_without_a_down_step_is_refused(tmp_path: Path) -> None:
    db = str(tmp_path / "h.db")
    run(NOTES, "--db", db, "migrate")
    result = run(NOTES, "--db", db, "migrate", "--set", "notes", "--to", "1", "--force")
    assert result.exit_code == 1 and "declares no down step" in result.output
    assert "nd" in tables(Path(db)) and "tags" in tables(Path(db))


def test_core_down_is_refused_while_a_dependent_set_is_applied(tmp_path: Path) -> None:
    db = str(tmp_path / "h.db")
    run(NOTES[:1], "--db", db, "migrate")
    result = run(NOTES[:1], "--db", db, "migrate", "--to", "1", "--force")
    assert result.exit_code == 1 and "depend on it" in result.output
    assert "notes" in result.output and "--cascade" in result.output


def test_core_down_refuses_to_drop_user_data(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # only the core set: the built-in plugins' sets depend on it and would block going down
    monkeypatch.setenv("HIVE_STORE_DISABLE_PLUGINS", "memory,health,d1")
    plugins = Plugins()
    db = str(tmp_path / "h.db")
    with hive_store.open(db, plugins=plugins) as store:
        store.settings.add(Setting(key="theme", value="dark"))
    result = CliRunner().invoke(make_cli(plugins), ["--db", db, "migrate", "--to", "0"])
    assert result.exit_code == 1
    assert "table settings (1 rows)" in result.output
    result = CliRunner().invoke(make_cli(plugins), ["--db", db, "migrate", "--to", "1"])
    assert result.exit_code == 1  # even seed rows count as data
    assert "rows of openrouter_models (13 rows)" in result.output
    result = CliRunner().invoke(make_cli(plugins),
                                ["--db", db, "migrate", "--to", "1", "--force"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM openrouter_models").fetchone()[0] == 0
        assert conn.execute("SELECT value FROM settings").fetchall() == [("dark",)]


def test_verify_reports_drift_unknown_and_pending(tmp_path: Path) -> None:
    db = str(tmp_path / "h.db")
    run(NOTES[:2], "--db", db, "migrate")
    ok = run(NOTES[:2], "--db", db, "migrate", "--verify")
    assert ok.exit_code == 0 and "match their files" in ok.output
    changed = [NOTES[0], (NOTES[1][0], NOTES[1][1] + "\n-- edited")]
    drift = run(changed, "--db", db, "--json", "migrate", "--verify")
    assert drift.exit_code == 1
    problems = {(p["namespace"], p["version"], p["problem"])
                for p in json.loads(drift.output)["problems"]}
    assert problems == {("notes", 2, "changed")}
    assert run(changed, "--db", db, "status").exit_code == 0  # read-only: reports, migrates nothing
    opened = run(changed, "--db", db, "init")
    assert opened.exit_code == 1 and "notes 0002 (tags) has changed" in opened.output
    assert run(changed, "--db", db, "migrate", "--allow-drift").exit_code == 0
    fewer = run(NOTES[:1], "--db", db, "--json", "migrate", "--verify")
    assert ("notes", 2, "unknown") in {(p["namespace"], p["version"], p["problem"])
                                       for p in json.loads(fewer.output)["problems"]}
    more = run(NOTES, "--db", db, "migrate", "--verify")
    assert "notes 0003 no_down: pending" in more.output and more.exit_code == 0


@pytest.mark.parametrize("args", [["--to", "x"], ["--set"]])
def test_bad_arguments_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    result = run(NOTES, "--db", str(tmp_path / "h.db"), "migrate", *args)
    assert result.exit_code == 2


# -- issue 12: unknown targets, dependent sets, holds, dry runs, JSON -------------------------


@pytest.mark.parametrize("args, message", [
    (["--to", "99"], "hive_store has no version 99 (its versions: 1, 2, 3"),
    (["--set", "nope", "--to", "1"], "unknown migration set 'nope'"),
    (["--set", "nope"], "unknown migration set 'nope'"),
    (["--set", "notes", "--to", "7", "--dry-run"], "notes has no version 7"),
    (["--set", "nope", "--list"], "unknown migration set 'nope'"),
])
def test_unknown_versions_and_sets_are_refused(tmp_path: Path, args: list[str],
                                               message: str) -> None:
    db = str(tmp_path / "h.db")
    run(NOTES[:2], "--db", db, "migrate")
    before = digest(Path(db))
    result = run(NOTES[:2], "--db", db, "migrate", *args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert digest(Path(db)) == before


def test_cascade_plans_takes_down_and_holds_the_dependent_sets(tmp_path: Path) -> None:
    db = str(tmp_path / "h.db")
    plugins, _ = cli(NOTES[:2])
    with hive_store.open(db, plugins=plugins) as store:
        store.settings.add(Setting(key="theme", value="dark"))
    refused = run(NOTES[:2], "--db", db, "migrate", "--to", "0")
    assert refused.exit_code == 1 and "--cascade" in refused.output
    dependents = [d for d in ("hive_store_memory", "hive_store_d1", "hive_store_health",
                              "notes") if d in refused.output]
    assert "notes" in dependents
    before = digest(Path(db))
    plan = json.loads(run(NOTES[:2], "--db", db, "--json", "migrate", "--to", "0",
                          "--cascade", "--dry-run").output)["pending"]
    assert digest(Path(db)) == before
    order = [(p["set"], p["version"], p["direction"]) for p in plan]
    assert order[-3:] == [("hive_store", 3, "down"), ("hive_store", 2, "down"),
                          ("hive_store", 1, "down")]
    assert order.index(("notes", 2, "down")) < order.index(("notes", 1, "down"))
    assert {s for s, _, _ in order[:-3]} >= {"notes"}
    refused = run(NOTES[:2], "--db", db, "migrate", "--to", "0", "--cascade")
    assert refused.exit_code == 1 and "table settings (1 rows)" in refused.output
    done = run(NOTES[:2], "--db", db, "--json", "migrate", "--to", "0", "--cascade", "--force")
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert [(r["set"], r["version"]) for r in data["ran"]] == [(s, v) for s, v, _ in order]
    assert data["held"]["hive_store"] == 0 and data["held"]["notes"] == 0
    # the next plain open leaves every set down
    with hive_store.open(db, plugins=cli(NOTES[:2])[0]) as store:
        migrator = store.plugins.migrator(store.backend)
        assert migrator.applied() == [] and store.schema_version() == 0
    assert "settings" not in tables(Path(db)) and "notes" not in tables(Path(db))
    status = run(NOTES[:2], "--db", db, "migrate", "--list")
    assert "held     hive_store at 0" in status.output
    up = run(NOTES[:2], "--db", db, "--json", "migrate")
    assert up.exit_code == 0 and json.loads(up.output)["held"] == {}
    assert {"settings", "notes", "tags"} <= tables(Path(db))


def test_migrate_set_lifts_only_that_set_and_what_it_depends_on(tmp_path: Path) -> None:
    db = str(tmp_path / "h.db")
    run(NOTES[:2], "--db", db, "migrate")
    run(NOTES[:2], "--db", db, "migrate", "--set", "notes", "--to", "0", "--force")
    run(NOTES[:2], "--db", db, "migrate", "--set", "hive_store_health", "--to", "0")
    lifted = json.loads(run(NOTES[:2], "--db", db, "--json", "migrate", "--set", "notes"
                            ).output)
    assert lifted["lifted"] == ["notes"] and lifted["held"] == {"hive_store_health": 0}
    assert [(r["set"], r["version"]) for r in lifted["ran"]] == [("notes", 1), ("notes", 2)]


def test_dry_run_with_nothing_pending_says_so(tmp_path: Path) -> None:
    db = str(tmp_path / "h.db")
    run(NOTES[:2], "--db", db, "migrate")
    dry = run(NOTES[:2], "--db", db, "migrate", "--dry-run")
    assert dry.exit_code == 0 and dry.output.strip() == "nothing would run"
    data = json.loads(run(NOTES[:2], "--db", db, "--json", "migrate", "--dry-run").output)
    assert data["nothing_would_run"] is True and data["pending"] == []
    listing = run(NOTES[:2], "--db", db, "migrate", "--list").output
    assert listing.strip().endswith("nothing pending")


def test_migrate_on_a_file_that_does_not_exist_yet_reports_without_creating_it(
        tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    for mode in ("--list", "--dry-run", "--verify"):
        result = run(NOTES[:2], "--db", str(db), "migrate", mode)
        assert result.exit_code == 0, result.output
        assert not db.exists()
    listing = run(NOTES[:2], "--db", str(db), "migrate", "--list").output
    assert "no database at" in listing and "pending  hive_store 0001 hive_schema" in listing


@pytest.mark.parametrize("args", [
    ["migrate"], ["migrate", "--list"], ["migrate", "--dry-run"], ["migrate", "--verify"],
    ["migrate", "--set", "notes", "--to", "1", "--force"],
    ["migrate", "--set", "notes", "--to", "2"],
    ["migrate", "--set", "notes", "--to", "0", "--force", "--dry-run"],
    ["migrate", "--to", "0", "--cascade", "--dry-run"], ["migrate", "--set", "notes"],
    ["schema", "diff"],
])
def test_every_migrate_mode_prints_valid_json(tmp_path: Path, args: list[str]) -> None:
    db = str(tmp_path / "h.db")
    run(NOTES[:2], "--db", db, "migrate")
    result = run(NOTES[:2], "--db", db, "--json", *args)
    assert result.exit_code == 0, result.output
    assert isinstance(json.loads(result.output), dict)


# -- read-only commands never write -------------------------------------------------------------

READ_ONLY = [["migrate", "--list"], ["migrate", "--dry-run"], ["migrate", "--verify"],
             ["schema", "diff"], ["--json", "migrate", "--list"],
             ["--json", "migrate", "--dry-run"], ["--json", "migrate", "--verify"],
             ["--json", "schema", "diff"],
             ["migrate", "--to", "0", "--cascade", "--dry-run"]]
LEGACY = ["hive-ai-v5.db", "hive-ai-v9.db", "hive-ai-v10.db", "hive-ai-v13.db",
          "hive-ai-electron.db"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


EMPTY = hashlib.sha256(b"").hexdigest()


def file_state(folder: Path) -> dict[str, str]:
    """Every file in the folder by hash: the database and its -wal (-shm excepted: SQLite's
    shared-memory index, not data; and an empty -wal, which holds nothing, counts as none:
    SQLite leaves one when it opens a WAL-mode file read-only that has no -wal)."""
    return {p.name: digest(p) for p in sorted(folder.iterdir())
            if not p.name.endswith("-shm") and not (p.name.endswith("-wal")
                                                    and digest(p) == EMPTY)}


@pytest.mark.parametrize("name", LEGACY)
def test_read_only_commands_leave_a_legacy_file_byte_identical(tmp_path: Path,
                                                               name: str) -> None:
    path = tmp_path / "hive-ai.db"
    shutil.copy(legacy_fixture(name), path)
    before = file_state(tmp_path)
    for args in READ_ONLY:
        result = CliRunner().invoke(make_cli(), ["--db", str(path), *args])
        assert result.exit_code in (0, 1), result.output  # schema diff: 1, the file differs
        assert file_state(tmp_path) == before, args
    listing = CliRunner().invoke(make_cli(), ["--db", str(path), "migrate", "--list"]).output
    version = legacy_manifest(name)["schema_migrations"]["rows"]
    assert (f"legacy Hive database (Hive schema version {version}): it will be adopted first"
            in listing)


def test_read_only_commands_leave_a_current_file_and_its_wal_byte_identical(
        tmp_path: Path) -> None:
    path = tmp_path / "hive-ai.db"
    writer = hive_store.open(str(path))  # kept open: its last commit stays in the -wal
    try:
        writer.settings.add(Setting(key="k", value="v"))
        assert (tmp_path / "hive-ai.db-wal").stat().st_size > 0
        before = file_state(tmp_path)
        for args in READ_ONLY:
            result = CliRunner().invoke(make_cli(), ["--db", str(path), *args])
            assert result.exit_code == 0, (args, result.output)
            assert file_state(tmp_path) == before, args
    finally:
        writer.close()
    closed = file_state(tmp_path)
    for args in READ_ONLY:
        CliRunner().invoke(make_cli(), ["--db", str(path), *args])
        assert file_state(tmp_path) == closed, args
