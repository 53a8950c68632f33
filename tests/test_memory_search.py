"""The memory plugin's full-text index: search, and the index always matching the tables."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hive_store_memory import Memory, memory_of
from hive_store_memory import index as ix
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hive_store
from hive_store.entities import (
    ConsensusFact,
    Conversation,
    CuratorTruth,
    KnowledgeConversation,
    Message,
)
from hive_store.plugins import Plugins

FUNCTION_SCOPED = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                  HealthCheck.too_slow], deadline=None)
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)


class Rollback(Exception):
    pass


def knowledge(question: str, answer: str, **kw: Any) -> KnowledgeConversation:
    return KnowledgeConversation(question=question, final_answer=answer, source_of_truth=answer,
                                 **kw)


def index_dump(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """Every token occurrence in the index: (term, doc, column, offset)."""
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.memvocab "
                 f"USING fts5vocab(main, {ix.FTS}, instance)")
    return sorted(conn.execute("SELECT term, doc, col, offset FROM temp.memvocab").fetchall())


def rebuilt_dump(store: hive_store.Store) -> list[tuple[Any, ...]]:
    """What the index would hold if rebuilt from the tables now (computed, then rolled back)."""
    out: list[tuple[Any, ...]] = []
    with pytest.raises(Rollback), store.transaction():
        with store.backend.connection() as conn:
            ix.repair_documents(conn)
            ix.rebuild_index(conn)
            out = index_dump(conn)
        raise Rollback
    return out


def assert_in_step(store: hive_store.Store) -> None:
    """After a catch-up, documents are exactly the rows and the index exactly what a rebuild
    would give. (Writes only log their changes; the background indexer applies them, and
    ``flush`` applies what it has not yet, as every read does.)"""
    memory = memory_of(store)
    memory.flush()
    with store.backend.connection() as conn:
        assert not ix.has_pending(conn)
        docs = sorted(conn.execute(f"SELECT kind, key FROM {ix.DOCS}").fetchall(),
                      key=repr)
        rows = sorted(((s.table, k) for s in ix.SOURCES
                       for (k,) in conn.execute(f'SELECT "{s.pk}" FROM "{s.table}"')), key=repr)
        assert docs == rows
        current = index_dump(conn)
    assert current == rebuilt_dump(store)
    status = memory.status()
    assert status.in_step and status.pending == 0
    assert status.indexed == sum(status.documents.values())
    assert status.rows == status.documents


@pytest.fixture
def conv(mem_store: hive_store.Store) -> Conversation:
    return mem_store.conversations.add(Conversation())


# -- basics ---------------------------------------------------------------------------------------


def test_store_has_memory(mem_store: hive_store.Store) -> None:
    assert isinstance(mem_store.memory, Memory)
    assert memory_of(mem_store) is mem_store.memory


def test_search_ranks_highlights_and_returns_entities(mem_store: hive_store.Store) -> None:
    k1 = mem_store.knowledge_conversations.add(knowledge(
        "How does SQLite's WAL mode handle readers?",
        "In WAL mode readers never block the writer; a checkpoint copies pages back."))
    k2 = mem_store.knowledge_conversations.add(knowledge(
        "What is Python's GIL?", "The GIL lets one thread run Python bytecode; readers of "
        "shared objects still need locks."))
    hits = mem_store.memory.search("readers", kinds=["knowledge_conversations"])
    assert [h.key for h in hits] == [k1.id, k2.id]  # the question (title) counts twice
    assert hits[0].entity == k1
    assert hits[0].kind == "knowledge_conversations"
    assert hits[0].score > hits[1].score > 0
    top = hits[0]
    assert top.matched == ("readers",)
    assert "[readers]" in top.marked()
    start, end = top.highlights[0]
    assert top.snippet[start:end].lower() == "readers"
    # stemming: "checkpoints" finds "checkpoint"; every word must occur
    assert [h.key for h in mem_store.memory.search("checkpoints WAL",
                                                   kinds=["knowledge_conversations"])] == [k1.id]
    # no entry has every word: then the entries with any of them, ranked
    assert {h.key for h in mem_store.memory.search("checkpoint GIL")} == {k1.id, k2.id}
    assert mem_store.memory.search("checkpoint GIL", advanced=True) == []  # AND


def test_every_indexed_table_is_searched(mem_store: hive_store.Store, conv: Conversation) -> None:
    mem = mem_store.memory
    t = mem_store.curator_truths.add(CuratorTruth(conversation_id=conv.id,
                                                  curator_output="alpha curated",
                                                  confidence_score=0.9, topic_summary="zeta"))
    f = mem_store.consensus_facts.add(ConsensusFact(semantic_fingerprint="fp1",
                                                    content="alpha fact",
                                                    source_question="eta?"))
    m = mem_store.messages.add(Message(conversation_id=conv.id, role="user",
                                       content="alpha message"))
    found = {(h.kind, h.key) for h in mem.search("alpha")}
    assert found == {("curator_truths", t.id), ("consensus_facts", f.id), ("messages", m.id)}
    assert [h.key for h in mem.search("zeta")] == [t.id]  # topic_summary is the title
    assert [h.key for h in mem.search("eta")] == [f.id]  # source_question is the title
    assert [h.kind for h in mem.search("alpha", kinds=["messages"])] == ["messages"]
    assert all(h.conversation_id == conv.id for h in mem.search("alpha", kinds=["messages"]))


def test_source_of_truth_is_indexed_when_it_differs(mem_store: hive_store.Store) -> None:
    k = mem_store.knowledge_conversations.add(KnowledgeConversation(
        question="q", final_answer="first", source_of_truth="second"))
    assert [h.key for h in mem_store.memory.search("second")] == [k.id]
    assert [h.key for h in mem_store.memory.search("first")] == [k.id]


def test_since_and_limit(mem_store: hive_store.Store) -> None:
    now = datetime(2025, 3, 1, tzinfo=UTC)
    old = mem_store.knowledge_conversations.add(knowledge("old", "shared word",
                                                          created_at=now - timedelta(days=9)))
    new = mem_store.knowledge_conversations.add(knowledge("new", "shared word",
                                                          created_at=now - timedelta(days=1)))
    kinds = ["knowledge_conversations"]
    assert {h.key for h in mem_store.memory.search("shared", kinds=kinds)} == {old.id, new.id}
    recent = mem_store.memory.search("shared", kinds=kinds, since=now - timedelta(days=2))
    assert [h.key for h in recent] == [new.id]
    assert recent[0].created_at == now - timedelta(days=1)
    assert len(mem_store.memory.search("shared", kinds=kinds, limit=1)) == 1


@pytest.mark.parametrize("kwargs, field", [
    ({"limit": 0}, "limit"), ({"limit": "3"}, "limit"), ({"limit": True}, "limit"),
    ({"kinds": ["users"]}, "kinds"), ({"kinds": []}, "kinds"),
    ({"since": datetime(2025, 1, 1)}, "since"), ({"since": "2025-01-01"}, "since"),
    ({"advanced": "yes"}, "advanced"),
])
def test_bad_arguments_are_validation_errors(mem_store: hive_store.Store, kwargs: dict[str, Any],
                                             field: str) -> None:
    with pytest.raises(hive_store.ValidationError) as err:
        mem_store.memory.search("x", **kwargs)
    assert err.value.field == field


def test_text_must_be_text(mem_store: hive_store.Store) -> None:
    with pytest.raises(hive_store.ValidationError, match="text"):
        mem_store.memory.search(b"x")  # type: ignore[arg-type]


def test_user_text_is_never_fts_syntax(mem_store: hive_store.Store) -> None:
    k = mem_store.knowledge_conversations.add(knowledge(
        "Does NOT work: title: AND (x OR y)*", "don't quote \"me\" NEAR(a b)"))
    mem = mem_store.memory
    for text in ['NOT', 'title: AND', '(x OR y)*', "don't", '"me"', 'NEAR(a', '*', '"', ')']:
        hits = mem.search(text, kinds=["knowledge_conversations"])
        assert [h.key for h in hits] in ([k.id], []), text
    assert [h.key for h in mem.search("don't", kinds=["knowledge_conversations"])] == [k.id]
    assert mem.search("   ") == [] and mem.search("") == []


def test_advanced_syntax(mem_store: hive_store.Store) -> None:
    a = mem_store.knowledge_conversations.add(knowledge("sqlite locking", "wal readers"))
    b = mem_store.knowledge_conversations.add(knowledge("postgres locking", "mvcc readers"))
    mem = mem_store.memory
    kinds = ["knowledge_conversations"]
    assert {h.key for h in mem.search("sqlite OR postgres", advanced=True, kinds=kinds)} == {
        a.id, b.id}
    assert [h.key for h in mem.search("locking NOT mvcc", advanced=True, kinds=kinds)] == [a.id]
    assert [h.key for h in mem.search("postg*", advanced=True, kinds=kinds)] == [b.id]
    assert [h.key for h in mem.search("title: sqlite", advanced=True, kinds=kinds)] == [a.id]
    # without advanced=True operators are words: NOT excludes nothing
    assert b.id in {h.key for h in mem.search("locking NOT mvcc", kinds=kinds)}
    assert [h.key for h in mem.search("postg*", kinds=kinds)] == []  # * is no wildcard


@pytest.mark.parametrize("query", ['foo AND (', '"unterminated', 'nosuchcolumn: x', 'AND',
                                   'NEAR(a b', 'a NOT', '(('])
def test_advanced_syntax_errors_are_validation_errors(mem_store: hive_store.Store,
                                                      query: str) -> None:
    with pytest.raises(hive_store.ValidationError, match="not a valid full-text query"):
        mem_store.memory.search(query, advanced=True)


@pytest.fixture
def searchable(mem_store: hive_store.Store) -> hive_store.Store:
    mem_store.knowledge_conversations.add_many([
        knowledge("How do I use asyncio?", "Use async def, await and asyncio.run()."),
        knowledge("Ünïcödé naïve café?", "Diacritics are folded: cafe matches café."),
        knowledge("SQL: SELECT * FROM t;", "\"quoted\" (parens) NOT OR AND NEAR * ^ : -"),
    ])
    return mem_store


@FUNCTION_SCOPED
@given(text=TEXT)
def test_search_never_raises_on_user_text(searchable: hive_store.Store, text: str) -> None:
    for kinds in (None, ["knowledge_conversations"]):
        hits = searchable.memory.search(text, kinds=kinds, limit=5)
        assert isinstance(hits, list) and len(hits) <= 5
        for hit in hits:
            assert all(0 <= s < e <= len(hit.snippet) for s, e in hit.highlights)


@FUNCTION_SCOPED
@given(text=st.text(max_size=30).map(lambda s: s.replace("\x00", "")))
def test_advanced_search_raises_only_validation_errors(searchable: hive_store.Store,
                                                       text: str) -> None:
    with contextlib.suppress(hive_store.ValidationError):
        searchable.memory.search(text, advanced=True, limit=5)


def test_nul_and_surrogates_in_user_text(searchable: hive_store.Store) -> None:
    assert searchable.memory.search("asyncio\x00") != []
    # a lone surrogate is not Unicode text: SQLite (UTF-8) cannot take it
    for call in (lambda: searchable.memory.search("\ud800 asyncio"),
                 lambda: searchable.memory.search("a\udfff", advanced=True),
                 lambda: searchable.memory.context_for("what about \ud800?"),
                 lambda: searchable.memory.theme_of("\ud800")):
        with pytest.raises(hive_store.ValidationError, match="surrogate"):
            call()


def test_diacritics_fold(searchable: hive_store.Store) -> None:
    assert searchable.memory.search("cafe") == searchable.memory.search("café") != []


# -- the index always matches the tables ----------------------------------------------------------

WORD = st.integers(0, 10_000).map(lambda n: f"distinct{n}x")


@settings(FUNCTION_SCOPED, max_examples=25)
@given(batches=st.lists(st.lists(st.tuples(WORD, TEXT, TEXT), min_size=1, max_size=4),
                        min_size=1, max_size=4),
       delete=st.lists(st.integers(0, 15), max_size=6))
def test_committed_rows_are_findable_and_deleted_ones_never(batches: list[list[Any]],
                                                            delete: list[int]) -> None:
    with hive_store.open(":memory:") as store:
        store.memory.auto_assign = False
        rows: list[tuple[str, KnowledgeConversation]] = []
        for batch in batches:
            entities = [knowledge(f"{pre} {word} ?", f"{post} answer") for word, pre, post in batch]
            stored = store.knowledge_conversations.add_many(entities)
            rows += [(w, e) for (w, _, _), e in zip(batch, stored, strict=True)]
        gone = {rows[i % len(rows)][1].id for i in delete}
        for key in gone:
            store.knowledge_conversations.delete(key)
        kinds = ["knowledge_conversations"]
        for word, _entity in rows:
            keys = {h.key for h in store.memory.search(word, kinds=kinds, limit=50)}
            alive = {e.id for w, e in rows if w == word and e.id not in gone}
            assert keys == alive


# A step of the model: an operation on one of the indexed tables.
OPS = st.one_of(
    st.tuples(st.just("add"), WORD, TEXT),
    st.tuples(st.just("update"), st.integers(0, 20), WORD),
    st.tuples(st.just("delete"), st.integers(0, 20), st.just("")),
    st.tuples(st.just("upsert"), st.integers(0, 20), WORD),
    st.tuples(st.just("truth"), st.integers(0, 2), WORD),
    st.tuples(st.just("replace_truth"), st.integers(0, 2), WORD),
    st.tuples(st.just("message"), WORD, TEXT),
    st.tuples(st.just("fact"), st.integers(0, 3), WORD),
)
STEPS = st.lists(st.tuples(st.lists(OPS, min_size=1, max_size=4), st.booleans(),
                           st.booleans()), min_size=1, max_size=6)


def apply(store: hive_store.Store, convs: list[str], op: tuple[Any, ...]) -> None:
    kind, a, b = op
    kc = store.knowledge_conversations
    keys = [k.id for k in kc.find(order_by="id")]
    if kind == "add":
        kc.add(knowledge(f"{a} question", f"{b} answer"))
    elif kind == "message":
        store.messages.add(Message(conversation_id=convs[0], role="user", content=f"{a} {b}"))
    elif kind == "fact":
        store.consensus_facts.upsert(ConsensusFact(id=f"fact{a}", semantic_fingerprint=f"fp{a}",
                                                   content=f"{b} fact", source_question="q"))
    elif kind == "truth":
        existing = store.curator_truths.find_one(conversation_id=convs[a])
        if existing is None:
            store.curator_truths.add(CuratorTruth(conversation_id=convs[a],
                                                  curator_output=b, confidence_score=0.5))
        else:
            store.curator_truths.update(existing, curator_output=b)
    elif kind == "replace_truth":  # how Hive writes curator_truths
        with store.backend.connection() as conn:
            conn.execute("INSERT OR REPLACE INTO curator_truths (conversation_id, curator_output, "
                         "confidence_score) VALUES (?, ?, 0.8)", (convs[a], b))
    elif keys:
        key = keys[a % len(keys)]
        if kind == "update":
            kc.update(key, question=f"{b} changed", final_answer=f"{b} a")
        elif kind == "delete":
            kc.delete(key)
        elif kind == "upsert":
            entity = kc.get(key)
            kc.upsert(KnowledgeConversation(id=entity.id, question=entity.question,
                                            final_answer=f"{b} upserted",
                                            source_of_truth=entity.source_of_truth))


@settings(FUNCTION_SCOPED, max_examples=30)
@given(steps=STEPS, batch=st.sampled_from([1, 2, 1000]))
def test_index_never_diverges_from_the_tables(steps: list[tuple[list[Any], bool, bool]],
                                              batch: int) -> None:
    """Random writes, deletes, upserts and Hive's INSERT OR REPLACE, committed or rolled back,
    with the background indexer running and catch-ups inside transactions; small batches make
    the indexer split one row's changes over several transactions (marks)."""
    with hive_store.open(":memory:") as store:
        store.memory.auto_assign = False
        store.memory.batch_size = batch
        convs = [c.id for c in store.conversations.add_many([Conversation() for _ in range(3)])]
        for ops, commit, search_inside in steps:
            store.memory.flush()
            with store.backend.connection() as conn:
                before = index_dump(conn)
            try:
                with store.transaction():
                    for op in ops:
                        apply(store, convs, op)
                        if search_inside:  # applies the transaction's own changes, in it
                            store.memory.search("distinct0x")
                    if not commit:
                        raise Rollback
            except Rollback:
                with store.backend.connection() as conn:
                    assert index_dump(conn) == before
            assert_in_step(store)


