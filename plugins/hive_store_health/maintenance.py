"""Maintenance of SQLite stores: vacuum, optimize, checkpoint, online backup, restore, and an
optional background thread that checkpoints and vacuums when thresholds are crossed.

Write locks are held briefly: incremental vacuum runs in short transactions of
``step_pages`` pages each, checkpoints are passive unless asked (and a ``TRUNCATE`` waits at
most ``timeout`` seconds), and a backup copies from a read snapshot, which in WAL mode never
blocks writers.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import attrs
from hive_store_sqlite import files

from hive_store.errors import ConfigurationError, HiveStoreError, StorageError, StoreClosed

log = logging.getLogger("hive_store.health")

ProgressFn = Callable[[int, int], None]
"""``progress(done_pages, total_pages)``, called after every backup step."""


class MaintenanceError(StorageError):
    """A maintenance operation refused or failed (the message says why, on one line)."""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _sidecars(path: Path) -> list[Path]:
    return [Path(f"{path}{suffix}") for suffix in ("-wal", "-shm", "-journal")]


def _create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 (a database holds API keys); fail if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)


def _ro(path: Path) -> sqlite3.Connection:
    """A read-only connection to the database file ``path`` (its name percent-encoded in the
    URI: ``?``, ``#`` and ``%`` are part of a file name, never URI syntax)."""
    return sqlite3.connect(files.uri(path, mode="ro"), uri=True)


def _regular(path: Path, what: str) -> None:
    """Refuse a ``path`` that exists and is not a regular file, as a MaintenanceError."""
    try:
        files.require_regular(path, what)
    except StorageError as exc:
        raise MaintenanceError(str(exc)) from None


def _folder(path: Path) -> None:
    """The folder of ``path`` must exist (a mistyped path is not a new directory tree)."""
    folder = path.parent
    if folder.is_dir():
        return
    if folder.exists():
        raise MaintenanceError(f"{folder} is not a folder (in the path {path})")
    raise MaintenanceError(f"the folder {folder} does not exist (is the path {path} right? "
                           "create the folder first)")


F = TypeVar("F", bound=Callable[..., Any])


def _os_errors(what: str) -> Callable[[F], F]:
    """File-system errors (permissions, a full disk) become one-line MaintenanceErrors, and
    sqlite3 errors hive_store errors."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except OSError as exc:
                where = f" ({exc.filename})" if exc.filename else ""
                raise MaintenanceError(f"{what} failed: {exc.strerror or exc}{where}") from None
            except sqlite3.Error as exc:  # never a bare sqlite3 error to the caller
                raise _err(exc, what) from None

        return cast(F, inner)

    return wrap


def _err(exc: sqlite3.Error, what: str) -> HiveStoreError:
    from hive_store_sqlite.backend import translate_error

    translated = translate_error(exc, what)
    return translated if isinstance(translated, HiveStoreError) else StorageError(str(exc))


@contextlib.contextmanager
def _busy_timeout(conn: sqlite3.Connection, seconds: float) -> Iterator[None]:
    """Set the connection's busy timeout for the block and put the old one back."""
    old = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    conn.execute(f"PRAGMA busy_timeout = {max(0, int(seconds * 1000))}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(old)}")


def _checkpoint(conn: sqlite3.Connection, mode: str, timeout: float) -> tuple[int, int, int]:
    """``PRAGMA wal_checkpoint(mode)``; a blocking mode waits at most ``timeout`` seconds and
    then finishes like a passive checkpoint (SQLite's documented behaviour)."""
    with _busy_timeout(conn, timeout):
        busy, log_frames, done = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return int(busy), int(log_frames), int(done)


class _Unreadable(MaintenanceError):
    """The file exists but SQLite cannot read it as a database."""


def _lock_failure(exc: sqlite3.Error) -> bool:
    """SQLite refused because of another connection's lock (by result code, never by the
    message)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


# -- operations on an open store -----------------------------------------------------------------


class Maintenance:
    """Maintenance operations on an open store: ``Maintenance(store).vacuum()``."""

    def __init__(self, store: Any) -> None:
        backend = store.backend
        if getattr(backend, "dialect", None) != "sqlite":
            raise ConfigurationError("maintenance needs a SQLite store")
        self.store = store
        self.backend = backend

    # -- facts ---------------------------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        """The database file (``None`` for an in-memory store)."""
        return None if self.backend.memory else Path(self.backend.path)

    def facts(self) -> dict[str, Any]:
        """Page counts and file sizes right now."""
        with self.backend.connection() as conn:
            out = {name: conn.execute(f"PRAGMA {name}").fetchone()[0]
                   for name in ("page_size", "page_count", "freelist_count", "auto_vacuum")}
        path = self.path
        out["size_bytes"] = _size(path) if path else None
        out["wal_bytes"] = _size(Path(f"{path}-wal")) if path else None
        return out

    # -- vacuum ------------------------------------------------------------------------------------

    def vacuum(self, *, max_pages: int | None = None, step_pages: int = 256,
               full: bool = False, stop: threading.Event | None = None) -> dict[str, Any]:
        """Give free pages back to the filesystem.

        With ``auto_vacuum = INCREMENTAL`` (how hive-store creates databases) this runs
        ``PRAGMA incremental_vacuum`` in short write transactions of ``step_pages`` pages
        (other writers get the lock in between) until the freelist is empty or ``max_pages``
        were freed, then a passive checkpoint so the file itself shrinks.

        ``full=True`` runs a complete ``VACUUM`` instead, first setting ``auto_vacuum =
        INCREMENTAL`` (the one way to enable it on a database created without it, e.g. an
        adopted legacy one). It rewrites the whole file and blocks writers while it runs.
        """
        if step_pages < 1:
            raise ConfigurationError("step_pages must be >= 1")
        before = self.facts()
        freed = 0
        mode = "full" if full else "incremental"
        note = ""
        try:
            if full:
                with self.backend.connection() as conn:
                    if conn.in_transaction:
                        raise MaintenanceError("VACUUM cannot run inside a transaction")
                    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                    conn.execute("VACUUM")
            elif before["auto_vacuum"] != 2:
                note = ("auto_vacuum is not INCREMENTAL, so no page can be returned "
                        "incrementally; run a full vacuum once (hive-store vacuum --full)")
            else:
                freed = self._incremental(max_pages, step_pages, stop)
            if not self.backend.memory and not self.backend.in_transaction():
                with self.backend.connection() as conn:
                    _checkpoint(conn, "PASSIVE", 0)
        except sqlite3.Error as exc:
            raise _err(exc, f"{mode} vacuum") from None
        after = self.facts()
        return {"mode": mode, "freed_pages": freed if not full else
                max(0, before["page_count"] - after["page_count"]),
                "before": before, "after": after, "note": note}

    def _incremental(self, max_pages: int | None, step_pages: int,
                     stop: threading.Event | None) -> int:
        freed = 0
        while max_pages is None or freed < max_pages:
            if stop is not None and stop.is_set():
                break
            with self.backend.transaction() as conn:
                free = conn.execute("PRAGMA freelist_count").fetchone()[0]
                n = min(step_pages, free, (max_pages - freed) if max_pages is not None else free)
                # Python's sqlite3 steps a statement without result columns only once, and
                # each step of incremental_vacuum frees one page: so one page per execute.
                for _ in range(n):
                    conn.execute("PRAGMA incremental_vacuum(1)")
                left = conn.execute("PRAGMA freelist_count").fetchone()[0]
            done = free - left
            freed += done
            if left == 0 or done == 0:
                break
        return freed

    # -- optimize / checkpoint ---------------------------------------------------------------

    def optimize(self, *, analyze: bool = False, analysis_limit: int = 1000) -> dict[str, Any]:
        """``PRAGMA optimize`` (statistics only where SQLite thinks they help, sampling at most
        ``analysis_limit`` rows per index), or a complete ``ANALYZE`` with ``analyze=True``."""
        start = time.perf_counter()
        try:
            with self.backend.transaction() as conn:
                old = conn.execute("PRAGMA analysis_limit").fetchone()[0]
                conn.execute(f"PRAGMA analysis_limit = {0 if analyze else int(analysis_limit)}")
                try:
                    conn.execute("ANALYZE" if analyze else "PRAGMA optimize")
                finally:
                    conn.execute(f"PRAGMA analysis_limit = {int(old)}")
                have_stats = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'"
                ).fetchone()
                tables = (conn.execute("SELECT count(DISTINCT tbl) FROM sqlite_stat1").fetchone()[0]
                          if have_stats else 0)
        except sqlite3.Error as exc:
            raise _err(exc, "optimize") from None
        return {"mode": "analyze" if analyze else "optimize", "tables_with_statistics": tables,
                "duration_ms": round((time.perf_counter() - start) * 1000, 3)}

    def checkpoint(self, *, truncate: bool = False, timeout: float = 5.0) -> dict[str, Any]:
        """Copy WAL frames back into the database file.

        Passive by default (never waits, never blocks anyone). ``truncate=True`` also waits —
        at most ``timeout`` seconds, during which new writers wait too — for readers to move to
        the newest snapshot and then truncates the ``-wal`` file to zero bytes.
        """
        path = self.path
        wal = Path(f"{path}-wal") if path else None
        wal_before = _size(wal) if wal else 0
        mode = "TRUNCATE" if truncate else "PASSIVE"
        try:
            with self.backend.connection() as conn:
                if conn.in_transaction:
                    raise MaintenanceError("a checkpoint cannot run inside a transaction")
                busy, log_frames, done = _checkpoint(conn, mode, timeout if truncate else 0)
        except sqlite3.Error as exc:
            raise _err(exc, "checkpoint") from None
        # log_frames is -1 when the database is not in WAL mode: nothing to do, so complete.
        complete = not busy and (log_frames < 0 or done == log_frames)
        return {"mode": mode.lower(), "busy": bool(busy), "log_frames": log_frames,
                "checkpointed_frames": done, "complete": complete,
                "wal_bytes_before": wal_before, "wal_bytes_after": _size(wal) if wal else 0}

    # -- backup -----------------------------------------------------------------------------------

    @_os_errors("backup")
    def backup(self, dest: str | os.PathLike[str], *, progress: ProgressFn | None = None,
               force: bool = False, step_pages: int = 256, verify: bool = True
               ) -> dict[str, Any]:
        """Copy the database to ``dest`` with SQLite's online backup API while it is in use.

        The copy is taken in steps of ``step_pages`` pages from one read snapshot (a read
        transaction held on the source connection): in WAL mode writers keep committing
        meanwhile, the backup never restarts, and it contains exactly the transactions
        committed when it began. It is written to a temporary file next to ``dest``, switched
        to a rollback journal (one self-contained file), checked with ``quick_check`` (unless
        ``verify=False``) and then renamed over ``dest``.

        :param progress: ``progress(done_pages, total_pages)`` after each step
        :param force: overwrite an existing ``dest`` (refused if that file is open elsewhere)
        """
        target = Path(os.fspath(dest)).expanduser().absolute()
        if step_pages < 1:
            raise ConfigurationError("step_pages must be >= 1")
        if target.is_symlink():
            target = target.resolve()  # write where the link points, never over the link
        _regular(target, "backup")  # /dev/null, a FIFO, a folder: refused, never replaced
        if self.path is not None and target.exists() and target.samefile(self.path):
            raise MaintenanceError(f"{target} is the database itself; choose another DEST")
        _folder(target)
        files.clean_partials(target)  # what a killed backup left next to it
        if target.exists():
            if not force:
                raise MaintenanceError(f"{target} exists; use --force (force=True) to overwrite")
            with contextlib.suppress(_Unreadable), exclusive(target, "overwrite"):
                pass  # only checks that nobody has it open
        partial = files.partial_name(target)
        start = time.perf_counter()
        _create_private(partial)
        try:
            pages = self._copy_to(partial, progress, step_pages)
            if verify:
                _verify(partial, full=False, what="the backup")
            _regular(target, "backup")  # still (it could have been replaced meanwhile)
            if target.exists():
                for side in _sidecars(target):
                    side.unlink(missing_ok=True)
            os.replace(partial, target)
        except BaseException:
            for leftover in (partial, *_sidecars(partial)):
                leftover.unlink(missing_ok=True)
            raise
        return {"dest": str(target), "pages": pages, "bytes": _size(target),
                "verified": verify, "seconds": round(time.perf_counter() - start, 3)}

    def _copy_to(self, partial: Path, progress: ProgressFn | None, step_pages: int) -> int:
        total = [0]

        def step(_status: int, remaining: int, count: int) -> None:
            total[0] = count
            if progress is not None:
                progress(count - remaining, count)

        dst = sqlite3.connect(partial, isolation_level=None)
        try:
            with self.backend.connection() as src:
                if src.in_transaction:
                    raise MaintenanceError("back up outside a transaction (it would copy "
                                           "uncommitted changes)")
                # A read transaction pins one snapshot for every step: without it a commit by
                # another connection restarts the backup, which under steady writes never ends.
                src.execute("BEGIN")
                try:
                    src.execute("SELECT count(*) FROM sqlite_master").fetchone()
                    src.backup(dst, pages=step_pages, progress=step, sleep=0)
                finally:
                    src.execute("COMMIT")
            dst.execute("PRAGMA journal_mode = DELETE")  # one file: no -wal to carry along
        except sqlite3.Error as exc:
            raise _err(exc, "backup") from None
        finally:
            dst.close()
        return total[0]


# -- restore (on a closed database) ----------------------------------------------------------------


def _verify(path: Path, *, full: bool, what: str) -> None:
    pragma = "integrity_check" if full else "quick_check"
    try:
        conn = _ro(path)
    except sqlite3.Error as exc:
        raise MaintenanceError(f"cannot open {what} {path}: {exc}") from None
    try:
        rows = [str(r[0]) for r in conn.execute(f"PRAGMA {pragma}(5)").fetchall()]
    except sqlite3.DatabaseError as exc:
        raise MaintenanceError(f"{what} {path} is not a usable SQLite database ({exc})") from None
    finally:
        conn.close()
    if rows != ["ok"]:
        raise MaintenanceError(f"{what} {path} failed {pragma}: {rows[0]}")


@contextlib.contextmanager
def exclusive(path: Path, purpose: str, *, timeout: float = 0.2) -> Iterator[sqlite3.Connection]:
    """A connection holding an exclusive lock on the database ``path``; refuses (one-line
    :class:`MaintenanceError`) if any other connection has the database open.

    How "open elsewhere" is detected: ``BEGIN EXCLUSIVE`` alone is not enough, because in WAL
    mode it is the same as ``BEGIN IMMEDIATE`` and succeeds while other connections read. So
    the connection first sets ``PRAGMA locking_mode = EXCLUSIVE``: its first read of a WAL
    database must then take an *exclusive* lock on the database file, and every other
    connection that has the database open — in any process, or another connection of this one
    (SQLite tracks those per inode) — holds a shared lock on the file for as long as it stays
    open. The attempt waits ``timeout`` seconds and fails with "database is locked" if anyone
    else is there; once it succeeds the lock is kept until the connection closes, so nobody
    can open the database while we work on it. Limits: a connection that was opened but
    never read anything holds no lock (every hive-store connection reads at once), and in
    rollback-journal mode an idle connection holds none either — only one inside a transaction
    is seen (hive-store databases are always in WAL mode; backups are not, and are rarely open).
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=timeout)
    try:
        try:
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            conn.execute("BEGIN EXCLUSIVE")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            conn.execute("COMMIT")  # the file lock stays: locking_mode is EXCLUSIVE
        except sqlite3.DatabaseError as exc:
            if _lock_failure(exc):
                raise MaintenanceError(
                    f"refusing to {purpose} {path}: the database is open elsewhere (another "
                    "process or connection holds it); close it and try again") from None
            raise _Unreadable(f"{path} is not a readable SQLite database ({exc})") from None
        yield conn
    finally:
        conn.close()


