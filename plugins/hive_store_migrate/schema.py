"""Describe a SQLite schema structurally and compare two of them.

Used by ``hive-store schema diff``, by adoption (to decide which legacy tables need a rebuild)
and by the tests. A table is described by its columns (name, declared type, NOT NULL, default,
primary-key position), foreign keys, CHECK clauses, table-level UNIQUE constraints and its
indexes (name, unique, partial WHERE, columns with direction).
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

import attrs

from hive_store.sqltext import paren_bounds, strip_comments

# Tables that are bookkeeping, not schema: ours, the old Hive runner's, SQLite's.
IGNORED_PREFIXES = ("hive_store_", "sqlite_")
IGNORED_TABLES = frozenset({"schema_migrations"})

# Columns of Hive's own older shapes of a table (001/006 consensus_profiles, db_migration.rs
# conversations). When such a table is rebuilt they have no place in the canonical one: the
# original table is kept whole as hive_store_legacy_<table>. Any other extra column belongs to
# another program and is carried along into the rebuilt table.
STAGES = ("generator", "refiner", "validator", "curator")
HIVE_LEGACY_COLUMNS: dict[str, frozenset[str]] = {
    "consensus_profiles": frozenset({
        "pipeline_profile_id", "name", "user_id", "is_default",
        *(f"{s}_model_id" for s in STAGES), *(f"{s}_temperature" for s in STAGES)}),
    "conversations": frozenset({
        "title", "profile_id", "context_type", "total_tokens_input", "total_tokens_output",
        "performance_score", "quality_rating", "is_archived", "is_favorite", "tags",
        "metadata"}),
}


@attrs.frozen
class TableSpec:
    """The structure of one table."""

    columns: tuple[tuple[str, str, int, str | None, int], ...]
    foreign_keys: tuple[tuple[str, str, str, str, str], ...]
    checks: tuple[str, ...]
    uniques: tuple[str, ...]
    indexes: tuple[tuple[str, int, str, tuple[tuple[str, int], ...]], ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c[0] for c in self.columns)


def _norm_default(value: str | None) -> str | None:
    if value is None:
        return None
    v = value.strip()
    if len(v) >= 2 and v[0] == v[-1] == '"':  # DQS string default, same value as '...'
        v = "'" + v[1:-1].replace("'", "''") + "'"
    return v


def _norm_ws(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _clauses(sql: str, keyword: str) -> tuple[str, ...]:
    text = strip_comments(sql)
    out = []
    for match in re.finditer(rf"\b{keyword}\s*\(", text, flags=re.I):
        open_at, close_at = paren_bounds(text, match.end() - 1)
        out.append(_norm_ws(text[open_at + 1:close_at]))
    return tuple(sorted(out))


def describe_table(conn: sqlite3.Connection, table: str) -> TableSpec:
    """Read one table's structure from PRAGMAs and its CREATE statement."""
    cols = tuple(
        (r[1], (r[2] or "").upper(), int(r[3]), _norm_default(r[4]), int(r[5]))
        for r in conn.execute("SELECT * FROM pragma_table_info(?)", (table,))
    )
    fks = tuple(sorted(
        (r[3], r[2], r[4] or "", r[5], r[6])
        for r in conn.execute("SELECT * FROM pragma_foreign_key_list(?)", (table,))
    ))
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name=?",
                       (table,)).fetchone()[0] or ""
    # UNIQUE(...) table constraints; column-level UNIQUE shows up as an autoindex below.
    uniques = tuple(u for u in _clauses(sql, "UNIQUE") if u)
    indexes = []
    for r in conn.execute("SELECT name, \"unique\", origin, partial FROM pragma_index_list(?)",
                          (table,)):
        name, unique, origin, partial = r
        if name.startswith(IGNORED_PREFIXES[0]):
            continue  # indexes plugins add (e.g. hive_store_health_*) are not Hive schema
        cols_info = tuple(
            (x[2] or "", int(x[3]))
            for x in conn.execute("SELECT * FROM pragma_index_xinfo(?)", (name,)) if x[5]
        )
        where = ""
        if partial:
            isql = conn.execute("SELECT sql FROM sqlite_master WHERE name=?", (name,)).fetchone()[0]
            where = _norm_ws(re.split(r"\bWHERE\b", isql, flags=re.I, maxsplit=1)[1])
        label = name if origin == "c" else f"<{origin}:{','.join(c for c, _ in cols_info)}>"
        indexes.append((label, int(unique), where, cols_info))
    return TableSpec(cols, fks, _clauses(sql, "CHECK"), uniques, tuple(sorted(indexes)))


def describe(conn: sqlite3.Connection, *, include_ignored: bool = False) -> dict[str, TableSpec]:
    """Every table's structure, by name (bookkeeping tables left out unless asked)."""
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    return {n: describe_table(conn, n) for n in names
            if include_ignored or not (n.startswith(IGNORED_PREFIXES) or n in IGNORED_TABLES)}


@attrs.frozen
class SchemaReport:
    """How a database differs from the canonical schema.

    :ivar differences: real differences (a Hive table or index that is not as it should be);
        ``hive-store schema diff`` exits 1 when there are any
    :ivar foreign: what other programs added and hive-store keeps as it is: tables it does not
        know, nullable (or defaulted) columns added to a Hive table, indexes of their own
    """

    differences: list[str]
    foreign: list[str]