def test_nested_savepoint_rollback(mem_store: hive_store.Store) -> None:
    kc = mem_store.knowledge_conversations
    with mem_store.transaction():
        kept = kc.add(knowledge("kept", "alpha"))
        with pytest.raises(Rollback), mem_store.transaction():
            kc.add(knowledge("dropped", "alpha"))
            kc.update(kept, question="changed")
            raise Rollback
        assert [h.key for h in mem_store.memory.search("alpha")] == [kept.id]  # read own write
    assert_in_step(mem_store)
    assert [h.entity.question for h in mem_store.memory.search("kept")] == ["kept"]
    assert mem_store.memory.search("dropped") == [] == mem_store.memory.search("changed")


# -- other writers, rebuilds, migration ---------------------------------------------------------


@pytest.fixture
def file_store(db_path: Path) -> Iterator[hive_store.Store]:
    with hive_store.open(f"sqlite://{db_path}") as s:
        yield s


def test_rows_written_by_another_program_are_indexed(db_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_STORE_MEMORY_POLL", "0")  # nothing wakes the indexer here
    file_store = hive_store.open(f"sqlite://{db_path}")
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("INSERT INTO knowledge_conversations (id, question, final_answer, "
                  "source_of_truth) VALUES ('legacy-1', 'from hive', 'foreignword', 'x')")
    other.execute("INSERT INTO conversations (id) VALUES ('c-legacy')")
    other.execute("INSERT OR REPLACE INTO curator_truths (conversation_id, curator_output, "
                  "confidence_score) VALUES ('c-legacy', 'first output', 0.8)")
    other.execute("INSERT OR REPLACE INTO curator_truths (conversation_id, curator_output, "
                  "confidence_score) VALUES ('c-legacy', 'second output', 0.8)")
    other.close()
    mem = file_store.memory
    # logged: the knowledge row; the first truth; the truth the second one replaced, the second
    assert mem.status(flush=False).pending == 4
    assert [h.key for h in mem.search("foreignword")] == ["legacy-1"]  # catches up first
    assert [h.entity.curator_output for h in mem.search("output")] == ["second output"]
    assert mem.status(flush=False).pending == 0
    assert_in_step(file_store)
    file_store.close()


def test_reindex_restores_dropped_triggers(file_store: hive_store.Store) -> None:
    mem = file_store.memory
    with file_store.backend.transaction() as conn:
        conn.execute("DROP TRIGGER hive_store_memory_kc_bi")
    file_store.knowledge_conversations.add(knowledge("unseen", "while the trigger was gone"))
    status = mem.status()
    assert status.missing_triggers == ("hive_store_memory_kc_bi",)
    assert not status.in_step
    [result] = [r for r in file_store.health() if r.name == "memory_index"]
    assert result.status == "warn" and "reindex" in result.message
    assert mem.search("unseen") == []
    seen: list[tuple[int, int]] = []
    status = mem.reindex(progress=lambda done, total: seen.append((done, total)))
    assert status.in_step and not status.missing_triggers
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] == sum(status.documents.values())
    assert [h.entity.question for h in mem.search("unseen")] == ["unseen"]
    file_store.knowledge_conversations.add(knowledge("after", "the trigger is back"))
    assert_in_step(file_store)