def _looks_like_hive(path: Path) -> bool:
    try:
        conn = _ro(path)
        try:
            names = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise MaintenanceError(f"{path} is not a usable SQLite database ({exc})") from None
    return bool(names & {"conversations", "hive_store_migrations"})


@_os_errors("restore")
def restore(src: str | os.PathLike[str], target: str | os.PathLike[str], *,
            lock_timeout: float = 0.2) -> dict[str, Any]:
    """Replace the database ``target`` with the backup ``src``.

    Refuses, changing nothing, when ``src`` fails ``integrity_check`` or is not a Hive
    database, or when ``target`` is open elsewhere (see :func:`exclusive`; close the store
    first — an open store counts as "elsewhere"). The replaced database is kept next to it as
    ``<name>.pre-restore-<UTC time>`` (a consistent copy made under the lock) and reported.
    The new content is written through SQLite into the locked file, atomically (in rollback
    journal mode, then switched back to WAL), so a crash leaves either the old or the new.
    A target that SQLite cannot read at all is moved aside instead of copied.
    """
    source = Path(os.fspath(src)).expanduser().absolute()
    dest = Path(os.fspath(target)).expanduser().absolute()
    if dest.is_symlink():
        dest = dest.resolve()  # restore into the file the link points to, keep the link
    _regular(source, "backup")
    _regular(dest, "database")  # a device, a FIFO, a folder: refused, never replaced
    if not source.is_file():
        raise MaintenanceError(f"no backup file at {source}")
    if dest.exists() and source.samefile(dest):
        raise MaintenanceError("the backup and the database are the same file")
    _verify(source, full=True, what="the backup")
    if not _looks_like_hive(source):
        raise MaintenanceError(f"{source} is a SQLite database but not a Hive one "
                               "(no conversations or hive_store_migrations table)")
    _folder(dest)
    files.clean_partials(dest)  # copies a killed restore left
    start = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    kept = dest.with_name(f"{dest.name}.pre-restore-{stamp}")
    if not dest.exists():
        _create_private(dest)
        kept_path = None
        try:
            with exclusive(dest, "restore over", timeout=lock_timeout) as conn:
                pages = _write_into(conn, source)
        except BaseException:
            for leftover in (dest, *_sidecars(dest)):
                leftover.unlink(missing_ok=True)
            raise
    else:
        try:
            with exclusive(dest, "restore over", timeout=lock_timeout) as conn:
                _keep_copy(conn, dest, kept)
                kept_path = str(kept)
                pages = _write_into(conn, source)
        except _Unreadable:
            # The current file is not a readable database: move it (and its journals) aside.
            kept_path = _move_aside(dest, kept)
            _create_private(dest)
            with exclusive(dest, "restore over", timeout=lock_timeout) as conn:
                pages = _write_into(conn, source)
        except sqlite3.Error as exc:
            raise _err(exc, f"restoring {dest}") from None
    _tidy_journal(dest)
    return {"target": str(dest), "source": str(source), "replaced_copy": kept_path,
            "pages": pages, "bytes": _size(dest),
            "seconds": round(time.perf_counter() - start, 3)}


