"""A plugin that cannot be imported (as if a dependency of it were missing)."""

raise ImportError(
    "hive_store_broken.broken_import is broken on purpose: its dependency "
    "'hive_store_no_such_dependency' is not installed"
)
