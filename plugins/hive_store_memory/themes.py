"""Themes and topics in the store: reading them, putting new entries into themes, rebuilding.

Where the work happens (so that writes never wait for it):

* **assignment** reads a batch of waiting entries and the themes with a pooled read
  connection, computes where each entry goes *outside* the write lock, then writes the result
  in one short transaction, checking first that nobody changed the themes meanwhile (a
  generation number in ``hive_store_memory_meta``; if they did, the batch is computed again).
  A batch is cut after :attr:`Theming.slice_seconds` of computing, so each write transaction
  stays short and the thread lets others run between batches;
* **topics** (:mod:`hive_store_memory.topics`) are rebuilt from the themes' stored term counts
  when the entries in themes grew by :data:`TOPICS_GROWTH` since the last build (always while
  the store is small), again computed outside the write lock and written in one transaction;
  a theme founded between builds joins the topic whose centroid it is most similar to.

One assigner per store at a time (:attr:`Theming.assign_lock`); other processes are kept
consistent by the generation check.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from hive_store.entities import ConversationTopic, KnowledgeConversation, utcnow
from hive_store.errors import (
    HiveStoreError,
    NotFound,
    PluginError,
    StorageError,
    ValidationError,
)
from hive_store_memory import index as ix
from hive_store_memory import topics as tp
from hive_store_memory.clustering import (
    DEFAULT_EMBEDDER_THRESHOLD,
    DEFAULT_THRESHOLD,
    TFIDF,
    Assignment,
    ClusterParams,
    Entry,
    ThemeModel,
    ThemeState,
    top_terms,
)
from hive_store_memory.common import (
    check_id,
    check_key,
    check_limit,
    check_threshold,
    chunks,
    marks,
    translate,
)
from hive_store_memory.results import THEME_TOPIC_PREFIX, ReclusterReport, Theme, Topic, parse_iso
from hive_store_memory.text import term_counts, term_of, topics_for

if TYPE_CHECKING:
    from hive_store_memory.service import Memory

log = logging.getLogger("hive_store.memory")

THEMES = f"{ix.PREFIX}_themes"
MEMBERS = f"{ix.PREFIX}_members"
TERMS = f"{ix.PREFIX}_terms"
TOPICS = f"{ix.PREFIX}_topics"
META = ix.META
TOPICS_GROWTH = 0.10  # rebuild topics when the entries in themes grew by 10% …
SMALL = 300  # … or at any change while there are at most this many themes
_THEME_COLS = "t.id, t.name, t.keywords, t.member_count, t.last_activity, t.created_at, t.topic_id"

Pause = Callable[[], bool]


def _theme(row: Sequence[Any]) -> Theme:
    tid, name, keywords, count, last, created, topic_id = row
    return Theme(id=int(tid), name=name, keywords=tuple(json.loads(keywords)),
                 member_count=int(count), last_activity=parse_iso(last),
                 created_at=parse_iso(created),
                 topic_id=int(topic_id) if topic_id is not None else None)


def _counts(tf: str | None, terms: str | None, count: int) -> dict[str, float]:
    """A theme's term counts; for a theme built before the counts were kept (migration 0003),
    its TF-IDF centroid times its size stands in until it gains members or ``recluster``."""
    counts: dict[str, float] = json.loads(tf or "{}")
    if not counts and terms:
        counts = {t: float(w) * max(1, int(count)) for t, w in json.loads(terms).items()}
    return counts


class Theming:
    """Themes and topics of one :class:`~hive_store_memory.service.Memory`.

    :ivar slice_seconds: computing time after which an assignment batch is written while
        writers are active (the write transaction that follows holds the writer for about as
        long); ``Memory.idle_seconds`` while they are not
    :ivar batch: entries read per assignment round
    """

    def __init__(self, memory: Memory) -> None:
        self.memory = memory
        self._lock = threading.RLock()  # the cached model
        self.assign_lock = threading.Lock()
        self._cache: tuple[int, ThemeModel] | None = None
        self._warned_stale = False
        self.slice_seconds = 0.004
        self.batch = 200
        self._per_round = 16

    # -- plumbing -----------------------------------------------------------------------------

    def drop_cache(self) -> None:
        with self._lock:
            self._cache = None

    def default_params(self) -> ClusterParams:
        embedder = self.memory.embedder
        if embedder is None:
            return ClusterParams(space=TFIDF, threshold=DEFAULT_THRESHOLD)
        threshold = float(getattr(embedder, "threshold", DEFAULT_EMBEDDER_THRESHOLD))
        return ClusterParams(space=self.memory.active_space, threshold=threshold)

    def stored_params(self, conn: sqlite3.Connection) -> ClusterParams | None:
        row = conn.execute(f"SELECT value FROM {META} WHERE key = 'params'").fetchone()
        if row is None or row[0] is None:
            return None
        try:
            return ClusterParams.from_json(json.loads(row[0]))
        except (TypeError, ValueError):
            return None

    def meta_int(self, conn: sqlite3.Connection, key: str) -> int:
        row = conn.execute(f"SELECT value FROM {META} WHERE key = ?", (key,)).fetchone()
        try:
            return int(row[0]) if row is not None and row[0] is not None else 0
        except (TypeError, ValueError):
            return 0

    def put_meta(self, conn: sqlite3.Connection, key: str, value: Any) -> None:
        conn.execute(f"INSERT INTO {META} (key, value) VALUES (?, ?) ON CONFLICT(key) "
                     "DO UPDATE SET value = excluded.value", (key, value))

    def bump(self, conn: sqlite3.Connection) -> int:
        row = conn.execute(f"UPDATE {META} SET value = random() WHERE key = 'generation' "
                           "RETURNING value").fetchone()
        if row is None:
            self.put_meta(conn, "generation", 1)
            return 1
        return int(row[0])

    def advance(self, conn: sqlite3.Connection, frontier: int) -> None:
        conn.execute(f"UPDATE {META} SET value = max(coalesce(value, 0), ?) WHERE key = ?",
                     (frontier, ix.FRONTIER))

    def stale(self, conn: sqlite3.Connection) -> bool:
        stored = self.stored_params(conn)
        return stored is not None and stored.space != self.memory.active_space

    def warn_stale(self) -> None:
        if not self._warned_stale:
            log.warning("memory: themes were built with another embedder or settings; run "
                        "`hive-store memory recluster`")
            self._warned_stale = True

    def documents(self, conn: sqlite3.Connection) -> int:
        """Knowledge entries counted in the vocabulary's document frequencies."""
        return self.meta_int(conn, "documents")

    def document_frequencies(self, conn: sqlite3.Connection,
                             words: Iterable[str]) -> dict[str, int]:
        """How many knowledge entries hold each word (by its clustering term; 0 when unseen,
        a stop word counts as everywhere)."""
        by_term: dict[str, list[str]] = {}
        out: dict[str, int] = {}
        everywhere = max(1, self.documents(conn))
        for word in words:
            term = term_of(word)
            if term is None:
                out[word] = everywhere
            else:
                by_term.setdefault(term, []).append(word)
        for chunk in chunks(sorted(by_term)):
            for term, df in conn.execute(
                    f"SELECT term, df FROM {TERMS} WHERE term IN ({marks(len(chunk))})",
                    list(chunk)):
                for word in by_term[term]:
                    out[word] = int(df)
        return out

    def load_df(self, conn: sqlite3.Connection, model: ThemeModel, terms: Iterable[str]) -> None:
        wanted = sorted(set(terms))
        model.df = Counter()
        model.dirty_terms.clear()
        for chunk in chunks(wanted):
            model.df.update(dict(conn.execute(
                f"SELECT term, df FROM {TERMS} WHERE term IN ({marks(len(chunk))})",
                list(chunk)).fetchall()))

    def model(self, conn: sqlite3.Connection) -> tuple[int, ThemeModel]:
        """The themes as a model, from the cache when the stored generation matches. Call
        with the lock held (:meth:`locked`)."""
        generation = self.meta_int(conn, "generation")
        if self._cache is not None and self._cache[0] == generation:
            return self._cache
        params = self.stored_params(conn) or self.default_params()
        themes = [
            ThemeState(id=int(tid), name=name, centroid=json.loads(centroid),
                       terms=json.loads(terms), count=int(count), last_activity=last,
                       tf=json.loads(tf or "{}"),
                       topic_id=int(topic) if topic is not None else None)
            for tid, name, centroid, terms, count, last, tf, topic in conn.execute(
                f"SELECT id, name, centroid, terms, member_count, last_activity, tf, topic_id "
                f"FROM {THEMES} ORDER BY id")
        ]
        model = ThemeModel(params, documents=self.documents(conn), themes=themes)
        model.topic_centroids = {
            int(tid): json.loads(c) for tid, c in conn.execute(
                f"SELECT id, centroid FROM {TOPICS} ORDER BY id")}
        self._cache = (generation, model)
        return self._cache

    def locked(self) -> threading.RLock:
        return self._lock

    # -- reading ------------------------------------------------------------------------------

    def themes(self, limit: Any = None) -> list[Theme]:
        lim = -1 if limit is None else check_limit("Theme", limit, maximum=1_000_000)
        memory = self.memory
        memory._catch_up_for_read(themes=True)
        with memory._read() as conn:
            memory._ready(conn)
            rows = conn.execute(
                f"SELECT {_THEME_COLS} FROM {THEMES} AS t "
                "ORDER BY t.member_count DESC, t.last_activity DESC, t.name LIMIT ?",
                (lim,)).fetchall()
        return [_theme(r) for r in rows]

    def theme(self, theme_id: Any) -> Theme:
        tid = check_id("Theme", "theme_id", theme_id)
        memory = self.memory
        memory._catch_up_for_read(themes=True)
        with memory._read() as conn:
            memory._ready(conn)
            row = conn.execute(f"SELECT {_THEME_COLS} FROM {THEMES} AS t WHERE t.id = ?",
                               (tid,)).fetchone()
        if row is None:
            raise NotFound("Theme", tid)
        return _theme(row)

    def theme_of(self, knowledge_id: Any) -> tuple[Theme, float] | None:
        key = check_key("Theme", "knowledge_id", knowledge_id)
        memory = self.memory
        memory._catch_up_for_read(themes=True)
        with memory._read() as conn:
            memory._ready(conn)
            row = conn.execute(
                f"SELECT {_THEME_COLS}, m.score FROM {ix.DOCS} AS d JOIN {MEMBERS} AS m "
                f"ON m.doc_id = d.doc_id JOIN {THEMES} AS t ON t.id = m.theme_id "
                "WHERE d.kind = ? AND d.key = ?", (ix.KNOWLEDGE, key)).fetchone()
        if row is None:
            return None
        return _theme(row[:7]), float(row[7])

    def members(self, theme_id: Any, limit: Any = 20) -> list[tuple[KnowledgeConversation,
                                                                     float]]:
        tid = check_id("Theme", "theme_id", theme_id)
        lim = check_limit("Theme", limit, maximum=1_000_000)
        memory = self.memory
        memory._catch_up_for_read(themes=True)
        with memory._read() as conn:
            memory._ready(conn)
            rows = conn.execute(
                f"SELECT d.key, m.score FROM {MEMBERS} AS m JOIN {ix.DOCS} AS d "
                "ON d.doc_id = m.doc_id WHERE m.theme_id = ? "
                "ORDER BY m.score DESC, d.at DESC, d.doc_id LIMIT ?", (tid, lim)).fetchall()
        entities = memory._entities(ix.KNOWLEDGE, [r[0] for r in rows])
        return [(entities[k], float(s)) for k, s in rows if k in entities]

    def topics(self, limit: Any = None, *, with_themes: bool = True) -> list[Topic]:
        """Topics, largest first, each with its themes (largest first). Rebuilt first when
        due and the store is small enough to do it now; otherwise as last built (the indexer
        rebuilds them in the background)."""
        lim = None if limit is None else check_limit("Topic", limit, maximum=1_000_000)
        memory = self.memory
        memory._catch_up_for_read(themes=True)
        built: list[tp.TopicOut] | None = None
        with memory._read() as conn:
            memory._ready(conn)
            due, themes = self.topics_due(conn)
        if due and themes <= 4 * SMALL:
            built = self.build_topics(write=not memory._read_only_now())
        with memory._read() as conn:
            theme_rows = conn.execute(
                f"SELECT {_THEME_COLS} FROM {THEMES} AS t "
                "ORDER BY t.member_count DESC, t.last_activity DESC, t.name").fetchall()
            topic_rows = conn.execute(
                f"SELECT id, name, keywords, member_count, theme_count, updated_at "
                f"FROM {TOPICS}").fetchall()
        all_themes = [_theme(r) for r in theme_rows]
        if built is not None and memory._read_only_now():  # computed, not stored
            where = {t: o.id for o in built for t in o.theme_ids}
            all_themes = [attrs.evolve(t, topic_id=where.get(t.id)) for t in all_themes]
            topic_rows = [(o.id, o.name, json.dumps(list(o.keywords)), o.member_count,
                           len(o.theme_ids), None) for o in built]
        inside: dict[int | None, list[Theme]] = {}
        for t in all_themes:
            inside.setdefault(t.topic_id, []).append(t)
        out = []
        for tid, name, keywords, count, theme_count, updated in topic_rows:
            members = inside.get(int(tid), [])
            out.append(Topic(id=int(tid), name=name, keywords=tuple(json.loads(keywords)),
                             member_count=sum(t.member_count for t in members) or int(count),
                             theme_count=len(members) or int(theme_count),
                             updated_at=parse_iso(updated),
                             themes=tuple(members) if with_themes else ()))
        out.sort(key=lambda t: (-t.member_count, t.id))
        return out[:lim] if lim is not None else out

    # -- assignment ---------------------------------------------------------------------------

    def waiting(self, conn: sqlite3.Connection) -> int:
        """Knowledge entries above the frontier that wait for a theme."""
        return int(conn.execute(
            f"SELECT count(*) FROM {ix.DOCS} AS d WHERE d.kind = ? AND d.doc_id > ? AND NOT "
            f"EXISTS (SELECT 1 FROM {MEMBERS} AS m WHERE m.doc_id = d.doc_id)",
            (ix.KNOWLEDGE, self.meta_int(conn, ix.FRONTIER))).fetchone()[0])

    def unassigned(self, conn: sqlite3.Connection, keys: list[str] | None, after: int,
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
            for chunk in chunks(keys):
                rows += conn.execute(base + f" AND d.key IN ({marks(len(chunk))})",
                                     list(chunk)).fetchall()
            rows.sort(key=lambda r: r[0])
        out = []
        for doc_id, question, answer, truth, at, cid in rows:
            body = answer if truth == answer else f"{answer}\n{truth}"
            out.append((Entry(int(doc_id), question or "", body or "", ix.julian_to_iso(at)),
                        cid))
        return out

    def assign_waiting(self, pause: Pause | None = None, *, budget: int | None = None) -> bool:
        """Put the entries waiting for a theme (above the ``assign_from`` frontier) into
        themes, in write order, moving the frontier, one slice at a time (``pause()`` between
        slices; the assignment lock is held for a slice only). With a ``budget`` (a read)
        nothing when more entries wait than that (the read uses the themes as they stand).
        An entry the embedder fails on is passed over and stays without a theme (the health
        check says so; ``assign()`` or ``recluster`` catch up): the error is recorded, not
        raised. Returns whether everything succeeded."""
        ok = True
        done = 0
        memory = self.memory
        first = True
        if budget is not None:
            with memory._read() as conn:
                memory._ready(conn)
                if self.waiting(conn) > budget:
                    return ok  # a large backlog is the indexer's: use the themes as they stand
        while True:
            if not first and pause is not None and not pause():
                return ok
            first = False
            if budget is not None and done >= budget:
                return ok  # the rest is the indexer's
            self.assign_lock.acquire()  # held by anyone for one slice at most
            try:
                with memory._read() as conn:
                    memory._ready(conn)
                    if self.stale(conn):
                        self.warn_stale()
                        return ok
                    entries = self.unassigned(conn, None, self.meta_int(conn, ix.FRONTIER),
                                              max(1, 2 * self._per_round))
                if not entries:
                    return ok
                try:
                    vectors = self.embed(entries)
                except HiveStoreError as exc:
                    memory._failed("assigning new knowledge entries to themes", exc,
                                   level=logging.ERROR)
                    ok = False
                    with memory._write() as conn:  # pass them over (they stay without a theme)
                        self.advance(conn, entries[-1][0].doc_id)
                    continue
                done += self._round(entries, vectors, frontier=True, polite=pause is not None)
            finally:
                self.assign_lock.release()

    def assign(self, keys: Iterable[str] | None = None, *, batch: int = 2000) -> int:
        """Put these (or all) knowledge entries without a theme into themes (explicitly)."""
        wanted: list[str] | None = None
        if keys is not None:
            if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
                raise ValidationError("Theme", [("keys", "must be a list of knowledge ids")])
            wanted = list(dict.fromkeys(check_key("Theme", "keys", k) for k in keys))
        memory = self.memory
        total = 0
        after = 0
        with self.assign_lock:
            while True:
                with memory._read() as conn:
                    memory._ready(conn)
                    if self.stale(conn):
                        self.warn_stale()
                        return total
                    entries = self.unassigned(conn, wanted, after, batch)
                if not entries:
                    return total
                vectors = self.embed(entries)
                total += self._assign_rounds(entries, vectors, None, frontier=False)
                after = entries[-1][0].doc_id
                if wanted is not None or len(entries) < batch:
                    return total

    def _assign_rounds(self, entries: Sequence[tuple[Entry, str | None]],
                       vectors: dict[int, list[float]], pause: Pause | None, *,
                       frontier: bool) -> int:
        """Assign ``entries`` in slices (each computed, then written in one transaction)."""
        done = 0
        start = 0
        while start < len(entries):
            if start and pause is not None and not pause():
                break
            taken = self._round(entries[start:], vectors, frontier=frontier,
                                polite=pause is not None)
            start += taken
            done += taken
        return done

    def _open(self, conn: sqlite3.Connection, ids: Sequence[int]) -> set[int]:
        """Which of these documents still exist and have no theme."""
        found: set[int] = set()
        for chunk in chunks(list(ids)):
            found.update(r[0] for r in conn.execute(
                f"SELECT d.doc_id FROM {ix.DOCS} AS d WHERE d.doc_id IN ({marks(len(chunk))}) "
                f"AND NOT EXISTS (SELECT 1 FROM {MEMBERS} AS m WHERE m.doc_id = d.doc_id)",
                list(chunk)))
        return found

    def _round(self, entries: Sequence[tuple[Entry, str | None]],
               vectors: dict[int, list[float]], *, frontier: bool,
               polite: bool = False) -> int:
        """One slice: compute the assignments of a prefix of ``entries`` (until
        :attr:`slice_seconds` have passed) against the themes as stored, then write them if
        the themes did not change meanwhile (else compute again). Returns the entries
        consumed (assigned, or found assigned or gone already): at least one."""
        memory = self.memory
        for _attempt in range(5):
            prefix = entries[:max(1, self._per_round)]
            with memory._read() as conn, self._lock:
                memory._ready(conn)
                generation, model = self.model(conn)
                if model.params.space != memory.active_space:
                    return len(entries)
                still = self._open(conn, [e.doc_id for e, _ in prefix])
                counted = [(e, cid, term_counts(e.title, e.body)) for e, cid in prefix
                           if e.doc_id in still]
                if counted:
                    self.load_df(conn, model, (t for _, _, c in counted for t in c))
                    model.documents = self.documents(conn)
                    self._cache = None  # the model changes below until written
            if not counted:  # all assigned or gone meanwhile
                if frontier:
                    with memory._write() as conn:
                        self.advance(conn, prefix[-1][0].doc_id)
                return len(prefix)
            active = polite and memory.writers_active()
            now = time.perf_counter()
            deadline = now + (self.slice_seconds if active else memory.idle_seconds)
            breath = now + 0.002
            todo: list[tuple[Entry, str | None]] = []
            assignments: list[Assignment] = []
            for entry, cid, counts in counted:
                assignments.append(model.add(entry, vectors.get(entry.doc_id), counts))
                todo.append((entry, cid))
                if time.perf_counter() > deadline:
                    break
                if active and time.perf_counter() > breath:
                    time.sleep(0)  # let a writer thread have the interpreter (every 2 ms)
                    breath = time.perf_counter() + 0.002
            full = len(todo) == len(counted)
            self._per_round = (min(self.batch, self._per_round * 2) if full
                               else max(4, len(todo) + len(todo) // 2))
            last = todo[-1][0].doc_id
            consumed = next(i for i, (e, _) in enumerate(prefix) if e.doc_id == last) + 1
            with memory._write() as conn, self._lock:  # lock order: writer, then the model
                if (self.meta_int(conn, "generation") != generation
                        or len(self._open(conn, [e.doc_id for e, _ in todo])) != len(todo)):
                    continue  # someone changed the themes or the entries: compute again
                if self.stored_params(conn) is None:
                    self.put_meta(conn, "params", json.dumps(model.params.to_json()))
                self.persist(conn, model, todo, assignments)
                if frontier:
                    self.advance(conn, last)
                self._cache = (self.bump(conn), model)
            return consumed
        raise StorageError("the themes kept changing while new entries were being assigned "
                           "(another process assigns too); the next catch-up tries again")

    def embed(self, entries: Sequence[tuple[Entry, str | None]]) -> dict[int, list[float]]:
        if self.memory.embedder is None:
            return {}
        texts = [f"{e.title}\n\n{e.body}" for e, _ in entries]
        vectors = self.memory._call_embedder(texts)
        return {e.doc_id: v for (e, _), v in zip(entries, vectors, strict=True)}

    def persist(self, conn: sqlite3.Connection, model: ThemeModel,
                todo: Sequence[tuple[Entry, str | None]],
                assignments: Sequence[Assignment]) -> None:
        now = utcnow().isoformat(timespec="microseconds")
        conn.executemany(
            f"INSERT INTO {TERMS} (term, df) VALUES (?, ?) "
            "ON CONFLICT(term) DO UPDATE SET df = excluded.df",
            [(t, model.df[t]) for t in sorted(model.dirty_terms)])
        model.dirty_terms.clear()
        self.put_meta(conn, "documents", model.documents)
        founders = {a.theme_id: e for (e, _), a in zip(todo, assignments, strict=True)
                    if a.founded}
        centroids = model.topic_centroids
        for tid in sorted(model.dirty_themes):
            theme = model.themes[tid]
            keywords = model.keywords(theme)
            values = (json.dumps(keywords), json.dumps(theme.centroid, sort_keys=True),
                      json.dumps(theme.terms, sort_keys=True), theme.count, theme.last_activity,
                      json.dumps(theme.tf, sort_keys=True))
            if theme.created:
                founder = founders.get(tid)
                created = (founder.at if founder is not None else None) or now
                if centroids:
                    theme.topic_id = tp.nearest_topic(theme.terms, centroids)
                conn.execute(
                    f"INSERT INTO {THEMES} (id, name, keywords, centroid, terms, member_count, "
                    "last_activity, tf, topic_id, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (tid, theme.name, *values, theme.topic_id, created, now))
                theme.created = False
            else:
                conn.execute(
                    f"UPDATE {THEMES} SET keywords = ?, centroid = ?, terms = ?, "
                    "member_count = ?, last_activity = ?, tf = ?, updated_at = ? WHERE id = ?",
                    (*values, now, tid))
        model.dirty_themes.clear()
        conn.executemany(
            f"INSERT INTO {MEMBERS} (doc_id, theme_id, score, assigned_at) VALUES (?, ?, ?, ?)",
            [(a.doc_id, a.theme_id, a.score, now) for a in assignments])
        self.write_topics(conn, model, todo, assignments)

    def write_topics(self, conn: sqlite3.Connection, model: ThemeModel,
                     todo: Sequence[tuple[Entry, str | None]],
                     assignments: Sequence[Assignment]) -> None:
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
        for chunk in chunks(cids):
            m = marks(len(chunk))
            live.update(r[0] for r in conn.execute(
                f"SELECT id FROM conversations WHERE id IN ({m})", list(chunk)))
            existing.update(conn.execute(
                f"SELECT conversation_id, topic FROM conversation_topics "
                f"WHERE conversation_id IN ({m})", list(chunk)).fetchall())
        codec = self.memory.store.codec(ConversationTopic)
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
                             f"VALUES ({marks(len(columns))})", rows)

    # -- topics -------------------------------------------------------------------------------

    def topics_due(self, conn: sqlite3.Connection) -> tuple[bool, int]:
        """Whether the topics should be rebuilt, and the number of themes."""
        themes = int(conn.execute(f"SELECT count(*) FROM {THEMES}").fetchone()[0])
        members = int(conn.execute(f"SELECT coalesce(sum(member_count), 0) FROM {THEMES}")
                      .fetchone()[0])
        built = self.meta_int(conn, "topics_members")
        built_generation = self.meta_int(conn, "topics_generation")
        generation = self.meta_int(conn, "generation")
        if not themes:
            return built != 0, themes
        stored = conn.execute(f"SELECT 1 FROM {TOPICS} LIMIT 1").fetchone() is not None
        if (not stored or built == 0 or members >= built * (1 + TOPICS_GROWTH) + 1
                or members < built * 0.9):
            return True, themes
        return (themes <= SMALL and generation != built_generation), themes

    def build_topics(self, *, write: bool = True) -> list[tp.TopicOut]:
        """Rebuild the topics from the themes (computed from a read; written in one
        transaction if ``write``, unless the themes changed meanwhile: then computed again)."""
        memory = self.memory
        with self.assign_lock:
            for _attempt in range(3):
                with memory._read() as conn:
                    memory._ready(conn)
                    generation = self.meta_int(conn, "generation")
                    rows = conn.execute(f"SELECT id, member_count, tf, terms, topic_id FROM "
                                        f"{THEMES} ORDER BY id").fetchall()
                    taken = {int(i): n for i, n in conn.execute(
                        f"SELECT id, name FROM {TOPICS}")}
                    themes = [tp.ThemeInput(id=int(i), count=int(c), tf=_counts(tf, terms, c),
                                            topic_id=int(t) if t is not None else None)
                              for i, c, tf, terms, t in rows]
                    wanted = {term for t in themes for term in t.tf}
                    df: dict[str, int] = {}
                    for chunk in chunks(sorted(wanted)):
                        df.update(conn.execute(
                            f"SELECT term, df FROM {TERMS} WHERE term IN ({marks(len(chunk))})",
                            list(chunk)).fetchall())
                    documents = self.documents(conn)
                built = tp.build(themes, df, documents, taken=taken)
                if not write:
                    return built
                with memory._write() as conn, self._lock:
                    if self.meta_int(conn, "generation") != generation:
                        continue
                    self._write_built(conn, built, sum(t.count for t in themes))
                return built
        return []

    def _write_built(self, conn: sqlite3.Connection, built: Sequence[tp.TopicOut],
                     members: int) -> None:
        now = utcnow().isoformat(timespec="microseconds")
        conn.execute(f"DELETE FROM {TOPICS}")
        conn.executemany(
            f"INSERT INTO {TOPICS} (id, name, keywords, centroid, member_count, theme_count, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(t.id, t.name, json.dumps(list(t.keywords)), json.dumps(t.centroid,
                                                                     sort_keys=True),
              t.member_count, len(t.theme_ids), now) for t in built])
        conn.executemany(f"UPDATE {THEMES} SET topic_id = ? WHERE id = ?",
                         [(t.id, tid) for t in built for tid in t.theme_ids])
        self.put_meta(conn, "topics_members", members)
        generation = self.bump(conn)
        self.put_meta(conn, "topics_generation", generation)
        generation = self.meta_int(conn, "generation")
        cached = self._cache
        if cached is not None:  # the model's themes now belong to these topics
            model = cached[1]
            where = {tid: t.id for t in built for tid in t.theme_ids}
            for theme in model.themes.values():
                theme.topic_id = where.get(theme.id)
            model.topic_centroids = {t.id: t.centroid for t in built}
            self._cache = (generation, model)

    # -- recluster ----------------------------------------------------------------------------

    def recluster(self, threshold: Any = None,
                  progress: ix.ProgressFn | None = None) -> ReclusterReport:
        memory = self.memory
        params = self.default_params()
        if threshold is not None:
            params = attrs.evolve(params, threshold=check_threshold(threshold))
        memory._catch_up(themes=False, raise_errors=True)  # every committed entry
        with memory._read() as conn:
            memory._ready(conn)
            stored = self.stored_params(conn)
        if threshold is None and stored is not None and stored.space == params.space:
            params = attrs.evolve(stored)
        try:
            with self.assign_lock, memory._write() as conn, self._lock:
                self._cache = None
                report = self._recluster(conn, params, progress)
                conn.execute(f"UPDATE {META} SET value = (SELECT coalesce(max(doc_id), 0) "
                             f"FROM {ix.DOCS}) WHERE key = ?", (ix.FRONTIER,))
                self.bump(conn)
        except sqlite3.Error as exc:
            raise translate(exc, "reclustering") from None
        finally:
            self.drop_cache()
        built = self.build_topics(write=not memory._read_only_now())
        return attrs.evolve(report, topics=len(built))

    def _recluster(self, conn: sqlite3.Connection, params: ClusterParams,
                   progress: ix.ProgressFn | None) -> ReclusterReport:
        conn.execute(f"DELETE FROM {MEMBERS}")
        conn.execute(f"DELETE FROM {THEMES}")
        conn.execute(f"DELETE FROM {TERMS}")
        conn.execute(f"DELETE FROM {TOPICS}")
        self.put_meta(conn, "documents", 0)
        self.put_meta(conn, "topics_members", 0)
        self.put_meta(conn, "params", json.dumps(params.to_json()))
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
            entries = self.unassigned(conn, None, after, 1000)
            if not entries:
                break
            vectors = self.embed(entries)
            assignments = [model.add(e, vectors.get(e.doc_id)) for e, _ in entries]
            self.persist(conn, model, entries, assignments)
            done += len(entries)
            after = entries[-1][0].doc_id
            if progress is not None:
                progress(done, total)
        return ReclusterReport(entries=done, themes=len(model.themes), params=params)

    # -- the question's theme (context) -------------------------------------------------------

    def question_themes(self, conn: sqlite3.Connection, question: str,
                        factor: float) -> list[tuple[ThemeState, float]]:
        """The themes most similar to a question (at least ``factor`` times the threshold), best
        first (at most three)."""
        with self._lock:
            _, model = self.model(conn)
            if not model.themes:
                return []
            counts = term_counts(question, "")
            saved_df, saved_dirty, saved_docs = model.df, set(model.dirty_terms), model.documents
            try:
                self.load_df(conn, model, counts)
                model.documents = self.documents(conn)
                vector = model.tfidf(counts)
                ranked = model.ranked(vector, use_terms=True)
            finally:
                model.df, model.dirty_terms, model.documents = saved_df, saved_dirty, saved_docs
            floor = model.params.threshold * factor if not model.dense else 0.05
            return [(t, s) for t, s in ranked[:3] if s >= floor]

    def keywords_of(self, state: ThemeState, model_keywords: int = 8) -> tuple[str, ...]:
        return tuple(top_terms(state.terms, model_keywords))


__all__ = ["PluginError", "Theming"]
