"""The PostgreSQL repository: SQL generated once per entity from the schema, values always
bound, the same results as the SQLite repository.

Values are the codec's SQL values (the same ones SQLite stores); the SQL casts them to the
column's native type (``%s::timestamptz``, ``::date``, ``::json``) and booleans are bound as
``bool``. Reads select them back in that same form (the server formats timestamps as
hive-store's UTC text, booleans as 0/1, JSON as text), so the codec reads a PostgreSQL row
exactly as it reads a SQLite one. What SQLite does implicitly is spelled out so that both
backends answer alike:

* text compares, sorts and matches in code point order (the schema's ``COLLATE "C"``);
* ``NULL`` sorts first ascending and last descending (``NULLS FIRST`` / ``NULLS LAST`` on
  nullable fields; the schema's indexes are built in that order);
* ``like``/``contains``/``search`` fold ASCII letters only, as SQLite's ``LIKE`` does;
* JSON fields compare and sort by their text (the ``json`` type keeps it as written);
* without ``order_by`` rows come in primary-key order (SQLite: rowid order; the same for
  hive-store's time-ordered keys, and a stable order for paging either way).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from hive_store._converters import EntityCodec
from hive_store.backend import LOOKUPS, OrderBy
from hive_store.changes import Change, Op
from hive_store.errors import (
    NotFound,
    StorageError,
    TransactionConflict,
    ValidationError,
    describe,
)
from hive_store.values import MAX_AUTO_ID, MAX_BATCH_SIZE, RawValue, check_text
from hive_store_postgres.backend import PostgresBackend, quote

E = TypeVar("E")
T = TypeVar("T")

_OPS = {"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_INT_MAX = 2**63 - 1
_CASTS = {"datetime": "::timestamptz", "date": "::date", "json": "::json"}
_ARRAYS = {"str": "text[]", "enum": "text[]", "int": "bigint[]", "float": "float8[]",
           "bool": "boolean[]", "datetime": "timestamptz[]", "date": "date[]", "json": "text[]"}
_READ = {  # a column as reads select it (see PostgresRepository._sel)
    "datetime": "to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')",
    "date": "to_char({c}, 'YYYY-MM-DD')",
    "bool": "{c}::int",
    "json": "{c}::text",
    "float": "({c} + 0.0::float8)",  # -0.0 reads as 0.0, as from SQLite's REAL columns
}
_UPPER, _LOWER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"
_UPSERT_ROUNDS = 100  # upsert: read, else insert; again if another writer inserted it meanwhile
_COPY_FROM = 20  # add_many: COPY from this many rows, a pipelined executemany below


def _fold(expr: str) -> str:
    """``expr`` with ASCII letters lower-cased (SQLite's LIKE folds those, and only those)."""
    return f"translate({expr}, '{_UPPER}', '{_LOWER}')"


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class PostgresRepository(Generic[E]):
    """Implements :class:`hive_store.backend.Repository` for one entity."""

    def __init__(self, backend: PostgresBackend, codec: EntityCodec[E]) -> None:
        self.backend = backend
        self.codec = codec
        c = codec
        self._table = quote(c.table)
        self._pk = quote(c.pk)
        self._kinds = {fi.name: ("enum" if fi.enum_type is not None else fi.kind)
                       for fi in c.fields}
        cols = [quote(n) for n in c.columns]
        self._cols = ", ".join(cols)
        # What reads select: every value in the codec's row form, the one SQLite stores, so
        # that the codec reads both backends' rows alike (its fast paths included): the
        # server writes timestamps as hive-store's RFC 3339 UTC text, dates as YYYY-MM-DD,
        # booleans as 0/1, JSON as its text and -0.0 as 0.0.
        self._sel = ", ".join(_READ.get(self._kinds[n], "{c}").format(c=q)
                              for n, q in zip(c.columns, cols, strict=True))
        self._pk_index = c.columns.index(c.pk)
        self._non_pk = [i for i, n in enumerate(c.columns) if n != c.pk]
        self._bools = [i for i, n in enumerate(c.columns) if self._kinds[n] == "bool"]
        self._nullable = {fi.name for fi in c.fields if fi.nullable and fi.name != c.pk}
        marks = [f"%s{_CASTS.get(self._kinds[n], '')}" for n in c.columns]
        self._sql_get = f"SELECT {self._sel} FROM {self._table} WHERE {self._pk} = %s"
        self._sql_get_locked = f"{self._sql_get} FOR UPDATE"
        self._sql_insert = f"INSERT INTO {self._table} ({self._cols}) VALUES ({', '.join(marks)})"
        rest = [cols[i] for i in self._non_pk]
        self._sql_insert_auto = (
            f"INSERT INTO {self._table} ({', '.join(rest)}) "
            f"VALUES ({', '.join(marks[i] for i in self._non_pk)}) RETURNING {self._pk}")
        self._sql_insert_new = f"{self._sql_insert} ON CONFLICT ({self._pk}) DO NOTHING"
        self._qcols, self._qmarks = cols, marks
        self._sql_updates: dict[tuple[int, ...], str] = {}  # by the changed columns' indexes
        self._sql_delete = f"DELETE FROM {self._table} WHERE {self._pk} = %s"
        self._sql_copy = f"COPY {self._table} ({self._cols}) FROM STDIN"
        self._marks = f"({', '.join(marks)})"
        self._sql_insert_n: dict[int, str] = {}
        self._what_add = f"adding {c.name}"
        pk_field = c.field(c.pk)
        self._pk_type: type | None = (
            {"str": str, "int": int}.get(pk_field.kind) if pk_field.enum_type is None else None)
        # the key of the advisory lock that serialises moving this table's identity forward
        self._identity_lock = zlib.crc32(f"hive_store identity {c.table}".encode()) & 0x7FFFFFFF
        self._sql_bump = (
            f"SELECT setval(pg_get_serial_sequence('{c.table}', '{c.pk}'), %s) WHERE "
            f"coalesce(pg_sequence_last_value(pg_get_serial_sequence('{c.table}', "
            f"'{c.pk}')), 0) < %s")

    def __repr__(self) -> str:
        return f"<Repository {self.codec.name} ({self.codec.table})>"

    # -- values -----------------------------------------------------------------------------------

    def _pg(self, row: tuple[Any, ...]) -> Sequence[Any]:
        """The codec's SQL values as bound here: booleans as ``bool`` (SQLite stores 0/1)."""
        if not self._bools:
            return row
        out = list(row)
        for i in self._bools:
            value = out[i]
            if value is not None:
                out[i] = bool(value)
        return out

    def _param(self, name: str, value: Any) -> Any:
        """A filter value as bound: checked by the codec like a write."""
        sql = self.codec.to_sql(name, value)
        if self._kinds[name] == "bool" and sql is not None:
            return bool(sql)
        return sql

    def _expr(self, name: str) -> str:
        """What a field is compared and sorted by: the column (its text for JSON)."""
        col = quote(name)
        return f"{col}::text" if self._kinds[name] == "json" else col

    def _nul_check(self, rows: Iterable[Sequence[Any]]) -> None:
        """PostgreSQL text cannot hold NUL characters (SQLite's can): name the fields."""
        bad = sorted({self.codec.columns[i] for row in rows for i, v in enumerate(row)
                      if isinstance(v, str) and "\x00" in v})
        if bad:
            raise ValidationError(self.codec.name, [(
                name, "text with a NUL character (\\x00) cannot be stored in PostgreSQL")
                for name in bad])

    def _writing(self, rows: Sequence[Sequence[Any]], fn: Callable[[], T]) -> T:
        """``fn()``; a value psycopg refused to send (a NUL in text) becomes a
        :class:`ValidationError` naming the field."""
        import psycopg

        try:
            return fn()
        except (psycopg.DataError, StorageError) as exc:
            if isinstance(exc, psycopg.DataError) or getattr(exc, "client_value", False):
                self._nul_check(rows)
            raise

    # -- reads ------------------------------------------------------------------------------------

    def _key(self, key: Any) -> Any:
        cls = key.__class__
        if cls is self._pk_type and ((cls is str and key.isascii())
                                     or (cls is int and -_INT_MAX - 1 <= key <= _INT_MAX)):
            return key  # the common case, already the stored form
        return self.codec.to_sql(self.codec.pk, key)

    def get(self, key: Any) -> E:
        entity: E | None = self.backend.fetch(
            self._sql_get, (self._key(key),), one=True, factory=self.codec.from_row,
            what=f"reading {self.codec.table}")
        if entity is None:
            raise NotFound(self.codec.name, key)
        return entity

    def get_many(self, keys: Iterable[Any]) -> list[E]:
        wanted = [self._key(k) for k in self._iterable("keys", keys)]
        if not wanted:
            return []
        kind = self._kinds[self.codec.pk]
        rows = self.backend.fetch(
            f"SELECT {self._sel} FROM {self._table} WHERE {self._pk} = ANY(%s::{_ARRAYS[kind]})",
            (wanted,), what=f"reading {self.codec.table}")
        found = {row[self._pk_index]: row for row in rows}
        return [self.codec.from_row(found[k]) for k in wanted if k in found]

    def _where(self, filters: dict[str, Any]) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for spec, value in filters.items():
            name, _, lookup = spec.partition("__")
            lookup = lookup or "eq"
            self.codec.field(name)  # rejects names that are not columns
            if lookup not in LOOKUPS:
                reason = f"unknown lookup {lookup!r} (use {', '.join(LOOKUPS)})"
                raise ValidationError(self.codec.name, [(spec, reason)])
            col, kind = quote(name), self._kinds[name]
            expr = self._expr(name)
            if lookup == "isnull":
                if not isinstance(value, bool):
                    raise ValidationError(self.codec.name, [(spec, "isnull takes True or False")])
                clauses.append(f"{col} IS {'' if value else 'NOT '}NULL")
            elif value is None and lookup in ("eq", "ne"):
                clauses.append(f"{col} IS {'' if lookup == 'eq' else 'NOT '}NULL")
            elif lookup == "in":
                if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                    raise ValidationError(self.codec.name, [(spec, "__in takes a list of values")])
                items = [self._param(name, v) if v.__class__ is not RawValue else v.value
                         for v in value if v.__class__ is not RawValue or self._raw_kind(kind, v)]
                if not items:
                    clauses.append("FALSE")
                else:
                    clauses.append(f"{expr} = ANY(%s::{_ARRAYS[kind]})")
                    params.append(items)
            elif lookup in ("like", "contains"):
                text = self._text(spec, value)
                clauses.append(f"{_fold(f'{col}::text')} LIKE {_fold('%s')} ESCAPE '\\'")
                params.append(text if lookup == "like" else _like_pattern(text))
            elif value.__class__ is RawValue:
                clauses.append(self._raw_clause(spec, kind, expr, lookup, value))
                if self._raw_kind(kind, value):
                    params.append(value.value)
            else:
                cast = "" if kind == "json" else _CASTS.get(kind, "")
                clauses.append(f"{expr} {_OPS[lookup]} %s{cast}")
                params.append(self._param(name, value))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    @staticmethod
    def _raw_kind(kind: str, raw: RawValue) -> bool:
        """Whether a column of ``kind`` can hold ``raw``'s value here: text in text and JSON
        columns (compared as text); every other column holds typed values only."""
        return kind in ("str", "json") and raw.value.__class__ is str

    def _raw_clause(self, spec: str, kind: str, expr: str, lookup: str, raw: RawValue) -> str:
        """A filter by a :class:`RawValue` (a value read from another app's SQLite file): it
        is compared as stored, and no typed PostgreSQL value equals it."""
        if self._raw_kind(kind, raw):
            return f"{expr} {_OPS[lookup]} %s"
        if lookup == "eq":
            return "FALSE"
        if lookup == "ne":
            return f"{expr} IS NOT NULL"
        raise ValidationError(self.codec.name, [(spec, (
            "a RawValue is only compared for (in)equality on PostgreSQL: its columns hold "
            "typed values only"))])

    def _text(self, spec: str, value: Any) -> str:
        try:
            return check_text(value)
        except (TypeError, ValueError) as exc:
            reason = str(exc)
        raise ValidationError(self.codec.name, [(spec, reason)])

    def _order(self, order_by: OrderBy) -> str:
        if order_by is None:
            return f" ORDER BY {self._pk}"
        if isinstance(order_by, str):
            specs: list[Any] = [order_by]
        elif isinstance(order_by, (list, tuple)):
            specs = list(order_by)
        else:
            kind = type(order_by).__name__
            raise ValidationError(self.codec.name, [(
                "order_by", f"takes a field name or a list of them, not {kind}")])
        parts = []
        for spec in specs:
            if not isinstance(spec, str) or not spec:
                raise ValidationError(self.codec.name, [
                    ("order_by", f"bad field {describe(spec, 40)}")])
            desc = spec.startswith("-")
            name = spec.lstrip("-+")
            self.codec.field(name)
            # SQLite's NULL order (first ascending, last descending), spelled out only for
            # nullable fields: on a NOT NULL column it would keep an index from serving it
            nulls = (" NULLS LAST" if desc else " NULLS FIRST") if name in self._nullable else ""
            parts.append(f"{self._expr(name)}{' DESC' if desc else ''}{nulls}")
        return " ORDER BY " + ", ".join(parts) if parts else ""

    def _iterable(self, name: str, value: Any) -> Iterable[Any]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise ValidationError(self.codec.name, [(name, "must be a list (or other iterable)")])
        return value

    @staticmethod
    def _check_int(name: str, value: Any, entity: str, minimum: int,
                   maximum: int = _INT_MAX) -> int:
        if (not isinstance(value, int) or isinstance(value, bool) or value < minimum
                or value > maximum):
            top = "2**63-1" if maximum == _INT_MAX else f"{maximum:,}"
            raise ValidationError(entity, [(name, f"must be an integer from {minimum} to {top}")])
        return int(value)

    def _select(self, filters: dict[str, Any], order_by: OrderBy, limit: int | None,
                offset: int) -> tuple[str, list[Any]]:
        where, params = self._where(filters)
        sql = f"SELECT {self._sel} FROM {self._table}{where}{self._order(order_by)}"
        if limit is not None or offset:
            lim = None if limit is None else self._check_int("limit", limit, self.codec.name, 0)
            off = self._check_int("offset", offset, self.codec.name, 0)
            sql += " LIMIT %s OFFSET %s"
            params += [lim, off]
        return sql, params

    def find(self, *, order_by: OrderBy = None, limit: int | None = None, offset: int = 0,
             **filters: Any) -> list[E]:
        sql, params = self._select(filters, order_by, limit, offset)
        found: list[E] = self.backend.fetch(sql, params, factory=self.codec.from_row,
                                            what=f"reading {self.codec.table}")
        return found

    def find_one(self, *, order_by: OrderBy = None, **filters: Any) -> E | None:
        found = self.find(order_by=order_by, limit=1, **filters)
        return found[0] if found else None

    def count(self, **filters: Any) -> int:
        where, params = self._where(filters)
        row = self.backend.fetch(f"SELECT count(*) FROM {self._table}{where}", params, one=True,
                                 what=f"counting {self.codec.table}")
        return int(row[0])

    def iter(self, *, order_by: OrderBy = None, batch_size: int = 1000,
             **filters: Any) -> Iterator[E]:
        self._check_int("batch_size", batch_size, self.codec.name, 1, MAX_BATCH_SIZE)
        sql, params = self._select(filters, order_by, None, 0)
        rows: Iterator[E] = self.backend.iterate(sql, params, batch_size, self.codec.from_row,
                                                 f"reading {self.codec.table}")
        return rows

    def search(self, text: str, *, fields: Sequence[str], limit: int | None = None,
               order_by: OrderBy = None) -> list[E]:
        text = self._text("text", text)
        if isinstance(fields, str) or not isinstance(fields, (list, tuple)) or not fields:
            raise ValidationError(self.codec.name, [("fields", "name at least one field")])
        for name in fields:
            if self.codec.field(name).kind not in ("str", "json"):
                raise ValidationError(self.codec.name, [(name, "only text fields can be searched")])
        pattern = _like_pattern(text)
        where = " OR ".join(f"{_fold(f'{quote(n)}::text')} LIKE {_fold('%s')} ESCAPE '\\'"
                            for n in fields)
        sql = f"SELECT {self._sel} FROM {self._table} WHERE ({where}){self._order(order_by)}"
        params: list[Any] = [pattern] * len(fields)
        if limit is not None:
            sql += " LIMIT %s"
            params.append(self._check_int("limit", limit, self.codec.name, 0))
        found: list[E] = self.backend.fetch(sql, params, factory=self.codec.from_row,
                                            what=f"searching {self.codec.table}")
        return found

    # -- writes -----------------------------------------------------------------------------------

    def _refuse_raw(self, entity: Any) -> None:
        """A :class:`RawValue` (a value another app stored in a SQLite file, read back as it
        was) has no place in PostgreSQL's typed columns: the server would refuse it or, worse,
        read it as something else (``'now'`` as a timestamp, ``2`` as true). Text in a text
        column (a role Hive does not know, say) is stored as it is, as on SQLite."""
        bad = [name for name in self.codec.columns
               if (raw := getattr(entity, name, None)).__class__ is RawValue
               and not (self._kinds[name] == "str" and raw.value.__class__ is str)]
        if bad:
            reason = ("holds a RawValue (a stored value that is not of the field's type); "
                      "PostgreSQL's typed columns cannot store it: assign a real value")
            raise ValidationError(self.codec.name, [(name, reason) for name in bad])

    def _dump(self, entity: E) -> tuple[tuple[Any, ...], E]:
        row, stored = self.codec.dump(entity)
        if stored is not entity:  # the fast path's entities hold stored-form values only
            self._refuse_raw(stored)
        return row, stored

    def _explicit_key(self, row: Sequence[Any]) -> None:
        """A key a caller chooses in an AUTOINCREMENT table must leave the key space usable
        (:data:`hive_store.values.MAX_AUTO_ID`, the same rule as on SQLite)."""
        key = row[self._pk_index]
        if key is not None and self.codec.autoincrement and not (
                key.__class__ is int and 1 <= key <= MAX_AUTO_ID):
            raise ValidationError(self.codec.name, [(self.codec.pk, (
                "a key you choose in an AUTOINCREMENT table must be from 1 to 2**53-1 (the "
                f"keys assigned later continue after it), got {describe(key, 30)}"))])

    def _bump_identity(self, conn: Any, keys: Iterable[Any]) -> None:
        """Move the table's identity past explicit keys before they are inserted, so that the
        keys PostgreSQL assigns later never collide with them (SQLite's AUTOINCREMENT takes
        the largest key so far + 1). Serialised per table: the sequence only moves forward."""
        top = max((k for k in keys if isinstance(k, int) and k >= 1), default=None)
        if top is None:
            return
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._identity_lock,))
        conn.execute(self._sql_bump, (top, top))

    def _explicit(self, rows: Sequence[Sequence[Any]]) -> bool:
        return self.codec.autoincrement and any(r[self._pk_index] is not None for r in rows)

    def _in_transaction(self, what: str, fn: Callable[[Any], T]) -> T:
        """``fn(connection)`` in a transaction of its own (``READ COMMITTED``, no savepoint per
        statement: it is all or nothing), run again after a deadlock; a savepoint inside the
        caller's transaction."""
        backend = self.backend

        def run() -> T:
            with backend.connection() as conn:
                return fn(conn)

        return backend.run_transaction(run, what=what, isolation="read_committed")

    def _write_auto(self, op: Op, entity: E, row: tuple[Any, ...], what: str) -> E:
        """Insert a row whose key PostgreSQL assigns; the stored entity carries it."""
        codec = self.codec
        pk, table = codec.pk, codec.table
        values = self._pg(row)
        params = [values[i] for i in self._non_pk]
        result = self._writing([row], lambda: self.backend.write(
            self._sql_insert_auto, params, what,
            lambda r: Change(op, table, r.key, codec.evolve(entity, **{pk: r.key}))))
        return codec.evolve(entity, **{pk: result.key})

    def add(self, entity: E) -> E:
        row, stored = self._dump(entity)
        what = self._what_add
        if self.codec.autoincrement and row[self._pk_index] is None:
            return self._write_auto(Op.INSERT, stored, row, what)
        self._explicit_key(row)
        backend, table, key = self.backend, self.codec.table, row[self._pk_index]

        def change(_: Any) -> Change:
            return Change(Op.INSERT, table, key, stored)

        if self._explicit([row]):  # the identity moves past the key first, in one transaction
            def write(conn: Any) -> None:
                self._bump_identity(conn, [key])
                backend.write(self._sql_insert, self._pg(row), what, change)

            self._writing([row], lambda: self._in_transaction(what, write))
        else:
            self._writing([row], lambda: backend.write(self._sql_insert, self._pg(row), what,
                                                       change))
        return stored

    def add_many(self, entities: Iterable[E]) -> list[E]:
        items = list(self._iterable("entities", entities))
        if not items:
            return []
        rows, stored = self.codec.dump_many(items)
        for given, entity in zip(items, stored, strict=True):
            if entity is not given:
                self._refuse_raw(entity)
        if self.codec.autoincrement:
            for row in rows:
                self._explicit_key(row)
        what = f"adding {len(items)} {self.codec.name}"
        backend = self.backend
        backend._refuse_writes()

        def insert(conn: Any) -> list[E]:
            out = stored
            if self.codec.autoincrement and any(r[self._pk_index] is None for r in rows):
                out = self._insert_each(conn, stored, rows)
            else:
                if self._explicit(rows):
                    self._bump_identity(conn, (r[self._pk_index] for r in rows))
                self._insert_rows(conn, rows)
            backend.record_many(Op.INSERT, self.codec.table, self.codec.key_of, out)
            return out

        return self._writing(rows, lambda: self._in_transaction(what, insert))

    def _insert_each(self, conn: Any, items: list[E], rows: list[tuple[Any, ...]]) -> list[E]:
        """Rows some of whose keys PostgreSQL assigns: one INSERT … RETURNING each (a
        multi-row RETURNING has no documented order to match keys to rows by)."""
        codec, pk = self.codec, self.codec.pk
        self._bump_identity(conn, (r[self._pk_index] for r in rows))
        stored: list[E] = []
        for entity, row in zip(items, rows, strict=True):
            values = self._pg(row)
            if row[self._pk_index] is None:
                key = conn.execute(self._sql_insert_auto,
                                   [values[i] for i in self._non_pk]).fetchone()[0]
                stored.append(codec.evolve(entity, **{pk: key}))
            else:
                conn.execute(self._sql_insert, values)
                stored.append(entity)
        return stored

    def _insert_rows(self, conn: Any, rows: list[tuple[Any, ...]]) -> None:
        """COPY for batches (the codec's values in COPY's text form: booleans as 0/1 are
        valid boolean input); one multi-row ``INSERT … VALUES (…), (…)`` below
        :data:`_COPY_FROM` rows (one round trip, one statement per batch size)."""
        if len(rows) < _COPY_FROM:
            sql = self._sql_insert_n.get(len(rows))
            if sql is None:
                sql = self._sql_insert_n[len(rows)] = (
                    f"INSERT INTO {self._table} ({self._cols}) VALUES "
                    + ", ".join([self._marks] * len(rows)))
            conn.execute(sql, [v for r in rows for v in self._pg(r)])
            return
        with conn.cursor() as cur, cur.copy(self._sql_copy) as copy:
            write = copy.write_row
            for row in rows:
                write(row)

    def _sql_update(self, changed: tuple[int, ...]) -> str:
        sql = self._sql_updates.get(changed)
        if sql is None:
            if len(self._sql_updates) >= 256:
                self._sql_updates.clear()
            sets = ", ".join(f"{self._qcols[i]} = {self._qmarks[i]}" for i in changed)
            sql = self._sql_updates[changed] = (
                f"UPDATE {self._table} SET {sets} WHERE {self._pk} = %s")
        return sql

    def _write_changes(self, conn: Any, op: Op, stored: Sequence[Any],
                       row: tuple[Any, ...]) -> E:
        """Write the columns where ``row`` differs from the ``stored`` row (read under
        ``FOR UPDATE``, in the codec's form; nothing if none differs) and return the row as
        now stored, as a read returns it."""
        codec = self.codec
        pk = self._pk_index
        changed = tuple(i for i in codec.changed(stored, row) if i != pk)
        if not changed:
            return codec.from_row(stored)
        values = self._pg(row)
        self._writing([row], lambda: conn.execute(
            self._sql_update(changed), [values[i] for i in changed] + [stored[pk]]))
        merged = list(stored)
        for i in changed:
            merged[i] = row[i]
        entity = codec.from_row(merged)
        self.backend.record(Change(op, codec.table, codec.key_of(entity), entity,
                                   tuple(codec.columns[i] for i in changed)))
        return entity

    def upsert(self, entity: E) -> E:
        row, stored = self._dump(entity)
        what = f"upserting {self.codec.name}"
        if self.codec.autoincrement and row[self._pk_index] is None:
            return self._write_auto(Op.UPSERT, stored, row, what)
        key = row[self._pk_index]
        table, backend = self.codec.table, self.backend
        backend._refuse_writes()

        def write(conn: Any) -> E:
            for _ in range(_UPSERT_ROUNDS):
                existing = conn.execute(self._sql_get_locked, (key,)).fetchone()
                if existing is not None:
                    return self._write_changes(conn, Op.UPSERT, existing, row)
                self._explicit_key(row)
                if self._explicit([row]):
                    self._bump_identity(conn, [key])
                # another writer may insert the key meanwhile: then read it again, locked
                cur = self._writing([row], lambda: conn.execute(
                    self._sql_insert_new, self._pg(row)))
                if cur.rowcount:
                    backend.record(Change(Op.UPSERT, table, key, stored))
                    return stored
            raise TransactionConflict(f"{what}: other writers kept inserting and deleting the "
                                      "row meanwhile; nothing was written")

        return self._in_transaction(what, write)

    def update(self, entity_or_key: Any, /, **changes: Any) -> E:
        codec, backend = self.codec, self.backend
        what = f"updating {codec.name}"
        given = isinstance(entity_or_key, codec.cls)
        key = codec.key_of(entity_or_key) if given else entity_or_key
        if key is None:
            raise ValidationError(codec.name, [(codec.pk, "no key to update")])
        if codec.pk in changes:
            raise ValidationError(codec.name, [(codec.pk, "the primary key cannot change")])
        for name in changes:
            codec.field(name)
        sql_key = self._key(key)
        backend._refuse_writes()

        def write(conn: Any) -> E:
            # locked: a concurrent update of the row waits, then reads what this one wrote
            stored = conn.execute(self._sql_get_locked, (sql_key,)).fetchone()
            if stored is None:
                raise NotFound(codec.name, key)
            entity: E = entity_or_key if given else codec.from_row(stored)
            if changes:
                try:
                    entity = codec.evolve(entity, **changes)
                except TypeError as exc:
                    raise ValidationError(codec.name, [("?", str(exc))]) from None
            self._refuse_raw(entity)
            return self._write_changes(conn, Op.UPDATE, stored, codec.to_row(entity))

        return self._in_transaction(what, write)

    def delete(self, entity_or_key: Any) -> bool:
        key = (self.codec.key_of(entity_or_key) if isinstance(entity_or_key, self.codec.cls)
               else entity_or_key)
        sql_key = self._key(key)
        table = self.codec.table
        # A delete that found nothing changed nothing: the listener gets no change.
        result = self.backend.write(
            self._sql_delete, (sql_key,), f"deleting {self.codec.name}",
            lambda r: Change(Op.DELETE, table, key, None) if r.rowcount else None)
        return bool(result.rowcount)
