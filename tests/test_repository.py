"""Repository behaviour on the real schema: CRUD, filters, ordering, streaming, safety."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest

import hive_store
from hive_store.entities import (
    ActivityLog,
    Conversation,
    ConversationTopic,
    CuratorTruth,
    KnowledgeConversation,
    Message,
    User,
)

INJECTIONS = [
    "'; DROP TABLE messages; --",
    '" OR 1=1 --',
    "x' UNION SELECT * FROM users --",
    "%",
    "_",
    "\\",
    "🐝'); DELETE FROM conversations; --",
]


def _conv(store: hive_store.Store, **kw: object) -> Conversation:
    return store.conversations.add(Conversation(**kw))


def test_add_get_update_delete(any_store: hive_store.Store) -> None:
    store = any_store
    conv = _conv(store, total_cost=0.5)
    assert store.conversations.get(conv.id) == conv
    with pytest.raises(hive_store.NotFound) as err:
        store.conversations.get("missing")
    assert "missing" in str(err.value)
    with pytest.raises(hive_store.Conflict):
        store.conversations.add(conv)
    updated = store.conversations.update(conv.id, total_cost=1.25, input_tokens=10)
    assert store.conversations.get(conv.id) == updated
    assert updated.total_cost == 1.25 and updated.input_tokens == 10
    again = store.conversations.update(updated, quality_score=0.5)
    assert store.conversations.get(conv.id).quality_score == 0.5 == again.quality_score
    with pytest.raises(hive_store.NotFound):
        store.conversations.update("missing", total_cost=1.0)
    with pytest.raises(hive_store.ValidationError):
        store.conversations.update(conv.id, no_such_field=1)
    with pytest.raises(hive_store.ValidationError):
        store.conversations.update(conv.id, id="other")
    assert store.conversations.delete(conv.id) is True
    assert store.conversations.delete(conv.id) is False
    assert store.conversations.count() == 0


def test_upsert_and_autoincrement_keys(any_store: hive_store.Store) -> None:
    store = any_store
    conv = _conv(store)
    truth = store.curator_truths.add(
        CuratorTruth(conversation_id=conv.id, curator_output="a", confidence_score=0.5))
    assert isinstance(truth.id, int)
    assert store.curator_truths.get(truth.id) == truth
    replaced = store.curator_truths.upsert(
        CuratorTruth(id=truth.id, conversation_id=conv.id, curator_output="b",
                     confidence_score=0.9))
    assert store.curator_truths.get(truth.id) == replaced
    assert store.curator_truths.count() == 1


def test_add_many_is_all_or_nothing(any_store: hive_store.Store) -> None:
    store = any_store
    conv = _conv(store)
    good = [Message(conversation_id=conv.id, role="user", content=str(i)) for i in range(5)]
    bad = Message(conversation_id="no-such-conversation", role="user", content="x")
    with pytest.raises(hive_store.IntegrityError):
        store.messages.add_many([*good, bad])
    assert store.messages.count() == 0
    assert store.messages.add_many(good) == good
    assert store.messages.get_many([good[3].id, "missing", good[1].id]) == [good[3], good[1]]


def test_foreign_keys_are_enforced(any_store: hive_store.Store) -> None:
    store = any_store
    with pytest.raises(hive_store.IntegrityError, match="FOREIGN KEY"):
        store.messages.add(Message(conversation_id="nope", role="user", content="x"))
    conv = _conv(store)
    store.messages.add(Message(conversation_id=conv.id, role="user", content="x"))
    with pytest.raises(hive_store.IntegrityError):
        store.conversations.delete(conv.id)
    assert store.conversations.count() == 1


def test_find_filters_order_limit(any_store: hive_store.Store) -> None:
    store = any_store
    conv = _conv(store)
    base = datetime(2025, 1, 1, tzinfo=UTC)
    msgs = [Message(conversation_id=conv.id, role="assistant" if i % 2 else "user",
                    content=f"content {i}", stage=["generator", "refiner", None][i % 3],
                    timestamp=base + timedelta(minutes=i)) for i in range(12)]
    store.messages.add_many(msgs)
    assert store.messages.count(conversation_id=conv.id) == 12
    assert store.messages.count(role="user") == 6
    assert store.messages.count(stage=None) == 4
    assert store.messages.count(stage__isnull=False) == 8
    assert store.messages.count(stage__in=["generator", "refiner"]) == 8
    assert store.messages.count(stage__in=[]) == 0
    assert store.messages.count(timestamp__ge=base + timedelta(minutes=10)) == 2
    assert store.messages.count(timestamp__lt=base + timedelta(minutes=3), role__ne="user") == 1
    assert store.messages.count(content__contains="ent 1") == 3  # 1, 10, 11
    newest = store.messages.find(order_by="-timestamp", limit=3)
    assert [m.content for m in newest] == ["content 11", "content 10", "content 9"]
    page = store.messages.find(order_by=["role", "-timestamp"], limit=2, offset=1)
    assert [m.content for m in page] == ["content 9", "content 7"]
    assert store.messages.find_one(content="content 4") == msgs[4]
    assert store.messages.find_one(content="nope") is None
    assert store.messages.find(conversation_id=conv.id) == msgs  # insertion order by default


@pytest.mark.parametrize("bad", [
    {"nosuchfield": 1}, {"content__regex": "x"}, {"content__in": "abc"},
    {"timestamp": "not a time"}, {"stage__isnull": "yes"},
])
def test_bad_filters_are_validation_errors(any_store: hive_store.Store, bad: dict) -> None:
    store = any_store
    with pytest.raises(hive_store.ValidationError):
        store.messages.find(**bad)


@pytest.mark.parametrize("order", ["nosuch", "-content; DROP TABLE messages", "", ["content", 3]])
def test_bad_order_by(any_store: hive_store.Store, order: object) -> None:
    store = any_store
    with pytest.raises(hive_store.ValidationError):
        store.messages.find(order_by=order)


@pytest.mark.parametrize("limit", [-1, "5", 1.5, True])
def test_bad_limits(any_store: hive_store.Store, limit: object) -> None:
    store = any_store
    with pytest.raises(hive_store.ValidationError):
        store.messages.find(limit=limit)


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_payloads_are_bound_not_executed(any_store: hive_store.Store,
                                                   payload: str) -> None:
    store = any_store
    conv = _conv(store)
    msg = store.messages.add(Message(conversation_id=conv.id, role="user", content=payload))
    assert store.messages.get(msg.id).content == payload
    assert store.messages.find(content=payload) == [msg]
    assert store.messages.count(content__contains=payload) == 1
    assert store.messages.find(role=payload) == []
    with pytest.raises(hive_store.NotFound):
        store.messages.get(payload)
    with pytest.raises(hive_store.ValidationError):
        store.messages.find(**{payload: 1}) if payload.isidentifier() else store.messages.find(
            order_by=payload)
    assert store.messages.count() == 1 and store.conversations.count() == 1


def test_search_escapes_like_wildcards(any_store: hive_store.Store) -> None:
    store = any_store
    conv = _conv(store)
    for q in ["100% sure", "snake_case names", "plain"]:
        store.knowledge_conversations.add(KnowledgeConversation(
            conversation_id=conv.id, question=q, final_answer="a", source_of_truth="s"))
    assert [k.question for k in store.search_knowledge("100%")] == ["100% sure"]
    assert [k.question for k in store.search_knowledge("_")] == ["snake_case names"]
    assert store.search_knowledge("PLAIN")[0].question == "plain"
    assert store.search_knowledge("%") != store.knowledge_conversations.find()


def test_iter_streams_in_constant_memory(any_store: hive_store.Store) -> None:
    store = any_store
    conv = _conv(store)
    store.messages.add_many(
        Message(conversation_id=conv.id, role="user", content="x" * 200) for _ in range(20000))
    tracemalloc.start()
    count = 0
    for m in store.messages.iter(batch_size=500):
        count += 1
        assert m.content
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 20000
    assert peak < 3_000_000, f"iter peak {peak} bytes: not streaming"
    memory = store.__dict__.get("memory")
    if memory is not None:  # the memory plugin's indexer, busy with the messages, holds one
        assert memory.wait_idle(timeout=60)
    # an abandoned iterator gives its connection back
    it = store.messages.iter()
    next(it)
    del it
    assert store.backend.pool_stats()["in_use"] == 0


def test_operations_on_a_closed_store_fail_clearly(backend_url: str) -> None:
    s = hive_store.open(backend_url)
    s.close()
    s.close()  # idempotent
    with pytest.raises(hive_store.StoreClosed):
        s.users.add(User())
    with pytest.raises(hive_store.StoreClosed):
        s.users.count()


# -- values in and out (issue 14) -------------------------------------------------------------


def test_explicit_autoincrement_keys_leave_the_key_space_usable(
        any_store: hive_store.Store) -> None:
    store = any_store
    conv = _conv(store)
    topic = ConversationTopic(conversation_id=conv.id, topic="t")
    for bad in (2**63 - 1, 2**53, 0, -5):
        with pytest.raises(hive_store.ValidationError, match="AUTOINCREMENT"):
            store.conversation_topics.add(attrs.evolve(topic, id=bad))
        with pytest.raises(hive_store.ValidationError, match="AUTOINCREMENT"):
            store.conversation_topics.upsert(attrs.evolve(topic, id=bad))
        with pytest.raises(hive_store.ValidationError, match="AUTOINCREMENT"):
            store.conversation_topics.add_many([attrs.evolve(topic, id=bad)])
        with pytest.raises(hive_store.ValidationError, match="AUTOINCREMENT"):
            store.log_activity("export", id=bad)
    assert store.conversation_topics.count() == 0
    with pytest.raises(hive_store.NotFound):  # lookups take any key
        store.conversation_topics.get(2**63 - 1)
    top = store.conversation_topics.add(attrs.evolve(topic, id=2**53 - 1))
    after = store.conversation_topics.add(topic)  # the store still has keys to give
    assert after.id == 2**53 == top.id + 1
    # a key someone else stored up there stays readable, updatable and deletable
    mark = store.backend.sql.param  # type: ignore[attr-defined]
    with store.backend.transaction() as conn:
        conn.execute("INSERT INTO conversation_topics (id, conversation_id, topic) "
                     f"VALUES ({mark}, {mark}, 'x')", (2**63 - 1, conv.id))
    assert store.conversation_topics.update(2**63 - 1, topic="y").topic == "y"
    assert store.conversation_topics.delete(2**63 - 1)


@pytest.mark.parametrize("call", [
    lambda s: s.messages.find(content__contains="a\ud800"),
    lambda s: s.messages.count(content__like="\udfff%"),
    lambda s: s.messages.find(content="\ud800"),
    lambda s: s.messages.search("\ud800", fields=["content"]),
    lambda s: s.search_knowledge("x\udc80"),
    lambda s: s.messages.search("x", fields=[bytearray()]),
    lambda s: s.messages.search("x", fields=[1]),
    lambda s: s.messages.find(**{"timestamp__ge": datetime.min.replace(
        tzinfo=timezone(timedelta(hours=5)))}),
    lambda s: s.messages.find(timestamp__lt=datetime.max.replace(
        tzinfo=timezone(timedelta(hours=-5)))),
    lambda s: list(s.messages.iter(batch_size=2**31)),
    lambda s: s.conversations.find(total_cost__ge=10**400),
    lambda s: s.conversations.add(Conversation(total_cost=10**400)),
    lambda s: s.conversations.add(Conversation(total_cost=2**53 + 1)),
    lambda s: s.messages.get(["unhashable"]),
    lambda s: s.messages.find(order_by=[bytearray()]),
    lambda s: s.activity_log.add(ActivityLog(event_type="export", metadata={1: "a", "1": "b"})),
    lambda s: s.activity_log.add(ActivityLog(event_type="export", metadata=_deep(50_000))),
    lambda s: s.messages.add(Message(conversation_id="c", role="robot", content="x")),
    lambda s: s.complete_conversation("c", success="yes"),
    lambda s: s.activity_log.find(stage=_deep(50_000)),
    lambda s: s.activity_log.find(event_type=_BadRepr()),
    lambda s: s.messages.find(order_by=[_deep(50_000)]),
    lambda s: s.record_consensus("q", [hive_store.StageOutput(
        stage="generator", model="m", answer="a", tokens_input=_deep(50_000))]),
    lambda s: s.record_consensus("q", [{"stage": _BadRepr(), "model": "m", "answer": "a"}]),
    lambda s: s.record_consensus("q", [hive_store.StageOutput(
        stage="generator", model="m", answer="a", cost=10**400)]),
    lambda s: s.log_activity("export", metadata={"k": "\ud800"}),
])
def test_bad_input_is_a_validation_error(any_store: hive_store.Store, call: Any) -> None:
    with pytest.raises(hive_store.ValidationError):
        call(any_store)


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_subclasses_and_adapters_never_change_what_is_stored(store: hive_store.Store) -> None:
    import sqlite3

    from hive_store.testing import ConformingFloat, ConformingInt, ConformingText

    conv = store.conversations.add(Conversation(
        id=ConformingText("c1"), input_tokens=ConformingInt(7),
        total_cost=ConformingFloat(1.5), quality_score=3))
    assert conv.id.__class__ is str and conv.input_tokens.__class__ is int
    assert conv.quality_score == 3.0 and conv.quality_score.__class__ is float
    assert store.conversations.get("c1") == conv
    assert store.conversations.find(input_tokens=ConformingInt(7)) == [conv]
    with store.backend.connection() as conn:
        assert conn.execute("SELECT typeof(id), typeof(input_tokens), typeof(total_cost) "
                            "FROM conversations").fetchone() == ("text", "integer", "real")
    sqlite3.register_adapter(int, lambda n: str(n))
    try:
        with pytest.raises(hive_store.ConfigurationError, match="adapter"):
            store.conversations.add(Conversation(input_tokens=1))
        with pytest.raises(hive_store.ConfigurationError, match="adapter"):
            store.conversations.update("c1", input_tokens=8)
    finally:
        del sqlite3.adapters[(int, sqlite3.PrepareProtocol)]
    assert store.conversations.update("c1", input_tokens=8).input_tokens == 8


def test_json_round_trips_exactly(any_store: hive_store.Store) -> None:
    store = any_store
    entry = store.log_activity("export", metadata={"t": (1, (2, 3)), "big": 10**30, "ü": -0.0})
    assert entry.metadata == {"t": [1, [2, 3]], "big": 10**30, "ü": -0.0}
    assert store.activity_log.get(entry.id) == entry
    assert store.activity_log.update(entry).metadata["t"] == [1, [2, 3]]


def test_a_closed_store_refuses_every_call(db_path: Path) -> None:
    s = hive_store.open(f"sqlite://{db_path}")
    conv = s.conversations.add(Conversation())
    s.close()
    calls = [lambda: s.conversations.get(conv.id), lambda: s.conversations.find(),
             lambda: s.conversations.count(), lambda: list(s.conversations.iter()),
             lambda: s.conversations.get_many([conv.id]),
             lambda: s.conversations.search("x", fields=["success_rate"]),
             lambda: s.conversations.add(Conversation()), lambda: s.conversations.upsert(conv),
             lambda: s.conversations.update(conv), lambda: s.conversations.delete(conv.id),
             lambda: s.conversations.add_many([Conversation()]),
             lambda: s.update_conversation_metrics(conv.id, total_cost=1.0),
             lambda: s.recent_activity(), lambda: s.search_knowledge("x")]
    for call in calls:
        with pytest.raises(hive_store.StoreClosed):
            call()
