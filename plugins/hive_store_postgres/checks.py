"""Health checks of PostgreSQL stores (no result on other backends).

``postgresql``  the server answers: version, whether it is a standby, connections in use of
                ``max_connections`` (warn above 90 %), the settings in force
``integrity``   ``backend.check_integrity()`` (``full``: every table read through, B-tree
                indexes checked with ``amcheck`` when installed)
``pool``        connections in use / ``max_size``, checkouts that timed out (warn)
"""

from __future__ import annotations

from typing import Any

from hive_store.errors import HiveStoreError
from hive_store.health import HealthResult


def _pg(store: Any) -> Any | None:
    backend = getattr(store, "backend", None)
    return backend if getattr(backend, "dialect", None) == "postgresql" else None


def check_postgresql(store: Any) -> HealthResult | None:
    backend = _pg(store)
    if backend is None:
        return None
    try:
        with backend.connection() as conn:
            version, standby, used, limit = conn.execute(
                "SELECT current_setting('server_version'), pg_is_in_recovery(), "
                "(SELECT count(*) FROM pg_stat_activity), "
                "current_setting('max_connections')::int").fetchone()
    except HiveStoreError as exc:
        return HealthResult(name="postgresql", status="fail", message=str(exc))
    except Exception as exc:
        from hive_store_postgres.errors import translate_error

        return HealthResult(name="postgresql", status="fail",
                            message=str(translate_error(exc, "asking the server")))
    details = {"server_version": version, "in_recovery": standby, "connections": used,
               "max_connections": limit}
    if standby and not backend.read_only:
        return HealthResult(name="postgresql", status="fail", details=details,
                            message=f"PostgreSQL {version} is a read-only standby")
    return HealthResult(name="postgresql", status="warn" if used > 0.9 * limit else "ok",
                        details=details,
                        message=f"PostgreSQL {version}, {used} of {limit} connections in use")


def check_integrity(store: Any) -> HealthResult | None:
    backend = _pg(store)
    if backend is None:
        return None
    try:
        from hive_store_health import full_requested

        full = bool(full_requested())
    except ImportError:  # the health plugin is not installed: a quick check
        full = False
    facts = backend.check_integrity(full=full)
    key = "integrity_check" if full else "quick_check"
    if facts["ok"]:
        what = (f"{facts.get('tables_read', 0)} tables read, indexes: "
                f"{facts.get('indexes_checked')}" if full else "the server answers")
        return HealthResult(name="integrity", status="ok", message=f"{key} ok ({what})",
                            details=facts)
    return HealthResult(name="integrity", status="fail", details=facts,
                        message="; ".join(map(str, facts[key])))


def check_pool(store: Any) -> HealthResult | None:
    backend = _pg(store)
    if backend is None:
        return None
    stats = backend.pool_stats()
    size = backend.options.max_size
    details = {**stats, "max_size": size}
    if stats["timeouts"]:
        return HealthResult(name="pool", status="warn", details=details,
                            message=f"{stats['timeouts']} checkouts timed out "
                                    f"(max_size {size}; raise it or the server's limit)")
    return HealthResult(name="pool", status="ok", details=details,
                        message=f"{stats['in_use']} of {size} connections in use")


CHECKS = (check_postgresql, check_integrity, check_pool)
