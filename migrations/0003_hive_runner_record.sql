-- @name: hive_runner_record
-- @description: Hive's own migration record (schema_migrations) lists versions 1-13, so the old Hive apps find nothing to apply on this file.
--
-- Why: the old Hive apps run, at every start, each migrations/NNN_*.sql file whose number is
-- above the highest version in schema_migrations (read once), splitting it on ';', with foreign
-- keys on. 010_rollback.sql counts as 10. On a file they did not build themselves that destroys
-- data or stops the app: 006 drops consensus_profiles (60 of 70 rows gone on a v5 file), 010
-- adds columns that exist ("duplicate column name: subscription_tier"), 001 creates tables that
-- exist. This file's schema is the one Hive's 001-013 describe (migration 0001), so their
-- record says so. Missing versions are added with the names Hive's runner records; rows that
-- are there (a v9 file's 1-9) keep their dates. The table is the runner's own shape.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
);

INSERT OR IGNORE INTO schema_migrations (version, name, applied_at) VALUES
    (1, 'initial_schema', strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    (2, 'knowledge_tables', strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    (3, 'memory_clustering', strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    (4, 'sync_tracking', strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    (5, 'indexes', strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    (6, 'fix_consensus_profiles_schema', strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    (7, 'seed_initial_models', strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    (8, 'unknown', strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    (9, 'unknown', strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    (10, 'remove_local_credit_tracking', strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    (11, 'add_licenses_table', strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    (12, 'Add daily usage tracking for plan recommendations', strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    (13, 'unknown', strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'));

-- @down
-- Hive's record stays as it is: without it an old Hive app would re-apply its migrations over
-- tables that already have their shape (see above). There is nothing else to undo; the
-- statement below only gives the step a body.
SELECT 'schema_migrations is kept for the old Hive apps';
