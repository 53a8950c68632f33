"""The built-in health checks of SQLite stores, their thresholds and the ``full`` flag.

Every check is ``check(store) -> HealthResult | None``: ``None`` means "does not apply" (another
backend, or an in-memory database for the file checks) and produces no result. A check never
raises for a condition of the database: a damaged file, a locked database or a pool that hands
out no connection become a ``fail`` result with the error as its message (and if anything still
escapes, :func:`hive_store.health.run_checks` reports it as failed too).

Thresholds come from :class:`HealthOptions`: the defaults, replaced per store with
:func:`configure` and per run with :func:`run` (``run(store, full=True, wal_warn_bytes=...)``).
``full`` (also only through :func:`run`) makes the integrity check run ``PRAGMA
integrity_check`` instead of ``quick_check``. Both reach the checks through a context variable,
because ``Store.health()`` takes no arguments (see the plugin's docstring for the core change
that would remove this indirection).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import shutil
import sqlite3
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from hive_store.errors import HiveStoreError
from hive_store.health import HealthResult, Status, worst

if TYPE_CHECKING:
    from hive_store.store import Store

MiB = 1024 * 1024
GiB = 1024 * MiB

Check = Callable[[Any], "HealthResult | None"]


def _positive(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise HiveStoreError(f"health option {attribute.name} must be a number >= 0")


def _ratio(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    _positive(_inst, attribute, value)
    if value > 1:
        raise HiveStoreError(f"health option {attribute.name} must be between 0 and 1")


@attrs.frozen(kw_only=True)
class HealthOptions:
    """Thresholds of the built-in checks (sizes in bytes, ratios between 0 and 1).

    :ivar wal_warn_bytes: ``-wal`` file size that warns (suggests ``hive-store checkpoint
        --truncate``)
    :ivar wal_fail_bytes: ``-wal`` file size that fails
    :ivar wal_starvation_frames: WAL frames a passive checkpoint could not copy back (a reader
        holds an old snapshot) that count as checkpoint starvation (warn)
    :ivar wal_probe_checkpoint: run ``PRAGMA wal_checkpoint(PASSIVE)`` to measure starvation
        (it never blocks and never takes the write lock)
    :ivar freelist_warn_ratio: free pages / all pages that warns (suggests ``hive-store
        vacuum``) ...
    :ivar freelist_min_bytes: ... once the free pages also add up to at least this much
    :ivar disk_warn_bytes: free space on the database's filesystem that warns; it also warns
        when less is free than the database and its WAL take (no room for a vacuum or backup)
    :ivar disk_fail_bytes: free space that fails
    :ivar pool_saturation_warn: connections in use / ``max_size`` that warns
    :ivar pool_wait_warn_ratio: checkouts that had to wait / all checkouts that warns ...
    :ivar pool_min_checkouts: ... once there were at least this many checkouts
    :ivar problem_limit: how many problems (integrity, foreign keys) to list in ``details``
    :ivar plugin_failure_status: the status of the ``plugins`` check when a plugin failed
    """

    wal_warn_bytes: int = attrs.field(default=64 * MiB, validator=_positive)
    wal_fail_bytes: int = attrs.field(default=1 * GiB, validator=_positive)
    wal_starvation_frames: int = attrs.field(default=1000, validator=_positive)
    wal_probe_checkpoint: bool = True
    freelist_warn_ratio: float = attrs.field(default=0.25, validator=_ratio)
    freelist_min_bytes: int = attrs.field(default=4 * MiB, validator=_positive)
    disk_warn_bytes: int = attrs.field(default=1 * GiB, validator=_positive)
    disk_fail_bytes: int = attrs.field(default=100 * MiB, validator=_positive)
    pool_saturation_warn: float = attrs.field(default=0.8, validator=_ratio)
    pool_wait_warn_ratio: float = attrs.field(default=0.05, validator=_ratio)
    pool_min_checkouts: int = attrs.field(default=100, validator=_positive)
    problem_limit: int = attrs.field(default=20, validator=_positive)
    plugin_failure_status: Status = attrs.field(default="warn")

    @plugin_failure_status.validator
    def _status(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in ("ok", "warn", "fail"):
            raise HiveStoreError("health option plugin_failure_status must be ok, warn or fail")

    def evolve(self, **changes: Any) -> HealthOptions:
        """A copy with ``changes``; unknown names are a one-line error."""
        known = {f.name for f in attrs.fields(HealthOptions)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise HiveStoreError(f"unknown health option(s) {', '.join(unknown)} "
                                 f"(known: {', '.join(sorted(known))})")
        return attrs.evolve(self, **changes)

    @classmethod
    def parse(cls, pairs: Sequence[str], base: HealthOptions | None = None) -> HealthOptions:
        """Options from ``KEY=VALUE`` strings (the command line), typed like the defaults."""
        base = base or cls()
        fields = {f.name: f for f in attrs.fields(HealthOptions)}
        changes: dict[str, Any] = {}
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in fields:
                raise HiveStoreError(f"bad health option {pair!r}: expected KEY=VALUE with KEY "
                                     f"one of {', '.join(sorted(fields))}")
            default = getattr(base, key)
            try:
                if isinstance(default, bool):
                    changes[key] = raw.strip().lower() in ("1", "true", "yes", "on")
                elif isinstance(default, int):
                    changes[key] = int(raw)
                elif isinstance(default, float):
                    changes[key] = float(raw)
                else:
                    changes[key] = raw.strip()
            except ValueError:
                raise HiveStoreError(f"health option {key}={raw!r} is not a number") from None
        return base.evolve(**changes)


@attrs.frozen
class _RunContext:
    full: bool
    options: HealthOptions | None


_RUN: contextvars.ContextVar[_RunContext | None] = contextvars.ContextVar(
    "hive_store_health_run", default=None)
_CONFIGURED: weakref.WeakKeyDictionary[Any, HealthOptions] = weakref.WeakKeyDictionary()


def configure(store: Store, options: HealthOptions | None = None,
              **changes: Any) -> HealthOptions:
    """Set the thresholds used for ``store`` from now on (``store.health()`` included).

    ``configure(store, wal_warn_bytes=8 << 20)`` changes one; ``configure(store,
    HealthOptions())`` goes back to the defaults. Returns the options now in force.
    """
    base = options or _CONFIGURED.get(store) or HealthOptions()
    result = base.evolve(**changes) if changes else base
    _CONFIGURED[store] = result
    return result


def options_for(store: Store) -> HealthOptions:
    """The thresholds in force for ``store`` in this context."""
    ctx = _RUN.get()
    if ctx is not None and ctx.options is not None:
        return ctx.options
    return _CONFIGURED.get(store) or HealthOptions()


def full_requested() -> bool:
    """Whether the current health run asked for the full (slow) checks."""
    ctx = _RUN.get()
    return bool(ctx and ctx.full)


@contextlib.contextmanager
def run_context(full: bool, options: HealthOptions | None) -> Iterator[None]:
    """Make ``full`` and ``options`` visible to the checks run inside the block."""
    token = _RUN.set(_RunContext(full, options))
    try:
        yield
    finally:
        _RUN.reset(token)


@attrs.frozen
class HealthReport:
    """The outcome of :func:`run`: the worst status and every result, in check order."""

    status: Status
    checks: tuple[HealthResult, ...]

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON form (see the plugin's module docstring)."""
        return {"status": self.status, "checks": [
            {"name": c.name, "status": c.status, "message": c.message,
             "details": c.details, "duration_ms": c.duration_ms} for c in self.checks]}

    @property
    def exit_code(self) -> int:
        """0 ok, 1 warn, 2 fail (``hive-store health``)."""
        return {"ok": 0, "warn": 1, "fail": 2}[self.status]