def test_migration_indexes_existing_rows(tmp_path: Path) -> None:
    path = tmp_path / "older.db"
    without = Plugins()
    without.pm.set_blocked("memory")
    with hive_store.open(f"sqlite://{path}", plugins=without.ensure_loaded()) as store:
        assert "memory" not in store.__dict__
        with pytest.raises(hive_store.ConfigurationError):
            memory_of(store)
        store.knowledge_conversations.add_many(
            [knowledge(f"question {i}", f"preexisting{i} answer") for i in range(5)])
    with hive_store.open(f"sqlite://{path}") as store:
        assert [h.entity.question for h in store.memory.search("preexisting3")] == ["question 3"]
        status = store.memory.status()
        assert status.documents["knowledge_conversations"] == 5
        assert status.unassigned == 5  # older entries join themes with recluster
        assert store.memory.recluster().entries == 5
        assert store.memory.status().unassigned == 0
        assert_in_step(store)


def test_a_store_opened_without_migrating_says_so(tmp_path: Path) -> None:
    path = tmp_path / "bare.db"
    without = Plugins()
    without.pm.set_blocked("memory")
    hive_store.open(f"sqlite://{path}", plugins=without.ensure_loaded()).close()
    with hive_store.open(f"sqlite://{path}", migrate=False) as store:
        store.conversations.add(Conversation())  # the commit hooks stay out of the way
        with pytest.raises(hive_store.ConfigurationError, match="hive-store migrate"):
            store.memory.search("x")


