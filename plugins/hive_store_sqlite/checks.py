"""Health checks of the SQLite backend."""

from __future__ import annotations

from typing import Any

from hive_store.health import HealthResult


def check_integrity(store: Any) -> HealthResult | None:
    """``PRAGMA quick_check``: the structure of every page and index."""
    backend = store.backend
    if getattr(backend, "dialect", None) != "sqlite":
        return None
    facts = backend.check_integrity()
    if facts["quick_check"] == "ok":
        return HealthResult(name="integrity", status="ok", message="quick_check ok")
    return HealthResult(name="integrity", status="fail", message="quick_check found damage",
                        details={"problems": facts["quick_check"]})


def check_pragmas(store: Any) -> HealthResult | None:
    """The settings actually in force on a pooled connection."""
    backend = store.backend
    if getattr(backend, "dialect", None) != "sqlite":
        return None
    expected = {
        "journal_mode": "memory" if backend.memory else "wal",
        "foreign_keys": 1,
        "synchronous": {"normal": 1, "full": 2}[backend.options.durability],
        "busy_timeout": int(backend.options.busy_timeout * 1000),
    }
    with backend.connection() as conn:
        actual = {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in expected}
    wrong = {k: {"expected": v, "actual": actual[k]} for k, v in expected.items()
             if actual[k] != v}
    if wrong:
        return HealthResult(name="pragmas", status="fail",
                            message="settings not in force: " + ", ".join(wrong), details=wrong)
    return HealthResult(name="pragmas", status="ok",
                        message="journal_mode, foreign_keys, synchronous, busy_timeout as set",
                        details=actual)
