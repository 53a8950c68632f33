"""The systems ``peers.py`` compares, each written the way its documentation recommends.

Every system works on the same file (a copy of one template that ``hive_store.open``
created, so the real ``messages`` table with hive-store's schema and indexes), opens its
connections with the same PRAGMAs (read back from each system's own connections by
``peers.py``) and gets the same rows, built before the clock in the form its API takes:
tuples (raw), entities (hive-store), dicts (SQLAlchemy Core, sqlite-utils, bulk inserts of the
ORMs), mapped objects (single inserts of the ORMs).

Typed results: hive-store, SQLAlchemy (Core rows and ORM objects) and peewee return the
timestamp as an aware ``datetime`` (SQLAlchemy through its SQLite ``DATETIME`` type with
hive-store's storage format, peewee through a custom field); raw ``sqlite3`` and sqlite-utils
return it as the stored text (untyped).

Each system implements ``bulk``, ``single``, ``get``, ``range``, ``stream`` and ``session``
(a connection-holding object for the threads of the concurrency scenario); each returns work
to time, never times itself.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from common import (
    BUSY_TIMEOUT_S,
    MSG_COLS,
    PRAGMA_VALUES,
    SQL_FIND_MSG,
    SQL_GET_MSG,
    SQL_INSERT_MSG,
    SQL_ITER_MSG,
    TRACE,
    insert_batched,
    open_store,
    pragmas,
    raw_connect,
    to_message,
)

Row = tuple[Any, ...]


class Worker(Protocol):
    """One thread's handle in the concurrency scenario."""

    def get(self, key: str) -> Any: ...
    def add(self, row: Row) -> None: ...
    def close(self) -> None: ...


class System(Protocol):
    name: str
    typed: str  # what a read returns for the timestamp column

    def open(self, path: Path) -> None: ...
    def close(self) -> None: ...
    def pragmas(self) -> dict[str, Any]: ...
    def prepare_bulk(self, rows: Sequence[Row]) -> Callable[[], None]: ...
    def prepare_single(self, rows: Sequence[Row]) -> Callable[[], None]: ...
    def get(self, key: str) -> Any: ...
    def range(self, conversation_id: str) -> list[Any]: ...
    def stream(self) -> Iterator[Any]: ...
    def worker(self) -> Worker: ...
    def canonical(self, item: Any) -> Row: ...


def _dicts(rows: Sequence[Row]) -> list[dict[str, Any]]:
    return [dict(zip(MSG_COLS, r, strict=True)) for r in rows]


def _typed_dicts(rows: Sequence[Row]) -> list[dict[str, Any]]:
    return [{**d, "timestamp": datetime.fromisoformat(d["timestamp"])} for d in _dicts(rows)]


