"""psycopg's errors as hive_store exceptions, classified by SQLSTATE (never by message text).

Messages are built from the diagnostic fields that name schema objects (table, constraint,
column), never from ``DETAIL`` (which quotes the offending key values: an e-mail, a license
key) nor from the primary message of a data exception (which may quote the value).
"""

from __future__ import annotations

from typing import Any

from hive_store.errors import (
    Conflict,
    CorruptDatabase,
    DatabaseLocked,
    HiveStoreError,
    IntegrityError,
    PoolTimeout,
    StorageError,
    StoreClosed,
)

RETRYABLE = frozenset({"40001", "40P01"})
"""serialization_failure and deadlock_detected: the transaction can run again as it was."""

try:  # a subclass the core may not have (hive_store.TransactionConflict)
    from hive_store.errors import TransactionConflict as _TransactionConflict
except ImportError:  # pragma: no cover - the core always has it in this repository
    _TransactionConflict = Conflict  # type: ignore[misc, assignment]


def sqlstate(exc: BaseException) -> str | None:
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else None


def retryable(exc: BaseException) -> bool:
    """A serialization failure or a deadlock: nothing was written, running again may work."""
    return sqlstate(exc) in RETRYABLE


def _diag(exc: BaseException, name: str) -> str:
    diag = getattr(exc, "diag", None)
    value = getattr(diag, name, None) if diag is not None else None
    return value if isinstance(value, str) else ""


def translate_error(exc: BaseException, what: str = "") -> HiveStoreError:
    """The hive_store exception for a psycopg (or psycopg_pool) error; it carries the
    SQLSTATE as ``sqlstate`` (``None`` without one), so that callers can retry by it."""
    err = _translate(exc, what)
    err.sqlstate = sqlstate(exc)  # type: ignore[attr-defined]
    return err


def _translate(exc: BaseException, what: str) -> HiveStoreError:
    import psycopg
    import psycopg_pool

    prefix = f"{what}: " if what else ""
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return PoolTimeout(f"{prefix}no pooled PostgreSQL connection became free in time")
    if isinstance(exc, psycopg_pool.PoolClosed):
        return StoreClosed("the store is closed")
    state = sqlstate(exc)
    table, constraint = _diag(exc, "table_name"), _diag(exc, "constraint_name")
    on = f"{table} ({constraint})" if constraint else table
    if state == "23505":
        return Conflict(f"{prefix}UNIQUE constraint failed: {on}")
    if state == "23503":
        return IntegrityError(f"{prefix}FOREIGN KEY constraint failed: {on}")
    if state == "23502":
        return IntegrityError(f"{prefix}NOT NULL constraint failed: "
                              f"{table}.{_diag(exc, 'column_name')}")
    if state == "23514":
        return IntegrityError(f"{prefix}CHECK constraint failed: {on}")
    if state is not None and state.startswith("23"):
        return IntegrityError(f"{prefix}a constraint failed: {on} (SQLSTATE {state})")
    if state == "40001":
        return _TransactionConflict(
            f"{prefix}a concurrent transaction changed what this one read or wrote "
            "(PostgreSQL serialization failure): nothing of it was written; run it again "
            "(store.run_transaction() does that for you)")
    if state == "40P01":
        return DatabaseLocked(f"{prefix}deadlock with another transaction: nothing of this one "
                              "was written; run it again")
    if state == "55P03":
        return DatabaseLocked(f"{prefix}a row or table stayed locked by another transaction "
                              "for longer than lock_timeout")
    if state == "57014":
        return StorageError(f"{prefix}the statement was cancelled (statement_timeout, or an "
                            "administrator)")
    if state == "25006":
        return StorageError(f"{prefix}the database is open read-only: writes are refused")
    if state in ("42P01", "3F000"):
        return StorageError(f"{prefix}{_diag(exc, 'message_primary')} (is the schema migrated? "
                            "try `hive-store migrate`)")
    if state is not None and state.startswith("22"):
        return StorageError(f"{prefix}the server refused a value of {table or 'a column'} "
                            f"(SQLSTATE {state})")
    if state in ("XX001", "XX002"):
        return CorruptDatabase(f"{prefix}the server reports damaged data (SQLSTATE {state}): "
                               f"{_diag(exc, 'message_primary')}")
    if state is not None and (state.startswith("08") or state.startswith("57P")):
        return StorageError(f"{prefix}lost the connection to the PostgreSQL server "
                            f"(SQLSTATE {state})")
    if state is not None and state.startswith("53"):
        return StorageError(f"{prefix}the server is out of resources: "
                            f"{_diag(exc, 'message_primary')} (SQLSTATE {state})")
    if isinstance(exc, psycopg.DataError) and state is None:
        # Refused by psycopg before anything reached the server (a NUL in text): the
        # repository, which knows the values, names the field (see ``client_value``).
        err = StorageError(f"{prefix}a value cannot be sent to PostgreSQL")
        err.client_value = True  # type: ignore[attr-defined]
        return err
    if isinstance(exc, psycopg.OperationalError) and state is None:
        return StorageError(f"{prefix}lost the connection to the PostgreSQL server")
    if isinstance(exc, psycopg.InterfaceError):
        return StorageError(f"{prefix}the connection cannot be used: {_first_line(exc)}")
    primary = _diag(exc, "message_primary") or type(exc).__name__
    code = f" (SQLSTATE {state})" if state else ""
    return StorageError(f"{prefix}{primary}{code}")


def _first_line(exc: Any) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