def _keep_copy(conn: sqlite3.Connection, dest: Path, kept: Path) -> None:
    """A consistent copy of the locked database as ``kept``: written under a temporary name
    and renamed, so a killed restore leaves no half copy that looks finished."""
    partial = files.partial_name(dest)
    _create_private(partial)
    try:
        copy = sqlite3.connect(partial, isolation_level=None)
        try:
            conn.backup(copy)
            copy.execute("PRAGMA journal_mode = DELETE")
        finally:
            copy.close()
        os.replace(partial, kept)
    except BaseException:
        for leftover in (partial, *_sidecars(partial)):
            leftover.unlink(missing_ok=True)
        raise


def _write_into(conn: sqlite3.Connection, source: Path) -> int:
    """Back ``source`` up into the locked connection, atomically, and check the result."""
    src = _ro(source)
    try:
        # Out of WAL for the copy: a WAL database cannot change its page size, and the
        # rollback journal makes the whole replacement one atomic transaction.
        conn.execute("PRAGMA journal_mode = DELETE")
        src.backup(conn)
        conn.execute("PRAGMA journal_mode = WAL")
        rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
        if rows != ["ok"]:
            raise MaintenanceError(f"the restored database failed quick_check: {rows[0]}")
        return int(conn.execute("PRAGMA page_count").fetchone()[0])
    finally:
        src.close()