def test_health_ok_and_closed_store(db_path: Path) -> None:
    store = hive_store.open(f"sqlite://{db_path}")
    store.knowledge_conversations.add(knowledge("q", "a"))
    [result] = [r for r in store.health() if r.name == "memory_index"]
    assert result.status == "ok", result.message
    memory = store.memory
    store.close()
    for call in (lambda: memory.search("q"), lambda: store.memory.search("q"),
                 lambda: store.memory.themes(), lambda: store.memory.context_for("q"),
                 lambda: store.memory.status(), lambda: store.memory.flush()):
        with pytest.raises(hive_store.StoreClosed):
            call()


def test_doc_text_matches_the_sql(mem_store: hive_store.Store, conv: Conversation) -> None:
    """The Python mirror of the triggers' title/body expressions (used for snippets)."""
    entities = [
        mem_store.knowledge_conversations.add(knowledge("q", "same")),
        mem_store.knowledge_conversations.add(KnowledgeConversation(
            question="q2", final_answer="a", source_of_truth="b")),
        mem_store.curator_truths.add(CuratorTruth(conversation_id=conv.id, curator_output="o",
                                                  confidence_score=0.1)),
        mem_store.consensus_facts.add(ConsensusFact(semantic_fingerprint="f", content="c",
                                                    source_question="s")),
        mem_store.messages.add(Message(conversation_id=conv.id, role="user", content="m")),
    ]
    with mem_store.backend.connection() as conn:
        for entity in entities:
            source = ix.SOURCE_BY_TABLE[type(entity).__table__]  # type: ignore[attr-defined]
            row = conn.execute(
                f'SELECT {source.title_of("t")}, {source.body_of("t")} FROM "{source.table}" '
                f'AS t WHERE t."{source.pk}" = ?', (getattr(entity, source.pk),)).fetchone()
            assert ix.doc_text(source.table, entity) == tuple(row)