def stamp_text(value: Any) -> Any:
    """The stored form of a timestamp a system returned (aware datetimes only)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the system dropped the offset")
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


# -- raw sqlite3 ----------------------------------------------------------------------------------


class Raw:
    """Hand-written stdlib ``sqlite3``: the same SQL text as hive-store (bench/run.py checks
    that), held connection and cursor, 100-row multi-VALUES bulk inserts."""

    name = "raw"
    typed = "str (untyped tuples)"

    def open(self, path: Path) -> None:
        self.path = path
        self.conn = raw_connect(path)
        self.cur = self.conn.cursor()

    def close(self) -> None:
        self.conn.close()

    def pragmas(self) -> dict[str, Any]:
        return pragmas(self.conn)

    def prepare_bulk(self, rows: Sequence[Row]) -> Callable[[], None]:
        def run() -> None:
            self.conn.execute("BEGIN IMMEDIATE")
            insert_batched(self.conn, rows)
            self.conn.execute("COMMIT")
        return run

    def prepare_single(self, rows: Sequence[Row]) -> Callable[[], None]:
        def run() -> None:
            execute = self.conn.execute
            for row in rows:
                execute(SQL_INSERT_MSG, row)
        return run

    def get(self, key: str) -> Any:
        return self.cur.execute(SQL_GET_MSG, (key,)).fetchone()

    def range(self, conversation_id: str) -> list[Any]:
        return self.cur.execute(SQL_FIND_MSG, (conversation_id,)).fetchall()

    def stream(self) -> Iterator[Any]:
        return iter(self.conn.execute(SQL_ITER_MSG))

    def worker(self) -> Worker:
        return _RawWorker(self.path)

    def canonical(self, item: Any) -> Row:
        return tuple(item)


class _RawWorker:
    def __init__(self, path: Path) -> None:
        self.conn = raw_connect(path)
        self.execute = self.conn.cursor().execute

    def get(self, key: str) -> Any:
        return self.execute(SQL_GET_MSG, (key,)).fetchone()

    def add(self, row: Row) -> None:
        self.conn.execute(SQL_INSERT_MSG, row)

    def close(self) -> None:
        self.conn.close()


# -- hive-store -----------------------------------------------------------------------------------


class HiveStore:
    """The project: typed entities (``hive_store.entities.Message``)."""

    name = "hive-store"
    typed = "datetime (entities)"

    def open(self, path: Path) -> None:
        self.store = open_store(path)
        self.messages = self.store.messages

    def close(self) -> None:
        self.store.close()

    def pragmas(self) -> dict[str, Any]:
        with self.store.backend.connection() as conn:
            return pragmas(conn)

    def prepare_bulk(self, rows: Sequence[Row]) -> Callable[[], None]:
        entities = [to_message(r) for r in rows]
        return lambda: self.messages.add_many(entities)

    def prepare_single(self, rows: Sequence[Row]) -> Callable[[], None]:
        entities = [to_message(r) for r in rows]

        def run() -> None:
            add = self.messages.add
            for entity in entities:
                add(entity)
        return run

    def get(self, key: str) -> Any:
        return self.messages.get(key)

    def range(self, conversation_id: str) -> list[Any]:
        return self.messages.find(conversation_id=conversation_id)

    def stream(self) -> Iterator[Any]:
        return self.messages.iter(batch_size=1000)

    def worker(self) -> Worker:
        return _HiveWorker(self.messages)

    def canonical(self, item: Any) -> Row:
        return tuple(stamp_text(getattr(item, c)) for c in MSG_COLS)


class _HiveWorker:
    def __init__(self, messages: Any) -> None:
        self.get = messages.get
        self._add = messages.add

    def add(self, row: Row) -> None:
        self._add(to_message(row))

    def close(self) -> None:
        pass


# -- SQLAlchemy Core and ORM ----------------------------------------------------------------------
# Docs followed (SQLAlchemy 2.x):
#   engine and PRAGMAs on connect: https://docs.sqlalchemy.org/en/20/dialects/sqlite.html
#     ("Foreign Key Support": a "connect" event listener runs the PRAGMAs)
#   timestamps: same page, "DATETIME" (storage_format); TypeDecorator for aware values:
#     https://docs.sqlalchemy.org/en/20/core/custom_types.html
#   Core inserts (executemany of dicts), "commit as you go":
#     https://docs.sqlalchemy.org/en/20/tutorial/data_insert.html and tutorial/dbapi_transactions
#   streaming: https://docs.sqlalchemy.org/en/20/core/connections.html
#     ("Using Server Side Cursors (a.k.a. stream results)": execution_options(yield_per=…))
#   ORM bulk INSERT: https://docs.sqlalchemy.org/en/20/orm/queryguide/dml.html
#   Session.get, select(), yield_per: https://docs.sqlalchemy.org/en/20/orm/session_basics.html
#     and https://docs.sqlalchemy.org/en/20/orm/queryguide/api.html ("Fetching Large Result
#     Sets with Yield Per")


def _sqlalchemy() -> dict[str, Any]:
    """The SQLAlchemy table and mapped class (imported lazily: a bench extra)."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import sqlite as sa_sqlite
    from sqlalchemy.orm import DeclarativeBase

    # hive-store's stored form: RFC 3339 in UTC with microseconds. Reading uses the dialect's
    # own processor (datetime.fromisoformat, in C), which keeps the +00:00 offset.
    hive_format = ("%(year)04d-%(month)02d-%(day)02dT%(hour)02d:%(minute)02d:%(second)02d"
                   ".%(microsecond)06d+00:00")

    class UTCDateTime(sa.types.TypeDecorator[datetime]):
        """Aware datetimes stored in UTC (storage_format writes the fields as given)."""

        impl = sa_sqlite.DATETIME(storage_format=hive_format)
        cache_ok = True

        def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
            return None if value is None else value.astimezone(UTC)

    metadata = sa.MetaData()
    table = sa.Table(
        "messages", metadata,
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("conversation_id", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("stage", sa.Text),
        sa.Column("model_used", sa.Text),
        sa.Column("timestamp", UTCDateTime),
    )

    class Base(DeclarativeBase):
        pass

    class MessageRow(Base):
        __table__ = table

    return {"sa": sa, "table": table, "MessageRow": MessageRow}


def _sa_engine(path: Path) -> Any:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{path}",
                              connect_args={"timeout": BUSY_TIMEOUT_S,
                                            "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def set_sqlite_pragma(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for name, value in PRAGMA_VALUES.items():
            cursor.execute(f"PRAGMA {name} = {value}").fetchall()
        cursor.close()
        TRACE.attach(dbapi_connection)

    return engine


class SQLAlchemyCore:
    name = "SQLAlchemy Core"
    typed = "datetime (Row tuples)"

    def open(self, path: Path) -> None:
        parts = _sqlalchemy()
        sa, t = parts["sa"], parts["table"]
        self.sa, self.table = sa, t
        self.engine = _sa_engine(path)
        self.conn = self.engine.connect()
        self.stmt_get = sa.select(t).where(t.c.id == sa.bindparam("key"))
        self.stmt_range = (sa.select(t).where(t.c.conversation_id == sa.bindparam("cid"))
                           .order_by(sa.literal_column("rowid")))
        self.stmt_all = sa.select(t).order_by(sa.literal_column("rowid"))
        self.stmt_insert = sa.insert(t)

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()

    def pragmas(self) -> dict[str, Any]:
        return pragmas(self.conn.connection.dbapi_connection)

    def prepare_bulk(self, rows: Sequence[Row]) -> Callable[[], None]:
        dicts = _typed_dicts(rows)

        def run() -> None:
            self.conn.execute(self.stmt_insert, dicts)
            self.conn.commit()
        return run

    def prepare_single(self, rows: Sequence[Row]) -> Callable[[], None]:
        dicts = _typed_dicts(rows)

        def run() -> None:
            execute, commit, stmt = self.conn.execute, self.conn.commit, self.stmt_insert
            for d in dicts:
                execute(stmt, d)
                commit()
        return run

    def get(self, key: str) -> Any:
        return self.conn.execute(self.stmt_get, {"key": key}).one()

    def range(self, conversation_id: str) -> list[Any]:
        return list(self.conn.execute(self.stmt_range, {"cid": conversation_id}).all())

    def stream(self) -> Iterator[Any]:
        return iter(self.conn.execution_options(yield_per=1000).execute(self.stmt_all))

    def worker(self) -> Worker:
        return _SACoreWorker(self)

    def canonical(self, item: Any) -> Row:
        return tuple(stamp_text(v) for v in item)


class _SACoreWorker:
    def __init__(self, core: SQLAlchemyCore) -> None:
        self.core = core
        self.conn = core.engine.connect()

    def get(self, key: str) -> Any:
        return self.conn.execute(self.core.stmt_get, {"key": key}).one()

    def add(self, row: Row) -> None:
        d = dict(zip(MSG_COLS, row, strict=True))
        d["timestamp"] = datetime.fromisoformat(d["timestamp"])
        self.conn.execute(self.core.stmt_insert, d)
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


class SQLAlchemyORM:
    name = "SQLAlchemy ORM"
    typed = "datetime (mapped objects)"

    def open(self, path: Path) -> None:
        from sqlalchemy.orm import Session

        parts = _sqlalchemy()
        sa, m = parts["sa"], parts["MessageRow"]
        self.sa, self.model, self.Session = sa, m, Session
        self.engine = _sa_engine(path)
        self.session = Session(self.engine)
        self.stmt_range = (sa.select(m).where(m.conversation_id == sa.bindparam("cid"))
                           .order_by(sa.literal_column("rowid")))
        self.stmt_all = (sa.select(m).order_by(sa.literal_column("rowid"))
                         .execution_options(yield_per=1000))

    def close(self) -> None:
        self.session.close()
        self.engine.dispose()

    def pragmas(self) -> dict[str, Any]:
        conn = self.session.connection().connection.dbapi_connection
        out = pragmas(conn)
        self.session.rollback()
        return out

    def prepare_bulk(self, rows: Sequence[Row]) -> Callable[[], None]:
        dicts = _typed_dicts(rows)
        stmt = self.sa.insert(self.model)

        def run() -> None:
            self.session.execute(stmt, dicts)  # "ORM Bulk INSERT Statements"
            self.session.commit()
        return run

    def prepare_single(self, rows: Sequence[Row]) -> Callable[[], None]:
        # Built before the clock, handed over one at a time: a list holding every committed
        # object would keep it in the session's identity map (weakly referencing, so an app
        # that drops its objects does not pay this), and each commit expires all of them.
        objects = deque(self.model(**d) for d in _typed_dicts(rows))

        def run() -> None:
            session, take = self.session, objects.popleft
            while objects:
                session.add(take())
                session.commit()
        return run

    def get(self, key: str) -> Any:
        return self.session.get(self.model, key)

    def range(self, conversation_id: str) -> list[Any]:
        return list(self.session.scalars(self.stmt_range, {"cid": conversation_id}).all())

    def stream(self) -> Iterator[Any]:
        return iter(self.session.scalars(self.stmt_all))

    def worker(self) -> Worker:
        return _SAORMWorker(self)

    def canonical(self, item: Any) -> Row:
        return tuple(stamp_text(getattr(item, c)) for c in MSG_COLS)


class _SAORMWorker:
    def __init__(self, orm: SQLAlchemyORM) -> None:
        self.model = orm.model
        self.session = orm.Session(orm.engine)

    def get(self, key: str) -> Any:
        return self.session.get(self.model, key)

    def add(self, row: Row) -> None:
        d = dict(zip(MSG_COLS, row, strict=True))
        d["timestamp"] = datetime.fromisoformat(d["timestamp"])
        self.session.add(self.model(**d))
        self.session.commit()

    def close(self) -> None:
        self.session.close()


# -- peewee ---------------------------------------------------------------------------------------
# Docs followed (peewee 3/4, docs.peewee-orm.com/en/latest/peewee/):
#   database.html ("Using SQLite": SqliteDatabase(path, pragmas=…); "Thread safety": one
#     connection per thread, connect()/close() around a thread's work)
#   models.html ("Creating a custom field": db_value / python_value; non-integer primary keys
#     need save(force_insert=True))
#   querying.html ("Bulk inserts": insert_many with chunked() inside db.atomic(); "Iterating
#     over large result-sets": .iterator()); Model.get_by_id


def _peewee(path: Path) -> dict[str, Any]:
    import peewee as pw

    class TracedSqliteDatabase(pw.SqliteDatabase):  # type: ignore[misc]
        def _initialize_connection(self, conn: sqlite3.Connection) -> None:
            TRACE.attach(conn)  # a no-op unless peers.py is tracing

    db = TracedSqliteDatabase(str(path), pragmas=list(PRAGMA_VALUES.items()),
                              timeout=BUSY_TIMEOUT_S, check_same_thread=False)

    class HiveTimestampField(pw.Field):  # type: ignore[misc]
        """Aware datetimes as hive-store stores them: RFC 3339 in UTC with microseconds."""

        field_type = "TEXT"

        def db_value(self, value: datetime | None) -> str | None:
            if value is None:
                return None
            return value.astimezone(UTC).isoformat(timespec="microseconds")

        def python_value(self, value: str | None) -> datetime | None:
            return None if value is None else datetime.fromisoformat(value)

    class Message(pw.Model):  # type: ignore[misc]
        id = pw.TextField(primary_key=True)
        conversation_id = pw.TextField()
        role = pw.TextField()
        content = pw.TextField()
        stage = pw.TextField(null=True)
        model_used = pw.TextField(null=True)
        timestamp = HiveTimestampField(null=True)

        class Meta:
            database = db
            table_name = "messages"

    return {"pw": pw, "db": db, "Message": Message}


class Peewee:
    name = "peewee"
    typed = "datetime (model objects, custom field)"

    def open(self, path: Path) -> None:
        parts = _peewee(path)
        self.pw, self.db, self.model = parts["pw"], parts["db"], parts["Message"]
        self.db.connect()

    def close(self) -> None:
        self.db.close()

    def pragmas(self) -> dict[str, Any]:
        return pragmas(self.db.connection())

    def prepare_bulk(self, rows: Sequence[Row]) -> Callable[[], None]:
        dicts = _typed_dicts(rows)
        chunked, model = self.pw.chunked, self.model

        def run() -> None:
            with self.db.atomic():
                for batch in chunked(dicts, 100):
                    model.insert_many(batch).execute()
        return run

    def prepare_single(self, rows: Sequence[Row]) -> Callable[[], None]:
        objects = [self.model(**d) for d in _typed_dicts(rows)]

        def run() -> None:
            for obj in objects:
                obj.save(force_insert=True)
        return run

    def get(self, key: str) -> Any:
        return self.model.get_by_id(key)

    def range(self, conversation_id: str) -> list[Any]:
        m = self.model
        return list(m.select().where(m.conversation_id == conversation_id)
                    .order_by(self.pw.SQL("rowid")))

    def stream(self) -> Iterator[Any]:
        return iter(self.model.select().order_by(self.pw.SQL("rowid")).iterator())

    def worker(self) -> Worker:
        return _PeeweeWorker(self)

    def canonical(self, item: Any) -> Row:
        return tuple(stamp_text(getattr(item, c)) for c in MSG_COLS)


class _PeeweeWorker:
    def __init__(self, owner: Peewee) -> None:
        self.db, self.model = owner.db, owner.model
        self.db.connect(reuse_if_open=True)  # this thread's connection

    def get(self, key: str) -> Any:
        return self.model.get_by_id(key)

    def add(self, row: Row) -> None:
        d = dict(zip(MSG_COLS, row, strict=True))
        d["timestamp"] = datetime.fromisoformat(d["timestamp"])
        self.model(**d).save(force_insert=True)

    def close(self) -> None:
        self.db.close()


# -- sqlite-utils ---------------------------------------------------------------------------------
# Docs followed: https://sqlite-utils.datasette.io/en/stable/python-api.html
#   "Connecting to or creating a database" (Database(sqlite3 connection)), "Bulk inserts"
#   (insert_all, default batch_size 100), "Inserting data" (table.insert), "Retrieving a
#   specific record" (table.get), "Listing rows" (rows_where with where/where_args/order_by).
# recursive_triggers=False: sqlite-utils turns that PRAGMA on by default; off keeps every
# system's PRAGMAs identical (the messages table has no triggers under --plugins core).


def _su_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    for name, value in PRAGMA_VALUES.items():
        conn.execute(f"PRAGMA {name} = {value}").fetchall()
    TRACE.attach(conn)
    return conn


class SqliteUtils:
    name = "sqlite-utils"
    typed = "str (untyped dicts)"

    def open(self, path: Path) -> None:
        import sqlite_utils

        self.path = path
        self.Database = sqlite_utils.Database
        self.db = sqlite_utils.Database(_su_connect(path), recursive_triggers=False)
        self.table = self.db.table("messages")

    def close(self) -> None:
        self.db.close()

    def pragmas(self) -> dict[str, Any]:
        return pragmas(self.db.conn)

    def prepare_bulk(self, rows: Sequence[Row]) -> Callable[[], None]:
        dicts = _dicts(rows)
        return lambda: self.table.insert_all(dicts)

    def prepare_single(self, rows: Sequence[Row]) -> Callable[[], None]:
        dicts = _dicts(rows)

        def run() -> None:
            insert = self.table.insert
            for d in dicts:
                insert(d)
        return run

    def get(self, key: str) -> Any:
        return self.table.get(key)

    def range(self, conversation_id: str) -> list[Any]:
        return list(self.table.rows_where("conversation_id = ?", [conversation_id],
                                          order_by="rowid"))

    def stream(self) -> Iterator[Any]:
        return iter(self.table.rows_where(order_by="rowid"))

    def worker(self) -> Worker:
        return _SUWorker(self)

    def canonical(self, item: Any) -> Row:
        return tuple(item[c] for c in MSG_COLS)


class _SUWorker:
    def __init__(self, owner: SqliteUtils) -> None:
        self.db = owner.Database(_su_connect(owner.path), recursive_triggers=False)
        self.table = self.db.table("messages")

    def get(self, key: str) -> Any:
        return self.table.get(key)

    def add(self, row: Row) -> None:
        self.table.insert(dict(zip(MSG_COLS, row, strict=True)))

    def close(self) -> None:
        self.db.close()


SYSTEMS: dict[str, Callable[[], System]] = {
    "raw": Raw,
    "hive-store": HiveStore,
    "sa-core": SQLAlchemyCore,
    "sa-orm": SQLAlchemyORM,
    "peewee": Peewee,
    "sqlite-utils": SqliteUtils,
}
PEERS = ("sa-core", "sa-orm", "peewee", "sqlite-utils")
ORMS = ("sa-orm", "peewee")
