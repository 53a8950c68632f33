"""A connection pool with r2d2's knobs, for stdlib ``sqlite3`` connections.

* ``max_size`` caps the connections open at once (idle + in use); connections are opened
  lazily, except that ``min_idle`` are kept open and idle when possible.
* ``connection_timeout``: how long :meth:`Pool.checkout` waits for a free connection before
  raising :class:`hive_store.PoolTimeout`.
* ``idle_timeout`` / ``max_lifetime``: an idle connection older than these (seconds, ``None``
  = never) is closed at the next checkout or return instead of being reused ("recycled").
* ``test_on_checkout``: run ``SELECT 1`` before handing a connection out. Off by default: a
  local file has no server that can go away; a connection that is returned inside a
  transaction is rolled back instead ("reset on return"), and one that fails is discarded.

The pool is thread-safe; a connection is used by one thread at a time. Reuse is LIFO (the
warmest page cache first), and the connection a thread returned last is *parked* for that
thread: its next checkout takes it back with one atomic dict operation, without the pool lock,
so reader threads do not contend. A parked connection still counts as idle: a thread that
finds no idle connection takes another thread's parked one, and a returned connection goes to
a waiting thread rather than to parking.

A connection may be returned by a thread other than the one that took it (an iterator finished
elsewhere), and from a finalizer (an abandoned iterator collected by the garbage collector,
which can run while this very thread holds the pool's lock): ``checkin(conn, blocking=False)``
then never waits for the lock — if it is taken, the connection is queued and handed on by the
next pool operation, and waiting threads look at that queue at least every
:data:`POLL_SECONDS`.
"""

from __future__ import annotations

import copy
import itertools
import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import attrs

from hive_store.errors import ConfigurationError, PoolTimeout, StoreClosed

POLL_SECONDS = 0.05
"""How often a waiting checkout looks for connections returned without the lock."""


