"""The migration runner: atomic, checksummed, complex SQL, plugin sets, refusing what it
cannot handle without changing anything."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

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
        ("hive_store", 3, "hive_runner_record"), ("hive_store", 4, "time_keys"),
        ("notes", 1, "notes")]
    assert rows[4][3] == mset.migrations[0].checksum and rows[4][4] >= 0
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
    assert [m.version for m in core.migrations] == [1, 2, 3, 4]
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


# -- holds: a set taken down stays down until asked (stateful, against a model) --------------

A_FILES = [(f"{v:04d}_a{v}.sql", f"CREATE TABLE a{v} (x INT);\n-- @down\nDROP TABLE a{v};")
           for v in (1, 2, 3)]
B_FILES = [(f"{v:04d}_b{v}.sql", f"CREATE TABLE b{v} (x INT);\n-- @down\nDROP TABLE b{v};")
           for v in (1, 2)]
LATEST = {"a": 3, "b": 2}
DEPENDS = {"a": [], "b": ["a"]}  # b builds on a (and both on the core set)


class HoldsMachine(RuleBasedStateMachine):
    """``migrate_to`` (with and without ``cascade``), ``open()`` (``upgrade``) and ``migrate``
    (``upgrade(lift_holds=True)``, optionally for one set) against a model of versions and
    holds."""

    def __init__(self) -> None:
        super().__init__()
        from tests.conftest import isolated_plugins

        self.sets = [MigrationSet.from_sql("a", A_FILES, ("hive_store",)),
                     MigrationSet.from_sql("b", B_FILES, ("a",))]
        self.store = hive_store.open(":memory:", plugins=isolated_plugins(_SetPlugin(
            *self.sets)))
        self.migrator = self.store.plugins.migrator(self.store.backend)
        self.all_sets = self.store.plugins.migration_sets()
        self.version = dict(LATEST)
        self.holds: dict[str, int] = {}

    def teardown(self) -> None:
        self.store.close()

    def _held_below_latest(self, ns: str) -> bool:
        return ns in self.holds and self.holds[ns] < LATEST[ns]

    def _apply_up(self, only: set[str]) -> None:
        """What an upgrade does in the model: each set up to its hold, or to its latest;
        a set whose dependency is held below its latest stays where it is."""
        for ns in ("a", "b"):
            if ns not in only:
                continue
            if ns in self.holds:
                cap = self.holds[ns]
            elif any(self._held_below_latest(d) for d in DEPENDS[ns]):
                cap = self.version[ns]
            else:
                cap = LATEST[ns]
            self.version[ns] = max(self.version[ns], cap)

    @rule(ns=st.sampled_from(["a", "b"]), to=st.integers(0, 3), cascade=st.booleans())
    def migrate_to(self, ns: str, to: int, cascade: bool) -> None:
        if to > LATEST[ns]:
            with pytest.raises(hive_store.MigrationError, match="has no version"):
                self.migrator.migrate_to(self.all_sets, to, namespace=ns, force=True)
            return
        if to < self.version[ns]:
            dependents = [d for d in ("b",) if ns == "a" and self.version[d] > 0]
            if dependents and not cascade:
                with pytest.raises(hive_store.MigrationError, match="--cascade"):
                    self.migrator.migrate_to(self.all_sets, to, namespace=ns, force=True)
                return
            self.migrator.migrate_to(self.all_sets, to, namespace=ns, force=True,
                                     cascade=cascade)
            for d in dependents:
                self.version[d] = 0
                self.holds[d] = 0
            self.version[ns] = to
            self.holds[ns] = to
            return
        if any(self._held_below_latest(d) for d in DEPENDS[ns]):
            with pytest.raises(hive_store.MigrationError, match="is held at version"):
                self.migrator.migrate_to(self.all_sets, to, namespace=ns, force=True)
            return
        self.migrator.migrate_to(self.all_sets, to, namespace=ns, force=True)
        self._apply_up(set(DEPENDS[ns]))
        self.version[ns] = to
        if to < LATEST[ns]:
            self.holds[ns] = to
        else:
            self.holds.pop(ns, None)

    @rule()
    def reopen(self) -> None:
        """What ``hive_store.open()`` runs: holds respected."""
        self.migrator.upgrade(self.all_sets)
        self._apply_up({"a", "b"})

    @rule(ns=st.sampled_from([None, "a", "b"]))
    def migrate(self, ns: str | None) -> None:
        """``hive-store migrate [--set NS]``: lift the holds (of NS and what it builds on)."""
        self.migrator.upgrade(self.all_sets, lift_holds=True, namespace=ns)
        only = {"a", "b"} if ns is None else {ns, *DEPENDS[ns]}
        for s in only:
            self.holds.pop(s, None)
        self._apply_up(only)

    @invariant()
    def versions_holds_and_tables_match_the_model(self) -> None:
        assert {ns: self.migrator.version(ns) for ns in ("a", "b")} == self.version
        assert {k: v for k, v in self.migrator.holds().items() if k in ("a", "b")} == self.holds
        with self.store.backend.connection() as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        for ns, files in (("a", A_FILES), ("b", B_FILES)):
            assert [f"{ns}{v}" in names for v in range(1, len(files) + 1)] == [
                v <= self.version[ns] for v in range(1, len(files) + 1)]


HoldsMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=12,
                                          deadline=None)
test_holds_keep_stepped_down_sets_down_until_lifted = HoldsMachine.TestCase


def test_a_new_set_building_on_a_held_set_waits_for_it(tmp_path: Path) -> None:
    from tests.conftest import isolated_plugins

    a = MigrationSet.from_sql("a", A_FILES, ("hive_store",))
    b = MigrationSet.from_sql("b", B_FILES, ("a",))
    path = tmp_path / "db.sqlite"
    with hive_store.open(str(path), plugins=isolated_plugins(_SetPlugin(a))) as store:
        store.plugins.migrator(store.backend).migrate_to(store.plugins.migration_sets(), 1,
                                                         namespace="a")
    # a plugin that builds on "a" is installed: opening leaves it unapplied while a is held
    with hive_store.open(str(path), plugins=isolated_plugins(_SetPlugin(a, b))) as store:
        migrator = store.plugins.migrator(store.backend)
        sets = store.plugins.migration_sets()
        assert (migrator.version("a"), migrator.version("b")) == (1, 0)
        assert {(d.namespace, d.problem) for d in migrator.verify(sets)} == {
            ("a", "held"), ("b", "held")}
        migrator.upgrade(sets, lift_holds=True)
        assert (migrator.version("a"), migrator.version("b")) == (3, 2)
