"""The Hive entities: one frozen attrs class per table of the canonical Hive schema.

Field names are column names and fields are in column order. Python types are the real ones:
aware ``datetime`` for timestamps, ``Enum`` members for CHECK-listed values, ``dict``/``list``
(``Json``) for JSON text columns, ``bool`` for BOOLEAN columns and ``None`` for NULL.

Each class carries its table in ``__table__`` and its primary key column in ``__pk__``; tables
whose key is ``INTEGER PRIMARY KEY AUTOINCREMENT`` set ``__autoincrement__`` and leave the key
``None`` until the row is stored. New text keys are time-ordered UUIDv7 strings.

Defaults mirror the SQL defaults of the schema. A write returns the entity as stored (the same
object when every value is already in its stored form).

Entities read from the database may hold a :class:`hive_store.RawValue` in any field: the
stored value exactly, when it has no meaning of the field's type (a timestamp ``'never'``, plain
text in a JSON column …). Legacy shapes with a meaning are read as real values (epoch numbers,
``'true'``, other timestamp forms). Writing such an entity back writes only the columns whose
values changed. See :mod:`hive_store.values` for every rule; ``hive_store.open(url,
strict=True)`` raises :class:`hive_store.RawValueError` instead of returning raw values.

Text columns whose values Hive fixes get them checked on write (``choices``): the CHECK-listed
ones are enums (:class:`EventType`, :class:`Stage`, :class:`ContextType`, :class:`ThreadType`);
``Message.role`` takes the roles Hive's apps write (:data:`ROLES`) and ``Message.stage`` the
four stage names. Columns Hive lists only in comments (``usage_records.action_type``,
``budget_limits.period_type``, ``sync_metadata.status`` …) stay free text: old files hold
other values there, and Hive's code does not restrict them.
"""

# No ``from __future__ import annotations`` here: attrs and the converters read the real types.

import enum
from datetime import UTC, date, datetime
from typing import Any, ClassVar, TypeAlias

import attrs

from hive_store.ids import uuid7

Json: TypeAlias = Any
"""A JSON value (usually a ``dict`` or ``list``) kept in a TEXT column as JSON text."""


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def json_field(*, nullable: bool = True, **kwargs: Any) -> Any:
    """An attrs field kept as JSON text; ``nullable=False`` for NOT NULL columns."""
    return attrs.field(metadata={"json": True, "nullable": nullable}, **kwargs)


def choice_field(choices: tuple[str, ...], **kwargs: Any) -> Any:
    """An attrs text field that takes only ``choices`` on write (a stored value outside them
    reads as a :class:`hive_store.RawValue`)."""
    return attrs.field(metadata={"choices": choices}, **kwargs)


class Stage(str, enum.Enum):
    """The four consensus stages, in pipeline order."""

    GENERATOR = "generator"
    REFINER = "refiner"
    VALIDATOR = "validator"
    CURATOR = "curator"


ROLES: tuple[str, ...] = ("user", "assistant", "system")
"""``messages.role``: what the Hive apps write (the question, one answer per stage, and the
Electron app's system messages)."""
STAGES: tuple[str, ...] = ("generator", "refiner", "validator", "curator")
"""``messages.stage``: the stage names, as :class:`Stage` values."""


class EventType(str, enum.Enum):
    """``activity_log.event_type`` (CHECK-listed)."""

    QUERY_START = "query_start"
    QUERY_COMPLETE = "query_complete"
    QUERY_ERROR = "query_error"
    MODEL_SWITCH = "model_switch"
    FALLBACK = "fallback"
    RATE_LIMIT = "rate_limit"
    STAGE_START = "stage_start"
    STAGE_COMPLETE = "stage_complete"
    STAGE_ERROR = "stage_error"
    PIPELINE_COMPLETE = "pipeline_complete"
    EXPORT = "export"
    BUDGET_ALERT = "budget_alert"
    COST_ALERT = "cost_alert"
    QUALITY_ALERT = "quality_alert"
    PERFORMANCE_ALERT = "performance_alert"


