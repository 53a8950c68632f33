"""hive-store plugin: the PostgreSQL backend (``postgresql://`` and ``postgres://`` URLs).

Install it with the ``postgres`` extra (``pip install 'hive-store[postgres]'``: psycopg 3 and
psycopg_pool). It registers under the ``hive_store`` entry-point group exactly like a
third-party plugin, and reaches nothing of hive-store but the core's protocols and hooks.

* :mod:`hive_store_postgres.backend`: the backend (pool, transactions, retries, streaming)
* :mod:`hive_store_postgres.repository`: the SQL of the repositories
* :mod:`hive_store_postgres.options`: URL parameters and keyword options
* :mod:`hive_store_postgres.errors`: SQLSTATE to hive_store exceptions
* :mod:`hive_store_postgres.dialect`: what the migration runner needs to know
* :mod:`hive_store_postgres.checks`: health checks of PostgreSQL stores
* :mod:`hive_store_postgres.server`: a throwaway server for tests and benchmarks

The core schema's PostgreSQL files are the ``postgresql`` variant of its migration set
(``migrations/postgresql/``), applied by ``hive_store_migrate``'s runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hive_store.hookspecs import hookimpl
from hive_store.url import StoreURL

SCHEMES = ("postgresql", "postgres")


@hookimpl
def hive_store_backend_schemes() -> Sequence[str]:
    return list(SCHEMES)


@hookimpl
def hive_store_backend(url: StoreURL, options: dict[str, Any], plugins: Any) -> Any:
    if url.scheme not in SCHEMES:
        return None
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        from hive_store.errors import ConfigurationError

        raise ConfigurationError(
            "PostgreSQL stores need psycopg and psycopg_pool: "
            "pip install 'hive-store[postgres]'") from None
    from hive_store_postgres.backend import PostgresBackend
    from hive_store_postgres.options import parse

    opts, params = parse(url, options)

    def prepare(conn: Any, backend: PostgresBackend) -> None:
        plugins.prepare_connection(conn, backend)

    return PostgresBackend(url, opts, params, prepare)


@hookimpl
def hive_store_register_health_checks() -> Sequence[Any]:
    from hive_store_postgres.checks import CHECKS

    return list(CHECKS)
