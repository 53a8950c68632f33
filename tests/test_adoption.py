"""Adopting databases written by the old Hive apps: every legacy row and value kept, the
schema made canonical with as little change as possible, other programs' additions kept in
place, the old apps' own runner finding nothing to apply afterwards, violations reported, a
backup written first."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from hive_store_migrate import core_migrations
from hive_store_migrate.schema import canonical, compare, describe, diff
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hive_store
from hive_store.cli import make_cli
from hive_store.entities import ConsensusProfile, Conversation, Message, User
from tests.conftest import legacy_fixture, legacy_manifest, table_digest

FIXTURES = ["hive-ai-v5.db", "hive-ai-v9.db", "hive-ai-v10.db", "hive-ai-v13.db",
            "hive-ai-electron.db"]
CANONICAL = canonical(core_migrations().migrations[0].statements)
CORE_LATEST = core_migrations().latest
ELECTRON_COLUMNS = {"messages": ["tokens_used", "cost", "consensus_path", "consensus_rounds",
                                 "parent_message_id"],
                    "consensus_profiles": ["max_consensus_rounds"]}
ELECTRON_TABLES = ["d1_usage_queue", "sessions", "stage_outputs"]
# tables the core's later migrations add rows to (0002 the catalog, 0003 Hive's record)
SEEDED = {"openrouter_providers", "openrouter_models", "consensus_profiles", "consensus_settings",
          "schema_migrations"}


def copy_fixture(name: str, tmp_path: Path) -> Path:
    path = tmp_path / "hive-ai.db"
    shutil.copy(legacy_fixture(name), path)
    return path


def adopt(path: Path) -> dict:
    """Open (and so adopt) the file; the stored adoption report."""
    hive_store.open(f"sqlite://{path}").close()
    with sqlite3.connect(path) as conn:
        return json.loads(conn.execute("SELECT report FROM hive_store_adoption").fetchone()[0])


# -- Hive's own runner, re-implemented from its rule (hive-schema.md, "Migration system") ------

# The migration files a Hive install ships: 001-013, plus 010_rollback.sql, which the runner
# takes for version 10 (the number before the first "_").
HIVE_FILES = [f"{v:03d}_m.sql" for v in range(1, 14)] + ["010_rollback.sql"]


def hive_runner_pending(conn: sqlite3.Connection) -> list[int]:
    """The versions Hive's runner would run on this file: every file whose number is above
    the highest version in schema_migrations, read once before the loop."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    current = 0
    if "schema_migrations" in tables:
        current = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations"
                               ).fetchone()[0]
    return sorted(int(f.split("_")[0]) for f in HIVE_FILES if int(f.split("_")[0]) > current)


