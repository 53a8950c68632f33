"""hive-store plugin: full-text knowledge search, thematic clustering and context retrieval
(work in progress)."""
