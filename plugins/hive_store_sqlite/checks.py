"""Health checks of the SQLite backend: moved to the health plugin.

``check_integrity`` and ``check_pragmas`` (and the other SQLite checks) live in
:mod:`hive_store_health.checks`, which registers them through
``hive_store_register_health_checks``. This module stays so that old imports fail with a
clear message instead of an ImportError deep inside a plugin.
"""

from __future__ import annotations

from typing import Any

_MOVED = ("check_integrity", "check_pragmas")


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from hive_store_health import checks

        return getattr(checks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