def run(store: Store, *, full: bool = False, options: HealthOptions | None = None,
        **changes: Any) -> HealthReport:
    """Run every registered health check of ``store`` (this plugin's and other plugins').

    :param full: run ``integrity_check`` instead of ``quick_check`` (reads every page)
    :param options: thresholds for this run (default: :func:`configure`'d or the defaults)
    :param changes: single thresholds to change for this run, e.g. ``wal_warn_bytes=1``
    """
    opts = options or options_for(store)
    if changes:
        opts = opts.evolve(**changes)
    with run_context(full, opts):
        results = store.health()
    return HealthReport(worst(results), tuple(results))


# -- helpers ------------------------------------------------------------------------------------


def _sqlite(store: Any) -> Any | None:
    backend = getattr(store, "backend", None)
    return backend if getattr(backend, "dialect", None) == "sqlite" else None


def _file(backend: Any) -> Path | None:
    return None if backend.memory else Path(backend.path)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def guarded(name: str) -> Callable[[Check], Check]:
    """Turn database errors inside a check into a ``fail`` result named ``name``."""

    def wrap(fn: Check) -> Check:
        @functools.wraps(fn)
        def check(store: Any) -> HealthResult | None:
            try:
                return fn(store)
            except (sqlite3.Error, HiveStoreError, OSError) as exc:
                return HealthResult(name=name, status="fail",
                                    message=f"could not check: {_one_line(exc)}",
                                    details={"error": _one_line(exc)})

        return check

    return wrap


