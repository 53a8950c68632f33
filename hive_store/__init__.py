"""hive_store: plugin-based storage for Hive, the four-stage AI consensus tool.

    import hive_store
    with hive_store.open("sqlite:///path/to/hive-ai.db") as store:
        run = store.record_consensus(question, stages)
        store.conversations.get(run.conversation_id)

The asyncio API is the submodule :mod:`hive_store.aio` (``await hive_store.aio.open(…)``),
imported on first use. Importing this package loads no plugin; plugins load on first use.
"""

from typing import TYPE_CHECKING, Any

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
    TransactionConflict,
    ValidationError,
)
from hive_store.hookspecs import hookimpl, hookspec, listens_when
from hive_store.ids import uuid7
from hive_store.store import ConsensusRun, StageOutput, Store, open
from hive_store.values import RawValue

if TYPE_CHECKING:
    from hive_store import aio as aio

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # ``hive_store.aio`` after a plain ``import hive_store``: imported on first use, so that
    # importing hive_store stays cheap (no asyncio, no thread pools) and loads no plugin.
    if name == "aio":
        import importlib

        return importlib.import_module("hive_store.aio")
    raise AttributeError(f"module 'hive_store' has no attribute {name!r}")


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
    "TransactionConflict",
    "ValidationError",
    "__version__",
    "aio",
    "entities",
    "hookimpl",
    "hookspec",
    "listens_when",
    "open",
    "uuid7",
    "values",
]
