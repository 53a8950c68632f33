"""hive-store plugin: mirror a store to Cloudflare D1 (push local writes; optionally pull
other devices' writes).

Enable it with three settings, in the environment of every process that writes the database
(read when a store opens)::

    export HIVE_STORE_D1_ACCOUNT_ID=…  HIVE_STORE_D1_DATABASE_ID=…  HIVE_STORE_D1_TOKEN=…
    hive-store d1 push          # first push: creates the remote schema, copies existing rows
    hive-store d1 status

or from code, for one store::

    import hive_store, hive_store_d1
    store = hive_store.open()
    mirror = hive_store_d1.enable(store, hive_store_d1.D1Config(
        account_id="…", database_id="…", token=hive_store_d1.Secret(token)))
    mirror.push(); mirror.verify().ok

Every setting, the token file and the config file are in :mod:`hive_store_d1.config`. Without
them the plugin does nothing at all: no capture, no requests (``hive-store d1 status`` says so).

Design
------
Capture: the ``hive_store_before_commit`` hook, not triggers. The hook runs inside the write
transaction, so an outbox entry exists exactly when the write commits (a rollback takes both
away), and it only runs in processes where mirroring is configured, which is what "off unless
configured" means. Triggers would also capture writes that bypass hive-store (raw SQL, other
programs), but they would live in the database and fire for every program and every process,
configured or not; they cannot see the device id, the hybrid clock or "this row comes from a
pull" without a connection-local SQL function, which the Hive apps writing the same file do not
have (their writes would fail); and a table rebuild silently drops them. The cost of the hook:
writes that bypass the repositories are not captured; ``hive-store d1 verify`` finds them and
``hive-store d1 push --all`` sends every row again.

Outbox: ``hive_store_d1_outbox`` (one entry per written row and transaction) and
``hive_store_d1_clock`` (each row's last clock, for conflicts); repeated changes to a row
coalesce when pushed (the current row is sent once with its newest clock). Push, pull, resume,
conflicts: :mod:`hive_store_d1.mirror`; remote schema and statement sizes:
:mod:`hive_store_d1.schema`; clocks: :mod:`hive_store_d1.clock`; retries and error classes:
:mod:`hive_store_d1.client`.

Conflicts: last writer wins per row by the row clock (a hybrid logical clock, TEXT), ties broken
by device id — in D1 (the upsert's ``WHERE excluded._hlc > t._hlc``) and here (a pulled row
replaces the local one only if its clock is newer). Deletes are tombstones with a clock.
Rows that existed before mirroring was enabled (or were written around hive-store) carry a
base clock older than any real write; a backfill only inserts them, never replacing a row D1
already has.
Caveat: tables keyed by ``INTEGER PRIMARY KEY AUTOINCREMENT`` (activity_log and most metrics)
number rows per database, so two devices writing them make different rows with the same key;
with pull on, the newer one wins and the other is replaced. Give each device its own D1
database, or pull only where one device writes those tables.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from typing import Any

from hive_store.changes import Change
from hive_store.errors import ConfigurationError
from hive_store.health import HealthResult
from hive_store.hookspecs import hookimpl, listens_when
from hive_store.migrations import MigrationSet
from hive_store.store import Store
from hive_store_d1.client import (
    D1AuthError,
    D1Client,
    D1Error,
    D1NotFound,
    D1QuotaExceeded,
    D1RateLimited,
    D1SchemaError,
    D1StatementError,
    D1Unavailable,
)
from hive_store_d1.config import D1Config, Secret
from hive_store_d1.mirror import (
    DeadLetter,
    Mirror,
    PullReport,
    PushReport,
    TableDiff,
    VerifyReport,
)

__all__ = [
    "D1AuthError",
    "D1Client",
    "D1Config",
    "D1Error",
    "D1NotFound",
    "D1QuotaExceeded",
    "D1RateLimited",
    "D1SchemaError",
    "D1StatementError",
    "D1Unavailable",
    "DeadLetter",
    "Mirror",
    "PullReport",
    "PushReport",
    "Secret",
    "TableDiff",
    "VerifyReport",
    "config_error",
    "disable",
    "enable",
    "migration_set",
    "mirror_of",
]

NAMESPACE = "hive_store_d1"
SERVICE = "d1"  # store.d1, astore.d1 while mirroring (the hive_store_services hook)
log = logging.getLogger("hive_store.d1")

_mirrors: weakref.WeakKeyDictionary[Store, Mirror] = weakref.WeakKeyDictionary()
_errors: weakref.WeakKeyDictionary[Store, str] = weakref.WeakKeyDictionary()
_set: MigrationSet | None = None


def migration_set() -> MigrationSet:
    """The plugin's local tables (parsed once)."""
    global _set
    if _set is None:
        _set = MigrationSet.from_package(NAMESPACE, "hive_store_d1.migrations",
                                         depends_on=("hive_store",))
    return _set