def test_a_broad_query_ranks_its_newest_matches(mem_store: hive_store.Store) -> None:
    kc = mem_store.knowledge_conversations
    # the oldest entry is the best BM25 match (the word twice, in the question too)
    best = kc.add(knowledge("broad broad", "broad"))
    rest = kc.add_many([knowledge(f"entry {i}", f"broad and many other words {i}")
                        for i in range(6)])
    kinds = ["knowledge_conversations"]
    mem = mem_store.memory
    assert mem.rank_window == 5000
    assert mem.search("broad", kinds=kinds, limit=1)[0].key == best.id
    mem.rank_window = 3
    window = {h.key for h in mem.search("broad", kinds=kinds, limit=10)}
    assert window == {e.id for e in rest[-3:]}
    mem.rank_window = None
    assert len(mem.search("broad", kinds=kinds, limit=10)) == 7


# -- questions people ask (issue 16) ------------------------------------------------------------


def test_a_natural_question_finds_what_it_means(mem_store: hive_store.Store) -> None:
    run = mem_store.record_consensus("How does WAL work?", [
        hive_store.StageOutput(stage=s, model="m", answer=f"{s}: the write-ahead log")
        for s in ("generator", "refiner", "validator", "curator")])
    other = mem_store.knowledge_conversations.add(knowledge(
        "Explain SQLite's write-ahead logging and checkpoints",
        "WAL mode appends changes to a separate file; a checkpoint copies them back."))
    mem_store.knowledge_conversations.add(knowledge("Brew green tea", "80 degrees, 2 minutes"))
    mem = mem_store.memory
    assert mem.search("how does WAL work")[0].conversation_id == run.conversation_id
    # no entry has every word: the entries with the rarer words, best first
    hits = mem.search("why would WAL checkpoints ever block?", kinds=["knowledge_conversations"])
    assert [h.key for h in hits][:1] == [other.id]
    assert all("tea" not in h.entity.question.lower() for h in hits)


