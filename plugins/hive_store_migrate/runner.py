"""The migration runner for SQLite backends.

Each migration runs in its own ``BEGIN IMMEDIATE`` transaction together with its record
(namespace, version, name, checksum, applied_at, duration), so a crash or an error leaves the
database at the previous version, never in between. The applied versions are re-read inside
that transaction, so two processes opening the same new file at the same moment apply each
migration once.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from hive_store.errors import MigrationError
from hive_store.migrations import AppliedMigration, Migration, MigrationSet, order_sets

RECORD_TABLE = "hive_store_migrations"
_CREATE_RECORD = f"""
CREATE TABLE IF NOT EXISTS {RECORD_TABLE} (
    namespace TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    duration_ms REAL NOT NULL,
    down_sql TEXT,
    PRIMARY KEY (namespace, version)
)"""
CORE_NAMESPACE = "hive_store"
# Tables that only a Hive app (not hive-store) would have created without our record.
_HIVE_MARKERS = ("users", "conversations", "messages", "knowledge_conversations")


class SQLiteMigrator:
    """Implements :class:`hive_store.migrations.Migrator` on a :class:`SQLiteBackend`."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def _has_record_table(self, conn: sqlite3.Connection) -> bool:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                            (RECORD_TABLE,)).fetchone() is not None

    def _applied_rows(self, conn: sqlite3.Connection) -> list[AppliedMigration]:
        if not self._has_record_table(conn):
            return []
        rows = conn.execute(
            f"SELECT namespace, version, name, checksum, applied_at, duration_ms "
            f"FROM {RECORD_TABLE} ORDER BY namespace, version").fetchall()
        return [AppliedMigration(*r) for r in rows]

    def applied(self) -> list[AppliedMigration]:
        with self.backend.connection() as conn:
            return self._applied_rows(conn)

    def version(self, namespace: str = CORE_NAMESPACE) -> int:
        """The highest applied version of a namespace (0 if none)."""
        return max((a.version for a in self.applied() if a.namespace == namespace), default=0)

    def _plan(self, sets: Sequence[MigrationSet], applied: list[AppliedMigration],
              allow_drift: bool) -> list[tuple[str, Migration]]:
        done = {(a.namespace, a.version): a for a in applied}
        plan: list[tuple[str, Migration]] = []
        for mset in order_sets(sets):
            known = {m.version for m in mset.migrations}
            newer = [a.version for a in applied if a.namespace == mset.namespace
                     and a.version not in known]
            if newer:
                raise MigrationError(
                    f"the database has {mset.namespace} migration(s) {sorted(newer)} that this "
                    f"version of the code does not know (it knows up to {mset.latest}); "
                    "upgrade hive-store or the plugin that owns them"
                )
            for m in mset.migrations:
                record = done.get((mset.namespace, m.version))
                if record is None:
                    plan.append((mset.namespace, m))
                elif record.checksum != m.checksum and not allow_drift:
                    raise MigrationError(
                        f"migration {mset.namespace} {m.version:04d} ({m.name}) has changed since "
                        f"it was applied on {record.applied_at} (checksum {record.checksum[:12]} "
                        f"recorded, {m.checksum[:12]} now); restore the file or open with "
                        "allow_drift=True"
                    )
        return plan

    def pending(self, sets: Sequence[MigrationSet]) -> list[tuple[str, Migration]]:
        return self._plan(sets, self.applied(), allow_drift=True)

    def upgrade(self, sets: Sequence[MigrationSet], *,
                allow_drift: bool = False) -> list[tuple[str, Migration]]:
        # Fast path: nothing to do is decided with a read, without taking the write lock.
        if not self._plan(sets, self.applied(), allow_drift):
            return []
        done: list[tuple[str, Migration]] = []
        while True:
            with self.backend.transaction() as conn:
                conn.execute(_CREATE_RECORD)
                applied = self._applied_rows(conn)
                plan = self._plan(sets, applied, allow_drift)
                if not plan:
                    return done
                namespace, migration = plan[0]
                if namespace == CORE_NAMESPACE and not any(
                        a.namespace == CORE_NAMESPACE for a in applied):
                    self._refuse_foreign_database(conn)
                self._apply(conn, namespace, migration)
            done.append((namespace, migration))

    def _refuse_foreign_database(self, conn: sqlite3.Connection) -> None:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "schema_migrations" in tables or tables & set(_HIVE_MARKERS):
            version = None
            if "schema_migrations" in tables:
                try:
                    version = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
                except sqlite3.Error:
                    version = None
            state = f"at Hive schema version {version}" if version is not None else "with Hive tables"
            raise MigrationError(
                f"this is a database written by the old Hive apps ({state}) that hive-store has "
                "not adopted; adopting legacy databases is not supported by this version yet; "
                "no data was changed"
            )

    def _apply(self, conn: sqlite3.Connection, namespace: str, migration: Migration) -> None:
        start = time.perf_counter()
        for index, statement in enumerate(migration.statements, 1):
            try:
                conn.execute(statement)
            except sqlite3.Error as exc:
                raise MigrationError(
                    f"migration {namespace} {migration.version:04d} ({migration.name}) failed at "
                    f"statement {index}: {exc}; nothing of it was applied"
                ) from None
        conn.execute(
            f"INSERT INTO {RECORD_TABLE} (namespace, version, name, checksum, applied_at, "
            "duration_ms, down_sql) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (namespace, migration.version, migration.name, migration.checksum,
             datetime.now(UTC).isoformat(timespec="microseconds"),
             round((time.perf_counter() - start) * 1000, 3), migration.down),
        )
