"""Every error hive_store raises derives from :class:`HiveStoreError`.

The messages are meant for people: they name what went wrong (entity, field, table, file) and
never contain secrets or raw SQL built from user input.
"""

from __future__ import annotations

import reprlib
from collections.abc import Sequence


class HiveStoreError(Exception):
    """Base class of all hive_store errors."""


def excerpt(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: messages quote input, never all of it."""
    text = describe(value, limit) if not isinstance(value, str) else value
    return text if len(text) <= limit else f"{text[:limit - 1]}…"


_reprs = reprlib.Repr()
_reprs.maxlevel = 2
_reprs.maxstring = _reprs.maxother = 80


def describe(value: object, limit: int = 80) -> str:
    """A short ``repr`` of any value a caller passed, safe for messages: nested containers
    are cut (a 50,000-deep list does not recurse), and a ``__repr__`` that fails or is
    slow to build does not replace the error being reported."""
    try:
        text = _reprs.repr(value)
    except Exception:
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else f"{text[:limit - 1]}…"


class ConfigurationError(HiveStoreError):
    """A bad URL, option or environment setting."""


class ValidationError(HiveStoreError, ValueError):
    """An entity value is not acceptable.

    :ivar entity: entity class name (``"Message"``)
    :ivar errors: ``(field, reason)`` pairs, one per bad field
    """

    def __init__(self, entity: str, errors: Sequence[tuple[str, str]]) -> None:
        self.entity = entity
        self.errors = [(excerpt(field, 60), excerpt(reason, 300)) for field, reason in errors]
        detail = "; ".join(f"{field}: {reason}" for field, reason in self.errors)
        super().__init__(f"invalid {entity}: {detail}")

    @property
    def field(self) -> str | None:
        """The first bad field (convenience for the common single-field case)."""
        return self.errors[0][0] if self.errors else None


class RawValueError(ValidationError):
    """A stored value could not be read as its field's type. Raised by strict reads only
    (``hive_store.open(url, strict=True)``); tolerant reads (the default) put a
    :class:`hive_store.RawValue` holding the stored value in the field instead.

    :ivar entity: entity class name; :ivar errors: ``(field, reason)`` pairs;
    :ivar key: the row's primary key value (``None`` if it could not be read either)
    """

    def __init__(self, entity: str, errors: Sequence[tuple[str, str]], key: object = None) -> None:
        super().__init__(entity, errors)
        self.key = key
        detail = "; ".join(f"{field}: {reason}" for field, reason in self.errors)
        self.args = (f"unreadable stored {entity} {describe(key, 60)}: {detail} "
                     "(strict reads; open without strict=True to get RawValue fields)",)


class NotFound(HiveStoreError, LookupError):
    """No row has the requested key."""

    def __init__(self, entity: str, key: object) -> None:
        self.entity = entity
        self.key = key
        super().__init__(f"{entity} {describe(key)} not found")


class IntegrityError(HiveStoreError):
    """A write broke a constraint of the schema (unique, foreign key, not null, check)."""


class Conflict(IntegrityError):
    """A row with the same primary key or unique value already exists."""


class TransactionConflict(Conflict):
    """A transaction collided with a concurrent one and was rolled back as a whole (on
    PostgreSQL: a serialization failure). Nothing of it was written: run it again, e.g. with
    :meth:`hive_store.Store.run_transaction`, which does so itself. SQLite never raises it
    (its one writer waits instead)."""


class StorageError(HiveStoreError):
    """The database could not be read or written (I/O, corruption, locking)."""


class CorruptDatabase(StorageError):
    """The file is not a SQLite database or is damaged."""


class DatabaseLocked(StorageError):
    """Another connection held the write lock for longer than the busy timeout."""


class PoolTimeout(StorageError):
    """No pooled connection became free within ``connection_timeout``."""


class StoreClosed(HiveStoreError):
    """The store was used after :meth:`Store.close`."""


class MigrationError(HiveStoreError):
    """A migration could not be loaded, verified or applied (nothing partial is left behind)."""


class PluginError(HiveStoreError):
    """A plugin failed to load, or implements a hook that does not exist."""
