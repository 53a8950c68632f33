"""Adopting databases written by the old Hive apps.

A legacy ``hive-ai.db`` has Hive tables but no hive-store migration record: usually the old
runner's ``schema_migrations`` at version 9 (Hive's real Rust runner stops there: see
``docs/migrations.md``), 5, 10 or 13, sometimes with the Electron app's additions, sometimes
without any version table. Adoption brings it to the canonical schema (the core's migration
0001) in **one transaction**, after writing a backup next to the file, changing as little as it
can:

* missing tables are created and missing trailing columns (the 010 additions) added in place;
* a foreign key that migration 006 left pointing at the dropped ``consensus_profiles_backup``
  is re-pointed at ``consensus_profiles`` the way it broke: SQLite rewrites the references to a
  table when the table is renamed, so renaming ``consensus_profiles`` to the dropped name and
  back rewrites them, with no table rebuilt (``conversations`` keeps its pages);
* columns, tables and indexes that other programs added (the Electron app's) stay where they
  are with their values: hive-store's repositories name their columns, so extra nullable or
  defaulted columns are left to their defaults on insert and never read;
* only a table whose Hive columns themselves differ (``consensus_profiles`` in the 001 or 006
  shape, the db_migration.rs ``conversations``) is rebuilt the SQLite way (create, copy, drop,
  rename, foreign keys off): mapped columns are copied into their canonical names, columns of
  other programs are carried along, and when a Hive column of the old shape has no place in
  the new one, an exact copy of the original table is kept as ``hive_store_legacy_<table>``;
* indexes of the canonical schema are made canonical, other programs' indexes kept;
* rows that break a foreign key (the old runtime wrote with enforcement off) are kept and
  listed in the report (``PRAGMA foreign_key_check`` afterwards finds exactly those).

Values are never rewritten: SQLite copies them (``INSERT … SELECT``) into columns of the same
declared type, so old apps keep reading their timestamps, JSON text and 0/1.

:func:`plan_adoption` decides all of this from reads only (``migrate --list``/``--dry-run``
show it on a file they open read-only); :func:`execute` carries the plan out. Everything here
speaks SQLite's dialect (PRAGMAs, ``sqlite_master``, ``ALTER TABLE``).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs

from hive_store.errors import MigrationError
from hive_store.migrations import Migration
from hive_store.sqltext import table_parts
from hive_store_migrate.schema import (
    HIVE_LEGACY_COLUMNS,
    TableSpec,
    describe,
    describe_table,
    foreign_column_ok,
    foreign_index,
    table_compare,
)

ProgressFn = Callable[[str, int, "int | None", str], None]
"""``progress(phase, done, total, unit)``: called as a long phase advances (``total`` is
``None`` when it is not known), e.g. ``("copying consensus_profiles", 50000, 120000, "rows")``."""

HIVE_MARKERS = ("users", "conversations", "messages", "knowledge_conversations")
ADOPTION_TABLE = "hive_store_adoption"
CHUNK = 50_000
_REBUILD = "hive_store_rebuild"

# Canonical column <- (SQL expression over the legacy table, legacy columns it reads), tried in
# order when the legacy table lacks the canonical column. Constants, never user input.
SOURCES: dict[str, dict[str, tuple[tuple[str, tuple[str, ...]], ...]]] = {
    "conversations": {  # the Electron-era / db_migration.rs variant
        "input_tokens": (('"total_tokens_input"', ("total_tokens_input",)),),
        "output_tokens": (('"total_tokens_output"', ("total_tokens_output",)),),
        "consensus_profile_id": (('"profile_id"', ("profile_id",)),),
    },
    "consensus_profiles": {  # the 006 shape (INTEGER model ids) -> the 009 shape
        "profile_name": (('"name"', ("name",)),),
        **{
            f"{stage}_model": ((
                f"(SELECT openrouter_id FROM openrouter_models "
                f'WHERE internal_id = "{stage}_model_id")',
                (f"{stage}_model_id",),
            ),)
            for stage in ("generator", "refiner", "validator", "curator")
        },
    },
}

def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@attrs.frozen
class LegacyState:
    """What a legacy database looks like before adoption."""

    version: int | None  # the old runner's schema_migrations version, if any
    tables: tuple[str, ...]

    def describe(self) -> str:
        if self.version is not None:
            return f"Hive schema version {self.version}"
        return "Hive tables without a version table"


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def detect(conn: sqlite3.Connection, record_table: str,
           holds_table: str | None = None) -> LegacyState | None:
    """The legacy state of the database, or ``None`` if it is new or already ours (the core
    set is recorded as applied, or held down on purpose)."""
    tables = _tables(conn)
    for table in (record_table, holds_table):
        if table and table in tables and conn.execute(
                f"SELECT 1 FROM {table} WHERE namespace = 'hive_store' LIMIT 1").fetchone():
            return None
    if "schema_migrations" not in tables and not tables & set(HIVE_MARKERS):
        return None
    version = None
    if "schema_migrations" in tables:
        try:
            version = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        except sqlite3.Error:
            version = None
    return LegacyState(version, tuple(sorted(t for t in tables if not t.startswith("sqlite_"))))


# -- the plan ---------------------------------------------------------------------------------


@attrs.frozen
class Rebuild:
    """How one table is rebuilt: the new table's statement, the copy, what is kept."""

    create_sql: str  # creates _REBUILD
    targets: tuple[str, ...]
    sources: tuple[str, ...]
    carried: tuple[str, ...]  # other programs' columns kept in the rebuilt table
    archive: bool  # keep the original whole as hive_store_legacy_<table>
    recreate: tuple[tuple[str, str], ...]  # (name, SQL) of other programs' indexes/triggers