class ContextType(str, enum.Enum):
    """``conversation_context.context_type`` (CHECK-listed)."""

    RECENT_24H = "recent_24h"
    THEMATIC = "thematic"
    DIRECT_REFERENCE = "direct_reference"


class ThreadType(str, enum.Enum):
    """``conversation_threads.thread_type`` (CHECK-listed)."""

    FOLLOW_UP = "follow_up"
    CLARIFICATION = "clarification"
    LIST_REFERENCE = "list_reference"
    CONTINUATION = "continuation"


@attrs.frozen(kw_only=True)
class User:
    """A row of ``users``."""

    __table__: ClassVar[str] = "users"
    __pk__: ClassVar[str] = "id"

    id: str = attrs.field(factory=uuid7)
    email: str | None = None
    license_key: str | None = attrs.field(default=None, repr=False)
    tier: str | None = "FREE"
    created_at: datetime | None = attrs.field(factory=utcnow)
    updated_at: datetime | None = attrs.field(factory=utcnow)
    subscription_tier: str | None = "free"
    last_d1_sync: str | None = None


@attrs.frozen(kw_only=True)
class Configuration:
    """A row of ``configurations``.

    ``value`` holds secrets such as ``openrouter_api_key``: it is left out of ``repr``.
    """

    __table__: ClassVar[str] = "configurations"
    __pk__: ClassVar[str] = "key"

    key: str
    value: str = attrs.field(repr=False)
    encrypted: bool | None = False
    user_id: str | None = None
    created_at: datetime | None = attrs.field(factory=utcnow)
    updated_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class OpenRouterProvider:
    """A row of ``openrouter_providers``."""

    __table__: ClassVar[str] = "openrouter_providers"
    __pk__: ClassVar[str] = "id"

    id: str = attrs.field(factory=uuid7)
    name: str
    display_name: str
    model_count: int | None = 0
    average_cost: float | None = 0.0
    capabilities: Json = json_field(factory=list)
    last_updated: datetime
    is_active: bool | None = True
    created_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class OpenRouterModel:
    """A row of ``openrouter_models``."""

    __table__: ClassVar[str] = "openrouter_models"
    __pk__: ClassVar[str] = "internal_id"
    __autoincrement__: ClassVar[bool] = True

    internal_id: int | None = None
    openrouter_id: str
    name: str
    provider_id: str
    provider_name: str
    description: str | None = ""
    capabilities: Json = json_field(factory=list)
    pricing_input: float | None = 0.0
    pricing_output: float | None = 0.0
    pricing_image: float | None = None
    pricing_request: float | None = None
    context_window: int | None = 4096
    created_at: int
    input_modalities: Json = json_field(factory=lambda: ["text"])
    output_modalities: Json = json_field(factory=lambda: ["text"])
    is_active: bool | None = True
    last_updated: datetime


