"""Shared helpers of the memory plugin: argument checks (every bad argument of a public call
is a :class:`hive_store.ValidationError`), SQLite errors classified by their result code, and
small SQL helpers.

Errors are classified by exception type and SQLite result code (``sqlite_errorcode``), never by
their message: SQLite echoes the caller's words in some messages (an FTS5 query ``corrupt: x``
fails with "no such column: corrupt"), so a message can never decide what an error is.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hive_store.errors import (
    Conflict,
    CorruptDatabase,
    DatabaseLocked,
    HiveStoreError,
    IntegrityError,
    PoolTimeout,
    StorageError,
    ValidationError,
)

MAX_VARS = 900
MAX_ID = 2**63 - 1
MAX_TEXT = 100_000  # characters of a question or query the plugin looks at

# -- SQL ------------------------------------------------------------------------------------------


def chunks(items: Sequence[Any], size: int = MAX_VARS) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def marks(n: int) -> str:
    return ", ".join("?" for _ in range(n))


# -- errors ---------------------------------------------------------------------------------------


class IndexingStopped(StorageError):
    """Rows in a row could not be indexed: the indexer stops instead of trying forever."""


_LOCKED = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_CONFLICT = frozenset({sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE,
                       sqlite3.SQLITE_CONSTRAINT_ROWID})
# Errors that stay until someone changes the database or the file: retrying cannot help.
_FOR_GOOD = frozenset({sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB,
                       sqlite3.SQLITE_PERM})
# Errors of one statement's data (a row the index cannot take): found by applying one row at a
# time, and set aside.
_OF_A_ROW = frozenset({sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH,
                       sqlite3.SQLITE_RANGE, sqlite3.SQLITE_FULL, sqlite3.SQLITE_ERROR})


def error_code(exc: BaseException) -> int | None:
    """The primary SQLite result code of ``exc`` — a ``sqlite3.Error``, or a hive_store error
    translated from one (the SQLite backend keeps ``sqlite_errorcode`` on it) — or ``None``."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def translate(exc: sqlite3.Error, what: str) -> HiveStoreError:
    """The hive_store exception for a ``sqlite3`` error the plugin met on its own connection,
    by type and result code (the same classes as the SQLite backend's ``translate_error``),
    keeping ``sqlite_errorcode``/``sqlite_errorname``."""
    extended = getattr(exc, "sqlite_errorcode", None)
    code = error_code(exc)
    text = f"{what}: {exc}"
    error: HiveStoreError
    if isinstance(exc, sqlite3.IntegrityError) or code == sqlite3.SQLITE_CONSTRAINT:
        error = (Conflict if extended in _CONFLICT else IntegrityError)(text)
    elif code in _LOCKED:
        error = DatabaseLocked(text)
    elif code in _DAMAGED:
        error = CorruptDatabase(text)
    else:
        error = StorageError(text)
    vars(error).update(sqlite_errorcode=extended,
                       sqlite_errorname=getattr(exc, "sqlite_errorname", None))
    return error


def is_read_only(exc: BaseException) -> bool:
    return error_code(exc) == sqlite3.SQLITE_READONLY


def for_good(exc: BaseException) -> bool:
    """The database cannot be changed by anyone retrying (read-only, damaged, no permission)."""
    return error_code(exc) in _FOR_GOOD or isinstance(exc, CorruptDatabase)


def of_a_row(exc: BaseException) -> bool:
    """The error may be one row's (a constraint, a value too big, a full key space)."""
    if isinstance(exc, (DatabaseLocked, PoolTimeout)):
        return False
    return error_code(exc) in _OF_A_ROW or isinstance(exc, IntegrityError)


