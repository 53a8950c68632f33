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
  ``force`` and says what it would drop. Sets that depend on the one going down are taken
  down first only when asked (``cascade``).
* **Holds.** A set taken down with ``migrate_to`` stays at that version: the hold is recorded
  in ``hive_store_migration_holds`` and :meth:`SQLiteMigrator.upgrade` (what ``open()`` runs)
  leaves held sets, and the sets that depend on them, where they are until
  ``upgrade(lift_holds=True)`` (``hive-store migrate``).
* **Adoption.** A database written by the old Hive apps is adopted first (see
  :mod:`hive_store_migrate.adopt`), after a backup next to the file, in one transaction that
  also brings the core set up to date.

Planning (``plan_*`` functions) is pure: it takes what is applied and held as data, so the
read-only commands compute their report without writing.

The runner speaks to any backend that gives a :class:`hive_store.migrations.SQLDialect` as
``backend.sql`` (SQLite and PostgreSQL do): it runs each set's variant for the backend's dialect
(:func:`hive_store.migrations.for_dialect`) and leaves out the sets that cannot run there. The
SQLite-only part is the adoption of legacy Hive files.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from hive_store.errors import IntegrityError, MigrationError
from hive_store.migrations import (
    AppliedMigration,
    Migration,
    MigrationSet,
    SQLDialect,
    for_dialect,
    order_sets,
)
from hive_store_migrate.adopt import (
    AdoptionPlan,
    AdoptionReport,
    LegacyState,
    ProgressFn,
    detect,
    execute,
    plan_adoption,
    store_report,
)
from hive_store_migrate.backup import backup_path, remove_stale_partials, write_backup

log = logging.getLogger("hive_store.migrate")

RECORD_TABLE = "hive_store_migrations"
HOLDS_TABLE = "hive_store_migration_holds"
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
_CREATE_HOLDS = f"""
CREATE TABLE IF NOT EXISTS {HOLDS_TABLE} (
    namespace TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    held_at TEXT NOT NULL
)"""
CORE_NAMESPACE = "hive_store"

# Set by the command line (hive_store_migrate registers its commands): a factory for a progress
# display used when an upgrade adopts a legacy file and no progress callback was given, so the
# first command a user runs on a big history (`hive-store init`, `memory search`…) shows it too.
_terminal_progress: Callable[[], Any] | None = None


def use_terminal_progress(factory: Callable[[], Any] | None) -> None:
    """Show adoption progress through ``factory()`` (a context manager yielding a progress
    callback, or ``None`` when there is no terminal) when no callback is given."""
    global _terminal_progress
    _terminal_progress = factory


@attrs.frozen
class Step:
    """One migration to run: ``direction`` is ``"up"``, ``"down"`` or ``"adopt"`` (the core's
    first migration on a legacy database: adoption takes its place)."""

    namespace: str
    migration: Migration
    direction: str = "up"

    @property
    def sql(self) -> list[str]:
        return (self.migration.down_statements if self.direction == "down"
                else self.migration.statements)


@attrs.frozen
class Drift:
    """A problem :meth:`SQLiteMigrator.verify` found."""

    namespace: str
    version: int
    name: str
    problem: str  # "changed", "unknown" (applied, no file), "pending", "held" (pending, held)


# -- planning (pure) -------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _by_ns(sets: Sequence[MigrationSet]) -> dict[str, MigrationSet]:
    return {s.namespace: s for s in order_sets(sets)}


def current_version(applied: Sequence[AppliedMigration], namespace: str) -> int:
    return max((a.version for a in applied if a.namespace == namespace), default=0)


def dependencies(sets: Sequence[MigrationSet], namespace: str) -> list[str]:
    """``namespace`` and every set it depends on, directly or not (dependency order)."""
    by_ns = _by_ns(sets)
    out: set[str] = set()
    todo = [namespace]
    while todo:
        ns = todo.pop()
        if ns not in out:
            out.add(ns)
            todo.extend(by_ns[ns].depends_on)
    return [ns for ns in by_ns if ns in out]


def dependents(sets: Sequence[MigrationSet], namespace: str) -> list[str]:
    """The sets that depend on ``namespace``, directly or not (most dependent first)."""
    by_ns = _by_ns(sets)
    out = [ns for ns in by_ns if ns != namespace and namespace in dependencies(sets, ns)]
    return list(reversed(out))