@attrs.frozen
class Action:
    """One change adoption makes. ``sql`` is what it runs (a rebuild copies in chunks)."""

    kind: str  # create table | add column | repoint | rebuild | drop index | create index
    table: str
    label: str  # what the report lists, e.g. "users.last_d1_sync"
    sql: tuple[str, ...]
    note: str = ""  # why, or how
    rebuild: Rebuild | None = None


@attrs.define
class AdoptionPlan:
    """What adoption would do to a legacy database (computed from reads only)."""

    state: LegacyState
    tables: list[str]  # the canonical tables, in order
    actions: list[Action]
    foreign: list[str]  # what other programs added, kept as it is

    def lines(self) -> list[str]:
        out = [f"{a.kind} {a.label}" + (f" ({a.note})" if a.note else "")
               for a in self.actions]
        out.extend(f"keep {f.removesuffix(' (kept)')}" for f in self.foreign)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state.describe(), "hive_schema_version": self.state.version,
                "actions": [{"kind": a.kind, "table": a.table, "what": a.label,
                             "note": a.note, "sql": list(a.sql)} for a in self.actions],
                "foreign_kept": list(self.foreign)}


def create_statements(core: Migration) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Canonical CREATE TABLE and CREATE INDEX statements by name, and the table order."""
    tables: dict[str, str] = {}
    indexes: dict[str, str] = {}
    order: list[str] = []
    for statement in core.statements:
        code = re.sub(r"--[^\n]*", "", statement).strip()
        m = re.match(r"CREATE\s+TABLE\s+(\w+)", code, re.I)
        if m:
            tables[m.group(1)] = statement
            order.append(m.group(1))
            continue
        m = re.match(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(\w+)", code, re.I)
        if m:
            indexes[m.group(1)] = statement
    return tables, indexes, order


_expected_cache: dict[str, dict[str, TableSpec]] = {}


def expected_specs(core: Migration) -> dict[str, TableSpec]:
    """The canonical tables' structure (built once per migration checksum, in memory)."""
    if core.checksum not in _expected_cache:
        mem = sqlite3.connect(":memory:")
        try:
            for statement in core.statements:
                mem.execute(statement)
            _expected_cache[core.checksum] = describe(mem)
        finally:
            mem.close()
    return _expected_cache[core.checksum]


