"""The PostgreSQL backend: psycopg 3 connections from a ``psycopg_pool`` pool.

Connections are in autocommit mode. What SQLite gets from its one writer, this backend gets
from PostgreSQL's own concurrency control:

* **Single writes** (``add``, ``upsert``, ``delete`` outside a transaction) are one statement
  each, atomic on their own (``READ COMMITTED``); a deadlock is retried.
* **Repository operations of several statements** (``update``, ``add_many``) run in a
  transaction of their own, with row locks where they read before writing (``SELECT … FOR
  UPDATE``), and are retried after a deadlock or serialization failure.
* **``transaction()`` blocks** run at ``REPEATABLE READ`` (option ``isolation``): the block
  reads one snapshot, and if it updates or deletes a row that another transaction changed
  after that snapshot, it is rolled back with :class:`hive_store.TransactionConflict`
  instead of overwriting that change (where SQLite makes the second writer wait, PostgreSQL
  lets both run and stops the one that would lose an update). Blocks that insert never
  collide. A ``with`` block cannot be run again by the library;
  :meth:`PostgresBackend.run_transaction` (``Store.run_transaction``, used by
  ``record_consensus``) can, and does. ``isolation="serializable"`` also refuses write
  skew, but PostgreSQL then tracks reads by index page and concurrent blocks that only
  insert with time-ordered keys (hive-store's) collide often: measured, not assumed
  (tests/test_concurrency.py runs the write/read test at the default).
* **A failed statement inside a transaction** leaves the transaction usable, as in SQLite:
  every statement of a ``transaction()`` block runs under a savepoint (PostgreSQL would
  otherwise abort the whole transaction at the first error). Work that is known to be all or
  nothing (``run_transaction``) skips those savepoints.

Reads use a pooled connection for one statement; ``iter()`` holds one connection for its
server-side cursor (in a read-only transaction: one snapshot) until it is exhausted, closed or
collected. Inside a transaction every read and write of the calling thread uses the
transaction's connection.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import attrs

from hive_store import ownership
from hive_store.backend import CommitListener
from hive_store.changes import Batch, Change, Changes, Op
from hive_store.errors import (
    HiveStoreError,
    StorageError,
    StoreClosed,
)
from hive_store.url import StoreURL
from hive_store_postgres.dialect import DIALECT
from hive_store_postgres.errors import retryable, translate_error
from hive_store_postgres.options import ISOLATION_LEVELS, PostgresOptions, conninfo, describe

log = logging.getLogger("hive_store.postgres")
T = TypeVar("T")

_names = itertools.count(1)
_LANE_SIZE = 8  # idle connections kept out of the pool at most (and never above max_size)
_LANE_SECONDS = 30.0  # then a connection goes back through the pool (its lifetime checks)
_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE


def quote(identifier: str) -> str:
    """Quote an identifier taken from the schema (never from user input)."""
    return '"' + identifier.replace('"', '""') + '"'


@attrs.define(eq=False)
class _Tx:
    conn: Any
    before: bool = False  # someone listens before commit
    after: bool = False  # someone listens after commit
    depth: int = 0
    guard: bool = True  # a savepoint around each statement (a failed one keeps the tx usable)
    changes: list[Change | Batch] = attrs.field(factory=list)
    tid: int = 0
    owners: list[FrameType] = attrs.field(factory=list)  # generator frames owning a level
    ended: bool = False

    def usable(self) -> bool:
        """Whether the current thread may use this transaction now (see
        :mod:`hive_store.ownership`)."""
        return not self.ended and all(ownership.running_here(o) for o in self.owners)

    def suspended_error(self) -> StorageError:
        owner = next((o for o in self.owners if not ownership.running_here(o)), None)
        where = ownership.describe(owner) if owner is not None else "a generator"
        return StorageError(
            f"this thread's transaction was opened by {where}, which is suspended or running "
            "in another thread: a write now would join that transaction and be lost if it "
            "rolls back. Finish (or close) the generator first, or open the transaction "
            "outside it")


# Frames looked through when finding a transaction's owner (hive_store.ownership).
_INTERNAL = tuple(sorted({
    str(Path(contextlib.__file__)),
    str(Path(__file__).parent) + os.sep,
    str(Path(sys.modules["hive_store"].__file__ or "").parent) + os.sep,
}))


class PostgresBackend:
    """See the module docstring. Built by the plugin's ``hive_store_backend`` hook."""

    dialect = "postgresql"
    sql = DIALECT  # what the migration runner needs to know (hive_store.migrations.SQLDialect)
    memory = False

    def __init__(self, url: StoreURL, options: PostgresOptions, params: dict[str, str],
                 prepare: Callable[[Any, PostgresBackend], None]) -> None:
        import psycopg_pool

        self.url = url
        self.options = options
        self.read_only = options.read_only
        self._params = params  # libpq's connection parameters, the password among them
        self._prepare = prepare
        self._local = threading.local()
        self._listener: CommitListener | None = None
        self._closed = False
        self._repos: dict[type, Any] = {}
        self._begin = f"BEGIN ISOLATION LEVEL {ISOLATION_LEVELS[options.isolation]}"
        self.retries = {"serialization": 0, "deadlock": 0}
        self._pid = os.getpid()
        self._owned: dict[int, _Tx] = {}  # id(owner frame) -> its transaction
        self._lane: collections.deque[Any] = collections.deque()
        self._lane_lock = threading.Lock()
        self._waiting = 0
        self._lane_size = 0 if options.test_on_checkout else min(options.max_size, _LANE_SIZE)
        self.pool = psycopg_pool.ConnectionPool(
            conninfo(params, options), min_size=options.min_idle, max_size=options.max_size,
            timeout=options.connection_timeout, max_idle=options.idle_timeout or 10**9,
            max_lifetime=options.max_lifetime or 3600.0,
            kwargs={"autocommit": True}, configure=self._configure,
            check=psycopg_pool.ConnectionPool.check_connection
            if options.test_on_checkout else None,
            reconnect_timeout=max(options.connect_timeout, 1.0), open=False,
            name=f"hive-store-{next(_names)}")
        try:
            self._open_pool()
        except BaseException:
            self.pool.close(timeout=0)
            raise

    # -- connections ------------------------------------------------------------------------------

    def _open_pool(self) -> None:
        """Open the pool, with a clear error when the server cannot be reached."""
        import psycopg

        try:
            # One connection first: a failure says why (psycopg_pool only says "timeout").
            with psycopg.connect(conninfo(self._params, self.options), autocommit=True) as conn:
                version = conn.info.server_version
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to {self.url}: {_reason(exc)}") from None
        if version < 120000:
            raise StorageError(f"{self.url}: PostgreSQL {version // 10000} is too old "
                               "(hive-store needs 12 or later)")
        self.server_version = version
        self.pool.open(wait=self.options.min_idle > 0,
                       timeout=max(self.options.connect_timeout, 1.0) + 5)

    def _configure(self, conn: Any) -> None:
        """Every new connection: JSON read as text (the codec parses it, as for SQLite), and
        the plugins' ``hive_store_prepare_connection``."""
        from psycopg.types.string import TextLoader

        for name in ("json", "jsonb"):
            conn.adapters.register_loader(name, TextLoader)
        self._prepare(conn, self)

    # The fast lane: idle connections this backend keeps after use (LIFO, at most
    # _LANE_SIZE), taken and given back with one atomic deque operation instead of
    # psycopg_pool's locked getconn/putconn (a few microseconds of a point read's ~30).
    # A connection goes back to the pool instead when a thread waits for one there, when it
    # has been out of the pool for _LANE_SECONDS (so the pool's max_lifetime and idle
    # timeout still apply), when it is not idle, or when test_on_checkout asks for the
    # pool's check on every use.

    def _check_fork(self) -> None:
        """A store is one process's: in a child made by ``os.fork()`` it refuses to work
        (the connections belong to the parent; using or closing them there would break the
        parent's sessions)."""
        if os.getpid() != self._pid:
            raise StoreClosed("this store was opened in another process (before os.fork()): "
                              "open a new one in this process")

    def _checkout(self) -> Any:
        if self._closed:
            raise StoreClosed("the store is closed")
        if os.getpid() != self._pid:
            self._check_fork()
        try:
            return self._lane.pop()
        except IndexError:
            pass
        with self._lane_lock:
            self._waiting += 1
        try:
            conn = self.pool.getconn()
        except Exception as exc:  # PoolTimeout, PoolClosed, a connection error
            raise translate_error(exc, "waiting for a connection") from None
        finally:
            with self._lane_lock:
                self._waiting -= 1
        conn._hive_store_since = time.monotonic()
        return conn

    def _checkin(self, conn: Any) -> None:
        if (not self._waiting and not self._closed and len(self._lane) < self._lane_size
                and conn.info.transaction_status == _IDLE
                and time.monotonic() - conn._hive_store_since < _LANE_SECONDS):
            self._lane.append(conn)
            return
        try:
            self.pool.putconn(conn)
        except Exception:
            log.debug("a connection could not go back to the pool", exc_info=True)

    def _drain_lane(self) -> None:
        while True:
            try:
                conn = self._lane.pop()
            except IndexError:
                return
            with contextlib.suppress(Exception):
                self.pool.putconn(conn)

    def _tx(self, writing: bool) -> _Tx | None:
        """The calling thread's transaction, if it may use it now. A transaction opened by a
        generator that is suspended is not used: writes raise, reads take a connection of
        their own (committed data). Code running inside a generator whose transaction belongs
        to another thread may not work at all."""
        tx: _Tx | None = getattr(self._local, "tx", None)
        if tx is None:
            if self._owned:
                foreign = ownership.on_this_stack(self._owned)  # type: ignore[arg-type]
                if foreign is not None and foreign.tid != threading.get_ident():  # type: ignore[attr-defined]
                    raise StorageError(
                        "this code runs in a generator that opened a transaction in another "
                        "thread; a transaction belongs to the thread that opened it: finish "
                        "the generator there")
            return None
        if tx.ended:
            self._local.tx = None  # ended elsewhere (a generator closed in another thread)
            return self._tx(writing)
        if tx.owners and not tx.usable():
            if writing:
                raise tx.suspended_error()
            return None
        return tx

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """A connection for reads: the thread's transaction connection, or one from the pool."""
        tx = self._tx(False)
        if tx is not None:
            yield tx.conn
            return
        conn = self._checkout()
        try:
            yield conn
        finally:
            self._checkin(conn)

    def fetch(self, sql: str, params: Sequence[Any], *, one: bool = False,
              factory: Callable[[Sequence[Any]], Any] | None = None, what: str = "") -> Any:
        """Run a read and return the first row or all rows (made by ``factory`` from each
        row's values, if given). Inside a transaction: on its connection."""
        tx: _Tx | None = getattr(self._local, "tx", None)
        if tx is not None or self._owned:
            tx = self._tx(False)
        if tx is not None:
            if os.getpid() != self._pid:
                self._check_fork()
            # No savepoint for a read: one that fails at the server (a timeout, a lost
            # connection) is rare enough to let it end the transaction.
            try:
                return _fetch(tx.conn, sql, params, one, factory)
            except Exception as exc:
                raise translate_error(exc, what) from None
        conn = self._checkout()
        try:
            return _fetch(conn, sql, params, one, factory)
        except Exception as exc:
            raise translate_error(exc, what) from None
        finally:
            self._checkin(conn)

    # -- transactions -------------------------------------------------------------------------

    def in_transaction(self) -> bool:
        tx: _Tx | None = getattr(self._local, "tx", None)
        return tx is not None and not tx.ended

    def set_commit_listener(self, listener: CommitListener | None) -> None:
        self._listener = listener

    def record(self, change: Change) -> None:
        tx: _Tx | None = getattr(self._local, "tx", None)
        if tx is None:
            raise RuntimeError("record() outside a transaction")
        if tx.before or tx.after:
            tx.changes.append(change)

    def recording(self) -> bool:
        tx: _Tx | None = getattr(self._local, "tx", None)
        return tx is not None and (tx.before or tx.after)

    def record_many(self, op: Op, table: str, key_of: Callable[[Any], Any],
                    entities: Sequence[Any]) -> None:
        """Record many rows written together: one entry, expanded into :class:`Change`
        records only if a listener reads them."""
        tx: _Tx | None = getattr(self._local, "tx", None)
        if tx is None:
            raise RuntimeError("record_many() outside a transaction")
        if tx.before or tx.after:
            tx.changes.append(Batch(op, table, key_of, entities))

    def _refuse_writes(self) -> None:
        if self.read_only:
            raise StorageError(f"{self.url} is open read-only: writes are refused")

    def _guarded(self, tx: _Tx, fn: Callable[[], T], what: str) -> T:
        """``fn()`` on the transaction's connection; if it fails, the transaction is as it was
        before (a savepoint), as a failed statement leaves a SQLite transaction."""
        if not tx.guard:
            try:
                return fn()
            except Exception as exc:
                raise translate_error(exc, what) if not isinstance(
                    exc, HiveStoreError) else exc from None
        conn = tx.conn
        conn.execute("SAVEPOINT hive_store_stmt")
        try:
            result = fn()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK TO SAVEPOINT hive_store_stmt")
                conn.execute("RELEASE SAVEPOINT hive_store_stmt")
            if isinstance(exc, Exception) and not isinstance(exc, HiveStoreError):
                raise translate_error(exc, what) from None
            raise
        conn.execute("RELEASE SAVEPOINT hive_store_stmt")
        return result

    def write(self, sql: str, params: Sequence[Any], what: str,
              change: Callable[[Result], Change | None] | None = None) -> Result:
        """Run one write statement: in the thread's transaction if there is one, else on its
        own (autocommit; retried after a deadlock). ``change`` builds its :class:`Change` from
        the :class:`Result` (or ``None``: nothing changed), called only when a commit listener
        listens. Returns the :class:`Result` (``rowcount``, the ``RETURNING`` row)."""
        self._refuse_writes()
        tx: _Tx | None = getattr(self._local, "tx", None)
        if tx is not None or self._owned:
            tx = self._tx(True)
        if tx is not None:
            if os.getpid() != self._pid:
                self._check_fork()
            cur = self._guarded(tx, lambda: _execute(tx.conn, sql, params), what)
            if change is not None and (tx.before or tx.after):
                made = change(cur)
                if made is not None:
                    tx.changes.append(made)
            return cur
        listener = self._listener
        before, after = listener.listening() if listener is not None else (False, False)
        if before:
            return self.run_transaction(lambda: self.write(sql, params, what, change),
                                        what=what, isolation="read_committed")
        cur = self._autocommit(lambda conn: _execute(conn, sql, params), what)
        if after and change is not None and listener is not None:
            made = change(cur)
            if made is not None:
                listener.after_commit(Changes((made,)))
        return cur

    def _autocommit(self, fn: Callable[[Any], T], what: str) -> T:
        """``fn(connection)`` outside a transaction (one statement commits on its own); run
        again after a deadlock, up to ``retries`` times."""
        attempt = 0
        give_up = time.monotonic() + self.options.retry_timeout
        while True:
            conn = self._checkout()
            try:
                return fn(conn)
            except Exception as exc:
                if not (retryable(exc) and self._again(attempt, give_up)):
                    raise translate_error(exc, what) if not isinstance(
                        exc, HiveStoreError) else exc from None
                self._count_retry(exc)
            finally:
                self._checkin(conn)
            attempt += 1
            _backoff(attempt)

    def _again(self, attempt: int, give_up: float) -> bool:
        """Whether a colliding operation runs once more (``retries``, ``retry_timeout``)."""
        return attempt < self.options.retries and time.monotonic() < give_up

    def _count_retry(self, exc: BaseException) -> None:
        key = "deadlock" if getattr(exc, "sqlstate", None) == "40P01" else "serialization"
        self.retries[key] += 1

    @contextlib.contextmanager
    def transaction(self, *, what: str = "", isolation: str | None = None,
                    guard: bool = True) -> Iterator[Any]:
        """A write transaction (``BEGIN ISOLATION LEVEL …``); nested calls are savepoints.
        ``guard=False``: no savepoint per statement (the caller treats the block as all or
        nothing)."""
        tx = self._tx(True)
        if tx is not None:
            self._check_fork()
            yield from self._savepoint(tx)
            return
        self._refuse_writes()
        owner = ownership.owner_frame(0, _INTERNAL)
        conn = self._checkout()
        listener = self._listener
        before, after = listener.listening() if listener is not None else (False, False)
        tx = _Tx(conn, before, after, guard=guard, tid=threading.get_ident(),
                 owners=[owner] if owner is not None else [])
        begin = self._begin if isolation is None else (
            f"BEGIN ISOLATION LEVEL {ISOLATION_LEVELS[isolation]}")
        try:
            try:
                conn.execute(begin)
            except Exception as exc:
                raise translate_error(exc, f"starting a write ({what})" if what
                                      else "starting a write") from None
            self._local.tx = tx
            if owner is not None:
                self._owned[id(owner)] = tx
            try:
                yield conn
                if threading.get_ident() != tx.tid:
                    raise StorageError(
                        "a transaction opened in another thread (by a generator resumed "
                        "here) cannot be committed here: it was rolled back; finish the "
                        "generator in the thread that started it")
                if tx.changes and before and listener is not None:
                    listener.before_commit(conn, Changes(tx.changes))
                try:
                    conn.execute("COMMIT")
                except Exception as exc:
                    raise translate_error(exc, what or "committing") from None
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    if not conn.closed:
                        conn.execute("ROLLBACK")
                if _driver_error(exc):
                    raise translate_error(exc, what) from None
                raise
            finally:
                tx.ended = True
                if owner is not None:
                    self._owned.pop(id(owner), None)
                if threading.get_ident() == tx.tid:
                    self._local.tx = None
        finally:
            self._checkin(conn)
        if tx.changes and tx.after and self._listener is not None:
            self._listener.after_commit(Changes(tx.changes))

    def run_transaction(self, fn: Callable[[], T], *, what: str = "",
                        isolation: str | None = None) -> T:
        """``fn()`` in a transaction, run again (with a growing random pause, up to ``retries``
        times and ``retry_timeout`` seconds) after a serialization failure or a deadlock.
        Inside a transaction it is a savepoint and is not retried: the outermost transaction
        is what can run again."""
        if self._tx(True) is not None:
            with self.transaction(what=what):
                return fn()
        attempt = 0
        give_up = time.monotonic() + self.options.retry_timeout
        while True:
            try:
                with self.transaction(what=what, isolation=isolation, guard=False):
                    return fn()
            except HiveStoreError as exc:
                if not (retryable(exc) and self._again(attempt, give_up)):
                    raise
                self._count_retry(exc)
            attempt += 1
            _backoff(attempt)

    def _savepoint(self, tx: _Tx) -> Iterator[Any]:
        name = f"hive_store_sp{tx.depth}"
        mark = len(tx.changes)
        owner = ownership.owner_frame(1, _INTERNAL)
        if owner is not None:
            tx.owners.append(owner)
        tx.depth += 1
        conn = tx.conn
        try:
            conn.execute(f"SAVEPOINT {name}")
        except Exception as exc:
            tx.depth -= 1
            if owner is not None:
                tx.owners.remove(owner)
            raise translate_error(exc, "starting a savepoint") from None
        try:
            yield conn
        except BaseException as exc:
            with contextlib.suppress(Exception):
                conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                conn.execute(f"RELEASE SAVEPOINT {name}")
            del tx.changes[mark:]
            if _driver_error(exc):
                raise translate_error(exc) from None
            raise
        else:
            try:
                conn.execute(f"RELEASE SAVEPOINT {name}")
            except Exception as exc:
                raise translate_error(exc, "releasing a savepoint") from None
        finally:
            tx.depth -= 1
            if owner is not None and owner in tx.owners:
                tx.owners.remove(owner)

    # -- streaming ------------------------------------------------------------------------------

    def iterate(self, sql: str, params: Sequence[Any], batch_size: int,
                factory: Callable[[Sequence[Any]], Any], what: str) -> Iterator[Any]:
        """Rows of ``sql`` from a server-side cursor, ``batch_size`` at a time: in the
        calling thread's transaction, or on a connection of its own in a read-only
        transaction (one snapshot), given back when the iterator ends, is closed or is
        collected."""
        tx = self._tx(False)
        if self._closed:
            raise StoreClosed("the store is closed")
        return self._iterate(tx, sql, params, batch_size, factory, what)

    def _iterate(self, tx: _Tx | None, sql: str, params: Sequence[Any], batch_size: int,
                 factory: Callable[[Sequence[Any]], Any], what: str) -> Iterator[Any]:
        # A generator: nothing happens (no connection is taken) before the first next().
        from psycopg.rows import RowMaker

        def rows(_cursor: Any) -> RowMaker[Any]:
            return factory

        name = f"hive_store_iter_{next(_names)}"
        if tx is not None:
            conn, own = tx.conn, False
        else:
            conn, own = self._checkout(), True
        try:
            if own:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cur = conn.cursor(name=name, row_factory=rows)
            try:
                cur.itersize = batch_size
                cur.execute(sql, params)
                if tx is None:
                    while batch := cur.fetchmany(batch_size):
                        yield from batch
                else:  # it belongs to the transaction: its thread, while it lasts
                    while True:
                        _bound(tx)
                        batch = cur.fetchmany(batch_size)
                        if not batch:
                            break
                        for row in batch:
                            _bound(tx)
                            yield row
            finally:
                with contextlib.suppress(Exception):
                    cur.close()
        except HiveStoreError:
            raise
        except Exception as exc:
            raise translate_error(exc, what) from None
        finally:
            if own:
                with contextlib.suppress(Exception):
                    conn.execute("COMMIT")
                self._checkin(conn)

    # -- repositories and facts ----------------------------------------------------------------

    def repository(self, codec: Any) -> Any:
        from hive_store_postgres.repository import PostgresRepository

        repo = self._repos.get(codec.cls)
        if repo is None:
            repo = self._repos[codec.cls] = PostgresRepository(self, codec)
        return repo

    def table_names(self) -> list[str]:
        with self.connection() as conn:
            return sorted(DIALECT.table_names(conn))

    def table_counts(self) -> dict[str, int]:
        with self.connection() as conn:
            try:
                return {name: int(conn.execute(f"SELECT count(*) FROM {quote(name)}")
                                  .fetchone()[0])
                        for name in sorted(DIALECT.table_names(conn))}
            except Exception as exc:
                raise translate_error(exc, "counting rows") from None

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"backend": "postgresql", "url": str(self.url),
                                 "path": str(self.url)}
        try:
            with self.connection() as conn:
                row = conn.execute(
                    "SELECT current_database(), current_user, current_schema(), "
                    "pg_database_size(current_database()), current_setting('server_version'), "
                    "current_setting('TimeZone'), current_setting('statement_timeout'), "
                    "current_setting('lock_timeout'), current_setting('server_encoding'), "
                    "current_setting('max_connections')").fetchone()
        except Exception as exc:
            raise translate_error(exc, "describing the database") from None
        (facts["database"], facts["user"], facts["schema"], facts["size_bytes"],
         facts["server_version"], tz, statement, lock, encoding, max_conn) = row
        facts["settings"] = {"TimeZone": tz, "statement_timeout": statement,
                             "lock_timeout": lock, "server_encoding": encoding,
                             "max_connections": max_conn,
                             "isolation": ISOLATION_LEVELS[self.options.isolation]}
        facts["connection"] = describe(self._params)
        facts["pool"] = {k: v for k, v in attrs.asdict(self.options).items()
                         if k in ("max_size", "min_idle", "connection_timeout", "idle_timeout",
                                  "max_lifetime", "test_on_checkout")}
        facts["pool_stats"] = self.pool_stats()
        facts["retries"] = dict(self.retries)
        facts["read_only"] = self.read_only
        return facts

    def check_integrity(self, *, full: bool = False) -> dict[str, Any]:
        """``quick``: the server answers, and is not a read-only standby unless opened
        read-only. ``full``: every table is read through (a damaged page raises), and every
        B-tree index is checked with ``amcheck`` when that extension is installed."""
        problems: list[str] = []
        facts: dict[str, Any] = {}
        try:
            with self.connection() as conn:
                standby = bool(conn.execute("SELECT pg_is_in_recovery()").fetchone()[0])
                facts["in_recovery"] = standby
                if standby and not self.read_only:
                    problems.append("the server is a read-only standby")
                if full:
                    tables = sorted(DIALECT.table_names(conn))
                    for name in tables:
                        conn.execute(f"SELECT count(*) FROM {quote(name)}").fetchone()
                    facts["tables_read"] = len(tables)
                    has_amcheck = conn.execute(
                        "SELECT 1 FROM pg_extension WHERE extname = 'amcheck'").fetchone()
                    if has_amcheck:
                        indexes = conn.execute(
                            "SELECT c.oid FROM pg_index i JOIN pg_class c ON c.oid = "
                            "i.indexrelid JOIN pg_am a ON a.oid = c.relam WHERE a.amname = "
                            "'btree' AND c.relnamespace = current_schema()::regnamespace"
                        ).fetchall()
                        for (oid,) in indexes:
                            conn.execute("SELECT bt_index_check(%s)", (oid,))
                        facts["indexes_checked"] = len(indexes)
                    else:
                        facts["indexes_checked"] = "amcheck not installed"
        except HiveStoreError:
            raise
        except Exception as exc:
            problems.append(str(translate_error(exc, "checking")))
        result: Any = problems if problems else "ok"
        return {"ok": not problems, "integrity_check" if full else "quick_check": result,
                **facts}

    def pool_stats(self) -> dict[str, int]:
        """The pool's counters in the SQLite pool's terms (plus psycopg_pool's own); idle
        connections in the fast lane count as idle."""
        raw = self.pool.get_stats()
        size = raw.get("pool_size", 0)
        idle = min(size, raw.get("pool_available", 0) + len(self._lane))
        return {"size": size, "idle": idle, "in_use": max(0, size - idle),
                "waits": raw.get("requests_queued", 0),
                "timeouts": raw.get("requests_errors", 0),
                "created": raw.get("connections_num", 0),
                "checkouts": raw.get("requests_num", 0),
                "lost": raw.get("connections_lost", 0) + raw.get("returns_bad", 0)}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if os.getpid() != self._pid:
            return  # a forked child: the connections and the pool's threads are the parent's
        self._drain_lane()
        self.pool.close(timeout=5)


