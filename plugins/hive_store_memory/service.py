"""``store.memory``: the memory service of one store — keeping the index in step, its status,
and the public API (search, themes and topics, context), which the other modules implement.

Keeping in step: writes only log their changes (triggers); the background indexer
(:mod:`hive_store_memory.indexer`) applies the log in short transactions (about
:attr:`Memory.write_seconds` each) and puts new entries into themes. A read applies what is
left itself when that is little (:attr:`Memory.read_catch_up` logged changes,
:attr:`Memory.read_assign` entries for themes), so a caller finds what it has just
committed; with a larger backlog (after an import) it does not wait: it answers from the index
and themes as they stand and says so (``complete=False`` and ``pending``), while the indexer
catches up.

Failures: an error that goes away (a lock, an I/O hiccup) is retried with a back-off; an error
that stays (a read-only or damaged file) stops the indexer until :meth:`Memory.flush` or
``reindex`` (or the next open) tries again; a row the index cannot take is found by applying
the log row by row and set aside (``hive_store_memory_failed``), and after
:data:`MAX_SET_ASIDE` rows in a row fail the indexer stops too. Each is logged once (type and
message, never row text) and reported by the ``memory_index`` health check.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hive_store.entities import KnowledgeConversation, utcnow
from hive_store.errors import (
    ConfigurationError,
    HiveStoreError,
    PluginError,
    StorageError,
    StoreClosed,
)
from hive_store_memory import index as ix
from hive_store_memory.clustering import TFIDF, Embedder
from hive_store_memory.common import (
    IndexingStopped,
    check_limit,
    describe,
    for_good,
    is_read_only,
    of_a_row,
    translate,
)
from hive_store_memory.context import Contexts
from hive_store_memory.results import MemoryContext, ReclusterReport, Theme, Topic
from hive_store_memory.search import Searcher
from hive_store_memory.sqlgen import trigger_statements
from hive_store_memory.themes import MEMBERS, THEMES, TOPICS, Theming

if TYPE_CHECKING:
    from hive_store.store import Store
    from hive_store_memory.indexer import Indexer

log = logging.getLogger("hive_store.memory")

BATCH_SIZE = 1000  # log rows per catch-up transaction, at most
READ_CATCH_UP = 2000  # a read applies at most this many logged changes itself …
READ_ASSIGN = 200  # … and puts at most this many entries into themes
MAX_SET_ASIDE = 3  # rows set aside in a row before the indexer stops
FAILED = f"{ix.PREFIX}_failed"
LATEST_TABLE = TOPICS  # made by the plugin's latest migration

Pause = Callable[[], bool]


class Memory:
    """Hive's memory over a store: ``store.memory`` (set up by the plugin when a store opens;
    :func:`hive_store_memory.memory_of` gives it typed). Thread-safe.

    :ivar auto_assign: put new knowledge entries into themes after they are indexed (default
        on; ``HIVE_STORE_MEMORY_AUTO_ASSIGN=0`` turns it off for a store opened by the plugin)
    :ivar batch_size: log rows applied per write transaction, at most
    :ivar write_seconds: the time one of the indexer's write transactions aims at while
        writers are active (a commit in the last second; the batch size adapts to it)
    :ivar idle_seconds: ... and while they are not
    :ivar read_catch_up: a read applies at most this many logged changes itself, else it
        answers from the index as it is (``complete=False``)
    :ivar read_assign: ... and assigns at most this many waiting entries to themes
    :ivar stopped: why the indexer stopped (an error that retrying cannot fix), or ``None``
    :ivar last_error: why the last catch-up failed, if the next has not succeeded yet
    """

    def __init__(self, store: Store, *, embedder: Embedder | None = None,
                 auto_assign: bool = True) -> None:
        self.store = store
        self.embedder = embedder
        self.auto_assign = auto_assign
        self.batch_size = BATCH_SIZE
        self.write_seconds = 0.004
        self.idle_seconds = 0.05
        self.read_catch_up = READ_CATCH_UP
        self.read_assign = READ_ASSIGN
        self._batch = 200
        self._closed = False
        self._installed = False
        self.indexer: Indexer | None = None
        self._found_read_only = False  # a catch-up found the file read-only
        self.stopped: str | None = None
        self.last_error: str | None = None
        self.last_failure: tuple[str, str] | None = None  # (when, what), kept after recovery
        self.applied = 0  # log rows applied by this store's catch-ups
        self.set_aside = 0  # rows set aside by this store's catch-ups
        self._failing = False  # in a streak of failures (logged once)
        self.searcher = Searcher(self)
        self.theming = Theming(self)
        self.contexts = Contexts(self)

    def __repr__(self) -> str:
        return f"<hive_store_memory.Memory of {self.store!r} (space {self.active_space})>"

    def close(self) -> None:
        """Stop and join the background indexer (the plugin calls this when the store
        closes); idempotent. Every later call raises :class:`hive_store.StoreClosed`."""
        indexer = self.indexer
        if indexer is not None:
            indexer.stop()
        self._closed = True
        self.theming.drop_cache()

    # -- the API --------------------------------------------------------------------------------

    @property
    def rank_window(self) -> int | None:
        """How many of a broad query's newest matches are ranked (``None``: all)."""
        return self.searcher.rank_window

    @rank_window.setter
    def rank_window(self, value: int | None) -> None:
        self.searcher.rank_window = value

    def search(self, text: str, *, limit: int = 20, since: datetime | None = None,
               kinds: Sequence[str] | None = None, advanced: bool = False,
               group: bool = False) -> ix.SearchResults:
        """Documents that answer ``text``, best first, with highlighted snippets and the rows.

        By default every word is looked for first; when that finds fewer than ``limit``
        documents, the question's distinctive words follow as a ranked ``OR`` (BM25, the
        question or title weighted twice), so a natural question finds what it means. Words
        are quoted (``NOT``, ``*``, ``"``, ``:`` are plain text), match their inflections
        (porter stemming) and ignore case and diacritics. ``advanced=True`` takes an FTS5
        query (``AND``/``OR``/``NOT``, ``"phrases"``, ``prefix*``, ``NEAR(a b, 5)``,
        ``title: word``; at most 32 words and 1,000 characters); a syntax error is a
        :class:`hive_store.ValidationError`.

        Everything committed before the call is found when the indexer's backlog is small; a
        read-only database, or a backlog larger than :attr:`read_catch_up` changes, is
        searched as it is: the result (a list) then has ``complete=False`` and ``pending``.

        :param limit: at most this many hits (1-1000)
        :param since: only rows created at or after this (aware) time
        :param kinds: only these tables (default all: ``knowledge_conversations``,
            ``curator_truths``, ``consensus_facts``, ``messages``)
        :param group: one hit per conversation (its best)
        """
        return self.searcher.search(text, limit=limit, since=since, kinds=kinds,
                                    advanced=advanced, group=group)

    def themes(self, *, limit: int | None = None) -> list[Theme]:
        """Themes, largest first (then most recently active, then name)."""
        return self.theming.themes(limit)

    def theme(self, theme_id: int) -> Theme:
        """One theme by id (:class:`hive_store.NotFound` if there is none)."""
        return self.theming.theme(theme_id)

    def theme_of(self, knowledge_id: str) -> tuple[Theme, float] | None:
        """The theme of a knowledge entry and its membership score, or ``None``."""
        return self.theming.theme_of(knowledge_id)

    def members(self, theme_id: int, *, limit: int = 20) -> list[tuple[KnowledgeConversation,
                                                                       float]]:
        """A theme's knowledge entries with their scores, best first."""
        return self.theming.members(theme_id, limit)

    def topics(self, *, limit: int | None = None, themes: bool = True) -> list[Topic]:
        """The subjects of the knowledge base, largest first, each with its themes (see
        :mod:`hive_store_memory.topics`)."""
        return self.theming.topics(limit, with_themes=bool(themes))

    def assign(self, keys: Iterable[str] | None = None, *, batch: int = 2000) -> int:
        """Put knowledge entries that have no theme yet into themes, in the order they were
        written: those with ``keys``, or every unassigned one. The indexer does this for the
        entries it indexes (unless ``auto_assign`` is off). Returns how many joined. Nothing
        is assigned while the themes are stale (another embedder): run :meth:`recluster`."""
        size = check_limit("Theme", batch, maximum=100_000, field="batch")
        self._catch_up(themes=False, raise_errors=True)
        return self.theming.assign(keys, batch=size)

    def recluster(self, *, threshold: float | None = None,
                  progress: ix.ProgressFn | None = None) -> ReclusterReport:
        """Rebuild every theme from the knowledge entries, in the order they were written,
        with the active embedder and ``threshold`` (default: the stored one, or the default
        of the active space), then the topics. One transaction; ``theme:`` topics are
        rewritten."""
        return self.theming.recluster(threshold, progress)

    def context_for(self, question: str, *, now: datetime | None = None,
                    conversation_id: str | None = None, record: bool = False,
                    limit: int = 20) -> MemoryContext:
        """The context the consensus engine gives a question: see
        :meth:`hive_store_memory.context.Contexts.context_for`."""
        return self.contexts.context_for(question, now=now, conversation_id=conversation_id,
                                         record=record, limit=limit)

    # -- plumbing -----------------------------------------------------------------------------

    @property
    def active_space(self) -> str:
        """``tfidf``, or ``embedder:<name>`` when a plugin supplies an embedder."""
        return TFIDF if self.embedder is None else f"embedder:{self.embedder.name}"

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
            (LATEST_TABLE,)).fetchone() is not None
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

    @property
    def read_only(self) -> bool:
        """Writes are impossible (opened read-only, or a catch-up found the file read-only):
        reads search the index as it is."""
        return self._read_only_now()

    def _read_only_now(self) -> bool:
        """Writes are impossible: the store was opened read-only, or a catch-up found the
        file read-only."""
        return bool(getattr(self.store.backend, "read_only", False)) or self._found_read_only

    def _entities(self, kind: str, keys: Iterable[Any]) -> dict[Any, Any]:
        source = ix.SOURCE_BY_TABLE[kind]
        repo: Any = self.store.repo(source.entity)
        found = repo.get_many(list(dict.fromkeys(keys)))
        return {getattr(e, source.pk): e for e in found}

    def _call_embedder(self, texts: Sequence[str]) -> list[list[float]]:
        embedder = self.embedder
        assert embedder is not None
        try:
            raw = embedder.embed(list(texts))
            vectors = [[float(x) for x in v] for v in raw]
        except HiveStoreError:
            raise
        except Exception as exc:
            raise PluginError(f"embedder {embedder.name!r} failed: {describe(exc, limit=200)}"
                              ) from exc
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

    # -- keeping the index in step --------------------------------------------------------------

    def flush(self, *, themes: bool = True) -> int:
        """Apply, in the calling thread, every change committed so far that the background
        indexer has not applied yet, then (with ``themes`` and :attr:`auto_assign`) put the
        knowledge entries it indexed into themes, however large the backlog. Inside a
        transaction it applies that transaction's own changes too (in it; themes follow after
        the commit). Returns the number of logged changes applied. Raises what went wrong; an
        indexer stopped by an error tries again here."""
        before = self.applied
        self.stopped = None
        self._catch_up(themes=themes, raise_errors=True)
        return self.applied - before

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until the background indexer has applied everything committed before the
        call, and assigned the new entries to themes. ``True`` when it has; ``False`` on
        timeout, when its catch-up failed (:attr:`last_error`) or it stopped
        (:attr:`stopped`). Without a running indexer (closed, or opened without the plugin
        hook) it catches up in the calling thread."""
        self._check()
        indexer = self.indexer
        if indexer is None or not indexer.running:
            return self._catch_up(themes=True)[0]
        if self.stopped is not None:
            return False
        return indexer.wait_idle(timeout)

    def wake(self) -> None:
        """Ask the background indexer to catch up (the plugin does after each commit that
        touched an indexed table)."""
        indexer = self.indexer
        if indexer is not None:
            indexer.wake()

    def _catch_up_for_read(self, *, themes: bool) -> tuple[bool, int]:
        """A read's catch-up: everything when the backlog is small, nothing when it is large
        (the answer says how much is missing)."""
        return self._catch_up(themes=themes, budget=self.read_catch_up)

    def _catch_up(self, *, themes: bool, raise_errors: bool = False,
                  pause: Pause | None = None, budget: int | None = None) -> tuple[bool, int]:
        """Apply the change log (short write transactions) and, with ``themes`` and
        :attr:`auto_assign`, put the knowledge entries waiting for a theme into themes.
        Returns whether it got to the end, and the changes left when it did not. With a
        ``budget`` nothing is applied when more changes than that are waiting (and at most
        :attr:`read_assign` entries are assigned). Errors other than a closed store or a
        missing schema are recorded, logged and raised only with ``raise_errors``.
        ``pause()`` (the indexer's) is called before each batch: it waits for the writers to
        pause, and returns ``False`` to stop."""
        self._check()
        backend = self.store.backend
        if getattr(backend, "read_only", False):
            return False, self._left()  # opened read-only: nothing may be written
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
                backlog = ix.pending_estimate(conn)
                waiting = (self.theming.waiting(conn)
                           if themes and self.auto_assign and not backlog else 0)
            if not backlog and not waiting:
                if self.stopped is None and not self.read_only:
                    self._recovered()  # e.g. another thread or process applied it meanwhile
                return True, 0
            if not raise_errors and (self.read_only or self.stopped is not None):
                return False, self._left()
            if budget is not None and backlog > budget:
                self.wake()
                return False, self._left()
            while backlog:
                if pause is not None and not pause():
                    return False, self._left()
                backlog = self._apply_batch()
            self._found_read_only = False
            assigned = True
            if themes and self.auto_assign:
                assigned = self.theming.assign_waiting(
                    pause, budget=self.read_assign if budget is not None else None)
                if assigned and budget is None:  # the indexer, flush(): topics when due
                    self._topics_in_background()
            if not assigned:
                return True, 0  # indexed; an entry the embedder failed on has no theme
        except (StoreClosed, ConfigurationError):
            raise
        except (HiveStoreError, sqlite3.Error) as exc:
            error = translate(exc, "updating the memory index") \
                if isinstance(exc, sqlite3.Error) else exc
            self._note_failure(error)
            if raise_errors:
                raise error from None
            return False, self._left()
        self._recovered()
        return True, 0

    def _apply_batch(self) -> int:
        """Apply one batch of the log (sized to take about :attr:`write_seconds`); a batch
        that fails on a row's data is applied row by row, and the row that fails is set
        aside. Returns an estimate of what is left."""
        start = time.perf_counter()
        try:
            with self._write() as conn:
                applied = ix.apply_log(conn, limit=max(1, min(self._batch, self.batch_size)),
                                       themes=self.auto_assign, warn=self._warn)
        except (HiveStoreError, sqlite3.Error) as exc:
            if not of_a_row(exc):
                raise
            return self._row_by_row()
        self.applied += applied.changes
        took = max(time.perf_counter() - start, 1e-6)
        self._batch = max(20, min(self.batch_size,
                                  int(self._batch * min(2.0, self.budget_seconds() / took))))
        return 1 if applied.more else 0

    def writers_active(self) -> bool:
        """A commit of this store in the last second (the indexer then keeps its transactions
        and computing slices short)."""
        indexer = self.indexer
        return indexer is not None and time.monotonic() - indexer.last_commit < 1.0

    def budget_seconds(self) -> float:
        """How long one write transaction (or computing slice) of a catch-up should take."""
        return self.write_seconds if self.writers_active() else self.idle_seconds

    def _row_by_row(self) -> int:
        failures = 0
        while True:
            try:
                with self._write() as conn:
                    applied = ix.apply_log(conn, limit=1, themes=self.auto_assign,
                                           warn=self._warn)
            except (HiveStoreError, sqlite3.Error) as exc:
                if not of_a_row(exc):
                    raise
                error = translate(exc, "indexing a row") \
                    if isinstance(exc, sqlite3.Error) else exc
                failures += 1
                self._set_aside(error)
                if failures >= MAX_SET_ASIDE:
                        raise IndexingStopped(
                        f"{failures} rows in a row could not be indexed "
                        f"(last: {describe(error)})") from None
                continue
            self.applied += applied.changes
            return 1 if applied.more else 0

    def _set_aside(self, error: BaseException) -> None:
        """Take the oldest log row's document out of the log, recorded as failed."""
        with self._write() as conn:
            row = conn.execute(f"SELECT kind, key FROM {ix.LOG} ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return
            kind, key = row
            conn.execute(f"INSERT OR REPLACE INTO {FAILED} (kind, key, error, failed_at) "
                         "VALUES (?, ?, ?, ?)", (kind, key, describe(error),
                                                 utcnow().isoformat(timespec="seconds")))
            conn.execute(f"DELETE FROM {ix.LOG} WHERE kind = ? AND key IS ?", (kind, key))
        self.set_aside += 1
        log.error("memory: a row of %s could not be indexed and was set aside (%s); "
                  "`hive-store memory reindex` tries again", kind, describe(error))

    def _topics_in_background(self) -> None:
        try:
            with self._read() as conn:
                due, _ = self.theming.topics_due(conn)
            if due:
                self.theming.build_topics(write=True)
        except (StoreClosed, ConfigurationError):
            raise
        except (HiveStoreError, sqlite3.Error) as exc:
            self._note_failure(translate(exc, "building topics")
                               if isinstance(exc, sqlite3.Error) else exc)

    def _left(self) -> int:
        try:
            with self._read() as conn:
                return ix.pending_count(conn)
        except (HiveStoreError, sqlite3.Error):
            return 0

    def _warn(self, message: str) -> None:
        log.warning("memory: %s", message)

    def _note_failure(self, error: BaseException) -> None:
        """Record a failed catch-up and decide whether it is worth retrying."""
        if is_read_only(error) or (isinstance(error, StorageError)
                                   and getattr(self.store.backend, "read_only", False)):
            if not self._found_read_only:
                log.warning("memory: the database is read-only: searching the index as it "
                            "is, without the changes logged since it was last updated")
            self._found_read_only = True
            return
        if for_good(error) or isinstance(error, IndexingStopped):
            if self.stopped is None:
                self.stopped = describe(error)
                self._failed("catching up with the change log (the indexer stopped: fix the "
                             "cause, then `hive-store memory reindex`)", error, level=logging.ERROR)
            return
        self._failed("catching up with the change log", error)

    def _failed(self, what: str, exc: BaseException, *, level: int = logging.WARNING) -> None:
        """Record and log a failure: the exception's type and message (sqlite3 and hive_store
        messages name tables and constraints, never row values or settings), no traceback;
        logged once per streak of failures."""
        message = f"{what} failed: {describe(exc)}"
        self.last_error = message
        self.last_failure = (utcnow().isoformat(timespec="seconds"), message)
        log.log(level if not self._failing else logging.DEBUG, "memory: %s", message)
        self._failing = True

    def _recovered(self) -> None:
        if self._failing:
            log.info("memory: the indexer caught up again")
        self._failing = False
        self.last_error = None

    def _indexer_facts(self) -> dict[str, Any]:
        facts: dict[str, Any] = (self.indexer.facts() if self.indexer is not None
                                 else {"running": False})
        facts.update(read_only=self._read_only_now(), stopped=self.stopped,
                     last_error=self.last_error,
                     last_failure=list(self.last_failure) if self.last_failure else None,
                     applied=self.applied, set_aside=self.set_aside,
                     batch_size=self.batch_size)
        return facts

    # -- status, reindex ------------------------------------------------------------------------

    def status(self, *, flush: bool = True) -> ix.IndexStatus:
        """Row, document and index counts, missing triggers, unassigned entries, themes,
        topics, rows set aside and the indexer's state. With ``flush`` (default) it catches up
        first when the backlog is small (else ``pending`` says how much is left);
        ``flush=False`` shows the indexer's backlog as it is."""
        if flush:
            self._catch_up_for_read(themes=True)
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
                topics = int(conn.execute(f"SELECT count(*) FROM {TOPICS}").fetchone()[0])
                failed = [(k, key, err) for k, key, err in conn.execute(
                    f"SELECT kind, key, error FROM {FAILED} ORDER BY failed_at, kind LIMIT 20")]
                failed_count = int(conn.execute(f"SELECT count(*) FROM {FAILED}").fetchone()[0])
                pending = ix.pending_count(conn)
                params = self.theming.stored_params(conn)
            except sqlite3.Error as exc:
                raise translate(exc, "reading the memory index") from None
        return ix.IndexStatus(rows=rows, documents=docs, indexed=indexed,
                              missing_triggers=missing, pending=pending,
                              unassigned=unassigned, themes=themes, topics=topics,
                              failed=failed_count, failed_rows=tuple(failed),
                              space=params.space if params else None,
                              active_space=self.active_space, indexer=self._indexer_facts())

    def reindex(self, *, progress: ix.ProgressFn | None = None) -> ix.IndexStatus:
        """Rebuild the full-text index from the tables in one transaction: put back missing
        triggers (a table rebuild drops them), make the document list match the rows (themes
        of surviving entries are kept), index every document again (the change log is then
        empty: the rebuilt index has every change) and forget the rows set aside. It catches
        up first, so that new entries get their themes. ``progress(done, total)`` is called
        per chunk."""
        self.stopped = None
        try:
            self._catch_up(themes=True, raise_errors=True)
        except HiveStoreError as exc:
            if isinstance(exc, (StoreClosed, ConfigurationError)) or self._read_only_now():
                raise
            log.warning("memory: catching up before the rebuild failed (%s); rebuilding "
                        "anyway", describe(exc))
        with self._write() as conn:
            self._ready(conn)
            try:
                self._restore_triggers(conn)
                ix.repair_documents(conn)
                ix.rebuild_index(conn, progress)
                conn.execute(f"DELETE FROM {FAILED}")
            except sqlite3.Error as exc:
                raise translate(exc, "rebuilding the memory index") from None
        self.theming.drop_cache()
        self.stopped = None
        self._recovered()
        return self.status(flush=False)

    def _restore_triggers(self, conn: sqlite3.Connection) -> None:
        """Create the plugin's triggers that are missing, from their one description
        (:mod:`hive_store_memory.sqlgen`)."""
        statements = trigger_statements()
        for name in ix.missing_triggers(conn):
            conn.execute(statements[name])