def plan_adoption(conn: sqlite3.Connection, core: Migration, state: LegacyState) -> AdoptionPlan:
    """What :func:`execute` would do to the database on ``conn``; reads only."""
    table_sql, index_sql, order = create_statements(core)
    expected = expected_specs(core)
    present = _tables(conn)
    actions: list[Action] = []
    foreign: list[str] = []
    rebuilt: dict[str, Rebuild] = {}
    created: set[str] = set()
    repoints: dict[tuple[str, str], list[str]] = {}  # (dropped parent, canonical) -> columns
    actual: dict[str, TableSpec] = {}

    for table in order:
        if table not in present:
            actions.append(Action("create table", table, table, (table_sql[table],)))
            created.add(table)
            continue
        actual[table] = spec = describe_table(conn, table)
        _real, kept = table_compare(spec, expected[table], table)
        in_place = _in_place(table, spec, expected[table], present, set(order))
        if in_place is None:
            rebuild = _plan_rebuild(conn, table, table_sql[table], spec, expected[table])
            rebuilt[table] = rebuild
            notes = []
            if rebuild.carried:
                notes.append(f"carrying {', '.join(rebuild.carried)} along")
            if rebuild.archive:
                notes.append(f"the original kept whole as hive_store_legacy_{table}")
            actions.append(Action(
                "rebuild", table, table,
                (rebuild.create_sql,
                 f"INSERT INTO {_REBUILD} ({', '.join(rebuild.targets)}) "
                 f"SELECT {', '.join(rebuild.sources)} FROM {_q(table)}",
                 f"DROP TABLE {_q(table)}", f"ALTER TABLE {_REBUILD} RENAME TO {_q(table)}"),
                "; ".join(notes), rebuild))
            foreign.extend(f"{table}: foreign column {c} (kept)" for c in rebuild.carried)
            continue
        added, table_repoints = in_place
        for col in added:
            definition = column_def(table_sql[table], col)
            actions.append(Action("add column", table, f"{table}.{col}",
                                  (f"ALTER TABLE {table} ADD COLUMN {definition}",)))
        for (column, old, new) in table_repoints:
            repoints.setdefault((old, new), []).append(f"{table}.{column}")
        foreign.extend(f"{table}: {k}" for k in kept)

    for (old, new), columns in sorted(repoints.items()):
        actions.append(Action(
            "repoint", new, f"{', '.join(columns)}: {old} -> {new}",
            (f"ALTER TABLE {_q(new)} RENAME TO {_q(old)}",
             f"ALTER TABLE {_q(old)} RENAME TO {_q(new)}"),
            f"renaming {new} to {old} and back makes SQLite rewrite the references; "
            "no table is rebuilt"))

    for table in order:
        wanted = {i[0]: i for i in expected[table].indexes if not i[0].startswith("<")}
        if table in created or table in rebuilt:
            have: dict[str, Any] = {}
        else:
            have = {i[0]: i for i in actual[table].indexes if not i[0].startswith("<")}
            extra_cols = [c for c in actual[table].column_names
                          if c not in expected[table].column_names]
            for name, spec_i in sorted(have.items()):
                if name in wanted:
                    if wanted[name] != spec_i:
                        actions.append(Action("drop index", table, name,
                                              (f"DROP INDEX {_q(name)}",), "not canonical"))
                elif not foreign_index(spec_i, extra_cols):
                    actions.append(Action("drop index", table, name, (f"DROP INDEX {_q(name)}",),
                                          "UNIQUE over Hive columns: it could refuse "
                                          "hive-store's writes"))
        for name in sorted(wanted):
            if name not in have or have[name] != wanted[name]:
                actions.append(Action("create index", table, name, (index_sql[name],)))

    for name in sorted(present - set(order)):
        if not name.startswith(("sqlite_", "hive_store_")) and name != "schema_migrations":
            foreign.append(f"foreign table {name} (kept)")
    return AdoptionPlan(state, order, actions, foreign)