def _fetch(conn: Any, sql: str, params: Sequence[Any], one: bool,
           factory: Callable[[Sequence[Any]], Any] | None) -> Any:
    cur = conn.execute(sql, params)
    if factory is None:
        return cur.fetchone() if one else cur.fetchall()
    if one:
        row = cur.fetchone()
        return None if row is None else factory(row)
    return [factory(r) for r in cur.fetchall()]


class Result:
    """What a write statement did: ``rowcount`` and its first ``RETURNING`` row (``key`` is
    that row's first value: the key PostgreSQL assigned)."""

    __slots__ = ("row", "rowcount")

    def __init__(self, rowcount: int, row: Any) -> None:
        self.rowcount = rowcount
        self.row = row

    @property
    def key(self) -> Any:
        return None if self.row is None else self.row[0]


def _execute(conn: Any, sql: str, params: Sequence[Any]) -> Result:
    cur = conn.execute(sql, params)
    return Result(cur.rowcount, cur.fetchone() if cur.description is not None else None)


def _bound(tx: _Tx) -> None:
    """An iterator opened inside a transaction is used by its thread while it lasts."""
    if tx.ended:
        raise StorageError("this iterator was opened inside a transaction that has ended; "
                           "open it again (outside the transaction it reads committed data)")
    if threading.get_ident() != tx.tid or (tx.owners and not tx.usable()):
        raise StorageError("this iterator was opened inside another thread's (or a suspended "
                           "generator's) transaction: it can only be used there")


def _driver_error(exc: BaseException) -> bool:
    """A psycopg (or pool) error that reached a transaction block unconverted (a plugin's
    statement on the transaction's connection, a repository's own statements)."""
    module = type(exc).__module__
    return module.startswith(("psycopg.", "psycopg_pool")) or module == "psycopg"


def _backoff(attempt: int) -> None:
    """A random pause growing with the attempt (1 ms to ~0.2 s), so colliding transactions
    do not collide again in step."""
    time.sleep(random.uniform(0, min(0.2, 0.001 * 2 ** min(attempt, 8))))


def _reason(exc: BaseException) -> str:
    """Why a connection failed, on one line (libpq's messages name the server and the user,
    never the password)."""
    lines = [" ".join(ln.split()) for ln in str(exc).splitlines() if ln.strip()]
    text = "; ".join(lines) or type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"
