"""hive-store plugin: Hive's memory — full-text knowledge search, thematic clustering and
context retrieval, on the store's own tables.

Registered under the ``hive_store`` entry-point group (``memory``) like any third-party plugin;
it uses only the core's hooks, plus one of its own (:mod:`hive_store_memory.hookspecs`). When a
SQLite store opens, ``store.memory`` is a :class:`Memory` (typed: :func:`memory_of`)::

    with hive_store.open() as store:
        hits = store.memory.search("wal checkpoint", limit=10)            # ranked, highlighted
        hits[0].marked("**", "**"), hits[0].entity                         # snippet, the row
        store.memory.themes()                                               # themes, largest first
        ctx = store.memory.context_for("tell me more about that", now=...) # Hive's layers
        [(i.layer, i.reason) for i in ctx]

What it adds to a database (migration set ``hive_store_memory``, all names prefixed
``hive_store_memory_``, so ``hive-store schema diff`` and the Hive schema stay as they are):

* a contentless FTS5 index of ``knowledge_conversations`` (question; answer and source of
  truth), ``curator_truths`` (topic summary; output), ``consensus_facts`` (source question;
  content) and ``messages`` (content). Triggers record every change (also when another
  program, such as the Hive apps, writes the tables, and through ``INSERT OR REPLACE``) and the
  plugin applies them to the index inside the same transaction, before it commits; rows
  written by other programs are indexed on the next hive-store write or search. Existing rows
  are indexed by the migration (see :mod:`hive_store_memory.index`);
* themes (``hive_store_memory_themes``: name, keywords, centroid, member count, last activity)
  and memberships with a score (``hive_store_memory_members``); conversations are tagged in
  Hive's ``conversation_topics`` with ``theme:<name>`` and Hive's hierarchy topics
  (``programming:python`` …).

New knowledge entries join a theme on the post-commit event (``HIVE_STORE_MEMORY_AUTO_ASSIGN=0``
turns that off, e.g. for a bulk import; ``store.memory.assign()`` or ``recluster`` catch up).

Command line: ``hive-store memory search "…" [--json] [--limit N] [--kind T] [--since T]
[--advanced]``, ``themes [--json]``, ``context "…"``, ``status``, ``reindex``,
``recluster [--threshold X]``.

A health check (``memory_index``) warns when the index and the tables differ (e.g. triggers
dropped by a table rebuild; ``reindex`` restores them) or the themes need ``recluster``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from hive_store.changes import Change, Op
from hive_store.errors import ConfigurationError
from hive_store.health import HealthResult
from hive_store.hookspecs import hookimpl
from hive_store.migrations import MigrationSet
from hive_store.store import Store
from hive_store_memory.clustering import ClusterParams, Embedder
from hive_store_memory.hookspecs import add_hookspecs
from hive_store_memory.index import KINDS, IndexStatus, SearchHit, flush, has_pending
from hive_store_memory.memory import ContextItem, Memory, MemoryContext, ReclusterReport, Theme
from hive_store_memory.text import FollowUp, detect_follow_up, topics_for

__all__ = [
    "KINDS",
    "ClusterParams",
    "ContextItem",
    "Embedder",
    "FollowUp",
    "IndexStatus",
    "Memory",
    "MemoryContext",
    "ReclusterReport",
    "SearchHit",
    "Theme",
    "add_hookspecs",
    "detect_follow_up",
    "memory_of",
    "migration_set",
    "topics_for",
]

NAMESPACE = "hive_store_memory"
log = logging.getLogger("hive_store.memory")
_set: MigrationSet | None = None


def migration_set() -> MigrationSet:
    """The plugin's migration set (parsed once)."""
    global _set
    if _set is None:
        _set = MigrationSet.from_package(NAMESPACE, "hive_store_memory.migrations",
                                         depends_on=("hive_store",))
    return _set


