"""hive-store plugin: Hive's memory — full-text knowledge search, topics and themes, and
context retrieval, on the store's own tables.

Registered under the ``hive_store`` entry-point group (``memory``) like any third-party plugin;
it uses only the core's hooks, plus one of its own (:mod:`hive_store_memory.hookspecs`). When a
SQLite store opens, ``store.memory`` is a :class:`Memory` (typed: :func:`memory_of`)::

    with hive_store.open() as store:
        hits = store.memory.search("how does wal work", limit=10)         # ranked, highlighted
        hits[0].marked("**", "**"), hits[0].entity                         # snippet, the row
        store.memory.topics()                                               # subjects > themes
        ctx = store.memory.context_for("tell me more about that", now=...) # Hive's layers
        [(i.layer, i.reason) for i in ctx]

The modules: :mod:`~hive_store_memory.service` (``Memory``: keeping the index in step, status,
the API), :mod:`~hive_store_memory.search`, :mod:`~hive_store_memory.themes` (themes and topics
in the store), :mod:`~hive_store_memory.clustering` (the theme model),
:mod:`~hive_store_memory.topics` (topics over themes), :mod:`~hive_store_memory.context`,
:mod:`~hive_store_memory.index` (the FTS5 index and its change log),
:mod:`~hive_store_memory.sqlgen` (SQL generated from one description of the indexed tables),
:mod:`~hive_store_memory.indexer` (the background thread), :mod:`~hive_store_memory.text`.

What it adds to a database (migration set ``hive_store_memory``, all names prefixed
``hive_store_memory_``, so ``hive-store schema diff`` and the Hive schema stay as they are):

* a contentless FTS5 index of ``knowledge_conversations`` (question; answer and source of
  truth), ``curator_truths`` (topic summary; output), ``consensus_facts`` (source question;
  content) and ``messages`` (content). Triggers append every change to a log (also when
  another program, such as the Hive apps, writes the tables, and through ``INSERT OR
  REPLACE``): that is all a write pays. A background thread per open store
  (:mod:`hive_store_memory.indexer`), woken after each commit that touched these tables,
  applies the log to the index in short transactions of its own; a read through the plugin
  applies what is left first when that is little, and otherwise answers from the index as it
  is and says so (``complete``, ``pending``). Existing rows are indexed by the migration;
* themes (``hive_store_memory_themes``: name, keywords, centroid, term counts, topic, member
  count, last activity), memberships with a score (``hive_store_memory_members``) and topics
  above the themes (``hive_store_memory_topics``); conversations are tagged in Hive's
  ``conversation_topics`` with ``theme:<name>`` and Hive's hierarchy topics
  (``programming:python`` …); rows the index could not take (``hive_store_memory_failed``).

New knowledge entries join a theme when the indexer has indexed them, after the commit
(``HIVE_STORE_MEMORY_AUTO_ASSIGN=0`` turns that off, e.g. for a bulk import;
``store.memory.assign()`` or ``recluster`` catch up). ``store.memory.wait_idle()`` waits for the
indexer; ``store.memory.flush()`` catches up in the calling thread.
``HIVE_STORE_MEMORY_POLL`` (seconds, default 5, ``0`` = never) is how often the indexer looks
for changes other programs logged.

Command line: ``hive-store memory search "…" [--limit N] [--kind T] [--since T] [--group]
[--advanced]``, ``themes`` (topics with their themes), ``context "…"``, ``status``,
``reindex``, ``recluster [--threshold X]``.

A health check (``memory_index``) catches up, then warns when that failed (the indexer's error),
when rows were set aside or the indexer stopped, when the index and the tables differ (e.g.
triggers dropped by a table rebuild; ``reindex`` restores them) or the themes need
``recluster``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from hive_store.changes import Change
from hive_store.errors import ConfigurationError, HiveStoreError
from hive_store.health import HealthResult
from hive_store.hookspecs import hookimpl, listens_when
from hive_store.migrations import MigrationSet
from hive_store.store import Store
from hive_store_memory.clustering import ClusterParams, Embedder
from hive_store_memory.common import describe
from hive_store_memory.hookspecs import add_hookspecs
from hive_store_memory.index import KINDS, IndexStatus, SearchHit, SearchResults, has_pending
from hive_store_memory.indexer import Indexer
from hive_store_memory.results import ContextItem, MemoryContext, ReclusterReport, Theme, Topic
from hive_store_memory.service import Memory
from hive_store_memory.sqlgen import expand
from hive_store_memory.text import FollowUp, detect_follow_up, topics_for

__all__ = [
    "KINDS",
    "ClusterParams",
    "ContextItem",
    "Embedder",
    "FollowUp",
    "IndexStatus",
    "Indexer",
    "Memory",
    "MemoryContext",
    "ReclusterReport",
    "SearchHit",
    "SearchResults",
    "Theme",
    "Topic",
    "add_hookspecs",
    "detect_follow_up",
    "memory_of",
    "migration_set",
    "topics_for",
]

NAMESPACE = "hive_store_memory"
SERVICE = "memory"  # store.memory, astore.memory (the hive_store_services hook)
DEFAULT_POLL = 5.0
log = logging.getLogger("hive_store.memory")
_set: MigrationSet | None = None


def migration_set() -> MigrationSet:
    """The plugin's migration set (parsed once): the files of ``migrations/`` with their
    ``-- @include:`` lines expanded (:func:`hive_store_memory.sqlgen.expand`)."""
    global _set
    if _set is None:
        from importlib import resources

        root = resources.files("hive_store_memory.migrations")
        files = sorted((entry.name, expand(entry.read_text(encoding="utf-8")))
                       for entry in root.iterdir() if entry.name.endswith(".sql"))
        _set = MigrationSet.from_sql(NAMESPACE, files, depends_on=("hive_store",))
    return _set


def memory_of(store: Store) -> Memory:
    """``store.memory``, typed; :class:`hive_store.ConfigurationError` if the store has none
    (not SQLite, closed, or the plugin is disabled)."""
    memory = store.services.get(SERVICE)
    if not isinstance(memory, Memory):
        raise ConfigurationError(
            "this store has no memory (the memory plugin needs a SQLite store and must not be "
            "disabled with HIVE_STORE_DISABLE_PLUGINS)")
    return memory


def _auto_assign() -> bool:
    return os.environ.get("HIVE_STORE_MEMORY_AUTO_ASSIGN", "1").strip().lower() not in (
        "0", "false", "no", "off")


def _poll_interval() -> float | None:
    raw = os.environ.get("HIVE_STORE_MEMORY_POLL", "").strip().lower()
    if not raw:
        return DEFAULT_POLL
    if raw in ("0", "off", "no", "false", "never"):
        return None
    try:
        value = float(raw)
    except ValueError:
        log.warning("memory: HIVE_STORE_MEMORY_POLL=%r is not a number of seconds; using %s",
                    raw, DEFAULT_POLL)
        return DEFAULT_POLL
    return value if value > 0 and value < 1e9 else None


def _embedder(store: Store) -> Embedder | None:
    try:
        result: Embedder | None = store.plugins.pm.hook.hive_store_memory_embedder(store=store)
    except Exception as exc:
        log.error("memory: the hive_store_memory_embedder hook failed (%s); using TF-IDF",
                  describe(exc, limit=200))
        return None
    if result is not None and not isinstance(result, Embedder):
        log.error("memory: the embedder %r has no name/embed(); using TF-IDF", result)
        return None
    return result


@hookimpl
def hive_store_supported_dialects() -> Sequence[str]:
    # SQLite only (FTS5 tables, SQLite triggers and SQL functions): skipped, with one line in
    # `plugins --all` and `health`, on other backends.
    return ["sqlite"]


@hookimpl
def hive_store_register_migrations() -> Sequence[MigrationSet]:
    return [migration_set()]


@hookimpl
def hive_store_services(store: Store) -> dict[str, object] | None:
    if getattr(store.backend, "dialect", None) != "sqlite":
        return None
    add_hookspecs(store.plugins)
    return {SERVICE: Memory(store, embedder=_embedder(store), auto_assign=_auto_assign())}


@hookimpl
def hive_store_store_opened(store: Store) -> None:
    memory = store.services.get(SERVICE)
    if not isinstance(memory, Memory):
        return
    with store.backend.connection() as conn:
        if not memory.installed(conn):
            return  # not migrated to the plugin's latest schema: its reads say so
        waiting = has_pending(conn)  # e.g. rows other programs wrote while it was closed
    if getattr(store.backend, "read_only", False):
        return  # nothing may be written: reads search the index as it is and say so
    memory.indexer = Indexer(memory, poll_interval=_poll_interval()).start()
    if waiting:
        memory.wake()


@hookimpl
def hive_store_store_closing(store: Store) -> None:
    memory = store.services.get(SERVICE)  # the core detaches it after the closing hooks
    if isinstance(memory, Memory):
        memory.close()  # stops and joins the indexer thread; later calls raise StoreClosed


def _indexing(store: Store) -> bool:
    memory = store.services.get(SERVICE)
    return isinstance(memory, Memory) and memory.indexer is not None and not memory._closed


@hookimpl
@listens_when(_indexing)
def hive_store_after_commit(store: Store, changes: Sequence[Change]) -> None:
    # Only a note and a wake-up: the indexer applies the log in its own thread and
    # transactions, and waits for a pause in the writes before it does.
    memory = store.services.get(SERVICE)
    indexer = memory.indexer if isinstance(memory, Memory) else None
    if indexer is None:
        return
    tables = getattr(changes, "tables", None)  # hive_store.Changes: nothing per row
    if tables is None:
        tables = {change.table for change in changes}
    indexer.committed(not _INDEXED.isdisjoint(tables))


_INDEXED = frozenset(KINDS)


@hookimpl
def hive_store_register_commands(cli: Any) -> None:
    from hive_store_memory.cli import memory

    cli.add_command(memory)


@hookimpl
def hive_store_register_health_checks() -> Sequence[Any]:
    return [check_memory_index]


def check_memory_index(store: Store) -> list[HealthResult]:
    """``memory_index``: catches up (unless the database is read-only), then compares the
    full-text index with the tables, and reports rows set aside, a stopped indexer and themes
    that need ``recluster``."""
    memory = store.services.get(SERVICE)
    if not isinstance(memory, Memory) or memory._closed:
        return []
    caught_up = None
    if not memory._read_only_now():
        try:
            memory.flush()
        except ConfigurationError:
            raise
        except HiveStoreError as exc:
            caught_up = describe(exc)
    st = memory.status(flush=False)
    details = st.to_dict()

    def warn(message: str) -> list[HealthResult]:
        return [HealthResult(name="memory_index", status="warn", details=details,
                             message=message)]

    if memory._read_only_now() and st.pending:
        return warn(f"the database is read-only: {st.pending} logged changes are not "
                    "searchable yet")
    if caught_up is not None:
        return warn(f"the indexer cannot catch up ({caught_up}): {st.pending} logged changes "
                    "are not searchable yet")
    if st.failed:
        kind, key, error = st.failed_rows[0]
        return warn(f"{st.failed} rows could not be indexed and were set aside (first: {kind} "
                    f"{key!r}: {error}): fix the cause, then run `hive-store memory reindex`")
    if not st.in_step:
        problems = []
        if st.missing_triggers:
            problems.append(f"{len(st.missing_triggers)} triggers missing")
        differ = [k for k in st.rows if st.rows[k] != st.documents.get(k, 0)]
        if differ:
            problems.append("documents differ from rows in " + ", ".join(differ))
        if st.indexed != sum(st.documents.values()):
            problems.append(f"{st.indexed} indexed for {sum(st.documents.values())} documents")
        return warn("; ".join(problems) + ": run `hive-store memory reindex`")
    if st.themes_stale:
        return warn(f"themes were built with {st.space}, the active space is "
                    f"{st.active_space}: run `hive-store memory recluster`")
    if st.unassigned:
        failed = (f" (last failure, {memory.last_failure[0]}: {memory.last_failure[1]})"
                  if memory.last_failure else "")
        return warn(f"{st.unassigned} knowledge entries have no theme: run "
                    f"`hive-store memory recluster`{failed}")
    total = sum(st.documents.values())
    return [HealthResult(name="memory_index", status="ok", details=details,
                         message=f"{total} documents, {st.themes} themes in {st.topics} topics")]
