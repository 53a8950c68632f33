-- @name: hive_schema
-- @description: The canonical Hive schema: tables of Hive migrations 001-005 with the 010 columns, consensus_profiles in its 009 (TypeScript) shape, licenses (011), daily_usage_summary (012), consensus_facts (013), and their indexes.
-- Differences from what the old Hive runner left on disk: conversations.consensus_profile_id
-- references consensus_profiles (not the dropped consensus_profiles_backup); string defaults
-- use single quotes; the 010 columns are declared inline.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT UNIQUE,
    license_key TEXT,
    tier TEXT DEFAULT 'FREE',
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT DEFAULT CURRENT_TIMESTAMP,
    subscription_tier TEXT DEFAULT 'free',
    last_d1_sync TEXT
);

CREATE TABLE configurations (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    encrypted BOOLEAN DEFAULT 0,
    user_id TEXT,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (user_id) REFERENCES users(id)
);

CREATE TABLE openrouter_providers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    model_count INTEGER DEFAULT 0,
    average_cost REAL DEFAULT 0.0,
    capabilities TEXT DEFAULT '[]',
    last_updated TEXT NOT NULL,
    is_active BOOLEAN DEFAULT 1,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE openrouter_models (
    internal_id INTEGER PRIMARY KEY AUTOINCREMENT, -- Stable rowid, NEVER changes
    openrouter_id TEXT NOT NULL UNIQUE,            -- Current OpenRouter model ID (can change)
    name TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    provider_name TEXT NOT NULL,
    description TEXT DEFAULT '',
    capabilities TEXT DEFAULT '[]',
    pricing_input REAL DEFAULT 0.0,
    pricing_output REAL DEFAULT 0.0,
    pricing_image REAL,
    pricing_request REAL,
    context_window INTEGER DEFAULT 4096,
    created_at INTEGER NOT NULL,
    input_modalities TEXT DEFAULT '["text"]',
    output_modalities TEXT DEFAULT '["text"]',
    is_active BOOLEAN DEFAULT 1,
    last_updated TEXT NOT NULL,
    FOREIGN KEY (provider_id) REFERENCES openrouter_providers(id)
);

CREATE TABLE pipeline_profiles (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    user_id TEXT,
    is_default BOOLEAN DEFAULT 0,
    -- New stable foreign key references (bulletproof against model ID changes)
    generator_model_internal_id INTEGER NOT NULL,
    generator_temperature REAL DEFAULT 0.7,
    refiner_model_internal_id INTEGER NOT NULL,
    refiner_temperature REAL DEFAULT 0.7,
    validator_model_internal_id INTEGER NOT NULL,
    validator_temperature REAL DEFAULT 0.7,
    curator_model_internal_id INTEGER NOT NULL,
    curator_temperature REAL DEFAULT 0.7,
    -- Legacy columns for migration (will be removed after migration)
    generator_provider TEXT,
    generator_model TEXT,
    refiner_provider TEXT,
    refiner_model TEXT,
    validator_provider TEXT,
    validator_model TEXT,
    curator_provider TEXT,
    curator_model TEXT,
    -- Dynamic template columns
    is_dynamic_template BOOLEAN DEFAULT 0,
    selection_criteria TEXT,
    routing_preferences TEXT,
    cost_controls TEXT,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (user_id) REFERENCES users(id),
    FOREIGN KEY (generator_model_internal_id) REFERENCES openrouter_models(internal_id),
    FOREIGN KEY (refiner_model_internal_id) REFERENCES openrouter_models(internal_id),
    FOREIGN KEY (validator_model_internal_id) REFERENCES openrouter_models(internal_id),
    FOREIGN KEY (curator_model_internal_id) REFERENCES openrouter_models(internal_id)
);