def _move_aside(dest: Path, kept: Path) -> str:
    os.replace(dest, kept)
    for side, kept_side in zip(_sidecars(dest), _sidecars(kept), strict=True):
        if side.exists():
            os.replace(side, kept_side)
    return str(kept)


def _tidy_journal(dest: Path) -> None:
    """Remove the rollback journal an exclusive-mode connection leaves behind, if its header
    is zeroed (a finished, not a hot, journal)."""
    journal = Path(f"{dest}-journal")
    try:
        with journal.open("rb") as fh:
            head = fh.read(28)
    except OSError:
        return
    if not head.strip(b"\x00"):
        journal.unlink(missing_ok=True)


# -- the background thread ------------------------------------------------------------------------


@attrs.define(eq=False)
class MaintenanceHandle:
    """A running background maintenance thread (see :func:`start_maintenance`)."""

    store: Any
    interval: float
    wal_threshold: int
    freelist_threshold: float
    min_free_pages: int
    step_pages: int
    max_pages: int
    truncate_timeout: float
    runs: int = 0
    actions: list[dict[str, Any]] = attrs.field(factory=list)
    last_error: str | None = None
    _stop: threading.Event = attrs.field(factory=threading.Event)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)
    _thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def tick(self) -> dict[str, Any]:
        """One round: checkpoint if the WAL is over ``wal_threshold`` bytes, vacuum if the
        free pages are over ``freelist_threshold`` of the file. Returns what it did."""
        with self._lock:
            done = self._tick()
        self.runs += 1
        if done:
            self.actions.append(done)
            del self.actions[:-100]
        return done

    def _tick(self) -> dict[str, Any]:
        backend = self.store.backend
        if backend.memory or self.store.closed:
            return {}
        work = Maintenance(self.store)
        done: dict[str, Any] = {}
        wal = Path(f"{backend.path}-wal")
        if _size(wal) >= self.wal_threshold:
            with backend.connection() as conn:
                busy, frames, copied = _checkpoint(conn, "PASSIVE", 0)
                if not busy and frames >= 0 and copied == frames:
                    # Everything is back in the database: truncating needs the write lock
                    # only for a moment; if anyone is busy it gives up at once (timeout 0).
                    busy, frames, copied = _checkpoint(conn, "TRUNCATE", self.truncate_timeout)
            done["checkpoint"] = {"busy": bool(busy), "log_frames": frames,
                                  "checkpointed_frames": copied, "wal_bytes": _size(wal)}
        facts = work.facts()
        free, pages = int(facts["freelist_count"]), int(facts["page_count"])
        if (facts["auto_vacuum"] == 2 and free >= self.min_free_pages and pages
                and free / pages >= self.freelist_threshold):
            result = work.vacuum(max_pages=self.max_pages, step_pages=self.step_pages,
                                 stop=self._stop)
            done["vacuum"] = {"freed_pages": result["freed_pages"],
                              "size_bytes": result["after"]["size_bytes"]}
        return done

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except StoreClosed:
                break
            except Exception as exc:  # keep running; the next round may succeed
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("background maintenance of %s failed: %s", self.store.url,
                            self.last_error)

    def start(self) -> MaintenanceHandle:
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"hive-store-maintenance-{id(self.store):x}")
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Stop the thread and wait for it (it finishes the step it is in); idempotent.
        Returns whether it has stopped."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        _forget(self)
        stopped = thread is None or not thread.is_alive()
        if not stopped:
            log.warning("background maintenance of %s did not stop within %s s",
                        self.store.url, timeout)
        return stopped


