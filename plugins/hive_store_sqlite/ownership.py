"""Who may use a connection: the records the SQLite backend keeps for transactions and
borrowed read connections, the generator check, and the fork check.

A connection is used by one thread at a time. The backend remembers, per thread, the
transaction it is in and the read connection a ``with backend.connection()`` block borrowed
(nested reads in that block share it). Both records can outlive the code that made them when
that code is a generator (or a coroutine) suspended in the middle of its ``with`` block:

* its thread goes on doing other work, which would land in the suspended transaction — and
  be rolled back, after it was acknowledged, when the generator is closed or collected;
* or the generator is resumed in another thread, and two threads share one connection.

So each record keeps its *owner*: the generator or coroutine frame whose ``with`` block made it
(``None`` for plain functions, which cannot be suspended). A record whose owner is not running
on the current thread's stack is not used: writes raise :class:`TransactionSuspended`, reads take
a pooled connection of their own. Context managers written as generators
(``@contextlib.contextmanager``) are seen through: their ``with`` block is the owner.

After ``os.fork()`` a child must not touch the connections it inherited (SQLite forbids it, and
the pool's locks may be held by threads that do not exist in the child): every backend is
marked, and its next use raises :class:`ForkedStore`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import threading
import weakref
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import attrs

from hive_store import ownership as _ownership
from hive_store.errors import StorageError, StoreClosed

if TYPE_CHECKING:
    from hive_store.changes import Batch, Change


class TransactionSuspended(StorageError):
    """The thread's transaction was opened by a generator or coroutine that is suspended (or
    running in another thread): a write now would join it and could be rolled back later."""


class ForkedStore(StoreClosed):
    """A store opened before ``os.fork()`` was used in the child process."""


# Frames of hive-store itself (the façade, the aio façade, this plugin) and of contextlib are
# looked through: the owner is the caller's frame.
_INTERNAL = tuple(sorted({
    str(Path(contextlib.__file__)),
    str(Path(__file__).parent) + os.sep,
    str(Path(sys.modules["hive_store"].__file__ or "").parent) + os.sep,
}))


def owner_frame(depth: int) -> FrameType | None:
    """The generator or coroutine frame whose ``with`` block is opening a transaction or
    borrowing a connection (``depth`` frames above the caller), or ``None`` for a plain
    function (:func:`hive_store.ownership.owner_frame`, shared with other backends)."""
    return _ownership.owner_frame(depth + 1, _INTERNAL)


running_here = _ownership.running_here
describe = _ownership.describe


@attrs.define(eq=False)
class Tx:
    """A write transaction of one thread (see :meth:`SQLiteBackend.transaction`)."""

    conn: sqlite3.Connection
    before: bool = False  # someone listens before commit
    after: bool = False  # someone listens after commit
    depth: int = 0
    changes: list[Change | Batch] = attrs.field(factory=list)
    tid: int = 0
    owners: list[FrameType] = attrs.field(factory=list)  # generator frames owning a level
    ended: bool = False
    cursors: list[sqlite3.Cursor] = attrs.field(factory=list)  # of iterators bound to it

    def usable(self) -> bool:
        """Whether the current thread may use this transaction now."""
        return not self.ended and all(running_here(owner) for owner in self.owners)

    def suspended_error(self) -> TransactionSuspended:
        owner = next((o for o in self.owners if not running_here(o)), None)
        where = describe(owner) if owner is not None else "a generator"
        return TransactionSuspended(
            f"this thread's transaction was opened by {where}, which is suspended or running "
            "in another thread: a write now would join that transaction and be lost if it "
            "rolls back. Finish (or close) the generator first, or open the transaction "
            "outside it")

    def end(self) -> None:
        """Mark the transaction over; iterators opened inside it stop (their next step
        raises)."""
        self.ended = True
        for cursor in self.cursors:
            with contextlib.suppress(sqlite3.Error):
                cursor.close()
        self.cursors.clear()


@attrs.define(eq=False)
class Held:
    """A read connection borrowed by a ``with backend.connection()`` block of one thread."""

    conn: sqlite3.Connection
    owner: FrameType | None
    prev: Held | None
    ended: bool = False

    def usable(self) -> bool:
        return not self.ended and (self.owner is None or running_here(self.owner))


def current_held(local: threading.local) -> Held | None:
    """The innermost borrowed connection this thread may share, if any."""
    held: Held | None = getattr(local, "held", None)
    while held is not None and not held.usable():
        if held.ended:
            local.held = held.prev  # finished elsewhere (a generator closed in another thread)
        held = held.prev
    return held


# -- fork --------------------------------------------------------------------------------------

_BACKENDS: weakref.WeakSet[Any] = weakref.WeakSet()
_ORPHANS: list[Any] = []  # inherited connections a child must never close (nor checkpoint)


def register(backend: Any) -> None:
    """Watch ``backend`` for ``os.fork()``."""
    _BACKENDS.add(backend)


def _after_fork_in_child() -> None:
    for backend in list(_BACKENDS):
        with contextlib.suppress(Exception):
            backend._forked_in_child()


def keep_forever(obj: Any) -> None:
    """Keep an inherited connection referenced so the child never closes it."""
    _ORPHANS.append(obj)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
