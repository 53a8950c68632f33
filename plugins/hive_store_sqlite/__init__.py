"""hive-store plugin: the SQLite backend (``sqlite:`` URLs and bare file paths).

Registered under the ``hive_store`` entry-point group like any third-party plugin.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from hive_store.hookspecs import hookimpl
from hive_store.url import StoreURL
from hive_store_sqlite.backend import SQLiteBackend
from hive_store_sqlite.options import SQLiteOptions, parse_options
from hive_store_sqlite.pool import Pool, PoolConfig, PoolStats

__all__ = ["Pool", "PoolConfig", "PoolStats", "SQLiteBackend", "SQLiteOptions"]


@hookimpl
def hive_store_backend_schemes() -> Sequence[str]:
    return ["sqlite"]


@hookimpl
def hive_store_backend(
    url: StoreURL, options: dict[str, Any], plugins: Any
) -> SQLiteBackend | None:
    if url.scheme != "sqlite":
        return None
    if url.host:
        from hive_store.errors import ConfigurationError

        raise ConfigurationError(
            f"sqlite URLs name a local file, not a host ({url.host!r}): "
            "use sqlite:///absolute/path.db or sqlite:relative/path.db"
        )
    opts = parse_options(url, options)

    def prepare(conn: sqlite3.Connection, backend: SQLiteBackend) -> None:
        plugins.prepare_connection(conn, backend)

    return SQLiteBackend(url, opts, prepare)


@hookimpl
def hive_store_register_health_checks() -> Sequence[Any]:
    # The integrity and pragma checks moved to the health plugin (hive_store_health), which
    # registers them with the other SQLite checks; registering them here too would run them
    # twice.
    return []


@hookimpl(tryfirst=True)
def hive_store_prepare_connection(connection: Any, backend: Any) -> None:
    # Our own pragmas first, on every connection the pool opens.
    if isinstance(backend, SQLiteBackend):
        backend.apply_pragmas(connection)