def enable(store: Store, config: D1Config | None = None, **options: Any) -> Mirror:
    """Mirror ``store`` to D1 from now on and return the :class:`Mirror`.

    :param config: the settings; default: the environment (:meth:`D1Config.from_env`)
    :param options: passed to :class:`Mirror` (``transport``, ``sleep``, ``rng`` for tests)
    """
    if config is None:
        config = D1Config.from_env()
        if config is None:
            raise ConfigurationError(
                "D1 mirroring is not configured: set HIVE_STORE_D1_ACCOUNT_ID, "
                "HIVE_STORE_D1_DATABASE_ID and HIVE_STORE_D1_TOKEN (or _TOKEN_FILE)")
    mirror = _start(store, config, **options)
    store.attach_service(SERVICE, mirror, replace=True)
    return mirror


def _start(store: Store, config: D1Config, **options: Any) -> Mirror:
    old = _mirrors.pop(store, None)
    if old is not None:
        old.close()
    mirror = Mirror(store, config, **options)
    _mirrors[store] = mirror
    _errors.pop(store, None)
    return mirror


def disable(store: Store) -> None:
    """Stop mirroring ``store`` (the outbox keeps what it holds)."""
    mirror = _mirrors.pop(store, None)
    if mirror is not None:
        if store.services.get(SERVICE) is mirror:
            store.detach_service(SERVICE)
        mirror.close()


def mirror_of(store: Store) -> Mirror:
    """The store's :class:`Mirror`; :class:`hive_store.ConfigurationError` if it has none."""
    mirror = _mirrors.get(store)
    if mirror is None:
        problem = _errors.get(store)
        if problem:
            raise ConfigurationError(f"D1 mirroring is off: {problem}")
        raise ConfigurationError(
            "D1 mirroring is not configured: set HIVE_STORE_D1_ACCOUNT_ID, "
            "HIVE_STORE_D1_DATABASE_ID and HIVE_STORE_D1_TOKEN (or HIVE_STORE_D1_TOKEN_FILE)")
    return mirror


def config_error(store: Store) -> str | None:
    """Why the environment's D1 configuration was not used for ``store`` (if it was not)."""
    return _errors.get(store)


# -- hooks -------------------------------------------------------------------------------------


@hookimpl
def hive_store_supported_dialects() -> Sequence[str]:
    # SQLite only (its outbox triggers and the mirror are SQLite's): skipped, with one line in
    # `plugins --all` and `health`, on other backends.
    return ["sqlite"]


@hookimpl
def hive_store_register_migrations() -> Sequence[MigrationSet]:
    return [migration_set()]


@hookimpl
def hive_store_services(store: Store) -> dict[str, object] | None:
    if getattr(store.backend, "dialect", None) != "sqlite":
        return None
    try:
        config = D1Config.from_env()
        if config is not None:
            return {SERVICE: _start(store, config)}
    except ConfigurationError as exc:
        _errors[store] = str(exc)
        log.warning("D1 mirroring is off for %s: %s", store.url, exc)
    return None


@hookimpl
def hive_store_store_closing(store: Store) -> None:
    disable(store)


@hookimpl
@listens_when(lambda store: store in _mirrors)
def hive_store_before_commit(store: Store, connection: Any, changes: Sequence[Change]) -> None:
    mirror = _mirrors.get(store)
    if mirror is not None:
        mirror.capture(connection, changes)


@hookimpl
def hive_store_register_commands(cli: Any) -> None:
    from hive_store_d1.cli import d1_group

    cli.add_command(d1_group)


@hookimpl
def hive_store_register_health_checks() -> Sequence[Any]:
    return [check_d1_mirror]


BACKLOG_WARN_S = 3600.0


def check_d1_mirror(store: Store) -> HealthResult:
    """D1 mirror: configured?, outbox backlog and age, dead letters, the last push."""
    mirror = _mirrors.get(store)
    if mirror is None:
        problem = _errors.get(store)
        if problem:
            return HealthResult(name="d1_mirror", status="warn",
                                message=f"D1 mirroring is off: {problem}")
        return HealthResult(name="d1_mirror", status="ok", message="D1 mirroring not configured")
    facts = mirror.status()
    outbox, dead, last = facts["outbox"], facts["dead_letter"], facts["last_push"]
    details = {"outbox": outbox, "dead_letter": dead, "last_push": last}
    problems = []
    if dead["push"] or dead["pull"]:
        problems.append(f"{dead['push'] + dead['pull']} rows in the dead-letter table "
                        "(hive-store d1 dead-letter)")
    age = outbox["oldest_age_s"]
    if age is not None and age > BACKLOG_WARN_S:
        problems.append(f"{outbox['rows']} rows waiting, the oldest for {age / 3600:.1f} h")
    if isinstance(last, dict) and not last.get("ok", True):
        problems.append(f"the last push failed: {last.get('error')}")
    if problems:
        return HealthResult(name="d1_mirror", status="warn", message="; ".join(problems),
                            details=details)
    return HealthResult(name="d1_mirror", status="ok",
                        message=f"{outbox['rows']} rows waiting, no dead letters",
                        details=details)
