"""Options of SQLite stores: keyword arguments of :func:`hive_store.open` and URL query
parameters (``sqlite:///x.db?max_size=4``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs

from hive_store.errors import ConfigurationError
from hive_store.url import StoreURL
from hive_store_sqlite.pool import PoolConfig

WaitListener = Callable[[float | None], None]
"""``on_wait(seconds)`` while a write waits for another process's lock (about once a second,
from the first second on), then ``on_wait(None)`` when the wait is over."""


@attrs.frozen
class SQLiteOptions:
    """Options of :func:`hive_store.open` for ``sqlite:`` URLs."""

    pool: PoolConfig = PoolConfig()
    busy_timeout: float = 30.0
    durability: str = "normal"  # "normal" (synchronous=NORMAL) or "full" (synchronous=FULL)
    cache_size_kib: int = 32000
    mmap_size: int = 268435456
    wal_autocheckpoint: int = 1000
    cached_statements: int = 256
    read_only: bool = False  # SQLite's mode=ro: no file created, no journal-mode switch, no writes
    on_wait: WaitListener | None = None  # see WaitListener; keyword option only


def parse_options(url: StoreURL, options: dict[str, Any]) -> SQLiteOptions:
    """Build :class:`SQLiteOptions` from keyword options and URL query parameters."""
    if "on_wait" in url.query:
        raise ConfigurationError("on_wait is a keyword option of hive_store.open (a function), "
                                 "not a URL option")
    merged: dict[str, Any] = {**url.query, **options}
    pool_fields = {f.name: f for f in attrs.fields(PoolConfig)}
    own_fields = {f.name: f for f in attrs.fields(SQLiteOptions) if f.name != "pool"}
    pool_kw: dict[str, Any] = {}
    own_kw: dict[str, Any] = {}
    for key, value in merged.items():
        if key in pool_fields:
            pool_kw[key] = _coerce(key, value, pool_fields[key].default)
        elif key in own_fields:
            own_kw[key] = _coerce(key, value, own_fields[key].default)
        else:
            known = ", ".join(sorted([*pool_fields, *own_fields]))
            raise ConfigurationError(f"unknown sqlite option {key!r} (known: {known})")
    if own_kw.get("on_wait") is not None and not callable(own_kw["on_wait"]):
        raise ConfigurationError("on_wait must be a function taking the seconds waited (or None)")
    if own_kw.get("durability", "normal") not in ("normal", "full"):
        raise ConfigurationError("durability must be 'normal' or 'full'")
    busy = own_kw.get("busy_timeout", 1.0)
    if (not isinstance(busy, (int, float)) or isinstance(busy, bool) or not math.isfinite(busy)
            or not 0 < busy <= 86400):
        raise ConfigurationError("busy_timeout must be a number of seconds from 0 to 86400")
    for key in ("cache_size_kib", "mmap_size", "wal_autocheckpoint", "cached_statements"):
        value = own_kw.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**40:
            raise ConfigurationError(f"{key} must be a whole number >= 0")
    return SQLiteOptions(pool=PoolConfig(**pool_kw), **own_kw)


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Options from a URL query arrive as text; give them the default's type."""
    if not isinstance(value, str) or isinstance(default, str):
        return value
    if value.lower() in ("none", "null", ""):
        return None
    try:
        if isinstance(default, bool):
            return value.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(value)
        return float(value)
    except ValueError:
        raise ConfigurationError(f"option {key}={value!r} is not a number") from None
