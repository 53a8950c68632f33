"""The migration runner: atomic, checksummed, complex SQL, plugin sets, refusing what it
cannot handle without changing anything."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hive_store
from hive_store.entities import User
from hive_store.migrations import Migration, MigrationSet, order_sets, split_statements
from hive_store.plugins import Plugins

TRIGGER_SQL = """
-- @name: notes
CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL DEFAULT 'a;b', n INTEGER DEFAULT 0);
CREATE TABLE notes_log (note_id INTEGER, what TEXT); -- a comment; with a semicolon
/* block comment; also with ; */
CREATE TRIGGER notes_ai AFTER INSERT ON notes BEGIN
    INSERT INTO notes_log VALUES (new.id, 'inserted; really');
    UPDATE notes SET n = n + 1 WHERE id = new.id;
END;
INSERT INTO notes (body) VALUES ('semicolons; inside; text; END;');
-- @down
DROP TABLE notes_log;
DROP TABLE notes;
"""


def test_splitter_handles_triggers_strings_and_comments() -> None:
    m = Migration.parse("0001_notes.sql", TRIGGER_SQL)
    # comments stay attached to the statement they precede
    assert len(m.statements) == 4
    assert "CREATE TRIGGER" in m.statements[2] and m.statements[2].endswith("END;")
    assert m.down_statements == ["DROP TABLE notes_log;", "DROP TABLE notes;"]
    conn = sqlite3.connect(":memory:")
    for s in m.statements:
        conn.execute(s)
    assert conn.execute("SELECT body, n FROM notes").fetchall() == [
        ("semicolons; inside; text; END;", 1)]
    assert conn.execute("SELECT what FROM notes_log").fetchall() == [("inserted; really",)]


@given(st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30),
                min_size=1, max_size=6))
def test_splitter_never_splits_inside_string_literals(values: list[str]) -> None:
    sql = "\n".join("INSERT INTO t VALUES ('" + v.replace("'", "''") + "');" for v in values)
    statements = split_statements(sql)
    assert len(statements) == len(values)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (v TEXT)")
    for s in statements:
        conn.execute(s)
    assert [r[0] for r in conn.execute("SELECT v FROM t ORDER BY rowid")] == values


def test_incomplete_statement_and_bad_names_are_errors() -> None:
    with pytest.raises(hive_store.MigrationError, match="incomplete"):
        Migration.parse("0001_x.sql", "CREATE TABLE t (a INT)")
    with pytest.raises(hive_store.MigrationError, match="file name"):
        Migration.parse("010_rollback.SQL", "SELECT 1;")
    with pytest.raises(hive_store.MigrationError, match="repeats versions"):
        MigrationSet("x", (Migration.parse("0001_a.sql", "SELECT 1;"),
                           Migration.parse("0001_b.sql", "SELECT 2;")))


def test_set_ordering_dependencies_and_cycles() -> None:
    core = MigrationSet("hive_store", ())
    a = MigrationSet("a", (), ("b",))
    b = MigrationSet("b", (), ("hive_store",))
    assert [s.namespace for s in order_sets([a, b, core])] == ["hive_store", "b", "a"]
    with pytest.raises(hive_store.MigrationError, match="depend on each other"):
        order_sets([MigrationSet("a", (), ("b",)), MigrationSet("b", (), ("a",))])
    with pytest.raises(hive_store.MigrationError, match="no loaded plugin provides"):
        order_sets([MigrationSet("a", (), ("zzz",))])


class _SetPlugin:
    def __init__(self, *sets: MigrationSet) -> None:
        self.sets = list(sets)

    @hive_store.hookimpl
    def hive_store_register_migrations(self):
        return self.sets


def _plugins(*sets: MigrationSet) -> Plugins:
    p = Plugins()
    p.ensure_loaded()
    p.register(_SetPlugin(*sets), name="test-sets")
    return p


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_plugin_set_with_triggers_is_applied_and_recorded(tmp_path: Path) -> None:
    mset = MigrationSet.from_sql("notes", [("0001_notes.sql", TRIGGER_SQL)], ("hive_store",))
    path = tmp_path / "db.sqlite"
    hive_store.open(f"sqlite://{path}", plugins=_plugins(mset)).close()
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT namespace, version, name, checksum, duration_ms "
                            "FROM hive_store_migrations WHERE namespace IN ('hive_store', 'notes') "
                            "ORDER BY namespace, version").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("hive_store", 1, "hive_schema"), ("hive_store", 2, "seed_catalog"),
        ("hive_store", 3, "time_keys"), ("notes", 1, "notes")]
    assert rows[3][3] == mset.migrations[0].checksum and rows[3][4] >= 0
    # reopening applies nothing twice
    hive_store.open(f"sqlite://{path}", plugins=_plugins(mset)).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 1


def test_a_failing_migration_leaves_nothing_behind(tmp_path: Path) -> None:
    bad = MigrationSet.from_sql("bad", [
        ("0001_ok.sql", "CREATE TABLE ok1 (a INT);"),
        ("0002_broken.sql", "CREATE TABLE half (a INT);\nINSERT INTO nosuch VALUES (1);"),
    ])
    path = tmp_path / "db.sqlite"
    hive_store.open(f"sqlite://{path}").close()
    with pytest.raises(hive_store.MigrationError,
                       match=r"bad 0002 \(broken\) failed at statement 2"):
        hive_store.open(f"sqlite://{path}", plugins=_plugins(bad))
    tables = _tables(path)
    assert "ok1" not in tables and "half" not in tables  # the whole run is one transaction
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM hive_store_migrations WHERE namespace='bad'"
                            ).fetchone()[0] == 0


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 8), data=st.data())
def test_failure_at_any_statement_leaves_the_database_logically_unchanged(
        n: int, data: st.DataObject) -> None:
    fail_at = data.draw(st.integers(0, n - 1), label="fail_at")
    statements = [f"CREATE TABLE t{i} (a INT);\nINSERT INTO t{i} VALUES ({i});"
                  if i != fail_at else "INSERT INTO no_such_table VALUES (1);" for i in range(n)]
    files = [(f"{i + 1:04d}_m{i}.sql", sql) for i, sql in enumerate(statements)]
    with hive_store.open(":memory:") as store:
        with store.transaction():
            store.users.add(User(id="u1"))
        before = _logical(store)
        migrator = store.plugins.migrator(store.backend)
        with pytest.raises(hive_store.MigrationError):
            migrator.upgrade([*store.plugins.migration_sets(),
                              MigrationSet.from_sql("inj", files)])
        assert _logical(store) == before


def _logical(store: hive_store.Store) -> tuple:
    with store.backend.connection() as conn:
        schema = sorted(conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall(),
                        key=repr)
        rows = {name: sorted(map(repr, conn.execute(f'SELECT * FROM "{name}"').fetchall()))
                for (kind, name, _) in schema if kind == "table"}
    return schema, rows


def test_drift_is_refused_unless_allowed(tmp_path: Path) -> None:
    v1 = MigrationSet.from_sql("d", [("0001_t.sql", "CREATE TABLE d1 (a INT);")])
    changed = MigrationSet.from_sql("d", [("0001_t.sql", "CREATE TABLE d1 (a INT, b INT);")])
    path = tmp_path / "db.sqlite"
    hive_store.open(f"sqlite://{path}", plugins=_plugins(v1)).close()
    with pytest.raises(hive_store.MigrationError, match=r"d 0001 \(t\) has changed"):
        hive_store.open(f"sqlite://{path}", plugins=_plugins(changed))
    hive_store.open(f"sqlite://{path}", plugins=_plugins(changed), allow_drift=True).close()


def test_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    two = MigrationSet.from_sql("n", [("0001_a.sql", "CREATE TABLE n1 (a INT);"),
                                      ("0002_b.sql", "CREATE TABLE n2 (a INT);")])
    one = MigrationSet.from_sql("n", [("0001_a.sql", "CREATE TABLE n1 (a INT);")])
    path = tmp_path / "db.sqlite"
    hive_store.open(f"sqlite://{path}", plugins=_plugins(two)).close()
    with pytest.raises(hive_store.MigrationError, match="does not know"):
        hive_store.open(f"sqlite://{path}", plugins=_plugins(one))


def test_core_migrations_are_shipped_as_package_data() -> None:
    from hive_store_migrate import core_migrations

    core = core_migrations()
    assert [m.version for m in core.migrations] == [1, 2, 3]
    assert all(m.down for m in core.migrations)


def test_schema_sql_reading_respects_quotes_and_comments() -> None:
    from hive_store.sqltext import strip_comments, table_parts

    sql = ("CREATE TABLE t ( -- a comment, with a comma\n"
           "  a TEXT DEFAULT 'x -- not a comment, nor a separator',\n"
           "  \"b,c\" TEXT CHECK (\"b,c\" IN ('p', 'q')), /* block, comment */\n"
           "  UNIQUE (a, \"b,c\")\n) WITHOUT ROWID")
    parts, tail = table_parts(sql)
    assert parts == ["a TEXT DEFAULT 'x -- not a comment, nor a separator'",
                     "\"b,c\" TEXT CHECK (\"b,c\" IN ('p', 'q'))", "UNIQUE (a, \"b,c\")"]
    assert tail == "WITHOUT ROWID"
    assert "'it''s -- kept'" in strip_comments("SELECT 'it''s -- kept' -- gone")
    assert "gone" not in strip_comments("SELECT 'it''s -- kept' -- gone")