_HANDLES: weakref.WeakKeyDictionary[Any, list[MaintenanceHandle]] = weakref.WeakKeyDictionary()
_HANDLES_LOCK = threading.Lock()


def _forget(handle: MaintenanceHandle) -> None:
    with _HANDLES_LOCK:
        handles = _HANDLES.get(handle.store)
        if handles and handle in handles:
            handles.remove(handle)


def start_maintenance(store: Any, *, interval: float = 60.0,
                      wal_threshold: int = 64 * 1024 * 1024, freelist_threshold: float = 0.2,
                      min_free_pages: int = 256, step_pages: int = 256, max_pages: int = 10_000,
                      truncate_timeout: float = 0.0) -> MaintenanceHandle:
    """Start a background thread that every ``interval`` seconds checkpoints (when the
    ``-wal`` file has reached ``wal_threshold`` bytes: passive, then a truncate that does not
    wait) and runs incremental vacuum (when at least ``min_free_pages`` and
    ``freelist_threshold`` of the pages are free: at most ``max_pages`` per round, in write
    transactions of ``step_pages`` pages). Off unless started; stopped (joined) when the store
    closes, or with ``handle.stop()``.
    """
    if getattr(store.backend, "dialect", None) != "sqlite":
        raise ConfigurationError("background maintenance needs a SQLite store")
    if store.closed:
        raise StoreClosed("the store is closed")
    if not interval > 0:
        raise ConfigurationError("interval must be > 0 seconds")
    if not 0 <= freelist_threshold <= 1:
        raise ConfigurationError("freelist_threshold must be between 0 and 1")
    if min(wal_threshold, min_free_pages, step_pages, max_pages) < 0 or step_pages < 1:
        raise ConfigurationError("thresholds must be >= 0 and step_pages >= 1")
    handle = MaintenanceHandle(store=store, interval=float(interval),
                               wal_threshold=int(wal_threshold),
                               freelist_threshold=float(freelist_threshold),
                               min_free_pages=int(min_free_pages), step_pages=int(step_pages),
                               max_pages=int(max_pages), truncate_timeout=truncate_timeout)
    with _HANDLES_LOCK:
        _HANDLES.setdefault(store, []).append(handle)
    return handle.start()


def stop_maintenance(store: Any) -> None:
    """Stop every background maintenance thread of ``store`` (called when it closes)."""
    with _HANDLES_LOCK:
        handles = list(_HANDLES.get(store, ()))
    for handle in handles:
        handle.stop()
