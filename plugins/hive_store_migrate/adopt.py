"""Adopting databases written by the old Hive apps.

A legacy ``hive-ai.db`` has Hive tables but no hive-store migration record: usually the old
runner's ``schema_migrations`` at version 5 (migrations 001-005) or 10 (001-010, with the
``consensus_profiles_backup`` foreign key left dangling by migration 006), sometimes the
Electron app's tables without any version table. Adoption brings it to the canonical schema
(the core's migration 0001) in **one transaction**, after writing a backup next to the file:

* missing tables and missing trailing columns (the 010 additions) are added in place;
* a table whose structure differs otherwise is rebuilt the SQLite way (create the canonical
  table, copy the rows, drop the old one, rename) with foreign keys off for the transaction;
  the Electron ``conversations`` columns ``total_tokens_input/output`` and ``profile_id`` map
  onto ``input_tokens/output_tokens`` and ``consensus_profile_id``;
* when a rebuilt table had columns the canonical one lacks (``consensus_profiles`` in the 001
  shape had ``pipeline_profile_id``; the Electron ``conversations`` had ``title``, ``tags``, …),
  an exact copy of the original table is kept as ``hive_store_legacy_<table>``, so no legacy
  value is lost;
* indexes are made canonical;
* rows that break a foreign key (the old runtime wrote with enforcement off) are kept and
  listed in the report (``PRAGMA foreign_key_check`` afterwards finds exactly those);
* the record says the core schema's migration 0001 is applied; later migrations then run as
  usual. Legacy tables the canonical schema does not know (and ``schema_migrations``) are left
  untouched.

Values are copied by SQLite itself (``INSERT … SELECT``) into columns of the same declared
type, so no value changes form: old apps keep reading their timestamps, JSON text and 0/1.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from hive_store.errors import MigrationError
from hive_store.migrations import Migration
from hive_store.sqltext import table_parts
from hive_store_migrate.schema import TableSpec, describe, describe_table, table_diff

ProgressFn = Callable[[str, int, int], None]
"""``progress(table, rows_done, rows_total)`` while big tables are copied."""

HIVE_MARKERS = ("users", "conversations", "messages", "knowledge_conversations")
CHUNK = 50_000

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


@attrs.define
class AdoptionReport:
    """What adoption did; also stored as JSON in ``hive_store_adoption``."""

    state: str
    backup: str | None
    created_tables: list[str] = attrs.field(factory=list)
    added_columns: list[str] = attrs.field(factory=list)
    rebuilt_tables: list[str] = attrs.field(factory=list)
    archived_tables: list[str] = attrs.field(factory=list)
    indexes_created: list[str] = attrs.field(factory=list)
    indexes_dropped: list[str] = attrs.field(factory=list)
    row_counts: dict[str, int] = attrs.field(factory=dict)
    violations: list[dict[str, Any]] = attrs.field(factory=list)
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
                             ("rebuilt tables", self.rebuilt_tables),
                             ("original tables kept as", self.archived_tables)):
            if items:
                lines.append(f"{label}: {', '.join(items)}")
        if per_table:
            detail = ", ".join(f"{t} {n}" for t, n in sorted(per_table.items()))
            lines.append(f"rows kept that break a foreign key: {len(self.violations)} ({detail})")
        else:
            lines.append("foreign keys: no violations")
        return "\n".join(lines)


def detect(conn: sqlite3.Connection, record_table: str) -> LegacyState | None:
    """The legacy state of the database, or ``None`` if it is new or already ours."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if record_table in tables:
        adopted = conn.execute(
            f"SELECT 1 FROM {record_table} WHERE namespace = 'hive_store' LIMIT 1").fetchone()
        if adopted:
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


