-- @name: topics
-- @description: topics above the themes, term counts per theme, rows the index cannot take, document times as instants
--
-- Topics (hive_store_memory/topics.py): the subjects of the knowledge base, built above the
-- themes by merging them (average-link clustering of the themes' class-based TF-IDF vectors)
-- and named from their current keywords. A theme belongs to one topic (topic_id; NULL until
-- topics are built); a topic's centroid (its heaviest terms) places themes founded between two
-- builds.
--
-- tf: the raw counts of a theme's members' terms (its 200 most frequent), from which topics,
-- keywords and names are computed with the current document frequencies. Themes built before
-- this migration start with '{}' and gain counts as entries join them (`hive-store memory
-- recluster` fills them at once).
--
-- hive_store_memory_failed: rows the index could not take (a constraint, a full key space),
-- set aside by the indexer instead of retrying them forever; `hive-store memory reindex` tries
-- them again and empties it.
--
-- Document times: 0001/0002 stored julianday() of the rows' time text, which is right for
-- every text form SQLite reads (`YYYY-MM-DD HH:MM:SS`, RFC 3339 with Z or an offset and any
-- number of fraction digits) but NULL for epoch numbers (seconds or milliseconds), so those
-- rows fell out of every time window. The statements generated below (sqlgen.instant_sql)
-- read epoch numbers too; the indexer uses the same expression from now on.

ALTER TABLE hive_store_memory_themes ADD COLUMN topic_id INTEGER;
ALTER TABLE hive_store_memory_themes ADD COLUMN tf TEXT NOT NULL DEFAULT '{}';
CREATE INDEX hive_store_memory_themes_topic ON hive_store_memory_themes (topic_id);

CREATE TABLE hive_store_memory_topics (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    keywords TEXT NOT NULL DEFAULT '[]',   -- JSON: the heaviest terms, heaviest first
    centroid TEXT NOT NULL DEFAULT '{}',   -- JSON: {term: weight}, the heaviest 100
    member_count INTEGER NOT NULL DEFAULT 0,
    theme_count INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);

CREATE TABLE hive_store_memory_failed (
    kind TEXT NOT NULL,                    -- the source table
    key NOT NULL,                          -- its primary key, as stored
    error TEXT NOT NULL,                   -- the error's type and message
    failed_at TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);

-- @include: instants_v1

-- @down
DROP TABLE hive_store_memory_failed;
DROP TABLE hive_store_memory_topics;
DROP INDEX hive_store_memory_themes_topic;
ALTER TABLE hive_store_memory_themes DROP COLUMN tf;
ALTER TABLE hive_store_memory_themes DROP COLUMN topic_id;
DELETE FROM hive_store_memory_meta WHERE key IN ('topics_members', 'topics_generation');
-- Document times stay as this migration computed them (0002 reads them the same way, and
-- finds the rows with epoch times it missed before).
