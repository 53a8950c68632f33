"""Every error hive_store raises derives from :class:`HiveStoreError`.

The messages are meant for people: they name what went wrong (entity, field, table, file) and
never contain secrets or raw SQL built from user input.
"""

from __future__ import annotations

from collections.abc import Sequence


class HiveStoreError(Exception):
    """Base class of all hive_store errors."""


def excerpt(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: messages quote input, never all of it."""
    text = repr(value) if not isinstance(value, str) else value
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


class NotFound(HiveStoreError, LookupError):
    """No row has the requested key."""

    def __init__(self, entity: str, key: object) -> None:
        self.entity = entity
        self.key = key
        super().__init__(f"{entity} {excerpt(repr(key))} not found")


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
