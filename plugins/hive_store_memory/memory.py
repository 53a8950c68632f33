"""``store.memory``: full-text search, themes and context retrieval over a store's knowledge."""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from hive_store.entities import (
    ContextType,
    Conversation,
    ConversationContext,
    ConversationThread,
    ConversationTopic,
    KnowledgeConversation,
    utcnow,
)
from hive_store.errors import (
    ConfigurationError,
    HiveStoreError,
    PluginError,
    StoreClosed,
    ValidationError,
)
from hive_store.migrations import split_statements
from hive_store_memory import index as ix
from hive_store_memory.clustering import (
    DEFAULT_EMBEDDER_THRESHOLD,
    DEFAULT_THRESHOLD,
    TFIDF,
    ClusterParams,
    Embedder,
    Entry,
    ThemeModel,
    ThemeState,
    top_terms,
)
from hive_store_memory.indexer import Indexer
from hive_store_memory.text import (
    FollowUp,
    clean_text,
    detect_follow_up,
    fts_all,
    fts_any,
    query_words,
    term_counts,
    topics_for,
)

if TYPE_CHECKING:
    from hive_store.store import Store

log = logging.getLogger("hive_store.memory")

THEMES = f"{ix.PREFIX}_themes"
MEMBERS = f"{ix.PREFIX}_members"
TERMS = f"{ix.PREFIX}_terms"
META = f"{ix.PREFIX}_meta"
THEME_TOPIC_PREFIX = "theme:"
_MAX_VARS = 900
_NAME = "MemorySearch"

# Context layers: Hive's order and limits (pipeline.rs: 24 h LIMIT 10, 72 h LIMIT 3).
RECENT_HOURS = 24
FOLLOW_UP_HOURS = 72
RECENT_LIMIT = 10
FOLLOW_UP_LIMIT = 3
THEMATIC_LIMIT = 5
FULL_TEXT_LIMIT = 5
QUESTION_THEME_FACTOR = 0.5  # a question is short: it may match its theme at half the threshold
CONTEXT_FTS_KINDS = ("knowledge_conversations", "consensus_facts", "curator_truths")
RANK_WINDOW = 5000  # a query matching more documents ranks its newest 5,000
BATCH_SIZE = 1000  # log rows per catch-up transaction
FULL_TEXT_WORDS = 8
COMMON_SHARE = 0.05  # a word in more than 5% of the documents is too common to search for
COMMON_MIN = 50


# -- results --------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Theme:
    """A theme of knowledge entries.

    :ivar name: stable label made from its founding entry's top terms (``recluster`` renames)
    :ivar keywords: the centroid's heaviest terms now, heaviest first
    :ivar member_count: knowledge entries in it
    :ivar last_activity: time of its newest entry
    :ivar created_at: time of its founding entry
    """

    id: int
    name: str
    keywords: tuple[str, ...]
    member_count: int
    last_activity: datetime | None
    created_at: datetime | None

    @property
    def topic(self) -> str:
        """Its tag in ``conversation_topics`` (``theme:<name>``)."""
        return THEME_TOPIC_PREFIX + self.name

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "keywords": list(self.keywords),
                "member_count": self.member_count, "topic": self.topic,
                "last_activity": _iso(self.last_activity), "created_at": _iso(self.created_at)}


@attrs.frozen(kw_only=True)
class ContextItem:
    """One piece of context for a question, and why it was chosen.

    :ivar layer: ``recent_24h``, ``follow_up_72h``, ``thematic`` or ``full_text`` (Hive's order)
    :ivar reason: one line for people (and for the prompt)
    :ivar score: relevance in [0, 1] (stored as ``conversation_context.relevance_score``)
    :ivar kind: the table of ``entity``; ``key`` its primary key
    :ivar context_type: how it is recorded in ``conversation_context``
    """

    layer: str
    reason: str
    score: float
    kind: str
    key: Any
    entity: Any
    conversation_id: str | None
    created_at: datetime | None
    context_type: ContextType

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "reason": self.reason, "score": round(self.score, 4),
                "kind": self.kind, "key": self.key, "conversation_id": self.conversation_id,
                "created_at": _iso(self.created_at), "context_type": self.context_type.value,
                "entity": attrs.asdict(self.entity)}


