"""Change events: what a committed write did, as plugins (the D1 mirror) see it."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

import attrs


class Op(str, enum.Enum):
    """The kind of write."""

    INSERT = "insert"
    UPDATE = "update"
    UPSERT = "upsert"
    DELETE = "delete"


@attrs.frozen
class Change:
    """One row written by a transaction.

    :ivar op: insert, update, upsert or delete
    :ivar table: the table name
    :ivar key: the row's primary key value
    :ivar entity: the whole row as stored after the write, as a read returns it (``None`` for
        a delete)
    :ivar columns: the columns the write set: ``None`` for an insert or a delete (every
        column); for an update, and an upsert that found the row, only the columns whose
        values changed (never empty: a write that changes nothing records no change)
    """

    op: Op
    table: str
    key: Any
    entity: Any = None
    columns: tuple[str, ...] | None = None


@attrs.frozen
class Batch:
    """Many rows written by one statement (``add_many``): expanded into :class:`Change`
    records only if a listener reads them."""

    op: Op
    table: str
    key_of: Callable[[Any], Any]
    entities: Sequence[Any]

    def expand(self) -> list[Change]:
        op, table, key_of = self.op, self.table, self.key_of
        return [Change(op, table, key_of(e), e) for e in self.entities]


class Changes(Sequence[Change]):
    """The changes of one transaction, as the commit hooks get them: a read-only sequence of
    :class:`Change`, built on first use (a batch insert is one entry until then), plus
    :attr:`tables`, the tables written, which costs nothing per row."""

    __slots__ = ("_entries", "_flat")

    def __init__(self, entries: Sequence[Change | Batch]) -> None:
        self._entries = tuple(entries)
        self._flat: tuple[Change, ...] | None = None

    @property
    def tables(self) -> frozenset[str]:
        """The names of the tables this transaction wrote."""
        return frozenset(e.table for e in self._entries)

    def _changes(self) -> tuple[Change, ...]:
        flat = self._flat
        if flat is None:
            out: list[Change] = []
            for entry in self._entries:
                if isinstance(entry, Batch):
                    out.extend(entry.expand())
                else:
                    out.append(entry)
            flat = self._flat = tuple(out)
        return flat

    def __len__(self) -> int:
        return len(self._changes())

    @overload
    def __getitem__(self, index: int) -> Change: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Change]: ...

    def __getitem__(self, index: int | slice) -> Change | Sequence[Change]:
        return self._changes()[index]

    def __iter__(self) -> Iterator[Change]:
        return iter(self._changes())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Changes):
            return self._changes() == other._changes()
        if isinstance(other, (tuple, list)):
            return list(self._changes()) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Changes({list(self._changes())!r})"
