"""hive-store plugin: health checks, statistics and maintenance (work in progress)."""