def run_hive_runner(path: Path) -> list[int]:
    """Start 'the old app' on the file: run what the rule picks, each file split on ';' with
    foreign keys on, as the runner does. The files here only mark that they ran and drop a
    table (what 006 did to consensus_profiles); each stops the run at its first error."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    ran = []
    try:
        for version in hive_runner_pending(conn):
            body = ("CREATE TABLE IF NOT EXISTS hive_runner_ran (version INTEGER);"
                    f"INSERT INTO hive_runner_ran VALUES ({version});"
                    "DROP TABLE IF EXISTS consensus_profiles")
            conn.execute("BEGIN")
            for piece in body.split(";"):
                conn.execute(piece)
            conn.execute("INSERT INTO schema_migrations (version, name, applied_at) "
                         "VALUES (?, 'm', '2025-01-01T00:00:00+00:00')", (version,))
            conn.execute("COMMIT")
            ran.append(version)
    except sqlite3.IntegrityError:
        conn.execute("ROLLBACK")  # 010_rollback: "UNIQUE constraint failed" stops the run
    finally:
        conn.close()
    return ran


EXPECTED_BEFORE = {"hive-ai-v5.db": [6, 7, 8, 9, 10, 10, 11, 12, 13],
                   "hive-ai-v9.db": [10, 10, 11, 12, 13], "hive-ai-v10.db": [11, 12, 13],
                   "hive-ai-v13.db": [], "hive-ai-electron.db": [10, 10, 11, 12, 13]}


@pytest.mark.parametrize("name", FIXTURES)
def test_the_old_hive_runner_finds_nothing_to_apply_after_adoption(tmp_path: Path,
                                                                   name: str) -> None:
    path = copy_fixture(name, tmp_path)
    with sqlite3.connect(path) as conn:  # the rule sees the legacy file as the issue says
        assert hive_runner_pending(conn) == EXPECTED_BEFORE[name]
    report = adopt(path)
    with sqlite3.connect(path) as conn:
        assert hive_runner_pending(conn) == []
        rows = dict(conn.execute("SELECT version, name FROM schema_migrations").fetchall())
        before = {t: table_digest(conn, t) for (t,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
    assert sorted(rows) == list(range(1, 14))
    assert report["hive_versions_recorded"] == sorted(set(EXPECTED_BEFORE[name]))
    assert run_hive_runner(path) == []  # "the old app starts and loses nothing"
    with sqlite3.connect(path) as conn:
        after = {t: table_digest(conn, t) for (t,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
    assert after == before


def test_the_runner_reimplementation_does_damage_on_a_file_not_adopted(tmp_path: Path) -> None:
    """The check above can fail: on the legacy v9 file the same 'old app' runs 010 (and stops
    at 010_rollback's duplicate version), dropping consensus_profiles."""
    path = copy_fixture("hive-ai-v9.db", tmp_path)
    assert run_hive_runner(path) == [10]
    with sqlite3.connect(path) as conn:
        assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name='consensus_profiles'"
                                ).fetchone()


def test_a_fresh_database_is_safe_for_the_old_apps_too(tmp_path: Path) -> None:
    path = tmp_path / "hive-ai.db"
    hive_store.open(f"sqlite://{path}").close()
    with sqlite3.connect(path) as conn:
        assert hive_runner_pending(conn) == []


@pytest.mark.parametrize("name", FIXTURES)
def test_open_adopts_a_legacy_fixture_without_losing_anything(tmp_path: Path, name: str) -> None:
    path = copy_fixture(name, tmp_path)
    with hive_store.open(f"sqlite://{path}") as store:
        assert store.schema_version() == CORE_LATEST
        assert store.plugins.migrator(store.backend).legacy_state() is None
        # the store works on the adopted data, through the new API
        conv = store.conversations.find(limit=1)[0]
        store.messages.add(Message(conversation_id=conv.id, role="user", content="new"))
        run = store.record_consensus("after adoption?", [
            hive_store.StageOutput(stage=s, model="m", answer=s) for s in
            ("generator", "refiner", "validator", "curator")])
        assert store.conversations.get(run.conversation_id)
    with sqlite3.connect(path) as conn:
        assert diff(describe(conn), CANONICAL) == []
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        fk = conn.execute("PRAGMA foreign_key_check").fetchall()
        (report_json,) = conn.execute("SELECT report FROM hive_store_adoption").fetchone()
        report = json.loads(report_json)
        assert {(v["table"], v["rowid"]) for v in report["violations"]} == {
            (t, r) for t, r, _, _ in fk}
        manifest = legacy_manifest(name)
        legacy_conv_ids = {r[0] for r in conn.execute("SELECT id FROM conversations")}
        assert len(legacy_conv_ids) == manifest["conversations"]["rows"] + 1
    backups = list(tmp_path.glob("hive-ai.db.pre-hive-store-*.bak"))
    assert len(backups) == 1 and oct(backups[0].stat().st_mode & 0o777) == "0o600"
    assert not list(tmp_path.glob("*.partial*"))
    with sqlite3.connect(backups[0]) as conn:  # the backup is the legacy database itself
        for table, facts in legacy_manifest(name).items():
            assert table_digest(conn, table) == facts["sha256"]