def check_target(sets: Sequence[MigrationSet], namespace: str, to: int | None) -> None:
    """Refuse an unknown set or version (``to`` 0 means none of the set applied)."""
    by_ns = {s.namespace: s for s in sets}
    if namespace not in by_ns:
        known = ", ".join(sorted(by_ns)) or "none"
        raise MigrationError(f"unknown migration set {namespace!r} (the sets: {known})")
    if to is None:
        return
    mset = by_ns[namespace]
    if to != 0 and mset.get(to) is None:
        versions = ", ".join(str(m.version) for m in mset.migrations) or "none"
        raise MigrationError(f"{namespace} has no version {to} (its versions: {versions}; "
                             "0 takes the whole set down)")


def effective_holds(sets: Sequence[MigrationSet], applied: Sequence[AppliedMigration],
                    holds: dict[str, int]) -> dict[str, int]:
    """The recorded holds, plus every set that depends on a set held below its latest version
    (held where it is: it cannot move while what it builds on is held back)."""
    out = dict(holds)
    for mset in order_sets(sets):
        if mset.namespace in out:
            continue
        if any(dep in out and out[dep] < _latest(sets, dep) for dep in mset.depends_on):
            out[mset.namespace] = current_version(applied, mset.namespace)
    return out


def _latest(sets: Sequence[MigrationSet], namespace: str) -> int:
    return next((s.latest for s in sets if s.namespace == namespace), 0)


def plan_up(sets: Sequence[MigrationSet], applied: Sequence[AppliedMigration], *,
            allow_drift: bool, holds: dict[str, int] | None = None,
            target: tuple[str, int] | None = None,
            only: Collection[str] | None = None) -> list[Step]:
    """The up steps, set by set in dependency order: each set up to its hold (or ``target``)."""
    done = {(a.namespace, a.version): a for a in applied}
    held = effective_holds(sets, applied, holds or {})
    plan: list[Step] = []
    for mset in order_sets(sets):
        if only is not None and mset.namespace not in only:
            continue
        known = {m.version for m in mset.migrations}
        newer = [a.version for a in applied
                 if a.namespace == mset.namespace and a.version not in known]
        if newer:
            raise MigrationError(
                f"the database has {mset.namespace} migration(s) {sorted(newer)} that this "
                f"version of the code does not know (it knows up to {mset.latest}); "
                "upgrade hive-store or the plugin that owns them"
            )
        cap = held.get(mset.namespace)
        if target is not None and mset.namespace == target[0]:
            cap = target[1]
        for m in mset.migrations:
            if cap is not None and m.version > cap:
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


def plan_down(sets: Sequence[MigrationSet], applied: Sequence[AppliedMigration],
              namespace: str, to: int, *, cascade: bool) -> tuple[list[Step], dict[str, int]]:
    """The down steps taking ``namespace`` to ``to`` (the sets depending on it first, to 0,
    when ``cascade``) and the holds that keep them there."""
    by_ns = {s.namespace: s for s in sets}
    applied_deps = [d for d in dependents(sets, namespace)
                    if current_version(applied, d) > 0]
    if applied_deps and not cascade:
        raise MigrationError(
            f"cannot take {namespace} down while {', '.join(applied_deps)} (which depend on it) "
            f"are applied; add --cascade to take them down to 0 first "
            f"(`hive-store migrate --set {namespace} --to {to} --cascade --dry-run` shows how)"
        )
    steps: list[Step] = []
    holds: dict[str, int] = {}
    for ns, target in [*((d, 0) for d in applied_deps), (namespace, to)]:
        holds[ns] = target
        for record in sorted((a for a in applied if a.namespace == ns and a.version > target),
                             key=lambda a: -a.version):
            migration = by_ns[ns].get(record.version)
            if migration is None:
                raise MigrationError(f"{ns} {record.version:04d} has no file to take down")
            if migration.down is None:
                raise MigrationError(
                    f"{ns} {record.version:04d} ({migration.name}) declares no down step"
                )
            steps.append(Step(ns, migration, "down"))
    return steps, holds