CREATE TABLE consensus_profiles (
    id TEXT PRIMARY KEY,
    profile_name TEXT NOT NULL,
    generator_model TEXT NOT NULL,
    refiner_model TEXT NOT NULL,
    validator_model TEXT NOT NULL,
    curator_model TEXT NOT NULL,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    consensus_profile_id TEXT,
    total_cost REAL DEFAULT 0,
    input_tokens INTEGER DEFAULT 0,
    output_tokens INTEGER DEFAULT 0,
    start_time TEXT,
    end_time TEXT,
    success_rate TEXT DEFAULT '100',
    quality_score REAL DEFAULT 0.95,
    consensus_improvement INTEGER DEFAULT 15,
    confidence_level TEXT DEFAULT 'High',
    success INTEGER DEFAULT 1,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (user_id) REFERENCES users(id),
    FOREIGN KEY (consensus_profile_id) REFERENCES consensus_profiles(id)
);

CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    stage TEXT,
    model_used TEXT,
    timestamp TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (conversation_id) REFERENCES conversations(id)
);

CREATE TABLE usage_records (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    conversation_id TEXT,
    action_type TEXT NOT NULL, -- 'conversation', 'model_call', 'sync'
    cost REAL DEFAULT 0.0,
    tokens_input INTEGER DEFAULT 0,
    tokens_output INTEGER DEFAULT 0,
    model_used TEXT,
    timestamp TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (user_id) REFERENCES users(id),
    FOREIGN KEY (conversation_id) REFERENCES conversations(id)
);

CREATE TABLE budget_limits (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    period_type TEXT NOT NULL, -- 'daily', 'monthly', 'yearly'
    limit_amount REAL NOT NULL,
    current_spent REAL DEFAULT 0.0,
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    is_active BOOLEAN DEFAULT 1,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (user_id) REFERENCES users(id)
);

CREATE TABLE sync_metadata (
    id TEXT PRIMARY KEY,
    sync_type TEXT NOT NULL,
    started_at TEXT NOT NULL,
    completed_at TEXT,
    status TEXT NOT NULL,
    providers_synced INTEGER DEFAULT 0,
    models_synced INTEGER DEFAULT 0,
    error_message TEXT,
    next_sync_due TEXT NOT NULL,
    rankings_last_synced TEXT,
    provider_performance_synced TEXT,
    intelligence_version TEXT DEFAULT '1.7.0',
    created_at TEXT DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    description TEXT,
    updated_at TEXT DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE consensus_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TEXT DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE conversation_usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL UNIQUE,
    user_id TEXT,
    timestamp TEXT DEFAULT CURRENT_TIMESTAMP,
    license_key TEXT,
    verified INTEGER DEFAULT 0,
    conversation_token TEXT,
    question_hash TEXT,
    d1_verified_at TEXT,
    FOREIGN KEY (conversation_id) REFERENCES conversations(id),
    FOREIGN KEY (user_id) REFERENCES users(id)
);

CREATE TABLE knowledge_conversations (
    id TEXT PRIMARY KEY,
    conversation_id TEXT,  -- Links to main conversations table
    question TEXT NOT NULL,
    final_answer TEXT NOT NULL,
    source_of_truth TEXT NOT NULL,
    conversation_context TEXT,
    profile_id TEXT,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    last_updated TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (conversation_id) REFERENCES conversations(id)
);

CREATE TABLE curator_truths (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL UNIQUE,
    curator_output TEXT NOT NULL,
    confidence_score REAL NOT NULL,
    topic_summary TEXT,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (conversation_id) REFERENCES conversations(id)
);

CREATE TABLE conversation_context (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    referenced_conversation_id TEXT NOT NULL,
    relevance_score REAL DEFAULT 1.0,
    context_type TEXT CHECK (context_type IN ('recent_24h', 'thematic', 'direct_reference')),
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (conversation_id) REFERENCES conversations(id),
    FOREIGN KEY (referenced_conversation_id) REFERENCES conversations(id)
);

CREATE TABLE conversation_topics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    relevance_score REAL DEFAULT 1.0,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (conversation_id) REFERENCES conversations(id)
);

CREATE TABLE conversation_keywords (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    keyword TEXT NOT NULL,
    frequency INTEGER DEFAULT 1,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (conversation_id) REFERENCES conversations(id)
);

