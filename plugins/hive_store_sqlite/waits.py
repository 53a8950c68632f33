"""Telling a caller that a write waits for another process's lock.

SQLite waits for a writer in another process inside ``BEGIN IMMEDIATE`` (its busy handler,
up to ``busy_timeout``), silently. With an ``on_wait`` listener (``hive_store.open(url,
on_wait=…)``; the command line passes one on a terminal) the wait is taken in one-second steps
and the listener hears ``on_wait(seconds_waited)`` after each, then ``on_wait(None)`` when the
write could begin. The backend never prints: rendering is the listener's business.
"""

from __future__ import annotations

import logging
import sqlite3
import time

from hive_store_sqlite.options import WaitListener

log = logging.getLogger("hive_store.sqlite")

_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def begin_immediate(conn: sqlite3.Connection, on_wait: WaitListener, total: float) -> None:
    """``BEGIN IMMEDIATE`` on ``conn``, waiting up to ``total`` seconds for another writer and
    telling ``on_wait`` about it every second (errors other than busy propagate at once)."""
    start = time.monotonic()
    waited = False
    conn.execute("PRAGMA busy_timeout = 1000")
    try:
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                code = getattr(exc, "sqlite_errorcode", None)
                elapsed = time.monotonic() - start
                if not isinstance(code, int) or code & 0xFF not in _BUSY_CODES \
                        or elapsed >= total:
                    raise
                left = total - elapsed
                conn.execute(f"PRAGMA busy_timeout = {max(1, int(min(1.0, left) * 1000))}")
                waited = True
                notify(on_wait, elapsed)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(total * 1000)}")
        if waited:
            notify(on_wait, None)


def notify(listener: WaitListener, seconds: float | None) -> None:
    try:
        listener(seconds)
    except Exception:  # a listener's failure must not fail the write
        log.exception("the on_wait listener failed")
