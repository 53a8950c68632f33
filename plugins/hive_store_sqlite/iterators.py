"""Iterators of the SQLite backend (``repository.iter()``): each owns its connection.

* Outside a transaction, on a file, an iterator checks out a connection of its own at its
  first ``next()`` and keeps it (and so one read snapshot) until it is exhausted, closed, fails
  or is collected. Any thread may advance or finish it; the connection goes back to the pool
  exactly once, without waiting for the pool's lock (the garbage collector may finish an
  abandoned iterator on any thread, even one holding that lock). No thread-local slot ever
  points at it, so other reads of the thread that started it use connections of their own.
* An in-memory store has one connection: its iterators take it for each batch only, so they
  see what was committed (on that connection) between their batches, and an abandoned one
  blocks nobody.
* An iterator that starts (takes its first row) inside a transaction reads the transaction's
  connection and sees its writes; it belongs to that transaction: advanced by another thread,
  or after the transaction ended (even for rows it had already fetched), it raises
  :class:`hive_store.StorageError`. (The asyncio ``iter`` inside ``async with
  store.transaction()`` starts on the transaction's thread, so it reads through it too.)
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from hive_store.errors import StorageError
from hive_store_sqlite import ownership
from hive_store_sqlite.ownership import Tx
from hive_store_sqlite.texts import reread, text_or_bytes, undecodable

if TYPE_CHECKING:
    from hive_store_sqlite.backend import SQLiteBackend

Factory = Callable[[Any, Any], Any] | None


def iterate(backend: SQLiteBackend, sql: str, params: Sequence[Any], batch_size: int,
            factory: Factory, what: str) -> Iterator[Any]:
    """The generator behind ``repository.iter()`` (see the module docstring). Where it reads
    is decided when it starts (its first ``next()``), on the thread that starts it: through
    that thread's transaction if it is in one, else on a connection of its own (the common
    case, looped here without a delegating generator: that would cost a frame switch per
    row). sqlite3 errors become hive_store errors naming ``what``."""
    from hive_store_sqlite.backend import _broken, translate_error

    tx = backend._read_tx()
    if tx is not None:
        yield from _in_transaction(tx, sql, params, batch_size, factory, what)
        return
    if backend.memory:
        yield from _shared(backend, sql, params, batch_size, factory, what)
        return
    backend._check_open()
    pool = backend.pool
    conn = pool.checkout()
    broken = True
    cursor: sqlite3.Cursor | None = None
    done = 0
    try:
        cursor = conn.cursor()
        cursor.row_factory = factory
        cursor.execute(sql, params)
        while True:
            if backend._closed:
                raise backend._closed_error()
            try:
                batch = cursor.fetchmany(batch_size)
            except sqlite3.Error as exc:  # TEXT that is not UTF-8: read on, such text as bytes
                if not undecodable(exc) or conn.text_factory is text_or_bytes:
                    raise
                cursor = reread(conn, cursor, sql, params, done, factory)
                continue
            if not batch:
                break
            done += len(batch)
            yield from batch
        broken = False
    except GeneratorExit:
        broken = False
        raise
    except sqlite3.Error as exc:
        raise translate_error(exc, what) from None
    finally:
        if not backend._forked:  # a child after fork() never touches the parent's connection
            if cursor is not None:
                with contextlib.suppress(sqlite3.Error):
                    cursor.close()
            conn.text_factory = str
            if broken:
                broken = _broken(conn)
            # Never waits: this may run in a finalizer, on any thread.
            pool.checkin(conn, broken=broken, blocking=False)


def _in_transaction(tx: Tx, sql: str, params: Sequence[Any], batch_size: int,
                    factory: Factory, what: str) -> Iterator[Any]:
    from hive_store_sqlite.backend import translate_error

    cursor: sqlite3.Cursor | None = None
    done = 0
    try:
        _check_bound(tx)
        cursor = tx.conn.cursor()
        cursor.row_factory = factory
        tx.cursors.append(cursor)
        cursor.execute(sql, params)
        while True:
            _check_bound(tx)
            try:
                batch = cursor.fetchmany(batch_size)
            except sqlite3.Error as exc:  # TEXT that is not UTF-8: read on, such text as bytes
                if not undecodable(exc) or tx.conn.text_factory is text_or_bytes:
                    raise
                with contextlib.suppress(ValueError):
                    tx.cursors.remove(cursor)
                try:
                    cursor = reread(tx.conn, cursor, sql, params, done, factory)
                finally:
                    tx.conn.text_factory = str  # rows are decoded as they are fetched
                tx.cursors.append(cursor)
                batch = _fetch_as_bytes(tx.conn, cursor, batch_size)
            if not batch:
                break
            done += len(batch)
            for row in batch:
                _check_bound(tx)  # rows fetched before the transaction ended stay unread
                yield row
    except sqlite3.Error as exc:
        raise translate_error(exc, what) from None
    finally:
        if cursor is not None and not tx.ended and threading.get_ident() == tx.tid:
            with contextlib.suppress(sqlite3.Error):
                cursor.close()
            with contextlib.suppress(ValueError):
                tx.cursors.remove(cursor)


def _fetch_as_bytes(conn: sqlite3.Connection, cursor: sqlite3.Cursor,
                    batch_size: int) -> list[Any]:
    """``fetchmany`` with TEXT that is not UTF-8 read as bytes (on a connection shared with
    other code, the ``text_factory`` is set for this call only)."""
    conn.text_factory = text_or_bytes
    try:
        return cursor.fetchmany(batch_size)
    finally:
        conn.text_factory = str


def _check_bound(tx: Tx) -> None:
    """An iterator opened inside ``tx`` may go on only in it, on its thread."""
    if tx.ended:
        raise StorageError("this iterator was opened inside a transaction that has ended; "
                           "iterate inside the transaction, or open the iterator outside it")
    if threading.get_ident() != tx.tid or (tx.owners and not tx.usable()):
        raise StorageError("this iterator was opened inside another thread's (or a suspended "
                           "generator's) transaction: only that transaction's code can "
                           "advance it")


def _shared(backend: SQLiteBackend, sql: str, params: Sequence[Any], batch_size: int,
            factory: Factory, what: str) -> Iterator[Any]:
    """The in-memory store's iterator: its one connection is taken for each step."""
    from hive_store_sqlite.backend import translate_error

    cursor: sqlite3.Cursor | None = None
    done, as_bytes = 0, False
    try:
        while True:
            if backend._closed:
                raise backend._closed_error()
            with _step_connection(backend) as conn:
                if cursor is None:
                    cursor = conn.cursor()
                    cursor.row_factory = factory
                    cursor.execute(sql, params)
                if as_bytes:
                    batch = _fetch_as_bytes(conn, cursor, batch_size)
                else:
                    try:
                        batch = cursor.fetchmany(batch_size)
                    except sqlite3.Error as exc:  # TEXT that is not UTF-8: as bytes from here
                        if not undecodable(exc):
                            raise
                        as_bytes = True
                        try:
                            cursor = reread(conn, cursor, sql, params, done, factory)
                        finally:
                            conn.text_factory = str
                        batch = _fetch_as_bytes(conn, cursor, batch_size)
            if not batch:
                break
            done += len(batch)
            yield from batch
    except sqlite3.Error as exc:
        raise translate_error(exc, what) from None
    finally:
        if cursor is not None and not backend._forked:
            # Closing only resets the cursor's own statement (SQLite serialises the call on
            # the connection): safe without taking the connection, as a finalizer must be.
            with contextlib.suppress(sqlite3.Error):
                cursor.close()


@contextlib.contextmanager
def _step_connection(backend: SQLiteBackend) -> Iterator[sqlite3.Connection]:
    """The in-memory connection for one step: the thread's transaction's or borrowed one's
    if it has one (the same connection, already its to use), else taken from the pool."""
    tx = backend._read_tx()
    if tx is not None:
        yield tx.conn
        return
    local = backend._local
    held = ownership.current_held(local) if getattr(local, "held", None) is not None else None
    if held is not None:
        yield held.conn
        return
    with backend.pool.connection() as conn:
        yield conn
