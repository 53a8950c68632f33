"""pytest fixtures for hive-store plugin authors (registered as a ``pytest11`` entry point).

Work in progress: see issue 6.
"""