def _pragma(conn: sqlite3.Connection, name: str) -> Any:
    row = conn.execute(f"PRAGMA {name}").fetchone()
    return row[0] if row else None


# -- the checks -------------------------------------------------------------------------------


@guarded("integrity")
def check_integrity(store: Any) -> HealthResult | None:
    """``PRAGMA quick_check`` (``integrity_check`` in a full run): pages, b-trees, indexes."""
    backend = _sqlite(store)
    if backend is None:
        return None
    full = full_requested()
    pragma = "integrity_check" if full else "quick_check"
    limit = max(1, options_for(store).problem_limit)
    with backend.connection() as conn:
        try:
            rows = [str(r[0])
                    for r in conn.execute(f"PRAGMA {pragma}({int(limit)})").fetchall()]
        except sqlite3.DatabaseError as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            damaged = isinstance(code, int) and code & 0xFF in (sqlite3.SQLITE_CORRUPT,
                                                                sqlite3.SQLITE_NOTADB)
            if isinstance(exc, sqlite3.OperationalError) and not damaged:
                raise  # locked, I/O, ...: "could not check" (guarded)
            # Damage bad enough that the check itself stops is a finding, not an accident.
            return HealthResult(name="integrity", status="fail",
                                message=f"{pragma} stopped: the database is damaged ({exc})",
                                details={"pragma": pragma, "problems": [str(exc)]})
    if rows == ["ok"]:
        return HealthResult(name="integrity", status="ok", message=f"{pragma} ok",
                            details={"pragma": pragma})
    problems = [line for row in rows for line in row.splitlines() if line.strip()] or rows
    first = next((p for p in problems if not p.startswith("***")), problems[0])
    return HealthResult(name="integrity", status="fail",
                        message=f"{pragma} found {len(rows)}{'+' if len(rows) >= limit else ''} "
                                f"problem(s): {first}",
                        details={"pragma": pragma, "problems": problems})


@guarded("foreign_keys")
def check_foreign_keys(store: Any) -> HealthResult | None:
    """``PRAGMA foreign_key_check``: rows whose parent row is missing."""
    backend = _sqlite(store)
    if backend is None:
        return None
    limit = max(1, options_for(store).problem_limit)
    examples: list[dict[str, Any]] = []
    per_table: dict[str, int] = {}
    with backend.connection() as conn:
        cursor = conn.execute("PRAGMA foreign_key_check")
        try:
            for table, rowid, parent, fkid in cursor:
                per_table[table] = per_table.get(table, 0) + 1
                if len(examples) < limit:
                    examples.append({"table": table, "rowid": rowid, "parent": parent,
                                     "fkid": fkid})
        finally:
            cursor.close()
    if not per_table:
        return HealthResult(name="foreign_keys", status="ok",
                            message="foreign_key_check found no orphan rows")
    total = sum(per_table.values())
    summary = ", ".join(f"{t}: {n}" for t, n in sorted(per_table.items()))
    return HealthResult(name="foreign_keys", status="fail",
                        message=f"{total} row(s) reference missing parents ({summary})",
                        details={"violations": total, "by_table": per_table,
                                 "examples": examples})