def memory_of(store: Store) -> Memory:
    """``store.memory``, typed; :class:`hive_store.ConfigurationError` if the store has none
    (not SQLite, closed, or the plugin is disabled)."""
    memory = store.__dict__.get("memory")
    if not isinstance(memory, Memory):
        raise ConfigurationError(
            "this store has no memory (the memory plugin needs a SQLite store and must not be "
            "disabled with HIVE_STORE_DISABLE_PLUGINS)")
    return memory


def _auto_assign() -> bool:
    return os.environ.get("HIVE_STORE_MEMORY_AUTO_ASSIGN", "1").strip().lower() not in (
        "0", "false", "no", "off")


def _embedder(store: Store) -> Embedder | None:
    try:
        result: Embedder | None = store.plugins.pm.hook.hive_store_memory_embedder(store=store)
    except Exception:
        log.exception("memory: the hive_store_memory_embedder hook failed; using TF-IDF")
        return None
    if result is not None and not isinstance(result, Embedder):
        log.error("memory: the embedder %r has no name/embed(); using TF-IDF", result)
        return None
    return result


@hookimpl
def hive_store_register_migrations() -> Sequence[MigrationSet]:
    return [migration_set()]


@hookimpl
def hive_store_store_opened(store: Store) -> None:
    if getattr(store.backend, "dialect", None) != "sqlite":
        return
    add_hookspecs(store.plugins)
    store.__dict__["memory"] = Memory(store, embedder=_embedder(store),
                                      auto_assign=_auto_assign())


@hookimpl
def hive_store_store_closing(store: Store) -> None:
    memory = store.__dict__.pop("memory", None)
    if isinstance(memory, Memory):
        memory.close()


@hookimpl
def hive_store_before_commit(store: Store, connection: Any, changes: Sequence[Change]) -> None:
    # Index this transaction's rows in it: the commit carries the rows and their index.
    memory = store.__dict__.get("memory")
    if isinstance(memory, Memory) and memory.installed(connection) and has_pending(connection):
        flush(connection)


@hookimpl
def hive_store_after_commit(store: Store, changes: Sequence[Change]) -> None:
    memory = store.__dict__.get("memory")
    if not isinstance(memory, Memory) or not memory.auto_assign or store.closed:
        return
    keys = [c.key for c in changes if c.table == "knowledge_conversations"
            and c.op in (Op.INSERT, Op.UPSERT, Op.UPDATE)]
    if keys:
        memory.assign(keys)


@hookimpl
def hive_store_register_commands(cli: Any) -> None:
    from hive_store_memory.cli import memory

    cli.add_command(memory)


@hookimpl
def hive_store_register_health_checks() -> Sequence[Any]:
    return [check_memory_index]


def check_memory_index(store: Store) -> list[HealthResult]:
    """``memory_index``: the full-text index against the tables, and the themes."""
    memory = store.__dict__.get("memory")
    if not isinstance(memory, Memory):
        return []
    st = memory.status()
    details = st.to_dict()
    if not st.in_step:
        problems = []
        if st.missing_triggers:
            problems.append(f"{len(st.missing_triggers)} triggers missing")
        differ = [k for k in st.rows if st.rows[k] != st.documents.get(k, 0)]
        if differ:
            problems.append("documents differ from rows in " + ", ".join(differ))
        if st.indexed != sum(st.documents.values()):
            problems.append(f"{st.indexed} indexed for {sum(st.documents.values())} documents")
        return [HealthResult(name="memory_index", status="warn", details=details,
                             message="; ".join(problems) + ": run `hive-store memory reindex`")]
    if st.themes_stale:
        return [HealthResult(name="memory_index", status="warn", details=details,
                             message=f"themes were built with {st.space}, the active space is "
                                     f"{st.active_space}: run `hive-store memory recluster`")]
    if st.unassigned:
        return [HealthResult(name="memory_index", status="warn", details=details,
                             message=f"{st.unassigned} knowledge entries have no theme: run "
                                     "`hive-store memory recluster`")]
    total = sum(st.documents.values())
    waiting = (f", {st.pending} waiting (written by another program; indexed on the next "
               "write or search)" if st.pending else "")
    return [HealthResult(name="memory_index", status="ok", details=details,
                         message=f"{total} documents{waiting}, {st.themes} themes")]
