"""The remote schema and the SQL the mirror sends.

Each mirrored table is created in D1 from the local table's own ``CREATE TABLE`` (so columns,
types, defaults, NOT NULL, UNIQUE, CHECK and foreign keys are the same), with two columns
added: ``_hlc`` (the row's clock, TEXT) and ``_origin`` (the device that wrote it). Unique
indexes are copied; other indexes are not (each index costs D1 rows written).

Bookkeeping tables in D1 (``_hive_*``; D1 reserves ``_cf_*``):

``_hive_meta(key, value)``
    ``layout_version`` (this module's :data:`LAYOUT_VERSION`) and a fingerprint per table.
``_hive_tombstones(tbl, pk, hlc, origin)``
    the clock of each deleted row; an upsert older than the tombstone does not resurrect it.
``_hive_changes(seq, tbl, pk)``
    the change log for pulls: triggers on every mirrored table (insert, update) and on the
    tombstones append the key of each row written. D1 runs every write on one primary, one batch
    at a time, so ``seq`` increases in commit order and ``seq > cursor`` never skips a row.

Statements are sized to D1's limits: at most 100 bound parameters (multi-row ``VALUES`` with
``floor(100 / parameters per row)`` rows) and 100 KB of SQL text; values are always bound.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from hive_store.errors import ConfigurationError
from hive_store.sqltext import strip_comments, table_parts

LAYOUT_VERSION = 1
MAX_PARAMS = 100
MAX_SQL_BYTES = 100_000
MAX_COLUMNS = 100
SAFE_INT = 2**53 - 1

META = "_hive_meta"
TOMBSTONES = "_hive_tombstones"
CHANGES = "_hive_changes"
EXTRA_COLUMNS = ("_hlc", "_origin")

def quote(name: str) -> str:
    """A quoted SQL identifier (names come from the schema, never from users)."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal for a schema name or a device id (never for row values)."""
    return "'" + text.replace("'", "''") + "'"