@attrs.frozen(kw_only=True)
class PipelineProfile:
    """A row of ``pipeline_profiles``."""

    __table__: ClassVar[str] = "pipeline_profiles"
    __pk__: ClassVar[str] = "id"

    id: str = attrs.field(factory=uuid7)
    name: str
    user_id: str | None = None
    is_default: bool | None = False
    generator_model_internal_id: int
    generator_temperature: float | None = 0.7
    refiner_model_internal_id: int
    refiner_temperature: float | None = 0.7
    validator_model_internal_id: int
    validator_temperature: float | None = 0.7
    curator_model_internal_id: int
    curator_temperature: float | None = 0.7
    generator_provider: str | None = None
    generator_model: str | None = None
    refiner_provider: str | None = None
    refiner_model: str | None = None
    validator_provider: str | None = None
    validator_model: str | None = None
    curator_provider: str | None = None
    curator_model: str | None = None
    is_dynamic_template: bool | None = False
    selection_criteria: Json = json_field(default=None)
    routing_preferences: Json = json_field(default=None)
    cost_controls: Json = json_field(default=None)
    created_at: datetime | None = attrs.field(factory=utcnow)
    updated_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class ConsensusProfile:
    """A row of ``consensus_profiles``."""

    __table__: ClassVar[str] = "consensus_profiles"
    __pk__: ClassVar[str] = "id"

    id: str = attrs.field(factory=uuid7)
    profile_name: str
    generator_model: str
    refiner_model: str
    validator_model: str
    curator_model: str
    created_at: datetime | None = attrs.field(factory=utcnow)
    updated_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class Conversation:
    """A row of ``conversations``."""

    __table__: ClassVar[str] = "conversations"
    __pk__: ClassVar[str] = "id"

    id: str = attrs.field(factory=uuid7)
    user_id: str | None = None
    consensus_profile_id: str | None = None
    total_cost: float | None = 0.0
    input_tokens: int | None = 0
    output_tokens: int | None = 0
    start_time: datetime | None = None
    end_time: datetime | None = None
    success_rate: str | None = "100"
    quality_score: float | None = 0.95
    consensus_improvement: int | None = 15
    confidence_level: str | None = "High"
    success: int | None = 1
    created_at: datetime | None = attrs.field(factory=utcnow)
    updated_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class Message:
    """A row of ``messages``."""

    __table__: ClassVar[str] = "messages"
    __pk__: ClassVar[str] = "id"

    id: str = attrs.field(factory=uuid7)
    conversation_id: str
    role: str = choice_field(ROLES)
    content: str
    stage: str | None = choice_field(STAGES, default=None)
    model_used: str | None = None
    timestamp: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class UsageRecord:
    """A row of ``usage_records``."""

    __table__: ClassVar[str] = "usage_records"
    __pk__: ClassVar[str] = "id"

    id: str = attrs.field(factory=uuid7)
    user_id: str | None = None
    conversation_id: str | None = None
    action_type: str
    cost: float | None = 0.0
    tokens_input: int | None = 0
    tokens_output: int | None = 0
    model_used: str | None = None
    timestamp: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class BudgetLimit:
    """A row of ``budget_limits``."""

    __table__: ClassVar[str] = "budget_limits"
    __pk__: ClassVar[str] = "id"

    id: str = attrs.field(factory=uuid7)
    user_id: str
    period_type: str
    limit_amount: float
    current_spent: float | None = 0.0
    period_start: datetime
    period_end: datetime
    is_active: bool | None = True
    created_at: datetime | None = attrs.field(factory=utcnow)
    updated_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class SyncMetadata:
    """A row of ``sync_metadata``."""

    __table__: ClassVar[str] = "sync_metadata"
    __pk__: ClassVar[str] = "id"

    id: str = attrs.field(factory=uuid7)
    sync_type: str
    started_at: datetime
    completed_at: datetime | None = None
    status: str
    providers_synced: int | None = 0
    models_synced: int | None = 0
    error_message: str | None = None
    next_sync_due: str
    rankings_last_synced: str | None = None
    provider_performance_synced: str | None = None
    intelligence_version: str | None = "1.7.0"
    created_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class Setting:
    """A row of ``settings``."""

    __table__: ClassVar[str] = "settings"
    __pk__: ClassVar[str] = "key"

    key: str
    value: str
    description: str | None = None
    updated_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class ConsensusSetting:
    """A row of ``consensus_settings``."""

    __table__: ClassVar[str] = "consensus_settings"
    __pk__: ClassVar[str] = "key"

    key: str
    value: str
    updated_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class ConversationUsage:
    """A row of ``conversation_usage``."""

    __table__: ClassVar[str] = "conversation_usage"
    __pk__: ClassVar[str] = "id"
    __autoincrement__: ClassVar[bool] = True

    id: int | None = None
    conversation_id: str
    user_id: str | None = None
    timestamp: datetime | None = attrs.field(factory=utcnow)
    license_key: str | None = attrs.field(default=None, repr=False)
    verified: int | None = 0
    conversation_token: str | None = attrs.field(default=None, repr=False)
    question_hash: str | None = None
    d1_verified_at: datetime | None = None