@attrs.frozen(kw_only=True)
class MemoryContext:
    """What :meth:`Memory.context_for` found: ranked items in Hive's layer order.

    :ivar follow_up: the follow-up detection, when the question reads as one
    :ivar parent_conversation_id: the conversation a follow-up continues (newest in 72 h)
    :ivar theme: the question's theme and its similarity, if any
    :ivar recorded: whether rows were written to ``conversation_context``/``conversation_threads``
    :ivar complete: every committed row was indexed when the context was retrieved (``False``
        when the catch-up could not write, e.g. a read-only database; ``pending`` changes were
        left out)
    """

    question: str
    now: datetime
    items: tuple[ContextItem, ...]
    follow_up: FollowUp | None = None
    parent_conversation_id: str | None = None
    theme: Theme | None = None
    theme_similarity: float = 0.0
    recorded: bool = False
    complete: bool = True
    pending: int = 0

    def __iter__(self) -> Iterator[ContextItem]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def text(self, *, chars: int = 600) -> str:
        """The items as a context block for a prompt (question and curator answer of each)."""
        lines: list[str] = []
        for n, item in enumerate(self.items, 1):
            title, body = ix.doc_text(item.kind, item.entity)
            body = " ".join(body.split())
            if len(body) > chars:
                body = body[:chars].rstrip() + ix.ELLIPSIS
            lines.append(f"[{n}] ({item.reason})")
            if title:
                lines.append(f"Q: {title}")
            lines.append(f"A: {body}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        fu = self.follow_up
        return {
            "question": self.question, "now": self.now.isoformat(),
            "follow_up": None if fu is None else {
                "score": fu.score, "rule": fu.rule, "thread_type": fu.thread_type.value,
                "text": fu.text, "rules": list(fu.rules)},
            "parent_conversation_id": self.parent_conversation_id,
            "theme": None if self.theme is None else {
                **self.theme.to_dict(), "similarity": round(self.theme_similarity, 4)},
            "recorded": self.recorded, "complete": self.complete, "pending": self.pending,
            "items": [i.to_dict() for i in self.items],
        }


@attrs.frozen(kw_only=True)
class ReclusterReport:
    """What :meth:`Memory.recluster` did."""

    entries: int
    themes: int
    params: ClusterParams

    def to_dict(self) -> dict[str, Any]:
        return {"entries": self.entries, "themes": self.themes, "params": self.params.to_json()}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _chunks(items: Sequence[Any], size: int = _MAX_VARS) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _marks(n: int) -> str:
    return ", ".join("?" for _ in range(n))


def _translate(exc: sqlite3.Error, what: str) -> Exception:
    from hive_store_sqlite.backend import translate_error

    return translate_error(exc, what)


_NOT_USER_ERRORS = ("locked", "busy", "no such table", "malformed", "not a database", "corrupt")


# -- the façade -----------------------------------------------------------------------------------


class Memory:
    """Hive's memory over a store: ``store.memory`` (set up by the plugin when a store opens;
    :func:`hive_store_memory.memory_of` gives it typed).

    Thread-safe. Reads use the store's pooled connections; writes are store transactions.

    Indexing is deferred: a write only logs its changes (triggers), and the store's background
    indexer (:mod:`hive_store_memory.indexer`) applies them after the commit. Every read here
    (:meth:`search`, :meth:`context_for`, :meth:`themes`, :meth:`status`, …) first applies
    what is left itself (:meth:`flush`), so a caller always finds what it committed.

    :ivar auto_assign: put new knowledge entries into themes after they are indexed (default
        on; ``HIVE_STORE_MEMORY_AUTO_ASSIGN=0`` turns it off for a store opened by the plugin)
    :ivar rank_window: how many of a broad query's newest matches are ranked (``None``: all)
    :ivar batch_size: log rows applied per write transaction (each holds the writer for
        about 35 us per knowledge entry: 1,000 is ~40 ms)
    :ivar read_only: a catch-up found the database read-only; reads search the index as it is
    :ivar last_error: why the last catch-up failed, if the next has not succeeded yet
    """

    def __init__(self, store: Store, *, embedder: Embedder | None = None,
                 auto_assign: bool = True) -> None:
        self.store = store
        self.embedder = embedder
        self.auto_assign = auto_assign
        self._lock = threading.RLock()
        self._cache: tuple[int, ThemeModel] | None = None
        self.rank_window: int | None = RANK_WINDOW
        self.batch_size = BATCH_SIZE
        self._warned_stale = False
        self._closed = False
        self._installed = False
        self.indexer: Indexer | None = None
        # Held while assigning waiting entries to themes (one assigner per store at a time;
        # never taken inside a write transaction).
        self._assign_lock = threading.Lock()
        self.read_only = False
        self.last_error: str | None = None
        self.last_failure: tuple[str, str] | None = None  # (when, what), kept after recovery
        self.applied = 0  # log rows applied by this store's catch-ups

    def __repr__(self) -> str:
        return f"<hive_store_memory.Memory of {self.store!r} (space {self.active_space})>"

    def close(self) -> None:
        """Stop and join the background indexer (the plugin calls this when the store
        closes); idempotent."""
        indexer = self.indexer
        if indexer is not None:
            indexer.stop()
        self._closed = True
        self._cache = None

    # -- plumbing -----------------------------------------------------------------------------

    @property
    def active_space(self) -> str:
        """``tfidf``, or ``embedder:<name>`` when a plugin supplies an embedder."""
        return TFIDF if self.embedder is None else f"embedder:{self.embedder.name}"

    def _default_params(self) -> ClusterParams:
        if self.embedder is None:
            return ClusterParams(space=TFIDF, threshold=DEFAULT_THRESHOLD)
        threshold = float(getattr(self.embedder, "threshold", DEFAULT_EMBEDDER_THRESHOLD))
        return ClusterParams(space=self.active_space, threshold=threshold)

    def _check(self) -> None:
        if self._closed or self.store.closed:
            raise StoreClosed("the store is closed")

    def installed(self, conn: sqlite3.Connection) -> bool:
        """Whether the plugin's tables (as of its latest migration) are in the database
        (remembered once seen)."""
        if self._installed:
            return True
        self._installed = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
            (ix.LOG,)).fetchone() is not None
        return self._installed

    def _ready(self, conn: sqlite3.Connection) -> None:
        if not self.installed(conn):
            raise ConfigurationError(
                "the memory plugin's tables are not in this database (opened without "
                "migrating? run `hive-store migrate`)")

    def _read(self) -> Any:
        self._check()
        return self.store.backend.connection()

    def _write(self) -> Any:
        self._check()
        return self.store.backend.transaction()

    def _entities(self, kind: str, keys: Iterable[Any]) -> dict[Any, Any]:
        source = ix.SOURCE_BY_TABLE[kind]
        repo: Any = self.store.repo(source.entity)
        found = repo.get_many(list(dict.fromkeys(keys)))
        return {getattr(e, source.pk): e for e in found}

    # -- search ---------------------------------------------------------------------------------

    def search(self, text: str, *, limit: int = 20, since: datetime | None = None,
               kinds: Sequence[str] | None = None,
               advanced: bool = False) -> ix.SearchResults:
        """Documents matching ``text``, best first (BM25; a match in the question or title
        counts twice), with highlighted snippets and the source rows.

        Every row committed before the call is found: the search first applies the changes
        the background indexer has not applied yet (:meth:`flush`). If it cannot (a read-only
        database), it searches the index as it is and says so: the result (a list) has
        ``complete=False`` and ``pending``, the number of changes not applied.

        :param text: what to look for. By default every whitespace-separated word must occur
            (each is quoted, so FTS5 operators and punctuation are plain text; ``don't`` is a
            phrase); words match their inflections (porter stemming) and ignore case and
            diacritics. With ``advanced=True`` the text is an FTS5 query (``AND``/``OR``/
            ``NOT``, ``"phrases"``, ``prefix*``, ``NEAR(a b, 5)``, ``title: word``) and a
            syntax error is a :class:`hive_store.ValidationError`.
        :param limit: at most this many hits (1-1000)
        :param since: only rows created at or after this (aware) time

        Ranking costs about a microsecond per matching document, so a broad query (one that
        matches more than :attr:`rank_window` documents, 5,000 by default: a word in a large
        share of the knowledge base) ranks only its newest ``rank_window`` matching documents
        (the index's newest across all tables), which keeps every search within milliseconds.
        Set ``store.memory.rank_window = None`` for exact ranking over all matches.
        :param kinds: only these tables (default all: ``knowledge_conversations``,
            ``curator_truths``, ``consensus_facts``, ``messages``)
        """
        if not isinstance(text, str):
            raise ValidationError(_NAME, [("text", "must be text")])
        if not isinstance(advanced, bool):
            raise ValidationError(_NAME, [("advanced", "must be True or False")])
        lim = _check_limit(limit)
        kind_list = _check_kinds(kinds)
        since_iso = _check_time("since", since)
        if advanced:
            query: str | None = clean_text(text).strip() or None
        else:
            query = fts_all(text)
        if query is None:
            return ix.SearchResults()
        complete, pending = self._catch_up(themes=False)
        hits = self._search(query, limit=lim, kinds=kind_list, since=since_iso, until=None,
                            advanced=advanced)
        return ix.SearchResults(hits, complete=complete, pending=pending)

    def _search(self, query: str, *, limit: int, kinds: Sequence[str], since: str | None,
                until: str | None, advanced: bool = False,
                exclude_conversation: str | None = None) -> list[ix.SearchHit]:
        where = [f"{ix.FTS} MATCH ?"]
        params: list[Any] = [query]
        if list(kinds) != list(ix.KINDS):
            where.append(f"d.kind IN ({_marks(len(kinds))})")
            params.extend(kinds)
        if since is not None:
            where.append("d.at >= julianday(?)")
            params.append(since)
        if until is not None:
            where.append("(d.at IS NULL OR d.at <= julianday(?))")
            params.append(until)
        if exclude_conversation is not None:
            where.append("(d.conversation_id IS NULL OR d.conversation_id <> ?)")
            params.append(exclude_conversation)
        with self._read() as conn:
            try:
                if self.rank_window is not None:
                    # A broad query: rank only its newest `rank_window` documents.
                    edge = conn.execute(
                        f"SELECT rowid FROM {ix.FTS} WHERE {ix.FTS} MATCH ? "
                        "ORDER BY rowid DESC LIMIT 1 OFFSET ?",
                        (query, self.rank_window - 1)).fetchone()
                    if edge is not None:
                        where.append(f"{ix.FTS}.rowid >= ?")
                        params.append(edge[0])
                sql = (f"SELECT {ix.FTS}.rowid, {ix.FTS}.rank, d.kind, d.key, d.conversation_id, "
                       f"d.at FROM {ix.FTS} JOIN {ix.DOCS} AS d ON d.doc_id = {ix.FTS}.rowid "
                       f"WHERE {' AND '.join(where)} ORDER BY {ix.FTS}.rank LIMIT ?")
                rows = conn.execute(sql, [*params, limit]).fetchall()
            except sqlite3.OperationalError as exc:
                msg = str(exc)
                if advanced and not any(w in msg.lower() for w in _NOT_USER_ERRORS):
                    raise ValidationError(_NAME, [(
                        "text", f"not a valid full-text query ({msg}); see "
                                "https://sqlite.org/fts5.html#full_text_query_syntax, or search "
                                "without advanced=True")]) from None
                raise _translate(exc, "searching the memory index") from None
            except sqlite3.Error as exc:
                raise _translate(exc, "searching the memory index") from None
            by_kind: dict[str, list[Any]] = {}
            for _doc, _rank, kind, key, _cid, _at in rows:
                by_kind.setdefault(kind, []).append(key)
            entities = {kind: self._entities(kind, keys) for kind, keys in by_kind.items()}
            found = [(doc, rank, kind, key, cid, at, entities[kind].get(key))
                     for doc, rank, kind, key, cid, at in rows]
            found = [f for f in found if f[6] is not None]  # a row the index still names
            texts = [(f[0], *ix.doc_text(f[2], f[6])) for f in found]
            finds = ix.needles(query)
            windows = [(d, ix.window(title, finds), ix.window(body, finds))
                       for d, title, body in texts]
            try:
                snips = ix.snippets(conn, query, windows)
            except sqlite3.Error as exc:
                log.warning("memory: no snippets (%s)", exc)
                snips = {}
        hits = []
        for (doc, rank, kind, key, cid, at, entity), (_, title, body) in zip(found, texts,
                                                                             strict=True):
            snippet, spans = snips.get(doc) or (ix.fallback_snippet(title, body), ())
            hits.append(ix.SearchHit(kind=kind, key=key, entity=entity, score=-float(rank),
                                     snippet=snippet, highlights=spans, conversation_id=cid,
                                     created_at=ix.julian_to_datetime(at)))
        return hits

    # -- keeping the index in step ----------------------------------------------------------------

    def flush(self, *, themes: bool = True) -> int:
        """Apply, in the calling thread, every change committed so far that the background
        indexer has not applied yet, then (with ``themes`` and :attr:`auto_assign`) put the
        knowledge entries it indexed into themes. Inside a transaction it applies that
        transaction's own changes too (in it; themes follow after the commit). Returns the
        number of logged changes applied. Raises what went wrong (the reads that call it first
        do not: they search the index as it is and say so)."""
        before = self.applied
        self._catch_up(themes=themes, raise_errors=True)
        return self.applied - before

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until the background indexer has applied everything committed before the
        call, and assigned the new entries to themes. ``True`` when it has; ``False`` on
        timeout or when its catch-up failed (:attr:`last_error`). Without a running indexer
        (closed, or opened without the plugin hook) it catches up in the calling thread."""
        indexer = self.indexer
        if indexer is None or not indexer.running:
            return self._catch_up(themes=True)[0]
        return indexer.wait_idle(timeout)

    def wake(self) -> None:
        """Ask the background indexer to catch up (the plugin does after each commit that
        touched an indexed table)."""
        indexer = self.indexer
        if indexer is not None:
            indexer.wake()

    def _catch_up(self, *, themes: bool, raise_errors: bool = False,
                  pause: Callable[[], bool] | None = None) -> tuple[bool, int]:
        """Apply the change log (batches of :attr:`batch_size`, one write transaction each)
        and, with ``themes`` and :attr:`auto_assign`, put the knowledge entries waiting for a
        theme into themes. Returns whether it got to the end, and the changes left when it did
        not. Errors other than a closed store or a missing schema are recorded
        (:attr:`last_error`) and logged, and raised only with ``raise_errors``; a read-only
        database is noted once and then left alone. ``pause()`` (the indexer's) is called
        before each batch: it waits for the writers to pause, and returns ``False`` to stop."""
        self._check()
        backend = self.store.backend
        assigned = True
        try:
            if backend.in_transaction():
                # The caller's transaction: its own changes are readable only here. Apply the
                # log in it (a savepoint; the indexer waits for the write lock meanwhile);
                # themes follow after the commit.
                with self._write() as conn:
                    self._ready(conn)
                    more = True
                    while more:
                        applied = ix.apply_log(conn, limit=self.batch_size,
                                               themes=self.auto_assign, warn=self._warn)
                        self.applied += applied.changes
                        more = applied.more
                return True, 0
            with self._read() as conn:
                self._ready(conn)
                waiting = ix.has_pending(conn)
            if waiting and self.read_only and not raise_errors:
                return False, self._left()
            # Each batch commits its documents, index entries and log deletions together:
            # whoever reads after sees the log shorter by exactly what was applied.
            while waiting:
                if pause is not None and not pause():
                    return False, 0
                with self._write() as conn:
                    applied = ix.apply_log(conn, limit=self.batch_size,
                                           themes=self.auto_assign, warn=self._warn)
                self.applied += applied.changes
                waiting = applied.more
            self.read_only = False
            if themes and self.auto_assign:
                assigned = self._assign_waiting(pause)
        except (StoreClosed, ConfigurationError):
            raise
        except (HiveStoreError, sqlite3.Error) as exc:
            error = (_translate(exc, "updating the memory index")
                     if isinstance(exc, sqlite3.Error) else exc)
            if "readonly" in str(error).lower().replace(" ", "").replace("-", ""):
                if not self.read_only:
                    log.warning("memory: the database is read-only: searching the index as it "
                                "is, without the changes logged since it was last updated")
                self.read_only = True
                if raise_errors:
                    raise error from None
                return False, self._left()
            self._failed("catching up with the change log", error)
            if raise_errors:
                raise error from None
            return False, self._left()
        if assigned:
            self.last_error = None
        return True, 0

    def _left(self) -> int:
        try:
            with self._read() as conn:
                return ix.pending_count(conn)
        except (HiveStoreError, sqlite3.Error):
            return 0

    def _assign_waiting(self, pause: Callable[[], bool] | None = None,
                        batch: int = 1000) -> bool:
        """Put the knowledge entries waiting for a theme (indexed after the ``assign_from``
        frontier, still without a theme) into themes, in write order, moving the frontier.
        An entry the embedder fails on is passed over and stays without a theme (the health
        check says so; ``assign()`` or ``recluster`` catch up): the error is recorded, not
        raised. Returns whether everything succeeded."""
        ok = True
        with self._assign_lock:
            while pause is None or pause():
                with self._read() as conn:
                    self._ready(conn)
                    if self._stale(conn):
                        self._warn_stale()
                        return ok
                    entries = self._unassigned(conn, None, self._meta_int(conn, ix.FRONTIER),
                                               batch)
                if not entries:
                    return ok
                frontier = entries[-1][0].doc_id
                try:
                    vectors = self._embed(entries)
                except HiveStoreError as exc:
                    self._failed("assigning new knowledge entries to themes", exc)
                    ok = False
                    with self._write() as conn:  # pass them over (they stay without a theme)
                        self._advance(conn, frontier)
                else:
                    try:
                        self._assign_batch(entries, vectors, frontier=frontier)
                    except (HiveStoreError, sqlite3.Error) as exc:
                        if isinstance(exc, (StoreClosed, ConfigurationError)):
                            raise
                        self._failed("assigning new knowledge entries to themes", exc)
                        return False  # the frontier stays: the next catch-up tries again
                if len(entries) < batch:
                    return ok
        return ok

    def _advance(self, conn: sqlite3.Connection, frontier: int) -> None:
        conn.execute(f"UPDATE {META} SET value = max(coalesce(value, 0), ?) WHERE key = ?",
                     (frontier, ix.FRONTIER))

    def _warn(self, message: str) -> None:
        log.warning("memory: %s", message)

    def _failed(self, what: str, exc: BaseException) -> None:
        """Record and log a failed catch-up: the exception's type and message (sqlite3 and
        hive_store messages name tables and constraints, never row values or settings)."""
        message = f"{what} failed: {type(exc).__name__}: {exc}"
        self.last_error = message
        self.last_failure = (utcnow().isoformat(timespec="seconds"), message)
        log.error("memory: %s", message, exc_info=exc)

    def _indexer_facts(self) -> dict[str, Any]:
        facts: dict[str, Any] = (self.indexer.facts() if self.indexer is not None
                                 else {"running": False})
        facts.update(read_only=self.read_only, last_error=self.last_error,
                     last_failure=list(self.last_failure) if self.last_failure else None,
                     applied=self.applied, batch_size=self.batch_size)
        return facts

    # -- status, reindex ------------------------------------------------------------------------

    def status(self, *, flush: bool = True) -> ix.IndexStatus:
        """Row, document and index counts, missing triggers, unassigned entries, themes and
        the indexer's state. With ``flush`` (default) it catches up first, so ``pending`` is 0
        unless the catch-up could not write; ``flush=False`` shows the indexer's backlog."""
        if flush:
            self._catch_up(themes=True)
        with self._read() as conn:
            self._ready(conn)
            try:
                rows, docs, indexed = ix.read_counts(conn)
                missing = ix.missing_triggers(conn)
                unassigned = int(conn.execute(
                    f"SELECT count(*) FROM {ix.DOCS} AS d WHERE d.kind = ? AND NOT EXISTS "
                    f"(SELECT 1 FROM {MEMBERS} AS m WHERE m.doc_id = d.doc_id)",
                    (ix.KNOWLEDGE,)).fetchone()[0])
                themes = int(conn.execute(f"SELECT count(*) FROM {THEMES}").fetchone()[0])
                pending = ix.pending_count(conn)
                params = self._stored_params(conn)
            except sqlite3.Error as exc:
                raise _translate(exc, "reading the memory index") from None
        return ix.IndexStatus(rows=rows, documents=docs, indexed=indexed,
                              missing_triggers=missing, pending=pending,
                              unassigned=unassigned, themes=themes,
                              space=params.space if params else None,
                              active_space=self.active_space, indexer=self._indexer_facts())

    def reindex(self, *, progress: ix.ProgressFn | None = None) -> ix.IndexStatus:
        """Rebuild the full-text index from the tables in one transaction: put back missing
        triggers (a table rebuild drops them), make the document list match the rows (themes
        of surviving entries are kept) and index every document again (the change log is
        then empty: the rebuilt index has every change). It catches up first, so that new
        entries get their themes. ``progress(done, total)`` is called per chunk."""
        self._catch_up(themes=True, raise_errors=True)
        with self._write() as conn:
            self._ready(conn)
            try:
                self._restore_triggers(conn)
                ix.repair_documents(conn)
                ix.rebuild_index(conn, progress)
            except sqlite3.Error as exc:
                raise _translate(exc, "rebuilding the memory index") from None
            with self._lock:
                self._cache = None
        return self.status(flush=False)

    def _restore_triggers(self, conn: sqlite3.Connection) -> None:
        missing = set(ix.missing_triggers(conn))
        if not missing:
            return
        from hive_store_memory import migration_set

        for migration in reversed(migration_set().migrations):  # the latest definition
            for statement in split_statements(migration.up):
                head = statement.split("BEGIN", 1)[0]
                for name in list(missing):
                    if f"CREATE TRIGGER {name} " in head or f"CREATE TRIGGER {name}\n" in head:
                        conn.execute(statement)
                        missing.discard(name)
        if missing:
            raise ConfigurationError(f"cannot restore memory triggers {sorted(missing)}")

    # -- themes: reading ------------------------------------------------------------------------

    def _stored_params(self, conn: sqlite3.Connection) -> ClusterParams | None:
        row = conn.execute(f"SELECT value FROM {META} WHERE key = 'params'").fetchone()
        if row is None or row[0] is None:
            return None
        try:
            return ClusterParams.from_json(json.loads(row[0]))
        except (TypeError, ValueError):
            return None

    def _meta_int(self, conn: sqlite3.Connection, key: str) -> int:
        row = conn.execute(f"SELECT value FROM {META} WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row is not None and row[0] is not None else 0

    def _model(self, conn: sqlite3.Connection) -> tuple[int, ThemeModel]:
        """The themes as a model, from the cache when the stored generation matches. Call
        with ``self._lock`` held."""
        generation = self._meta_int(conn, "generation")
        if self._cache is not None and self._cache[0] == generation:
            return self._cache
        params = self._stored_params(conn) or self._default_params()
        themes = [
            ThemeState(id=int(tid), name=name, centroid=json.loads(centroid),
                       terms=json.loads(terms), count=int(count), last_activity=last)
            for tid, name, centroid, terms, count, last in conn.execute(
                f"SELECT id, name, centroid, terms, member_count, last_activity FROM {THEMES} "
                "ORDER BY id")
        ]
        model = ThemeModel(params, documents=self._meta_int(conn, "documents"), themes=themes)
        self._cache = (generation, model)
        return self._cache

    def _load_df(self, conn: sqlite3.Connection, model: ThemeModel,
                 terms: Iterable[str]) -> None:
        wanted = sorted(set(terms))
        model.df = Counter()
        model.dirty_terms.clear()
        for chunk in _chunks(wanted):
            model.df.update(dict(conn.execute(
                f"SELECT term, df FROM {TERMS} WHERE term IN ({_marks(len(chunk))})",
                list(chunk)).fetchall()))

    def _theme(self, row: Sequence[Any]) -> Theme:
        tid, name, keywords, count, last, created = row
        return Theme(id=int(tid), name=name, keywords=tuple(json.loads(keywords)),
                     member_count=int(count), last_activity=_parse_iso(last),
                     created_at=_parse_iso(created))

    _THEME_COLS = "id, name, keywords, member_count, last_activity, created_at"

    def themes(self, *, limit: int | None = None) -> list[Theme]:
        """Themes, largest first (then most recently active, then name). Catches up first:
        committed entries are in their themes."""
        lim = -1 if limit is None else _check_limit(limit, maximum=1_000_000)
        self._catch_up(themes=True)
        with self._read() as conn:
            self._ready(conn)
            rows = conn.execute(
                f"SELECT {self._THEME_COLS} FROM {THEMES} "
                "ORDER BY member_count DESC, last_activity DESC, name LIMIT ?", (lim,)).fetchall()
        return [self._theme(r) for r in rows]

    def theme(self, theme_id: int) -> Theme:
        """One theme by id (:class:`hive_store.NotFound` if there is none)."""
        from hive_store.errors import NotFound

        self._catch_up(themes=True)
        with self._read() as conn:
            self._ready(conn)
            row = conn.execute(f"SELECT {self._THEME_COLS} FROM {THEMES} WHERE id = ?",
                               (theme_id,)).fetchone()
        if row is None:
            raise NotFound("Theme", theme_id)
        return self._theme(row)

    def theme_of(self, knowledge_id: str) -> tuple[Theme, float] | None:
        """The theme of a knowledge entry and its membership score, or ``None``."""
        self._catch_up(themes=True)
        with self._read() as conn:
            self._ready(conn)
            row = conn.execute(
                f"SELECT t.id, t.name, t.keywords, t.member_count, t.last_activity, "
                f"t.created_at, m.score FROM {ix.DOCS} AS d JOIN {MEMBERS} AS m "
                f"ON m.doc_id = d.doc_id JOIN {THEMES} AS t ON t.id = m.theme_id "
                "WHERE d.kind = ? AND d.key = ?", (ix.KNOWLEDGE, knowledge_id)).fetchone()
        if row is None:
            return None
        return self._theme(row[:6]), float(row[6])

    def members(self, theme_id: int, *, limit: int = 20) -> list[tuple[KnowledgeConversation,
                                                                       float]]:
        """A theme's knowledge entries with their scores, best first."""
        lim = _check_limit(limit, maximum=1_000_000)
        self._catch_up(themes=True)
        with self._read() as conn:
            self._ready(conn)
            rows = conn.execute(
                f"SELECT d.key, m.score FROM {MEMBERS} AS m JOIN {ix.DOCS} AS d "
                "ON d.doc_id = m.doc_id WHERE m.theme_id = ? "
                "ORDER BY m.score DESC, d.at DESC, d.doc_id LIMIT ?", (theme_id, lim)).fetchall()
        entities = self._entities(ix.KNOWLEDGE, [r[0] for r in rows])
        return [(entities[k], float(s)) for k, s in rows if k in entities]

    # -- themes: assignment ---------------------------------------------------------------------

    def assign(self, keys: Iterable[str] | None = None, *, batch: int = 2000) -> int:
        """Put knowledge entries that have no theme yet into themes, in the order they were
        written: those with ``keys``, or every unassigned one. The indexer does this for the
        entries it indexes (unless ``auto_assign`` is off). Returns how many joined.

        Nothing is assigned while the themes are stale (built with another embedder or
        settings): run :meth:`recluster`.
        """
        self._catch_up(themes=False, raise_errors=True)
        return self._assign(keys, batch=batch)

    def _assign(self, keys: Iterable[str] | None = None, *, batch: int = 2000) -> int:
        wanted = None if keys is None else list(dict.fromkeys(keys))
        total = 0
        after = 0
        while True:
            with self._read() as conn:
                self._ready(conn)
                if self._stale(conn):
                    self._warn_stale()
                    return total
                entries = self._unassigned(conn, wanted, after, batch)
            if not entries:
                return total
            vectors = self._embed(entries)
            total += self._assign_batch(entries, vectors)
            after = entries[-1][0].doc_id
            if wanted is not None or len(entries) < batch:
                return total

    def _warn_stale(self) -> None:
        if not self._warned_stale:
            log.warning("memory: themes were built with another embedder or settings; run "
                        "`hive-store memory recluster`")
            self._warned_stale = True

    def _stale(self, conn: sqlite3.Connection) -> bool:
        stored = self._stored_params(conn)
        return stored is not None and stored.space != self.active_space

    def _unassigned(self, conn: sqlite3.Connection, keys: list[str] | None, after: int,
                    batch: int) -> list[tuple[Entry, str | None]]:
        base = (f"SELECT d.doc_id, t.question, t.final_answer, t.source_of_truth, d.at, "
                f"t.conversation_id FROM {ix.DOCS} AS d JOIN knowledge_conversations AS t "
                f"ON t.id = d.key WHERE d.kind = '{ix.KNOWLEDGE}' AND NOT EXISTS "
                f"(SELECT 1 FROM {MEMBERS} AS m WHERE m.doc_id = d.doc_id)")
        rows: list[Any] = []
        if keys is None:
            rows = conn.execute(base + " AND d.doc_id > ? ORDER BY d.doc_id LIMIT ?",
                                (after, batch)).fetchall()
        else:
            for chunk in _chunks(keys):
                rows += conn.execute(base + f" AND d.key IN ({_marks(len(chunk))})",
                                     list(chunk)).fetchall()
            rows.sort(key=lambda r: r[0])
        out = []
        for doc_id, question, answer, truth, at, cid in rows:
            body = answer if truth == answer else f"{answer}\n{truth}"
            out.append((Entry(int(doc_id), question, body, ix.julian_to_iso(at)), cid))
        return out

    def _embed(self, entries: Sequence[tuple[Entry, str | None]]) -> dict[int, list[float]]:
        if self.embedder is None:
            return {}
        texts = [f"{e.title}\n\n{e.body}" for e, _ in entries]
        vectors = self._call_embedder(texts)
        return {e.doc_id: v for (e, _), v in zip(entries, vectors, strict=True)}

    def _call_embedder(self, texts: Sequence[str]) -> list[list[float]]:
        embedder = self.embedder
        assert embedder is not None
        try:
            raw = embedder.embed(list(texts))
            vectors = [[float(x) for x in v] for v in raw]
        except HiveStoreError:
            raise
        except Exception as exc:
            raise PluginError(f"embedder {embedder.name!r} failed: "
                              f"{type(exc).__name__}: {exc}") from exc
        if len(vectors) != len(texts):
            raise PluginError(f"embedder {embedder.name!r} returned {len(vectors)} vectors "
                              f"for {len(texts)} texts")
        dims = {len(v) for v in vectors}
        if len(dims) > 1 or 0 in dims:
            raise PluginError(f"embedder {embedder.name!r} returned vectors of lengths "
                              f"{sorted(dims)}")
        if any(not math.isfinite(x) for v in vectors for x in v):
            raise PluginError(f"embedder {embedder.name!r} returned a non-finite number")
        return vectors

    def _assign_batch(self, entries: Sequence[tuple[Entry, str | None]],
                      vectors: dict[int, list[float]], *, frontier: int | None = None) -> int:
        # Lock order: the write lock, then self._lock (a thread inside a transaction may
        # take self._lock; none waits for the write lock while holding it).
        try:
            with self._write() as conn, self._lock:
                if frontier is not None:
                    self._advance(conn, frontier)
                generation, model = self._model(conn)
                if model.params.space != self.active_space:
                    return 0
                self._cache = None  # changes below: readers load the stored themes meanwhile
                if self._stored_params(conn) is None:
                    self._put_meta(conn, "params", json.dumps(model.params.to_json()))
                # The vectors were made before this transaction (an embedder must not hold
                # the write lock): keep the entries that still exist and still have no theme.
                ids = [e.doc_id for e, _ in entries]
                open_ids: set[int] = set()
                for chunk in _chunks(ids):
                    open_ids.update(r[0] for r in conn.execute(
                        f"SELECT d.doc_id FROM {ix.DOCS} AS d WHERE d.doc_id IN "
                        f"({_marks(len(chunk))}) AND NOT EXISTS (SELECT 1 FROM {MEMBERS} "
                        "AS m WHERE m.doc_id = d.doc_id)", list(chunk)))
                todo = [(e, cid) for e, cid in entries if e.doc_id in open_ids]
                if not todo:
                    return 0
                counts = [term_counts(e.title, e.body) for e, _ in todo]
                self._load_df(conn, model, (t for c in counts for t in c))
                model.documents = self._meta_int(conn, "documents")
                assignments = [model.add(e, vectors.get(e.doc_id), c)
                               for (e, _), c in zip(todo, counts, strict=True)]
                self._persist(conn, model, todo, assignments)
                generation = self._bump(conn)
            with self._lock:
                if self._cache is None:
                    self._cache = (generation, model)
        except BaseException:
            with self._lock:
                self._cache = None
            raise
        return len(assignments)

    def _put_meta(self, conn: sqlite3.Connection, key: str, value: Any) -> None:
        conn.execute(f"INSERT INTO {META} (key, value) VALUES (?, ?) ON CONFLICT(key) "
                     "DO UPDATE SET value = excluded.value", (key, value))

    def _bump(self, conn: sqlite3.Connection) -> int:
        row = conn.execute(f"UPDATE {META} SET value = random() WHERE key = 'generation' "
                           "RETURNING value").fetchone()
        return int(row[0])

    def _persist(self, conn: sqlite3.Connection, model: ThemeModel,
                 todo: Sequence[tuple[Entry, str | None]], assignments: Sequence[Any]) -> None:
        now = utcnow().isoformat(timespec="microseconds")
        conn.executemany(
            f"INSERT INTO {TERMS} (term, df) VALUES (?, ?) "
            "ON CONFLICT(term) DO UPDATE SET df = excluded.df",
            [(t, model.df[t]) for t in sorted(model.dirty_terms)])
        model.dirty_terms.clear()
        self._put_meta(conn, "documents", model.documents)
        founders = {a.theme_id: e for (e, _), a in zip(todo, assignments, strict=True)
                    if a.founded}
        for tid in sorted(model.dirty_themes):
            theme = model.themes[tid]
            values = (json.dumps(model.keywords(theme)),
                      json.dumps(theme.centroid, sort_keys=True),
                      json.dumps(theme.terms, sort_keys=True), theme.count, theme.last_activity)
            if theme.created:
                founder = founders.get(tid)
                created = (founder.at if founder is not None else None) or now
                conn.execute(
                    f"INSERT INTO {THEMES} (id, name, keywords, centroid, terms, member_count, "
                    "last_activity, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (tid, theme.name, *values, created, now))
                theme.created = False
            else:
                conn.execute(
                    f"UPDATE {THEMES} SET keywords = ?, centroid = ?, terms = ?, "
                    "member_count = ?, last_activity = ?, updated_at = ? WHERE id = ?",
                    (*values, now, tid))
        model.dirty_themes.clear()
        conn.executemany(
            f"INSERT INTO {MEMBERS} (doc_id, theme_id, score, assigned_at) VALUES (?, ?, ?, ?)",
            [(a.doc_id, a.theme_id, a.score, now) for a in assignments])
        self._write_topics(conn, model, todo, assignments)

    def _write_topics(self, conn: sqlite3.Connection, model: ThemeModel,
                      todo: Sequence[tuple[Entry, str | None]],
                      assignments: Sequence[Any]) -> None:
        """Tag the entries' conversations in ``conversation_topics``: Hive's hierarchy topics
        (added once) and ``theme:<name>``. Rows are made by the core's codec (so they are
        exactly what the repository would write) but written on this transaction's connection:
        they are derived data, rebuilt by ``recluster``, and a consensus run stays one change
        event for the other plugins."""
        cids = sorted({cid for _, cid in todo if cid})
        if not cids:
            return
        existing: set[tuple[str, str]] = set()
        live: set[str] = set()
        for chunk in _chunks(cids):
            marks = _marks(len(chunk))
            live.update(r[0] for r in conn.execute(
                f"SELECT id FROM conversations WHERE id IN ({marks})", list(chunk)))
            existing.update(conn.execute(
                f"SELECT conversation_id, topic FROM conversation_topics "
                f"WHERE conversation_id IN ({marks})", list(chunk)).fetchall())
        codec = self.store.codec(ConversationTopic)
        columns = [c for c in codec.columns if c != codec.pk]
        keep = [i for i, c in enumerate(codec.columns) if c != codec.pk]
        rows: list[tuple[Any, ...]] = []
        for (entry, cid), a in zip(todo, assignments, strict=True):
            if not cid or cid not in live:
                continue
            tags = [*topics_for(f"{entry.title}\n{entry.body}"),
                    (THEME_TOPIC_PREFIX + model.themes[a.theme_id].name, a.score)]
            for topic, score in tags:
                if (cid, topic) not in existing:
                    existing.add((cid, topic))
                    row = codec.to_row(ConversationTopic(
                        conversation_id=cid, topic=topic, relevance_score=round(float(score), 4)))
                    rows.append(tuple(row[i] for i in keep))
        if rows:
            names = ", ".join(f'"{c}"' for c in columns)
            conn.executemany(f"INSERT INTO conversation_topics ({names}) "
                             f"VALUES ({_marks(len(columns))})", rows)

    def recluster(self, *, threshold: float | None = None,
                  progress: ix.ProgressFn | None = None) -> ReclusterReport:
        """Rebuild every theme from the knowledge entries, in the order they were written,
        with the active embedder and ``threshold`` (default: the stored one, or the default
        of the active space). One transaction; ``theme:`` topics are rewritten."""
        params = self._default_params()
        if threshold is not None:
            if (not isinstance(threshold, (int, float)) or isinstance(threshold, bool)
                    or not 0.0 < float(threshold) <= 1.0):
                raise ValidationError("ClusterParams", [("threshold", "must be in (0, 1]")])
            params = attrs.evolve(params, threshold=float(threshold))
        self._catch_up(themes=False, raise_errors=True)  # every committed entry
        with self._read() as conn:
            self._ready(conn)
            stored = self._stored_params(conn)
        if threshold is None and stored is not None and stored.space == params.space:
            params = attrs.evolve(stored)
        try:
            with self._write() as conn, self._lock:  # lock order: see _assign_batch
                self._cache = None
                report = self._recluster(conn, params, progress)
                self._advance(conn, int(conn.execute(
                    f"SELECT coalesce(max(doc_id), 0) FROM {ix.DOCS}").fetchone()[0]))
                self._bump(conn)
        except sqlite3.Error as exc:
            raise _translate(exc, "reclustering") from None
        finally:
            with self._lock:
                self._cache = None
        return report

    def _recluster(self, conn: sqlite3.Connection, params: ClusterParams,
                   progress: ix.ProgressFn | None) -> ReclusterReport:
        conn.execute(f"DELETE FROM {MEMBERS}")
        conn.execute(f"DELETE FROM {THEMES}")
        conn.execute(f"DELETE FROM {TERMS}")
        self._put_meta(conn, "documents", 0)
        self._put_meta(conn, "params", json.dumps(params.to_json()))
        conn.execute("DELETE FROM conversation_topics WHERE topic LIKE ? ESCAPE '\\'",
                     (THEME_TOPIC_PREFIX.replace("_", "\\_") + "%",))
        total = int(conn.execute(f"SELECT count(*) FROM {ix.DOCS} WHERE kind = ?",
                                 (ix.KNOWLEDGE,)).fetchone()[0])
        if progress is not None:
            progress(0, total)
        model = ThemeModel(params)
        done = 0
        after = 0
        while True:
            entries = self._unassigned(conn, None, after, 1000)
            if not entries:
                break
            vectors = self._embed(entries)
            assignments = [model.add(e, vectors.get(e.doc_id)) for e, _ in entries]
            self._persist(conn, model, entries, assignments)
            done += len(entries)
            after = entries[-1][0].doc_id
            if progress is not None:
                progress(done, total)
        return ReclusterReport(entries=done, themes=len(model.themes), params=params)

    # -- context retrieval ----------------------------------------------------------------------

    def _question_theme(self, conn: sqlite3.Connection,
                        question: str) -> tuple[ThemeState, float, ClusterParams] | None:
        with self._lock:
            _, model = self._model(conn)
            if not model.themes:
                return None
            counts = term_counts(question, "")
            saved_df, saved_dirty = model.df, set(model.dirty_terms)
            try:
                self._load_df(conn, model, counts)
                model.documents = self._meta_int(conn, "documents")
                vector: Any = model.tfidf(counts)
                use_terms = True
                if model.dense and model.params.space == self.active_space:
                    vector = self._call_embedder([question])[0]
                    from hive_store_memory.clustering import dense_unit

                    vector = dense_unit(vector)
                    use_terms = False
                theme, score = model.best(vector, use_terms=use_terms)
            finally:
                model.df, model.dirty_terms = saved_df, saved_dirty
            if theme is None or score < model.params.threshold * QUESTION_THEME_FACTOR:
                return None
            return theme, score, model.params

    def context_for(self, question: str, *, now: datetime | None = None,
                    conversation_id: str | None = None, record: bool = False,
                    limit: int = 20) -> MemoryContext:
        """The context the consensus engine gives a question, in Hive's layered order:

        1. ``recent_24h`` — curator knowledge (knowledge entries) from the 24 hours before
           ``now``, newest first (at most 10);
        2. ``follow_up_72h`` — when the question reads as a follow-up ("tell me more", "give
           me 3 examples", "the second one", "explain", a leading or trailing pronoun: Hive's
           rules and scores, :func:`hive_store_memory.text.detect_follow_up`), the newest
           entries of the 72 hours before ``now`` (at most 3);
        3. ``thematic`` — entries of the question's theme (at most 5);
        4. ``full_text`` — full-text hits (any of the question's distinctive words: not stop
           words, in at most 5% of the documents, the 8 rarest) in knowledge entries,
           consensus facts and curator truths (at most 5).

        One item per conversation (the first layer that finds it wins); entries after ``now``
        and of ``conversation_id`` itself are left out. With ``record=True`` (needs
        ``conversation_id``, an existing conversation) the items are written to
        ``conversation_context`` (``recent_24h``; ``direct_reference`` for follow-ups;
        ``thematic`` for theme and full-text items) and a follow-up to ``conversation_threads``,
        in one transaction.
        """
        if not isinstance(question, str) or not question.strip():
            raise ValidationError("MemoryContext", [("question", "must be non-empty text")])
        when = utcnow() if now is None else now
        _check_time("now", when)
        lim = _check_limit(limit)
        if conversation_id is not None and not isinstance(conversation_id, str):
            raise ValidationError("MemoryContext", [("conversation_id", "must be text")])
        if record and conversation_id is None:
            raise ValidationError("MemoryContext", [
                ("conversation_id", "record=True needs the conversation the question is in")])
        question = clean_text(question)
        now_iso = when.isoformat()
        items: list[ContextItem] = []
        seen: set[Any] = set()
        if conversation_id is not None:
            seen.add(conversation_id)

        def take(kind: str, key: Any, entity: Any, cid: str | None, at: float | None,
                 layer: str, reason: str, score: float, ctype: ContextType) -> bool:
            mark = cid if cid is not None else (kind, key)
            if mark in seen or entity is None:
                return False
            seen.add(mark)
            items.append(ContextItem(layer=layer, reason=reason, score=max(0.0, min(1.0, score)),
                                     kind=kind, key=key, entity=entity, conversation_id=cid,
                                     created_at=ix.julian_to_datetime(at), context_type=ctype))
            return True

        follow_up = detect_follow_up(question)
        complete, pending = self._catch_up(themes=True)
        theme_match = None
        parent: str | None = None
        with self._read() as conn:
            self._ready(conn)
            recent = self._window(conn, when, RECENT_HOURS, RECENT_LIMIT + 1, conversation_id)
            window = (self._window(conn, when, FOLLOW_UP_HOURS, FOLLOW_UP_LIMIT + len(seen)
                                   + RECENT_LIMIT, conversation_id) if follow_up else [])
            theme_match = self._question_theme(conn, question)
            members: list[tuple[Any, str | None, float | None, float]] = []
            if theme_match is not None:
                members = [(k, c, a, float(s)) for k, c, a, s in conn.execute(
                    f"SELECT d.key, d.conversation_id, d.at, m.score FROM {MEMBERS} AS m "
                    f"JOIN {ix.DOCS} AS d ON d.doc_id = m.doc_id WHERE m.theme_id = ? "
                    "AND (d.at IS NULL OR d.at <= julianday(?)) "
                    "ORDER BY m.score DESC, d.at DESC, d.doc_id LIMIT ?",
                    (theme_match[0].id, now_iso, THEMATIC_LIMIT + RECENT_LIMIT + 2))]
        wanted = [k for k, *_ in recent] + [k for k, *_ in window] + [k for k, *_ in members]
        entities = self._entities(ix.KNOWLEDGE, wanted)
        for key, cid, at in recent[:RECENT_LIMIT]:
            age = _age(when, at)
            take(ix.KNOWLEDGE, key, entities.get(key), cid, at, "recent_24h",
                 f"curator knowledge from the last 24 h ({age} ago)",
                 1.0 - 0.5 * _hours(when, at) / RECENT_HOURS, ContextType.RECENT_24H)
        if follow_up is not None:
            parent = next((cid for _, cid, _ in window if cid), None)
            added = 0
            for key, cid, at in window:
                if added >= FOLLOW_UP_LIMIT:
                    break
                if take(ix.KNOWLEDGE, key, entities.get(key), cid, at, "follow_up_72h",
                        f"follow-up ({follow_up.rule}: “{follow_up.text}”, confidence "
                        f"{follow_up.score:.1f}) of a conversation {_age(when, at)} ago",
                        follow_up.score, ContextType.DIRECT_REFERENCE):
                    added += 1
        theme_obj: Theme | None = None
        similarity = 0.0
        if theme_match is not None:
            state, similarity, params = theme_match
            theme_obj = Theme(id=state.id, name=state.name,
                              keywords=tuple(top_terms(state.terms, params.keywords)),
                              member_count=state.count,
                              last_activity=_parse_iso(state.last_activity), created_at=None)
            added = 0
            for key, cid, at, score in members:
                if added >= THEMATIC_LIMIT:
                    break
                if take(ix.KNOWLEDGE, key, entities.get(key), cid, at, "thematic",
                        f"same theme “{state.name}” (question similarity {similarity:.2f}, "
                        f"entry {score:.2f})", similarity * max(score, 0.5),
                        ContextType.THEMATIC):
                    added += 1
        words = self._distinctive(query_words(question))
        query = fts_any(words)
        if query is not None:
            hits = self._search(query, limit=FULL_TEXT_LIMIT + len(seen) + 5,
                                kinds=CONTEXT_FTS_KINDS, since=None, until=now_iso,
                                exclude_conversation=conversation_id)
            added = 0
            for hit in hits:
                if added >= FULL_TEXT_LIMIT:
                    break
                matched = ", ".join(hit.matched) or ", ".join(words[:3])
                if take(hit.kind, hit.key, hit.entity, hit.conversation_id,
                        _to_julian(hit.created_at), "full_text",
                        f"full-text match on {matched} in {hit.kind} (bm25 {hit.score:.2f})",
                        hit.score / (1.0 + hit.score) if hit.score > 0 else 0.0,
                        ContextType.THEMATIC):
                    added += 1
        ranked = tuple(items[:lim])
        recorded = False
        if record:
            assert conversation_id is not None
            self._record(conversation_id, ranked, follow_up, parent)
            recorded = True
        return MemoryContext(question=question, now=when, items=ranked, follow_up=follow_up,
                             parent_conversation_id=parent if follow_up else None,
                             theme=theme_obj, theme_similarity=similarity, recorded=recorded,
                             complete=complete, pending=pending)

    def _distinctive(self, words: Sequence[str]) -> list[str]:
        """The question's words that say something: at most :data:`FULL_TEXT_WORDS`, the
        rarest first, leaving out those in more than :data:`COMMON_SHARE` of the indexed
        documents (like stop words, they would match most of the knowledge base and make
        ranking it slow). Counting a word's documents in the index is cheap."""
        if not words:
            return []
        with self._read() as conn:
            self._ready(conn)
            total = int(conn.execute(f"SELECT count(*) FROM {ix.FTS}_docsize").fetchone()[0])
            limit = max(COMMON_MIN, int(total * COMMON_SHARE))
            counted = []
            for n, word in enumerate(words):
                query = fts_any([word])
                if query is None:
                    continue
                count = int(conn.execute(
                    f"SELECT count(*) FROM {ix.FTS} WHERE {ix.FTS} MATCH ?", (query,)
                ).fetchone()[0])
                if 0 < count <= limit:
                    counted.append((count, n, word))
        counted.sort()
        return [w for _, _, w in sorted(counted[:FULL_TEXT_WORDS], key=lambda c: c[1])]

    def _window(self, conn: sqlite3.Connection, now: datetime, hours: int, limit: int,
                exclude: str | None) -> list[tuple[Any, str | None, float | None]]:
        start = (now - timedelta(hours=hours)).isoformat()
        rows = conn.execute(
            f"SELECT key, conversation_id, at FROM {ix.DOCS} WHERE kind = ? "
            "AND at >= julianday(?) AND at <= julianday(?) "
            "AND (conversation_id IS NULL OR conversation_id IS NOT ?) "
            "ORDER BY at DESC, doc_id DESC LIMIT ?",
            (ix.KNOWLEDGE, start, now.isoformat(), exclude, limit)).fetchall()
        return [(k, c, a) for k, c, a in rows]

    def _record(self, conversation_id: str, items: Sequence[ContextItem],
                follow_up: FollowUp | None, parent: str | None) -> None:
        store = self.store
        with store.transaction():
            store.repo(Conversation).get(conversation_id)  # NotFound names it
            rows = [ConversationContext(conversation_id=conversation_id,
                                        referenced_conversation_id=item.conversation_id,
                                        relevance_score=round(item.score, 4),
                                        context_type=item.context_type)
                    for item in items
                    if item.conversation_id and item.conversation_id != conversation_id]
            if rows:
                store.repo(ConversationContext).add_many(rows)
            if follow_up is not None and parent is not None and parent != conversation_id:
                store.repo(ConversationThread).add(ConversationThread(
                    child_conversation_id=conversation_id, parent_conversation_id=parent,
                    thread_type=follow_up.thread_type, reference_text=follow_up.text,
                    confidence_score=follow_up.score))


# -- argument checks ------------------------------------------------------------------------------


def _check_limit(limit: Any, *, maximum: int = 1000) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= maximum:
        raise ValidationError(_NAME, [("limit", f"must be an integer from 1 to {maximum}")])
    return limit


def _check_kinds(kinds: Sequence[str] | None) -> list[str]:
    if kinds is None:
        return list(ix.KINDS)
    if isinstance(kinds, str):
        kinds = [kinds]
    out: list[str] = []
    for kind in kinds:
        if kind not in ix.KINDS:
            raise ValidationError(_NAME, [("kinds", f"{kind!r} is not indexed (choose from "
                                                    f"{', '.join(ix.KINDS)})")])
        if kind not in out:
            out.append(kind)
    if not out:
        raise ValidationError(_NAME, [("kinds", "name at least one table")])
    return out


def _check_time(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(_NAME, [(name, "must be a timezone-aware datetime")])
    return value.isoformat()


def _to_julian(value: datetime | None) -> float | None:
    if value is None:
        return None
    return value.timestamp() / 86400.0 + 2440587.5


def _hours(now: datetime, at: float | None) -> float:
    when = ix.julian_to_datetime(at)
    if when is None:
        return 0.0
    return max(0.0, (now - when).total_seconds() / 3600.0)


def _age(now: datetime, at: float | None) -> str:
    hours = _hours(now, at)
    if hours < 1:
        return f"{max(1, round(hours * 60))} min"
    if hours < 48:
        return f"{hours:.0f} h"
    return f"{hours / 24:.0f} days"