@guarded("pragmas")
def check_pragmas(store: Any) -> HealthResult | None:
    """journal_mode, foreign_keys, synchronous and busy_timeout as actually in force on the
    pooled connections (every idle one, so a connection prepared wrongly is found)."""
    backend = _sqlite(store)
    if backend is None:
        return None
    expected: dict[str, Any] = {
        "journal_mode": "memory" if backend.memory else "wal",
        "foreign_keys": 1,
        "synchronous": {"normal": 1, "full": 2}[backend.options.durability],
        "busy_timeout": int(backend.options.busy_timeout * 1000),
    }
    if getattr(backend, "read_only", False):
        # Opened read-only, the file keeps its own journal mode (a legacy file's rollback
        # journal until hive-store first writes it): reported, not expected.
        del expected["journal_mode"]
    seen: list[dict[str, Any]] = []

    def read(conn: sqlite3.Connection) -> None:
        seen.append({name: _pragma(conn, name) for name in (*expected, "journal_mode")})

    pool = backend.pool
    # The connection this thread would use anyway (its transaction's, or one from the pool),
    # then every other connection that is idle right now — never waiting for a busy one, so
    # the check neither blocks nor counts as a pool timeout.
    with backend.connection() as first:
        read(first)
        if not backend.memory and not backend.in_transaction():
            taken: list[sqlite3.Connection] = []
            try:
                while len(taken) < pool.config.max_size and pool.stats().idle > 0:
                    try:
                        taken.append(pool.checkout(timeout=0.01))
                    except HiveStoreError:
                        break
                for conn in taken:
                    read(conn)
            finally:
                for conn in taken:
                    pool.checkin(conn)
    wrong: dict[str, dict[str, Any]] = {}
    for actual in seen:
        for name, value in expected.items():
            if actual[name] != value:
                wrong.setdefault(name, {"expected": value, "actual": actual[name]})
    if wrong:
        return HealthResult(
            name="pragmas", status="fail",
            message="settings not in force on pooled connections: " + ", ".join(
                f"{k}={v['actual']} (expected {v['expected']})" for k, v in wrong.items()),
            details={"wrong": wrong, "connections_checked": len(seen)})
    return HealthResult(
        name="pragmas", status="ok",
        message=f"journal_mode, foreign_keys, synchronous, busy_timeout as set on "
                f"{len(seen)} pooled connection(s)",
        details={**seen[0], "connections_checked": len(seen)})


@guarded("wal")
def check_wal(store: Any) -> HealthResult | None:
    """The ``-wal`` file's size against the thresholds, and checkpoint starvation: WAL frames
    a passive checkpoint cannot copy back because a reader still uses an old snapshot."""
    backend = _sqlite(store)
    path = _file(backend) if backend is not None else None
    if backend is None or path is None:
        return None
    opts = options_for(store)
    wal_bytes = _size(Path(f"{path}-wal"))
    details: dict[str, Any] = {"wal_bytes": wal_bytes, "warn_bytes": opts.wal_warn_bytes,
                               "fail_bytes": opts.wal_fail_bytes}
    remaining = 0
    if getattr(backend, "read_only", False):
        details["checkpoint"] = "skipped (opened read-only: a checkpoint writes the file)"
    elif opts.wal_probe_checkpoint:
        with backend.connection() as conn:
            if conn.in_transaction:  # inside a write: a checkpoint cannot run here
                details["checkpoint"] = "skipped (inside a transaction)"
            else:
                busy, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                remaining = max(0, log - done) if log >= 0 else 0
                details.update(busy=busy, log_frames=log, checkpointed_frames=done,
                               remaining_frames=remaining)
    problems: list[tuple[Status, str]] = []
    if wal_bytes >= opts.wal_fail_bytes:
        problems.append(("fail", f"WAL is {wal_bytes} bytes (fail at {opts.wal_fail_bytes})"))
    elif wal_bytes >= opts.wal_warn_bytes:
        problems.append(("warn", f"WAL is {wal_bytes} bytes (warn at {opts.wal_warn_bytes}); "
                                 "run `hive-store checkpoint --truncate`"))
    if remaining and remaining >= opts.wal_starvation_frames:
        problems.append(("warn", f"checkpoint starvation: {remaining} WAL frame(s) could not be "
                                 "checkpointed (a reader holds an old snapshot)"))
    details["starved"] = bool(remaining and remaining >= opts.wal_starvation_frames)
    if not problems:
        return HealthResult(name="wal", status="ok",
                            message=f"WAL {wal_bytes} bytes, {remaining} frame(s) pending",
                            details=details)
    status: Status = "fail" if any(s == "fail" for s, _ in problems) else "warn"
    return HealthResult(name="wal", status=status, message="; ".join(m for _, m in problems),
                        details=details)