def _addable(column: tuple[str, str, int, str | None, int], expected: TableSpec) -> bool:
    """Whether ``ALTER TABLE … ADD COLUMN`` can add this canonical column."""
    name, _type, notnull, default, pk = column
    if pk or (notnull and default is None):
        return False
    if default is not None and (default.startswith("(")
                                or default.upper().startswith("CURRENT_")):
        return False  # ADD COLUMN takes constant defaults only
    in_unique = any(i[0].startswith("<") and name in [c for c, _ in i[3]]
                    for i in expected.indexes)
    in_fk = any(fk[0] == name for fk in expected.foreign_keys)
    return not in_unique and not in_fk


def _in_place(table: str, actual: TableSpec, expected: TableSpec, present: set[str],
              canonical: set[str]) -> tuple[list[str], list[tuple[str, str, str]]] | None:
    """``(columns to add, foreign keys to re-point)`` when the table can be brought to the
    canonical shape without a rebuild, else ``None``."""
    acols = {c[0]: c for c in actual.columns}
    ecols = {c[0]: c for c in expected.columns}
    common = [c for c in actual.column_names if c in ecols]
    if list(expected.column_names[:len(common)]) != common:
        return None  # Hive columns in another order, or a missing one before present ones
    if any(acols[c] != ecols[c] for c in common):
        return None
    extra = [c for c in acols if c not in ecols]
    if not all(foreign_column_ok(acols[c]) and c not in HIVE_LEGACY_COLUMNS.get(table, ())
               for c in extra):
        return None  # Hive's own older shape, or a column hive-store's inserts would fail on
    automatic = ({i for i in actual.indexes if i[0].startswith("<")}
                 != {i for i in expected.indexes if i[0].startswith("<")})
    if automatic:
        return None  # PRIMARY KEY / UNIQUE constraints differ
    missing = [c for c in expected.columns if c[0] not in acols]
    if not all(_addable(c, expected) for c in missing):
        return None
    if actual.checks != expected.checks or actual.uniques != expected.uniques:
        return None
    unexpected = [fk for fk in set(actual.foreign_keys) - set(expected.foreign_keys)
                  if fk[0] not in extra]
    wanted = set(expected.foreign_keys) - set(actual.foreign_keys)
    repoints = []
    for fk in sorted(unexpected):
        column, parent, to, on_update, on_delete = fk
        match = [w for w in wanted if (w[0], w[2], w[3], w[4]) == (column, to, on_update,
                                                                   on_delete)]
        if len(match) != 1 or parent in present or parent in canonical:
            return None  # only a reference to a table that no longer exists is re-pointed
        wanted.discard(match[0])
        repoints.append((column, parent, match[0][1]))
    if wanted:
        return None
    return [c[0] for c in missing], repoints


def column_def(create_sql: str, column: str) -> str:
    """The column definition of ``column`` in a CREATE TABLE statement."""
    for part in table_parts(create_sql)[0]:
        if re.match(rf"[\"`\[]?{re.escape(column)}[\"`\]]?(\s|$)", part, re.I):
            return " ".join(part.split())
    raise MigrationError(f"cannot find the definition of column {column}")


_CONSTRAINT = re.compile(r"(CONSTRAINT|PRIMARY\s+KEY|UNIQUE|CHECK|FOREIGN\s+KEY)\b", re.I)