@pytest.mark.parametrize("name", FIXTURES)
def test_every_legacy_row_and_value_is_kept(tmp_path: Path, name: str) -> None:
    path = copy_fixture(name, tmp_path)
    with sqlite3.connect(path) as conn:
        roots = dict(conn.execute("SELECT name, rootpage FROM sqlite_master WHERE type='table'"))
    report = adopt(path)
    manifest = legacy_manifest(name)
    legacy_copy = tmp_path / "legacy-copy.db"
    shutil.copy(legacy_fixture(name), legacy_copy)
    legacy = sqlite3.connect(legacy_copy)
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, facts in manifest.items():
            cols = facts["columns"]
            assert table_digest(legacy, table) == facts["sha256"], f"{table}: not the legacy rows"
            archive = f"hive_store_legacy_{table}"
            source = archive if archive in tables else table
            have = [r[1] for r in conn.execute("SELECT * FROM pragma_table_info(?)", (source,))]
            assert set(cols) <= set(have), f"{source}: columns {have} lost some of {cols}"
            select = ", ".join(f'"{c}"' for c in cols)
            before = legacy.execute(f'SELECT {select} FROM "{table}"').fetchall()
            after = set(conn.execute(f'SELECT {select} FROM "{source}"').fetchall())
            missing = [r for r in before if r not in after]
            assert not missing, f"{table}: {len(missing)} legacy rows lost or changed"
            assert len(before) == facts["rows"]
            if have == cols and table not in {*report["rebuilt_tables"], *SEEDED}:
                # no column added, no seed row: exactly the legacy rows
                assert table_digest(conn, table) == facts["sha256"], table
        new_roots = dict(conn.execute(
            "SELECT name, rootpage FROM sqlite_master WHERE type='table'"))
    # only Hive's own older shapes are rebuilt (v5's consensus_profiles, 001 shape)
    assert report["rebuilt_tables"] == (["consensus_profiles"] if name == "hive-ai-v5.db"
                                        else [])
    assert report["archived_tables"] == [f"hive_store_legacy_{t}"
                                         for t in report["rebuilt_tables"]]
    for table in set(roots) - set(report["rebuilt_tables"]):
        assert new_roots[table] == roots[table], f"{table} was rebuilt"


def test_electron_columns_and_tables_stay_where_they_are(tmp_path: Path) -> None:
    path = copy_fixture("hive-ai-electron.db", tmp_path)
    manifest = legacy_manifest("hive-ai-electron.db")
    report = adopt(path)
    with sqlite3.connect(path) as conn:
        for table, columns in ELECTRON_COLUMNS.items():
            have = [r[1] for r in conn.execute("SELECT * FROM pragma_table_info(?)", (table,))]
            assert have[-len(columns):] == columns
            assert f"hive_store_legacy_{table}" not in {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master")}
        for table in [*ELECTRON_TABLES, "messages"]:
            assert table_digest(conn, table) == manifest[table]["sha256"], table
        costs = conn.execute("SELECT count(*) FROM messages WHERE cost > 0 "
                             "AND parent_message_id IS NOT NULL").fetchone()[0]
        assert costs > 0  # the Electron app's values, not defaults
        assert compare(describe(conn), CANONICAL).differences == []
    kept = set(report["foreign_kept"])
    assert {f"foreign table {t} (kept)" for t in ELECTRON_TABLES} <= kept
    assert "messages: foreign column parent_message_id (kept)" in kept
    assert "conversations: foreign index idx_conversations_created_at (kept)" in kept


def test_repositories_work_on_tables_with_foreign_columns(tmp_path: Path) -> None:
    path = copy_fixture("hive-ai-electron.db", tmp_path)
    with hive_store.open(f"sqlite://{path}") as store:
        assert store.messages.count() == 505
        assert len(list(store.messages.iter())) == 505  # reads ignore the extra columns
        with sqlite3.connect(path) as raw:
            mid, conv_id, tokens, cost, parent = raw.execute(
                "SELECT id, conversation_id, tokens_used, cost, parent_message_id FROM messages "
                "WHERE parent_message_id IS NOT NULL AND cost > 0 LIMIT 1").fetchone()
        message = store.messages.get(mid)
        store.messages.update(message, content="edited by hive-store")
        store.messages.upsert(store.messages.get(mid))
        new = store.messages.add(Message(conversation_id=conv_id, role="user", content="new"))
        profile = store.consensus_profiles.add(ConsensusProfile(
            id="p-new", profile_name="New", generator_model="g", refiner_model="r",
            validator_model="v", curator_model="c"))
        assert store.consensus_profiles.get(profile.id) == profile
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT content, tokens_used, cost, parent_message_id FROM messages "
                           "WHERE id = ?", (mid,)).fetchone() == (
            "edited by hive-store", tokens, cost, parent)
        # inserts leave the other app's columns to their defaults
        assert raw.execute("SELECT tokens_used, cost, consensus_path, parent_message_id "
                           "FROM messages WHERE id = ?", (new.id,)).fetchone() == (0, 0, None,
                                                                                   None)
        assert raw.execute("SELECT max_consensus_rounds FROM consensus_profiles WHERE id='p-new'"
                           ).fetchone() == (3,)