@guarded("permissions")
def check_permissions(store: Any) -> HealthResult | None:
    """Who can read the database file (it holds license and API keys: other users should
    not), and whether hive-store can write it where it is."""
    backend = _sqlite(store)
    path = _file(backend) if backend is not None else None
    if backend is None or path is None:
        return None
    from hive_store_sqlite import files

    modes = {}
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(OSError):
            modes[name.name] = f"{name.stat().st_mode & 0o777:04o}"
    unwritable = files.unwritable(path)
    details: dict[str, Any] = {"modes": modes, "writable": unwritable is None,
                               "read_only": bool(getattr(backend, "read_only", False)),
                               "immutable": bool(getattr(backend, "immutable", False))}
    problems = []
    exposed = [f"{n} ({m})" for n, m in modes.items() if int(m, 8) & 0o044]
    if exposed:
        problems.append(f"readable by other users: {', '.join(exposed)}; it holds API and "
                        f"license keys: run `chmod 600 {path}`")
    if unwritable is not None:
        details["why_not_writable"] = unwritable
        problems.append(f"cannot be written here ({unwritable}): hive-store reads it "
                        "read-only and refuses writes")
    if problems:
        return HealthResult(name="permissions", status="warn", message="; ".join(problems),
                            details=details)
    return HealthResult(name="permissions", status="ok",
                        message=f"private ({modes.get(path.name, '?')}) and writable",
                        details=details)


@guarded("freelist")
def check_freelist(store: Any) -> HealthResult | None:
    """Free pages (fragmentation): ``freelist_count / page_count`` and whether incremental
    vacuum can give them back (``auto_vacuum = INCREMENTAL``)."""
    backend = _sqlite(store)
    if backend is None or _file(backend) is None:
        return None
    opts = options_for(store)
    with backend.connection() as conn:
        page_size = int(_pragma(conn, "page_size"))
        page_count = int(_pragma(conn, "page_count"))
        free = int(_pragma(conn, "freelist_count"))
        auto_vacuum = int(_pragma(conn, "auto_vacuum"))
    mode = {0: "none", 1: "full", 2: "incremental"}.get(auto_vacuum, str(auto_vacuum))
    ratio = free / page_count if page_count else 0.0
    details = {"page_size": page_size, "page_count": page_count, "freelist_count": free,
               "free_ratio": round(ratio, 4), "free_bytes": free * page_size,
               "auto_vacuum": mode}
    fix = ("run `hive-store vacuum`" if auto_vacuum == 2
           else "run `hive-store vacuum --full` (auto_vacuum is "
                f"{mode}, so incremental vacuum cannot return pages)")
    if ratio >= opts.freelist_warn_ratio and free * page_size >= opts.freelist_min_bytes:
        return HealthResult(name="freelist", status="warn",
                            message=f"{free} of {page_count} pages free ({ratio:.0%}); {fix}",
                            details=details)
    note = "" if auto_vacuum == 2 else f" (auto_vacuum {mode})"
    return HealthResult(name="freelist", status="ok",
                        message=f"{free} of {page_count} pages free ({ratio:.1%}){note}",
                        details=details)


@guarded("disk_space")
def check_disk_space(store: Any) -> HealthResult | None:
    """Free space on the filesystem that holds the database (and its WAL)."""
    backend = _sqlite(store)
    path = _file(backend) if backend is not None else None
    if path is None:
        return None
    opts = options_for(store)
    usage = shutil.disk_usage(path.parent)
    needed = _size(path) + _size(Path(f"{path}-wal"))
    details = {"free_bytes": usage.free, "total_bytes": usage.total, "database_bytes": needed,
               "warn_bytes": opts.disk_warn_bytes, "fail_bytes": opts.disk_fail_bytes}
    free_mib = usage.free / MiB
    if usage.free < opts.disk_fail_bytes:
        return HealthResult(name="disk_space", status="fail",
                            message=f"only {free_mib:.0f} MiB free on the database's "
                                    "filesystem; writes will fail soon", details=details)
    if usage.free < opts.disk_warn_bytes:
        return HealthResult(name="disk_space", status="warn",
                            message=f"{free_mib:.0f} MiB free on the database's filesystem",
                            details=details)
    if usage.free < needed:
        return HealthResult(name="disk_space", status="warn",
                            message=f"{free_mib:.0f} MiB free, less than the database takes "
                                    "(no room for a vacuum or a backup next to it)",
                            details=details)
    return HealthResult(name="disk_space", status="ok",
                        message=f"{free_mib:.0f} MiB free ({usage.free / usage.total:.0%})",
                        details=details)


