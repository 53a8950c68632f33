"""hive-store plugin: health checks, statistics and maintenance of SQLite stores.

Registered under the ``hive_store`` entry-point group (``health``) like any third-party
plugin; it uses only the core's hooks.

Health
======

Checks registered through ``hive_store_register_health_checks`` (so ``store.health()`` runs
them, along with other plugins' checks), in this order, each a
:class:`hive_store.health.HealthResult` named:

``integrity``     ``PRAGMA quick_check`` (``integrity_check`` with ``full``) — fail on damage
``foreign_keys``  ``PRAGMA foreign_key_check`` — fail on rows with a missing parent
``pragmas``       journal_mode, foreign_keys, synchronous, busy_timeout on every idle pooled
                  connection — fail if one differs from the store's options
``wal``           ``-wal`` size (warn/fail thresholds) and checkpoint starvation (frames a
                  ``wal_checkpoint(PASSIVE)`` could not copy back) — warn
``permissions``   the file (or its ``-wal``/``-shm``) readable by other users, or not writable
                  where it is (opened read-only) — warn
``freelist``      free pages / all pages, and whether ``auto_vacuum`` is INCREMENTAL — warn
``disk_space``    free space on the database's filesystem — warn/fail
``pool``          connections in use / ``max_size``, waits, timeouts — warn; fail when
                  saturated while checkouts time out
``migrations``    pending (warn), drift and unknown applied migrations (fail)
``plugins``       ``store.plugins.failures`` — warn (option ``plugin_failure_status``)

File checks (``wal``, ``freelist``, ``disk_space``) do not apply to ``:memory:`` stores and
give no result there. A D1 outbox/last-push check belongs to the D1 plugin, which is not
there yet: it would register it through the same hook. Thresholds: :class:`HealthOptions`,
set per store with :func:`configure` or per run: ``run(store, full=True,
wal_warn_bytes=...)``; on the command line ``-o KEY=VALUE``.

``hive-store health [--full] [--json] [-o KEY=VALUE ...]`` exits 0 (ok), 1 (warn) or 2 (fail);
it opens the database read-only (nothing is migrated, adopted, checkpointed or indexed: the
file stays byte-identical) and reports a database it cannot open as one failed check named
``open``. Its JSON (stable; keys are only ever added)::

    {
      "status": "ok" | "warn" | "fail",          # the worst of the checks
      "checks": [
        {
          "name": "integrity",                    # see the table above; plugins add more
          "status": "ok" | "warn" | "fail",
          "message": "quick_check ok",            # one line for people
          "details": {...},                       # check-specific facts (JSON values)
          "duration_ms": 1.234
        },
        ...
      ]
    }

Statistics
==========

:func:`stats` / ``hive-store stats [--since DATE] [--until DATE] [--json] [--plot FILE.png]``:
sizes, page and freelist counts, row counts per entity, and conversations, tokens and cost
per UTC day, per model and per stage over the window; sources and indexes are described in
:mod:`hive_store_health.stats`. This plugin's migration set (namespace ``hive_store_health``)
adds the index the per-day queries need.

Maintenance
===========

:class:`Maintenance` (``vacuum``, ``optimize``, ``checkpoint``, ``backup``), :func:`restore`
and the commands ``vacuum [--full]``, ``optimize [--analyze]``, ``checkpoint [--truncate]``,
``backup DEST [--force]`` and ``restore SRC``. :func:`start_maintenance` starts the optional
background thread; it stops when the store closes.

Core changes that would simplify this plugin (not made here): ``Store.health(full=False)``
passing ``full`` to checks (instead of :func:`run`'s context variable), ``Store.stats()`` over
a ``hive_store_stats`` hook, and ``hive_store.open(..., maintenance=True)`` handing
non-backend options to plugins (instead of :func:`start_maintenance`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hive_store.hookspecs import hookimpl
from hive_store.migrations import MigrationSet
from hive_store_health.checks import (
    CHECKS,
    HealthOptions,
    HealthReport,
    configure,
    full_requested,
    options_for,
    run,
)
from hive_store_health.maintenance import (
    Maintenance,
    MaintenanceError,
    MaintenanceHandle,
    restore,
    start_maintenance,
    stop_maintenance,
)
from hive_store_health.stats import (
    PlotUnavailable,
    migration_set,
    plot,
    query_plans,
    stats,
)

__all__ = [
    "CHECKS",
    "HealthOptions",
    "HealthReport",
    "Maintenance",
    "MaintenanceError",
    "MaintenanceHandle",
    "PlotUnavailable",
    "configure",
    "full_requested",
    "migration_set",
    "options_for",
    "plot",
    "query_plans",
    "restore",
    "run",
    "start_maintenance",
    "stats",
    "stop_maintenance",
]


@hookimpl
def hive_store_register_health_checks() -> Sequence[Any]:
    return list(CHECKS)


@hookimpl
def hive_store_register_migrations() -> Sequence[MigrationSet]:
    return [migration_set()]


@hookimpl
def hive_store_register_commands(cli: Any) -> None:
    from hive_store_health.cli import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


@hookimpl
def hive_store_store_closing(store: Any) -> None:
    # Background maintenance threads end (joined) before the backend closes.
    stop_maintenance(store)