def _plan_rebuild(conn: sqlite3.Connection, table: str, create_sql: str, actual: TableSpec,
                  expected: TableSpec) -> Rebuild:
    have = list(actual.column_names)
    targets: list[str] = []
    sources: list[str] = []
    used: set[str] = set()
    for col, _type, notnull, default, _pk in expected.columns:
        if col in have:
            targets.append(_q(col))
            sources.append(_q(col))
            used.add(col)
            continue
        for expr, needs in SOURCES.get(table, {}).get(col, ()):
            if set(needs) <= set(have):
                targets.append(_q(col))
                sources.append(expr)
                used.update(needs)
                break
        else:
            if notnull and default is None:
                raise MigrationError(
                    f"cannot adopt {table}: the canonical column {col} is NOT NULL and the legacy "
                    f"table has no value for it (columns: {', '.join(actual.column_names)})"
                )
    legacy_sql = conn.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name=?",
                              (table,)).fetchone()[0]
    acols = {c[0]: c for c in actual.columns}
    carried = [c for c in have if c not in used and c not in HIVE_LEGACY_COLUMNS.get(table, ())
               and foreign_column_ok(acols[c])]
    carried_defs = [column_def(legacy_sql, c) for c in carried]
    targets.extend(_q(c) for c in carried)
    sources.extend(_q(c) for c in carried)
    used.update(carried)
    if carried_defs:
        parts, tail = table_parts(create_sql)
        at = next((i for i, p in enumerate(parts) if _CONSTRAINT.match(p)), len(parts))
        parts[at:at] = carried_defs
        new_sql = f"CREATE TABLE {_REBUILD} (\n    " + ",\n    ".join(parts) + "\n)"
        new_sql += f" {tail}" if tail else ""
    else:
        new_sql = re.sub(rf"CREATE\s+TABLE\s+{table}\b", f"CREATE TABLE {_REBUILD}",
                         create_sql, count=1, flags=re.I)
    survivors = set(expected.column_names) | set(carried)
    recreate = []
    for name, kind, sql in conn.execute(
            "SELECT name, type, sql FROM sqlite_master WHERE tbl_name = ? "
            "AND type IN ('index', 'trigger') AND sql IS NOT NULL", (table,)):
        if kind == "index":
            spec = next((i for i in actual.indexes if i[0] == name), None)
            if spec is None or name in {i[0] for i in expected.indexes} or not all(
                    c in survivors for c, _ in spec[3]) or not foreign_index(spec, carried):
                continue
        recreate.append((name, sql))
    return Rebuild(new_sql, tuple(targets), tuple(sources), tuple(carried),
                   bool(set(have) - used), tuple(recreate))


# -- carrying it out --------------------------------------------------------------------------


