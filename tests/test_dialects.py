"""Backend dialects: plugins say which backends they work with (``hive_store_supported_dialects``)
and are skipped on the others; migration sets carry a variant per dialect."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

import hive_store
from hive_store.health import HealthResult
from hive_store.migrations import MigrationSet, for_dialect, split_statements
from tests.conftest import isolated_plugins


@attrs.frozen(kw_only=True)
class Note:
    __table__: ClassVar[str] = "dialect_notes"
    __pk__: ClassVar[str] = "id"
    id: str
    text: str


class OnlyOn:
    """A plugin that works with one dialect and records every hook that ran."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.calls: list[str] = []

    @hive_store.hookimpl
    def hive_store_supported_dialects(self) -> list[str]:
        return [self.dialect]

    @hive_store.hookimpl
    def hive_store_register_entities(self) -> list[type]:
        self.calls.append("entities")
        return [Note]

    @hive_store.hookimpl
    def hive_store_register_migrations(self) -> list[MigrationSet]:
        return [MigrationSet.from_sql(f"notes_{self.dialect}", [(
            "0001_notes.sql",
            "CREATE TABLE IF NOT EXISTS dialect_notes (id TEXT PRIMARY KEY, text TEXT);")],
            ("hive_store",))]

    @hive_store.hookimpl
    def hive_store_store_opened(self, store: Any) -> None:
        self.calls.append("opened")

    @hive_store.hookimpl
    def hive_store_before_commit(self, store: Any, changes: Any) -> None:
        self.calls.append("before_commit")

    @hive_store.hookimpl
    def hive_store_after_commit(self, store: Any, changes: Any) -> None:
        self.calls.append("after_commit")

    @hive_store.hookimpl
    def hive_store_register_health_checks(self) -> list[Any]:
        def check_notes(store: Any) -> HealthResult:
            self.calls.append("health")
            return HealthResult(name="notes", status="ok", message="fine")
        return [check_notes]

    @hive_store.hookimpl
    def hive_store_prepare_connection(self, connection: Any, backend: Any) -> None:
        self.calls.append("prepare")

    @hive_store.hookimpl
    def hive_store_store_closing(self, store: Any) -> None:
        self.calls.append("closing")


def test_a_plugin_for_another_dialect_is_skipped_everywhere(tmp_path: Path) -> None:
    mine, other = OnlyOn("sqlite"), OnlyOn("postgresql")
    plugins = isolated_plugins(mine, other)
    with hive_store.open(f"sqlite://{tmp_path / 'x.db'}", plugins=plugins) as store:
        store.repo(Note).add(Note(id="n", text="t"))
        results = store.health()
        versions = {a.namespace for a in plugins.migrator(store.backend).applied()}
    assert {"entities", "opened", "before_commit", "after_commit", "health", "prepare",
            "closing"} <= set(mine.calls)
    assert other.calls == []
    assert "notes_sqlite" in versions and "notes_postgresql" not in versions
    skipped = [r for r in results if r.name == "plugin test-extra-1"]
    assert len(skipped) == 1 and skipped[0].status == "ok"
    assert skipped[0].message == "skipped: works with postgresql backends, this store is sqlite"
    assert plugins.skipped("sqlite") == [("test-extra-1", ("postgresql",))]
    assert plugins.supports("test-extra-0", "sqlite") and plugins.supports("sqlite", "anything")


def test_sets_choose_their_variant_and_drop_what_cannot_run() -> None:
    base = MigrationSet.from_sql("a", [("0001_x.sql", "CREATE TABLE x (i INTEGER);")],
                                 variants={"postgresql": [("0001_x.sql",
                                                           "CREATE TABLE x (i bigint);")]})
    only_sqlite = MigrationSet.from_sql(
        "b", [("0001_y.sql", "CREATE VIRTUAL TABLE y USING fts5(t);")], dialects=["sqlite"])
    dependent = MigrationSet.from_sql("c", [("0001_z.sql", "SELECT 1;")], ("b",))
    portable = MigrationSet.from_sql("d", [("0001_w.sql", "SELECT 2;")])
    on_pg = for_dialect([base, only_sqlite, dependent, portable], "postgresql")
    assert [s.namespace for s in on_pg] == ["a", "d"]
    assert on_pg[0].migrations[0].up.strip() == "CREATE TABLE x (i bigint);"
    assert on_pg[0].migrations[0].checksum != base.migrations[0].checksum
    assert on_pg[0].migrations[0].dialect == "postgresql"
    on_sqlite = for_dialect([base, only_sqlite, dependent, portable], "sqlite")
    assert [s.namespace for s in on_sqlite] == ["a", "b", "c", "d"]
    assert on_sqlite[0] == base


def test_the_core_set_has_a_postgresql_variant_with_the_same_versions() -> None:
    from hive_store_migrate import core_migrations

    core = core_migrations()
    pg = core.for_dialect("postgresql")
    assert pg is not core and pg.migrations[0].dialect == "postgresql"
    assert [(m.version, m.name) for m in pg.migrations] == [
        (m.version, m.name) for m in core.migrations]


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT 1; SELECT 2;", ["SELECT 1;", "SELECT 2;"]),
    ("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;",
     ["CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;"]),
    ("DO $body$ BEGIN PERFORM 1; END $body$;", ["DO $body$ BEGIN PERFORM 1; END $body$;"]),
    ("SELECT 'a;''b'; SELECT \"c;\";", ["SELECT 'a;''b';", "SELECT \"c;\";"]),
    ("SELECT 1 /* a; /* nested; */ b; */; -- c;\n", ["SELECT 1 /* a; /* nested; */ b; */;"]),
    ("SELECT $1, x$y FROM t;", ["SELECT $1, x$y FROM t;"]),
])
def test_the_postgresql_splitter(sql: str, expected: list[str]) -> None:
    assert split_statements(sql, "postgresql") == expected


@pytest.mark.parametrize("sql", ["SELECT 'open;", "SELECT $$ open;", "SELECT 1; SELECT 2"])
def test_the_postgresql_splitter_refuses_an_incomplete_end(sql: str) -> None:
    with pytest.raises(hive_store.MigrationError, match="incomplete"):
        split_statements(sql, "postgresql")