def diff(actual: dict[str, TableSpec], expected: dict[str, TableSpec]) -> list[str]:
    """The real differences (what :func:`compare` does not count as foreign); empty when the
    Hive tables are as they should be."""
    return compare(actual, expected).differences


def compare(actual: dict[str, TableSpec], expected: dict[str, TableSpec]) -> SchemaReport:
    """Differences of ``actual`` from ``expected``, split into real and foreign (kept)."""
    out: list[str] = []
    foreign: list[str] = []
    for name in sorted(expected.keys() - actual.keys()):
        out.append(f"missing table {name}")
    for name in sorted(actual.keys() - expected.keys()):
        foreign.append(f"foreign table {name} (kept)")
    for name in sorted(actual.keys() & expected.keys()):
        real, kept = table_compare(actual[name], expected[name], name)
        out.extend(f"{name}: {d}" for d in real)
        foreign.extend(f"{name}: {d}" for d in kept)
    return SchemaReport(out, foreign)


def foreign_column_ok(column: tuple[str, str, int, str | None, int]) -> bool:
    """Whether a column other programs added can stay in a Hive table: hive-store's inserts
    name their columns, so it must take a default (nullable, or a declared default) and not be
    part of the primary key."""
    _name, _type, notnull, default, pk = column
    return not pk and (not notnull or default is not None)


def table_diff(a: TableSpec, e: TableSpec) -> list[str]:
    """Real differences of one table (``a`` actual, ``e`` expected)."""
    return table_compare(a, e)[0]


def table_compare(a: TableSpec, e: TableSpec,
                  table: str = "") -> tuple[list[str], list[str]]:
    """Differences of one table: ``(real, foreign)`` (``a`` actual, ``e`` expected)."""
    out: list[str] = []
    kept: list[str] = []
    acols = {c[0]: c for c in a.columns}
    ecols = {c[0]: c for c in e.columns}
    for col in (c for c in ecols if c not in acols):
        out.append(f"missing column {col}")
    legacy = HIVE_LEGACY_COLUMNS.get(table, frozenset())
    extra = [c for c in acols if c not in ecols and c not in legacy]
    for col in (c for c in acols if c in legacy):
        out.append(f"extra column {col} (of an older Hive shape of this table)")
    for col in extra:
        if foreign_column_ok(acols[col]):
            kept.append(f"foreign column {col} (kept)")
        else:
            out.append(f"extra column {col} (NOT NULL without a default, or in the primary key: "
                       "hive-store's inserts would fail)")
    for col in (c for c in acols if c in ecols):
        fields = ("name", "type", "not null", "default", "primary key")
        for label, x, y in zip(fields, acols[col], ecols[col], strict=True):
            if x != y:
                out.append(f"column {col}: {label} is {x!r}, expected {y!r}")
    if [c[0] for c in a.columns if c[0] in ecols] != [c[0] for c in e.columns if c[0] in acols]:
        out.append("column order differs")
    for fk in sorted(set(e.foreign_keys) - set(a.foreign_keys)):
        out.append(f"missing foreign key {fk[0]} -> {fk[1]}({fk[2]})")
    for fk in sorted(set(a.foreign_keys) - set(e.foreign_keys)):
        if fk[0] in extra:
            kept.append(f"foreign key of foreign column {fk[0]} -> {fk[1]}({fk[2]}) (kept)")
        else:
            out.append(f"unexpected foreign key {fk[0]} -> {fk[1]}({fk[2]})")
    constraints: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
        ("CHECK", a.checks, e.checks), ("UNIQUE", a.uniques, e.uniques)]
    for kind, have, want in constraints:
        out.extend(f"missing {kind} ({c})" for c in sorted(set(want) - set(have)))
        out.extend(f"unexpected {kind} ({c})" for c in sorted(set(have) - set(want)))
    aidx = {i[0]: i for i in a.indexes}
    eidx = {i[0]: i for i in e.indexes}
    for name in sorted(eidx.keys() - aidx.keys()):
        out.append(f"missing index {name}")
    for name in sorted(aidx.keys() - eidx.keys()):
        if foreign_index(aidx[name], extra):
            kept.append(f"foreign index {name} (kept)")
        else:
            out.append(f"extra index {name}")
    for name in sorted(aidx.keys() & eidx.keys()):
        if aidx[name] != eidx[name]:
            out.append(f"index {name} differs: {aidx[name][1:]} vs expected {eidx[name][1:]}")
    return out, kept


def foreign_index(index: tuple[str, int, str, tuple[tuple[str, int], ...]],
                  foreign_columns: list[str]) -> bool:
    """Whether an index not in the canonical schema is another program's own and harmless to
    hive-store: a named (``CREATE INDEX``) index that is not UNIQUE, or whose columns are all
    foreign (a UNIQUE index over Hive columns could refuse hive-store's writes)."""
    name, unique, _where, columns = index
    if name.startswith("<"):
        return False  # an automatic index: a PRIMARY KEY / UNIQUE constraint of the table
    return not unique or all(c in foreign_columns for c, _ in columns)


def canonical(migration_statements: list[str]) -> dict[str, TableSpec]:
    """The structure a fresh database gets from these statements (run in memory)."""
    conn = sqlite3.connect(":memory:")
    try:
        for statement in migration_statements:
            conn.execute(statement)
        return describe(conn)
    finally:
        conn.close()


def as_jsonable(specs: dict[str, TableSpec]) -> dict[str, Any]:
    return {name: attrs.asdict(spec) for name, spec in specs.items()}
