"""What the migration runner needs to know of PostgreSQL (``hive_store.migrations.SQLDialect``).

Tables are those of the schema in use (``current_schema()``: ``public`` unless the URL's
``options=-csearch_path=…`` names another), so several stores can share one database.
"""

from __future__ import annotations

from typing import Any

MIGRATION_LOCK = 0x68697665_73746f72  # "hivestor": the advisory lock migrators take
"""The key of the transaction-level advisory lock that serialises migration runs (with the
schema's name, so that stores in different schemas do not wait for each other)."""


class PostgresDialect:
    """``PostgresBackend.sql``: what ``hive_store_migrate``'s runner needs of PostgreSQL."""

    name = "postgresql"
    param = "%s"

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        import psycopg

        return (psycopg.Error,)

    def table_names(self, conn: Any) -> set[str]:
        return {r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relkind IN ('r', 'p') "
            "AND c.relnamespace = current_schema()::regnamespace")}

    def lock_migrations(self, conn: Any) -> None:
        """Another process's migration run waits here until this transaction ends (as for
        SQLite's write lock), then finds nothing left to do. The first statement of the
        transaction: it becomes READ COMMITTED, so that what the runner reads after the wait
        is what the other run committed (a snapshot taken before the wait would not see it)."""
        conn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))",
                     (MIGRATION_LOCK & 0x7FFFFFFF,))

    def defer_foreign_keys(self, conn: Any) -> None:
        # The schema's foreign keys are DEFERRABLE INITIALLY IMMEDIATE.
        conn.execute("SET CONSTRAINTS ALL DEFERRED")


DIALECT = PostgresDialect()