@attrs.define
class AdoptionReport:
    """What adoption did; also stored as JSON in ``hive_store_adoption``."""

    state: str
    backup: str | None
    created_tables: list[str] = attrs.field(factory=list)
    added_columns: list[str] = attrs.field(factory=list)
    repointed: list[str] = attrs.field(factory=list)
    rebuilt_tables: list[str] = attrs.field(factory=list)
    archived_tables: list[str] = attrs.field(factory=list)
    indexes_created: list[str] = attrs.field(factory=list)
    indexes_dropped: list[str] = attrs.field(factory=list)
    foreign_kept: list[str] = attrs.field(factory=list)
    not_recreated: list[str] = attrs.field(factory=list)
    row_counts: dict[str, int] = attrs.field(factory=dict)
    violations: list[dict[str, Any]] = attrs.field(factory=list)
    migrations: list[str] = attrs.field(factory=list)
    hive_versions_recorded: list[int] = attrs.field(factory=list)
    phases: dict[str, float] = attrs.field(factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        per_table: dict[str, int] = {}
        for v in self.violations:
            per_table[v["table"]] = per_table.get(v["table"], 0) + 1
        lines = [
            f"adopted a legacy Hive database ({self.state})",
            f"backup written to {self.backup}" if self.backup else "no backup (in-memory)",
            f"rows kept: {sum(self.row_counts.values())} in {len(self.row_counts)} tables",
        ]
        for label, items in (("created tables", self.created_tables),
                             ("added columns", self.added_columns),
                             ("foreign keys re-pointed", self.repointed),
                             ("rebuilt tables", self.rebuilt_tables),
                             ("original tables kept as", self.archived_tables),
                             ("kept as other programs left them", self.foreign_kept),
                             ("could not be recreated after a rebuild", self.not_recreated),
                             ("then ran", self.migrations)):
            if items:
                lines.append(f"{label}: {', '.join(items)}")
        if self.hive_versions_recorded:
            lines.append(f"recorded Hive migration versions {_ranges(self.hive_versions_recorded)}"
                         " in schema_migrations: "
                         "the old Hive apps find nothing to apply")
        if per_table:
            detail = ", ".join(f"{t} {n}" for t, n in sorted(per_table.items()))
            lines.append(f"rows kept that break a foreign key: {len(self.violations)} ({detail})")
        else:
            lines.append("foreign keys: no violations")
        return "\n".join(lines)


def _ranges(values: list[int]) -> str:
    out: list[str] = []
    for v in sorted(values):
        if out and out[-1].split("-")[-1] == str(v - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{v}"
        else:
            out.append(str(v))
    return ", ".join(out)


class _Phases:
    def __init__(self, report: AdoptionReport) -> None:
        self.report = report
        self.t = time.perf_counter()

    def done(self, phase: str) -> None:
        now = time.perf_counter()
        self.report.phases[phase] = round(self.report.phases.get(phase, 0.0) + now - self.t, 4)
        self.t = now


def execute(conn: sqlite3.Connection, plan: AdoptionPlan, *, backup: str | None,
            progress: ProgressFn | None = None) -> AdoptionReport:
    """Carry out ``plan`` on ``conn``, which must be inside a write transaction with foreign
    keys off; the caller records the migration and commits."""
    start = time.perf_counter()
    report = AdoptionReport(state=plan.state.describe(), backup=backup,
                            foreign_kept=list(plan.foreign))
    phases = _Phases(report)
    schema_steps = [a for a in plan.actions if a.kind in ("create table", "add column",
                                                          "repoint")]
    for n, action in enumerate(schema_steps, 1):
        for statement in action.sql:
            conn.execute(statement)
        {"create table": report.created_tables, "add column": report.added_columns,
         "repoint": report.repointed}[action.kind].append(action.label)
        if progress is not None:
            progress("schema changes", n, len(schema_steps), "changes")
    phases.done("schema")
    for action in plan.actions:
        if action.kind == "rebuild":
            assert action.rebuild is not None
            _rebuild(conn, action.table, action.rebuild, report, progress)
    phases.done("rebuild")
    index_steps = [a for a in plan.actions if a.kind in ("drop index", "create index")]
    for n, action in enumerate(index_steps, 1):
        for statement in action.sql:
            conn.execute(statement)
        (report.indexes_dropped if action.kind == "drop index" else
         report.indexes_created).append(action.label)
        if progress is not None:
            progress("indexes", n, len(index_steps), "indexes")
    phases.done("indexes")
    report.violations = foreign_key_violations(conn, progress)
    phases.done("foreign_key_check")
    for table in plan.tables:
        report.row_counts[table] = conn.execute(f"SELECT count(*) FROM {_q(table)}").fetchone()[0]
    phases.done("row_counts")
    report.seconds = round(time.perf_counter() - start, 3)
    return report


def store_report(conn: sqlite3.Connection, report: AdoptionReport) -> None:
    """Keep the report in the database (``hive_store_adoption``)."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS {ADOPTION_TABLE} (adopted_at TEXT NOT NULL, "
                 "from_state TEXT NOT NULL, backup TEXT, report TEXT NOT NULL)")
    conn.execute(f"INSERT INTO {ADOPTION_TABLE} VALUES (?, ?, ?, ?)",
                 (datetime.now(UTC).isoformat(), report.state, report.backup,
                  json.dumps(attrs.asdict(report))))


def _rebuild(conn: sqlite3.Connection, table: str, plan: Rebuild, report: AdoptionReport,
             progress: ProgressFn | None) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {_REBUILD}")
    conn.execute(plan.create_sql)
    if plan.archive:
        archive = f"hive_store_legacy_{table}"
        conn.execute(f"DROP TABLE IF EXISTS {_q(archive)}")
        conn.execute(f"CREATE TABLE {_q(archive)} AS SELECT * FROM {_q(table)}")
        report.archived_tables.append(archive)
    total = conn.execute(f"SELECT count(*) FROM {_q(table)}").fetchone()[0]
    cols = ", ".join(plan.targets)
    select = ", ".join(plan.sources)
    copied = 0
    last = None
    while True:
        # Keyset chunks by rowid: constant memory, a progress report per chunk.
        where = "" if last is None else "WHERE rowid > ?"
        params: tuple[Any, ...] = () if last is None else (last,)
        bounds = conn.execute(
            f"SELECT max(rowid), count(*) FROM (SELECT rowid FROM {_q(table)} {where} "
            f"ORDER BY rowid LIMIT {CHUNK})", params).fetchone()
        if not bounds[1]:
            break
        high = bounds[0]
        conn.execute(
            f"INSERT INTO {_REBUILD} ({cols}) SELECT {select} FROM {_q(table)} "
            f"WHERE rowid <= ? {'AND rowid > ?' if last is not None else ''} ORDER BY rowid",
            (high, *params))
        copied += bounds[1]
        last = high
        if progress is not None:
            progress(f"copying {table}", copied, total, "rows")
    conn.execute(f"DROP TABLE {_q(table)}")
    conn.execute(f"ALTER TABLE {_REBUILD} RENAME TO {_q(table)}")
    for name, sql in plan.recreate:
        conn.execute("SAVEPOINT hive_store_recreate")
        try:
            conn.execute(sql)
        except sqlite3.Error:
            conn.execute("ROLLBACK TO hive_store_recreate")
            report.not_recreated.append(name)
        conn.execute("RELEASE hive_store_recreate")
    report.rebuilt_tables.append(table)


def foreign_key_violations(conn: sqlite3.Connection,
                           progress: ProgressFn | None = None) -> list[dict[str, Any]]:
    """Every row that breaks a foreign key: table, rowid, key, column, parent and value."""
    tables = sorted(t for (t,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite\\_%' "
        "ESCAPE '\\' AND name NOT LIKE 'hive\\_store\\_%' ESCAPE '\\'")
        if conn.execute("SELECT 1 FROM pragma_foreign_key_list(?)", (t,)).fetchone())
    out: list[dict[str, Any]] = []
    for n, table in enumerate(tables, 1):
        found = conn.execute(f"PRAGMA foreign_key_check({_q(table)})").fetchall()
        if found:
            fks = conn.execute("SELECT * FROM pragma_foreign_key_list(?)", (table,)).fetchall()
            pk_cols = [r[1] for r in conn.execute(
                "SELECT * FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk", (table,))]
            fk_cols = sorted({fk[3] for fk in fks})
            wanted = fk_cols + [c for c in pk_cols if c not in fk_cols]
            rows: dict[int, dict[str, Any]] = {}
            rowids = sorted({r[1] for r in found if r[1] is not None})
            select = ", ".join(_q(c) for c in wanted)
            for i in range(0, len(rowids), 500):  # the rows, 500 at a time
                chunk = rowids[i:i + 500]
                for rowid, *values in conn.execute(
                        f"SELECT rowid, {select} FROM {_q(table)} WHERE rowid IN "
                        f"({', '.join('?' * len(chunk))})", chunk):
                    rows[rowid] = dict(zip(wanted, values, strict=True))
        for _table, rowid, parent, fkid in found:
            cols = [fk[3] for fk in fks if fk[0] == fkid]
            values = rows.get(rowid, {})
            out.append({
                "table": table, "rowid": rowid, "parent": parent,
                "columns": cols, "values": {c: values.get(c) for c in cols},
                "key": {c: values.get(c) for c in pk_cols},
            })
        if progress is not None:
            progress("foreign key check", n, len(tables), "tables")
    return out
