"""Context for a new question: what ``store.memory.context_for`` does.

Hive's layers, in Hive's order, each one filtered and ordered by how similar its entries are
to the question (TF-IDF cosine of the question's terms and the entry's question and answer,
with the knowledge base's document frequencies):

1. ``recent_24h`` — knowledge from the 24 hours before ``now`` that is about the question
   (similarity at least :data:`MIN_RELEVANCE`); an unrelated conversation of this morning
   drops out. A question that names nothing ("tell me more") keeps Hive's rule: the newest.
2. ``follow_up_72h`` — when the question reads as a follow-up, the conversation it continues:
   of the last 72 hours, the one most similar to the question (a follow-up that names an
   earlier subject finds it, even when other conversations came after it); the newest when
   the question names nothing.
3. ``thematic`` — entries of the question's themes, most similar first.
4. ``full_text`` — BM25 hits for the question's distinctive words.

One item per conversation (the first layer that finds it wins).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hive_store.entities import (
    ContextType,
    Conversation,
    ConversationContext,
    ConversationThread,
    utcnow,
)
from hive_store.errors import ValidationError
from hive_store_memory import index as ix
from hive_store_memory.clustering import idf, top_terms
from hive_store_memory.common import (
    age,
    check_bool,
    check_key,
    check_limit,
    check_text,
    check_time,
    hours_between,
    to_julian,
)
from hive_store_memory.results import ContextItem, MemoryContext, Theme, parse_iso
from hive_store_memory.text import FollowUp, detect_follow_up, fts_any, query_words, term_counts

if TYPE_CHECKING:
    from hive_store_memory.service import Memory

NAME = "MemoryContext"
# Hive's windows and limits (pipeline.rs: 24 h LIMIT 10, 72 h LIMIT 3)
RECENT_HOURS = 24
FOLLOW_UP_HOURS = 72
RECENT_LIMIT = 10
FOLLOW_UP_LIMIT = 3
THEMATIC_LIMIT = 5
FULL_TEXT_LIMIT = 5
CANDIDATES = 60  # newest entries of a window that are looked at
THEME_CANDIDATES = 40  # best members of each of the question's themes
QUESTION_THEME_FACTOR = 0.5  # a question is short: it may match a theme at half the threshold
MIN_RELEVANCE = 0.16  # cosine similarity an entry needs to be about the question
PARENT_MIN = 0.05  # … to be taken as the conversation a follow-up continues
CONTEXT_FTS_KINDS = ("knowledge_conversations", "consensus_facts", "curator_truths")

Vector = dict[str, float]


def _unit(counts: Mapping[str, float], df: Mapping[str, int], documents: int) -> Vector:
    weights = {t: (1.0 + math.log(c)) * idf(df.get(t, 0), documents)
               for t, c in counts.items() if c > 0}
    length = math.sqrt(math.fsum(w * w for w in weights.values()))
    return {t: w / length for t, w in weights.items()} if length else {}


def _cosine(a: Vector, b: Vector) -> float:
    if len(a) > len(b):
        a, b = b, a
    return math.fsum(w * b.get(t, 0.0) for t, w in a.items())


class Contexts:
    """The context retrieval of one :class:`~hive_store_memory.service.Memory`."""

    def __init__(self, memory: Memory) -> None:
        self.memory = memory

    def context_for(self, question: Any, *, now: Any = None, conversation_id: Any = None,
                    record: Any = False, limit: Any = 20) -> MemoryContext:
        """The context the consensus engine gives ``question`` (see the module docstring).

        Entries after ``now`` (default: the current time) and of ``conversation_id`` itself
        are left out. With ``record=True`` (needs ``conversation_id``, an existing
        conversation) the items are written to ``conversation_context`` (``recent_24h``;
        ``direct_reference`` for follow-ups; ``thematic`` for theme and full-text items) and a
        follow-up to ``conversation_threads``, in one transaction.
        """
        question = check_text(NAME, "question", question, empty=False)
        when = check_time(NAME, "now", utcnow() if now is None else now,
                          reach=timedelta(hours=FOLLOW_UP_HOURS))
        assert when is not None
        lim = check_limit(NAME, limit)
        record = check_bool(NAME, "record", record)
        if conversation_id is not None:
            conversation_id = check_key(NAME, "conversation_id", conversation_id)
        if record and conversation_id is None:
            raise ValidationError(NAME, [
                ("conversation_id", "record=True needs the conversation the question is in")])
        memory = self.memory
        follow_up = detect_follow_up(question)
        complete, pending = memory._catch_up_for_read(themes=True)
        with memory._read() as conn:
            memory._ready(conn)
            recent = self._window(conn, when, RECENT_HOURS, conversation_id)
            window = (self._window(conn, when, FOLLOW_UP_HOURS, conversation_id)
                      if follow_up else [])
            themes = memory.theming.question_themes(conn, question, QUESTION_THEME_FACTOR)
            members: list[tuple[Any, str | None, float | None, float, int]] = []
            for state, _ in themes:
                members += [(k, c, a, float(s), state.id) for k, c, a, s in conn.execute(
                    f"SELECT d.key, d.conversation_id, d.at, m.score FROM {ix.PREFIX}_members "
                    f"AS m JOIN {ix.DOCS} AS d ON d.doc_id = m.doc_id WHERE m.theme_id = ? "
                    "AND (d.at IS NULL OR d.at <= julianday(?)) "
                    "ORDER BY m.score DESC, d.at DESC, d.doc_id LIMIT ?",
                    (state.id, when.isoformat(), THEME_CANDIDATES))]
            keys = [k for k, *_ in recent] + [k for k, *_ in window] + [k for k, *_ in members]
            entities = memory._entities(ix.KNOWLEDGE, keys)
            q_counts = term_counts(question, "")
            counts = {k: term_counts(*ix.doc_text(ix.KNOWLEDGE, e)) for k, e in entities.items()}
            wanted = set(q_counts).union(*(set(c) for c in counts.values())) if counts \
                else set(q_counts)
            df = memory.theming.document_frequencies(conn, sorted(wanted)) if wanted else {}
            documents = memory.theming.documents(conn)
        q_vec = _unit(q_counts, df, documents)
        relevance = {k: _cosine(q_vec, _unit(c, df, documents)) for k, c in counts.items()} \
            if q_vec else {}

        items: list[ContextItem] = []
        seen: set[Any] = {conversation_id} if conversation_id is not None else set()

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

        # 1. recent_24h
        for key, cid, at in self._ordered(recent, relevance, q_vec)[:RECENT_LIMIT]:
            rel = relevance.get(key)
            why = (f"curator knowledge from the last 24 h ({age(when, at)} ago)"
                   + (f", similarity {rel:.2f}" if rel is not None else ""))
            score = rel if rel is not None else 1.0 - 0.5 * hours_between(when, at) / RECENT_HOURS
            take(ix.KNOWLEDGE, key, entities.get(key), cid, at, "recent_24h", why, score,
                 ContextType.RECENT_24H)
        # 2. follow_up_72h: the conversation it continues first
        parent: str | None = None
        if follow_up is not None:
            parent = self._parent(window, relevance, q_vec)
            ordered = self._ordered(window, relevance, q_vec, keep_below=True)
            ordered.sort(key=lambda r: r[1] != parent)  # stable: the parent's entries first
            added = 0
            for key, cid, at in ordered:
                if added >= FOLLOW_UP_LIMIT:
                    break
                rel = relevance.get(key)
                if cid != parent and q_vec and (rel or 0.0) < MIN_RELEVANCE:
                    continue
                if take(ix.KNOWLEDGE, key, entities.get(key), cid, at, "follow_up_72h",
                        f"follow-up ({follow_up.rule}: “{follow_up.text}”, confidence "
                        f"{follow_up.score:.1f}) of a conversation {age(when, at)} ago",
                        follow_up.score, ContextType.DIRECT_REFERENCE):
                    added += 1
        # 3. thematic
        theme_obj: Theme | None = None
        similarity = 0.0
        if themes:
            state, similarity = themes[0]
            theme_obj = Theme(id=state.id, name=state.name,
                              keywords=tuple(top_terms(state.terms, 8)),
                              member_count=state.count,
                              last_activity=parse_iso(state.last_activity), created_at=None,
                              topic_id=state.topic_id)
            names = {s.id: s.name for s, _ in themes}
            ranked = sorted(members, key=lambda m: (-(relevance.get(m[0], 0.0) if q_vec
                                                      else m[3]), str(m[0])))
            added = 0
            for key, cid, at, score, tid in ranked:
                if added >= THEMATIC_LIMIT:
                    break
                rel = relevance.get(key, 0.0)
                if q_vec and rel < MIN_RELEVANCE:
                    continue
                if take(ix.KNOWLEDGE, key, entities.get(key), cid, at, "thematic",
                        f"same theme “{names[tid]}” (question similarity {similarity:.2f}, "
                        f"entry {rel if q_vec else score:.2f})",
                        rel if q_vec else similarity * max(score, 0.5), ContextType.THEMATIC):
                    added += 1
        # 4. full_text
        words = memory.searcher.distinctive(query_words(question))
        query = fts_any(words)
        if query is not None:
            hits = memory.searcher.run(query, limit=FULL_TEXT_LIMIT + len(seen) + 5,
                                       kinds=CONTEXT_FTS_KINDS, since=None,
                                       until=when.isoformat(),
                                       exclude_conversation=conversation_id)
            if q_vec:  # BM25 finds the words; keep the hits that are about the question
                hit_counts = [term_counts(*ix.doc_text(h.kind, h.entity)) for h in hits]
                missing = set().union(*(set(c) for c in hit_counts)) - set(df) \
                    if hit_counts else set()
                if missing:
                    with memory._read() as conn:
                        df.update(memory.theming.document_frequencies(conn, sorted(missing)))
                hits = [h for h, c in zip(hits, hit_counts, strict=True)
                        if _cosine(q_vec, _unit(c, df, documents)) >= MIN_RELEVANCE]
            added = 0
            for hit in hits:
                if added >= FULL_TEXT_LIMIT:
                    break
                matched = ", ".join(hit.matched) or ", ".join(words[:3])
                if take(hit.kind, hit.key, hit.entity, hit.conversation_id,
                        to_julian(hit.created_at), "full_text",
                        f"full-text match on {matched} in {hit.kind} (bm25 {hit.score:.2f})",
                        hit.score / (1.0 + hit.score) if hit.score > 0 else 0.0,
                        ContextType.THEMATIC):
                    added += 1
        ranked_items = tuple(items[:lim])
        recorded = False
        if record:
            assert conversation_id is not None
            self._record(conversation_id, ranked_items, follow_up, parent)
            recorded = True
        return MemoryContext(question=question, now=when, items=ranked_items,
                             follow_up=follow_up,
                             parent_conversation_id=parent if follow_up else None,
                             theme=theme_obj, theme_similarity=similarity, recorded=recorded,
                             complete=complete, pending=pending)

    @staticmethod
    def _ordered(rows: Sequence[tuple[Any, str | None, float | None]],
                 relevance: Mapping[Any, float], q_vec: Vector, *,
                 keep_below: bool = False) -> list[tuple[Any, str | None, float | None]]:
        """Window rows about the question, most similar first (ties: newest first); all of
        them, newest first, when the question names nothing."""
        if not q_vec:
            return list(rows)
        kept = [r for r in rows if keep_below or relevance.get(r[0], 0.0) >= MIN_RELEVANCE]
        return sorted(kept, key=lambda r: -relevance.get(r[0], 0.0))

    @staticmethod
    def _parent(window: Sequence[tuple[Any, str | None, float | None]],
                relevance: Mapping[Any, float], q_vec: Vector) -> str | None:
        """The conversation a follow-up continues: the most similar of the window's (at
        least :data:`PARENT_MIN`), else the newest."""
        with_cid = [r for r in window if r[1]]
        if not with_cid:
            return None
        if q_vec:
            best = max(with_cid, key=lambda r: relevance.get(r[0], 0.0))  # first of equals:
            if relevance.get(best[0], 0.0) >= PARENT_MIN:                  # the newest
                return best[1]
        return with_cid[0][1]

    def _window(self, conn: Any, now: datetime, hours: int,
                exclude: str | None) -> list[tuple[Any, str | None, float | None]]:
        start = (now - timedelta(hours=hours)).isoformat()
        rows = conn.execute(
            f"SELECT key, conversation_id, at FROM {ix.DOCS} WHERE kind = ? "
            "AND at >= julianday(?) AND at <= julianday(?) "
            "AND (conversation_id IS NULL OR conversation_id IS NOT ?) "
            "ORDER BY at DESC, doc_id DESC LIMIT ?",
            (ix.KNOWLEDGE, start, now.isoformat(), exclude, CANDIDATES)).fetchall()
        return [(k, c, a) for k, c, a in rows]

    def _record(self, conversation_id: str, items: Sequence[ContextItem],
                follow_up: FollowUp | None, parent: str | None) -> None:
        store = self.memory.store
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
