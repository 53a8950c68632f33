"""The memory plugin's context retrieval: Hive's layers, follow-up rules, recording."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hive_store_memory import detect_follow_up
from hypothesis import given
from hypothesis import strategies as st

import hive_store
from hive_store import ContextType, ThreadType
from hive_store.entities import ConsensusFact, Conversation, KnowledgeConversation

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
LAYERS = ("recent_24h", "follow_up_72h", "thematic", "full_text")


@pytest.mark.parametrize("question, rule, score, thread_type", [
    ("Tell me more", "tell_me_more", 0.9, ThreadType.FOLLOW_UP),
    ("can you elaborate on the locking part?", "tell_me_more", 0.9, ThreadType.FOLLOW_UP),
    ("Give me 3 examples", "examples", 0.8, ThreadType.FOLLOW_UP),
    ("show me some more examples please", "examples", 0.9, ThreadType.FOLLOW_UP),
    ("What about the second one?", "ordinal", 0.9, ThreadType.LIST_REFERENCE),
    ("Expand on item 3", "tell_me_more", 1.0, ThreadType.FOLLOW_UP),  # two rules: capped
    ("Explain step 2", "ordinal", 0.9, ThreadType.LIST_REFERENCE),
    ("Could you explain the checkpoint part", "explain", 0.7, ThreadType.CLARIFICATION),
    ("What do you mean by readers?", "explain", 0.7, ThreadType.CLARIFICATION),
    ("Why is it slow?", "pronoun", 0.6, ThreadType.CONTINUATION),
    ("That sounds wrong, why would WAL block readers", "pronoun", 0.6,
     ThreadType.CONTINUATION),
    ("And for Postgres?", "continuation", 0.5, ThreadType.CONTINUATION),
])
def test_follow_up_rules_and_scores(question: str, rule: str, score: float,
                                    thread_type: ThreadType) -> None:
    fu = detect_follow_up(question)
    assert fu is not None
    assert (fu.rule, fu.score, fu.thread_type) == (rule, score, thread_type)
    assert fu.text and fu.text in question.lower()


@pytest.mark.parametrize("question", [
    "How does SQLite's WAL mode handle concurrent readers and one writer at a time?",
    "What is the capital of France", "Write a haiku about autumn leaves falling slowly",
    "", "   ",
])
def test_not_follow_ups(question: str) -> None:
    assert detect_follow_up(question) is None


@given(st.text(max_size=60))
def test_follow_up_detection_never_raises(question: str) -> None:
    fu = detect_follow_up(question)
    assert fu is None or 0.3 < fu.score <= 1.0


def entry(store: hive_store.Store, hours_ago: float, question: str, answer: str) -> Any:
    conv = store.conversations.add(Conversation())
    return store.knowledge_conversations.add(KnowledgeConversation(
        conversation_id=conv.id, question=question, final_answer=answer, source_of_truth=answer,
        created_at=NOW - timedelta(hours=hours_ago)))


@pytest.fixture
def history(mem_store: hive_store.Store) -> dict[str, Any]:
    e = {
        "recent": entry(mem_store, 2, "How do Python asyncio tasks get scheduled?",
                        "The event loop runs ready tasks in order."),
        "day_old": entry(mem_store, 30, "How does SQLite's WAL mode handle readers?",
                         "Readers see a snapshot; one writer appends to the WAL."),
        "two_days": entry(mem_store, 60, "What is a WAL checkpoint in SQLite?",
                          "A checkpoint copies WAL pages back into the database file."),
        "week_old": entry(mem_store, 24 * 7, "When does SQLite run a WAL checkpoint?",
                          "Automatically at 1000 pages, or with PRAGMA wal_checkpoint."),
        "unrelated_old": entry(mem_store, 24 * 30, "How to brew green tea?",
                               "Steep green tea leaves at 80 degrees for 2 minutes."),
        "future": entry(mem_store, -5, "Future SQLite WAL entry", "not yet written at NOW"),
    }
    mem_store.consensus_facts.add(ConsensusFact(
        semantic_fingerprint="fp-wal", content="WAL checkpoints are passive by default.",
        source_question="wal checkpoint modes", created_at=NOW - timedelta(days=40),
        last_accessed=NOW))
    return e


def test_layers_in_hive_order(mem_store: hive_store.Store, history: dict[str, Any]) -> None:
    ctx = mem_store.memory.context_for("Tell me more about the SQLite WAL checkpoint", now=NOW)
    assert ctx.follow_up is not None and ctx.follow_up.rule == "tell_me_more"
    layers = [i.layer for i in ctx]
    assert layers == sorted(layers, key=LAYERS.index)  # never out of Hive's order
    keys = [(i.layer, i.key) for i in ctx]
    # the asyncio conversation of 2 h ago is not about the question: it drops out; the
    # follow-up continues the conversation about WAL checkpoints, though a newer one came after
    assert history["recent"].id not in {k for _, k in keys}
    assert ctx.parent_conversation_id == history["two_days"].conversation_id
    assert keys[:2] == [("follow_up_72h", history["two_days"].id),
                        ("follow_up_72h", history["day_old"].id)]
    rest = dict((k, layer) for layer, k in keys[2:])
    assert rest[history["week_old"].id] in ("thematic", "full_text")
    assert history["future"].id not in {k for _, k in keys}  # after `now`
    assert history["unrelated_old"].id not in rest
    assert any(i.kind == "consensus_facts" and i.layer == "full_text" for i in ctx)
    assert len({i.conversation_id for i in ctx if i.conversation_id}) == len(
        [i for i in ctx if i.conversation_id])  # one item per conversation
    for item in ctx:
        assert item.reason and 0.0 <= item.score <= 1.0
    assert ctx.items[0].context_type is ContextType.DIRECT_REFERENCE
    assert "tell_me_more" in ctx.items[0].reason
    text = ctx.text()
    assert text.startswith("[1] (follow-up") and "Q: What is a WAL checkpoint" in text


def test_a_question_that_names_nothing_gets_the_newest(mem_store: hive_store.Store,
                                                       history: dict[str, Any]) -> None:
    ctx = mem_store.memory.context_for("Tell me more", now=NOW)  # Hive's rule: the newest
    recent = ctx.items[0]
    assert recent.key == history["recent"].id and recent.layer == "recent_24h"
    assert "last 24 h (2 h ago)" in recent.reason and recent.context_type is ContextType.RECENT_24H
    assert ctx.parent_conversation_id == history["recent"].conversation_id


def test_recent_entries_are_ordered_by_relevance(mem_store: hive_store.Store,
                                                 history: dict[str, Any]) -> None:
    related = entry(mem_store, 5, "Why does a long SQLite reader stop WAL checkpoints?",
                    "A checkpoint cannot pass the oldest reader's snapshot.")
    ctx = mem_store.memory.context_for("Can a reader block a WAL checkpoint in SQLite?",
                                       now=NOW)
    recent = [i.key for i in ctx if i.layer == "recent_24h"]
    assert recent == [related.id]  # the asyncio entry of 2 h ago is newer, but unrelated
    assert ctx.follow_up is None


def test_not_a_follow_up_skips_the_72h_window(mem_store: hive_store.Store,
                                              history: dict[str, Any]) -> None:
    ctx = mem_store.memory.context_for("How do SQLite WAL checkpoints work?", now=NOW)
    assert ctx.follow_up is None and ctx.parent_conversation_id is None
    assert "follow_up_72h" not in {i.layer for i in ctx}
    assert history["recent"].id not in {i.key for i in ctx}
    thematic = [i for i in ctx if i.layer == "thematic"]
    assert ctx.theme is not None and thematic
    assert {i.key for i in thematic} <= {history[k].id for k in
                                         ("day_old", "two_days", "week_old")}
    assert [i.score for i in thematic] == sorted((i.score for i in thematic), reverse=True)
    assert thematic[-1].key == history["day_old"].id  # about readers, not checkpoints
    assert all(f"“{ctx.theme.name}”" in i.reason for i in thematic)


def test_time_travel(mem_store: hive_store.Store, history: dict[str, Any]) -> None:
    later = mem_store.memory.context_for("tell me more", now=NOW + timedelta(hours=10))
    assert later.items[0].key == history["future"].id  # written 5 h after NOW
    earlier = mem_store.memory.context_for("tell me more", now=NOW - timedelta(days=100))
    assert earlier.items == ()


def test_the_questions_own_conversation_is_left_out(mem_store: hive_store.Store,
                                                    history: dict[str, Any]) -> None:
    own = history["recent"].conversation_id
    ctx = mem_store.memory.context_for("tell me more", now=NOW, conversation_id=own)
    assert own not in {i.conversation_id for i in ctx}
    assert ctx.parent_conversation_id == history["day_old"].conversation_id


def test_record_writes_context_and_thread(mem_store: hive_store.Store,
                                          history: dict[str, Any]) -> None:
    new = mem_store.conversations.add(Conversation())
    ctx = mem_store.memory.context_for("Give me 2 examples of WAL checkpoints", now=NOW,
                                       conversation_id=new.id, record=True)
    assert ctx.recorded
    rows = mem_store.conversation_context.find(conversation_id=new.id, order_by="id")
    expected = [(i.conversation_id, i.context_type) for i in ctx if i.conversation_id]
    assert [(r.referenced_conversation_id, r.context_type) for r in rows] == expected
    assert {r.context_type for r in rows} >= {ContextType.DIRECT_REFERENCE,
                                             ContextType.THEMATIC}
    [thread] = mem_store.conversation_threads.find(child_conversation_id=new.id)
    assert thread.parent_conversation_id == history["two_days"].conversation_id
    assert thread.thread_type is ThreadType.FOLLOW_UP
    assert thread.reference_text == "give me 2 examples" and thread.confidence_score == 0.8


def test_record_without_follow_up_writes_no_thread(mem_store: hive_store.Store,
                                                   history: dict[str, Any]) -> None:
    new = mem_store.conversations.add(Conversation())
    mem_store.memory.context_for("SQLite WAL readers", now=NOW, conversation_id=new.id,
                                 record=True)
    assert mem_store.conversation_threads.count(child_conversation_id=new.id) == 0
    assert mem_store.conversation_context.count(conversation_id=new.id) > 0


@pytest.mark.parametrize("kwargs, field", [
    ({"question": ""}, "question"), ({"question": 3}, "question"),
    ({"question": "q", "record": True}, "conversation_id"),
    ({"question": "q", "now": datetime(2025, 1, 1)}, "now"),
    ({"question": "q", "limit": 0}, "limit"),
])
def test_context_arguments(mem_store: hive_store.Store, kwargs: dict[str, Any],
                           field: str) -> None:
    with pytest.raises(hive_store.ValidationError) as err:
        mem_store.memory.context_for(**kwargs)
    assert err.value.field == field


def test_record_for_an_unknown_conversation(mem_store: hive_store.Store,
                                            history: dict[str, Any]) -> None:
    with pytest.raises(hive_store.NotFound):
        mem_store.memory.context_for("tell me more", now=NOW, conversation_id="nope",
                                     record=True)
    assert mem_store.conversation_context.count() == 0


def test_limit_and_empty_memory(mem_store: hive_store.Store) -> None:
    assert mem_store.memory.context_for("anything at all?").items == ()
    for h in range(5):
        entry(mem_store, h + 1, f"sqlite question {h}", "wal answer")
    assert len(mem_store.memory.context_for("tell me more", now=NOW, limit=2)) == 2


@pytest.mark.parametrize("sentence", [
    "This class implements a reader for WAL files.", "Ensure that item is visible.",
    "Load the specified module into sys.modules and return it.",
    "These functions return the current time.", "Set global grab for this widget.",
    "Is this class thread safe?", "Request that this task cancel itself.",
])
def test_ordinary_sentences_are_not_follow_ups(sentence: str) -> None:
    assert detect_follow_up(sentence) is None


@pytest.mark.parametrize("question", [
    "Does it work with asyncio?", "what about that?", "fix it", "That sounds wrong",
    "These are too slow, why?", "Can you explain that again?",
])
def test_references_back_are_follow_ups(question: str) -> None:
    assert detect_follow_up(question) is not None


def test_a_follow_up_finds_the_subject_it_names(mem_store: hive_store.Store) -> None:
    older = entry(mem_store, 7, "How do I rotate log files with RotatingFileHandler?",
                  "RotatingFileHandler rolls the log file over at maxBytes.")
    for h in range(6):
        entry(mem_store, 6 - h, f"unrelated question {h} about tkinter widgets",
              "Canvas widgets and frames.")
    ctx = mem_store.memory.context_for("Tell me more about the RotatingFileHandler maxBytes",
                                       now=NOW)
    assert ctx.parent_conversation_id == older.conversation_id
    assert ctx.items[0].conversation_id == older.conversation_id
