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

:class:`AsyncStore` has everything :class:`hive_store.Store` has (``tests/test_aio.py`` compares
their public surfaces): repositories, domain operations and facts as coroutines, and the services
plugins attach (``await store.memory.search("wal")``): a plugin's own async counterpart
(``hive_store_async_services``) or an :class:`AsyncService`, whose methods run in the worker
threads.

Cancellation: a cancelled task never leaves a transaction half-applied. A single call runs to
completion in its thread (committed whole or not at all) even if the awaiting task is
cancelled; inside ``async with store.transaction()`` the cancellation propagates out of the
block and the transaction is rolled back.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import types
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from hive_store.backend import Backend, OrderBy, Repository
from hive_store.entities import (
    ActivityLog,
    BudgetLimit,
    Configuration,
    ConsensusFact,
    ConsensusMetric,
    ConsensusProfile,
    ConsensusSetting,
    Conversation,
    ConversationContext,
    ConversationKeyword,
    ConversationThread,
    ConversationTopic,
    ConversationUsage,
    CostAnalytics,
    CuratorTruth,
    DailyUsageSummary,
    EventType,
    FeatureUsage,
    ImprovementPattern,
    KnowledgeConversation,
    License,
    Message,
    ModelRanking,
    ModelSelection,
    OpenRouterModel,
    OpenRouterProvider,
    PendingSync,
    PerformanceMetric,
    PipelineProfile,
    ProfileTemplate,
    ProviderPerformance,
    Setting,
    SyncMetadata,
    UsageRecord,
    User,
)
from hive_store.errors import StoreClosed
from hive_store.health import HealthResult
from hive_store.store import ConsensusRun, StageOutput, Store
from hive_store.store import open as open_sync

if TYPE_CHECKING:
    from hive_store._converters import EntityCodec
    from hive_store.plugins import Plugins
    from hive_store.url import StoreURL

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

    async def get_many(self, keys: Iterable[Any]) -> list[E]:
        return await self._store._run(self._repo.get_many, list(keys))

    async def add(self, entity: E) -> E:
        return await self._store._run(self._repo.add, entity)

    async def add_many(self, entities: Iterable[E]) -> list[E]:
        return await self._store._run(self._repo.add_many, list(entities))

    async def upsert(self, entity: E) -> E:
        return await self._store._run(self._repo.upsert, entity)

    async def update(self, entity_or_key: Any, /, **changes: Any) -> E:
        return await self._store._run(functools.partial(self._repo.update, entity_or_key,
                                                        **changes))

    async def delete(self, entity_or_key: Any) -> bool:
        return await self._store._run(self._repo.delete, entity_or_key)

    async def find(self, *, order_by: OrderBy = None, limit: int | None = None,
                   offset: int = 0, **filters: Any) -> list[E]:
        return await self._store._run(functools.partial(
            self._repo.find, order_by=order_by, limit=limit, offset=offset, **filters))

    async def find_one(self, *, order_by: OrderBy = None, **filters: Any) -> E | None:
        return await self._store._run(functools.partial(self._repo.find_one,
                                                        order_by=order_by, **filters))

    async def count(self, **filters: Any) -> int:
        return await self._store._run(functools.partial(self._repo.count, **filters))

    async def search(self, text: str, *, fields: Sequence[str], limit: int | None = None,
                     order_by: OrderBy = None) -> list[E]:
        return await self._store._run(functools.partial(
            self._repo.search, text, fields=fields, limit=limit, order_by=order_by))

    async def iter(self, *, order_by: OrderBy = None, batch_size: int = 1000,
                   **filters: Any) -> AsyncIterator[E]:
        """Stream entities; each batch is fetched in a worker thread."""
        iterator = self._repo.iter(order_by=order_by, batch_size=batch_size, **filters)
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


class AsyncService:
    """``astore.<name>`` for a service whose plugin gives no asyncio counterpart (see the
    ``hive_store_async_services`` hook): each method of the service becomes a coroutine that
    runs the method on the store's worker threads (in the task's transaction, if any); other
    attributes are read as they are. ``await astore.memory.search("wal")``.

    Using it after the store closed raises :class:`hive_store.StoreClosed`.
    """

    __slots__ = ("_name", "_service", "_store")

    def __init__(self, store: AsyncStore, name: str, service: object) -> None:
        self._store = store
        self._name = name
        self._service = service

    @property
    def sync(self) -> object:
        """The service itself (its methods block)."""
        return self._service

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        self._store._check_service(self._name)
        value = getattr(self._service, attr)
        if not callable(value) or isinstance(value, type):
            return value
        store, name = self._store, self._name

        @functools.wraps(value)
        async def call(*args: Any, **kwargs: Any) -> Any:
            store._check_service(name)
            return await store._run(functools.partial(value, *args, **kwargs))

        return call

    def __dir__(self) -> list[str]:
        return sorted(set(dir(type(self))) | {a for a in dir(self._service)
                                              if not a.startswith("_")})

    def __repr__(self) -> str:
        return f"<hive_store.aio.AsyncService {self._name}: {self._service!r}>"


