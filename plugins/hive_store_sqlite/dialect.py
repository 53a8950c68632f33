"""What the migration runner needs to know of SQLite (:class:`hive_store.migrations.SQLDialect`)."""

from __future__ import annotations

import sqlite3


class SQLiteDialect:
    """``SQLiteBackend.sql``: what ``hive_store_migrate``'s runner needs of SQLite."""

    name = "sqlite"
    param = "?"
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def table_names(self, conn: sqlite3.Connection) -> set[str]:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def lock_migrations(self, conn: sqlite3.Connection) -> None:
        """Nothing: ``BEGIN IMMEDIATE`` holds SQLite's write lock for the whole run."""

    def defer_foreign_keys(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA defer_foreign_keys = ON")  # SQLite resets it at the transaction end


DIALECT = SQLiteDialect()