CREATE TABLE improvement_patterns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    from_stage TEXT NOT NULL,
    to_stage TEXT NOT NULL,
    improvement_type TEXT NOT NULL,
    description TEXT NOT NULL,
    question_type TEXT NOT NULL,
    before_content TEXT,
    after_content TEXT,
    improvement_score REAL,
    meta_commentary TEXT,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (conversation_id) REFERENCES conversations(id)
);

CREATE TABLE conversation_threads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    child_conversation_id TEXT NOT NULL,
    parent_conversation_id TEXT NOT NULL,
    thread_type TEXT CHECK (thread_type IN ('follow_up', 'clarification', 'list_reference', 'continuation')),
    reference_text TEXT, -- The text that indicated this was a follow-up
    confidence_score REAL DEFAULT 1.0,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (child_conversation_id) REFERENCES conversations(id),
    FOREIGN KEY (parent_conversation_id) REFERENCES conversations(id)
);

CREATE TABLE pending_sync (
    conversation_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    question_hash TEXT NOT NULL,
    conversation_token TEXT NOT NULL,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    sync_attempts INTEGER DEFAULT 0,
    last_attempt_at TEXT,
    error_message TEXT
);

CREATE TABLE provider_performance (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_internal_id INTEGER NOT NULL,
    provider_name TEXT NOT NULL,
    routing_variant TEXT, -- :nitro, :floor, :online, :free, :default
    avg_latency_ms INTEGER,
    success_rate REAL DEFAULT 1.0,
    cost_per_token REAL,
    uptime_24h REAL DEFAULT 1.0,
    error_rate REAL DEFAULT 0.0,
    last_success_at TEXT,
    last_failure_at TEXT,
    measured_at TEXT DEFAULT CURRENT_TIMESTAMP,
    measurement_period_hours INTEGER DEFAULT 24,
    FOREIGN KEY (model_internal_id) REFERENCES openrouter_models(internal_id)
);

CREATE TABLE model_rankings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_internal_id INTEGER NOT NULL,
    ranking_source TEXT NOT NULL, -- 'openrouter_programming_weekly', 'openrouter_programming_monthly'
    rank_position INTEGER NOT NULL,
    usage_percentage REAL NOT NULL,
    relative_score REAL, -- Normalized score for comparison
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    collected_at TEXT DEFAULT CURRENT_TIMESTAMP,
    data_quality TEXT DEFAULT 'scraped', -- 'scraped', 'api', 'estimated'
    FOREIGN KEY (model_internal_id) REFERENCES openrouter_models(internal_id)
);

CREATE TABLE consensus_metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    baseline_model TEXT NOT NULL, -- Single model used for comparison
    baseline_result TEXT NOT NULL, -- Single model output
    consensus_result TEXT NOT NULL, -- 4-stage consensus output
    improvement_score REAL NOT NULL, -- 0-1 score: consensus improvement over baseline
    quality_metrics TEXT NOT NULL, -- JSON: correctness, completeness, architecture, etc.
    cost_comparison TEXT NOT NULL, -- JSON: single model cost vs consensus cost
    time_comparison TEXT NOT NULL, -- JSON: single model time vs consensus time
    user_rating INTEGER, -- 1-5 user satisfaction rating
    question_complexity TEXT NOT NULL, -- minimal/basic/production
    question_category TEXT, -- coding/architecture/debugging/etc.
    effectiveness_notes TEXT,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (conversation_id) REFERENCES conversations(id)
);

CREATE TABLE cost_analytics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    total_cost REAL NOT NULL,
    cost_per_stage TEXT NOT NULL, -- JSON: {generator: 0.05, refiner: 0.03, etc.}
    tokens_per_stage TEXT NOT NULL, -- JSON: {generator: {input: 150, output: 300}, etc.}
    routing_optimizations TEXT, -- JSON: {stage: variant_used, savings: amount}
    budget_threshold REAL,
    budget_utilized_percentage REAL,
    cost_efficiency_score REAL, -- quality improvement per dollar spent
    optimization_opportunities TEXT, -- JSON: suggestions for cost reduction
    provider_breakdown TEXT, -- JSON: cost per provider used
    savings_achieved REAL DEFAULT 0.0,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (conversation_id) REFERENCES conversations(id)
);

