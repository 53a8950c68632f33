"""Reads of TEXT that is not valid UTF-8 (another writer's ``CAST(x'ff' AS TEXT)``).

The ``sqlite3`` module refuses to decode such a value and fails the whole read with an
``OperationalError`` that quotes the text and carries no SQLite error code. A read that fails
so is retried with a ``text_factory`` that passes such text on as its bytes (the codec then puts
a :class:`hive_store.RawValue` in the field): the slow path only, since a Python
``text_factory`` costs every other TEXT value of every row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any


def undecodable(exc: BaseException) -> bool:
    """Whether a read failed on a stored TEXT value that is not valid UTF-8 (an
    ``OperationalError`` of the module, which has no SQLite error code)."""
    return isinstance(exc, sqlite3.OperationalError) and not hasattr(exc, "sqlite_errorcode")


def text_or_bytes(data: bytes) -> str | bytes:
    """The ``text_factory`` of a retried read: UTF-8 text as ``str``, anything else as bytes."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def reread(conn: sqlite3.Connection, cursor: sqlite3.Cursor, sql: str, params: Sequence[Any],
           done: int, factory: Callable[[Any, Any], Any] | None) -> sqlite3.Cursor:
    """A cursor that goes on with ``sql`` after its first ``done`` rows, such text as bytes
    (``conn.text_factory`` stays :func:`text_or_bytes` until the caller restores it). A new
    statement: rows committed since the first one started may show."""
    cursor.close()
    conn.text_factory = text_or_bytes
    again = conn.cursor()
    again.row_factory = factory
    again.execute(f"{sql} LIMIT -1 OFFSET ?", [*params, done])
    return again
