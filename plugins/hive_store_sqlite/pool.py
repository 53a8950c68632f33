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

The pool is thread-safe; a connection is used by one thread at a time.
"""

from __future__ import annotations

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
        self._waiters = 0

    # -- public ---------------------------------------------------------------------------------

    def fill(self) -> None:
        """Open connections until ``min_idle`` are idle (bounded by ``max_size``)."""
        while True:
            with self._lock:
                if (len(self._idle) >= self.config.min_idle
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

    def checkout(self, timeout: float | None = None) -> sqlite3.Connection:
        """Take a connection; waits up to ``timeout`` (default ``connection_timeout``)."""
        if not self.config.test_on_checkout:
            # Fast path: the most recently returned connection, fresh, nothing to sweep.
            with self._mutex:
                ready = self._idle
                if ready and not self._closed:
                    warm, _born, expires = ready[-1]
                    now = time.monotonic()
                    if now <= expires and now <= ready[0][2]:
                        ready.pop()
                        stats = self._stats
                        stats.in_use += 1
                        stats.checkouts += 1
                        self._out.add(id(warm))
                        return warm
        limit = self.config.connection_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        to_close: list[sqlite3.Connection] = []
        conn: sqlite3.Connection | None = None
        create = waited = False
        try:
            with self._lock:
                while True:
                    if self._closed:
                        raise StoreClosed("the connection pool is closed")
                    to_close.extend(self._sweep())
                    while self._idle and conn is None:
                        idle, _born, expires = self._idle.pop()  # LIFO: warmest cache first
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
                        self._stats.in_use += 1
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
                    self._waiters += 1
                    try:
                        self._lock.wait(remaining)
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
                    self._stats.in_use -= 1
                    self._lock.notify()
                raise
        elif self.config.test_on_checkout:
            try:
                conn.execute("SELECT 1").fetchone()
            except sqlite3.Error:
                self.checkin(conn, broken=True)
                return self.checkout(max(0.0, deadline - time.monotonic()))
        return conn

    def checkin(self, conn: sqlite3.Connection, *, broken: bool = False) -> None:
        """Return a connection; one left in a transaction is rolled back first, a closed or
        failing one is discarded. Returning a connection twice is an error."""
        try:
            if not broken and conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:  # includes ProgrammingError on a closed connection
            broken = True
        key = id(conn)
        now = time.monotonic()
        with self._mutex:
            if key not in self._out:
                raise ValueError("this connection is not checked out from this pool")
            self._out.discard(key)
            swept = self._sweep()
            self._stats.in_use -= 1
            born = self._born.get(key, now)
            lifetime = self.config.max_lifetime
            if (broken or self._closed
                    or (lifetime is not None and now - born > lifetime)):
                self._stats.size -= 1
                if not self._closed and not broken:
                    self._stats.recycled += 1
                discard = True
            else:
                self._idle.append((conn, born, self._expires(born, now)))
                discard = False
            if self._waiters:
                self._lock.notify()
        if discard:
            self._discard(conn)
        for old in swept:
            self._discard(old)

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
            snap = attrs.evolve(self._stats)
            snap.idle = len(self._idle)
            return snap

    def close(self) -> None:
        """Close idle connections now and in-use ones when they are returned."""
        with self._lock:
            self._closed = True
            idle = [c for c, _, _ in self._idle]
            self._stats.size -= len(idle)
            self._idle.clear()
            self._lock.notify_all()
        for conn in idle:
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
        if not idle:
            return gone
        now = time.monotonic()
        while idle and now > idle[0][2]:
            gone.append(self._idle.popleft()[0])
            self._stats.size -= 1
            self._stats.recycled += 1
        return gone

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