CREATE TABLE feature_usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    features_used TEXT NOT NULL, -- JSON: {streaming: true, json_mode: false, tools: ['web_search']}
    routing_variants_used TEXT, -- JSON: {generator: ':nitro', refiner: ':default', etc.}
    fallback_events INTEGER DEFAULT 0,
    provider_switches INTEGER DEFAULT 0,
    rate_limit_hits INTEGER DEFAULT 0,
    error_recoveries INTEGER DEFAULT 0,
    performance_metrics TEXT, -- JSON: {avg_latency: 1200, total_tokens: 1500, etc.}
    advanced_features_used TEXT, -- JSON: {function_calling: false, multimodal: false}
    cost_optimizations_applied TEXT, -- JSON: optimization strategies used
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (conversation_id) REFERENCES conversations(id)
);

CREATE TABLE profile_templates (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    template_version TEXT DEFAULT '1.0',
    selection_criteria TEXT NOT NULL, -- JSON: complex criteria for model selection
    routing_preferences TEXT, -- JSON: preferred routing variants per stage
    cost_controls TEXT, -- JSON: budget limits and optimization rules
    performance_targets TEXT, -- JSON: latency, quality targets
    scope_applicability TEXT NOT NULL, -- JSON: ['minimal', 'basic', 'production']
    auto_update BOOLEAN DEFAULT 1, -- Whether to auto-update with new rankings
    learning_enabled BOOLEAN DEFAULT 1, -- Whether to learn from usage patterns
    expert_mode BOOLEAN DEFAULT 0, -- Whether this requires expert knowledge
    created_by TEXT, -- User ID or 'system'
    usage_count INTEGER DEFAULT 0,
    effectiveness_score REAL, -- Measured effectiveness over time
    last_updated TEXT DEFAULT CURRENT_TIMESTAMP,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE model_selection_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    selection_criteria TEXT NOT NULL, -- JSON: criteria used for selection
    selected_models TEXT NOT NULL, -- JSON: {generator: 'model_id', refiner: 'model_id', etc.}
    selection_reasoning TEXT, -- JSON: why each model was selected
    alternative_models TEXT, -- JSON: other models that were considered
    selection_performance TEXT, -- JSON: how well the selection performed
    user_feedback INTEGER, -- 1-5 rating of selection quality
    learning_applied BOOLEAN DEFAULT 0, -- Whether selection influenced future choices
    template_used TEXT, -- Template ID if selection was template-based
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (conversation_id) REFERENCES conversations(id)
);

CREATE TABLE performance_metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TEXT NOT NULL,
    conversation_id TEXT,
    total_duration INTEGER NOT NULL, -- Total pipeline duration in ms
    overall_efficiency REAL DEFAULT 0, -- Overall efficiency score
    openrouter_latency INTEGER DEFAULT 0, -- OpenRouter API latency
    memory_usage INTEGER DEFAULT 0, -- Memory usage in bytes
    total_cost REAL DEFAULT 0, -- Total cost in USD
    quality_score REAL DEFAULT 0, -- Quality score 0-10
    metrics_data TEXT, -- JSON: Full PerformanceMetrics object
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (conversation_id) REFERENCES conversations(id)
);

CREATE TABLE activity_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type TEXT NOT NULL CHECK (event_type IN (
        'query_start', 'query_complete', 'query_error',
        'model_switch', 'fallback', 'rate_limit',
        'stage_start', 'stage_complete', 'stage_error',
        'pipeline_complete', 'export', 'budget_alert',
        'cost_alert', 'quality_alert', 'performance_alert'
    )),
    conversation_id TEXT,
    user_id TEXT,
    stage TEXT CHECK (stage IN ('generator', 'refiner', 'validator', 'curator')),
    model_used TEXT,
    provider_name TEXT,
    cost REAL,
    duration_ms INTEGER,
    tokens_used INTEGER,
    error_message TEXT,
    metadata TEXT, -- JSON for additional event-specific data
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (conversation_id) REFERENCES conversations(id),
    FOREIGN KEY (user_id) REFERENCES users(id)
);

