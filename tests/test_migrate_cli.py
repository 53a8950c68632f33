"""The migration lifecycle from the command line: list, dry run, up/down with --to, --force,
--verify."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

import hive_store
from hive_store.cli import make_cli
from hive_store.entities import Setting
from hive_store.migrations import MigrationSet
from hive_store.plugins import Plugins

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
    assert pending == [("hive_store", 1), ("hive_store", 2), ("hive_store", 3), ("notes", 1),
                       ("notes", 2)]
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
    assert "pending  notes 0002 tags" in listing
    run(NOTES[:2], "--db", db, "migrate")
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
    opened = run(changed, "--db", db, "status")
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
