"""The full-text index: what is indexed, keeping it in step, search hits with snippets,
rebuild and status.

The index (``hive_store_memory_fts``) is a *contentless* FTS5 table: the text stays in the Hive
tables, the index holds only the tokens. Every row of ``knowledge_conversations``,
``curator_truths``, ``consensus_facts`` and ``messages`` is a document of
``hive_store_memory_docs``; its ``doc_id`` is the document's rowid in the index.

Keeping it in step is split in two, so that writes do not pay for tokenizing:

* **On the commit path**, triggers (``migrations/0002_deferred_index.sql``) append one row per
  changed row to ``hive_store_memory_log``: the table, the key, and the row's indexed text
  *before* the change where there was a row (a contentless index forgets a document only when
  given the text it indexed). That is all a write costs; it holds for writes by other programs
  (the Hive apps) too.
* **After the commit**, :func:`apply_log` turns the oldest log rows into documents and index
  entries, in one short transaction: it forgets the text each changed document was indexed
  with, indexes the rows' current text in one set-based statement (FTS5 writes one segment per
  statement) and deletes the log rows it applied. The plugin's background indexer
  (:mod:`hive_store_memory.indexer`) runs it in batches after each commit that touched an
  indexed table; reads through the plugin run it first (read your writes).

Which logged text the index holds for a document: that of its first log row, unless the
document has a mark in ``hive_store_memory_marks`` (it was indexed while later log rows for it
were still waiting: its indexed text already includes every change up to the mark); then that
of its first log row after the mark.

Why not external content over a view: a view naming core tables makes SQLite refuse the
core's table rebuilds (``ALTER TABLE … RENAME`` checks every view). Why not the tables' rowids:
``VACUUM`` renumbers the implicit rowids of tables with TEXT primary keys. Why not write FTS5
from the triggers: that is tokenizing on the commit path again, and FTS5 flushes its buffer at
every statement savepoint, so each row of an ``executemany`` would become an index segment.

Snippets need the text, so they are made by FTS5 itself on a private ``temp`` table holding
just the hits of one query (the same tokenizer, the same query): highlights are exactly what
the index matched.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import attrs

from hive_store_memory.common import julian_to_datetime
from hive_store_memory.sqlgen import (
    DOCS,
    LOG,
    MARKS,
    META,
    PREFIX,
    SOURCE_BY_TABLE,
    SOURCES,
    TRIGGERS,
    Source,
    register_sql,
    retime_sql,
)

__all__ = ["DOCS", "LOG", "MARKS", "META", "PREFIX", "SOURCES", "SOURCE_BY_TABLE", "TRIGGERS",
           "Source", "julian_to_datetime"]

FTS = f"{PREFIX}_fts"
BATCH = f"{PREFIX}_batch"  # temp: the documents of one apply_log batch
FRONTIER = "assign_from"  # meta: knowledge documents above this number wait for a theme
SNIPPETS = f"{PREFIX}_snippets"
TOKENIZE = "porter unicode61 remove_diacritics 2"

ProgressFn = Callable[[int, int], None]

KINDS: tuple[str, ...] = tuple(s.table for s in SOURCES)
KNOWLEDGE = "knowledge_conversations"


def doc_text(kind: str, entity: Any) -> tuple[str, str]:
    """The title and body a document of ``kind`` has in the index (what the triggers' SQL
    computes, in Python)."""
    if kind == "knowledge_conversations":
        e: Any = entity
        body = (e.final_answer if e.source_of_truth == e.final_answer
                else f"{e.final_answer}\n{e.source_of_truth}")
        return e.question, body
    if kind == "curator_truths":
        return (entity.topic_summary if entity.topic_summary is not None else ""), \
            entity.curator_output
    if kind == "consensus_facts":
        return entity.source_question, entity.content
    if kind == "messages":
        return "", entity.content
    raise ValueError(f"not an indexed table: {kind!r}")


# -- time -----------------------------------------------------------------------------------------


def julian_to_iso(jd: float | None) -> str | None:
    """A julian day (as SQLite's ``julianday()`` gives it) as an RFC 3339 UTC timestamp."""
    when = julian_to_datetime(jd)
    return when.isoformat(timespec="microseconds") if when is not None else None


# -- hits -----------------------------------------------------------------------------------------

OPEN_MARK = "\x02"
CLOSE_MARK = "\x03"
ELLIPSIS = "…"


@attrs.frozen(kw_only=True)
class SearchHit:
    """One document found by :meth:`hive_store_memory.Memory.search`.

    :ivar kind: the table the document comes from (``knowledge_conversations``,
        ``curator_truths``, ``consensus_facts`` or ``messages``)
    :ivar key: the row's primary key
    :ivar entity: the row, as its hive_store entity
    :ivar score: relevance, higher is better (``-bm25``; title weighted 2, body 1)
    :ivar snippet: an excerpt around the matches (``…`` where text was cut)
    :ivar highlights: ``(start, end)`` offsets of the matched words in ``snippet``
    :ivar conversation_id: the conversation the row belongs to, if any
    :ivar created_at: the row's time (``created_at``, or a message's ``timestamp``)
    :ivar doc_id: the document's number in the index
    """

    kind: str
    key: Any
    entity: Any
    score: float
    snippet: str
    highlights: tuple[tuple[int, int], ...] = ()
    conversation_id: str | None = None
    created_at: datetime | None = None
    doc_id: int = attrs.field(default=0, repr=False)

    def marked(self, open: str = "[", close: str = "]") -> str:
        """The snippet with each highlight wrapped in ``open`` … ``close``."""
        out: list[str] = []
        pos = 0
        for start, end in self.highlights:
            out += [self.snippet[pos:start], open, self.snippet[start:end], close]
            pos = end
        out.append(self.snippet[pos:])
        return "".join(out)

    @property
    def matched(self) -> tuple[str, ...]:
        """The highlighted words, lower-cased, in order of first appearance."""
        seen: dict[str, None] = {}
        for start, end in self.highlights:
            seen.setdefault(self.snippet[start:end].lower(), None)
        return tuple(seen)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (the entity as a dict of its fields)."""
        return {
            "kind": self.kind, "key": self.key, "score": round(self.score, 6),
            "snippet": self.snippet, "highlights": [list(h) for h in self.highlights],
            "marked": self.marked(), "conversation_id": self.conversation_id,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "entity": attrs.asdict(self.entity),
        }


class SearchResults(list[SearchHit]):
    """The hits of :meth:`hive_store_memory.Memory.search`: a list, best first, plus whether
    the index had every committed change when it was searched.

    :ivar complete: the search caught up first (every committed row was findable); ``False``
        when it could not (a read-only database, an error: see ``Memory.last_error``)
    :ivar pending: changes that were not applied (0 when complete)
    """

    def __init__(self, hits: Sequence[SearchHit] = (), *, complete: bool = True,
                 pending: int = 0) -> None:
        super().__init__(hits)
        self.complete = complete
        self.pending = pending


def parse_marked(text: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Split ``snippet()`` output with the private marks into text and highlight spans."""
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0
    start: int | None = None
    for ch in text:
        if ch == OPEN_MARK:
            start = length
        elif ch == CLOSE_MARK:
            if start is not None and length > start:
                spans.append((start, length))
            start = None
        else:
            out.append(ch)
            length += 1
    return "".join(out), tuple(spans)


def _strip_marks(text: str) -> str:
    # The marks are separators for the tokenizer anyway: replacing them keeps tokens intact.
    return text.replace(OPEN_MARK, " ").replace(CLOSE_MARK, " ")


def snippets(conn: sqlite3.Connection, query: str, docs: Sequence[tuple[int, str, str]],
             *, tokens: int = 16) -> dict[int, tuple[str, tuple[tuple[int, int], ...]]]:
    """Snippets for ``docs`` (``(doc_id, title, body)``) under ``query``, made by FTS5 on
    ``temp`` tables of this connection (created on first use): the texts go into a plain
    table in one statement, a ``rebuild`` indexes them in one go (row-by-row inserts would
    each be a transaction and an index segment), and ``snippet()`` reads them back."""
    if not docs:
        return {}
    content = f"{SNIPPETS}_content"
    conn.execute(f"CREATE TABLE IF NOT EXISTS temp.{content} "
                 "(id INTEGER PRIMARY KEY, title TEXT, body TEXT)")
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{SNIPPETS} USING fts5(title, body, "
                 f"content = '{content}', content_rowid = 'id', tokenize = '{TOKENIZE}')")
    conn.execute(f"DELETE FROM temp.{content}")
    rows = [(d, _strip_marks(t), _strip_marks(b)) for d, t, b in docs]
    for start in range(0, len(rows), 300):
        chunk = rows[start:start + 300]
        conn.execute(f"INSERT INTO temp.{content} (id, title, body) VALUES "
                     + ", ".join("(?, ?, ?)" for _ in chunk), [v for r in chunk for v in r])
    conn.execute(f"INSERT INTO temp.{SNIPPETS} ({SNIPPETS}) VALUES ('rebuild')")
    found = conn.execute(
        f"SELECT rowid, snippet({SNIPPETS}, -1, ?, ?, ?, ?) FROM temp.{SNIPPETS} "
        f"WHERE {SNIPPETS} MATCH ?", (OPEN_MARK, CLOSE_MARK, ELLIPSIS, tokens, query),
    ).fetchall()
    return {int(rowid): parse_marked(text or "") for rowid, text in found}


_OPERATORS = frozenset({"and", "or", "not", "near"})
_RUN = re.compile(r"[^\W_]+")


def needles(query: str) -> list[str]:
    """Lower-case word prefixes to look for when placing a snippet window: each word of the
    query (not an FTS5 operator or column filter) without up to three final letters, so that
    ``checkpoints`` finds ``checkpoint`` as the porter tokenizer would."""
    out: dict[str, None] = {}
    for word in _RUN.findall(re.sub(r"\b\w+\s*:", " ", query)):
        low = word.lower()
        if low in _OPERATORS and word.isupper():
            continue
        out.setdefault(low[:max(3, len(low) - 3)], None)
    return list(out)


def window(text: str, finds: Sequence[str], *, width: int = 600) -> str:
    """The part of ``text`` (about ``width`` characters, cut at spaces) around the first
    occurrence of any of ``finds``; the start of the text if none occurs. Snippets are made
    from this window: tokenizing only it keeps a search fast on long answers."""
    if len(text) <= width:
        return text
    low = text.lower()
    hits = [i for i in (low.find(f) for f in finds if f) if i >= 0]
    at = min(hits) if hits else 0
    start = max(0, at - width // 3)
    end = min(len(text), start + width)
    if start > 0:
        space = text.find(" ", start, at if at > start else end)
        start = space + 1 if space >= 0 else start
    if end < len(text):
        space = text.rfind(" ", max(start, at), end)
        end = space if space > start else end
    return text[start:end]


def fallback_snippet(title: str, body: str, *, chars: int = 160) -> str:
    text = " ".join((body or title).split())
    return text if len(text) <= chars else text[:chars].rstrip() + ELLIPSIS


# -- status and rebuild ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class IndexStatus:
    """How the index compares with the tables (:meth:`Memory.status`).

    :ivar rows: rows per indexed table
    :ivar documents: registered documents per table
    :ivar indexed: documents in the FTS5 index
    :ivar missing_triggers: triggers of the plugin that are not in the database (a table
        rebuild drops them; ``reindex`` puts them back)
    :ivar pending: changes the triggers logged that are not applied to the index yet (0 after
        a catch-up; more while the indexer is behind, or when the catch-up could not write,
        e.g. a read-only database)
    :ivar unassigned: knowledge entries without a theme
    :ivar themes: number of themes; ``topics`` of topics
    :ivar failed: rows set aside because the index could not take them (``failed_rows``:
        the first, as ``(table, key, error)``); ``reindex`` tries them again
    :ivar space: the vector space the themes were built in; ``active_space`` the one in use
    :ivar indexer: the background indexer: ``running``, ``read_only``, ``last_error`` (the
        last catch-up that failed, if the next did not succeed), counters
    """

    rows: dict[str, int]
    documents: dict[str, int]
    indexed: int
    missing_triggers: tuple[str, ...]
    pending: int
    unassigned: int
    themes: int
    space: str | None
    active_space: str
    indexer: dict[str, Any] = attrs.field(factory=dict)
    topics: int = 0
    failed: int = 0
    failed_rows: tuple[tuple[str, Any, str], ...] = ()

    @property
    def in_step(self) -> bool:
        """No trigger is missing and, with nothing pending, every row has exactly one
        document and every document is indexed once."""
        return not self.missing_triggers and (self.pending > 0 or (
            self.rows == self.documents and self.indexed == sum(self.documents.values())))

    @property
    def themes_stale(self) -> bool:
        """The themes were built in another vector space than the active one."""
        return self.space is not None and self.space != self.active_space

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["missing_triggers"] = list(self.missing_triggers)
        data["failed_rows"] = [list(r) for r in self.failed_rows]
        data["in_step"] = self.in_step
        data["themes_stale"] = self.themes_stale
        return data


def has_pending(conn: sqlite3.Connection) -> bool:
    """Whether the log holds changes not applied to the index yet (:func:`apply_log`)."""
    return conn.execute(f"SELECT 1 FROM {LOG} LIMIT 1").fetchone() is not None


def pending_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {LOG}").fetchone()[0])


def pending_estimate(conn: sqlite3.Connection) -> int:
    """At least the number of log rows waiting, at most a little more (the span of their
    numbers: two lookups, however long the log is)."""
    row = conn.execute(f"SELECT max(seq) - min(seq) + 1 FROM {LOG}").fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


@attrs.frozen
class Applied:
    """What one :func:`apply_log` call did.

    :ivar changes: log rows applied (and deleted)
    :ivar documents: documents indexed, re-indexed or dropped
    :ivar more: the log holds more rows
    """

    changes: int = 0
    documents: int = 0
    more: bool = False


def _batch_sql() -> dict[str, str]:
    """The statements of :func:`apply_log` that name every source table (generated from
    :data:`SOURCES`)."""
    index = " UNION ALL ".join(
        f"SELECT d.doc_id, {s.title_of('t')}, {s.body_of('t')} FROM temp.{BATCH} AS b "
        f"JOIN {DOCS} AS d ON d.doc_id = b.doc_id "
        f'JOIN "{s.table}" AS t ON t."{s.pk}" = d.key WHERE d.kind = \'{s.table}\''
        for s in SOURCES)
    sql = {"index": f"INSERT INTO {FTS} (rowid, title, body) {index}"}
    for s in SOURCES:
        table, pk = f'"{s.table}"', f'"{s.pk}"'
        sql[f"gone:{s.table}"] = (
            f"DELETE FROM {DOCS} WHERE kind = '{s.table}' AND doc_id IN "
            f"(SELECT doc_id FROM temp.{BATCH}) AND NOT EXISTS "
            f"(SELECT 1 FROM {table} AS t WHERE t.{pk} = {DOCS}.key)")
        sql[f"meta:{s.table}"] = retime_sql(
            s, f"{DOCS}.doc_id IN (SELECT doc_id FROM temp.{BATCH})")
        sql[f"new:{s.table}"] = register_sql(s, f"t.{pk} = ?")
    return sql


_SQL = _batch_sql()


def apply_log(conn: sqlite3.Connection, *, limit: int = 1000, themes: bool = True,
              warn: Callable[[str], None] | None = None) -> Applied:
    """Apply the oldest ``limit`` log rows to the documents and the index. Call inside a
    write transaction (it reads the log there, so nothing changes under it).

    Per document touched: forget the text it was indexed with (the logged text that the index
    holds: see the module docstring), then index the row's current text, or drop the document
    if the row is gone; rows without a document get one, numbered in write order. The log rows
    are deleted; if later rows for the same documents remain, the documents get a mark.

    New knowledge entries then wait for a theme: their numbers are above the ``assign_from``
    frontier in ``hive_store_memory_meta``. With ``themes=False`` the frontier moves past them
    (they are not assigned automatically). ``warn`` is told about documents whose indexed text
    is unknown (their old tokens stay in the index, unreachable, until ``reindex``)."""
    entries = conn.execute(f"SELECT seq, kind, key, body IS NOT NULL FROM {LOG} "
                           "ORDER BY seq LIMIT ?", (limit,)).fetchall()
    if not entries:
        return Applied()
    last = int(entries[-1][0])
    top = int(conn.execute(f"SELECT max(seq) FROM {LOG}").fetchone()[0])
    # the log rows of each document, in order (keys compare as stored: str or int)
    touched: dict[tuple[str, Any], list[tuple[int, bool]]] = {}
    for seq, kind, key, had in entries:
        if key is not None and kind in SOURCE_BY_TABLE:
            touched.setdefault((kind, key), []).append((int(seq), bool(had)))
    known: dict[tuple[str, Any], tuple[int, int]] = {}
    by_kind: dict[str, list[Any]] = {}
    for kind, key in touched:
        by_kind.setdefault(kind, []).append(key)
    for kind, keys in by_kind.items():
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            for key, doc_id, mark in conn.execute(
                    f"SELECT d.key, d.doc_id, coalesce(m.seq, 0) FROM {DOCS} AS d "
                    f"LEFT JOIN {MARKS} AS m ON m.doc_id = d.doc_id WHERE d.kind = ? "
                    f"AND d.key IN ({', '.join('?' for _ in chunk)})", [kind, *chunk]):
                known[(kind, key)] = (int(doc_id), int(mark))
    refresh: list[tuple[int, int | None]] = []  # (doc_id, seq of the log row with its text)
    orphans: list[int] = []
    create: list[tuple[str, Any]] = []
    for (kind, key), rows in touched.items():
        doc = known.get((kind, key))
        if doc is None:
            create.append((kind, key))
            continue
        doc_id, mark = doc
        first = next(((seq, had) for seq, had in rows if seq > mark), None)
        if first is None:
            continue  # changes its indexed text already has
        if first[1]:
            refresh.append((doc_id, first[0]))
        else:
            orphans.append(doc_id)
            create.append((kind, key))
            if warn is not None:
                warn(f"the indexed text of {kind} {key!r} is unknown; its old tokens stay in "
                     "the index (unreachable) until `hive-store memory reindex`")
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {BATCH} "
                 "(doc_id INTEGER PRIMARY KEY, seq INTEGER)")
    conn.execute(f"DELETE FROM temp.{BATCH}")
    if refresh:
        conn.executemany(f"INSERT INTO temp.{BATCH} (doc_id, seq) VALUES (?, ?)", refresh)
        conn.execute(f"INSERT INTO {FTS} ({FTS}, rowid, title, body) "
                     f"SELECT 'delete', b.doc_id, l.title, l.body FROM temp.{BATCH} AS b "
                     f"JOIN {LOG} AS l ON l.seq = b.seq")
        for s in SOURCES:
            if s.table in by_kind:
                conn.execute(_SQL[f"gone:{s.table}"])
                conn.execute(_SQL[f"meta:{s.table}"])
    if orphans:
        conn.executemany(f"DELETE FROM {DOCS} WHERE doc_id = ?", [(d,) for d in orphans])
    before = int(conn.execute(f"SELECT coalesce(max(doc_id), 0) FROM {DOCS}").fetchone()[0])
    for kind, key in create:  # in write order: documents are numbered as the rows were written
        conn.execute(_SQL[f"new:{kind}"], (key,))
    conn.execute(f"INSERT OR IGNORE INTO temp.{BATCH} (doc_id) "
                 f"SELECT doc_id FROM {DOCS} WHERE doc_id > ?", (before,))
    conn.execute(_SQL["index"])
    if create and not themes:
        conn.execute(f"UPDATE {META} SET value = max(coalesce(value, 0), "
                     f"(SELECT coalesce(max(doc_id), 0) FROM {DOCS})) WHERE key = '{FRONTIER}'")
    documents = int(conn.execute(f"SELECT count(*) FROM temp.{BATCH}").fetchone()[0])
    conn.execute(f"DELETE FROM {LOG} WHERE seq <= ?", (last,))
    more = top > last
    if more:
        conn.execute(f"INSERT OR REPLACE INTO {MARKS} (doc_id, seq) SELECT b.doc_id, ? "
                     f"FROM temp.{BATCH} AS b JOIN {DOCS} AS d ON d.doc_id = b.doc_id", (top,))
        conn.execute(f"DELETE FROM {MARKS} WHERE seq < (SELECT min(seq) FROM {LOG})")
    else:
        conn.execute(f"DELETE FROM {MARKS}")
    conn.execute(f"DELETE FROM temp.{BATCH}")
    return Applied(changes=len(entries), documents=documents, more=more)


def read_counts(conn: sqlite3.Connection) -> tuple[dict[str, int], dict[str, int], int]:
    rows = {s.table: int(conn.execute(f'SELECT count(*) FROM "{s.table}"').fetchone()[0])
            for s in SOURCES}
    docs = dict.fromkeys(KINDS, 0)
    for kind, n in conn.execute(f"SELECT kind, count(*) FROM {DOCS} GROUP BY kind"):
        docs[kind] = int(n)
    indexed = int(conn.execute(f"SELECT count(*) FROM {FTS}_docsize").fetchone()[0])
    return rows, docs, indexed


def missing_triggers(conn: sqlite3.Connection) -> tuple[str, ...]:
    present = {r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE ? ESCAPE '\\'",
        (PREFIX.replace("_", "\\_") + "\\_%",))}
    return tuple(t for t in TRIGGERS if t not in present)