def describe(exc: BaseException, *, limit: int = 300) -> str:
    """``Type: message`` on one line, cut to ``limit`` characters (for logs and health: the
    messages of SQLite and hive_store name tables and constraints, never row values)."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- argument checks ------------------------------------------------------------------------------


def check_text(entity: str, field: str, value: Any, *, empty: bool = True) -> str:
    """A str that SQLite can store (lone surrogates are not Unicode text), at most
    :data:`MAX_TEXT` characters looked at; NUL characters become spaces."""
    if not isinstance(value, str):
        raise ValidationError(entity, [(field, "must be text")])
    if not empty and not value.strip():
        raise ValidationError(entity, [(field, "must be non-empty text")])
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(entity, [(field, "is not valid Unicode text (it holds a lone "
                                               "surrogate)")]) from None
    return value[:MAX_TEXT].replace("\x00", " ")


def check_bool(entity: str, field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(entity, [(field, "must be True or False")])
    return value


def check_limit(entity: str, limit: Any, *, maximum: int = 1000, field: str = "limit") -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= maximum:
        raise ValidationError(entity, [(field, f"must be an integer from 1 to {maximum}")])
    return limit


def check_id(entity: str, field: str, value: Any) -> int:
    """An integer key SQLite can hold."""
    if not isinstance(value, int) or isinstance(value, bool) or not -MAX_ID - 1 <= value <= MAX_ID:
        raise ValidationError(entity, [(field, "must be an integer key (a 64-bit integer)")])
    return int(value)


def check_key(entity: str, field: str, value: Any) -> str:
    """A text primary key (knowledge entries, conversations)."""
    return check_text(entity, field, value)


def check_time(entity: str, field: str, value: Any, *,
               reach: timedelta = timedelta(0)) -> datetime | None:
    """An aware datetime, in UTC, with ``value - reach`` and ``value + reach`` representable
    (the plugin looks that far back)."""
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(entity, [(field, "must be a timezone-aware datetime")])
    try:
        when = value.astimezone(UTC)
        when - reach
        when + reach
        when.timestamp()
    except (OverflowError, ValueError, OSError):
        raise ValidationError(entity, [(field, "is out of the range of times the memory can "
                                               "compare")]) from None
    return when


def check_kinds(entity: str, kinds: Any, known: Sequence[str]) -> list[str]:
    if kinds is None:
        return list(known)
    if isinstance(kinds, str):
        kinds = [kinds]
    if not isinstance(kinds, (list, tuple, set, frozenset)):
        raise ValidationError(entity, [("kinds", "must be a table name or a list of them")])
    out: list[str] = []
    for kind in kinds:
        if not isinstance(kind, str) or kind not in known:
            shown = kind if isinstance(kind, str) else type(kind).__name__
            raise ValidationError(entity, [("kinds", f"{shown!r} is not indexed (choose from "
                                                     f"{', '.join(known)})")])
        if kind not in out:
            out.append(kind)
    if not out:
        raise ValidationError(entity, [("kinds", "name at least one table")])
    return sorted(out, key=list(known).index)


def check_threshold(value: Any) -> float:
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not math.isfinite(float(value)) or not 0.0 < float(value) <= 1.0):
        raise ValidationError("ClusterParams", [("threshold", "must be in (0, 1]")])
    return float(value)


def to_julian(value: datetime | None) -> float | None:
    if value is None:
        return None
    return value.timestamp() / 86400.0 + 2440587.5


def julian_to_datetime(jd: Any) -> datetime | None:
    if not isinstance(jd, (int, float)) or not math.isfinite(jd):
        return None
    try:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=jd - 2440587.5)
    except OverflowError:
        return None


def hours_between(now: datetime, at: float | None) -> float:
    when = julian_to_datetime(at)
    if when is None:
        return 0.0
    return max(0.0, (now - when).total_seconds() / 3600.0)


def age(now: datetime, at: float | None) -> str:
    hours = hours_between(now, at)
    if hours < 1:
        return f"{max(1, round(hours * 60))} min"
    if hours < 48:
        return f"{hours:.0f} h"
    return f"{hours / 24:.0f} days"