def _finite_positive(value: Any) -> bool:
    """A number of seconds a lock wait can take: > 0 and at most a year."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and 0 < value <= 366 * 86400)


@attrs.frozen
class PoolConfig:
    """Pool settings (see the module docstring)."""

    max_size: int = 10
    min_idle: int = 1
    connection_timeout: float = 30.0
    idle_timeout: float | None = 600.0
    max_lifetime: float | None = None
    test_on_checkout: bool = False

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.max_size, int) or self.max_size < 1:
            raise ConfigurationError("max_size must be an integer >= 1")
        if not isinstance(self.min_idle, int) or not 0 <= self.min_idle <= self.max_size:
            raise ConfigurationError("min_idle must be an integer between 0 and max_size")
        if not _finite_positive(self.connection_timeout):
            raise ConfigurationError("connection_timeout must be a number of seconds > 0 "
                                     "(at most a year)")
        for name in ("idle_timeout", "max_lifetime"):
            value = getattr(self, name)
            if value is not None and not _finite_positive(value):
                raise ConfigurationError(f"{name} must be a number of seconds > 0 (at most a "
                                         "year), or None")


@attrs.define
class PoolStats:
    """Counters of a pool. ``size`` = open connections, ``idle`` + ``in_use`` = ``size``."""

    size: int = 0
    idle: int = 0
    in_use: int = 0
    waits: int = 0
    timeouts: int = 0
    created: int = 0
    recycled: int = 0
    checkouts: int = 0


class Pool:
    """A pool of connections made by ``connect()``."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], config: PoolConfig) -> None:
        self._connect = connect
        self.config = config
        # _mutex is _lock's own lock: `with self._mutex` is the same critical section without
        # Condition's Python-level __enter__/__exit__ (the hot paths use it).
        self._mutex = threading.Lock()
        self._lock = threading.Condition(self._mutex)
        # idle connections as (connection, born, expires): ``expires`` is the monotonic time
        # after which it is recycled instead of reused (idle_timeout / max_lifetime)
        self._idle: deque[tuple[sqlite3.Connection, float, float]] = deque()
        self._born: dict[int, float] = {}
        self._stats = PoolStats()
        self._closed = False
        self._out: set[int] = set()  # ids of checked-out connections
        # Threads in the locked checkout path (waiting or about to): while there are any,
        # returned connections go to the idle list and wake them rather than being parked.
        self._waiters = 0
        # Parked connections: an idle connection kept for the thread that returned it, by
        # thread id, so a thread's next checkout takes it back without the pool lock and
        # without contending with other threads. Only single dict operations (atomic under
        # the GIL) touch it outside the lock; a thread that needs a connection when none is
        # idle takes a parked one (popitem), so parking never starves anyone.
        self._parked: dict[int, tuple[sqlite3.Connection, float, float]] = {}
        self._fast_checkouts = itertools.count()
        # Connections returned with checkin(blocking=False) while the lock was taken (deque
        # appends and pops are atomic): the next locked operation takes them back.
        self._returned: deque[tuple[sqlite3.Connection, bool]] = deque()

    # -- public ---------------------------------------------------------------------------------

    def fill(self) -> None:
        """Open connections until ``min_idle`` are idle (bounded by ``max_size``).

        Parked connections move to the idle list first, so the new ones are reused last."""
        with self._lock:
            self._idle.extend(self._unpark_all())
        while True:
            with self._lock:
                if (len(self._idle) + len(self._parked) >= self.config.min_idle
                        or self._stats.size >= self.config.max_size or self._closed):
                    return
                self._stats.size += 1
            try:
                conn = self._new()
            except BaseException:
                with self._lock:
                    self._stats.size -= 1
                raise
            with self._lock:
                now = time.monotonic()
                born = self._born[id(conn)]
                self._idle.append((conn, born, self._expires(born, now)))
                self._lock.notify()

    def try_checkout(self) -> sqlite3.Connection | None:
        """An idle connection if one is ready now, else ``None``: never waits, never opens
        one (for callers that must not block, such as an event loop)."""
        if self.config.test_on_checkout:
            return None
        # The connection this thread returned last, if it is still parked for it.
        parked = self._parked.pop(threading.get_ident(), None)
        if parked is not None:
            conn, _born, expires = parked
            now = time.monotonic()
            if not self._closed and now <= expires:
                self._out.add(id(conn))
                next(self._fast_checkouts)
                if self._stale(now):
                    self._sweep_now()
                return conn
            with self._mutex:  # expired (or the pool closed): it goes
                self._stats.size -= 1
                if not self._closed:
                    self._stats.recycled += 1
            self._discard(conn)
        # The most recently returned connection, fresh, nothing to sweep.
        with self._mutex:
            ready = self._idle
            if ready and not self._closed:
                warm, _born, expires = ready[-1]
                now = time.monotonic()
                if now <= expires and now <= ready[0][2]:
                    ready.pop()
                    self._stats.checkouts += 1
                    self._out.add(id(warm))
                    return warm
            elif not ready and self._parked and not self._closed:
                # None idle: one parked for another thread, if fresh.
                try:
                    other, _born, expires = self._parked.popitem()[1]
                except KeyError:
                    return None
                if time.monotonic() <= expires:
                    self._stats.checkouts += 1
                    self._out.add(id(other))
                    return other
                ready.append((other, _born, expires))  # expired: the next sweep closes it
        return None

    def checkout(self, timeout: float | None = None) -> sqlite3.Connection:
        """Take a connection; waits up to ``timeout`` (default ``connection_timeout``)."""
        ready = self.try_checkout()
        if ready is not None:
            return ready
        limit = self.config.connection_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        to_close: list[sqlite3.Connection] = []
        conn: sqlite3.Connection | None = None
        create = waited = False
        try:
            with self._lock:
                # Counted before looking at the idle and parked connections, so a thread
                # returning one either is seen here or sees this count and does not park it.
                self._waiters += 1
                try:
                    while True:
                        if self._closed:
                            raise StoreClosed("the connection pool is closed")
                        if self._returned:
                            to_close.extend(self._drain())
                        to_close.extend(self._sweep())
                        while conn is None and (self._idle or self._parked):
                            if self._idle:  # LIFO: warmest cache first
                                idle, _born, expires = self._idle.pop()
                            else:
                                try:
                                    idle, _born, expires = self._parked.popitem()[1]
                                except KeyError:  # its thread took it back meanwhile
                                    continue
                            if time.monotonic() > expires:
                                to_close.append(idle)
                                self._stats.size -= 1
                                self._stats.recycled += 1
                            else:
                                conn = idle
                        if conn is None and self._stats.size < self.config.max_size:
                            self._stats.size += 1
                            create = True
                        if conn is not None or create:
                            self._stats.checkouts += 1
                            if conn is not None:
                                self._out.add(id(conn))
                            break
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            self._stats.timeouts += 1
                            raise PoolTimeout(
                                f"no database connection became free within {limit:g} s "
                                f"(max_size={self.config.max_size}, all in use)"
                            )
                        if not waited:
                            waited = True
                            self._stats.waits += 1
                        self._lock.wait(min(remaining, POLL_SECONDS))
                finally:
                    self._waiters -= 1
        finally:
            for old in to_close:
                self._discard(old)
        if conn is None:
            try:
                conn = self._new()
                with self._lock:
                    self._out.add(id(conn))
            except BaseException:
                with self._lock:
                    self._stats.size -= 1
                    self._lock.notify()
                raise
        elif self.config.test_on_checkout:
            try:
                conn.execute("SELECT 1").fetchone()
            except sqlite3.Error:
                self.checkin(conn, broken=True)
                return self.checkout(max(0.0, deadline - time.monotonic()))
        return conn

    def checkin(self, conn: sqlite3.Connection, *, broken: bool = False,
                blocking: bool = True) -> None:
        """Return a connection; one left in a transaction is rolled back first, a closed or
        failing one is discarded. Returning a connection twice is an error.

        ``blocking=False`` (for finalizers): never wait for the pool's lock; if another thread
        (or this one, further up the stack) holds it, queue the connection for the next pool
        operation instead."""
        try:
            if not broken and conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:  # includes ProgrammingError on a closed connection
            broken = True
        key = id(conn)
        now = time.monotonic()
        if (not broken and not self._waiters and not self._closed and not self._stale(now)
                and not self.config.test_on_checkout and key in self._out):
            # Park it for this thread (see __init__), unless it has one parked already.
            tid = threading.get_ident()
            parked = self._parked
            born = self._born.get(key)
            lifetime = self.config.max_lifetime
            if (tid not in parked and born is not None
                    and (lifetime is None or now - born <= lifetime)):
                self._out.discard(key)
                parked[tid] = (conn, born, self._expires(born, now))
                if not self._waiters and not self._closed:
                    return
                # Someone started waiting (or the pool closed) meanwhile: hand it over
                # through the locked path below, unless it has been taken already.
                if parked.pop(tid, None) is None:
                    return
                self._out.add(key)
        if not self._mutex.acquire(blocking):
            self._returned.append((conn, broken))
            return
        try:
            if key not in self._out:
                raise ValueError("this connection is not checked out from this pool")
            gone = self._return_locked(conn, broken, now)
            if self._returned:
                gone.extend(self._drain())
        finally:
            self._mutex.release()
        for old in gone:
            self._discard(old)

    def _return_locked(self, conn: sqlite3.Connection, broken: bool,
                       now: float) -> list[sqlite3.Connection]:
        """Take a checked-out connection back (lock held); returns connections to close."""
        key = id(conn)
        self._out.discard(key)
        gone = self._sweep()
        born = self._born.get(key, now)
        lifetime = self.config.max_lifetime
        if (broken or self._closed
                or (lifetime is not None and now - born > lifetime)):
            self._stats.size -= 1
            if not self._closed and not broken:
                self._stats.recycled += 1
            gone.append(conn)
        else:
            item = (conn, born, self._expires(born, now))
            if self._waiters or self.config.test_on_checkout:
                self._idle.append(item)
            else:
                # the warmest connection is the one parked for this thread
                tid = threading.get_ident()
                older = self._parked.pop(tid, None)
                self._parked[tid] = item
                if older is not None:
                    self._idle.append(older)
        if self._waiters:
            self._lock.notify()
        return gone

    def _drain(self) -> list[sqlite3.Connection]:
        """Take back the connections queued by ``checkin(blocking=False)`` (lock held)."""
        gone: list[sqlite3.Connection] = []
        now = time.monotonic()
        while True:
            try:
                conn, broken = self._returned.popleft()
            except IndexError:
                return gone
            if id(conn) in self._out:
                gone.extend(self._return_locked(conn, broken, now))

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[sqlite3.Connection]:
        """``with pool.connection() as conn:`` — checkout and guaranteed return."""
        conn = self.checkout(timeout)
        try:
            yield conn
        except BaseException:
            self.checkin(conn, broken=_is_broken(conn))
            raise
        self.checkin(conn)

    def stats(self) -> PoolStats:
        """A snapshot of the counters."""
        with self._lock:
            gone = self._drain() if self._returned else []
            snap = attrs.evolve(self._stats)
            snap.idle = len(self._idle) + len(self._parked)
            snap.in_use = snap.size - snap.idle
            snap.checkouts += next(copy.copy(self._fast_checkouts))
        for old in gone:
            self._discard(old)
        return snap

    def close(self) -> None:
        """Close idle connections now and in-use ones when they are returned."""
        with self._lock:
            self._closed = True
            gone = self._drain() if self._returned else []
            idle = [c for c, _, _ in (*self._idle, *self._unpark_all())]
            self._idle.clear()
            self._stats.size -= len(idle)
            self._lock.notify_all()
        for conn in (*idle, *gone):
            self._discard(conn)

    # -- internals ----------------------------------------------------------------------------

    def _new(self) -> sqlite3.Connection:
        conn = self._connect()
        with self._lock:
            self._born[id(conn)] = time.monotonic()
            self._stats.created += 1
        return conn

    def _sweep(self) -> list[sqlite3.Connection]:
        """Take expired connections off the least-recently-used end of the idle list (lock
        held). Cheap: it stops at the first one still fresh."""
        gone: list[sqlite3.Connection] = []
        idle = self._idle
        now = time.monotonic()
        while idle and now > idle[0][2]:
            gone.append(self._idle.popleft()[0])
            self._stats.size -= 1
            self._stats.recycled += 1
        parked = self._parked
        if parked:
            for tid, item in list(parked.items()):  # one C call: a snapshot
                if now <= item[2]:
                    continue
                got = parked.pop(tid, None)
                if got is None:  # its thread (or a checkout) took it meanwhile
                    continue
                if got is not item and now <= got[2]:  # re-parked fresh: keep it
                    if parked.setdefault(tid, got) is not got:
                        idle.append(got)
                    continue
                gone.append(got[0])
                self._stats.size -= 1
                self._stats.recycled += 1
        return gone

    def _unpark_all(self) -> list[tuple[sqlite3.Connection, float, float]]:
        """Take every parked connection (lock held; popitem is atomic against the threads
        taking theirs back without the lock)."""
        taken = []
        while True:
            try:
                taken.append(self._parked.popitem()[1])
            except KeyError:
                return taken

    def _stale(self, now: float) -> bool:
        """Whether the least recently used idle connection has expired (a sweep is due)."""
        try:
            return bool(self._idle) and now > self._idle[0][2]
        except IndexError:  # emptied meanwhile by another thread
            return False

    def _sweep_now(self) -> None:
        with self._mutex:
            gone = self._sweep()
        for old in gone:
            self._discard(old)

    def _expires(self, born: float, last_used: float) -> float:
        """When an idle connection born at ``born`` and returned at ``last_used`` expires."""
        cfg = self.config
        at = math.inf
        if cfg.idle_timeout is not None:
            at = last_used + cfg.idle_timeout
        if cfg.max_lifetime is not None:
            at = min(at, born + cfg.max_lifetime)
        return at

    def _discard(self, conn: sqlite3.Connection) -> None:
        self._born.pop(id(conn), None)
        with suppress(sqlite3.Error):
            conn.close()


def _is_broken(conn: Any) -> bool:
    try:
        conn.execute("SELECT 1").fetchone()
    except sqlite3.Error:
        return True
    return False
