"""The SQLite backend: a pooled, WAL-mode database with one writer and concurrent readers.

Connections are in autocommit mode (``isolation_level=None``); every write runs in an explicit
``BEGIN IMMEDIATE … COMMIT`` taken by one thread at a time (a process-wide write lock, plus
SQLite's own lock and ``busy_timeout`` between processes), so writers never fail with
"database is locked" and readers never hold a stale snapshot between calls.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import threading
import time
import urllib.parse
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
from hive_store_sqlite.pool import Pool, PoolConfig

log = logging.getLogger("hive_store.sqlite")


@attrs.frozen
class SQLiteOptions:
    """Options of :func:`hive_store.open` for ``sqlite:`` URLs."""

    pool: PoolConfig = PoolConfig()
    busy_timeout: float = 30.0
    durability: str = "normal"  # "normal" (synchronous=NORMAL) or "full" (synchronous=FULL)
    cache_size_kib: int = 32000
    mmap_size: int = 268435456
    wal_autocheckpoint: int = 1000
    cached_statements: int = 256
    read_only: bool = False  # SQLite's mode=ro: no file created, no journal-mode switch, no writes


def translate_error(exc: sqlite3.Error, what: str = "") -> Exception:
    """The hive_store exception for a sqlite3 error (never leaks the bare sqlite3 one)."""
    msg = str(exc)
    prefix = f"{what}: " if what else ""
    if isinstance(exc, sqlite3.IntegrityError):
        if "UNIQUE" in msg or "PRIMARY KEY" in msg:
            return Conflict(f"{prefix}{msg}")
        return IntegrityError(f"{prefix}{msg}")
    low = msg.lower()
    if "locked" in low or "busy" in low:
        return DatabaseLocked(f"{prefix}the database stayed locked by another writer ({msg})")
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return CorruptDatabase(f"{prefix}the database file is damaged or not SQLite ({msg})")
    if "no such table" in low:
        return StorageError(f"{prefix}{msg} (is the schema migrated? try `hive-store migrate`)")
    return StorageError(f"{prefix}{msg}")


def quote(identifier: str) -> str:
    """Quote an identifier taken from the schema (never from user input)."""
    return '"' + identifier.replace('"', '""') + '"'


WOULD_BLOCK: Any = object()
"""What :meth:`SQLiteBackend.fetch_nowait` returns instead of waiting."""


@attrs.define
class _Tx:
    conn: sqlite3.Connection
    before: bool = False  # someone listens before commit
    after: bool = False  # someone listens after commit
    depth: int = 0
    changes: list[Change | Batch] = attrs.field(factory=list)


class SQLiteBackend:
    """See the module docstring. Built by the plugin's ``hive_store_backend`` hook."""

    dialect = "sqlite"

    def __init__(self, url: StoreURL, options: SQLiteOptions,
                 prepare: Callable[[sqlite3.Connection, SQLiteBackend], None]) -> None:
        self.url = url
        self.options = options
        self.memory = url.memory
        self._prepare = prepare
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._listener: CommitListener | None = None
        self._closed = False
        self._repos: dict[type, Any] = {}
        self.read_only = options.read_only
        if self.memory and self.read_only:
            raise ConfigurationError("an in-memory database cannot be opened read-only")
        if self.memory:
            # One in-memory database shared by the whole store: one connection, serialised.
            name = f"hive-store-{id(self)}-{time.monotonic_ns()}"
            self._target = f"file:{name}?mode=memory&cache=shared"
            pool_cfg = attrs.evolve(options.pool, max_size=1, min_idle=1,
                                    idle_timeout=None, max_lifetime=None)
            # Keeps the database alive while pooled connections come and go.
            self._keeper: sqlite3.Connection | None = sqlite3.connect(
                self._target, uri=True, check_same_thread=False)
        else:
            self.path = Path(url.path)
            if self.read_only:
                if not self.path.is_file():
                    raise StorageError(f"no database file at {self.path} (opened read-only)")
                # A URI, so every character of the path is quoted (?, #, % are not syntax).
                self._target = f"file:{quote_uri_path(self.path)}?mode=ro"
            else:
                self._create_file()
                self._target = str(self.path)
            pool_cfg = options.pool
        self.pool = Pool(self._connect, pool_cfg)
        try:
            self.pool.fill()
            if not self.memory and not self.read_only:
                with self.pool.connection() as conn:
                    self._init_new_database(conn)
        except BaseException:
            self.close()
            raise

    # -- connections ------------------------------------------------------------------------------

    def _create_file(self) -> None:
        path = self.path
        if path.is_dir():
            raise StorageError(f"{path} is a directory, not a database file")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the folder {path.parent}: {exc.strerror}") from None
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        except OSError as exc:
            raise StorageError(f"cannot create {path}: {exc.strerror}") from None
        os.close(fd)

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self._target, isolation_level=None, check_same_thread=False,
                timeout=self.options.busy_timeout, uri=self.memory or self.read_only,
                cached_statements=self.options.cached_statements, factory=_Connection,
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open {self._target}: {exc}") from None
        try:
            self._prepare(conn, self)
        except sqlite3.Error as exc:
            conn.close()
            raise translate_error(exc, f"opening {self._target}") from None
        except BaseException:
            conn.close()
            raise
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
                raise StorageError(f"could not switch {self._target} to WAL (got {mode!r})")
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
                low = str(exc).lower()
                if ("locked" not in low and "busy" not in low) or time.monotonic() >= deadline:
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

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads: the thread's transaction connection, or one from the pool."""
        tx: _Tx | None = getattr(self._local, "tx", None)
        if tx is not None:
            yield tx.conn
            return
        held: sqlite3.Connection | None = getattr(self._local, "held", None)
        if held is not None:  # a nested read in this thread (e.g. inside iter()) shares it
            yield held
            return
        self._check_open()
        with self.pool.connection() as conn:
            self._local.held = conn
            try:
                yield conn
            finally:
                self._local.held = None

    def fetch(self, sql: str, params: Sequence[Any], *, one: bool = False,
              factory: Callable[[Any, Any], Any] | None = None) -> Any:
        """Run a read and return ``fetchone()`` or ``fetchall()`` (rows made by ``factory``,
        a ``sqlite3`` row factory, if given) — the hot path of the repositories, without
        context-manager overhead."""
        local = self._local
        tx: _Tx | None = getattr(local, "tx", None)
        conn: sqlite3.Connection | None = tx.conn if tx is not None else getattr(
            local, "held", None)
        if conn is not None:
            return _fetch(conn, sql, params, one, factory)
        if self._closed:
            raise StoreClosed("the store is closed")
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

    # -- transactions -------------------------------------------------------------------------

    def in_transaction(self) -> bool:
        return getattr(self._local, "tx", None) is not None

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
        tx: _Tx | None = getattr(local, "tx", None)
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
        if before:
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
        """
        tx: _Tx | None = getattr(self._local, "tx", None)
        if tx is not None:
            if not foreign_keys:
                raise RuntimeError("foreign_keys=False needs an outermost transaction")
            yield from self._savepoint(tx)
            return
        self._check_open()
        conn, pooled = self._take_writer()
        try:
            try:
                if not foreign_keys:
                    conn.execute("PRAGMA foreign_keys = OFF")
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    context = f"starting a write ({what})" if what else "starting a write"
                    raise translate_error(exc, context) from None
                listener = self._listener
                before, after = (listener.listening() if listener is not None
                                 else (False, False))
                tx = _Tx(conn, before, after)
                self._local.tx = tx
                try:
                    yield conn
                    if tx.changes and before and listener is not None:
                        listener.before_commit(conn, Changes(tx.changes))
                    conn.execute("COMMIT")
                except BaseException as exc:
                    if conn.in_transaction:
                        try:
                            conn.execute("ROLLBACK")
                        except sqlite3.Error:
                            log.exception("rollback failed")
                    if isinstance(exc, sqlite3.Error):
                        raise translate_error(exc, what) from None
                    raise
                finally:
                    self._local.tx = None
            finally:
                broken = conn.in_transaction
                if not foreign_keys:
                    try:
                        conn.execute("PRAGMA foreign_keys = ON")
                    except sqlite3.Error:
                        broken = True
        finally:
            self._release_writer(conn, pooled, broken)
        if tx.changes and tx.after and self._listener is not None:
            self._listener.after_commit(Changes(tx.changes))

    def _take_writer(self) -> tuple[sqlite3.Connection, bool]:
        """Take the write lock and a connection to write with: ``(connection, pooled)``.
        An in-memory store has one connection: a write inside a read (``iter``) shares it
        (``pooled`` is then false)."""
        if self.read_only:
            raise StorageError(f"{self.path} is open read-only: writes are refused")
        timeout = self.pool.config.connection_timeout
        if not self._write_lock.acquire(timeout=timeout):
            raise PoolTimeout(f"the writer stayed busy for more than {timeout:g} s")
        try:
            held = getattr(self._local, "held", None) if self.memory else None
            if held is not None:
                return held, False
            return self.pool.checkout(), True
        except BaseException:
            self._write_lock.release()
            raise

    def _release_writer(self, conn: sqlite3.Connection, pooled: bool, broken: bool) -> None:
        try:
            if pooled:
                self.pool.checkin(conn, broken=broken)
        finally:
            self._write_lock.release()

    def _savepoint(self, tx: _Tx) -> Iterator[sqlite3.Connection]:
        name = f"hive_store_sp{tx.depth}"
        mark = len(tx.changes)
        tx.depth += 1
        conn = tx.conn
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
            del tx.changes[mark:]
            raise
        else:
            conn.execute(f"RELEASE {name}")
        finally:
            tx.depth -= 1

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
            "ok": ok_rows and fks and journal == expected_journal,
            "quick_check" if not full else "integrity_check": "ok" if ok_rows else rows,
            "quick_check": "ok" if ok_rows else rows,
            "journal_mode": journal,
            "foreign_keys": fks,
        }

    def pool_stats(self) -> dict[str, int]:
        return attrs.asdict(self.pool.stats())

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the store is closed")

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


def parse_options(url: StoreURL, options: dict[str, Any]) -> SQLiteOptions:
    """Build :class:`SQLiteOptions` from keyword options and URL query parameters."""
    from hive_store.errors import ConfigurationError

    merged: dict[str, Any] = {**url.query, **options}
    pool_fields = {f.name: f for f in attrs.fields(PoolConfig)}
    own_fields = {f.name: f for f in attrs.fields(SQLiteOptions) if f.name != "pool"}
    pool_kw: dict[str, Any] = {}
    own_kw: dict[str, Any] = {}
    for key, value in merged.items():
        if key in pool_fields:
            pool_kw[key] = _coerce(key, value, pool_fields[key].default)
        elif key in own_fields:
            own_kw[key] = _coerce(key, value, own_fields[key].default)
        else:
            known = ", ".join(sorted([*pool_fields, *own_fields]))
            raise ConfigurationError(f"unknown sqlite option {key!r} (known: {known})")
    if own_kw.get("durability", "normal") not in ("normal", "full"):
        raise ConfigurationError("durability must be 'normal' or 'full'")
    busy = own_kw.get("busy_timeout", 1.0)
    if (not isinstance(busy, (int, float)) or isinstance(busy, bool) or not math.isfinite(busy)
            or not 0 < busy <= 86400):
        raise ConfigurationError("busy_timeout must be a number of seconds from 0 to 86400")
    for key in ("cache_size_kib", "mmap_size", "wal_autocheckpoint", "cached_statements"):
        value = own_kw.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**40:
            raise ConfigurationError(f"{key} must be a whole number >= 0")
    return SQLiteOptions(pool=PoolConfig(**pool_kw), **own_kw)


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Options from a URL query arrive as text; give them the default's type."""
    from hive_store.errors import ConfigurationError

    if not isinstance(value, str) or isinstance(default, str):
        return value
    if value.lower() in ("none", "null", ""):
        return None
    try:
        if isinstance(default, bool):
            return value.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(value)
        return float(value)
    except ValueError:
        raise ConfigurationError(f"option {key}={value!r} is not a number") from None


def quote_uri_path(path: Path) -> str:
    """``path`` for a SQLite ``file:`` URI: absolute, every special character
    percent-encoded (a ``?`` or ``#`` in a file name is not a query or a fragment)."""
    return urllib.parse.quote(str(path.absolute()), safe="/")


def sql_params(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)