@guarded("pool")
def check_pool(store: Any) -> HealthResult | None:
    """Connection pool saturation (in use / ``max_size``) and checkouts that waited or timed
    out since the store was opened."""
    backend = _sqlite(store)
    if backend is None:
        return None
    opts = options_for(store)
    stats = attrs.asdict(backend.pool.stats())
    max_size = backend.pool.config.max_size
    in_use, waits, timeouts = stats["in_use"], stats["waits"], stats["timeouts"]
    checkouts = stats["checkouts"]
    saturation = in_use / max_size if max_size else 0.0
    details = {**stats, "max_size": max_size, "saturation": round(saturation, 3),
               "connection_timeout": backend.pool.config.connection_timeout}
    problems: list[str] = []
    if saturation >= opts.pool_saturation_warn:
        problems.append(f"{in_use} of {max_size} connections in use")
    if timeouts:
        problems.append(f"{timeouts} checkout(s) timed out since open")
    if checkouts >= opts.pool_min_checkouts and waits / checkouts >= opts.pool_wait_warn_ratio:
        problems.append(f"{waits} of {checkouts} checkouts had to wait")
    if not problems:
        return HealthResult(name="pool", status="ok",
                            message=f"{in_use} of {max_size} connections in use, no timeouts",
                            details=details)
    # Saturated while callers are being turned away is a failure; either alone is a warning.
    status: Status = "fail" if in_use >= max_size and timeouts else "warn"
    return HealthResult(name="pool", status=status, message="; ".join(problems),
                        details=details)


@guarded("migrations")
def check_migrations(store: Any) -> HealthResult | None:
    """Pending migrations (warn), drift — an applied migration whose file changed since — and
    applied migrations the code does not know (fail)."""
    plugins = store.plugins
    migrator = plugins.migrator(store.backend)
    if migrator is None:
        return None
    from hive_store.migrations import for_dialect

    # the sets as this backend runs them (its dialect's variants, the ones it can run)
    sets = for_dialect(plugins.migration_sets(), getattr(store.backend, "dialect", "sqlite"))
    applied = migrator.applied()
    by_ns = {s.namespace: s for s in sets}
    drift: list[dict[str, Any]] = []
    unknown: list[dict[str, Any]] = []
    unowned = sorted({a.namespace for a in applied} - set(by_ns))
    for record in applied:
        mset = by_ns.get(record.namespace)
        if mset is None:
            continue
        migration = mset.get(record.version)
        if migration is None:
            unknown.append({"namespace": record.namespace, "version": record.version,
                            "name": record.name})
        elif migration.checksum != record.checksum:
            drift.append({"namespace": record.namespace, "version": record.version,
                          "name": record.name, "applied_at": record.applied_at,
                          "recorded": record.checksum[:12], "file": migration.checksum[:12]})
    pending: list[dict[str, Any]] = []
    if not unknown:
        pending = [{"namespace": ns, "version": m.version, "name": m.name}
                   for ns, m in migrator.pending(sets)]
    details = {"applied": len(applied), "pending": pending, "drift": drift,
               "unknown": unknown, "unowned_namespaces": unowned}
    problems: list[str] = []
    if drift:
        problems.append("drift: " + ", ".join(
            f"{d['namespace']} {d['version']:04d} ({d['name']}) changed since applied"
            for d in drift))
    if unknown:
        problems.append("the database has migration(s) this code does not know: " + ", ".join(
            f"{u['namespace']} {u['version']:04d}" for u in unknown))
    if problems:
        return HealthResult(name="migrations", status="fail", message="; ".join(problems),
                            details=details)
    if pending:
        return HealthResult(name="migrations", status="warn",
                            message=f"{len(pending)} pending migration(s): " + ", ".join(
                                f"{p['namespace']} {p['version']:04d}" for p in pending)
                                + "; run `hive-store migrate`", details=details)
    return HealthResult(name="migrations", status="ok",
                        message=f"{len(applied)} applied, none pending, no drift",
                        details=details)


def check_plugins(store: Any) -> HealthResult:
    """Plugins that failed to load, validate or run a hook (``store.plugins.failures``)."""
    failures = list(getattr(store.plugins, "failures", []))
    if not failures:
        return HealthResult(name="plugins", status="ok", message="no plugin failed")
    listed = [{"name": f.name, "distribution": f.distribution, "stage": f.stage,
               "error": f.error.splitlines()[0] if f.error else ""} for f in failures]
    names = ", ".join(sorted({f.name for f in failures}))
    return HealthResult(name="plugins", status=options_for(store).plugin_failure_status,
                        message=f"{len(failures)} plugin failure(s): {names}",
                        details={"failures": listed})


CHECKS: tuple[Check, ...] = (
    check_integrity,
    check_foreign_keys,
    check_pragmas,
    check_wal,
    check_permissions,
    check_freelist,
    check_disk_space,
    check_pool,
    check_migrations,
    check_plugins,
)
"""The checks this plugin registers, in the order they run and are reported."""