def plan_to(sets: Sequence[MigrationSet], applied: Sequence[AppliedMigration],
            holds: dict[str, int], namespace: str, to: int, *, allow_drift: bool,
            cascade: bool) -> tuple[list[Step], dict[str, int | None]]:
    """Steps and hold changes (``None`` lifts one) to bring ``namespace`` to ``to``."""
    check_target(sets, namespace, to)
    current = current_version(applied, namespace)
    latest = _latest(sets, namespace)
    if to < current:
        steps, new = plan_down(sets, applied, namespace, to, cascade=cascade)
        return steps, dict(new)
    needs = dependencies(sets, namespace)
    held = effective_holds(sets, applied, {k: v for k, v in holds.items() if k != namespace})
    for dep in needs:
        if dep != namespace and dep in held and held[dep] < _latest(sets, dep):
            raise MigrationError(
                f"{namespace} depends on {dep}, which is held at version {held[dep]}; bring it "
                f"up first (`hive-store migrate --set {dep}`)"
            )
    steps = plan_up(sets, applied, allow_drift=allow_drift, holds=held,
                    target=(namespace, to), only=needs)
    return steps, {namespace: to if to < latest else None}


# -- the runner ----------------------------------------------------------------------------------


class SQLiteMigrator:
    """Implements :class:`hive_store.migrations.Migrator` on a backend with a
    :class:`~hive_store.migrations.SQLDialect` (``backend.sql``): SQLite, PostgreSQL. (The
    name is the one it had when SQLite was the only backend.)"""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.sql: SQLDialect = backend.sql
        self.dialect: str = self.sql.name
        self.adoption: AdoptionReport | None = None

    def _sets(self, sets: Sequence[MigrationSet]) -> list[MigrationSet]:
        """The sets as this backend runs them (its dialect's variants; see the docstring)."""
        return for_dialect(sets, self.dialect)

    def _exec(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one of the runner's own statements, ``?`` placeholders in the dialect's form."""
        if self.sql.param != "?":
            sql = sql.replace("?", self.sql.param)
        return conn.execute(sql, params)

    # -- reading the record ---------------------------------------------------------------------

    def _exists(self, conn: Any, table: str) -> bool:
        return table in self.sql.table_names(conn)

    def _applied_rows(self, conn: Any) -> list[AppliedMigration]:
        if not self._exists(conn, RECORD_TABLE):
            return []
        rows = conn.execute(
            f"SELECT namespace, version, name, checksum, applied_at, duration_ms "
            f"FROM {RECORD_TABLE} ORDER BY namespace, version").fetchall()
        return [AppliedMigration(*r) for r in rows]

    def _hold_rows(self, conn: Any) -> dict[str, int]:
        if not self._exists(conn, HOLDS_TABLE):
            return {}
        return dict(conn.execute(f"SELECT namespace, version FROM {HOLDS_TABLE}").fetchall())

    def applied(self) -> list[AppliedMigration]:
        with self.backend.connection() as conn:
            return self._applied_rows(conn)

    def holds(self) -> dict[str, int]:
        """Sets held at a version below their latest (``{namespace: version}``)."""
        with self.backend.connection() as conn:
            return self._hold_rows(conn)

    def _state(self) -> tuple[list[AppliedMigration], dict[str, int]]:
        with self.backend.connection() as conn:
            return self._applied_rows(conn), self._hold_rows(conn)

    def version(self, namespace: str = CORE_NAMESPACE) -> int:
        """The highest applied version of a namespace (0 if none)."""
        return current_version(self.applied(), namespace)

    def verify(self, sets: Sequence[MigrationSet]) -> list[Drift]:
        """Drift (changed files), applied migrations with no file, pending and held ones."""
        sets = self._sets(sets)
        applied_rows, holds = self._state()
        applied = {(a.namespace, a.version): a for a in applied_rows}
        held = effective_holds(sets, applied_rows, holds)
        out: list[Drift] = []
        known: set[tuple[str, int]] = set()
        for mset in order_sets(sets):
            for m in mset.migrations:
                known.add((mset.namespace, m.version))
                record = applied.get((mset.namespace, m.version))
                if record is None:
                    problem = ("held" if mset.namespace in held
                               and m.version > held[mset.namespace] else "pending")
                    out.append(Drift(mset.namespace, m.version, m.name, problem))
                elif record.checksum != m.checksum:
                    out.append(Drift(mset.namespace, m.version, m.name, "changed"))
        namespaces = {s.namespace for s in sets}
        for (ns, version), record in sorted(applied.items()):
            if ns in namespaces and (ns, version) not in known:
                out.append(Drift(ns, version, record.name, "unknown"))
        return out

    # -- planning ------------------------------------------------------------------------------

    def pending(self, sets: Sequence[MigrationSet]) -> list[tuple[str, Migration]]:
        """What :meth:`upgrade` (``open()``) would apply: held sets stay where they are."""
        sets = self._sets(sets)
        applied, holds = self._state()
        return [(s.namespace, s.migration)
                for s in plan_up(sets, applied, allow_drift=True, holds=holds)]

    def plan(self, sets: Sequence[MigrationSet], *, namespace: str | None = None,
             to: int | None = None, allow_drift: bool = False, cascade: bool = False,
             lift_holds: bool = False) -> list[Step]:
        """What :meth:`migrate_to` (``to`` given) or :meth:`upgrade` would run; reads only.

        On a legacy database the plan starts with the adoption (the core's first step, with
        direction ``"adopt"``) and the core's later steps, which run in its transaction.
        """
        sets = self._sets(sets)
        applied, holds = self._state()
        adoption: list[Step] = []
        core = next((s for s in sets if s.namespace == CORE_NAMESPACE), None)
        if core is not None and self.legacy_state() is not None:
            adoption = [Step(CORE_NAMESPACE, m, "up" if i else "adopt")
                        for i, m in enumerate(core.migrations)]
            applied = [*applied, *(AppliedMigration(CORE_NAMESPACE, m.version, m.name,
                                                    m.checksum, "", 0.0)
                                   for m in core.migrations)]
        if to is None:
            only = None
            if namespace is not None:
                check_target(sets, namespace, None)
                only = dependencies(sets, namespace)
            if lift_holds:
                holds = {k: v for k, v in holds.items() if only is not None and k not in only}
            steps = plan_up(sets, applied, allow_drift=allow_drift, holds=holds, only=only)
        else:
            steps, _ = plan_to(sets, applied, holds, namespace or CORE_NAMESPACE, to,
                               allow_drift=allow_drift, cascade=cascade)
        return adoption + steps

    # -- running -----------------------------------------------------------------------------------

    def upgrade(self, sets: Sequence[MigrationSet], *, allow_drift: bool = False,
                progress: ProgressFn | None = None, lift_holds: bool = False,
                namespace: str | None = None) -> list[tuple[str, Migration]]:
        """Adopt a legacy database if needed, then apply everything pending.

        Held sets stay where they are unless ``lift_holds`` (all holds, or with ``namespace``
        only those of that set and the sets it depends on, whose pending migrations alone are
        then applied).
        """
        if progress is None and _terminal_progress is not None and self.legacy_state():
            view = _terminal_progress()
            if view is not None:
                with view as callback:
                    return self.upgrade(sets, allow_drift=allow_drift, progress=callback,
                                        lift_holds=lift_holds, namespace=namespace)
        sets = self._sets(sets)
        only = None
        if namespace is not None:
            check_target(sets, namespace, None)
            only = dependencies(sets, namespace)
        ran = self._adopt_if_legacy(sets, progress)
        applied, holds = self._state()
        lift = [ns for ns in holds if lift_holds and (only is None or ns in only)]
        remaining = {k: v for k, v in holds.items() if k not in lift}
        # Fast path: nothing to do is decided with a read, without the write lock.
        if not lift and not plan_up(sets, applied, allow_drift=allow_drift, holds=remaining,
                                    only=only):
            return ran
        with self.backend.transaction() as conn:
            self.sql.lock_migrations(conn)
            conn.execute(_CREATE_RECORD)
            holds = self._hold_rows(conn)
            lift = [ns for ns in holds if lift_holds and (only is None or ns in only)]
            for ns in lift:
                self._exec(conn, f"DELETE FROM {HOLDS_TABLE} WHERE namespace = ?", (ns,))
            remaining = {k: v for k, v in holds.items() if k not in lift}
            steps = plan_up(sets, self._applied_rows(conn), allow_drift=allow_drift,
                            holds=remaining, only=only)
            for step in steps:
                self._run(conn, step, progress)
        return ran + [(s.namespace, s.migration) for s in steps]

    def migrate_to(self, sets: Sequence[MigrationSet], to: int, *,
                   namespace: str = CORE_NAMESPACE, force: bool = False,
                   allow_drift: bool = False, cascade: bool = False,
                   progress: ProgressFn | None = None) -> list[Step]:
        """Go up or down to ``to`` in one transaction and hold the set there (a version below
        its latest); a data-dropping down step needs ``force``, taking down the sets that
        depend on it needs ``cascade``."""
        sets = self._sets(sets)
        check_target(sets, namespace, to)
        ran = self._adopt_if_legacy(sets, progress)
        try:
            steps = self._migrate_to(sets, to, namespace=namespace, force=force,
                                     allow_drift=allow_drift, cascade=cascade, progress=progress)
        except IntegrityError:
            # Only the COMMIT can raise it here (a failing statement is a MigrationError):
            # the deferred foreign-key check found rows pointing at rows the steps deleted.
            raise MigrationError(
                f"taking {namespace} down to {to} would leave rows that refer to rows it "
                "deletes (a FOREIGN KEY constraint failed); nothing was changed. Go further "
                "down (e.g. --to 0), or delete the rows that refer to them first"
            ) from None
        return [Step(ns, m) for ns, m in ran] + steps

    def _migrate_to(self, sets: Sequence[MigrationSet], to: int, *, namespace: str,
                    force: bool, allow_drift: bool, cascade: bool,
                    progress: ProgressFn | None) -> list[Step]:
        with self.backend.transaction() as conn:
            self.sql.lock_migrations(conn)
            conn.execute(_CREATE_RECORD)
            applied = self._applied_rows(conn)
            steps, hold_changes = plan_to(sets, applied, self._hold_rows(conn), namespace, to,
                                          allow_drift=allow_drift, cascade=cascade)
            if any(s.direction == "down" for s in steps):
                if not force:
                    losses = self.data_loss(conn, steps)
                    if losses:
                        raise MigrationError(
                            "going down would drop data: "
                            + "; ".join(f"{what} ({n} rows)" for what, n in losses)
                            + "; nothing was changed (use --force to go ahead)"
                        )
                # Down steps delete parents before their children's tables are dropped (0002
                # deletes the seed profiles, then 0001 drops conversations): foreign keys are
                # checked at COMMIT, once every step ran (for this transaction only).
                self.sql.defer_foreign_keys(conn)
            for step in steps:
                self._run(conn, step, progress)
            for ns, version in hold_changes.items():
                if version is None:
                    if self._exists(conn, HOLDS_TABLE):
                        self._exec(conn, f"DELETE FROM {HOLDS_TABLE} WHERE namespace = ?",
                                   (ns,))
                else:
                    conn.execute(_CREATE_HOLDS)
                    self._exec(conn, f"INSERT INTO {HOLDS_TABLE} (namespace, version, held_at) "
                                 "VALUES (?, ?, ?) ON CONFLICT (namespace) DO UPDATE SET "
                                 "version = excluded.version, held_at = excluded.held_at",
                                 (ns, version, _now()))
        return steps

    def data_loss(self, conn: Any, steps: Sequence[Step]) -> list[tuple[str, int]]:
        """Rows the down steps would drop: ``DROP TABLE``, ``DELETE`` and ``DROP COLUMN``."""
        losses: list[tuple[str, int]] = []
        tables = self.sql.table_names(conn)
        for step in steps:
            if step.direction != "down":
                continue
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

    def _run(self, conn: Any, step: Step, progress: ProgressFn | None = None) -> None:
        m = step.migration
        start = time.perf_counter()
        statements = step.sql
        phase = f"{step.namespace} {m.version:04d} {m.name}" + (
            " (down)" if step.direction == "down" else "")
        for index, statement in enumerate(statements, 1):
            try:
                conn.execute(statement)
            except self.sql.errors as exc:
                raise MigrationError(
                    f"migration {step.namespace} {m.version:04d} ({m.name}) failed at "
                    f"{'down ' if step.direction == 'down' else ''}statement {index}: "
                    f"{(str(exc).strip().splitlines() or [type(exc).__name__])[0]}; "
                    "nothing of this run was applied"
                ) from None
            if progress is not None:
                progress(phase, index, len(statements), "statements")
        if step.direction == "down":
            self._exec(conn, f"DELETE FROM {RECORD_TABLE} WHERE namespace = ? AND version = ?",
                       (step.namespace, m.version))
            return
        self._exec(
            conn,
            f"INSERT INTO {RECORD_TABLE} (namespace, version, name, checksum, applied_at, "
            "duration_ms, down_sql) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (step.namespace, m.version, m.name, m.checksum, _now(),
             round((time.perf_counter() - start) * 1000, 3), m.down),
        )

    # -- adoption ----------------------------------------------------------------------------------

    def hive_schema_version(self) -> int | None:
        """The highest version in the old Hive apps' own record (their ``schema_migrations``):
        13 on a file hive-store manages (migration ``0003 hive_runner_record``), a legacy
        file's own before adoption, ``None`` without the table. For ``hive-store status``."""
        with self.backend.connection() as conn:
            if not self._exists(conn, "schema_migrations"):
                return None
            try:
                version = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
            except sqlite3.Error:
                return None
        return version if isinstance(version, int) else None

    def legacy_state(self) -> LegacyState | None:
        if self.dialect != "sqlite":
            return None  # legacy Hive databases are SQLite files
        with self.backend.connection() as conn:
            return detect(conn, RECORD_TABLE, HOLDS_TABLE)

    def adoption_plan(self, sets: Sequence[MigrationSet]) -> AdoptionPlan | None:
        """What adoption would do (``None`` if the database is not a legacy one); reads only."""
        if self.legacy_state() is None:
            return None
        first = self._core_first(self._sets(sets))
        with self.backend.connection() as conn:
            state = detect(conn, RECORD_TABLE, HOLDS_TABLE)
            return None if state is None else plan_adoption(conn, first, state)

    @staticmethod
    def _core_first(sets: Sequence[MigrationSet]) -> Migration:
        core = next((s for s in sets if s.namespace == CORE_NAMESPACE), None)
        first = core.get(1) if core is not None else None
        if first is None:
            raise MigrationError("cannot adopt a legacy database without the core schema set")
        return first

    def _adopt_if_legacy(self, sets: Sequence[MigrationSet],
                         progress: ProgressFn | None) -> list[tuple[str, Migration]]:
        """Adopt a legacy database and bring the core set up to date, in one transaction;
        returns the core migrations that ran after the adoption."""
        if self.legacy_state() is None:
            return []
        first = self._core_first(sets)
        core = next(s for s in sets if s.namespace == CORE_NAMESPACE)
        with self.backend.transaction(foreign_keys=False) as conn:
            state = detect(conn, RECORD_TABLE, HOLDS_TABLE)  # again, under the write lock
            if state is None:
                return []  # another process adopted it meanwhile
            start = time.perf_counter()
            backup = None
            if not getattr(self.backend, "memory", False):
                path = Path(self.backend.path)
                for stale in remove_stale_partials(path):
                    log.warning("removed a partial backup an interrupted adoption left: %s",
                                stale)
                backup = backup_path(path)
                pages = None
                if progress is not None:
                    def pages(done: int, total: int) -> None:
                        progress("backup", done, total, "pages")
                try:
                    write_backup(path, backup, pages)
                except (OSError, sqlite3.Error) as exc:
                    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                    raise MigrationError(f"could not write the backup {backup}: {why}; "
                                         "nothing was changed") from None
                log.warning("adopting a legacy Hive database (%s); backup written to %s",
                            state.describe(), backup)
            backup_s = time.perf_counter() - start
            plan = plan_adoption(conn, first, state)
            report = execute(conn, plan, backup=str(backup) if backup else None,
                             progress=progress)
            report.phases = {"backup": round(backup_s, 4), **report.phases}
            t_record = time.perf_counter()
            conn.execute(_CREATE_RECORD)
            conn.execute(
                f"INSERT INTO {RECORD_TABLE} (namespace, version, name, checksum, applied_at, "
                "duration_ms, down_sql) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (CORE_NAMESPACE, first.version, first.name, first.checksum, _now(),
                 round((time.perf_counter() - start) * 1000, 3), first.down),
            )
            before = _hive_versions(conn)
            steps = plan_up([core], self._applied_rows(conn), allow_drift=False)
            for step in steps:
                self._run(conn, step, progress)
            report.migrations = [f"{s.namespace} {s.migration.version:04d} {s.migration.name}"
                                 for s in steps]
            report.hive_versions_recorded = sorted(_hive_versions(conn) - before)
            report.phases["core_migrations"] = round(time.perf_counter() - t_record, 4)
            report.seconds = round(time.perf_counter() - start, 3)
            store_report(conn, report)
        self.adoption = report
        for line in report.summary().splitlines():
            log.warning("%s", line)
        return [(s.namespace, s.migration) for s in steps]


def _hive_versions(conn: sqlite3.Connection) -> set[int]:
    """The versions the old Hive runner's ``schema_migrations`` records (adoption: SQLite)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' "
                    "AND name='schema_migrations'").fetchone() is None:
        return set()
    return {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