@attrs.frozen(kw_only=True)
class KnowledgeConversation:
    """A row of ``knowledge_conversations``."""

    __table__: ClassVar[str] = "knowledge_conversations"
    __pk__: ClassVar[str] = "id"

    id: str = attrs.field(factory=uuid7)
    conversation_id: str | None = None
    question: str
    final_answer: str
    source_of_truth: str
    conversation_context: str | None = None
    profile_id: str | None = None
    created_at: datetime | None = attrs.field(factory=utcnow)
    last_updated: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class CuratorTruth:
    """A row of ``curator_truths``."""

    __table__: ClassVar[str] = "curator_truths"
    __pk__: ClassVar[str] = "id"
    __autoincrement__: ClassVar[bool] = True

    id: int | None = None
    conversation_id: str
    curator_output: str
    confidence_score: float
    topic_summary: str | None = None
    created_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class ConversationContext:
    """A row of ``conversation_context``."""

    __table__: ClassVar[str] = "conversation_context"
    __pk__: ClassVar[str] = "id"
    __autoincrement__: ClassVar[bool] = True

    id: int | None = None
    conversation_id: str
    referenced_conversation_id: str
    relevance_score: float | None = 1.0
    context_type: ContextType | None = None
    created_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class ConversationTopic:
    """A row of ``conversation_topics``."""

    __table__: ClassVar[str] = "conversation_topics"
    __pk__: ClassVar[str] = "id"
    __autoincrement__: ClassVar[bool] = True

    id: int | None = None
    conversation_id: str
    topic: str
    relevance_score: float | None = 1.0
    created_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class ConversationKeyword:
    """A row of ``conversation_keywords``."""

    __table__: ClassVar[str] = "conversation_keywords"
    __pk__: ClassVar[str] = "id"
    __autoincrement__: ClassVar[bool] = True

    id: int | None = None
    conversation_id: str
    keyword: str
    frequency: int | None = 1
    created_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class ImprovementPattern:
    """A row of ``improvement_patterns``."""

    __table__: ClassVar[str] = "improvement_patterns"
    __pk__: ClassVar[str] = "id"
    __autoincrement__: ClassVar[bool] = True

    id: int | None = None
    conversation_id: str
    from_stage: str
    to_stage: str
    improvement_type: str
    description: str
    question_type: str
    before_content: str | None = None
    after_content: str | None = None
    improvement_score: float | None = None
    meta_commentary: str | None = None
    created_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class ConversationThread:
    """A row of ``conversation_threads``."""

    __table__: ClassVar[str] = "conversation_threads"
    __pk__: ClassVar[str] = "id"
    __autoincrement__: ClassVar[bool] = True

    id: int | None = None
    child_conversation_id: str
    parent_conversation_id: str
    thread_type: ThreadType | None = None
    reference_text: str | None = None
    confidence_score: float | None = 1.0
    created_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class PendingSync:
    """A row of ``pending_sync``."""

    __table__: ClassVar[str] = "pending_sync"
    __pk__: ClassVar[str] = "conversation_id"

    conversation_id: str
    user_id: str
    question_hash: str
    conversation_token: str = attrs.field(repr=False)
    created_at: datetime | None = attrs.field(factory=utcnow)
    sync_attempts: int | None = 0
    last_attempt_at: datetime | None = None
    error_message: str | None = None


@attrs.frozen(kw_only=True)
class ProviderPerformance:
    """A row of ``provider_performance``."""

    __table__: ClassVar[str] = "provider_performance"
    __pk__: ClassVar[str] = "id"
    __autoincrement__: ClassVar[bool] = True

    id: int | None = None
    model_internal_id: int
    provider_name: str
    routing_variant: str | None = None
    avg_latency_ms: int | None = None
    success_rate: float | None = 1.0
    cost_per_token: float | None = None
    uptime_24h: float | None = 1.0
    error_rate: float | None = 0.0
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    measured_at: datetime | None = attrs.field(factory=utcnow)
    measurement_period_hours: int | None = 24


