"""Change events: what a committed write did, as plugins (the D1 mirror) see it."""

from __future__ import annotations

import enum
from typing import Any

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
    :ivar entity: the entity as written (``None`` for a delete)
    """

    op: Op
    table: str
    key: Any
    entity: Any = None
