"""The core Hive schema as versioned migration files (read with importlib.resources)."""