def test_schema_diff_keeps_foreign_additions_and_flags_real_differences(tmp_path: Path) -> None:
    path = copy_fixture("hive-ai-electron.db", tmp_path)
    adopt(path)
    invoke = CliRunner().invoke
    ok = invoke(make_cli(), ["--db", str(path), "--json", "schema", "diff"])
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.output)
    assert data["identical"] and data["differences"] == []
    assert "foreign table sessions (kept)" in data["foreign"]
    human = invoke(make_cli(), ["--db", str(path), "schema", "diff"])
    assert human.exit_code == 0 and "kept as other programs left them" in human.output
    with sqlite3.connect(path) as conn:  # a real difference in a Hive table
        conn.execute("DROP INDEX idx_messages_conversation")
        conn.execute("ALTER TABLE users ADD COLUMN nickname TEXT NOT NULL DEFAULT 'x'")
    bad = invoke(make_cli(), ["--db", str(path), "--json", "schema", "diff"])
    assert bad.exit_code == 1
    data = json.loads(bad.output)
    assert data["differences"] == ["messages: missing index idx_messages_conversation"]
    assert "users: foreign column nickname (kept)" in data["foreign"]
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE sessions ADD COLUMN needs TEXT")
        conn.execute("ALTER TABLE consensus_profiles ADD COLUMN must INT NOT NULL DEFAULT 1")
        conn.execute("CREATE UNIQUE INDEX electron_unique ON conversations(id, total_cost)")
    worse = json.loads(invoke(make_cli(), ["--db", str(path), "--json", "schema", "diff"]
                              ).output)["differences"]
    assert "conversations: extra index electron_unique" in worse


def test_v10_dangling_profile_foreign_key_is_repointed_without_a_rebuild(tmp_path: Path) -> None:
    path = copy_fixture("hive-ai-v10.db", tmp_path)
    report = adopt(path)
    assert report["repointed"] == [
        "conversations.consensus_profile_id: consensus_profiles_backup -> consensus_profiles"]
    with sqlite3.connect(path) as conn:
        fks = conn.execute("SELECT \"table\" FROM pragma_foreign_key_list('conversations')"
                           ).fetchall()
        assert ("consensus_profiles",) in fks and ("consensus_profiles_backup",) not in fks
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("INSERT INTO conversations (id, consensus_profile_id) "
                     "VALUES ('x', 'lightning-fast')")  # failed on the v10 file before


def test_cli_migrate_adopts_and_reports(tmp_path: Path) -> None:
    path = copy_fixture("hive-ai-v5.db", tmp_path)
    runner = CliRunner()
    listing = runner.invoke(make_cli(), ["--db", str(path), "migrate", "--list"])
    assert listing.exit_code == 0 and "will be adopted first" in listing.output
    assert "rebuild consensus_profiles" in listing.output
    result = runner.invoke(make_cli(), ["--db", str(path), "migrate"])
    assert result.exit_code == 0, result.output
    assert "adopted a legacy Hive database (Hive schema version 5)" in result.output
    assert "backup written to" in result.output and ".pre-hive-store-" in result.output
    assert "hive_store_legacy_consensus_profiles" in result.output
    assert "recorded Hive migration versions 6-13" in result.output
    again = runner.invoke(make_cli(), ["--db", str(path), "--json", "migrate"])
    data = json.loads(again.output)
    assert (data["ran"], data["adoption"], data["held"]) == ([], None, {})
    diff_ok = runner.invoke(make_cli(), ["--db", str(path), "schema", "diff"])
    assert diff_ok.exit_code == 0 and "identical" in diff_ok.output