CREATE TABLE licenses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    tier TEXT NOT NULL,
    daily_limit INTEGER NOT NULL,
    features TEXT, -- JSON
    user_id TEXT NOT NULL,
    email TEXT,
    expires_at TEXT,
    validated_at TEXT NOT NULL,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE daily_usage_summary (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    date DATE NOT NULL,
    conversation_count INTEGER NOT NULL DEFAULT 0,
    total_cost REAL NOT NULL DEFAULT 0.0,
    total_tokens INTEGER NOT NULL DEFAULT 0,
    average_response_time REAL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE,
    UNIQUE(user_id, date)
);

CREATE TABLE consensus_facts (
    id TEXT PRIMARY KEY,
    semantic_fingerprint TEXT NOT NULL UNIQUE,
    content TEXT NOT NULL,
    curator_confidence REAL NOT NULL DEFAULT 0.0,
    source_question TEXT NOT NULL,
    source_conversation_id TEXT,
    consensus_stages TEXT NOT NULL DEFAULT '[]', -- JSON
    created_at TEXT NOT NULL,
    last_accessed TEXT NOT NULL,
    access_count INTEGER NOT NULL DEFAULT 0,
    related_facts TEXT NOT NULL DEFAULT '[]', -- JSON
    topics TEXT NOT NULL DEFAULT '[]', -- JSON
    entities TEXT NOT NULL DEFAULT '[]', -- JSON
    metadata TEXT NOT NULL DEFAULT '{}' -- JSON
);