def repair_documents(conn: sqlite3.Connection) -> None:
    """Make ``hive_store_memory_docs`` hold exactly one document per row of each table (with
    current conversation and time), keeping the numbers (and themes) of documents that stay."""
    for s in SOURCES:
        table, pk = f'"{s.table}"', f'"{s.pk}"'
        conn.execute(f"DELETE FROM {DOCS} WHERE kind = ? AND NOT EXISTS "
                     f"(SELECT 1 FROM {table} AS t WHERE t.{pk} = {DOCS}.key)", (s.table,))
        conn.execute(retime_sql(s))
        conn.execute(register_sql(s, f"NOT EXISTS (SELECT 1 FROM {DOCS} AS d WHERE d.kind = "
                                     f"'{s.table}' AND d.key = t.{pk}) ORDER BY t.rowid"))


def rebuild_index(conn: sqlite3.Connection, progress: ProgressFn | None = None,
                  *, chunk: int = 2000) -> int:
    """Empty the FTS5 index and index every document again, ``chunk`` documents at a time
    (reporting progress), then merge the index's segments. The change log is emptied: the
    rebuilt index has every change. Returns the documents indexed."""
    conn.execute(f"INSERT INTO {FTS} ({FTS}) VALUES ('delete-all')")
    conn.execute(f"DELETE FROM {LOG}")
    conn.execute(f"DELETE FROM {MARKS}")
    total = int(conn.execute(f"SELECT count(*) FROM {DOCS}").fetchone()[0])
    if progress is not None:
        progress(0, total)
    inserts = {
        s.table: (f"INSERT INTO {FTS} (rowid, title, body) "
                  f"SELECT d.doc_id, {s.title_of('t')}, {s.body_of('t')} "
                  f'FROM {DOCS} AS d JOIN "{s.table}" AS t ON t."{s.pk}" = d.key '
                  f"WHERE d.kind = ? AND d.doc_id > ? AND d.doc_id <= ?")
        for s in SOURCES
    }
    done = 0
    last = 0
    while True:
        bounds = conn.execute(
            f"SELECT max(doc_id), count(*) FROM (SELECT doc_id FROM {DOCS} WHERE doc_id > ? "
            f"ORDER BY doc_id LIMIT ?)", (last, chunk)).fetchone()
        if not bounds[1]:
            break
        high = int(bounds[0])
        for kind, sql in inserts.items():
            conn.execute(sql, (kind, last, high))
        done += int(bounds[1])
        last = high
        if progress is not None:
            progress(done, total)
    conn.execute(f"INSERT INTO {FTS} ({FTS}) VALUES ('optimize')")
    return done
