"""Adopting databases written by the old Hive apps: every legacy row and value kept, the
schema made canonical, violations reported, a backup written first."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from hive_store_migrate import core_migrations
from hive_store_migrate.schema import canonical, describe, diff
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hive_store
from hive_store.cli import make_cli
from hive_store.entities import Conversation, Message, User
from tests.conftest import legacy_fixture, legacy_manifest, table_digest

FIXTURES = ["hive-ai-v5.db", "hive-ai-v10.db"]
CANONICAL = canonical(core_migrations().migrations[0].statements)


def copy_fixture(name: str, tmp_path: Path) -> Path:
    path = tmp_path / "hive-ai.db"
    shutil.copy(legacy_fixture(name), path)
    return path


def assert_every_legacy_value_kept(conn: sqlite3.Connection, legacy: sqlite3.Connection,
                                   manifest: dict) -> None:
    """``legacy`` holds the rows before adoption (its digests equal the manifest's); every one
    of them, with every legacy column's value, must be in the adopted database — in the live
    table, or for columns the canonical table lacks, in ``hive_store_legacy_<table>``."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    for table, facts in manifest.items():
        cols = facts["columns"]
        assert table_digest(legacy, table) == facts["sha256"], f"{table}: not the legacy rows"
        source = f"hive_store_legacy_{table}" if f"hive_store_legacy_{table}" in tables else table
        have = [r[1] for r in conn.execute("SELECT * FROM pragma_table_info(?)", (source,))]
        assert set(cols) <= set(have), f"{source}: columns {have} lost some of {cols}"
        select = ", ".join(f'"{c}"' for c in cols)
        before = legacy.execute(f'SELECT {select} FROM "{table}"').fetchall()
        after = set(conn.execute(f'SELECT {select} FROM "{source}"').fetchall())
        missing = [r for r in before if r not in after]
        assert not missing, f"{table}: {len(missing)} legacy rows lost or changed"
        assert len(before) == facts["rows"]


@pytest.mark.parametrize("name", FIXTURES)
def test_open_adopts_a_legacy_fixture_without_losing_anything(tmp_path: Path, name: str) -> None:
    path = copy_fixture(name, tmp_path)
    with hive_store.open(f"sqlite://{path}") as store:
        assert store.schema_version() == 3
        report = store.plugins.migrator(store.backend)  # a fresh migrator: nothing to adopt
        assert report.legacy_state() is None
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
        # new rows were added above; compare legacy rows only
        legacy_conv_ids = {r[0] for r in conn.execute("SELECT id FROM conversations")}
        assert len(legacy_conv_ids) == manifest["conversations"]["rows"] + 1
    backups = list(tmp_path.glob("hive-ai.db.pre-hive-store-*.bak"))
    assert len(backups) == 1 and oct(backups[0].stat().st_mode & 0o777) == "0o600"
    with sqlite3.connect(backups[0]) as conn:  # the backup is the legacy database itself
        for table, facts in legacy_manifest(name).items():
            assert table_digest(conn, table) == facts["sha256"]


@pytest.mark.parametrize("name", FIXTURES)
def test_every_legacy_row_and_value_is_kept(tmp_path: Path, name: str) -> None:
    path = copy_fixture(name, tmp_path)
    hive_store.open(f"sqlite://{path}").close()
    legacy_copy = tmp_path / "legacy-copy.db"
    shutil.copy(legacy_fixture(name), legacy_copy)
    legacy = sqlite3.connect(legacy_copy)
    with sqlite3.connect(path) as conn:
        assert_every_legacy_value_kept(conn, legacy, legacy_manifest(name))
        # the old runner's bookkeeping is left for the old apps
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] in (5, 10)


def test_v10_dangling_profile_foreign_key_is_repaired(tmp_path: Path) -> None:
    path = copy_fixture("hive-ai-v10.db", tmp_path)
    hive_store.open(f"sqlite://{path}").close()
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
    result = runner.invoke(make_cli(), ["--db", str(path), "migrate"])
    assert result.exit_code == 0, result.output
    assert "adopted a legacy Hive database (Hive schema version 5)" in result.output
    assert "backup written to" in result.output and ".pre-hive-store-" in result.output
    assert "hive_store_legacy_consensus_profiles" in result.output
    again = runner.invoke(make_cli(), ["--db", str(path), "--json", "migrate"])
    assert json.loads(again.output) == {"ran": [], "adoption": None}
    diff_ok = runner.invoke(make_cli(), ["--db", str(path), "schema", "diff"])
    assert diff_ok.exit_code == 0 and "identical" in diff_ok.output


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


def test_electron_conversations_variant_is_mapped(tmp_path: Path) -> None:
    path = copy_fixture("hive-ai-v10.db", tmp_path)
    conn = sqlite3.connect(path)
    conn.executescript("""
        PRAGMA foreign_keys = OFF;
        DROP TABLE conversations;
        CREATE TABLE conversations (id TEXT PRIMARY KEY, user_id TEXT, title TEXT,
            profile_id TEXT, total_cost REAL DEFAULT 0, total_tokens_input INTEGER DEFAULT 0,
            total_tokens_output INTEGER DEFAULT 0, created_at TEXT DEFAULT CURRENT_TIMESTAMP,
            updated_at TEXT DEFAULT CURRENT_TIMESTAMP);
        INSERT INTO conversations VALUES ('e1', NULL, 'Électron title; with ;', 'lightning-fast',
            0.25, 11, 22, '2025-08-01 10:00:00', '2025-08-01T10:00:05.123+00:00');
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
        assert conn.execute("SELECT created_at, updated_at FROM conversations").fetchone() == (
            "2025-08-01 10:00:00", "2025-08-01T10:00:05.123+00:00")
        assert diff(describe(conn), CANONICAL) == []


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


def test_rebuild_progress_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hive_store_migrate.adopt as adopt_mod

    monkeypatch.setattr(adopt_mod, "CHUNK", 7)  # several chunks on the 60-row fixture table
    path = copy_fixture("hive-ai-v10.db", tmp_path)
    seen: list[tuple[str, int, int]] = []
    with hive_store.open(f"sqlite://{path}", migrate=False) as store:
        migrator = store.plugins.migrator(store.backend)
        migrator.upgrade(store.plugins.migration_sets(),
                         progress=lambda t, done, total: seen.append((t, done, total)))
        assert store.conversations.count() == 60
    assert seen[-1] == ("conversations", 60, 60)
    assert [d for _, d, _ in seen] == sorted(d for _, d, _ in seen) and len(seen) == 9
