"""What the memory plugin returns: themes, topics, context items and reports (frozen attrs
classes with ``to_dict()`` for JSON)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import attrs

from hive_store.entities import ContextType
from hive_store_memory import index as ix
from hive_store_memory.clustering import ClusterParams
from hive_store_memory.text import FollowUp

THEME_TOPIC_PREFIX = "theme:"


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


@attrs.frozen(kw_only=True)
class Theme:
    """A theme of knowledge entries: a small group of closely related entries (a
    *micro-theme*; :class:`Topic` groups themes into the subjects a person would name).

    :ivar id: stable: an entry's theme keeps its id as the theme grows (``recluster`` renumbers)
    :ivar name: the three heaviest terms of its founding entry (stable, like its id: a
        theme is small and pure; the subjects' names are the topics')
    :ivar keywords: its heaviest terms now, heaviest first
    :ivar member_count: knowledge entries in it
    :ivar last_activity: time of its newest entry
    :ivar created_at: time of its founding entry
    :ivar topic_id: the topic it belongs to (``None`` until topics are built)
    """

    id: int
    name: str
    keywords: tuple[str, ...]
    member_count: int
    last_activity: datetime | None
    created_at: datetime | None
    topic_id: int | None = None

    @property
    def topic(self) -> str:
        """Its tag in ``conversation_topics`` (``theme:<name>``)."""
        return THEME_TOPIC_PREFIX + self.name

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "keywords": list(self.keywords),
                "member_count": self.member_count, "topic": self.topic,
                "topic_id": self.topic_id, "last_activity": iso(self.last_activity),
                "created_at": iso(self.created_at)}


@attrs.frozen(kw_only=True)
class Topic:
    """A subject of the knowledge base: themes merged by similarity.

    :ivar id: kept across rebuilds for the topic that keeps most of its entries
    :ivar name: its three heaviest keywords (class-based TF-IDF over its entries' terms);
        renamed when they change
    :ivar keywords: its heaviest terms now, heaviest first
    :ivar member_count: knowledge entries in its themes; ``theme_count`` its themes
    :ivar themes: its themes, largest first (only when asked for)
    """

    id: int
    name: str
    keywords: tuple[str, ...]
    member_count: int
    theme_count: int
    updated_at: datetime | None = None
    themes: tuple[Theme, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "keywords": list(self.keywords),
                "member_count": self.member_count, "theme_count": self.theme_count,
                "updated_at": iso(self.updated_at),
                "themes": [t.to_dict() for t in self.themes]}


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
                "created_at": iso(self.created_at), "context_type": self.context_type.value,
                "entity": attrs.asdict(self.entity)}


@attrs.frozen(kw_only=True)
class MemoryContext:
    """What :meth:`Memory.context_for` found: ranked items in Hive's layer order.

    :ivar follow_up: the follow-up detection, when the question reads as one
    :ivar parent_conversation_id: the conversation a follow-up continues (the one in the last
        72 h most similar to the question; the newest when the question names nothing)
    :ivar theme: the question's theme and its similarity, if any
    :ivar recorded: whether rows were written to ``conversation_context``/``conversation_threads``
    :ivar complete: every committed row was indexed when the context was retrieved (``False``
        when the catch-up could not write, e.g. a read-only database, or when the backlog was
        too large to wait for; ``pending`` changes were left out)
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
    topics: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"entries": self.entries, "themes": self.themes, "topics": self.topics,
                "params": self.params.to_json()}
