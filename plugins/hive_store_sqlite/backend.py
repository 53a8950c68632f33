"""The SQLite backend: a pooled, WAL-mode database with one writer and concurrent readers.

Connections are in autocommit mode (``isolation_level=None``); every write runs in an explicit
``BEGIN IMMEDIATE … COMMIT`` taken by one thread at a time (a process-wide write lock, plus
SQLite's own lock and ``busy_timeout`` between processes), so writers never fail with
"database is locked" and readers never hold a stale snapshot between calls.

Who uses which connection (see :mod:`hive_store_sqlite.ownership`): a transaction's connection
belongs to the thread (and the generator, if one opened it) that runs it; an iterator
(:meth:`SQLiteBackend.iterate`) holds a connection of its own for its whole life, whichever
threads advance it, and returns it exactly once however it ends; everything else borrows a
pooled connection for one call. Files: :mod:`hive_store_sqlite.files`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from hive_store.backend import CommitListener
from hive_store.changes import Batch, Change, Changes, Op
from hive_store.errors import (
    ConfigurationError,
    Conflict,
    CorruptDatabase,
    DatabaseLocked,
    IntegrityError,
    PoolTimeout,
    StorageError,
    StoreClosed,
)
from hive_store.url import StoreURL
from hive_store_sqlite import files, iterators, ownership, waits
from hive_store_sqlite.dialect import DIALECT
from hive_store_sqlite.files import quote_uri_path
from hive_store_sqlite.options import SQLiteOptions
from hive_store_sqlite.ownership import ForkedStore, Held, TransactionSuspended, Tx
from hive_store_sqlite.pool import Pool

log = logging.getLogger("hive_store.sqlite")

__all__ = ["ForkedStore", "SQLiteBackend", "SQLiteOptions", "TransactionSuspended",
           "quote_uri_path", "translate_error"]


# SQLite's primary result codes (the low byte of an extended code) by what they mean for a
# caller. Errors are classified by exception type and code only: a message can hold the
# caller's own words (an FTS5 query is echoed back: "no such column: corrupt"), so no decision
# is ever taken on its text.
_LOCKED = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_CONFLICT = frozenset({sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE,
                       sqlite3.SQLITE_CONSTRAINT_ROWID})


def error_code(exc: BaseException) -> int | None:
    """The primary SQLite result code of ``exc`` (``sqlite3.SQLITE_BUSY`` …), or ``None`` when
    it has none (raised by the ``sqlite3`` module itself, or not a ``sqlite3.Error``)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite refusing because another connection holds a lock
    (``SQLITE_BUSY``/``SQLITE_LOCKED``), by its code."""
    return isinstance(exc, sqlite3.OperationalError) and error_code(exc) in _LOCKED


def translate_error(exc: sqlite3.Error, what: str = "") -> Exception:
    """The hive_store exception for a sqlite3 error (never leaks the bare sqlite3 one).

    Classified by exception type and SQLite result code (``sqlite_errorcode``), never by the
    message: ``Conflict`` for a primary-key or unique violation, ``IntegrityError`` for other
    constraints, ``DatabaseLocked`` for ``SQLITE_BUSY``/``SQLITE_LOCKED``, ``CorruptDatabase``
    for ``SQLITE_CORRUPT``/``SQLITE_NOTADB``, ``StorageError`` otherwise. The result carries
    ``sqlite_errorcode`` and ``sqlite_errorname`` of the original (``None`` when it had none),
    so callers can tell, e.g., a read-only file (``SQLITE_READONLY``) from a full disk."""
    msg = str(exc)
    prefix = f"{what}: " if what else ""
    extended = getattr(exc, "sqlite_errorcode", None)
    code = error_code(exc)
    error: Exception
    if isinstance(exc, sqlite3.IntegrityError) or code == sqlite3.SQLITE_CONSTRAINT:
        error = (Conflict if extended in _CONFLICT else IntegrityError)(f"{prefix}{msg}")
    elif code in _LOCKED:
        error = DatabaseLocked(f"{prefix}the database stayed locked by another writer ({msg})")
    elif code in _DAMAGED:
        error = CorruptDatabase(f"{prefix}the database file is damaged or not SQLite ({msg})")
    elif code == sqlite3.SQLITE_READONLY:
        error = StorageError(f"{prefix}the database cannot be written ({msg})")
    else:
        error = StorageError(f"{prefix}{msg}")
    vars(error).update(sqlite_errorcode=extended,
                       sqlite_errorname=getattr(exc, "sqlite_errorname", None))
    return error


def quote(identifier: str) -> str:
    """Quote an identifier taken from the schema (never from user input)."""
    return '"' + identifier.replace('"', '""') + '"'


WOULD_BLOCK: Any = object()
"""What :meth:`SQLiteBackend.fetch_nowait` returns instead of waiting."""


_RO_CODES = frozenset({sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM,
                       sqlite3.SQLITE_AUTH})


def _with_code(err: Exception, exc: sqlite3.Error) -> Exception:
    """``err`` carrying the SQLite error code of ``exc`` (for :func:`_code`)."""
    err.sqlite_errorcode = getattr(exc, "sqlite_errorcode", None)  # type: ignore[attr-defined]
    return err


def _code(exc: BaseException) -> int | None:
    """The primary SQLite result code of an exception (``None`` if it carries none)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


