"""The PostgreSQL server of a test run (CONTRIBUTING.md: "PostgreSQL in the tests").

One :class:`~hive_store_postgres.server.TemporaryServer` per test process, started on first
use (a Unix socket in a temporary folder, no TCP port, as ``nobody`` when the run is root) and
stopped at the end of the session (the ``pg_server`` fixture), at interpreter exit, and by its
reaper process if the runner is killed. Where the server programs come from:
``hive_store_postgres.server.find_bindir``; when there are none and the run is root on a
Debian-like system, they are installed with ``apt-get install -y postgresql`` (what CI does
on a fresh machine). Otherwise: under ``CI=true`` (or ``HIVE_STORE_REQUIRE_POSTGRES=1``) every
PostgreSQL test fails with the one-line instruction; elsewhere they are skipped with it, and
the end of the run says so in capitals.

Databases: ``hive_template`` is created once (ICU ``en-US`` collation, so that nothing passes
only because the database sorts in code point order) and migrated by ``hive_store.open``;
:func:`new_database` copies it (``CREATE DATABASE … TEMPLATE``, ~0.1 s), :func:`reset` empties
the tables of one cheaply for property tests that need a fresh store per example.
"""

from __future__ import annotations

import atexit
import itertools
import os
import threading
from typing import Any

import pytest
from hive_store_postgres.server import (
    ServerUnavailable,
    TemporaryServer,
    find_bindir,
    install_server,
    unavailable_message,
)

TEMPLATE = "hive_template"
_lock = threading.Lock()
_server: TemporaryServer | None = None
_problem: str | None = None
_names = itertools.count(1)
skipped_reason: list[str] = []


def required() -> bool:
    """PostgreSQL tests must run (fail instead of skipping) here."""
    return (os.environ.get("CI", "").lower() in ("1", "true", "yes")
            or os.environ.get("HIVE_STORE_REQUIRE_POSTGRES", "") not in ("", "0"))


def _start() -> TemporaryServer:
    bindir = find_bindir() or install_server()
    if bindir is None:
        raise ServerUnavailable(unavailable_message())
    server = TemporaryServer(bindir).start()
    try:
        server.execute(f"CREATE DATABASE {TEMPLATE} LOCALE_PROVIDER icu ICU_LOCALE 'en-US' "
                       "TEMPLATE template0")
    except Exception:  # a server built without ICU: the default collation
        server.execute(f"CREATE DATABASE {TEMPLATE}")
    import hive_store

    hive_store.open(server.url(TEMPLATE)).close()
    return server


def server() -> TemporaryServer:
    """The run's server (started on first use); skips or fails the test when there is none."""
    global _server, _problem
    with _lock:
        if _server is None and _problem is None:
            try:
                _server = _start()
                atexit.register(stop)
            except ServerUnavailable as exc:
                _problem = str(exc)
        if _server is None:
            assert _problem is not None
            if required():
                pytest.fail(_problem, pytrace=False)
            if not skipped_reason:
                skipped_reason.append(_problem)
            pytest.skip(_problem)
        return _server


def stop() -> None:
    global _server
    with _lock:
        if _server is not None:
            _server.stop()
            _server = None


def new_database(template: str = TEMPLATE) -> str:
    """A new database copied from the migrated template; its URL."""
    srv = server()
    name = f"t{os.getpid()}_{next(_names)}"
    srv.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    return srv.url(name)


def drop(url: str) -> None:
    """Drop a database made by :func:`new_database` (connections to it are ended)."""
    from urllib.parse import urlsplit

    name = urlsplit(url).path.lstrip("/")
    if _server is not None and name.startswith("t"):
        _server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def reset(url: str, tables: tuple[str, ...] | None = None) -> None:
    """Empty ``tables`` (in this order: children first) or every table but the migration
    record of a database."""
    import psycopg

    srv = server()
    from urllib.parse import urlsplit

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(srv.conninfo(name), autocommit=True) as conn:
        if tables is None:
            tables = tuple(r[0] for r in conn.execute(
                "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = "
                "'public'::regnamespace AND relname NOT LIKE 'hive_store_migration%'"))
            conn.execute(("TRUNCATE " + ", ".join(f'"{t}"' for t in tables)
                          + " CASCADE").encode())
            return
        # a few small tables, children first: DELETE is ~40x faster than TRUNCATE here
        conn.execute("; ".join(f'DELETE FROM "{t}"' for t in tables).encode())


def open_new(**options: Any) -> Any:
    """A store on a new database, dropped when the store closes (for machines and helpers
    without fixtures)."""
    import hive_store

    url = new_database()
    store = hive_store.open(url, **options)
    close = store.close

    def close_and_drop() -> None:
        close()
        drop(url)

    store.close = close_and_drop  # type: ignore[method-assign]
    return store