def backup_path(db_path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = db_path.with_name(f"{db_path.name}.pre-hive-store-{stamp}.bak")
    n = 1
    while candidate.exists():
        n += 1
        candidate = db_path.with_name(f"{db_path.name}.pre-hive-store-{stamp}-{n}.bak")
    return candidate


def write_backup(source: Path, dest: Path) -> None:
    """Online backup (SQLite's backup API) of the database file ``source`` to ``dest`` (0600).

    Call it while holding the write lock but before writing: a separate reading connection
    then copies a consistent snapshot (the backup API cannot read through a connection that
    is itself writing).
    """
    import os

    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    src = sqlite3.connect(source)
    target = sqlite3.connect(dest)
    try:
        src.backup(target, pages=4096)
    finally:
        target.close()
        src.close()


def _create_statements(core: Migration) -> tuple[dict[str, str], dict[str, str], list[str]]:
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


def adopt(conn: sqlite3.Connection, core: Migration, state: LegacyState, *,
          backup: Path | None, progress: ProgressFn | None = None) -> AdoptionReport:
    """Bring the legacy database on ``conn`` to ``core``'s schema.

    ``conn`` must be inside a write transaction with foreign keys off; the caller commits.
    """
    start = time.perf_counter()
    report = AdoptionReport(state=state.describe(), backup=str(backup) if backup else None)
    table_sql, index_sql, order = _create_statements(core)
    expected = _expected_specs(core)
    present = set(state.tables)

    for table in order:
        if table not in present:
            conn.execute(table_sql[table])
            report.created_tables.append(table)
            continue
        actual = describe_table(conn, table)
        differences = [d for d in table_diff(actual, expected[table]) if "index" not in d]
        if not differences:
            continue
        added = _trailing_missing_columns(actual, expected[table])
        if added is not None:
            for col in added:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {_column_def(table_sql[table], col)}")
                report.added_columns.append(f"{table}.{col}")
            continue
        _rebuild(conn, table, table_sql[table], actual, expected[table], report, progress)

    _fix_indexes(conn, order, index_sql, expected, report)
    for table in order:
        report.row_counts[table] = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    report.violations = foreign_key_violations(conn)
    report.seconds = round(time.perf_counter() - start, 3)
    conn.execute("CREATE TABLE IF NOT EXISTS hive_store_adoption (adopted_at TEXT NOT NULL, "
                 "from_state TEXT NOT NULL, backup TEXT, report TEXT NOT NULL)")
    conn.execute("INSERT INTO hive_store_adoption VALUES (?, ?, ?, ?)",
                 (datetime.now(UTC).isoformat(), report.state, report.backup,
                  json.dumps(attrs.asdict(report))))
    return report


def _expected_specs(core: Migration) -> dict[str, TableSpec]:
    mem = sqlite3.connect(":memory:")
    try:
        for statement in core.statements:
            mem.execute(statement)
        return describe(mem)
    finally:
        mem.close()


def _trailing_missing_columns(actual: TableSpec, expected: TableSpec) -> list[str] | None:
    """Columns to add in place (ALTER TABLE ADD COLUMN), or None if a rebuild is needed."""
    have = actual.column_names
    want = expected.column_names
    if want[:len(have)] != have:
        return None
    if actual.foreign_keys != expected.foreign_keys or actual.checks != expected.checks \
            or actual.uniques != expected.uniques:
        return None
    if actual.columns != expected.columns[:len(have)]:
        return None
    extra = [c for c in expected.columns[len(have):]]
    # ADD COLUMN cannot add PRIMARY KEY/UNIQUE columns, nor NOT NULL without a default.
    if any(c[4] or (c[2] and c[3] is None) for c in extra):
        return None
    return [c[0] for c in extra]


def _column_def(create_sql: str, column: str) -> str:
    """The column definition of ``column`` in a CREATE TABLE statement."""
    for part in table_parts(create_sql)[0]:
        if re.match(rf"[\"`\[]?{re.escape(column)}\b", part):
            return " ".join(part.split())
    raise MigrationError(f"cannot find the definition of column {column}")


def _rebuild(conn: sqlite3.Connection, table: str, create_sql: str, actual: TableSpec,
             expected: TableSpec, report: AdoptionReport, progress: ProgressFn | None) -> None:
    temp = "hive_store_rebuild"
    conn.execute(f'DROP TABLE IF EXISTS "{temp}"')
    conn.execute(re.sub(rf"CREATE\s+TABLE\s+{table}\b", f'CREATE TABLE "{temp}"', create_sql,
                        count=1, flags=re.I))
    have = set(actual.column_names)
    targets: list[str] = []
    sources: list[str] = []
    used: set[str] = set()
    for col, _type, notnull, default, _pk in expected.columns:
        if col in have:
            targets.append(col)
            sources.append(_q(col))
            used.add(col)
            continue
        for expr, needs in SOURCES.get(table, {}).get(col, ()):
            if set(needs) <= have:
                targets.append(col)
                sources.append(expr)
                used.update(needs)
                break
        else:
            if notnull and default is None:
                raise MigrationError(
                    f"cannot adopt {table}: the canonical column {col} is NOT NULL and the legacy "
                    f"table has no value for it (columns: {', '.join(actual.column_names)})"
                )
    if have - used:
        archive = f"hive_store_legacy_{table}"
        conn.execute(f'DROP TABLE IF EXISTS "{archive}"')
        conn.execute(f'CREATE TABLE "{archive}" AS SELECT * FROM "{table}"')
        report.archived_tables.append(archive)
    total = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    cols = ", ".join(_q(c) for c in targets)
    select = ", ".join(sources)
    copied = 0
    last = None
    while True:
        # Keyset chunks by rowid: constant memory, a progress report per chunk.
        where = "" if last is None else "WHERE rowid > ?"
        params: tuple[Any, ...] = () if last is None else (last,)
        bounds = conn.execute(
            f'SELECT max(rowid), count(*) FROM (SELECT rowid FROM "{table}" {where} '
            f"ORDER BY rowid LIMIT {CHUNK})", params).fetchone()
        if not bounds[1]:
            break
        high = bounds[0]
        conn.execute(
            f'INSERT INTO "{temp}" ({cols}) SELECT {select} FROM "{table}" '
            f"WHERE rowid <= ? {'AND rowid > ?' if last is not None else ''} ORDER BY rowid",
            (high, *params))
        copied += bounds[1]
        last = high
        if progress is not None:
            progress(table, copied, total)
    conn.execute(f'DROP TABLE "{table}"')
    conn.execute(f'ALTER TABLE "{temp}" RENAME TO "{table}"')
    report.rebuilt_tables.append(table)


def _fix_indexes(conn: sqlite3.Connection, order: list[str], index_sql: dict[str, str],
                 expected: dict[str, TableSpec], report: AdoptionReport) -> None:
    for table in order:
        actual = {i[0]: i for i in describe_table(conn, table).indexes}
        wanted = {i[0]: i for i in expected[table].indexes}
        for name, spec in actual.items():
            if name.startswith("<"):
                continue  # automatic (UNIQUE/PK) indexes follow the table definition
            if name not in wanted or wanted[name] != spec:
                conn.execute(f'DROP INDEX "{name}"')
                report.indexes_dropped.append(name)
        for name in wanted:
            if name.startswith("<"):
                continue
            if name not in actual or actual[name] != wanted[name]:
                conn.execute(index_sql[name])
                report.indexes_created.append(name)


def foreign_key_violations(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every row that breaks a foreign key: table, rowid, key, column, parent and value."""
    out: list[dict[str, Any]] = []
    fk_cache: dict[str, list[tuple[Any, ...]]] = {}
    for table, rowid, parent, fkid in conn.execute("PRAGMA foreign_key_check").fetchall():
        if table.startswith("hive_store_"):
            continue
        fks = fk_cache.setdefault(table, conn.execute(
            "SELECT * FROM pragma_foreign_key_list(?)", (table,)).fetchall())
        cols = [fk[3] for fk in fks if fk[0] == fkid]
        pk_cols = [r[1] for r in conn.execute("SELECT * FROM pragma_table_info(?)", (table,))
                   if r[5]]
        row = None
        if rowid is not None and cols + pk_cols:
            row = conn.execute(f"SELECT {', '.join(_q(c) for c in cols + pk_cols)} "
                               f"FROM {_q(table)} WHERE rowid = ?", (rowid,)).fetchone()
        values = dict(zip(cols + pk_cols, row, strict=True)) if row else {}
        out.append({
            "table": table, "rowid": rowid, "parent": parent,
            "columns": cols, "values": {c: values.get(c) for c in cols},
            "key": {c: values.get(c) for c in pk_cols},
        })
    return out