def test_group_keeps_one_hit_per_conversation(mem_store: hive_store.Store) -> None:
    runs = [mem_store.record_consensus(f"question {i} about vacuum", [
        hive_store.StageOutput(stage=s, model="m", answer=f"vacuum answer {i}")
        for s in ("generator", "refiner", "validator", "curator")]) for i in range(3)]
    every = mem_store.memory.search("vacuum", limit=100)
    grouped = mem_store.memory.search("vacuum", group=True)
    assert len(every) == 3 * 7  # question, four stages, knowledge entry, curator truth
    assert sorted(h.conversation_id for h in grouped) == sorted(r.conversation_id for r in runs)
    assert [h.conversation_id for h in grouped] == list(dict.fromkeys(
        h.conversation_id for h in every))  # each conversation's best hit, in rank order


def test_advanced_queries_are_bounded(mem_store: hive_store.Store) -> None:
    mem = mem_store.memory
    with pytest.raises(hive_store.ValidationError, match="at most 32 words"):
        mem.search(" OR ".join(f"w{i}" for i in range(33)), advanced=True)
    with pytest.raises(hive_store.ValidationError, match="1000 characters"):
        mem.search("x" * 1001, advanced=True)
    assert mem.search(" OR ".join(f"w{i}" for i in range(32)), advanced=True) == []
    assert mem.search(" ".join(f"w{i}" for i in range(500))) == []  # plain text: no limit


def test_a_large_backlog_is_not_waited_for(db_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_STORE_MEMORY_POLL", "0")
    with hive_store.open(f"sqlite://{db_path}") as store:
        mem = store.memory
        assert mem.indexer is not None
        mem.indexer.stop()  # nothing applies the log in the background
        mem.read_catch_up = 10
        store.knowledge_conversations.add_many([knowledge(f"q{i}", "backlog") for i in range(5)])
        assert len(mem.search("backlog")) == 5  # small: applied by the read itself
        store.knowledge_conversations.add_many([knowledge(f"r{i}", "later") for i in range(20)])
        hits = mem.search("later")
        assert hits == [] and not hits.complete and hits.pending == 20
        ctx = mem.context_for("later?")
        assert not ctx.complete and ctx.pending == 20
        assert mem.flush() == 20  # explicitly: everything
        assert len(mem.search("later")) == 20
