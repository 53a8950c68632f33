"""The storage façade: :func:`open` returns a :class:`Store` with one typed repository per
entity, transactions, and the domain operations of a consensus app."""

from __future__ import annotations

import contextlib
import keyword
import logging
import math
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload

import attrs

from hive_store._converters import EntityCodec, codec_for, enum_member
from hive_store.backend import Backend, Repository
from hive_store.changes import Change
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
    Stage,
    SyncMetadata,
    UsageRecord,
    User,
    utcnow,
)
from hive_store.errors import (
    ConfigurationError,
    HiveStoreError,
    MigrationError,
    PluginError,
    StoreClosed,
    ValidationError,
    describe,
)
from hive_store.health import HealthResult, run_checks
from hive_store.plugins import Plugins, get_plugins
from hive_store.url import default_url, parse_url
from hive_store.values import check_float, check_text

log = logging.getLogger("hive_store")
E = TypeVar("E")
S = TypeVar("S")
T = TypeVar("T")

STAGE_ORDER = (Stage.GENERATOR, Stage.REFINER, Stage.VALIDATOR, Stage.CURATOR)


def _bad(attr: Any, reason: str) -> ValidationError:
    return ValidationError("StageOutput", [(attr.name, reason)])


def _count(_inst: Any, attr: Any, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**62:
        raise _bad(attr, f"must be a whole number from 0 to 2**62, got {describe(value, 40)}")


def _duration(_inst: Any, attr: Any, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10**12:
        raise _bad(attr, f"must be milliseconds from 0 to 10**12, got {describe(value, 40)}")


def _amount(_inst: Any, attr: Any, value: Any) -> None:
    try:
        number = check_float(value)  # an int only when a float holds it exactly
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise _bad(attr, f"must be a finite number >= 0, got {describe(value, 40)}")


def _text(_inst: Any, attr: Any, value: Any) -> None:
    try:
        check_text(value)
    except (TypeError, ValueError) as exc:
        reason = str(exc)
    else:
        return
    raise _bad(attr, reason)


def _stage(value: Any) -> Stage:
    member: Stage | None = enum_member(Stage, value)
    if member is None:
        raise ValidationError("StageOutput", [(
            "stage",
            f"{describe(value, 40)} is not one of generator, refiner, validator, curator")])
    return member


@attrs.frozen(kw_only=True)
class StageOutput:
    """What one consensus stage produced (the input of :meth:`Store.record_consensus`)."""

    stage: Stage = attrs.field(converter=_stage)
    model: str = attrs.field(validator=_text)
    answer: str = attrs.field(validator=_text)
    tokens_input: int = attrs.field(default=0, validator=_count)
    tokens_output: int = attrs.field(default=0, validator=_count)
    cost: float = attrs.field(default=0.0, validator=_amount)
    duration_ms: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_duration))
    provider: str | None = attrs.field(default=None, validator=attrs.validators.optional(_text))


@attrs.frozen(kw_only=True)
class ConsensusRun:
    """Everything :meth:`Store.record_consensus` wrote, as stored."""

    conversation: Conversation
    messages: tuple[Message, ...]
    knowledge: KnowledgeConversation
    curator_truth: CuratorTruth
    usage: UsageRecord
    conversation_usage: ConversationUsage
    activity: ActivityLog

    @property
    def conversation_id(self) -> str:
        return self.conversation.id