@attrs.frozen(cache_hash=True)
class TableInfo:
    """What the mirror knows about one mirrored table.

    :ivar columns: the entity's columns (what is pushed, pulled and compared), in order
    :ivar kinds: each column's kind (``str``, ``int``, ``float``, ``bool``, ``datetime`` …)
    :ivar parents: mirrored tables this table references (foreign keys)
    """

    name: str
    pk: str
    columns: tuple[str, ...]
    kinds: tuple[str, ...]
    entity: type
    ddl: str
    unique_indexes: tuple[str, ...]
    parents: tuple[str, ...]

    @property
    def pk_index(self) -> int:
        return self.columns.index(self.pk)

    @property
    def int_columns(self) -> tuple[int, ...]:
        return tuple(i for i, k in enumerate(self.kinds) if k in ("int", "bool"))

    @property
    def params_per_row(self) -> int:
        """Bound parameters per pushed row: the columns and the clock (origin is inlined)."""
        return len(self.columns) + 1

    def fingerprint(self) -> str:
        text = "\n".join([str(LAYOUT_VERSION), self.ddl, *self.unique_indexes,
                          ",".join(self.columns)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- reading the local schema ------------------------------------------------------------------


def remote_table_ddl(name: str, local_sql: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for D1: the local definition plus ``_hlc``/``_origin``."""
    if not re.match(r"^CREATE\s+TABLE\b", strip_comments(local_sql).strip(), re.I):
        raise ConfigurationError(f"table {name!r}: cannot read its definition for D1")
    try:
        parts, tail = table_parts(local_sql)
    except ValueError:
        raise ConfigurationError(f"table {name!r}: cannot read its definition for D1") from None
    columns: list[str] = []
    constraints: list[str] = []
    for part in parts:
        (constraints if _is_constraint(part) else columns).append(" ".join(part.split()))
    names = {re.split(r"\s", c, maxsplit=1)[0].strip('"`[]').lower() for c in columns}
    for extra in EXTRA_COLUMNS:
        if extra in names:
            raise ConfigurationError(f"table {name!r} already has a column {extra!r}")
    columns += ["_hlc TEXT NOT NULL DEFAULT ''", "_origin TEXT NOT NULL DEFAULT ''"]
    body = ",\n  ".join(columns + constraints)
    suffix = f" {' '.join(tail.split())}" if tail else ""
    return f"CREATE TABLE IF NOT EXISTS {quote(name)} (\n  {body}\n){suffix}"


def _is_constraint(part: str) -> bool:
    """Whether a table-body item is a table constraint (not a column named like a keyword)."""
    match = re.match(r"([A-Za-z_]+)\s*(.*)", part, re.S)
    if not match:
        return False
    first, rest = match.group(1).upper(), match.group(2)
    if first == "CONSTRAINT":
        return True
    if first in ("CHECK", "UNIQUE"):
        return rest.startswith("(")
    if first in ("PRIMARY", "FOREIGN"):
        return rest.upper().startswith("KEY")
    return False


def remote_index_ddl(sql: str) -> str:
    """A local ``CREATE UNIQUE INDEX`` as ``CREATE UNIQUE INDEX IF NOT EXISTS``."""
    text = " ".join(strip_comments(sql).split())
    return re.sub(r"^CREATE\s+UNIQUE\s+INDEX\s+(IF\s+NOT\s+EXISTS\s+)?",
                  "CREATE UNIQUE INDEX IF NOT EXISTS ", text, flags=re.I)


def load_tables(conn: sqlite3.Connection, codecs: Sequence[Any]) -> list[TableInfo]:
    """Table facts for the codecs' tables, parents before children (foreign-key order).

    Raises :class:`hive_store.ConfigurationError` for a table D1 cannot hold or one that
    references a table that is not mirrored.
    """
    names = {c.table for c in codecs}
    infos: dict[str, TableInfo] = {}
    for codec in codecs:
        row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                           (codec.table,)).fetchone()
        if row is None or not row[0]:
            raise ConfigurationError(f"D1 mirror: the table {codec.table!r} does not exist here")
        width = len(codec.columns) + len(EXTRA_COLUMNS)
        if width > MAX_COLUMNS or len(codec.columns) + 1 > MAX_PARAMS:
            raise ConfigurationError(
                f"D1 mirror: {codec.table!r} has {len(codec.columns)} columns; D1 allows "
                f"{MAX_COLUMNS - len(EXTRA_COLUMNS)} in a mirrored table")
        parents = []
        for fk in conn.execute(f"PRAGMA foreign_key_list({quote(codec.table)})").fetchall():
            parent = fk[2]
            if parent not in names:
                raise ConfigurationError(
                    f"D1 mirror: {codec.table!r} references {parent!r}, which is not mirrored "
                    f"(mirror both, or neither: D1 enforces foreign keys)")
            if parent != codec.table and parent not in parents:
                parents.append(parent)
        unique = tuple(
            remote_index_ddl(r[0]) for r in conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                "AND sql IS NOT NULL ORDER BY name", (codec.table,)).fetchall()
            if re.match(r"^\s*CREATE\s+UNIQUE\s+INDEX", r[0], re.I))
        kinds = tuple(f.kind for f in codec.fields)
        infos[codec.table] = TableInfo(
            name=codec.table, pk=codec.pk, columns=tuple(codec.columns), kinds=kinds,
            entity=codec.cls, ddl=remote_table_ddl(codec.table, row[0]),
            unique_indexes=unique, parents=tuple(parents))
    return topo_order(infos)


def topo_order(infos: dict[str, TableInfo]) -> list[TableInfo]:
    """Parents before children; ties by name (stable)."""
    ordered: list[TableInfo] = []
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:  # a cycle: deferred foreign keys in each batch cover it
            return
        state[name] = 1
        for parent in infos[name].parents:
            visit(parent)
        state[name] = 2
        ordered.append(infos[name])

    for name in sorted(infos):
        visit(name)
    return ordered


# -- the remote schema ----------------------------------------------------------------------------


def bookkeeping_ddl() -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {META} (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS {TOMBSTONES} (tbl TEXT NOT NULL, pk NOT NULL, "
        "hlc TEXT NOT NULL, origin TEXT NOT NULL, PRIMARY KEY (tbl, pk)) WITHOUT ROWID",
        f"CREATE TABLE IF NOT EXISTS {CHANGES} (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
        "tbl TEXT NOT NULL, pk NOT NULL)",
        f"CREATE TRIGGER IF NOT EXISTS _hive_log_tombstones_ins AFTER INSERT ON {TOMBSTONES} "
        f"BEGIN INSERT INTO {CHANGES} (tbl, pk) VALUES (NEW.tbl, NEW.pk); END",
        f"CREATE TRIGGER IF NOT EXISTS _hive_log_tombstones_upd AFTER UPDATE ON {TOMBSTONES} "
        f"BEGIN INSERT INTO {CHANGES} (tbl, pk) VALUES (NEW.tbl, NEW.pk); END",
    ]


def table_ddl(info: TableInfo) -> list[str]:
    """The statements that create one mirrored table in D1, with its change-log triggers."""
    t, pk = quote(info.name), quote(info.pk)
    log = f"INSERT INTO {CHANGES} (tbl, pk) VALUES ({literal(info.name)}, NEW.{pk})"
    return [
        info.ddl, *info.unique_indexes,
        f"CREATE TRIGGER IF NOT EXISTS {quote('_hive_log_' + info.name + '_ins')} "
        f"AFTER INSERT ON {t} BEGIN {log}; END",
        f"CREATE TRIGGER IF NOT EXISTS {quote('_hive_log_' + info.name + '_upd')} "
        f"AFTER UPDATE ON {t} BEGIN {log}; END",
    ]


def add_column_ddl(conn: sqlite3.Connection, table: str, column: str) -> str:
    """``ALTER TABLE … ADD COLUMN`` for a local column missing remotely."""
    for cid, name, ctype, notnull, default, pk in conn.execute(
            f"PRAGMA table_info({quote(table)})").fetchall():
        del cid, pk
        if name == column:
            parts = [quote(name), ctype or ""]
            if default is not None:
                parts.append(f"DEFAULT {default}")
                if notnull:
                    parts.append("NOT NULL")
            return f"ALTER TABLE {quote(table)} ADD COLUMN {' '.join(p for p in parts if p)}"
    raise ConfigurationError(f"D1 mirror: no local column {table}.{column}")


# -- statements the mirror sends ------------------------------------------------------------------


def rows_per_statement(params_per_row: int, row_sql_bytes: int, head_bytes: int) -> int:
    """Rows in one multi-row statement: <= 100 parameters and <= 100 KB of SQL text."""
    by_params = MAX_PARAMS // params_per_row
    by_text = (MAX_SQL_BYTES - head_bytes - 200) // max(1, row_sql_bytes)
    return max(1, min(by_params, by_text))


_CLOCK_TEXT = re.compile(r"^\d{13}-\d{6}-[A-Za-z0-9_.]{1,64}$")


@functools.lru_cache(maxsize=4096)
def upsert_sql(info: TableInfo, rows: int, origin: str, clock: str | None = None,
               keep_existing: bool = False) -> str:
    """An idempotent multi-row upsert guarded by the row clock and the tombstones.

    A row is written only if its clock is newer than the stored row's and than the row's
    tombstone, so replaying it, or an older version arriving late, changes nothing. With
    ``clock``, every row of the statement has that clock, written as a literal (it is
    generated here and checked against the clock format; row values are always bound):
    ``floor(100 / columns)`` rows fit instead of ``floor(100 / (columns + 1))``.
    With ``keep_existing`` (rows sent by a backfill with the base clock, older than any
    real write) a row D1 already has is left as it is (``DO NOTHING`` on the key only: other
    constraints still refuse the row).
    """
    if clock is not None and not _CLOCK_TEXT.match(clock):
        raise ValueError(f"not a row clock: {clock[:80]!r}")
    t = quote(info.name)
    cols = ",".join(quote(c) for c in (*info.columns, *EXTRA_COLUMNS))
    bound = len(info.columns) + (0 if clock is not None else 1)
    row = "(" + ",".join("?" for _ in range(bound)) + ")"
    values = ",".join(row for _ in range(rows))
    # the statement-wide values once, not per row: the text stays short
    shared = (f",{literal(clock)}" if clock is not None else "") + f",{literal(origin)}"
    hlc = f"v.column{len(info.columns) + 1}" if clock is None else literal(clock)
    rest = [c for c in info.columns if c != info.pk]
    sets = ",".join(f"{quote(c)}=excluded.{quote(c)}" for c in (*rest, *EXTRA_COLUMNS))
    return (f"INSERT INTO {t}({cols}) SELECT v.*{shared} FROM(VALUES{values})AS v "
            f"WHERE NOT EXISTS(SELECT 1 FROM {TOMBSTONES} tb WHERE tb.tbl="
            f"{literal(info.name)} AND tb.pk=v.column{info.pk_index + 1} AND tb.hlc>={hlc}) "
            + (f"ON CONFLICT({quote(info.pk)})DO NOTHING" if keep_existing else
               f"ON CONFLICT({quote(info.pk)})DO UPDATE SET {sets} "
               f"WHERE excluded._hlc>{t}._hlc"))


@functools.lru_cache(maxsize=1024)
def upsert_rows_per_statement(info: TableInfo, shared_clock: bool = False) -> int:
    """Rows per upsert statement: each row binds its columns (and its clock, unless the
    statement's rows share one)."""
    clock = "0" * 13 + "-000000-" + "x" * 64 if shared_clock else None
    head = len(upsert_sql(info, 1, "x" * 64, clock))
    params = len(info.columns) + (0 if shared_clock else 1)
    return rows_per_statement(params, 2 * params + 24, head)


@functools.lru_cache(maxsize=1024)
def tombstone_sql(table: str, rows: int, origin: str) -> str:
    """Record (newer) tombstones for ``rows`` deleted keys: parameters ``pk, hlc`` per row."""
    values = ", ".join(f"({literal(table)}, ?, ?, {literal(origin)})" for _ in range(rows))
    return (f"INSERT INTO {TOMBSTONES} (tbl, pk, hlc, origin) VALUES {values} "
            f"ON CONFLICT (tbl, pk) DO UPDATE SET hlc = excluded.hlc, origin = excluded.origin "
            f"WHERE excluded.hlc > {TOMBSTONES}.hlc")


@functools.lru_cache(maxsize=1024)
def delete_sql(info: TableInfo, rows: int) -> str:
    """Delete the keys whose tombstone is newer than the stored row."""
    t, pk = quote(info.name), quote(info.pk)
    keys = ", ".join("?" for _ in range(rows))
    return (f"DELETE FROM {t} WHERE {pk} IN ({keys}) AND EXISTS (SELECT 1 FROM {TOMBSTONES} "
            f"tb WHERE tb.tbl = {literal(info.name)} AND tb.pk = {t}.{pk} "
            f"AND tb.hlc > {t}._hlc)")


DELETE_ROWS_PER_STATEMENT = MAX_PARAMS // 2


def select_list(info: TableInfo, alias: str = "") -> str:
    """The columns to read back: integers beyond 2^53 as TEXT (D1 returns doubles)."""
    prefix = f"{alias}." if alias else ""
    out = []
    ints = set(info.int_columns)
    for i, c in enumerate(info.columns):
        col = prefix + quote(c)
        if i in ints:
            out.append(f"CASE WHEN typeof({col}) = 'integer' AND ({col} > {SAFE_INT} OR "
                       f"{col} < -{SAFE_INT}) THEN CAST({col} AS TEXT) ELSE {col} END")
        else:
            out.append(col)
    return ", ".join(out)


def to_json_value(value: Any) -> Any:
    """A local SQL value as a JSON parameter (integers beyond 2^53 as text: the column's
    INTEGER affinity stores them exactly)."""
    if value.__class__ is int and not -SAFE_INT <= value <= SAFE_INT:
        return str(value)
    return value


def from_json_value(value: Any, kind: str) -> Any:
    """A value read back from D1 as the local SQL value of a column of ``kind``."""
    if kind in ("int", "bool") and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def canonical(value: Any) -> Any:
    """A value in a form both sides agree on (numbers: JSON cannot tell 1 from 1.0)."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= SAFE_INT:
        return int(value)
    return value


def key_chunks(keys: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(keys), size):
        yield keys[start:start + size]
