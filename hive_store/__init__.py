"""hive_store: plugin-based storage for Hive, the four-stage AI consensus tool.

    import hive_store
    with hive_store.open("sqlite:///path/to/hive-ai.db") as store:
        run = store.record_consensus(question, stages)
        store.conversations.get(run.conversation_id)

Importing this package loads no plugin; plugins load on first use.
"""

from hive_store import entities, values
from hive_store.changes import Change, Changes, Op
from hive_store.entities import ContextType, EventType, Stage, ThreadType
from hive_store.errors import (
    ConfigurationError,
    Conflict,
    CorruptDatabase,
    DatabaseLocked,
    HiveStoreError,
    IntegrityError,
    MigrationError,
    NotFound,
    PluginError,
    PoolTimeout,
    RawValueError,
    StorageError,
    StoreClosed,
    ValidationError,
)
from hive_store.hookspecs import hookimpl, hookspec, listens_when
from hive_store.ids import uuid7
from hive_store.store import ConsensusRun, StageOutput, Store, open
from hive_store.values import RawValue

__version__ = "0.1.0"

__all__ = [
    "Change",
    "Changes",
    "ConfigurationError",
    "Conflict",
    "ConsensusRun",
    "ContextType",
    "CorruptDatabase",
    "DatabaseLocked",
    "EventType",
    "HiveStoreError",
    "IntegrityError",
    "MigrationError",
    "NotFound",
    "Op",
    "PluginError",
    "PoolTimeout",
    "RawValue",
    "RawValueError",
    "Stage",
    "StageOutput",
    "StorageError",
    "Store",
    "StoreClosed",
    "ThreadType",
    "ValidationError",
    "__version__",
    "entities",
    "hookimpl",
    "hookspec",
    "listens_when",
    "open",
    "uuid7",
    "values",
]
