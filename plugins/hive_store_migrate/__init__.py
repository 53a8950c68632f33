"""hive-store plugin: the migration runner and the core Hive schema's migration set.

The core schema's files live in ``migrations/`` (the ``hive_store_migrations`` package in the
wheel). Other plugins register their own sets through ``hive_store_register_migrations``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hive_store.hookspecs import hookimpl
from hive_store.migrations import MigrationSet
from hive_store_migrate.runner import CORE_NAMESPACE, RECORD_TABLE, SQLiteMigrator

__all__ = ["CORE_NAMESPACE", "RECORD_TABLE", "SQLiteMigrator", "core_migrations"]

_core: MigrationSet | None = None


def core_migrations() -> MigrationSet:
    """The core schema's migration set (parsed once)."""
    global _core
    if _core is None:
        _core = MigrationSet.from_package(CORE_NAMESPACE, "hive_store_migrations")
    return _core


@hookimpl
def hive_store_register_migrations() -> Sequence[MigrationSet]:
    return [core_migrations()]


@hookimpl
def hive_store_migrator(backend: Any) -> SQLiteMigrator | None:
    # Our runner speaks to any backend that describes its SQL (backend.sql: SQLite, PostgreSQL).
    sql = getattr(backend, "sql", None)
    return SQLiteMigrator(backend) if getattr(sql, "name", None) is not None else None


@hookimpl
def hive_store_register_commands(cli: Any) -> None:
    from hive_store_migrate.cli import migrate, progress_view, schema
    from hive_store_migrate.runner import use_terminal_progress

    cli.add_command(migrate)
    cli.add_command(schema)
    # Inside the command, a legacy file adopted by any command's first open shows progress.
    use_terminal_progress(progress_view)
