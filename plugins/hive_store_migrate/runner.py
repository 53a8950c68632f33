"""The migration runner for SQLite backends.

* **Atomic.** One run (everything pending, or a ``--to`` target) is one ``BEGIN IMMEDIATE``
  transaction together with the records (namespace, version, name, checksum, applied_at,
  duration, down SQL): an error at any statement, or a crash, leaves the database as it was.
* **Concurrent-safe.** What is applied is re-read inside that transaction, so two processes
  opening the same file at the same moment apply each migration once; the second waits for
  the first (``busy_timeout``) and then finds nothing to do.
* **Checksummed.** An applied migration whose file changed since is *drift*: upgrades refuse
  (unless ``allow_drift``) and :meth:`SQLiteMigrator.verify` reports it.
* **Reversible.** Down steps run newest first; one that would drop rows refuses unless
  ``force`` and says what it would drop.
* **Adoption.** A database written by the old Hive apps is adopted first (see
  :mod:`hive_store_migrate.adopt`), after a backup next to the file.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from hive_store.errors import MigrationError
from hive_store.migrations import AppliedMigration, Migration, MigrationSet, order_sets
from hive_store_migrate.adopt import (
    AdoptionReport,
    ProgressFn,
    adopt,
    backup_path,
    detect,
    write_backup,
)

log = logging.getLogger("hive_store.migrate")

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


@attrs.frozen
class Step:
    """One migration to run: ``direction`` is ``"up"`` or ``"down"``."""

    namespace: str
    migration: Migration
    direction: str = "up"

    @property
    def sql(self) -> list[str]:
        return (self.migration.statements if self.direction == "up"
                else self.migration.down_statements)


@attrs.frozen
class Drift:
    """A problem :meth:`SQLiteMigrator.verify` found."""

    namespace: str
    version: int
    name: str
    problem: str  # "changed", "unknown" (applied, no file), "pending"


class SQLiteMigrator:
    """Implements :class:`hive_store.migrations.Migrator` on a SQLite backend."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.adoption: AdoptionReport | None = None

    # -- reading the record ---------------------------------------------------------------------

    @staticmethod
    def _applied_rows(conn: sqlite3.Connection) -> list[AppliedMigration]:
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                              (RECORD_TABLE,)).fetchone()
        if not exists:
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

    def verify(self, sets: Sequence[MigrationSet]) -> list[Drift]:
        """Drift (changed files), applied migrations with no file, and pending ones."""
        applied = {(a.namespace, a.version): a for a in self.applied()}
        out: list[Drift] = []
        known: set[tuple[str, int]] = set()
        for mset in order_sets(sets):
            for m in mset.migrations:
                known.add((mset.namespace, m.version))
                record = applied.get((mset.namespace, m.version))
                if record is None:
                    out.append(Drift(mset.namespace, m.version, m.name, "pending"))
                elif record.checksum != m.checksum:
                    out.append(Drift(mset.namespace, m.version, m.name, "changed"))
        namespaces = {s.namespace for s in sets}
        for (ns, version), record in sorted(applied.items()):
            if ns in namespaces and (ns, version) not in known:
                out.append(Drift(ns, version, record.name, "unknown"))
        return out

    # -- planning ------------------------------------------------------------------------------

    def _plan_up(self, sets: Sequence[MigrationSet], applied: list[AppliedMigration],
                 allow_drift: bool, target: tuple[str, int] | None = None) -> list[Step]:
        done = {(a.namespace, a.version): a for a in applied}
        plan: list[Step] = []
        for mset in order_sets(sets):
            known = {m.version for m in mset.migrations}
            newer = [a.version for a in applied
                     if a.namespace == mset.namespace and a.version not in known]
            if newer:
                raise MigrationError(
                    f"the database has {mset.namespace} migration(s) {sorted(newer)} that this "
                    f"version of the code does not know (it knows up to {mset.latest}); "
                    "upgrade hive-store or the plugin that owns them"
                )
            for m in mset.migrations:
                if target is not None and mset.namespace == target[0] and m.version > target[1]:
                    break
                record = done.get((mset.namespace, m.version))
                if record is None:
                    plan.append(Step(mset.namespace, m))
                elif record.checksum != m.checksum and not allow_drift:
                    raise MigrationError(
                        f"migration {mset.namespace} {m.version:04d} ({m.name}) has changed since "
                        f"it was applied on {record.applied_at} (checksum {record.checksum[:12]} "
                        f"recorded, {m.checksum[:12]} now); restore the file, or open with "
                        "allow_drift=True (hive-store migrate --allow-drift) if the change is "
                        "intended; `hive-store migrate --verify` lists all drift"
                    )
        return plan

    def pending(self, sets: Sequence[MigrationSet]) -> list[tuple[str, Migration]]:
        return [(s.namespace, s.migration)
                for s in self._plan_up(sets, self.applied(), allow_drift=True)]

    def plan(self, sets: Sequence[MigrationSet], *, namespace: str = CORE_NAMESPACE,
             to: int | None = None, allow_drift: bool = False) -> list[Step]:
        """What :meth:`migrate_to` (or an upgrade, with ``to=None``) would run."""
        applied = self.applied()
        if to is None:
            return self._plan_up(sets, applied, allow_drift)
        current = max((a.version for a in applied if a.namespace == namespace), default=0)
        if to >= current:
            return [s for s in self._plan_up(sets, applied, allow_drift, (namespace, to))
                    if s.namespace != namespace or s.migration.version <= to]
        return self._plan_down(sets, applied, namespace, to)

    def _plan_down(self, sets: Sequence[MigrationSet], applied: list[AppliedMigration],
                   namespace: str, to: int) -> list[Step]:
        by_ns = {s.namespace: s for s in sets}
        if namespace not in by_ns:
            raise MigrationError(f"no loaded plugin provides the migration set {namespace!r}")
        dependents = [s.namespace for s in sets if namespace in s.depends_on and any(
            a.namespace == s.namespace for a in applied)]
        if dependents:
            raise MigrationError(
                f"cannot take {namespace} down while {', '.join(dependents)} (which depend on it) "
                "are applied; take those down first"
            )
        steps = []
        for record in sorted((a for a in applied if a.namespace == namespace and a.version > to),
                             key=lambda a: -a.version):
            migration = by_ns[namespace].get(record.version)
            if migration is None:
                raise MigrationError(f"{namespace} {record.version:04d} has no file to take down")
            if migration.down is None:
                raise MigrationError(
                    f"{namespace} {record.version:04d} ({migration.name}) declares no down step"
                )
            steps.append(Step(namespace, migration, "down"))
        return steps

    # -- running -----------------------------------------------------------------------------------

    def upgrade(self, sets: Sequence[MigrationSet], *, allow_drift: bool = False,
                progress: ProgressFn | None = None) -> list[tuple[str, Migration]]:
        """Adopt a legacy database if needed, then apply everything pending."""
        self._adopt_if_legacy(sets, progress)
        # Fast path: nothing to do is decided with a read, without the write lock.
        if not self._plan_up(sets, self.applied(), allow_drift):
            return []
        with self.backend.transaction() as conn:
            conn.execute(_CREATE_RECORD)
            steps = self._plan_up(sets, self._applied_rows(conn), allow_drift)
            for step in steps:
                self._run(conn, step)
        return [(s.namespace, s.migration) for s in steps]

    def migrate_to(self, sets: Sequence[MigrationSet], to: int, *,
                   namespace: str = CORE_NAMESPACE, force: bool = False,
                   allow_drift: bool = False) -> list[Step]:
        """Go up or down to ``to`` in one transaction; a data-dropping down step needs force."""
        self._adopt_if_legacy(sets, None)
        with self.backend.transaction() as conn:
            conn.execute(_CREATE_RECORD)
            applied = self._applied_rows(conn)
            current = max((a.version for a in applied if a.namespace == namespace), default=0)
            if to >= current:
                steps = [s for s in self._plan_up(sets, applied, allow_drift, (namespace, to))
                         if s.namespace != namespace or s.migration.version <= to]
            else:
                steps = self._plan_down(sets, applied, namespace, to)
                if not force:
                    losses = self.data_loss(conn, steps)
                    if losses:
                        raise MigrationError(
                            "going down would drop data: "
                            + "; ".join(f"{what} ({n} rows)" for what, n in losses)
                            + "; nothing was changed (use --force to go ahead)"
                        )
            for step in steps:
                self._run(conn, step)
        return steps

    @staticmethod
    def data_loss(conn: sqlite3.Connection, steps: Sequence[Step]) -> list[tuple[str, int]]:
        """Rows the down steps would drop: ``DROP TABLE``, ``DELETE`` and ``DROP COLUMN``."""
        losses: list[tuple[str, int]] = []
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for step in steps:
            for statement in step.sql:
                code = re.sub(r"--[^\n]*", "", statement).strip().rstrip(";")
                m = re.match(r"DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?[\"`]?(\w+)", code, re.I)
                if m and m.group(1) in tables:
                    n = conn.execute(f'SELECT count(*) FROM "{m.group(1)}"').fetchone()[0]
                    if n:
                        losses.append((f"table {m.group(1)}", n))
                    continue
                m = re.match(r"DELETE\s+FROM\s+[\"`]?(\w+)[\"`]?(.*)$", code, re.I | re.S)
                if m and m.group(1) in tables:
                    # The statement comes from a migration file of ours, not from a user.
                    count_sql = f'SELECT count(*) FROM "{m.group(1)}"{m.group(2)}'
                    n = conn.execute(count_sql).fetchone()[0]
                    if n:
                        losses.append((f"rows of {m.group(1)}", n))
                    continue
                m = re.match(
                    r"ALTER\s+TABLE\s+[\"`]?(\w+)[\"`]?\s+DROP\s+(?:COLUMN\s+)?[\"`]?(\w+)",
                    code, re.I)
                if m and m.group(1) in tables:
                    n = conn.execute(f'SELECT count(*) FROM "{m.group(1)}" '
                                     f'WHERE "{m.group(2)}" IS NOT NULL').fetchone()[0]
                    if n:
                        losses.append((f"column {m.group(1)}.{m.group(2)}", n))
        return losses

    def _run(self, conn: sqlite3.Connection, step: Step) -> None:
        m = step.migration
        start = time.perf_counter()
        for index, statement in enumerate(step.sql, 1):
            try:
                conn.execute(statement)
            except sqlite3.Error as exc:
                raise MigrationError(
                    f"migration {step.namespace} {m.version:04d} ({m.name}) failed at "
                    f"{'down ' if step.direction == 'down' else ''}statement {index}: {exc}; "
                    "nothing of this run was applied"
                ) from None
        if step.direction == "up":
            conn.execute(
                f"INSERT INTO {RECORD_TABLE} (namespace, version, name, checksum, applied_at, "
                "duration_ms, down_sql) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (step.namespace, m.version, m.name, m.checksum,
                 datetime.now(UTC).isoformat(timespec="microseconds"),
                 round((time.perf_counter() - start) * 1000, 3), m.down),
            )
        else:
            conn.execute(f"DELETE FROM {RECORD_TABLE} WHERE namespace = ? AND version = ?",
                         (step.namespace, m.version))

    # -- adoption ----------------------------------------------------------------------------------

    def hive_schema_version(self) -> int | None:
        """The version the old Hive apps' runner recorded in the file (``max(version)`` of
        their ``schema_migrations``, which adoption leaves as it was), or ``None``."""
        with self.backend.connection() as conn:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                "AND name = 'schema_migrations'").fetchone():
                return None
            try:
                version = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
            except sqlite3.Error:
                return None
        return version if isinstance(version, int) else None

    def legacy_state(self) -> Any:
        with self.backend.connection() as conn:
            return detect(conn, RECORD_TABLE)

    def _adopt_if_legacy(self, sets: Sequence[MigrationSet],
                         progress: ProgressFn | None) -> AdoptionReport | None:
        if self.legacy_state() is None:
            return None
        core = next((s for s in sets if s.namespace == CORE_NAMESPACE), None)
        if core is None or core.get(1) is None:
            raise MigrationError("cannot adopt a legacy database without the core schema set")
        first = core.get(1)
        assert first is not None
        with self.backend.transaction(foreign_keys=False) as conn:
            state = detect(conn, RECORD_TABLE)  # again, under the write lock
            if state is None:
                return None  # another process adopted it meanwhile
            backup = None
            if not getattr(self.backend, "memory", False):
                backup = backup_path(Path(self.backend.path))
                write_backup(Path(self.backend.path), backup)
                log.warning("adopting a legacy Hive database (%s); backup written to %s",
                            state.describe(), backup)
            start = time.perf_counter()
            report = adopt(conn, first, state, backup=backup, progress=progress)
            conn.execute(_CREATE_RECORD)
            conn.execute(
                f"INSERT INTO {RECORD_TABLE} (namespace, version, name, checksum, applied_at, "
                "duration_ms, down_sql) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (CORE_NAMESPACE, first.version, first.name, first.checksum,
                 datetime.now(UTC).isoformat(timespec="microseconds"),
                 round((time.perf_counter() - start) * 1000, 3), first.down),
            )
        self.adoption = report
        for line in report.summary().splitlines():
            log.warning("%s", line)
        return report