class AsyncStore:
    """An asyncio store; get one with :func:`open`. It has everything
    :class:`hive_store.Store` has: repositories as attributes (``await
    store.messages.get(id)``), the domain operations and facts as coroutines, and the
    services plugins attach (``await store.memory.search("wal")``). ``sync`` is the
    :class:`hive_store.Store` underneath."""

    users: AsyncRepository[User]
    configurations: AsyncRepository[Configuration]
    openrouter_providers: AsyncRepository[OpenRouterProvider]
    openrouter_models: AsyncRepository[OpenRouterModel]
    pipeline_profiles: AsyncRepository[PipelineProfile]
    consensus_profiles: AsyncRepository[ConsensusProfile]
    conversations: AsyncRepository[Conversation]
    messages: AsyncRepository[Message]
    usage_records: AsyncRepository[UsageRecord]
    budget_limits: AsyncRepository[BudgetLimit]
    sync_metadata: AsyncRepository[SyncMetadata]
    settings: AsyncRepository[Setting]
    consensus_settings: AsyncRepository[ConsensusSetting]
    conversation_usage: AsyncRepository[ConversationUsage]
    knowledge_conversations: AsyncRepository[KnowledgeConversation]
    curator_truths: AsyncRepository[CuratorTruth]
    conversation_context: AsyncRepository[ConversationContext]
    conversation_topics: AsyncRepository[ConversationTopic]
    conversation_keywords: AsyncRepository[ConversationKeyword]
    improvement_patterns: AsyncRepository[ImprovementPattern]
    conversation_threads: AsyncRepository[ConversationThread]
    pending_sync: AsyncRepository[PendingSync]
    provider_performance: AsyncRepository[ProviderPerformance]
    model_rankings: AsyncRepository[ModelRanking]
    consensus_metrics: AsyncRepository[ConsensusMetric]
    cost_analytics: AsyncRepository[CostAnalytics]
    feature_usage: AsyncRepository[FeatureUsage]
    profile_templates: AsyncRepository[ProfileTemplate]
    model_selection_history: AsyncRepository[ModelSelection]
    performance_metrics: AsyncRepository[PerformanceMetric]
    activity_log: AsyncRepository[ActivityLog]
    licenses: AsyncRepository[License]
    daily_usage_summary: AsyncRepository[DailyUsageSummary]
    consensus_facts: AsyncRepository[ConsensusFact]

    def __init__(self, store: Store, *, workers: int = 4, inline_reads: bool = True) -> None:
        self.sync = store
        self.inline_reads = inline_reads
        """Serve ``get`` on the event loop when it cannot block (see the module docstring)."""
        self._executor = ThreadPoolExecutor(max_workers=workers,
                                            thread_name_prefix="hive-store-aio")
        self._repos: dict[str, AsyncRepository[Any]] = {}
        self._views: dict[str, tuple[object, object]] = {}  # name -> (service, async view)
        self._given: dict[str, tuple[object, object]] = {}  # from hive_store_async_services
        for name, view in store.plugins.async_services(self).items():
            self._given[name] = (store.services[name], view)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        repo = self._repos.get(name)
        if repo is not None:
            return repo
        if name in self.sync.entities:
            repo = self._repos[name] = AsyncRepository(self, self.sync.__dict__[name])
            return repo
        if name in self.sync.services:
            return self._view(name)
        self._check_service(name)  # a service of a closed store: StoreClosed
        raise AttributeError(f"AsyncStore has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.sync.entities)
                      | set(self.sync.services))

    # -- what Store has, as attributes ------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The store's backend (``store.sync.backend``)."""
        return self.sync.backend

    @property
    def strict(self) -> bool:
        """Whether reads raise :class:`hive_store.RawValueError` instead of returning
        :class:`hive_store.RawValue` fields (``open(…, strict=True)``)."""
        return self.sync.strict

    @property
    def plugins(self) -> Plugins:
        """The store's plugin set."""
        return self.sync.plugins

    @property
    def url(self) -> StoreURL:
        """The store's URL."""
        return self.sync.url

    @property
    def entities(self) -> dict[str, type]:
        """Registered entity classes by table name."""
        return self.sync.entities

    @property
    def closed(self) -> bool:
        return self.sync.closed

    def repo(self, entity: type[E]) -> AsyncRepository[E]:
        """The async repository of an entity class (core or plugin-registered)."""
        table = self.sync.codec(entity).table
        repo: AsyncRepository[E] = getattr(self, table)
        return repo

    def codec(self, entity: type[E]) -> EntityCodec[E]:
        """Row conversion facts of an entity class (table, key, columns)."""
        return self.sync.codec(entity)

    # -- services ------------------------------------------------------------------------------

    @property
    def services(self) -> Mapping[str, object]:
        """The async counterparts of the store's services, by name (read-only)."""
        return types.MappingProxyType({name: self._view(name) for name in self.sync.services})

    def service(self, name: str, kind: type[Any] | None = None) -> Any:
        """The async counterpart of ``store.sync.service(name, kind)`` (``kind`` is checked
        against the sync service)."""
        if kind is None:
            self.sync.service(name)
        else:
            self.sync.service(name, kind)
        return self._view(name)

    def attach_service(self, name: str, service: object, *, replace: bool = False) -> None:
        """Attach ``service`` to the sync store (see :meth:`hive_store.Store.attach_service`);
        here it is an :class:`AsyncService`."""
        self.sync.attach_service(name, service, replace=replace)

    def detach_service(self, name: str) -> object | None:
        """Remove the service from the sync store; returns it (the sync one), or ``None``."""
        self._views.pop(name, None)
        return self.sync.detach_service(name)

    def _view(self, name: str) -> object:
        service = self.sync.services[name]
        given = self._given.get(name)
        if given is not None and given[0] is service:
            return given[1]
        cached = self._views.get(name)
        if cached is None or cached[0] is not service:
            cached = self._views[name] = (service, AsyncService(self, name, service))
        return cached[1]

    def _check_service(self, name: str) -> None:
        if self.sync.closed and name in self.sync._service_names:
            raise StoreClosed(f"the store is closed (store.{name} ended with it)")

    # -- running calls --------------------------------------------------------------------------

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

    async def run_transaction(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """:meth:`hive_store.Store.run_transaction`: ``fn(*args, **kwargs)`` in one
        transaction on a worker thread, run again if it collides with another (PostgreSQL).
        ``fn`` is plain (not async) code using the sync store, ``astore.sync``."""
        return await self._run(functools.partial(self.sync.run_transaction, fn, *args,
                                                 **kwargs))

    # -- domain operations (the same signatures as Store's) -------------------------------------

    async def record_consensus(
        self,
        question: str,
        stages: Sequence[StageOutput],
        *,
        user_id: str | None = None,
        profile_id: str | None = None,
        conversation_id: str | None = None,
        confidence: float = 0.8,
        topic_summary: str | None = None,
        quality_score: float | None = None,
        started_at: datetime | None = None,
        completed_at: datetime | None = None,
    ) -> ConsensusRun:
        """:meth:`hive_store.Store.record_consensus`."""
        return await self._run(functools.partial(
            self.sync.record_consensus, question, stages, user_id=user_id,
            profile_id=profile_id, conversation_id=conversation_id, confidence=confidence,
            topic_summary=topic_summary, quality_score=quality_score, started_at=started_at,
            completed_at=completed_at))

    async def update_conversation_metrics(
        self, conversation_id: str, *, total_cost: float | None = None,
        input_tokens: int | None = None, output_tokens: int | None = None,
        quality_score: float | None = None, success_rate: str | None = None,
        confidence_level: str | None = None, consensus_improvement: int | None = None,
    ) -> Conversation:
        """:meth:`hive_store.Store.update_conversation_metrics`."""
        return await self._run(functools.partial(
            self.sync.update_conversation_metrics, conversation_id, total_cost=total_cost,
            input_tokens=input_tokens, output_tokens=output_tokens,
            quality_score=quality_score, success_rate=success_rate,
            confidence_level=confidence_level, consensus_improvement=consensus_improvement))

    async def complete_conversation(self, conversation_id: str, *, success: bool = True,
                                    end_time: datetime | None = None) -> Conversation:
        """:meth:`hive_store.Store.complete_conversation`."""
        return await self._run(functools.partial(
            self.sync.complete_conversation, conversation_id, success=success,
            end_time=end_time))

    async def search_knowledge(self, text: str, *,
                               limit: int = 20) -> list[KnowledgeConversation]:
        """:meth:`hive_store.Store.search_knowledge`."""
        return await self._run(functools.partial(self.sync.search_knowledge, text, limit=limit))

    async def log_activity(self, event_type: EventType | str, **fields: Any) -> ActivityLog:
        """:meth:`hive_store.Store.log_activity`."""
        return await self._run(functools.partial(self.sync.log_activity, event_type, **fields))

    async def recent_activity(self, *, limit: int = 50, since: datetime | None = None,
                              user_id: str | None = None,
                              event_type: EventType | str | None = None) -> list[ActivityLog]:
        """:meth:`hive_store.Store.recent_activity`."""
        return await self._run(functools.partial(
            self.sync.recent_activity, limit=limit, since=since, user_id=user_id,
            event_type=event_type))

    # -- facts ---------------------------------------------------------------------------------

    async def schema_version(self) -> int:
        """:meth:`hive_store.Store.schema_version`."""
        return await self._run(self.sync.schema_version)

    async def schema_versions(self) -> dict[str, int]:
        """:meth:`hive_store.Store.schema_versions`."""
        return await self._run(self.sync.schema_versions)

    async def health(self) -> list[HealthResult]:
        """:meth:`hive_store.Store.health`."""
        return await self._run(self.sync.health)

    async def status(self) -> dict[str, Any]:
        """:meth:`hive_store.Store.status`."""
        return await self._run(self.sync.status)

    # -- lifecycle ------------------------------------------------------------------------------

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
