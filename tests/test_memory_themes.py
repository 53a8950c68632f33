"""The memory plugin's thematic clustering: post-commit assignment, determinism, recluster,
conversation topics and the embedder hook."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hive_store_memory import add_hookspecs, topics_for
from hive_store_memory.clustering import ClusterParams, Entry, ThemeModel
from hypothesis import given, settings
from hypothesis import strategies as st

import hive_store
from hive_store.entities import Conversation, KnowledgeConversation
from hive_store.plugins import Plugins

VOCAB = ("sqlite", "wal", "checkpoint", "reader", "writer", "journal", "page", "lock", "python",
         "asyncio", "coroutine", "await", "event", "loop", "task", "docker", "container", "image",
         "kubernetes", "pod", "deploy", "cluster")


def knowledge(question: str, answer: str, **kw: Any) -> KnowledgeConversation:
    return KnowledgeConversation(question=question, final_answer=answer, source_of_truth=answer,
                                 **kw)


def snapshot(store: hive_store.Store) -> tuple[list[Any], list[Any], list[Any]]:
    """Themes (without wall-clock columns), memberships and the TF-IDF statistics."""
    with store.backend.connection() as conn:
        themes = conn.execute(
            "SELECT id, name, keywords, centroid, terms, member_count, last_activity, created_at "
            "FROM hive_store_memory_themes ORDER BY id").fetchall()
        members = conn.execute(
            "SELECT d.key, m.theme_id, m.score FROM hive_store_memory_members AS m "
            "JOIN hive_store_memory_docs AS d ON d.doc_id = m.doc_id ORDER BY d.doc_id").fetchall()
        terms = conn.execute("SELECT term, df FROM hive_store_memory_terms ORDER BY term"
                             ).fetchall()
    return themes, members, terms


SENTENCE = st.lists(st.sampled_from(VOCAB), min_size=2, max_size=8).map(" ".join)
BATCHES = st.lists(st.lists(st.tuples(SENTENCE, SENTENCE), min_size=1, max_size=5),
                   min_size=1, max_size=4)


@settings(max_examples=15, deadline=None)
@given(batches=BATCHES)
def test_clustering_is_deterministic_and_incremental_equals_recluster(
        batches: list[list[tuple[str, str]]]) -> None:
    entities = [[knowledge(q, a) for q, a in batch] for batch in batches]
    snaps = []
    for _ in range(2):
        with hive_store.open(":memory:") as store:
            for batch in entities:  # the indexer assigns after each commit, or several
                store.knowledge_conversations.add_many(batch)
            assert store.memory.wait_idle(timeout=60)
            incremental = snapshot(store)
            report = store.memory.recluster()
            assert report.entries == sum(len(b) for b in entities)
            assert snapshot(store) == incremental  # a rebuild replays the same order
            snaps.append(incremental)
    assert snaps[0] == snaps[1]
    assert snaps[0][0]  # there are themes


def test_model_is_deterministic_without_a_store() -> None:
    entries = [Entry(i, f"{VOCAB[i % 7]} {VOCAB[(i * 3) % 11]}", " ".join(VOCAB[i % 5:i % 5 + 6]))
               for i in range(60)]
    runs = []
    for _ in range(2):
        model = ThemeModel(ClusterParams())
        assignments = [model.add(e) for e in entries]
        runs.append((assignments, {t.id: (t.name, t.centroid, t.count)
                                   for t in model.themes.values()}))
    assert runs[0] == runs[1]


def test_new_entries_join_a_theme_on_commit(mem_store: hive_store.Store) -> None:
    conv = mem_store.conversations.add(Conversation())
    kc = mem_store.knowledge_conversations
    a = kc.add(knowledge("How does SQLite WAL checkpoint work?",
                         "A WAL checkpoint copies pages from the journal back.",
                         conversation_id=conv.id))
    theme, score = mem_store.memory.theme_of(a.id)  # type: ignore[misc]
    assert score == 1.0 and theme.member_count == 1  # it founded the theme
    b = kc.add(knowledge("When does SQLite run a WAL checkpoint?",
                         "SQLite runs a checkpoint when the WAL reaches 1000 pages."))
    theme_b, score_b = mem_store.memory.theme_of(b.id)  # type: ignore[misc]
    assert theme_b.id == theme.id and 0.15 <= score_b < 1.0
    c = kc.add(knowledge("How do I deploy a Docker container to Kubernetes?",
                         "Build the image, push it, and apply a deployment for the pod."))
    theme_c, _ = mem_store.memory.theme_of(c.id)  # type: ignore[misc]
    assert theme_c.id != theme.id
    themes = mem_store.memory.themes()
    assert [t.member_count for t in themes] == [2, 1]
    assert "wal" in themes[0].keywords and "checkpoint" in themes[0].keywords
    assert themes[0].name == theme.name  # names are stable once given
    assert [e.id for e, _ in mem_store.memory.members(theme.id)] == [a.id, b.id]
    # the conversation is tagged in Hive's table: hierarchy topics and the theme
    topics = {t.topic for t in mem_store.conversation_topics.find(conversation_id=conv.id)}
    assert {"data", "data:databases", theme.topic} <= topics
    # editing an entry keeps its theme; deleting one shrinks it; an empty theme goes
    kc.update(a, question="How does a WAL checkpoint work?")
    assert mem_store.memory.theme_of(a.id)[0].id == theme.id  # type: ignore[index]
    kc.delete(a.id)
    assert mem_store.memory.theme(theme.id).member_count == 1
    kc.delete(b.id)
    with pytest.raises(hive_store.NotFound):
        mem_store.memory.theme(theme.id)
    assert [t.id for t in mem_store.memory.themes()] == [theme_c.id]


def test_record_consensus_joins_a_theme_and_stays_one_event(mem_store: hive_store.Store) -> None:
    from hive_store import StageOutput

    run = mem_store.record_consensus("What is asyncio's event loop?", [
        StageOutput(stage=s, model="m", answer="The event loop runs coroutines and tasks.")
        for s in ("generator", "refiner", "validator", "curator")])
    assert mem_store.memory.theme_of(run.knowledge.id) is not None
    topics = [t.topic for t in mem_store.conversation_topics.find(
        conversation_id=run.conversation_id)]
    assert any(t.startswith("theme:") for t in topics)


def test_auto_assign_off_then_catch_up(mem_store: hive_store.Store) -> None:
    mem = mem_store.memory
    mem.auto_assign = False
    mem_store.knowledge_conversations.add_many(
        [knowledge(f"sqlite wal question {i}", "wal checkpoint answer") for i in range(5)])
    assert mem.status().unassigned == 5 and mem.themes() == []
    [result] = [r for r in mem_store.health() if r.name == "memory_index"]
    assert result.status == "warn" and "recluster" in result.message
    assert mem.assign(batch=2) == 5
    assert mem.status().unassigned == 0
    assert mem.assign() == 0


def test_recluster_with_a_threshold(mem_store: hive_store.Store) -> None:
    mem = mem_store.memory
    mem_store.knowledge_conversations.add_many([
        knowledge("sqlite wal", "checkpoint pages"), knowledge("sqlite lock", "writer waits"),
        knowledge("python asyncio", "event loop"), knowledge("python coroutine", "await task"),
    ])
    loose = mem.recluster(threshold=0.01)
    strict = mem.recluster(threshold=0.99)
    assert loose.themes < strict.themes == 4
    assert strict.params.threshold == 0.99
    assert mem.recluster().params.threshold == 0.99  # the stored setting is kept
    for bad in (0, 1.5, "0.3", True):
        with pytest.raises(hive_store.ValidationError, match="threshold"):
            mem.recluster(threshold=bad)  # type: ignore[arg-type]


def test_recluster_rewrites_theme_topics_only(mem_store: hive_store.Store) -> None:
    conv = mem_store.conversations.add(Conversation())
    mem_store.conversation_topics.add(hive_store.entities.ConversationTopic(
        conversation_id=conv.id, topic="hand_written"))
    mem_store.knowledge_conversations.add(knowledge("python asyncio", "event loop tasks",
                                                    conversation_id=conv.id))
    mem_store.memory.flush()  # tags come with the theme, after the commit
    before = sorted(t.topic for t in mem_store.conversation_topics.find(conversation_id=conv.id))
    mem_store.memory.recluster(threshold=0.5)
    after = sorted(t.topic for t in mem_store.conversation_topics.find(conversation_id=conv.id))
    assert after == before and "hand_written" in after
    assert sum(t.startswith("theme:") for t in after) == 1


@pytest.mark.parametrize("text, expected", [
    ("How do I write async Python with asyncio and pytest?",
     {"programming", "programming:python"}),
    ("Deploy a Docker container on Kubernetes in AWS", {"cloud_computing",
                                                        "cloud_computing:containers"}),
    ("SQLite WAL and database indexes", {"data", "data:databases"}),
    ("What is the capital of France?", set()),
    ("asyncio.sleep yields", set()),  # one weak hit is not a topic
])
def test_hive_topic_hierarchy(text: str, expected: set[str]) -> None:
    assert expected <= {t for t, _ in topics_for(text)}
    if not expected:
        assert topics_for(text) == []


# -- the embedder hook ----------------------------------------------------------------------------


class ColourEmbedder:
    """A fake sentence embedder: one dimension per colour word."""

    name = "fake-colours"
    threshold = 0.9

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [[float("red" in t.lower()), float("blue" in t.lower()),
                 float("green" in t.lower()), 0.05] for t in texts]


class EmbedderPlugin:
    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder

    @hive_store.hookimpl(optionalhook=True)
    def hive_store_memory_embedder(self, store: hive_store.Store) -> Any:
        return self.embedder


def plugins_with(*objs: Any) -> Plugins:
    p = Plugins()
    p.ensure_loaded()
    for n, obj in enumerate(objs):
        assert p.register(obj, name=f"embedder-{n}") is not None, p.failures
    return p


def test_an_embedder_plugin_replaces_tfidf(db_path: Path) -> None:
    fake = ColourEmbedder()
    rows = [knowledge("a red apple", "fruit"), knowledge("a red car", "vehicle"),
            knowledge("the blue sky", "weather"), knowledge("the blue sea", "water"),
            knowledge("green grass", "lawn")]
    with hive_store.open(f"sqlite://{db_path}", plugins=plugins_with(EmbedderPlugin(fake))) as s:
        assert s.memory.embedder is fake
        assert s.memory.active_space == "embedder:fake-colours"
        s.knowledge_conversations.add_many(rows)
        assert s.memory.wait_idle(timeout=60)
        assert fake.calls and len(fake.calls[0]) == 5  # one call for the commit's entries
        groups = sorted(sorted(e.question for e, _ in s.memory.members(t.id))
                        for t in s.memory.themes())
        assert groups == [["a red apple", "a red car"], ["green grass"],
                          ["the blue sea", "the blue sky"]]
        status = s.memory.status()
        assert status.space == "embedder:fake-colours" and not status.themes_stale
        ctx = s.memory.context_for("anything red?", now=rows[0].created_at)
        assert ctx.theme is not None and "red" in ctx.theme.name
    # Without the embedder the stored themes are in another space: stale until recluster.
    with hive_store.open(f"sqlite://{db_path}") as s:
        assert s.memory.active_space == "tfidf"
        s.knowledge_conversations.add(knowledge("a red rose", "flower"))
        status = s.memory.status()
        assert status.themes_stale and status.unassigned == 1
        [result] = [r for r in s.health() if r.name == "memory_index"]
        assert result.status == "warn" and "recluster" in result.message
        assert s.memory.recluster().params.space == "tfidf"
        assert not s.memory.status().themes_stale


def test_plain_hookimpl_needs_add_hookspecs() -> None:
    class Plain:
        @hive_store.hookimpl
        def hive_store_memory_embedder(self, store: Any) -> Any:
            return ColourEmbedder()

    p = Plugins()
    p.ensure_loaded()
    assert p.register(Plain(), name="plain") is None  # unknown hook before the specs exist
    assert "unknown hook" in p.failures[-1].error
    p = Plugins()
    p.ensure_loaded()
    add_hookspecs(p)
    add_hookspecs(p)  # idempotent
    assert p.register(Plain(), name="plain") == "plain"
    with hive_store.open(":memory:", plugins=p) as store:
        assert store.memory.active_space == "embedder:fake-colours"


def test_a_broken_embedder(caplog: pytest.LogCaptureFixture) -> None:
    class Short(ColourEmbedder):
        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            return super().embed(texts)[:-1]

    with hive_store.open(":memory:", plugins=plugins_with(EmbedderPlugin(Short()))) as store:
        with caplog.at_level(logging.ERROR, logger="hive_store"):
            k = store.knowledge_conversations.add(knowledge("red", "x"))  # committed anyway
            assert not store.memory.wait_idle(timeout=60)  # the indexer's theme step failed
        assert store.knowledge_conversations.get(k.id) == k
        assert "returned 0 vectors" in (store.memory.last_error or "")
        logged = [r for r in caplog.records if "returned 0 vectors for 1 texts" in r.getMessage()]
        assert logged and not any(r.exc_info for r in logged)  # type and message, no traceback
        assert store.memory.status().unassigned == 1
        with pytest.raises(hive_store.PluginError, match="fake-colours"):
            store.memory.assign()
        assert store.memory.search("red") != []  # search does not need the embedder


def test_an_embedder_hook_that_raises_falls_back_to_tfidf(
        caplog: pytest.LogCaptureFixture) -> None:
    class Raising:
        @hive_store.hookimpl(optionalhook=True)
        def hive_store_memory_embedder(self, store: Any) -> Any:
            raise RuntimeError("no model here")

    with caplog.at_level(logging.ERROR, logger="hive_store"), \
            hive_store.open(":memory:", plugins=plugins_with(Raising())) as store:
        assert store.memory.active_space == "tfidf"
    assert any("embedder" in r.getMessage() for r in caplog.records)