class _Listener:
    """Forwards a backend's transaction changes to the plugin hooks."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def before_commit(self, connection: Any, changes: Sequence[Change]) -> None:
        self.store.plugins.before_commit(self.store, connection, changes)

    def after_commit(self, changes: Sequence[Change]) -> None:
        self.store.plugins.after_commit(self.store, changes)

    def listening(self) -> tuple[bool, bool]:
        return self.store.plugins.commit_hooks(self.store)


class Store:
    """An open hive-store database. Use :func:`hive_store.open` to get one; close it (or use
    ``with``) when done. Thread-safe: share one store between threads."""

    users: Repository[User]
    configurations: Repository[Configuration]
    openrouter_providers: Repository[OpenRouterProvider]
    openrouter_models: Repository[OpenRouterModel]
    pipeline_profiles: Repository[PipelineProfile]
    consensus_profiles: Repository[ConsensusProfile]
    conversations: Repository[Conversation]
    messages: Repository[Message]
    usage_records: Repository[UsageRecord]
    budget_limits: Repository[BudgetLimit]
    sync_metadata: Repository[SyncMetadata]
    settings: Repository[Setting]
    consensus_settings: Repository[ConsensusSetting]
    conversation_usage: Repository[ConversationUsage]
    knowledge_conversations: Repository[KnowledgeConversation]
    curator_truths: Repository[CuratorTruth]
    conversation_context: Repository[ConversationContext]
    conversation_topics: Repository[ConversationTopic]
    conversation_keywords: Repository[ConversationKeyword]
    improvement_patterns: Repository[ImprovementPattern]
    conversation_threads: Repository[ConversationThread]
    pending_sync: Repository[PendingSync]
    provider_performance: Repository[ProviderPerformance]
    model_rankings: Repository[ModelRanking]
    consensus_metrics: Repository[ConsensusMetric]
    cost_analytics: Repository[CostAnalytics]
    feature_usage: Repository[FeatureUsage]
    profile_templates: Repository[ProfileTemplate]
    model_selection_history: Repository[ModelSelection]
    performance_metrics: Repository[PerformanceMetric]
    activity_log: Repository[ActivityLog]
    licenses: Repository[License]
    daily_usage_summary: Repository[DailyUsageSummary]
    consensus_facts: Repository[ConsensusFact]

    def __init__(self, backend: Backend, plugins: Plugins, *, strict: bool = False) -> None:
        self.backend = backend
        self.plugins = plugins
        self.url = backend.url
        self.strict = strict
        """Whether reads raise :class:`hive_store.RawValueError` for a stored value that
        cannot be typed (instead of a :class:`hive_store.RawValue` in the entity)."""
        self._closed = False
        self._services: dict[str, object] = {}
        self._services_view = types.MappingProxyType(self._services)
        self._service_names: set[str] = set()  # every name ever attached (StoreClosed after)
        self._codecs: dict[type, EntityCodec[Any]] = {}
        self._by_table: dict[str, type] = {}
        for cls in plugins.entities(getattr(backend, "dialect", None)):
            codec: EntityCodec[Any] = codec_for(cls, strict=strict)
            if codec.table in self._by_table and self._by_table[codec.table] is not cls:
                raise PluginError(f"two entities claim the table {codec.table!r}")
            self._codecs[cls] = codec
            self._by_table[codec.table] = cls
            self.__dict__[codec.table] = backend.repository(codec)
        backend.set_commit_listener(_Listener(self))

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<hive_store.Store {self.url} ({state})>"

    # -- repositories ---------------------------------------------------------------------------

    def repo(self, entity: type[E]) -> Repository[E]:
        """The repository of an entity class (core or plugin-registered)."""
        try:
            codec = self._codecs.get(entity)
        except TypeError:  # unhashable
            codec = None
        if codec is None:
            raise ConfigurationError(
                f"{getattr(entity, '__name__', entity)!r} is not a registered entity"
            )
        repo: Repository[E] = self.__dict__[codec.table]
        return repo

    def codec(self, entity: type[E]) -> EntityCodec[E]:
        """Row conversion facts of an entity class (table, key, columns)."""
        self.repo(entity)
        return self._codecs[entity]

    @property
    def entities(self) -> dict[str, type]:
        """Registered entity classes by table name."""
        return dict(self._by_table)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are neither repositories nor services (both live in
        # __dict__), e.g. a service after close().
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._service_names:
            if self._closed:
                raise StoreClosed(f"the store is closed (store.{name} ended with it)")
            raise AttributeError(f"store.{name} was detached from this store")
        services = f"; services: {', '.join(sorted(self._services))}" if self._services else ""
        raise AttributeError(
            f"Store has no attribute {name!r} (tables: {', '.join(sorted(self._by_table))}"
            f"{services})"
        )

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._by_table) | set(self._services))

    # -- services ---------------------------------------------------------------------------------

    @property
    def services(self) -> Mapping[str, object]:
        """The services plugins attached (``store.<name>``), by name; read-only. See the
        ``hive_store_services`` hook."""
        return self._services_view

    @overload
    def service(self, name: str) -> object: ...

    @overload
    def service(self, name: str, kind: type[S]) -> S: ...

    def service(self, name: str, kind: type[Any] | None = None) -> Any:
        """The service attached as ``name``, checked to be a ``kind`` if given (typed access:
        ``store.service("memory", Memory)``). :class:`hive_store.StoreClosed` on a closed
        store, :class:`hive_store.ConfigurationError` if there is none (or of another type)."""
        self._check_open()
        try:
            found = self._services[name]
        except (KeyError, TypeError):
            have = ", ".join(sorted(self._services)) or "none"
            raise ConfigurationError(
                f"this store has no service {name!r} (attached: {have}; is its plugin "
                "installed and not disabled?)") from None
        if kind is not None and not isinstance(found, kind):
            raise ConfigurationError(f"store.{name} is a {type(found).__name__}, "
                                     f"not a {kind.__name__}")
        return found

    def attach_service(self, name: str, service: object, *, replace: bool = False) -> None:
        """Make ``service`` available as ``store.<name>`` (and on the asyncio store) until
        :meth:`detach_service` or :meth:`close`. Plugins attach services at open through the
        ``hive_store_services`` hook; this is for a service enabled while the store is open.

        :raises PluginError: ``name`` is not an identifier, starts with ``_``, or is taken (a
            table, a :class:`Store` attribute, another service unless ``replace``)
        """
        self._check_open()
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_") \
                or keyword.iskeyword(name):
            raise PluginError(f"a service name must be a Python identifier not starting with "
                              f"'_', got {name!r:.60}")
        if name in self._by_table or hasattr(type(self), name) or name in _INSTANCE_ATTRS:
            raise PluginError(f"the service name {name!r} is taken by the store itself")
        if name in self._services and not replace:
            raise PluginError(f"a service {name!r} is already attached to this store")
        self._services[name] = service
        self._service_names.add(name)
        self.__dict__[name] = service

    def detach_service(self, name: str) -> object | None:
        """Remove the service ``name`` (the caller closes it); returns it, or ``None``."""
        if name not in self._services:
            return None
        self.__dict__.pop(name, None)
        return self._services.pop(name)

    # -- transactions -------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Store]:
        """Make every repository call in the block one atomic write.

        Nested blocks are savepoints: an exception rolls back to where the block began and
        propagates. Transactions belong to the calling thread; other threads wait for the
        writer (up to ``connection_timeout``). Post-commit change events fire after the
        outermost block commits, never for a rollback.
        """
        self._check_open()
        with self.backend.transaction():
            yield self

    def run_transaction(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in one transaction and return its result.

        Like ``with store.transaction(): fn()``, except that a backend whose transactions can
        collide with concurrent ones (PostgreSQL's serialization failures and deadlocks) runs
        ``fn`` again when that happens, up to its ``retries`` option, before raising
        :class:`~hive_store.TransactionConflict`. So ``fn`` should only change the store (or
        do things that are fine to repeat). Inside another transaction it is a savepoint, not
        retried: the outermost block is what runs again. :meth:`record_consensus` uses it.
        """
        self._check_open()
        run = getattr(self.backend, "run_transaction", None)
        if run is None:
            with self.backend.transaction():
                return fn(*args, **kwargs)
        result: T = run(lambda: fn(*args, **kwargs))
        return result

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the store is closed")

    # -- domain operations --------------------------------------------------------------------

    def record_consensus(
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
        """Store a finished four-stage run, all or nothing: the conversation, the user's
        question and one assistant message per stage, the knowledge entry (the curator's
        answer is the source of truth), the curator truth, a usage record, the legacy
        ``conversation_usage`` row and a ``pipeline_complete`` activity entry.
        """
        if not isinstance(question, str) or not question.strip():
            raise ValidationError("ConsensusRun", [("question", "must be non-empty text")])
        if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence):
            raise ValidationError("ConsensusRun", [("stages", "must be a list of StageOutput")])
        try:
            outputs = [s if isinstance(s, StageOutput) else StageOutput(**s) for s in stages]
        except ValidationError:
            raise
        except (TypeError, ValueError) as exc:
            raise ValidationError("StageOutput", [("stages", str(exc))]) from None
        for name, value in (("started_at", started_at), ("completed_at", completed_at)):
            if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
                raise ValidationError("ConsensusRun", [(
                    name, "must be a timezone-aware datetime (e.g. datetime.now(timezone.utc))")])
        if not isinstance(confidence, (int, float)) or not 0 <= confidence <= 1:
            raise ValidationError("ConsensusRun", [("confidence", "must be between 0 and 1")])
        try:
            return self._record_consensus(question, outputs, user_id=user_id,
                                          profile_id=profile_id, conversation_id=conversation_id,
                                          confidence=float(confidence),
                                          topic_summary=topic_summary,
                                          quality_score=quality_score, started_at=started_at,
                                          completed_at=completed_at)
        except OverflowError:
            raise ValidationError("ConsensusRun", [(
                "started_at", "times and durations are out of the range datetimes can hold")]
            ) from None

    def _record_consensus(
        self, question: str, outputs: list[StageOutput], *, user_id: str | None,
        profile_id: str | None, conversation_id: str | None, confidence: float,
        topic_summary: str | None, quality_score: float | None,
        started_at: datetime | None, completed_at: datetime | None,
    ) -> ConsensusRun:
        got = tuple(s.stage for s in outputs)
        if got != STAGE_ORDER:
            raise ValidationError("ConsensusRun", [(
                "stages", "need the four stages in order generator, refiner, validator, curator; "
                f"got {[s.value for s in got]}")])
        end = completed_at or utcnow()
        start = started_at or end
        curator = outputs[-1]
        total_cost = sum(float(s.cost) for s in outputs)
        tokens_in = sum(int(s.tokens_input) for s in outputs)
        tokens_out = sum(int(s.tokens_output) for s in outputs)
        durations = [s.duration_ms for s in outputs if s.duration_ms is not None]
        conv_kw: dict[str, Any] = {} if conversation_id is None else {"id": conversation_id}
        if quality_score is not None:
            conv_kw["quality_score"] = quality_score
        conversation = Conversation(
            user_id=user_id, consensus_profile_id=profile_id, total_cost=total_cost,
            input_tokens=tokens_in, output_tokens=tokens_out, start_time=start, end_time=end,
            success=1, created_at=start, updated_at=end, **conv_kw,
        )
        cid = conversation.id
        messages = [Message(conversation_id=cid, role="user", content=question, timestamp=start)]
        # Each stage's message is stamped when that stage finished (start + the durations so
        # far, when known), strictly after the previous one, so time order is stage order.
        stamp, elapsed = start, 0
        for s in outputs:
            elapsed += s.duration_ms or 0
            at = min(start + timedelta(milliseconds=elapsed), end) if durations else end
            stamp = max(at, stamp + timedelta(microseconds=1))
            messages.append(Message(conversation_id=cid, role="assistant", content=s.answer,
                                    stage=s.stage.value, model_used=s.model, timestamp=stamp))
        knowledge = KnowledgeConversation(
            conversation_id=cid, question=question, final_answer=curator.answer,
            source_of_truth=curator.answer, profile_id=profile_id, created_at=end,
            last_updated=end,
        )
        truth = CuratorTruth(conversation_id=cid, curator_output=curator.answer,
                             confidence_score=confidence, topic_summary=topic_summary,
                             created_at=end)
        usage = UsageRecord(user_id=user_id, conversation_id=cid, action_type="conversation",
                            cost=total_cost, tokens_input=tokens_in, tokens_output=tokens_out,
                            model_used=curator.model, timestamp=end)
        conv_usage = ConversationUsage(conversation_id=cid, user_id=user_id, timestamp=end)
        activity = ActivityLog(
            event_type=EventType.PIPELINE_COMPLETE, conversation_id=cid, user_id=user_id,
            model_used=curator.model, provider_name=curator.provider, cost=total_cost,
            duration_ms=sum(durations) if durations else None,
            tokens_used=tokens_in + tokens_out,
            metadata={"stages": [{"stage": s.stage.value, "model": s.model,
                                  "tokens_input": s.tokens_input,
                                  "tokens_output": s.tokens_output, "cost": s.cost,
                                  "duration_ms": s.duration_ms} for s in outputs]},
            created_at=end,
        )
        def write() -> ConsensusRun:
            return ConsensusRun(
                conversation=self.conversations.add(conversation),
                messages=tuple(self.messages.add_many(messages)),
                knowledge=self.knowledge_conversations.add(knowledge),
                curator_truth=self.curator_truths.add(truth),
                usage=self.usage_records.add(usage),
                conversation_usage=self.conversation_usage.add(conv_usage),
                activity=self.activity_log.add(activity))

        return self.run_transaction(write)

    def update_conversation_metrics(
        self, conversation_id: str, *, total_cost: float | None = None,
        input_tokens: int | None = None, output_tokens: int | None = None,
        quality_score: float | None = None, success_rate: str | None = None,
        confidence_level: str | None = None, consensus_improvement: int | None = None,
    ) -> Conversation:
        """Set a conversation's metrics (the given ones) and its ``updated_at``. Only the
        columns whose values change are written: the rest of the row keeps its stored bytes
        (a legacy row whose user is gone can be updated; its ``user_id`` is not touched)."""
        given = {k: v for k, v in {
            "total_cost": total_cost, "input_tokens": input_tokens,
            "output_tokens": output_tokens, "quality_score": quality_score,
            "success_rate": success_rate, "confidence_level": confidence_level,
            "consensus_improvement": consensus_improvement,
        }.items() if v is not None}
        return self.conversations.update(conversation_id, **given, updated_at=utcnow())

    def complete_conversation(self, conversation_id: str, *, success: bool = True,
                              end_time: datetime | None = None) -> Conversation:
        """Mark a conversation finished: ``end_time``, ``success`` and ``updated_at`` (only
        those columns are written)."""
        if not isinstance(success, bool):
            raise ValidationError("Conversation", [("success", "takes True or False")])
        now = utcnow()
        return self.conversations.update(conversation_id, end_time=end_time or now,
                                         success=1 if success else 0, updated_at=now)

    def search_knowledge(self, text: str, *, limit: int = 20) -> list[KnowledgeConversation]:
        """Knowledge entries whose question, answer or source of truth contains ``text``
        (case-insensitive for ASCII), newest first."""
        return self.knowledge_conversations.search(
            text, fields=("question", "final_answer", "source_of_truth"), limit=limit,
            order_by=["-created_at"],
        )

    def log_activity(self, event_type: EventType | str, **fields: Any) -> ActivityLog:
        """Append an activity-log entry."""
        try:
            entry = ActivityLog(event_type=event_type, **fields)  # type: ignore[arg-type]
        except TypeError as exc:
            raise ValidationError("ActivityLog", [("?", str(exc))]) from None
        return self.activity_log.add(entry)

    def recent_activity(self, *, limit: int = 50, since: datetime | None = None,
                        user_id: str | None = None,
                        event_type: EventType | str | None = None) -> list[ActivityLog]:
        """The newest activity-log entries, optionally since a time, for a user or a type."""
        filters: dict[str, Any] = {}
        if since is not None:
            filters["created_at__ge"] = since
        if user_id is not None:
            filters["user_id"] = user_id
        if event_type is not None:
            filters["event_type"] = event_type
        return self.activity_log.find(order_by=["-created_at", "-id"], limit=limit, **filters)

    # -- facts -------------------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The core schema's applied migration version (0 for none): the migration set
        ``hive_store``, the Hive tables. Plugins' sets have their own:
        :meth:`schema_versions`."""
        return self.schema_versions().get("hive_store", 0)

    def schema_versions(self) -> dict[str, int]:
        """The applied version of each migration set, by set (``hive_store`` is the core Hive
        schema; plugins such as ``hive_store_memory`` own theirs); sets with nothing applied
        are left out."""
        self._check_open()
        migrator = self.plugins.migrator(self.backend)
        if migrator is None:
            return {}
        versions: dict[str, int] = {}
        for a in migrator.applied():
            versions[a.namespace] = max(a.version, versions.get(a.namespace, 0))
        return dict(sorted(versions.items(), key=lambda kv: (kv[0] != "hive_store", kv[0])))

    def health(self) -> list[HealthResult]:
        """Run every registered health check (see :mod:`hive_store.health`)."""
        self._check_open()
        dialect = getattr(self.backend, "dialect", None)
        results = run_checks(self, self.plugins.health_checks(dialect))
        if dialect is not None:
            results += [HealthResult(
                name=f"plugin {name}", status="ok",
                message=f"skipped: works with {', '.join(dialects) or 'no'} backends, this "
                        f"store is {dialect}") for name, dialects in self.plugins.skipped(dialect)]
        return results

    def status(self) -> dict[str, Any]:
        """Path, size, versions, row counts and pool settings.

        Versions (see the README's "Versions"): ``package_version`` is hive-store's;
        ``schema_versions`` the applied version of each migration set (``schema_version`` is
        the core set's, ``hive_store``); ``hive_schema_version`` the highest version in the old
        Hive apps' own record (their ``schema_migrations``; ``None`` without one), when the
        migration plugin can tell.
        """
        self._check_open()
        from hive_store import __version__

        facts = self.backend.describe()
        facts["package_version"] = __version__
        facts["schema_versions"] = self.schema_versions()
        facts["schema_version"] = facts["schema_versions"].get("hive_store", 0)
        migrator = self.plugins.migrator(self.backend)
        legacy = getattr(migrator, "hive_schema_version", None)
        facts["hive_schema_version"] = legacy() if callable(legacy) else None
        facts["legacy"] = self._legacy()
        facts["row_counts"] = self.backend.table_counts()
        return facts

    def _legacy(self) -> str | None:
        """How a legacy Hive database hive-store has not adopted yet looks (``None`` if it is
        not one), from the migration plugin when it can tell."""
        migrator = self.plugins.migrator(self.backend)
        state = getattr(migrator, "legacy_state", None)
        found = state() if callable(state) else None
        if found is None:
            return None
        describe = getattr(found, "describe", None)
        return str(describe() if callable(describe) else found)

    # -- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the store and its connections (idempotent)."""
        if self._closed:
            return
        try:
            self.plugins.store_closing(self)
        finally:
            self._closed = True
            for name in list(self._services):  # their plugins closed them just now
                self.detach_service(name)
            self.backend.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(
    url: str | None = None,
    *,
    plugins: Plugins | None = None,
    migrate: bool | None = None,
    allow_drift: bool = False,
    read_only: bool = False,
    strict: bool = False,
    **options: Any,
) -> Store:
    """Open (creating and migrating if needed) the store at ``url``.

    :param url: ``sqlite:///abs/path.db``, ``sqlite:rel.db``, ``:memory:`` or a file path;
        default ``HIVE_STORE_DB`` or ``~/.hive/hive-ai.db``
    :param plugins: a plugin set (default: the process-wide one, loaded from entry points)
    :param migrate: bring the schema up to date (the default unless ``read_only``);
        ``False`` opens as it is
    :param allow_drift: open even if an applied migration's file changed since
    :param read_only: open an existing database without changing a byte of it: no file is
        created, nothing is migrated or adopted, plugins write nothing, and every write raises
        :class:`StorageError` (for inspecting a file, e.g. ``hive-store status``)
    :param strict: reads raise :class:`hive_store.RawValueError` for a stored value that has
        no meaning of its field's type; by default the entity holds a
        :class:`hive_store.RawValue` with the exact stored value instead (files the old Hive
        apps wrote hold such values: see ``docs/guarantees.md``)
    :param options: backend options, e.g. ``max_size=4``, ``connection_timeout=5``,
        ``durability="full"`` (see the backend's documentation)
    """
    parsed = parse_url(url if url is not None else default_url())
    if read_only:
        options["read_only"] = True
    plugins = plugins or get_plugins()
    try:
        backend = plugins.backend(parsed, dict(options))
    except HiveStoreError:
        raise
    except Exception as exc:
        raise PluginError(f"the backend plugin for {parsed.scheme!r} failed: "
                          f"{type(exc).__name__}: {exc}") from exc
    if backend is None:
        schemes = ", ".join(plugins.backend_schemes()) or "none"
        raise ConfigurationError(
            f"no installed backend handles {parsed.scheme!r} URLs (available schemes: {schemes})"
        )
    if getattr(backend, "read_only", False):  # asked here or in the URL (?read_only=1)
        if migrate:
            backend.close()
            raise ConfigurationError("a store opened read-only cannot be migrated")
        migrate = False
    store: Store | None = None
    try:
        if not isinstance(strict, bool):
            raise ConfigurationError("strict takes True or False")
        store = Store(backend, plugins, strict=strict)
        if migrate is None or migrate:
            migrator = plugins.migrator(backend)
            if migrator is None:
                raise MigrationError(
                    f"no migration plugin handles {parsed.scheme!r} databases "
                    "(is hive_store_migrate disabled?)"
                )
            migrator.upgrade(plugins.migration_sets(), allow_drift=allow_drift)
        plugins.attach_services(store)
        plugins.store_opened(store)
    except BaseException:
        if store is None:
            backend.close()
        else:  # plugins close what they started (threads of a service), then the backend
            store.close()
        raise
    return store


_INSTANCE_ATTRS = frozenset({"backend", "plugins", "url"})