@attrs.frozen(kw_only=True)
class ModelRanking:
    """A row of ``model_rankings``."""

    __table__: ClassVar[str] = "model_rankings"
    __pk__: ClassVar[str] = "id"
    __autoincrement__: ClassVar[bool] = True

    id: int | None = None
    model_internal_id: int
    ranking_source: str
    rank_position: int
    usage_percentage: float
    relative_score: float | None = None
    period_start: datetime
    period_end: datetime
    collected_at: datetime | None = attrs.field(factory=utcnow)
    data_quality: str | None = "scraped"


@attrs.frozen(kw_only=True)
class ConsensusMetric:
    """A row of ``consensus_metrics``."""

    __table__: ClassVar[str] = "consensus_metrics"
    __pk__: ClassVar[str] = "id"
    __autoincrement__: ClassVar[bool] = True

    id: int | None = None
    conversation_id: str
    baseline_model: str
    baseline_result: str
    consensus_result: str
    improvement_score: float
    quality_metrics: Json = json_field(nullable=False)
    cost_comparison: Json = json_field(nullable=False)
    time_comparison: Json = json_field(nullable=False)
    user_rating: int | None = None
    question_complexity: str
    question_category: str | None = None
    effectiveness_notes: str | None = None
    created_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class CostAnalytics:
    """A row of ``cost_analytics``."""

    __table__: ClassVar[str] = "cost_analytics"
    __pk__: ClassVar[str] = "id"
    __autoincrement__: ClassVar[bool] = True

    id: int | None = None
    conversation_id: str
    total_cost: float
    cost_per_stage: Json = json_field(nullable=False)
    tokens_per_stage: Json = json_field(nullable=False)
    routing_optimizations: Json = json_field(default=None)
    budget_threshold: float | None = None
    budget_utilized_percentage: float | None = None
    cost_efficiency_score: float | None = None
    optimization_opportunities: Json = json_field(default=None)
    provider_breakdown: Json = json_field(default=None)
    savings_achieved: float | None = 0.0
    created_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class FeatureUsage:
    """A row of ``feature_usage``."""

    __table__: ClassVar[str] = "feature_usage"
    __pk__: ClassVar[str] = "id"
    __autoincrement__: ClassVar[bool] = True

    id: int | None = None
    conversation_id: str
    features_used: Json = json_field(nullable=False)
    routing_variants_used: Json = json_field(default=None)
    fallback_events: int | None = 0
    provider_switches: int | None = 0
    rate_limit_hits: int | None = 0
    error_recoveries: int | None = 0
    performance_metrics: Json = json_field(default=None)
    advanced_features_used: Json = json_field(default=None)
    cost_optimizations_applied: Json = json_field(default=None)
    created_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class ProfileTemplate:
    """A row of ``profile_templates``."""

    __table__: ClassVar[str] = "profile_templates"
    __pk__: ClassVar[str] = "id"

    id: str = attrs.field(factory=uuid7)
    name: str
    description: str
    template_version: str | None = "1.0"
    selection_criteria: Json = json_field(nullable=False)
    routing_preferences: Json = json_field(default=None)
    cost_controls: Json = json_field(default=None)
    performance_targets: Json = json_field(default=None)
    scope_applicability: Json = json_field(nullable=False)
    auto_update: bool | None = True
    learning_enabled: bool | None = True
    expert_mode: bool | None = False
    created_by: str | None = None
    usage_count: int | None = 0
    effectiveness_score: float | None = None
    last_updated: datetime | None = attrs.field(factory=utcnow)
    created_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class ModelSelection:
    """A row of ``model_selection_history``."""

    __table__: ClassVar[str] = "model_selection_history"
    __pk__: ClassVar[str] = "id"
    __autoincrement__: ClassVar[bool] = True

    id: int | None = None
    conversation_id: str
    selection_criteria: Json = json_field(nullable=False)
    selected_models: Json = json_field(nullable=False)
    selection_reasoning: str | None = None
    alternative_models: Json = json_field(default=None)
    selection_performance: str | None = None
    user_feedback: int | None = None
    learning_applied: bool | None = False
    template_used: str | None = None
    created_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class PerformanceMetric:
    """A row of ``performance_metrics``."""

    __table__: ClassVar[str] = "performance_metrics"
    __pk__: ClassVar[str] = "id"
    __autoincrement__: ClassVar[bool] = True

    id: int | None = None
    timestamp: datetime
    conversation_id: str | None = None
    total_duration: int
    overall_efficiency: float | None = 0.0
    openrouter_latency: int | None = 0
    memory_usage: int | None = 0
    total_cost: float | None = 0.0
    quality_score: float | None = 0.0
    metrics_data: Json = json_field(default=None)
    created_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class ActivityLog:
    """A row of ``activity_log``."""

    __table__: ClassVar[str] = "activity_log"
    __pk__: ClassVar[str] = "id"
    __autoincrement__: ClassVar[bool] = True

    id: int | None = None
    event_type: EventType
    conversation_id: str | None = None
    user_id: str | None = None
    stage: Stage | None = None
    model_used: str | None = None
    provider_name: str | None = None
    cost: float | None = None
    duration_ms: int | None = None
    tokens_used: int | None = None
    error_message: str | None = None
    metadata: Json = json_field(default=None)
    created_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class License:
    """A row of ``licenses`` (Hive migration 011; replaces the old ``license.json``).

    ``key`` is a secret: it is left out of ``repr``.
    """

    __table__: ClassVar[str] = "licenses"
    __pk__: ClassVar[str] = "id"
    __autoincrement__: ClassVar[bool] = True

    id: int | None = None
    key: str = attrs.field(repr=False)
    tier: str
    daily_limit: int
    features: Json = json_field(default=None)
    user_id: str
    email: str | None = None
    expires_at: datetime | None = None
    validated_at: datetime
    created_at: datetime | None = attrs.field(factory=utcnow)
    updated_at: datetime | None = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class DailyUsageSummary:
    """A row of ``daily_usage_summary`` (Hive migration 012), one per user and day."""

    __table__: ClassVar[str] = "daily_usage_summary"
    __pk__: ClassVar[str] = "id"

    id: str = attrs.field(factory=uuid7)
    user_id: str
    date: date
    conversation_count: int = 0
    total_cost: float = 0.0
    total_tokens: int = 0
    average_response_time: float | None = None
    created_at: datetime = attrs.field(factory=utcnow)
    updated_at: datetime = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class ConsensusFact:
    """A row of ``consensus_facts`` (Hive migration 013), the authoritative knowledge store."""

    __table__: ClassVar[str] = "consensus_facts"
    __pk__: ClassVar[str] = "id"

    id: str = attrs.field(factory=uuid7)
    semantic_fingerprint: str
    content: str
    curator_confidence: float = 0.0
    source_question: str
    source_conversation_id: str | None = None
    consensus_stages: Json = json_field(nullable=False, factory=list)
    created_at: datetime = attrs.field(factory=utcnow)
    last_accessed: datetime = attrs.field(factory=utcnow)
    access_count: int = 0
    related_facts: Json = json_field(nullable=False, factory=list)
    topics: Json = json_field(nullable=False, factory=list)
    entities: Json = json_field(nullable=False, factory=list)
    metadata: Json = json_field(nullable=False, factory=dict)


CORE_ENTITIES: tuple[type, ...] = (
    User,
    Configuration,
    OpenRouterProvider,
    OpenRouterModel,
    PipelineProfile,
    ConsensusProfile,
    Conversation,
    Message,
    UsageRecord,
    BudgetLimit,
    SyncMetadata,
    Setting,
    ConsensusSetting,
    ConversationUsage,
    KnowledgeConversation,
    CuratorTruth,
    ConversationContext,
    ConversationTopic,
    ConversationKeyword,
    ImprovementPattern,
    ConversationThread,
    PendingSync,
    ProviderPerformance,
    ModelRanking,
    ConsensusMetric,
    CostAnalytics,
    FeatureUsage,
    ProfileTemplate,
    ModelSelection,
    PerformanceMetric,
    ActivityLog,
    License,
    DailyUsageSummary,
    ConsensusFact,
)
"""Every entity of the core Hive schema, in table-creation order."""