CREATE INDEX idx_configurations_user ON configurations(user_id);
CREATE INDEX idx_models_provider ON openrouter_models(provider_id);
CREATE INDEX idx_pipeline_profiles_user ON pipeline_profiles(user_id);
CREATE INDEX idx_conversations_user ON conversations(user_id);
CREATE INDEX idx_conversations_profile ON conversations(consensus_profile_id);
CREATE INDEX idx_messages_conversation ON messages(conversation_id);
CREATE INDEX idx_usage_user ON usage_records(user_id);
CREATE INDEX idx_usage_timestamp ON usage_records(timestamp);
CREATE INDEX idx_budget_user ON budget_limits(user_id);
CREATE INDEX idx_models_name ON openrouter_models(name);
CREATE INDEX idx_models_provider_name ON openrouter_models(provider_name);
CREATE INDEX idx_profiles_name ON pipeline_profiles(name);
CREATE INDEX idx_profiles_default ON pipeline_profiles(is_default);
CREATE INDEX idx_usage_conversation ON conversation_usage(conversation_id);
CREATE INDEX idx_usage_timestamp_legacy ON conversation_usage(timestamp);
CREATE INDEX idx_knowledge_conversations_id ON knowledge_conversations(conversation_id);
CREATE INDEX idx_knowledge_conversations_created ON knowledge_conversations(created_at DESC);
CREATE INDEX idx_knowledge_conversations_question ON knowledge_conversations(question);
CREATE INDEX idx_curator_truths_conv ON curator_truths(conversation_id);
CREATE INDEX idx_curator_truths_confidence ON curator_truths(confidence_score DESC);
CREATE INDEX idx_conversation_context_conv ON conversation_context(conversation_id);
CREATE INDEX idx_conversation_context_ref ON conversation_context(referenced_conversation_id);
CREATE INDEX idx_conversation_context_type ON conversation_context(context_type);
CREATE INDEX idx_conversation_topics_conv ON conversation_topics(conversation_id);
CREATE INDEX idx_conversation_keywords_conv ON conversation_keywords(conversation_id);
CREATE INDEX idx_improvement_patterns_conv ON improvement_patterns(conversation_id);
CREATE INDEX idx_improvement_patterns_type ON improvement_patterns(improvement_type);
CREATE INDEX idx_improvement_patterns_question_type ON improvement_patterns(question_type);
CREATE INDEX idx_improvement_patterns_stages ON improvement_patterns(from_stage, to_stage);
CREATE INDEX idx_conversation_threads_child ON conversation_threads(child_conversation_id);
CREATE INDEX idx_conversation_threads_parent ON conversation_threads(parent_conversation_id);
CREATE INDEX idx_conversation_threads_type ON conversation_threads(thread_type);
CREATE INDEX idx_conversation_threads_created ON conversation_threads(created_at DESC);
CREATE INDEX idx_pending_sync_user ON pending_sync(user_id);
CREATE INDEX idx_pending_sync_created ON pending_sync(created_at);
CREATE INDEX idx_pending_sync_attempts ON pending_sync(sync_attempts);
CREATE INDEX idx_provider_performance_model ON provider_performance(model_internal_id);
CREATE INDEX idx_provider_performance_provider ON provider_performance(provider_name);
CREATE INDEX idx_provider_performance_variant ON provider_performance(routing_variant);
CREATE INDEX idx_provider_performance_measured ON provider_performance(measured_at DESC);
CREATE INDEX idx_provider_performance_success ON provider_performance(success_rate DESC);
CREATE INDEX idx_provider_performance_latency ON provider_performance(avg_latency_ms ASC);
CREATE INDEX idx_model_rankings_model ON model_rankings(model_internal_id);
CREATE INDEX idx_model_rankings_source ON model_rankings(ranking_source);
CREATE INDEX idx_model_rankings_position ON model_rankings(rank_position ASC);
CREATE INDEX idx_model_rankings_collected ON model_rankings(collected_at DESC);
CREATE INDEX idx_model_rankings_period ON model_rankings(period_start, period_end);
CREATE INDEX idx_model_rankings_score ON model_rankings(relative_score DESC);
CREATE INDEX idx_consensus_metrics_conv ON consensus_metrics(conversation_id);
CREATE INDEX idx_consensus_metrics_improvement ON consensus_metrics(improvement_score DESC);
CREATE INDEX idx_consensus_metrics_complexity ON consensus_metrics(question_complexity);
CREATE INDEX idx_consensus_metrics_category ON consensus_metrics(question_category);
CREATE INDEX idx_consensus_metrics_rating ON consensus_metrics(user_rating DESC);
CREATE INDEX idx_consensus_metrics_created ON consensus_metrics(created_at DESC);
CREATE INDEX idx_cost_analytics_conv ON cost_analytics(conversation_id);
CREATE INDEX idx_cost_analytics_cost ON cost_analytics(total_cost DESC);
CREATE INDEX idx_cost_analytics_efficiency ON cost_analytics(cost_efficiency_score DESC);
CREATE INDEX idx_cost_analytics_created ON cost_analytics(created_at DESC);
CREATE INDEX idx_cost_analytics_budget ON cost_analytics(budget_utilized_percentage DESC);
CREATE INDEX idx_feature_usage_conv ON feature_usage(conversation_id);
CREATE INDEX idx_feature_usage_created ON feature_usage(created_at DESC);
CREATE INDEX idx_feature_usage_fallbacks ON feature_usage(fallback_events DESC);
CREATE INDEX idx_feature_usage_switches ON feature_usage(provider_switches DESC);
CREATE INDEX idx_profile_templates_name ON profile_templates(name);
CREATE INDEX idx_profile_templates_auto_update ON profile_templates(auto_update);
CREATE INDEX idx_profile_templates_effectiveness ON profile_templates(effectiveness_score DESC);
CREATE INDEX idx_profile_templates_usage ON profile_templates(usage_count DESC);
CREATE INDEX idx_profile_templates_expert ON profile_templates(expert_mode);
CREATE INDEX idx_model_selection_conv ON model_selection_history(conversation_id);
CREATE INDEX idx_model_selection_template ON model_selection_history(template_used);
CREATE INDEX idx_model_selection_feedback ON model_selection_history(user_feedback DESC);
CREATE INDEX idx_model_selection_created ON model_selection_history(created_at DESC);
CREATE INDEX idx_performance_metrics_conv ON performance_metrics(conversation_id);
CREATE INDEX idx_performance_metrics_timestamp ON performance_metrics(timestamp DESC);
CREATE INDEX idx_performance_metrics_duration ON performance_metrics(total_duration);
CREATE INDEX idx_performance_metrics_cost ON performance_metrics(total_cost);
CREATE INDEX idx_activity_log_event ON activity_log(event_type);
CREATE INDEX idx_activity_log_created ON activity_log(created_at DESC);
CREATE INDEX idx_activity_log_conversation ON activity_log(conversation_id);
CREATE INDEX idx_activity_log_user ON activity_log(user_id);
CREATE INDEX idx_activity_log_stage ON activity_log(stage);
CREATE UNIQUE INDEX idx_conversation_usage_token_unique ON conversation_usage(conversation_token) WHERE conversation_token IS NOT NULL;
CREATE INDEX idx_conversation_usage_license_key ON conversation_usage(license_key);
CREATE INDEX idx_conversation_usage_timestamp ON conversation_usage(timestamp);
CREATE INDEX idx_conversation_usage_verified ON conversation_usage(verified);
CREATE INDEX idx_licenses_user_id ON licenses(user_id);
CREATE INDEX idx_licenses_key ON licenses(key);
CREATE INDEX idx_daily_usage_user_date ON daily_usage_summary(user_id, date);
CREATE INDEX idx_daily_usage_date ON daily_usage_summary(date);
CREATE INDEX idx_consensus_facts_fingerprint ON consensus_facts(semantic_fingerprint);
CREATE INDEX idx_consensus_facts_created_at ON consensus_facts(created_at);
CREATE INDEX idx_consensus_facts_topics ON consensus_facts(topics);
CREATE INDEX idx_consensus_facts_access_count ON consensus_facts(access_count);
CREATE INDEX idx_consensus_facts_confidence ON consensus_facts(curator_confidence);

