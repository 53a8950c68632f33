"""The domain operations: record_consensus and friends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hive_store
from hive_store import StageOutput
from hive_store.entities import EventType, Stage, User

TABLES = ["conversations", "messages", "knowledge_conversations", "curator_truths",
          "usage_records", "conversation_usage", "activity_log"]


def stages(**overrides: object) -> list[StageOutput]:
    out = []
    for i, stage in enumerate(["generator", "refiner", "validator", "curator"]):
        out.append(StageOutput(stage=stage, model=f"vendor/model-{i}", answer=f"{stage} says {i}",
                               tokens_input=10 * (i + 1), tokens_output=20 * (i + 1),
                               cost=0.001 * (i + 1), duration_ms=100 * (i + 1),
                               **overrides))  # type: ignore[arg-type]
    return out


def counts(store: hive_store.Store) -> dict[str, int]:
    return {t: store.repo(store.entities[t]).count() for t in TABLES}


def test_record_consensus_writes_the_whole_run(store: hive_store.Store) -> None:
    user = store.users.add(User(email="a@example.com"))
    run = store.record_consensus("What is WAL?", stages(), user_id=user.id,
                                 profile_id="lightning-fast", topic_summary="sqlite")
    assert counts(store) == {"conversations": 1, "messages": 5, "knowledge_conversations": 1,
                             "curator_truths": 1, "usage_records": 1, "conversation_usage": 1,
                             "activity_log": 1}
    conv = store.conversations.get(run.conversation_id)
    assert conv == run.conversation
    assert conv.total_cost == pytest.approx(0.010)
    assert (conv.input_tokens, conv.output_tokens) == (100, 200)
    assert conv.consensus_profile_id == "lightning-fast"
    msgs = store.messages.find(conversation_id=conv.id, order_by="timestamp")
    assert [m.role for m in msgs] == ["user"] + ["assistant"] * 4
    assert [m.stage for m in msgs] == [None, "generator", "refiner", "validator", "curator"]
    assert msgs[0].content == "What is WAL?"
    assert run.knowledge.final_answer == run.knowledge.source_of_truth == "curator says 3"
    assert store.curator_truths.find_one(conversation_id=conv.id).curator_output == "curator says 3"
    activity = store.recent_activity(limit=1)[0]
    assert activity.event_type is EventType.PIPELINE_COMPLETE
    assert activity.duration_ms == 1000 and activity.tokens_used == 300
    assert [s["stage"] for s in activity.metadata["stages"]] == [s.value for s in Stage]


def test_record_consensus_is_all_or_nothing(store: hive_store.Store) -> None:
    before = counts(store)
    with pytest.raises(hive_store.IntegrityError):
        store.record_consensus("q", stages(), user_id="no-such-user")
    assert counts(store) == before
    run = store.record_consensus("q", stages())
    with pytest.raises(hive_store.Conflict):  # same conversation id again
        store.record_consensus("q", stages(), conversation_id=run.conversation_id)
    assert counts(store)["messages"] == 5


@pytest.mark.parametrize("bad", [
    lambda s: s[:3],
    lambda s: list(reversed(s)),
    lambda s: [*s, s[0]],
])
def test_record_consensus_needs_the_four_stages_in_order(store: hive_store.Store, bad) -> None:
    with pytest.raises(hive_store.ValidationError, match="four stages"):
        store.record_consensus("q", bad(stages()))
    with pytest.raises(hive_store.ValidationError):
        store.record_consensus("  ", stages())
    with pytest.raises(hive_store.ValidationError):
        store.record_consensus("q", [{"stage": "generator", "model": "m"}])
    assert counts(store)["conversations"] == 0


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(question=st.text(st.characters(codec="utf-8"), min_size=1).filter(str.strip),
       answers=st.lists(st.text(st.characters(codec="utf-8")), min_size=4, max_size=4),
       costs=st.lists(st.floats(0, 10), min_size=4, max_size=4))
def test_record_consensus_round_trips_any_text(mem_store: hive_store.Store, question: str,
                                               answers: list[str], costs: list[float]) -> None:
    outs = [StageOutput(stage=s, model="m", answer=a, cost=c)
            for s, a, c in zip(Stage, answers, costs, strict=True)]
    run = mem_store.record_consensus(question, outs)
    msgs = mem_store.messages.find(conversation_id=run.conversation_id)
    assert [m.content for m in msgs] == [question, *answers]
    assert mem_store.conversations.get(run.conversation_id).total_cost == pytest.approx(sum(costs))


def test_update_metrics_and_complete(store: hive_store.Store) -> None:
    run = store.record_consensus("q", stages())
    conv = store.update_conversation_metrics(run.conversation_id, total_cost=2.5,
                                             input_tokens=7, quality_score=0.75)
    assert store.conversations.get(conv.id) == conv
    assert (conv.total_cost, conv.input_tokens, conv.quality_score) == (2.5, 7, 0.75)
    assert conv.output_tokens == 200  # untouched
    assert conv.updated_at > run.conversation.updated_at
    done = store.complete_conversation(conv.id, success=False)
    assert done.success == 0 and done.end_time is not None
    with pytest.raises(hive_store.NotFound):
        store.complete_conversation("missing")


def test_recent_activity_and_log(store: hive_store.Store) -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    for i in range(5):
        store.log_activity("stage_complete", stage="refiner", created_at=t0 + timedelta(hours=i))
    store.log_activity(EventType.QUERY_ERROR, error_message="boom", created_at=t0)
    recent = store.recent_activity(limit=3)
    assert [a.created_at for a in recent] == [t0 + timedelta(hours=h) for h in (4, 3, 2)]
    assert len(store.recent_activity(since=t0 + timedelta(hours=3))) == 2
    assert [a.error_message for a in store.recent_activity(event_type="query_error")] == ["boom"]
    with pytest.raises(hive_store.ValidationError):
        store.log_activity("not_an_event")
    with pytest.raises(hive_store.ValidationError):
        store.log_activity("export", nosuch=1)
