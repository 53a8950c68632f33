"""Who owns a transaction: the generator (or coroutine) frame whose ``with`` block opened it.

A transaction belongs to the thread that opened it. When the code that opened it is a
generator or a coroutine suspended in the middle of its ``with`` block, its thread goes on
doing other work — which must not land in the suspended transaction (it would be rolled back,
after it was acknowledged, if the generator is closed) — and the generator may be resumed in
another thread, which must not use the first thread's transaction. Backends keep the owner
frame of each transaction level and check, before using a transaction, that its owners are
running on the current thread's stack. Plain functions cannot be suspended: they own nothing
(``None``), and cost nothing.

Backend-neutral helpers, shared by the SQLite and PostgreSQL backends.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Sequence
from types import CodeType, FrameType

_SUSPENDABLE = (inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
                | inspect.CO_ITERABLE_COROUTINE)
_CM_ENTER: frozenset[CodeType] = frozenset({
    contextlib._GeneratorContextManager.__enter__.__code__,
    contextlib._AsyncGeneratorContextManager.__aenter__.__code__,
})


def owner_frame(depth: int, internal: Sequence[str]) -> FrameType | None:
    """The generator or coroutine frame whose ``with`` block is opening a transaction or
    borrowing a connection (``depth`` frames above the caller), or ``None`` when that code is
    a plain function. Frames of files under ``internal`` (the library's own, contextlib's) are
    looked through: the owner is their caller. Context managers written as generators
    (``@contextlib.contextmanager``) are seen through too: their ``with`` block owns it."""
    prefixes = tuple(internal)
    frame: FrameType | None = sys._getframe(depth + 1)
    while frame is not None:
        code = frame.f_code
        if code.co_filename.startswith(prefixes):
            frame = frame.f_back
            continue
        if not code.co_flags & _SUSPENDABLE:
            return None
        back = frame.f_back
        if back is not None and back.f_code in _CM_ENTER:
            frame = back.f_back  # a @contextmanager generator: its with-block owns it
            continue
        return frame
    return None


def running_here(owner: FrameType) -> bool:
    """Whether ``owner`` is running on the current thread's stack (a suspended generator's
    frame is on no stack; one resumed by another thread is on that thread's)."""
    if owner.f_back is None:
        return False
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame is owner:
            return True
        frame = frame.f_back
    return False


def on_this_stack(frames: dict[int, object]) -> object | None:
    """The value of ``frames`` (keyed by ``id(frame)``) for the innermost of those frames
    running on the current thread's stack, if any."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        found = frames.get(id(frame))
        if found is not None:
            return found
        frame = frame.f_back
    return None


def describe(owner: FrameType) -> str:
    code = owner.f_code
    return f"{code.co_name}() ({code.co_filename}:{owner.f_lineno})"