-- @down
DROP TABLE IF EXISTS consensus_facts;
DROP TABLE IF EXISTS daily_usage_summary;
DROP TABLE IF EXISTS licenses;
DROP TABLE IF EXISTS activity_log;
DROP TABLE IF EXISTS performance_metrics;
DROP TABLE IF EXISTS model_selection_history;
DROP TABLE IF EXISTS profile_templates;
DROP TABLE IF EXISTS feature_usage;
DROP TABLE IF EXISTS cost_analytics;
DROP TABLE IF EXISTS consensus_metrics;
DROP TABLE IF EXISTS model_rankings;
DROP TABLE IF EXISTS provider_performance;
DROP TABLE IF EXISTS pending_sync;
DROP TABLE IF EXISTS conversation_threads;
DROP TABLE IF EXISTS improvement_patterns;
DROP TABLE IF EXISTS conversation_keywords;
DROP TABLE IF EXISTS conversation_topics;
DROP TABLE IF EXISTS conversation_context;
DROP TABLE IF EXISTS curator_truths;
DROP TABLE IF EXISTS knowledge_conversations;
DROP TABLE IF EXISTS conversation_usage;
DROP TABLE IF EXISTS consensus_settings;
DROP TABLE IF EXISTS settings;
DROP TABLE IF EXISTS sync_metadata;
DROP TABLE IF EXISTS budget_limits;
DROP TABLE IF EXISTS usage_records;
DROP TABLE IF EXISTS messages;
DROP TABLE IF EXISTS conversations;
DROP TABLE IF EXISTS consensus_profiles;
DROP TABLE IF EXISTS pipeline_profiles;
DROP TABLE IF EXISTS openrouter_models;
DROP TABLE IF EXISTS openrouter_providers;
DROP TABLE IF EXISTS configurations;
DROP TABLE IF EXISTS users;
