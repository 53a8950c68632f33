"""asyncio façade: the same API as :class:`hive_store.Store`, as coroutines.

Database work runs in worker threads, with one exception: a point read (``get``) runs on
the event loop itself when a pooled connection is idle at that moment (never waiting for
one, never opening one) and the task is not inside a transaction. A primary-key lookup in a
WAL database does not wait for writers and takes ~10 µs, while handing a call to a thread and
back took ~85 µs per call on the 2-core dev VM (``bench/run.py``: ``async_get`` 0.99 of sync
inline, ``async_get_threads`` 0.10 through threads), much of it wake-ups and callbacks on the
loop's own thread. Pass ``inline_reads=False`` to :func:`open` to send every call to a thread
(say, for a database on a slow network file system, where a cold page can take milliseconds).

A transaction (``async with store.transaction():``) runs all its calls on one dedicated
thread, because a SQLite transaction belongs to one connection and one thread.

Cancellation: a cancelled task never leaves a transaction half-applied. A single call runs to
completion in its thread (committed whole or not at all) even if the awaiting task is
cancelled; inside ``async with store.transaction()`` the cancellation propagates out of the
block and the transaction is rolled back.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

from hive_store.backend import Repository
from hive_store.store import ConsensusRun, StageOutput, Store
from hive_store.store import open as open_sync

E = TypeVar("E")
T = TypeVar("T")

_tx_executor: contextvars.ContextVar[ThreadPoolExecutor | None] = contextvars.ContextVar(
    "hive_store_tx_executor", default=None
)


class AsyncRepository(Generic[E]):
    """Coroutine versions of :class:`hive_store.backend.Repository` methods."""

    def __init__(self, store: AsyncStore, repo: Repository[E]) -> None:
        self._store = store
        self._repo = repo
        self._nowait: Callable[[Any], E | None] | None = getattr(repo, "get_nowait", None)

    async def get(self, key: Any) -> E:
        nowait = self._nowait
        if nowait is not None and self._store.inline_reads and _tx_executor.get() is None:
            found = nowait(key)
            if found is not None:
                return found
        return await self._store._run(self._repo.get, key)

    async def get_many(self, keys: Sequence[Any]) -> list[E]:
        return await self._store._run(self._repo.get_many, list(keys))

    async def add(self, entity: E) -> E:
        return await self._store._run(self._repo.add, entity)

    async def add_many(self, entities: Sequence[E]) -> list[E]:
        return await self._store._run(self._repo.add_many, list(entities))

    async def upsert(self, entity: E) -> E:
        return await self._store._run(self._repo.upsert, entity)

    async def update(self, entity_or_key: Any, /, **changes: Any) -> E:
        return await self._store._run(functools.partial(self._repo.update, entity_or_key,
                                                        **changes))

    async def delete(self, entity_or_key: Any) -> bool:
        return await self._store._run(self._repo.delete, entity_or_key)

    async def find(self, **kwargs: Any) -> list[E]:
        return await self._store._run(functools.partial(self._repo.find, **kwargs))

    async def find_one(self, **kwargs: Any) -> E | None:
        return await self._store._run(functools.partial(self._repo.find_one, **kwargs))

    async def count(self, **filters: Any) -> int:
        return await self._store._run(functools.partial(self._repo.count, **filters))

    async def search(self, text: str, **kwargs: Any) -> list[E]:
        return await self._store._run(functools.partial(self._repo.search, text, **kwargs))

    async def iter(self, *, batch_size: int = 1000, **kwargs: Any) -> AsyncIterator[E]:
        """Stream entities; each batch is fetched in a worker thread."""
        iterator = self._repo.iter(batch_size=batch_size, **kwargs)
        sentinel = object()

        def next_batch() -> list[Any]:
            batch = []
            for _ in range(batch_size):
                item = next(iterator, sentinel)
                if item is sentinel:
                    break
                batch.append(item)
            return batch

        try:
            while batch := await self._store._run(next_batch):
                for item in batch:
                    yield item
        finally:
            await self._store._run(iterator.close)  # type: ignore[attr-defined]


class AsyncStore:
    """An asyncio store; get one with :func:`open`. Repositories are attributes as on
    :class:`hive_store.Store` (``await store.messages.get(id)``)."""

    def __init__(self, store: Store, *, workers: int = 4, inline_reads: bool = True) -> None:
        self.sync = store
        self.inline_reads = inline_reads
        """Serve ``get`` on the event loop when it cannot block (see the module docstring)."""
        self._executor = ThreadPoolExecutor(max_workers=workers,
                                            thread_name_prefix="hive-store-aio")
        self._repos: dict[str, AsyncRepository[Any]] = {}

    def __getattr__(self, name: str) -> AsyncRepository[Any]:
        if name.startswith("_") or name not in self.sync.entities:
            raise AttributeError(f"AsyncStore has no attribute {name!r}")
        repo = self._repos.get(name)
        if repo is None:
            repo = self._repos[name] = AsyncRepository(self, self.sync.__dict__[name])
        return repo

    def repo(self, entity: type[E]) -> AsyncRepository[E]:
        table = self.sync.codec(entity).table
        repo: AsyncRepository[E] = getattr(self, table)
        return repo

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        executor = _tx_executor.get() or self._executor
        future = loop.run_in_executor(executor, fn, *args)
        # shield: if the caller is cancelled the thread still finishes the call (atomic).
        return await asyncio.shield(future)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncStore]:
        """One atomic write over every call in the block (runs on a dedicated thread)."""
        outer = _tx_executor.get()
        if outer is not None:  # nested: a savepoint on the same thread
            cm = self.sync.transaction()
            await self._run(cm.__enter__)
            try:
                yield self
            except BaseException as exc:
                await _finish(self._run(cm.__exit__, type(exc), exc, exc.__traceback__))
                raise
            await self._run(cm.__exit__, None, None, None)
            return
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hive-store-tx")
        token = _tx_executor.set(executor)
        try:
            cm = self.sync.transaction()
            await self._run(cm.__enter__)
            try:
                yield self
            except BaseException as exc:
                await _finish(self._run(cm.__exit__, type(exc), exc, exc.__traceback__))
                raise
            await self._run(cm.__exit__, None, None, None)
        finally:
            _tx_executor.reset(token)
            executor.shutdown(wait=False)

    async def record_consensus(self, question: str, stages: Sequence[StageOutput],
                               **kwargs: Any) -> ConsensusRun:
        return await self._run(functools.partial(self.sync.record_consensus, question, stages,
                                                 **kwargs))

    async def update_conversation_metrics(self, conversation_id: str, **kwargs: Any) -> Any:
        return await self._run(functools.partial(self.sync.update_conversation_metrics,
                                                 conversation_id, **kwargs))

    async def complete_conversation(self, conversation_id: str, **kwargs: Any) -> Any:
        return await self._run(functools.partial(self.sync.complete_conversation,
                                                 conversation_id, **kwargs))

    async def search_knowledge(self, text: str, **kwargs: Any) -> Any:
        return await self._run(functools.partial(self.sync.search_knowledge, text, **kwargs))

    async def log_activity(self, event_type: Any, **fields: Any) -> Any:
        return await self._run(functools.partial(self.sync.log_activity, event_type, **fields))

    async def recent_activity(self, **kwargs: Any) -> Any:
        return await self._run(functools.partial(self.sync.recent_activity, **kwargs))

    async def status(self) -> dict[str, Any]:
        return await self._run(self.sync.status)

    async def close(self) -> None:
        """Close the store; waits for calls in flight."""
        await asyncio.get_running_loop().run_in_executor(None, self._shutdown)

    def _shutdown(self) -> None:
        self._executor.shutdown(wait=True)
        self.sync.close()

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _finish(awaitable: Any) -> None:
    """Await cleanup even if the task is being cancelled again meanwhile."""
    task = asyncio.ensure_future(awaitable)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


async def open(url: str | None = None, *, workers: int = 4, inline_reads: bool = True,
               **kwargs: Any) -> AsyncStore:
    """Open an :class:`AsyncStore` (other arguments as :func:`hive_store.open`): ``workers``
    threads run the calls; ``inline_reads`` see the module docstring."""
    loop = asyncio.get_running_loop()
    store = await loop.run_in_executor(None, functools.partial(open_sync, url, **kwargs))
    return AsyncStore(store, workers=workers, inline_reads=inline_reads)