def test_migrate_json_reports_phase_times(tmp_path: Path) -> None:
    path = copy_fixture("hive-ai-v9.db", tmp_path)
    result = CliRunner().invoke(make_cli(), ["--db", str(path), "--json", "migrate"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    phases = data["adoption"]["phases"]
    assert set(phases) == {"backup", "schema", "rebuild", "indexes", "foreign_key_check",
                           "row_counts", "core_migrations"}
    assert all(isinstance(v, float) and v >= 0 for v in phases.values())
    assert all(r["duration_ms"] is not None for r in data["ran"])
    assert {r["set"] for r in data["ran"]} >= {"hive_store", "hive_store_memory"}


def test_schema_diff_lists_legacy_differences(tmp_path: Path) -> None:
    path = copy_fixture("hive-ai-v10.db", tmp_path)
    result = CliRunner().invoke(make_cli(), ["--db", str(path), "--json", "schema", "diff"])
    assert result.exit_code == 1
    differences = json.loads(result.output)["differences"]
    assert "missing table licenses" in differences
    assert any("consensus_profiles_backup" in d for d in differences)
    assert not list(tmp_path.glob("*.bak"))  # diff changes nothing


def _break_foreign_keys(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("INSERT INTO messages (id, conversation_id, role, content) "
                 "VALUES ('orphan-1', 'no-such-conversation', 'user', 'lost?')")
    conn.execute("INSERT INTO curator_truths (conversation_id, curator_output, confidence_score) "
                 "VALUES ('gone-too', 'x', 0.5)")
    conn.commit()
    conn.close()


def test_rows_breaking_foreign_keys_are_kept_and_reported(tmp_path: Path) -> None:
    path = copy_fixture("hive-ai-v5.db", tmp_path)
    _break_foreign_keys(path)
    result = CliRunner().invoke(make_cli(), ["--db", str(path), "--json", "migrate"])
    assert result.exit_code == 0, result.output
    violations = json.loads(result.output)["adoption"]["violations"]
    found = {(v["table"], v["parent"], tuple(v["values"].values())) for v in violations}
    assert ("messages", "conversations", ("no-such-conversation",)) in found
    assert ("curator_truths", "conversations", ("gone-too",)) in found
    orphan = next(v for v in violations if v["table"] == "messages")
    assert orphan["key"] == {"id": "orphan-1"}
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT content FROM messages WHERE id='orphan-1'").fetchone() == (
            "lost?",)
        remaining = {(t, r) for t, r, _, _ in conn.execute("PRAGMA foreign_key_check")}
    assert remaining == {(v["table"], v["rowid"]) for v in violations}


def test_electron_era_conversations_are_mapped_and_other_columns_carried(tmp_path: Path) -> None:
    path = copy_fixture("hive-ai-v10.db", tmp_path)
    conn = sqlite3.connect(path)
    conn.executescript("""
        PRAGMA foreign_keys = OFF;
        DROP TABLE conversations;
        CREATE TABLE conversations (id TEXT PRIMARY KEY, user_id TEXT, title TEXT,
            profile_id TEXT, total_cost REAL DEFAULT 0, total_tokens_input INTEGER DEFAULT 0,
            total_tokens_output INTEGER DEFAULT 0, created_at TEXT DEFAULT CURRENT_TIMESTAMP,
            updated_at TEXT DEFAULT CURRENT_TIMESTAMP, pinned INTEGER DEFAULT 0);
        CREATE INDEX electron_pinned ON conversations(pinned);
        INSERT INTO conversations VALUES ('e1', NULL, 'Électron title; with ;', 'lightning-fast',
            0.25, 11, 22, '2025-08-01 10:00:00', '2025-08-01T10:00:05.123+00:00', 1);
    """)
    conn.close()
    with hive_store.open(f"sqlite://{path}") as store:
        conv = store.conversations.get("e1")
        assert (conv.input_tokens, conv.output_tokens) == (11, 22)
        assert conv.consensus_profile_id == "lightning-fast" and conv.total_cost == 0.25
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT title, total_tokens_input FROM "
                            "hive_store_legacy_conversations").fetchall() == [
            ("Électron title; with ;", 11)]
        assert conn.execute("SELECT created_at, updated_at, pinned FROM conversations"
                            ).fetchone() == ("2025-08-01 10:00:00",
                                             "2025-08-01T10:00:05.123+00:00", 1)
        assert conn.execute("SELECT 1 FROM sqlite_master WHERE name='electron_pinned'"
                            ).fetchone()  # the other program's index, recreated
        report = compare(describe(conn), CANONICAL)
        assert report.differences == []
        assert "conversations: foreign column pinned (kept)" in report.foreign


def test_an_adoption_that_cannot_complete_changes_nothing(tmp_path: Path) -> None:
    path = copy_fixture("hive-ai-v10.db", tmp_path)
    conn = sqlite3.connect(path)
    conn.executescript("""
        DROP TABLE consensus_profiles;
        CREATE TABLE consensus_profiles (id TEXT PRIMARY KEY, something_else TEXT);
        INSERT INTO consensus_profiles VALUES ('p', 'unmappable');
    """)
    conn.close()
    before = {}
    with sqlite3.connect(path) as conn:
        for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            before[t] = table_digest(conn, t)
    with pytest.raises(hive_store.MigrationError, match="cannot adopt consensus_profiles"):
        hive_store.open(f"sqlite://{path}")
    with sqlite3.connect(path) as conn:
        after = {t: table_digest(conn, t) for (t,) in
                 conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert after == before


def test_the_backup_is_renamed_into_place_and_stale_partials_are_cleaned(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = copy_fixture("hive-ai-v9.db", tmp_path)
    import hive_store_migrate.backup as backup_mod

    real = backup_mod.write_backup
    seen: list[list[str]] = []

    def failing(source: Path, dest: Path, pages=None) -> None:
        def pages_then_fail(done: int, total: int) -> None:
            seen.append(sorted(p.name for p in tmp_path.iterdir()))
            raise OSError(28, "No space left on device")
        real(source, dest, pages_then_fail)

    monkeypatch.setattr("hive_store_migrate.runner.write_backup", failing)
    monkeypatch.setattr(backup_mod, "STEP_PAGES", 8)
    digest = table_digest(sqlite3.connect(legacy_fixture("hive-ai-v9.db")), "messages")
    with pytest.raises(hive_store.MigrationError, match=r"could not write the backup .*"
                       r"No space left on device; nothing was changed"):
        hive_store.open(f"sqlite://{path}")
    assert any(n.endswith(".bak.partial") for n in seen[0])  # written under a temporary name
    assert not [p for p in tmp_path.iterdir() if ".bak" in p.name]  # and removed on failure
    # a partial copy a killed process left is removed by the next adoption
    stale = tmp_path / "hive-ai.db.pre-hive-store-20250101T000000Z.bak.partial"
    stale.write_bytes(b"half a database")
    (tmp_path / (stale.name + "-journal")).write_bytes(b"")
    monkeypatch.setattr("hive_store_migrate.runner.write_backup", real)
    adopt(path)
    backups = [p.name for p in tmp_path.iterdir() if ".bak" in p.name]
    assert len(backups) == 1 and backups[0].endswith(".bak"), backups
    with sqlite3.connect(path) as conn:
        assert table_digest(conn, "messages") == digest


def test_adoption_progress_is_reported_by_phase(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import hive_store_migrate.adopt as adopt_mod
    import hive_store_migrate.backup as backup_mod

    monkeypatch.setattr(adopt_mod, "CHUNK", 7)  # several chunks on the 60-row fixture table
    monkeypatch.setattr(backup_mod, "STEP_PAGES", 64)
    path = copy_fixture("hive-ai-v5.db", tmp_path)
    seen: list[tuple[str, int, int | None, str]] = []
    with hive_store.open(f"sqlite://{path}", migrate=False) as store:
        migrator = store.plugins.migrator(store.backend)
        migrator.upgrade(store.plugins.migration_sets(),
                         progress=lambda *event: seen.append(event))
    phases = list(dict.fromkeys(p for p, *_ in seen))
    assert phases[:4] == ["backup", "schema changes", "copying consensus_profiles", "indexes"]
    assert "foreign key check" in phases and "hive_store_memory 0001 memory" in phases
    copies = [(d, t, u) for p, d, t, u in seen if p == "copying consensus_profiles"]
    assert copies[-1] == (60, 60, "rows") and len(copies) == 9
    for phase in phases:  # every phase counts up to its total
        events = [(d, t) for p, d, t, _ in seen if p == phase]
        assert [d for d, _ in events] == sorted(d for d, _ in events)
        assert events[-1][0] == events[-1][1]


def test_the_progress_view_renders_phase_count_and_rate() -> None:
    import io

    from hive_store_migrate.cli import ProgressView
    from rich.console import Console

    out = io.StringIO()
    with ProgressView(Console(file=out, force_terminal=True, width=120)) as view:
        view("copying [bold]messages[/]", 50_000, 120_000, "rows")
        view("copying [bold]messages[/]", 120_000, 120_000, "rows")
        view("foreign key check", 3, None, "tables")
    text = out.getvalue()
    assert "copying [bold]messages[/]" in text  # data is never read as markup
    assert "120,000/120,000 rows" in text and "rows/s" in text


def test_old_apps_can_read_what_hive_store_writes(tmp_path: Path) -> None:
    path = copy_fixture("hive-ai-v10.db", tmp_path)
    with hive_store.open(f"sqlite://{path}") as store:
        user = store.users.add(User(email="new@example.com"))
        conv = store.conversations.add(Conversation(user_id=user.id))
        from hive_store.entities import OpenRouterProvider, utcnow

        store.openrouter_providers.add(OpenRouterProvider(
            id="new", name="new", display_name="New", last_updated=utcnow(),
            capabilities=["chat"], is_active=True))
    with sqlite3.connect(path) as conn:
        created, updated = conn.execute(
            "SELECT datetime(created_at), datetime(updated_at) FROM conversations WHERE id=?",
            (conv.id,)).fetchone()
        assert created and updated  # SQLite's own date functions (the old apps' SQL) parse it
        caps, active = conn.execute(
            "SELECT capabilities, is_active FROM openrouter_providers WHERE id='new'").fetchone()
        assert json.loads(caps) == ["chat"] and active == 1 and isinstance(active, int)


def _opener(url: str, barrier, out) -> None:  # top level: spawned processes import it
    try:
        barrier.wait(10)
        with hive_store.open(url) as s:
            out.put(("ok", s.conversations.count()))
    except Exception as exc:
        out.put(("error", f"{type(exc).__name__}: {exc}"))


@pytest.mark.slow
def test_two_processes_open_one_legacy_file_at_once(tmp_path: Path) -> None:
    path = copy_fixture("hive-ai-v10.db", tmp_path)
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_opener, args=(f"sqlite://{path}", barrier, out))
             for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert results == [("ok", 60), ("ok", 60)]
    assert len(list(tmp_path.glob("*.bak"))) == 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM hive_store_adoption").fetchone()[0] == 1
        assert conn.execute("SELECT namespace, version, count(*) FROM hive_store_migrations "
                            "GROUP BY 1, 2 HAVING count(*) > 1").fetchall() == []


TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
STAMP = st.one_of(
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")),
    st.datetimes().map(lambda d: d.isoformat() + "+00:00"),
    st.none(),
)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    convs=st.lists(st.tuples(TEXT, st.floats(allow_nan=False) | st.none(),
                             st.integers(-(2**63), 2**63 - 1) | st.none(), STAMP),
                   max_size=8, unique_by=lambda t: t[0]),
    msgs=st.lists(st.tuples(TEXT, st.integers(0, 10), TEXT, st.sampled_from(
        ["generator", "refiner", "final", None])), max_size=12, unique_by=lambda t: t[0]),
    profiles=st.lists(st.tuples(TEXT, TEXT), max_size=4,
                      unique_by=(lambda t: t[0], lambda t: t[1])),
)
def test_random_legacy_contents_survive_adoption(tmp_path_factory, convs, msgs,
                                                 profiles) -> None:
    tmp = tmp_path_factory.mktemp("legacy")
    path = tmp / "hive-ai.db"
    shutil.copy(legacy_fixture("hive-ai-v5.db"), path)
    conn = sqlite3.connect(path)
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
        "AND name != 'schema_migrations'")]
    for t in tables:
        conn.execute(f'DELETE FROM "{t}"')
    conn.executemany("INSERT INTO conversations (id, total_cost, input_tokens, created_at) "
                     "VALUES (?, ?, ?, ?)", convs)
    conv_ids = [c[0] for c in convs] or ["dangling"]
    conn.executemany("INSERT INTO messages (id, conversation_id, role, content, stage) "
                     "VALUES (?, ?, 'user', ?, ?)",
                     [(m[0], conv_ids[m[1] % len(conv_ids)] if m[1] < 8 else "dangling", m[2],
                       m[3]) for m in msgs])
    conn.executemany("INSERT INTO consensus_profiles (id, profile_name, pipeline_profile_id, "
                     "generator_model, refiner_model, validator_model, curator_model) "
                     "VALUES (?, ?, 'pp', 'g', 'r', 'v', 'c')", profiles)
    conn.commit()
    expected = {t: table_digest(conn, t) for t in ("conversations", "messages")}
    profile_rows = sorted(conn.execute("SELECT * FROM consensus_profiles").fetchall(), key=repr)
    conn.close()

    hive_store.open(f"sqlite://{path}").close()

    with sqlite3.connect(path) as conn:
        assert {t: table_digest(conn, t) for t in expected} == expected
        assert sorted(conn.execute("SELECT * FROM hive_store_legacy_consensus_profiles"
                                   ).fetchall(), key=repr) == profile_rows
        live = set(conn.execute("SELECT id, profile_name FROM consensus_profiles").fetchall())
        assert {(p[0], p[1]) for p in profile_rows} <= live
        assert diff(describe(conn), CANONICAL) == []
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        report = json.loads(conn.execute("SELECT report FROM hive_store_adoption").fetchone()[0])
        remaining = {(t, r) for t, r, _, _ in conn.execute("PRAGMA foreign_key_check")}
        assert remaining == {(v["table"], v["rowid"]) for v in report["violations"]}


def test_any_commands_first_open_of_a_legacy_file_shows_progress(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside the command, adoption by any command's first open (not only `migrate`) goes to
    the terminal progress display; opening a file that needs no adoption shows none."""
    import contextlib

    import hive_store_migrate.runner as runner

    seen: list[str] = []
    views: list[int] = []

    @contextlib.contextmanager
    def view():
        views.append(1)
        yield lambda phase, done, total, unit: seen.append(phase)

    monkeypatch.setattr(runner, "_terminal_progress", None)
    group = make_cli()  # registers the commands, and with them the terminal progress
    assert runner._terminal_progress is not None
    monkeypatch.setattr(runner, "_terminal_progress", view)
    path = copy_fixture("hive-ai-v9.db", tmp_path)
    result = CliRunner().invoke(group, ["--db", str(path), "init"])
    assert result.exit_code == 0, result.output
    assert views == [1] and seen[0] == "backup" and "hive_store_memory 0001 memory" in seen
    CliRunner().invoke(group, ["--db", str(path), "init"])
    assert views == [1]
