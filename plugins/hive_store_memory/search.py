"""Full-text search of the memory: what ``store.memory.search`` does.

A question a person types ("how does WAL work") is answered in two steps over the FTS5 index:

1. every word must occur (each word quoted: user text is never FTS5 syntax), ranked by BM25
   with the title (a knowledge entry's question) weighted twice;
2. when that finds fewer than ``limit`` documents, the question's distinctive words — not stop
   words, not in more than :data:`COMMON_SHARE` of the knowledge entries, the
   :data:`OR_WORDS` rarest — as a ranked ``OR`` (BM25 sums what each word contributes, so a
   document with more of the rarer words ranks higher). Its hits follow those of step 1.

``group=True`` keeps one hit per conversation (the best), so that a run's knowledge entry, its
curator truth and its messages do not fill the list. ``advanced=True`` takes FTS5's own query
syntax, at most :data:`MAX_ADVANCED_TERMS` words and :data:`MAX_ADVANCED_CHARS` characters (a
longer query is a :class:`hive_store.ValidationError`: ranking and snippets cost per term).
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hive_store.errors import ValidationError
from hive_store_memory import index as ix
from hive_store_memory.common import (
    check_bool,
    check_kinds,
    check_limit,
    check_text,
    check_time,
    error_code,
    marks,
    translate,
)
from hive_store_memory.text import fts_all, fts_any, query_words

if TYPE_CHECKING:
    from hive_store_memory.service import Memory

log = logging.getLogger("hive_store.memory")

NAME = "MemorySearch"
RANK_WINDOW = 5000  # a query matching more documents ranks its newest 5,000
OR_WORDS = 8
COMMON_SHARE = 0.05  # a word in more than 5% of the knowledge entries is too common to look for
COMMON_MIN = 50
MAX_ADVANCED_TERMS = 32
MAX_ADVANCED_CHARS = 1000
GROUP_FETCH = 4  # with group=True, look at this many hits per wanted one
_WORDS = re.compile(r"[^\W_]+")
_OPERATORS = frozenset({"AND", "OR", "NOT", "NEAR"})


class Searcher:
    """The search of one :class:`~hive_store_memory.service.Memory` (``store.memory.search``)."""

    def __init__(self, memory: Memory) -> None:
        self.memory = memory
        self.rank_window: int | None = RANK_WINDOW

    def search(self, text: Any, *, limit: Any = 20, since: Any = None, kinds: Any = None,
               advanced: Any = False, group: Any = False) -> ix.SearchResults:
        text = check_text(NAME, "text", text)
        advanced = check_bool(NAME, "advanced", advanced)
        group = check_bool(NAME, "group", group)
        lim = check_limit(NAME, limit)
        kind_list = check_kinds(NAME, kinds, ix.KINDS)
        start = check_time(NAME, "since", since)
        since_iso = start.isoformat() if start is not None else None
        if advanced:
            query = self._advanced(text)
            if query is None:
                return ix.SearchResults()
            complete, pending = self.memory._catch_up_for_read(themes=False)
            hits = self.run(query, limit=lim, kinds=kind_list, since=since_iso, until=None,
                            advanced=True, group=group)
            return ix.SearchResults(hits, complete=complete, pending=pending)
        every = fts_all(text)
        if every is None:
            return ix.SearchResults()
        complete, pending = self.memory._catch_up_for_read(themes=False)
        hits = self.run(every, limit=lim, kinds=kind_list, since=since_iso, until=None,
                        group=group)
        if len(hits) < lim:
            words = self.distinctive(query_words(text, limit=32))
            any_of = fts_any(words)
            if any_of is not None and any_of != every:
                seen_docs = [h.doc_id for h in hits]
                seen_convs = {h.conversation_id for h in hits if h.conversation_id} if group \
                    else set()
                more = self.run(any_of, limit=lim - len(hits), kinds=kind_list,
                                since=since_iso, until=None, group=group,
                                exclude_docs=seen_docs, exclude_conversations=seen_convs)
                hits = [*hits, *more]
        return ix.SearchResults(hits, complete=complete, pending=pending)

    @staticmethod
    def _advanced(text: str) -> str | None:
        query = text.strip()
        if not query:
            return None
        if len(query) > MAX_ADVANCED_CHARS:
            raise ValidationError(NAME, [("text", f"an advanced query may have at most "
                                                  f"{MAX_ADVANCED_CHARS} characters")])
        terms = [w for w in _WORDS.findall(query) if w not in _OPERATORS]
        if len(terms) > MAX_ADVANCED_TERMS:
            raise ValidationError(NAME, [("text", f"an advanced query may have at most "
                                                  f"{MAX_ADVANCED_TERMS} words")])
        return query

    def distinctive(self, words: Sequence[str], *, keep: int = OR_WORDS) -> list[str]:
        """The words worth an ``OR`` search: those in at most :data:`COMMON_SHARE` of the
        knowledge entries (a word in most of them would match most of the index and make
        ranking it slow, and says little), the ``keep`` rarest, in the question's order.
        Frequencies come from the themes' vocabulary (one lookup per word); a word it has not
        seen counts as rare."""
        if not words:
            return []
        memory = self.memory
        with memory._read() as conn:
            memory._ready(conn)
            counts = memory.theming.document_frequencies(conn, words)
            total = memory.theming.documents(conn)
        limit = max(COMMON_MIN, int(total * COMMON_SHARE))
        ranked = sorted((counts.get(w, 0), n, w) for n, w in enumerate(words)
                        if counts.get(w, 0) <= limit)
        return [w for _, _, w in sorted(ranked[:keep], key=lambda r: r[1])]

    def run(self, query: str, *, limit: int, kinds: Sequence[str], since: str | None,
            until: str | None, advanced: bool = False, group: bool = False,
            exclude_conversation: str | None = None, exclude_docs: Sequence[int] = (),
            exclude_conversations: set[str] | None = None) -> list[ix.SearchHit]:
        """The ranked hits of one FTS5 query (with entities and snippets)."""
        memory = self.memory
        where = [f"{ix.FTS} MATCH ?"]
        params: list[Any] = [query]
        if list(kinds) != list(ix.KINDS):
            where.append(f"d.kind IN ({marks(len(kinds))})")
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
        if exclude_docs:
            where.append(f"{ix.FTS}.rowid NOT IN ({marks(len(exclude_docs))})")
            params.extend(exclude_docs)
        fetch = min(1000, limit * GROUP_FETCH) if group else limit
        with memory._read() as conn:
            memory._ready(conn)
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
                rows = conn.execute(sql, [*params, fetch]).fetchall()
            except sqlite3.Error as exc:
                # In advanced mode a plain SQL error (SQLITE_ERROR) of this statement can only
                # be the query's: the tables were checked just before. By code, never by text.
                if advanced and error_code(exc) == sqlite3.SQLITE_ERROR:
                    raise ValidationError(NAME, [(
                        "text", f"not a valid full-text query ({exc}); see "
                                "https://sqlite.org/fts5.html#full_text_query_syntax, or search "
                                "without advanced=True")]) from None
                raise translate(exc, "searching the memory index") from None
            if group:
                rows = _one_per_conversation(rows, limit, exclude_conversations or set())
            return self._hits(conn, query, rows)

    def _hits(self, conn: sqlite3.Connection, query: str,
              rows: Sequence[Any]) -> list[ix.SearchHit]:
        by_kind: dict[str, list[Any]] = {}
        for _doc, _rank, kind, key, _cid, _at in rows:
            by_kind.setdefault(kind, []).append(key)
        entities = {kind: self.memory._entities(kind, keys) for kind, keys in by_kind.items()}
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
            log.warning("memory: no snippets (%s)", type(exc).__name__)
            snips = {}
        hits = []
        for (doc, rank, kind, key, cid, at, entity), (_, title, body) in zip(found, texts,
                                                                             strict=True):
            snippet, spans = snips.get(doc) or (ix.fallback_snippet(title, body), ())
            hits.append(ix.SearchHit(kind=kind, key=key, entity=entity, score=-float(rank),
                                     snippet=snippet, highlights=spans, conversation_id=cid,
                                     created_at=ix.julian_to_datetime(at), doc_id=int(doc)))
        return hits


def _one_per_conversation(rows: Sequence[Any], limit: int,
                          taken: set[str]) -> list[Any]:
    out = []
    seen = set(taken)
    for row in rows:
        cid = row[4]
        if cid is not None:
            if cid in seen:
                continue
            seen.add(cid)
        out.append(row)
        if len(out) >= limit:
            break
    return out


