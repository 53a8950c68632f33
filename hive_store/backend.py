"""What a backend plugin provides: the typed protocols between the façade and storage.

Data flows one way: :class:`hive_store.Store` → :class:`Repository` → :class:`Backend` → the
database. The core never imports a backend; a plugin returns one from the
``hive_store_backend`` hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from hive_store._converters import EntityCodec
    from hive_store.changes import Change
    from hive_store.url import StoreURL

E = TypeVar("E")

OrderBy = str | Sequence[str] | None
"""``"field"`` ascending, ``"-field"`` descending, or a sequence of those."""

LOOKUPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "like", "contains", "isnull")
"""Filter suffixes accepted by ``find``/``count``/``iter``: ``created_at__ge=...``,
``stage__in=[...]``, ``content__contains="text"``, ``end_time__isnull=True``. A bare field name
means equality (``None`` means ``IS NULL``). Values are always bound, never put in SQL text."""


class Repository(Protocol[E]):
    """Typed access to one entity's table. Every method is atomic; inside
    :meth:`hive_store.Store.transaction` it joins that transaction.

    Values follow :mod:`hive_store.values` (the codec does the work): writes bind the codec's
    checked SQL values and return the entity as stored (``codec.dump``); reads build entities
    with the codec, which never fails on a stored value (a :class:`hive_store.RawValue` in the
    field, or :class:`hive_store.RawValueError` for a strict codec); ``update`` and ``upsert``
    of an existing row write only the columns ``codec.changed`` names; filters and ordering on
    timestamp, date and boolean fields compare by meaning (the comparison keys of
    :func:`hive_store.values.timestamp_key` and friends); keys chosen in AUTOINCREMENT tables
    are at most :data:`hive_store.values.MAX_AUTO_ID`.

    Optional: ``get_nowait(key) -> E | None``, :meth:`get` if it can run at once without
    waiting (for a connection, a lock) and ``None`` otherwise; :mod:`hive_store.aio` serves
    point reads on the event loop through it when a repository has it.
    """

    def get(self, key: Any) -> E:
        """The entity with primary key ``key``; raises :class:`hive_store.NotFound`."""
        ...

    def get_many(self, keys: Iterable[Any]) -> list[E]:
        """The entities with these keys, in the order given; missing keys are skipped."""
        ...

    def add(self, entity: E) -> E:
        """Insert; returns the stored entity (with its key if SQLite assigned it).
        Raises :class:`hive_store.Conflict` if the key exists."""
        ...

    def add_many(self, entities: Iterable[E]) -> list[E]:
        """Insert many in one transaction (all or nothing)."""
        ...

    def upsert(self, entity: E) -> E:
        """Insert, or write over the row with the same key the columns whose values differ
        from the stored ones (nothing if none does); returns the row as stored."""
        ...

    def update(self, entity_or_key: Any, /, **changes: Any) -> E:
        """Write an entity (evolved with ``changes``) over the row with its key; or, given a
        key, apply ``changes`` to the stored row. Only the columns whose values differ from
        the stored ones are written (the others keep their stored bytes); returns the row as
        stored. Raises :class:`hive_store.NotFound`."""
        ...

    def delete(self, entity_or_key: Any) -> bool:
        """Delete the row; ``False`` if there was none."""
        ...

    def find(self, *, order_by: OrderBy = None, limit: int | None = None,
             offset: int = 0, **filters: Any) -> list[E]:
        """Entities matching ``filters`` (see :data:`LOOKUPS`)."""
        ...

    def find_one(self, *, order_by: OrderBy = None, **filters: Any) -> E | None:
        """The first match or ``None``."""
        ...

    def count(self, **filters: Any) -> int:
        """How many rows match ``filters``."""
        ...

    def iter(self, *, order_by: OrderBy = None, batch_size: int = 1000,
             **filters: Any) -> Iterator[E]:
        """Stream matching entities in constant memory (``batch_size`` rows at a time)."""
        ...

    def search(self, text: str, *, fields: Sequence[str], limit: int | None = None,
               order_by: OrderBy = None) -> list[E]:
        """Case-insensitive substring search of ``text`` over the given text fields."""
        ...


class CommitListener(Protocol):
    """Receives a transaction's changes (the store forwards them to the plugin hooks)."""

    def before_commit(self, connection: Any, changes: Sequence[Change]) -> None: ...

    def after_commit(self, changes: Sequence[Change]) -> None: ...

    def listening(self) -> tuple[bool, bool]:
        """Whether anyone listens (before commit, after commit). Backends build
        :class:`Change` records only when someone does, and may commit a single-statement
        write without an explicit transaction when nobody listens before commit."""
        ...


class Backend(Protocol):
    """A storage backend, as returned by the ``hive_store_backend`` hook."""

    url: StoreURL
    dialect: str
    """The SQL dialect of the native connections (``"sqlite"``); migrators check it."""
    read_only: bool
    """Opened with ``read_only=True``: every write raises :class:`hive_store.StorageError`,
    and nothing (migrations, plugins, the backend itself) may change the database."""

    def repository(self, codec: EntityCodec[E]) -> Repository[E]:
        """A repository for the entity described by ``codec``."""
        ...

    def transaction(self) -> AbstractContextManager[Any]:
        """A write transaction for the calling thread; nested calls are savepoints.

        Optional companion: ``run_transaction(fn) -> result`` runs ``fn()`` in a transaction
        and may run it again when the transaction collides with a concurrent one (a backend
        whose transactions can fail that way: PostgreSQL); :meth:`Store.run_transaction` uses
        it when present, and a plain ``transaction()`` block otherwise.
        """
        ...

    def in_transaction(self) -> bool:
        """Whether the calling thread is inside :meth:`transaction`."""
        ...

    def set_commit_listener(self, listener: CommitListener | None) -> None:
        """Where to send each transaction's changes."""
        ...

    def record(self, change: Change) -> None:
        """Add a change to the calling thread's transaction (used by repositories); ignored
        when no commit listener listens."""
        ...

    def recording(self) -> bool:
        """Whether :meth:`record` keeps changes (someone listens), so callers can skip
        building them."""
        ...

    def connection(self) -> AbstractContextManager[Any]:
        """A native connection for reads (the transaction's own inside a transaction)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Facts for ``hive-store status``: path, size, settings, pool statistics."""
        ...

    def check_integrity(self, *, full: bool = False) -> dict[str, Any]:
        """A quick (or full) integrity check and the settings in force; ``"ok"`` is a bool."""
        ...

    def table_counts(self) -> dict[str, int]:
        """Row counts of every table."""
        ...

    def close(self) -> None:
        """Close every connection; further use raises :class:`hive_store.StoreClosed`."""
        ...


BackendFactory = Callable[..., Backend]
