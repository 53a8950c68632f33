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


def diff(actual: dict[str, TableSpec], expected: dict[str, TableSpec]) -> list[str]:
    """Human-readable differences; empty when the schemas are the same."""
    out: list[str] = []
    for name in sorted(expected.keys() - actual.keys()):
        out.append(f"missing table {name}")
    for name in sorted(actual.keys() - expected.keys()):
        out.append(f"extra table {name}")
    for name in sorted(actual.keys() & expected.keys()):
        out.extend(f"{name}: {d}" for d in table_diff(actual[name], expected[name]))
    return out


def table_diff(a: TableSpec, e: TableSpec) -> list[str]:
    """Differences of one table (``a`` actual, ``e`` expected)."""
    out: list[str] = []
    acols = {c[0]: c for c in a.columns}
    ecols = {c[0]: c for c in e.columns}
    for col in ecols.keys() - acols.keys():
        out.append(f"missing column {col}")
    for col in acols.keys() - ecols.keys():
        out.append(f"extra column {col}")
    for col in acols.keys() & ecols.keys():
        fields = ("name", "type", "not null", "default", "primary key")
        for label, x, y in zip(fields, acols[col], ecols[col], strict=True):
            if x != y:
                out.append(f"column {col}: {label} is {x!r}, expected {y!r}")
    if [c[0] for c in a.columns if c[0] in ecols] != [c[0] for c in e.columns if c[0] in acols]:
        out.append("column order differs")
    for fk in sorted(set(e.foreign_keys) - set(a.foreign_keys)):
        out.append(f"missing foreign key {fk[0]} -> {fk[1]}({fk[2]})")
    for fk in sorted(set(a.foreign_keys) - set(e.foreign_keys)):
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
        out.append(f"extra index {name}")
    for name in sorted(aidx.keys() & eidx.keys()):
        if aidx[name] != eidx[name]:
            out.append(f"index {name} differs: {aidx[name][1:]} vs expected {eidx[name][1:]}")
    return out


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
