"""The SQLite repository: SQL generated once per entity from the schema, values always bound.

Values follow :mod:`hive_store.values`: writes bind the checked SQL values of the entity's
codec; reads never fail on a stored value (raw values are surfaced in the entity). Filters and
``order_by`` on timestamp, date and boolean fields compare a key expression
(:mod:`hive_store_sqlite.timekeys`) so that every stored shape compares by its meaning.
Updates (and upserts of an existing row) write only the columns whose values changed.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from hive_store._converters import EntityCodec
from hive_store.backend import LOOKUPS, OrderBy
from hive_store.changes import Change, Op
from hive_store.errors import ConfigurationError, NotFound, ValidationError, describe
from hive_store.values import MAX_AUTO_ID, MAX_BATCH_SIZE, RawValue, check_text
from hive_store_sqlite.backend import WOULD_BLOCK, SQLiteBackend, quote, translate_error
from hive_store_sqlite.texts import text_or_bytes, undecodable
from hive_store_sqlite.timekeys import bool_key, date_key, timestamp_key

E = TypeVar("E")

_OPS = {"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_INT_MAX = 2**63 - 1
_MAX_VARS = 900  # below SQLite's default limit on bound parameters (999 before 3.32)
_KEYS = {"datetime": timestamp_key, "date": date_key, "bool": bool_key}
_BASE_TYPES = (int, float, str, bytes)
_ADAPTERS = sqlite3.adapters  # the module's registry, changed in place by register_adapter
_adapters_seen: list[Any] = [-1, ()]


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def check_adapters() -> None:
    """Refuse to bind values while a process-wide ``sqlite3.register_adapter`` is registered
    for a type hive-store binds (``int``, ``float``, ``str``, ``bytes``): the module would
    store what the adapter returns instead of the checked value. One ``len()`` per call."""
    adapters = _ADAPTERS
    if len(adapters) != _adapters_seen[0]:
        _adapters_seen[1] = tuple(t.__name__ for t in _BASE_TYPES
                                  if (t, sqlite3.PrepareProtocol) in adapters)
        _adapters_seen[0] = len(adapters)
    if _adapters_seen[1]:
        names = ", ".join(_adapters_seen[1])
        raise ConfigurationError(
            f"a process-wide sqlite3 adapter is registered for {names}: SQLite would store "
            "what it returns instead of the value hive-store checked, so hive-store refuses "
            "to bind values (unregister it: del sqlite3.adapters[(type, "
            "sqlite3.PrepareProtocol)])")


class SQLiteRepository(Generic[E]):
    """Implements :class:`hive_store.backend.Repository` for one entity."""

    def __init__(self, backend: SQLiteBackend, codec: EntityCodec[E]) -> None:
        self.backend = backend
        self.codec = codec
        c = codec
        self._table = quote(c.table)
        self._pk = quote(c.pk)
        cols = [quote(n) for n in c.columns]
        self._qcols = cols
        self._cols = ", ".join(cols)
        self._pk_index = c.columns.index(c.pk)
        self._sql_get = f"SELECT {self._cols} FROM {self._table} WHERE {self._pk} = ?"
        self._sql_insert = (
            f"INSERT INTO {self._table} ({self._cols}) VALUES ({', '.join('?' for _ in cols)})"
        )
        rest = [q for q, n in zip(cols, c.columns, strict=True) if n != c.pk]
        self._sql_insert_auto = (
            f"INSERT INTO {self._table} ({', '.join(rest)}) "
            f"VALUES ({', '.join('?' for _ in rest)})"
        )
        self._sql_updates: dict[tuple[int, ...], str] = {}
        self._sql_delete = f"DELETE FROM {self._table} WHERE {self._pk} = ?"
        self._non_pk = [i for i, n in enumerate(c.columns) if n != c.pk]
        self._what_add = f"adding {c.name}"
        # rows per multi-row INSERT in add_many (bound parameters stay under SQLite's old
        # default limit of 999)
        self._batch = max(1, min(100, 999 // len(cols)))
        self._sql_insert_batch = (
            f"INSERT INTO {self._table} ({self._cols}) VALUES "
            + ", ".join([f"({', '.join('?' for _ in cols)})"] * self._batch))
        pk_field = c.field(c.pk)
        self._pk_type: type | None = (
            {"str": str, "int": int}.get(pk_field.kind) if pk_field.enum_type is None else None)
        # what filters and order_by compare a field by (a key expression where stored
        # shapes differ from hive-store's, else the column)
        self._compare = {fi.name: _KEYS[fi.kind](quote(fi.name)) if fi.kind in _KEYS
                         else quote(fi.name) for fi in c.fields}

    def __repr__(self) -> str:
        return f"<Repository {self.codec.name} ({self.codec.table})>"

    # -- reads ------------------------------------------------------------------------------------

    def _key(self, key: Any) -> Any:
        cls = key.__class__
        if cls is self._pk_type and ((cls is str and key.isascii())
                                     or (cls is int and -_INT_MAX - 1 <= key <= _INT_MAX)):
            return key  # the common case, already the stored form
        return self.codec.to_sql(self.codec.pk, key)

    def get(self, key: Any) -> E:
        entity: E = self._get(self.backend.fetch, key, nowait=False)
        return entity

    def get_nowait(self, key: Any) -> E | None:
        """:meth:`get` if it can run without waiting for a connection, else ``None`` (the
        asyncio façade uses it to serve point reads on the event loop)."""
        entity = self._get(self.backend.fetch_nowait, key, nowait=True)
        return None if entity is WOULD_BLOCK else entity

    def _get(self, fetch: Any, key: Any, *, nowait: bool) -> Any:
        sql_key = self._key(key)
        try:
            entity = fetch(self._sql_get, (sql_key,), one=True, factory=self.codec.row_factory)
        except sqlite3.Error as exc:
            if not undecodable(exc):
                raise translate_error(exc, f"reading {self.codec.table}") from None
            if nowait:
                return WOULD_BLOCK  # the caller reads it the usual way, which handles it
            found = self._read_undecodable(self._sql_get, (sql_key,))
            entity = found[0] if found else None
        if entity is None:
            raise NotFound(self.codec.name, key)
        return entity

    def get_many(self, keys: Iterable[Any]) -> list[E]:
        wanted = [self._key(k) for k in self._iterable("keys", keys)]
        found: dict[Any, E] = {}
        try:
            with self.backend.connection() as conn:
                for start in range(0, len(wanted), _MAX_VARS):
                    chunk = wanted[start:start + _MAX_VARS]
                    sql = (f"SELECT {self._cols} FROM {self._table} WHERE {self._pk} IN "
                           f"({', '.join('?' for _ in chunk)})")
                    try:
                        rows = conn.execute(sql, chunk).fetchall()
                    except sqlite3.OperationalError as exc:
                        if not undecodable(exc):
                            raise
                        rows = None
                    if rows is None:
                        saved = conn.text_factory
                        conn.text_factory = text_or_bytes
                        try:
                            rows = conn.execute(sql, chunk).fetchall()
                        finally:
                            conn.text_factory = saved
                    for row in rows:
                        found[row[self._pk_index]] = self.codec.from_row(row)
        except sqlite3.Error as exc:
            raise translate_error(exc, f"reading {self.codec.table}") from None
        return [found[k] for k in wanted if k in found]

    def _text(self, spec: str, value: Any) -> str:
        try:
            return check_text(value)
        except (TypeError, ValueError) as exc:
            reason = str(exc)
        raise ValidationError(self.codec.name, [(spec, reason)])

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
            col = quote(name)
            key = self._compare[name]
            if lookup == "isnull":
                if not isinstance(value, bool):
                    raise ValidationError(self.codec.name, [(spec, "isnull takes True or False")])
                clauses.append(f"{col} IS {'' if value else 'NOT '}NULL")
            elif value is None and lookup in ("eq", "ne"):
                clauses.append(f"{col} IS {'' if lookup == 'eq' else 'NOT '}NULL")
            elif lookup == "in":
                if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                    raise ValidationError(self.codec.name, [(spec, "__in takes a list of values")])
                items = list(value)
                typed = [self.codec.to_sql(name, v) for v in items
                         if not isinstance(v, RawValue)]
                raw = [v.value for v in items if isinstance(v, RawValue)]
                parts = []
                if typed:
                    parts.append(f"{key} IN ({', '.join('?' for _ in typed)})")
                    params.extend(typed)
                if raw:
                    parts.append(f"{col} IN ({', '.join('?' for _ in raw)})")
                    params.extend(raw)
                clauses.append(f"({' OR '.join(parts)})" if parts else "0")
            elif lookup in ("like", "contains"):
                text = self._text(spec, value)
                clauses.append(f"{col} LIKE ? ESCAPE '\\'")
                params.append(text if lookup == "like" else _like_pattern(text))
            elif isinstance(value, RawValue):  # a stored value as it is: the column itself
                clauses.append(f"{col} {_OPS[lookup]} ?")
                params.append(value.value)
            else:
                clauses.append(f"{key} {_OPS[lookup]} ?")
                params.append(self.codec.to_sql(name, value))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def _order(self, order_by: OrderBy) -> str:
        if order_by is None:
            return " ORDER BY rowid"
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
            parts.append(f"{self._compare[name]}{' DESC' if desc else ''}")
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
        sql = f"SELECT {self._cols} FROM {self._table}{where}{self._order(order_by)}"
        if limit is not None or offset:
            lim = -1 if limit is None else self._check_int("limit", limit, self.codec.name, 0)
            off = self._check_int("offset", offset, self.codec.name, 0)
            sql += " LIMIT ? OFFSET ?"
            params += [lim, off]
        if params:
            check_adapters()
        return sql, params

    def find(self, *, order_by: OrderBy = None, limit: int | None = None, offset: int = 0,
             **filters: Any) -> list[E]:
        sql, params = self._select(filters, order_by, limit, offset)
        try:
            found: list[E] = self.backend.fetch(sql, params, factory=self.codec.row_factory)
        except sqlite3.Error as exc:
            if not undecodable(exc):
                raise translate_error(exc, f"reading {self.codec.table}") from None
            found = self._read_undecodable(sql, params)
        return found

    def _read_undecodable(self, sql: str, params: Sequence[Any]) -> list[E]:
        """A read whose rows hold TEXT that is not valid UTF-8, again, with such text read as
        bytes (the rare path: a Python ``text_factory`` is slow for every other row)."""
        try:
            with self.backend.connection() as conn:
                saved = conn.text_factory
                conn.text_factory = text_or_bytes
                try:
                    cursor = conn.cursor()
                    cursor.row_factory = self.codec.row_factory
                    try:
                        rows: list[E] = cursor.execute(sql, params).fetchall()
                    finally:
                        cursor.close()
                finally:
                    conn.text_factory = saved
        except sqlite3.Error as exc:
            raise translate_error(exc, f"reading {self.codec.table}") from None
        return rows

    def _stored_row(self, conn: sqlite3.Connection, key: Any) -> Any:
        """The stored row with this key as SQL values (``None`` if there is none)."""
        try:
            return conn.execute(self._sql_get, (key,)).fetchone()
        except sqlite3.OperationalError as exc:
            if not undecodable(exc):
                raise
        saved = conn.text_factory
        conn.text_factory = text_or_bytes
        try:
            return conn.execute(self._sql_get, (key,)).fetchone()
        finally:
            conn.text_factory = saved

    def find_one(self, *, order_by: OrderBy = None, **filters: Any) -> E | None:
        found = self.find(order_by=order_by, limit=1, **filters)
        return found[0] if found else None

    def count(self, **filters: Any) -> int:
        where, params = self._where(filters)
        if params:
            check_adapters()
        try:
            return int(self.backend.fetch(f"SELECT count(*) FROM {self._table}{where}", params,
                                          one=True)[0])
        except sqlite3.Error as exc:
            raise translate_error(exc, f"counting {self.codec.table}") from None

    def iter(self, *, order_by: OrderBy = None, batch_size: int = 1000,
             **filters: Any) -> Iterator[E]:
        self._check_int("batch_size", batch_size, self.codec.name, 1, MAX_BATCH_SIZE)
        sql, params = self._select(filters, order_by, None, 0)
        return self._iter(sql, params, batch_size)

    def _iter(self, sql: str, params: list[Any], batch_size: int) -> Iterator[E]:
        # The backend's iterator owns its connection (any thread may advance or finish it).
        rows: Iterator[E] = self.backend.iterate(sql, params, batch_size,
                                                 self.codec.row_factory,
                                                 f"reading {self.codec.table}")
        return rows

    def search(self, text: str, *, fields: Sequence[str], limit: int | None = None,
               order_by: OrderBy = None) -> list[E]:
        text = self._text("text", text)
        if isinstance(fields, str) or not isinstance(fields, (list, tuple)) or not fields:
            raise ValidationError(self.codec.name, [("fields", "name at least one field")])
        pattern = _like_pattern(text)
        for name in fields:
            if self.codec.field(name).kind not in ("str", "json"):
                raise ValidationError(self.codec.name, [(name, "only text fields can be searched")])
        where = " OR ".join(f"{quote(n)} LIKE ? ESCAPE '\\'" for n in fields)
        sql = f"SELECT {self._cols} FROM {self._table} WHERE ({where}){self._order(order_by)}"
        params: list[Any] = [pattern] * len(fields)
        if limit is not None:
            sql += " LIMIT ?"
            params.append(self._check_int("limit", limit, self.codec.name, 0))
        check_adapters()
        try:
            with self.backend.connection() as conn:
                try:
                    rows = conn.execute(sql, params).fetchall()
                except sqlite3.OperationalError as exc:
                    if not undecodable(exc):
                        raise
                    rows = None
        except sqlite3.Error as exc:
            raise translate_error(exc, f"searching {self.codec.table}") from None
        if rows is None:
            return self._read_undecodable(sql, params)
        return [self.codec.from_row(r) for r in rows]

    # -- writes -----------------------------------------------------------------------------------

    def _explicit_key(self, row: tuple[Any, ...]) -> None:
        """An AUTOINCREMENT key a caller chose must leave the key space usable
        (:data:`hive_store.values.MAX_AUTO_ID`)."""
        key = row[self._pk_index]
        if key is not None and self.codec.autoincrement and not (
                key.__class__ is int and 1 <= key <= MAX_AUTO_ID):
            raise ValidationError(self.codec.name, [(self.codec.pk, (
                f"a key you choose in an AUTOINCREMENT table must be from 1 to 2**53-1 "
                f"(SQLite numbers every later row after the largest key), got "
                f"{describe(key, 30)}"))])

    def _insert(self, conn: sqlite3.Connection, entity: E, row: tuple[Any, ...]) -> E:
        if self.codec.autoincrement and row[self._pk_index] is None:
            cur = conn.execute(self._sql_insert_auto, [row[i] for i in self._non_pk])
            entity = self.codec.evolve(entity, **{self.codec.pk: cur.lastrowid})
        else:
            conn.execute(self._sql_insert, row)
        return entity

    def _write_auto(self, op: Op, entity: E, row: tuple[Any, ...], what: str) -> E:
        """Insert a row whose key SQLite assigns; the stored entity carries it."""
        codec = self.codec
        pk, table = codec.pk, codec.table
        cur = self.backend.write(
            self._sql_insert_auto, [row[i] for i in self._non_pk], what,
            lambda c: Change(op, table, c.lastrowid, codec.evolve(entity, **{pk: c.lastrowid})))
        return codec.evolve(entity, **{pk: cur.lastrowid})

    def add(self, entity: E) -> E:
        row, stored = self.codec.dump(entity)
        check_adapters()
        what = self._what_add
        if self.codec.autoincrement and row[self._pk_index] is None:
            return self._write_auto(Op.INSERT, stored, row, what)
        self._explicit_key(row)
        table, key = self.codec.table, row[self._pk_index]
        self.backend.write(self._sql_insert, row, what,
                           lambda _: Change(Op.INSERT, table, key, stored))
        return stored

    def add_many(self, entities: Iterable[E]) -> list[E]:
        items = list(self._iterable("entities", entities))
        if not items:
            return []
        rows, stored = self.codec.dump_many(items)
        check_adapters()
        auto = self.codec.autoincrement and any(r[self._pk_index] is None for r in rows)
        if self.codec.autoincrement:
            for row in rows:
                self._explicit_key(row)
        what = f"adding {len(items)} {self.codec.name}"
        backend = self.backend
        try:
            with backend.transaction(what=what) as conn:
                if auto:
                    stored = [self._insert(conn, e, r) for e, r in zip(stored, rows, strict=True)]
                else:
                    self._insert_rows(conn, rows)
                backend.record_many(Op.INSERT, self.codec.table, self.codec.key_of, stored)
        except sqlite3.Error as exc:
            raise translate_error(exc, what) from None
        return stored

    def _insert_rows(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        """Insert rows with multi-row ``INSERT … VALUES (…), (…)`` statements of up to
        :attr:`_batch` rows: one statement execution per batch instead of per row, which
        matters most when triggers fire on the table (each execution of a statement with
        triggers pays for its own trigger program and statement journal)."""
        n = self._batch
        if len(rows) < n:
            conn.executemany(self._sql_insert, rows)
            return
        chain = itertools.chain.from_iterable
        full = len(rows) - len(rows) % n
        sql = self._sql_insert_batch
        for start in range(0, full, n):
            conn.execute(sql, list(chain(rows[start:start + n])))
        if full < len(rows):
            conn.executemany(self._sql_insert, rows[full:])

    def _sql_update(self, changed: tuple[int, ...]) -> str:
        sql = self._sql_updates.get(changed)
        if sql is None:
            if len(self._sql_updates) >= 256:
                self._sql_updates.clear()
            sets = ", ".join(f"{self._qcols[i]} = ?" for i in changed)
            sql = self._sql_updates[changed] = (
                f"UPDATE {self._table} SET {sets} WHERE {self._pk} = ?")
        return sql

    def _write_changes(self, conn: sqlite3.Connection, op: Op, stored: Sequence[Any],
                       row: tuple[Any, ...]) -> E:
        """Write the columns where ``row`` differs from the ``stored`` row (nothing if none
        does) and return the row as now stored, as a read returns it."""
        codec = self.codec
        pk = self._pk_index
        changed = tuple(i for i in codec.changed(stored, row) if i != pk)
        if not changed:
            return codec.from_row(stored)
        key = stored[pk]
        conn.execute(self._sql_update(changed), [row[i] for i in changed] + [key])
        merged = list(stored)
        for i in changed:
            merged[i] = row[i]
        entity = codec.from_row(merged)
        if self.backend.recording():
            self.backend.record(Change(op, codec.table, codec.key_of(entity), entity,
                                       tuple(codec.columns[i] for i in changed)))
        return entity

    def upsert(self, entity: E) -> E:
        row, stored = self.codec.dump(entity)
        check_adapters()
        what = f"upserting {self.codec.name}"
        if self.codec.autoincrement and row[self._pk_index] is None:
            return self._write_auto(Op.UPSERT, stored, row, what)
        try:
            with self.backend.transaction(what=what) as conn:
                existing = self._stored_row(conn, row[self._pk_index])
                if existing is None:
                    self._explicit_key(row)
                    conn.execute(self._sql_insert, row)
                    self.backend.record(Change(Op.UPSERT, self.codec.table,
                                               row[self._pk_index], stored))
                    return stored
                return self._write_changes(conn, Op.UPSERT, existing, row)
        except sqlite3.Error as exc:
            raise translate_error(exc, what) from None

    def update(self, entity_or_key: Any, /, **changes: Any) -> E:
        codec = self.codec
        what = f"updating {codec.name}"
        given = isinstance(entity_or_key, codec.cls)
        key = codec.key_of(entity_or_key) if given else entity_or_key
        if key is None:
            raise ValidationError(codec.name, [(codec.pk, "no key to update")])
        if codec.pk in changes:
            raise ValidationError(codec.name, [(codec.pk, "the primary key cannot change")])
        sql_key = self._key(key)
        try:
            with self.backend.transaction(what=what) as conn:
                stored = self._stored_row(conn, sql_key)
                if stored is None:
                    raise NotFound(codec.name, key)
                entity = entity_or_key if given else codec.from_row(stored)
                if changes:
                    try:
                        entity = codec.evolve(entity, **changes)
                    except TypeError as exc:
                        raise ValidationError(codec.name, [("?", str(exc))]) from None
                row = codec.to_row(entity)
                check_adapters()
                return self._write_changes(conn, Op.UPDATE, stored, row)
        except sqlite3.Error as exc:
            raise translate_error(exc, what) from None

    def delete(self, entity_or_key: Any) -> bool:
        key = (self.codec.key_of(entity_or_key) if isinstance(entity_or_key, self.codec.cls)
               else entity_or_key)
        sql_key = self._key(key)
        table = self.codec.table
        # A delete that found nothing changed nothing: the listener gets no change.
        cur = self.backend.write(
            self._sql_delete, (sql_key,), f"deleting {self.codec.name}",
            lambda c: Change(Op.DELETE, table, key, None) if c.rowcount else None)
        return bool(cur.rowcount)