class SQLiteBackend:
    """See the module docstring. Built by the plugin's ``hive_store_backend`` hook."""

    dialect = "sqlite"
    sql = DIALECT  # what the migration runner needs to know (hive_store.migrations.SQLDialect)

    def __init__(self, url: StoreURL, options: SQLiteOptions,
                 prepare: Callable[[sqlite3.Connection, SQLiteBackend], None]) -> None:
        self.url = url
        self.options = options
        self.memory = url.memory
        self._prepare = prepare
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._writer: Tx | None = None  # the transaction holding the write lock, if any
        self._listener: CommitListener | None = None
        self._closed = False
        self._forked = False
        self._pid = os.getpid()
        self._repos: dict[type, Any] = {}
        self._on_wait = options.on_wait
        self.read_only = options.read_only
        self.read_only_reason: str | None = "opened with read_only=True" if self.read_only \
            else None
        """Why writes are refused: asked for, or the file/folder/mount cannot be written."""
        self.immutable = False
        """Opened with SQLite's ``immutable=1`` (see :meth:`_open_read_only`)."""
        self.permissions_warning: str | None = None
        """Set when the database file can be read by other users."""
        self._private_sidecars = False
        self._uri = True
        if self.memory and self.read_only:
            raise ConfigurationError("an in-memory database cannot be opened read-only")
        if self.memory:
            # One in-memory database shared by the whole store: one connection, serialised.
            name = f"hive-store-{id(self)}-{time.monotonic_ns()}"
            self._target = f"file:{name}?mode=memory&cache=shared"
            self._where = ":memory:"
            pool_cfg = attrs.evolve(options.pool, max_size=1, min_idle=1,
                                    idle_timeout=None, max_lifetime=None)
            # Keeps the database alive while pooled connections come and go.
            self._keeper: sqlite3.Connection | None = sqlite3.connect(
                self._target, uri=True, check_same_thread=False)
            self.pool = Pool(self._connect, pool_cfg)
            self._start()
        else:
            self.path = Path(url.path)
            self._where = str(self.path)
            self._open_file()
        ownership.register(self)

    # -- opening ----------------------------------------------------------------------------------

    def _open_file(self) -> None:
        """Open the database file: refuse what is not a regular file, create a new one (0600,
        in an existing folder), and open one that cannot be written in place read-only."""
        path = self.path
        files.require_regular(path)
        exists = path.exists()
        if not exists and self.read_only:
            raise StorageError(f"no database file at {path} (opened read-only)")
        if not exists:
            files.require_folder(path)
            try:
                files.create_private(path)
            except OSError as exc:
                raise StorageError(f"cannot create {path}: {exc.strerror or exc}") from None
        elif not self.read_only:
            reason = files.unwritable(path)
            if reason is not None:
                self._fall_back(reason)
        self.permissions_warning = files.check_private(path, fix=not self.read_only)
        self._private_sidecars = self.permissions_warning is not None and not self.read_only
        if self.read_only:
            self._open_read_only()
            return
        self._target, self._uri = str(path), False
        try:
            self._start()
        except StorageError as exc:
            # A file that looked writable but is not (ACLs, a mount option, another user's
            # -shm): read it rather than fail every command.
            if _code(exc) not in _RO_CODES or not exists or path.stat().st_size == 0:
                raise
            self._fall_back(f"{path} cannot be written here ({exc})")
            self._open_read_only()

    def _fall_back(self, reason: str) -> None:
        self.read_only = True
        self.read_only_reason = reason
        log.warning("opening %s read-only: %s; writes will be refused", self.path, reason)

    def _open_read_only(self) -> None:
        """SQLite's ``mode=ro``. A WAL database whose ``-shm`` file cannot be created (a
        read-only folder) and that has no ``-wal`` content to read is opened ``immutable=1``:
        no locks, no change detection — correct as long as nobody writes the file meanwhile,
        which a read-only folder or mount normally guarantees (documented in guarantees.md)."""
        self._target, self._uri = files.uri(self.path, mode="ro"), True
        try:
            self._start()
        except StorageError as exc:
            wal = Path(f"{self.path}-wal")
            if _code(exc) != sqlite3.SQLITE_CANTOPEN or (wal.exists() and _size(wal) > 0):
                raise
            self._target = files.uri(self.path, mode="ro", immutable="1")
            self.immutable = True
            self._start()
            log.info("opened %s immutable (read-only folder, no -shm file)", self.path)

    def _start(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None and not self.memory:
            pool.close()
        if not self.memory:
            self.pool = Pool(self._connect, self.options.pool)
        try:
            self.pool.fill()
            if not self.memory and not self.read_only:
                with self.pool.connection() as conn:
                    self._init_new_database(conn)
        except BaseException:
            self.pool.close()
            if self.memory:
                self.close()
            raise

    # -- connections ------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self._target, isolation_level=None, check_same_thread=False,
                timeout=self.options.busy_timeout, uri=self._uri,
                cached_statements=self.options.cached_statements, factory=_Connection,
            )
        except sqlite3.Error as exc:
            raise _with_code(StorageError(f"cannot open {self._where}: {exc}"), exc) from None
        try:
            self._prepare(conn, self)
            if self.read_only:
                conn.execute("PRAGMA schema_version").fetchone()  # opens the file (and WAL)
        except sqlite3.Error as exc:
            conn.close()
            raise _with_code(translate_error(exc, f"opening {self._where}"), exc) from None
        except BaseException:
            conn.close()
            raise
        if self._private_sidecars:
            files.private_sidecars(self.path)
        return conn

    def apply_pragmas(self, conn: sqlite3.Connection) -> None:
        """The per-connection settings; run for every connection the pool opens."""
        opts = self.options
        conn.execute(f"PRAGMA busy_timeout = {int(opts.busy_timeout * 1000)}")
        if (not self.memory and not self.read_only
                and conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal"):
            # Switching needs a moment of exclusive access and SQLite does not apply
            # busy_timeout to it, so wait for a writer in another process ourselves.
            mode = self._retry_busy(
                lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            if str(mode).lower() != "wal":
                raise StorageError(f"could not switch {self._where} to WAL (got {mode!r})")
        sync = {"normal": "NORMAL", "full": "FULL"}[opts.durability]
        conn.execute(f"PRAGMA synchronous = {sync}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA cache_size = {-int(opts.cache_size_kib)}")
        conn.execute(f"PRAGMA mmap_size = {int(opts.mmap_size)}")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute(f"PRAGMA wal_autocheckpoint = {int(opts.wal_autocheckpoint)}")

    def _retry_busy(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` until it is not refused as busy/locked, up to ``busy_timeout``."""
        deadline = time.monotonic() + self.options.busy_timeout
        delay = 0.002
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _init_new_database(self, conn: sqlite3.Connection) -> None:
        """``auto_vacuum=INCREMENTAL`` only while the file is empty (it is a write otherwise)."""

        def init() -> None:
            if conn.execute("PRAGMA page_count").fetchone()[0] <= 1:
                # Needs a VACUUM to take effect once the header exists; cheap on an empty file.
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
                    conn.execute("VACUUM")

        try:
            self._retry_busy(init)
        except sqlite3.Error as exc:
            raise translate_error(exc, str(self.path)) from None

    # -- whose connection -------------------------------------------------------------------------

    def _read_tx(self) -> Tx | None:
        """The thread's transaction if reads may use it now (not ended, not suspended)."""
        tx: Tx | None = getattr(self._local, "tx", None)
        if tx is None:
            return None
        if tx.ended:
            self._local.tx = None
            return None
        return tx if not tx.owners or tx.usable() else None

    def _write_tx(self) -> Tx | None:
        """The thread's transaction for a write; raises if it is suspended in a generator."""
        tx: Tx | None = getattr(self._local, "tx", None)
        if tx is None:
            return None
        if tx.ended:
            self._local.tx = None
            return None
        if tx.owners and not tx.usable():
            raise tx.suspended_error()
        return tx

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads: the thread's transaction connection, or one borrowed from
        the pool for the block (nested reads of this thread in the block share it). A sqlite3
        error escaping the block is translated."""
        try:
            tx = self._read_tx()
            if tx is not None:
                yield tx.conn
                return
            held = ownership.current_held(self._local) \
                if getattr(self._local, "held", None) is not None else None
            if held is not None:
                yield held.conn
                return
            self._check_open()
            owner = ownership.owner_frame(0)
            conn = self.pool.checkout()
            record = Held(conn, owner, getattr(self._local, "held", None))
            self._local.held = record
            broken = False
            try:
                yield conn
            except BaseException:
                broken = _broken(conn)
                raise
            finally:
                record.ended = True
                if getattr(self._local, "held", None) is record:
                    self._local.held = record.prev
                self.pool.checkin(conn, broken=broken, blocking=owner is None)
        except sqlite3.Error as exc:
            raise translate_error(exc, f"reading {self._where}") from None

    def fetch(self, sql: str, params: Sequence[Any], *, one: bool = False,
              factory: Callable[[Any, Any], Any] | None = None) -> Any:
        """Run a read and return ``fetchone()`` or ``fetchall()`` (rows made by ``factory``,
        a ``sqlite3`` row factory, if given) — the hot path of the repositories, without
        context-manager overhead. sqlite3 errors are the caller's to translate."""
        local = self._local
        tx: Tx | None = getattr(local, "tx", None)
        if tx is not None and not tx.ended and (not tx.owners or tx.usable()):
            return _fetch(tx.conn, sql, params, one, factory)
        if getattr(local, "held", None) is not None:
            held = ownership.current_held(local)
            if held is not None:
                return _fetch(held.conn, sql, params, one, factory)
        if self._closed:
            raise self._closed_error()
        pool = self.pool
        return self._fetch_pooled(pool.try_checkout() or pool.checkout(), sql, params, one,
                                  factory)

    def fetch_nowait(self, sql: str, params: Sequence[Any], *, one: bool = False,
                     factory: Callable[[Any, Any], Any] | None = None) -> Any:
        """:meth:`fetch` on an idle pooled connection, or :data:`WOULD_BLOCK` when it would
        have to wait for one (or open one) or the thread is inside a transaction."""
        local = self._local
        if (getattr(local, "tx", None) is not None or getattr(local, "held", None) is not None
                or self._closed):
            return WOULD_BLOCK
        conn = self.pool.try_checkout()
        if conn is None:
            return WOULD_BLOCK
        return self._fetch_pooled(conn, sql, params, one, factory)

    def _fetch_pooled(self, conn: sqlite3.Connection, sql: str, params: Sequence[Any],
                      one: bool, factory: Callable[[Any, Any], Any] | None) -> Any:
        """:func:`_fetch` on a connection checked out for it, then returned."""
        try:
            result = _fetch(conn, sql, params, one, factory)
        except BaseException:
            self.pool.checkin(conn, broken=_broken(conn))
            raise
        self.pool.checkin(conn)
        return result

    # -- iterators --------------------------------------------------------------------------------

    def iterate(self, sql: str, params: Sequence[Any], batch_size: int,
                factory: Callable[[Any, Any], Any] | None, what: str) -> Iterator[Any]:
        """Rows of a query, ``batch_size`` at a time, as a generator that owns its connection
        (see :mod:`hive_store_sqlite.iterators`)."""
        return iterators.iterate(self, sql, params, batch_size, factory, what)

    # -- transactions -------------------------------------------------------------------------

    def in_transaction(self) -> bool:
        return self._read_tx() is not None

    def set_commit_listener(self, listener: CommitListener | None) -> None:
        self._listener = listener

    def record(self, change: Change) -> None:
        tx = self._write_tx()
        if tx is None:
            raise RuntimeError("record() outside a transaction")
        if tx.before or tx.after:
            tx.changes.append(change)

    def recording(self) -> bool:
        tx = self._read_tx()
        return tx is not None and (tx.before or tx.after)

    def record_many(self, op: Op, table: str, key_of: Callable[[Any], Any],
                    entities: Sequence[Any]) -> None:
        """Record many rows written together: one entry, expanded into :class:`Change`
        records only if a listener reads them."""
        tx = self._write_tx()
        if tx is None:
            raise RuntimeError("record_many() outside a transaction")
        if tx.before or tx.after:
            tx.changes.append(Batch(op, table, key_of, entities))

    def write(self, sql: str, params: Sequence[Any], what: str,
              change: Callable[[sqlite3.Cursor], Change | None] | None = None) -> sqlite3.Cursor:
        """Run one write statement: in the thread's transaction if there is one, else
        committed on its own. ``change`` builds its :class:`Change` from the cursor (or
        ``None``: nothing changed), called only when a commit listener listens.

        A single statement is atomic in SQLite, so inside a transaction it needs no
        savepoint, and outside one, when nobody listens before commit, it runs in autocommit
        mode under the writer lock: the same guarantees as ``BEGIN IMMEDIATE; …; COMMIT``
        (the statement takes the write lock up front and ``busy_timeout`` applies) at a third
        of the statements.
        """
        local = self._local
        tx: Tx | None = getattr(local, "tx", None)
        if tx is not None:
            tx = self._write_tx()
        if tx is not None:
            try:
                cur = tx.conn.execute(sql, params)
            except sqlite3.Error as exc:
                raise translate_error(exc, what) from None
            if change is not None and (tx.before or tx.after):
                made = change(cur)
                if made is not None:
                    tx.changes.append(made)
            return cur
        listener = self._listener
        before, after = listener.listening() if listener is not None else (False, False)
        if before or self._on_wait is not None:
            with self.transaction(what=what) as conn:
                try:
                    cur = conn.execute(sql, params)
                except sqlite3.Error as exc:
                    raise translate_error(exc, what) from None
                made = change(cur) if change is not None else None
                if made is not None:
                    self.record(made)
            return cur
        self._check_open()
        conn, pooled = self._take_writer()
        broken = False
        try:
            cur = conn.execute(sql, params)
        except sqlite3.Error as exc:
            broken = _broken(conn)
            raise translate_error(exc, what) from None
        except BaseException:
            broken = True
            raise
        finally:
            self._release_writer(conn, pooled, broken)
        if after and change is not None and listener is not None:
            made = change(cur)
            if made is not None:
                listener.after_commit(Changes((made,)))
        return cur

    @contextlib.contextmanager
    def transaction(self, *, foreign_keys: bool = True,
                    what: str = "") -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``); nested calls are savepoints.

        ``foreign_keys=False`` (outermost transactions only) turns enforcement off for this
        transaction, as SQLite's table-rebuild procedure requires; it is back on afterwards.
        The transaction belongs to the calling thread, and to the generator or coroutine
        whose ``with`` block opened it, if any (see :mod:`hive_store_sqlite.ownership`).
        """
        outer = self._write_tx()
        if outer is not None:
            if not foreign_keys:
                raise RuntimeError("foreign_keys=False needs an outermost transaction")
            yield from self._savepoint(outer)
            return
        self._check_open()
        owner = ownership.owner_frame(0)
        conn, pooled = self._take_writer()
        tx = Tx(conn, tid=threading.get_ident(), owners=[owner] if owner is not None else [])
        broken = True
        try:
            try:
                if not foreign_keys:
                    try:
                        conn.execute("PRAGMA foreign_keys = OFF")
                    except sqlite3.Error as exc:
                        raise translate_error(exc, what or "starting a write") from None
                self._begin(conn, what)
                listener = self._listener
                tx.before, tx.after = (listener.listening() if listener is not None
                                       else (False, False))
                self._local.tx = tx
                self._writer = tx
                try:
                    yield conn
                    if self._forked:
                        raise self._closed_error()
                    if tx.changes and tx.before and listener is not None:
                        listener.before_commit(conn, Changes(tx.changes))
                    conn.execute("COMMIT")
                except BaseException as exc:
                    if not self._forked and conn.in_transaction:
                        try:
                            conn.execute("ROLLBACK")
                        except sqlite3.Error:
                            log.exception("rollback failed")
                    if isinstance(exc, sqlite3.Error):
                        raise translate_error(exc, what) from None
                    raise
                finally:
                    if not self._forked:
                        tx.end()
                    tx.ended = True
                    if self._writer is tx:
                        self._writer = None
                    if getattr(self._local, "tx", None) is tx:
                        self._local.tx = None
            finally:
                if not self._forked:
                    broken = conn.in_transaction
                    if not foreign_keys:
                        try:
                            conn.execute("PRAGMA foreign_keys = ON")
                        except sqlite3.Error:
                            broken = True
        finally:
            if not self._forked:
                # A generator's transaction can end in a finalizer: never wait for the pool.
                self._release_writer(conn, pooled, broken, blocking=not tx.owners)
        if tx.changes and tx.after and self._listener is not None:
            self._listener.after_commit(Changes(tx.changes))

    def _begin(self, conn: sqlite3.Connection, what: str) -> None:
        """``BEGIN IMMEDIATE``, waiting up to ``busy_timeout`` for a writer in another process;
        with an ``on_wait`` listener, in one-second steps it hears about."""
        try:
            if self._on_wait is None:
                conn.execute("BEGIN IMMEDIATE")
                return
            waits.begin_immediate(conn, self._on_wait, self.options.busy_timeout)
        except sqlite3.Error as exc:
            context = f"starting a write ({what})" if what else "starting a write"
            raise translate_error(exc, context) from None

    def _take_writer(self) -> tuple[sqlite3.Connection, bool]:
        """Take the write lock and a connection to write with: ``(connection, pooled)``.
        An in-memory store has one connection: a write inside a ``connection()`` block of
        the same thread shares it (``pooled`` is then false)."""
        if self.read_only:
            raise StorageError(f"{self._where} is open read-only ({self.read_only_reason}): "
                               "writes are refused")
        timeout = self.pool.config.connection_timeout
        if not self._write_lock.acquire(blocking=False):
            writer = self._writer
            if (writer is not None and writer.owners and writer.tid != threading.get_ident()
                    and any(ownership.running_here(o) for o in writer.owners)):
                raise TransactionSuspended(
                    "this code runs in a generator that opened a transaction in another "
                    "thread; a transaction belongs to the thread that opened it: finish the "
                    "generator there")
            if not self._write_lock.acquire(timeout=timeout):
                raise PoolTimeout(f"the writer stayed busy for more than {timeout:g} s")
        try:
            if self._closed:
                raise self._closed_error()
            held = ownership.current_held(self._local) if self.memory and getattr(
                self._local, "held", None) is not None else None
            if held is not None:
                return held.conn, False
            return self.pool.checkout(), True
        except BaseException:
            self._write_lock.release()
            raise

    def _release_writer(self, conn: sqlite3.Connection, pooled: bool, broken: bool,
                        blocking: bool = True) -> None:
        try:
            if pooled:
                self.pool.checkin(conn, broken=broken, blocking=blocking)
        finally:
            self._write_lock.release()

    def _savepoint(self, tx: Tx) -> Iterator[sqlite3.Connection]:
        name = f"hive_store_sp{tx.depth}"
        mark = len(tx.changes)
        owner = ownership.owner_frame(0)
        conn = tx.conn
        try:
            conn.execute(f"SAVEPOINT {name}")
        except sqlite3.Error as exc:
            raise translate_error(exc, "starting a nested transaction") from None
        tx.depth += 1
        if owner is not None:
            tx.owners.append(owner)
        try:
            yield conn
        except BaseException:
            if not self._forked:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute(f"ROLLBACK TO {name}")
                    conn.execute(f"RELEASE {name}")
            del tx.changes[mark:]
            raise
        else:
            if self._forked:
                raise self._closed_error()
            try:
                conn.execute(f"RELEASE {name}")
            except sqlite3.Error as exc:
                raise translate_error(exc, "ending a nested transaction") from None
        finally:
            tx.depth -= 1
            if owner is not None:
                with contextlib.suppress(ValueError):
                    tx.owners.remove(owner)

    # -- repositories and facts ----------------------------------------------------------------

    def repository(self, codec: Any) -> Any:
        from hive_store_sqlite.repository import SQLiteRepository

        repo = self._repos.get(codec.cls)
        if repo is None:
            repo = self._repos[codec.cls] = SQLiteRepository(self, codec)
        return repo

    def table_counts(self) -> dict[str, int]:
        import sqlite_utils

        with self.connection() as conn:
            db = sqlite_utils.Database(conn)
            return {name: db.table(name).count for name in sorted(db.table_names())
                    if not name.startswith("sqlite_")}

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"backend": "sqlite", "url": str(self.url),
                                 "sqlite_version": sqlite3.sqlite_version}
        if self.memory:
            facts["path"] = ":memory:"
        else:
            facts["path"] = str(self.path)
            facts["size_bytes"] = _size(self.path)
            facts["wal_bytes"] = _size(Path(f"{self.path}-wal"))
        with self.connection() as conn:
            facts["pragmas"] = {
                name: conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout",
                             "auto_vacuum", "cache_size", "page_size", "page_count",
                             "freelist_count")
            }
        facts["pool"] = attrs.asdict(self.pool.config)
        facts["pool_stats"] = attrs.asdict(self.pool.stats())
        facts["durability"] = self.options.durability
        facts["read_only"] = self.read_only
        if self.read_only:
            facts["read_only_reason"] = self.read_only_reason
            facts["immutable"] = self.immutable
        if not self.memory:
            facts["not_writable"] = files.unwritable(self.path)  # why not, or None
        if self.permissions_warning:
            facts["permissions_warning"] = self.permissions_warning
        return facts

    def check_integrity(self, *, full: bool = False) -> dict[str, Any]:
        """``quick_check`` (or ``integrity_check`` with ``full``) and the pragmas in force."""
        pragma = "integrity_check" if full else "quick_check"
        with self.connection() as conn:
            try:
                rows = [r[0] for r in conn.execute(f"PRAGMA {pragma}(20)").fetchall()]
                journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
                fks = bool(conn.execute("PRAGMA foreign_keys").fetchone()[0])
            except sqlite3.Error as exc:
                raise translate_error(exc, pragma) from None
        ok_rows = rows == ["ok"]
        expected_journal = "memory" if self.memory else "wal"
        return {
            "ok": ok_rows and fks and (journal == expected_journal or self.read_only),
            "quick_check" if not full else "integrity_check": "ok" if ok_rows else rows,
            "quick_check": "ok" if ok_rows else rows,
            "journal_mode": journal,
            "foreign_keys": fks,
        }

    def pool_stats(self) -> dict[str, int]:
        return attrs.asdict(self.pool.stats())

    # -- lifecycle --------------------------------------------------------------------------------

    def _closed_error(self) -> StoreClosed:
        if self._forked:
            return ForkedStore(
                f"this store was opened by process {self._pid}; process {os.getpid()} is a "
                "child made by os.fork() and must open its own store (an inherited SQLite "
                "connection must not be used)")
        return StoreClosed("the store is closed")

    def _check_open(self) -> None:
        if self._closed:
            raise self._closed_error()

    def _forked_in_child(self) -> None:
        """Called in a child process right after ``os.fork()`` (single-threaded)."""
        if self._closed and not self._forked:
            return
        self._forked = True
        self._closed = True
        tx = getattr(self._local, "tx", None)
        if tx is not None:
            tx.ended = True  # its connection is the parent's: never touched here
        held = getattr(self._local, "held", None)
        while held is not None:
            held.ended = True
            held = held.prev
        ownership.keep_forever((self.pool, getattr(self, "_keeper", None)))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.pool.close()
        keeper = getattr(self, "_keeper", None)
        if keeper is not None:
            keeper.close()
            self._keeper = None


class _Connection(sqlite3.Connection):
    """A pooled connection: a ``sqlite3.Connection`` that keeps one cursor for
    :meth:`SQLiteBackend.fetch` (reads that fetch every row, so the cursor is always reset
    when they return and never holds a read snapshot open)."""

    reader: sqlite3.Cursor | None = None


def _fetch(conn: sqlite3.Connection, sql: str, params: Sequence[Any], one: bool,
           factory: Callable[[Any, Any], Any] | None) -> Any:
    cur: sqlite3.Cursor | None = getattr(conn, "reader", None)
    if cur is None:
        cur = conn.cursor()
        if isinstance(conn, _Connection):
            conn.reader = cur
    cur.row_factory = factory
    # fetchall even for one row: stepping to the end resets the statement (a half-read one
    # would keep the connection's read transaction, and its snapshot, open).
    rows = cur.execute(sql, params).fetchall()
    if one:
        return rows[0] if rows else None
    return rows


def _broken(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1").fetchone()
    except sqlite3.Error:
        return True
    return False


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def sql_params(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)
