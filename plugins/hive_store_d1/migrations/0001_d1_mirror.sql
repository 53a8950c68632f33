-- @name: d1_mirror
-- @description: the D1 mirror's local bookkeeping: outbox, row clocks, dead letters, state
--
-- Nothing is written here unless D1 mirroring is configured for the process that writes.
-- Keys (pk) are stored as the row's own primary-key value (TEXT or INTEGER: no type).

-- Captured in the same transaction as the write (hook hive_store_before_commit), one entry per
-- written row and transaction; coalesced per row when pushed, deleted once D1 acknowledged.
CREATE TABLE hive_store_d1_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl TEXT NOT NULL,
    pk NOT NULL,
    hlc TEXT NOT NULL
);
CREATE INDEX hive_store_d1_outbox_key ON hive_store_d1_outbox (tbl, pk);

-- The clock of the last version of each row written here or pulled (deleted = 1: a
-- tombstone). Pulls compare against it: last writer wins, ties broken by device id.
CREATE TABLE hive_store_d1_clock (
    tbl TEXT NOT NULL,
    pk NOT NULL,
    hlc TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tbl, pk)
) WITHOUT ROWID;

-- Rows D1 refused (direction 'push') or that could not be applied here (direction 'pull'),
-- with the error; they do not block the queue. `hive-store d1 dead-letter --retry` retries.
CREATE TABLE hive_store_d1_dead_letter (
    tbl TEXT NOT NULL,
    pk NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('push', 'pull')),
    op TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
    hlc TEXT NOT NULL,
    error TEXT NOT NULL,
    status INTEGER,
    code INTEGER,
    attempts INTEGER NOT NULL DEFAULT 1,
    first_failed_at TEXT NOT NULL,
    last_failed_at TEXT NOT NULL,
    PRIMARY KEY (tbl, pk, direction)
) WITHOUT ROWID;

-- Device id, the local clock, and per D1 database (target): remote schema fingerprint,
-- backfill progress, pull cursor, last push/pull outcome.
CREATE TABLE hive_store_d1_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- @down
DROP TABLE IF EXISTS hive_store_d1_state;
DROP TABLE IF EXISTS hive_store_d1_dead_letter;
DROP TABLE IF EXISTS hive_store_d1_clock;
DROP TABLE IF EXISTS hive_store_d1_outbox;
