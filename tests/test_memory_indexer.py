"""The memory plugin's deferred indexing: the background indexer, its failures, the threads,
concurrent writers, rows of other programs and adopted databases, read-only databases, and
the migration that introduced it (0002) going down and up."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hive_store_memory import index as ix
from hive_store_memory import memory_of, migration_set
from hive_store_memory.indexer import THREAD_NAME

import hive_store
from hive_store.entities import Conversation, KnowledgeConversation, Message
from hive_store.plugins import Plugins
from tests.conftest import legacy_fixture
from tests.test_files import immutable
from tests.test_memory_search import assert_in_step

DEADLINE = 60.0  # seconds a background step may take on a loaded machine (never a timing test)


def knowledge(question: str, answer: str, **kw: Any) -> KnowledgeConversation:
    return KnowledgeConversation(question=question, final_answer=answer, source_of_truth=answer,
                                 **kw)


def eventually(check: Callable[[], bool], what: str) -> None:
    """Poll ``check`` until it holds (fail after :data:`DEADLINE`)."""
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {DEADLINE:g} s: {what}")
        time.sleep(0.01)


def indexer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def backlog(store: hive_store.Store) -> ix.IndexStatus:
    """The index as the background indexer left it (no catch-up by the caller)."""
    return memory_of(store).status(flush=False)


def caught_up(store: hive_store.Store) -> bool:
    st = backlog(store)
    return (st.pending == 0 and st.rows == st.documents
            and st.indexed == sum(st.documents.values()) and st.unassigned == 0)


# -- the background indexer -----------------------------------------------------------------------


def test_writes_only_log_and_the_indexer_catches_up_without_a_search(db_path: Path) -> None:
    with hive_store.open(f"sqlite://{db_path}") as store:
        conv = store.conversations.add(Conversation())
        entries = store.knowledge_conversations.add_many(
            [knowledge(f"sqlite wal question {i}", f"checkpoint answer uniq{i}x",
                       conversation_id=conv.id) for i in range(30)])
        store.messages.add(Message(conversation_id=conv.id, role="user", content="hello there"))
        indexer = store.memory.indexer
        assert indexer is not None
        eventually(lambda: caught_up(store) and indexer.passes >= 1,
                   "the indexer applied the log and assigned themes")
        assert indexer.running
        st = backlog(store)
        assert st.documents["knowledge_conversations"] == 30 and st.themes >= 1
        assert store.memory.last_error is None
        # the index really holds them: the search has nothing left to apply
        hits = store.memory.search("uniq7x")
        assert hits.complete and hits.pending == 0 and [h.key for h in hits] == [entries[7].id]
        assert store.memory.applied >= 31


def test_wait_idle_and_flush(db_path: Path) -> None:
    with hive_store.open(f"sqlite://{db_path}") as store:
        mem = store.memory
        store.knowledge_conversations.add_many(
            [knowledge(f"question {i}", f"answer word{i}x") for i in range(10)])
        assert mem.wait_idle(timeout=DEADLINE)
        assert caught_up(store)
        assert mem.flush() == 0  # nothing left
        with store.transaction():  # inside a transaction: its own changes, in it
            k = store.knowledge_conversations.add(knowledge("inside", "tx only word"))
            assert mem.flush(themes=False) == 1
            assert [h.key for h in mem.search("tx only word")] == [k.id]
        assert mem.wait_idle(timeout=DEADLINE)
        assert mem.theme_of(k.id) is not None  # themes followed after the commit


def test_the_indexer_works_in_small_transactions(db_path: Path) -> None:
    seen: list[int] = []
    with hive_store.open(f"sqlite://{db_path}") as store:
        store.memory.batch_size = 7
        real = ix.apply_log

        def spy(conn: sqlite3.Connection, **kw: Any) -> ix.Applied:
            applied = real(conn, **kw)
            seen.append(applied.changes)
            return applied

        ix.apply_log = spy  # type: ignore[assignment]
        try:
            store.knowledge_conversations.add_many(
                [knowledge(f"question {i}", f"answer {i}") for i in range(50)])
            assert store.memory.wait_idle(timeout=DEADLINE)
        finally:
            ix.apply_log = real  # type: ignore[assignment]
        assert sum(seen) == 50 and max(seen) <= 7
        assert_in_step(store)


def test_close_joins_the_thread(db_path: Path) -> None:
    before = set(indexer_threads())
    store = hive_store.open(f"sqlite://{db_path}")
    indexer = store.memory.indexer
    assert indexer is not None and indexer.running
    store.knowledge_conversations.add_many([knowledge(f"q{i}", f"a{i}") for i in range(200)])
    store.close()  # may stop it halfway: the next open catches up
    assert not indexer.running
    assert set(indexer_threads()) == before
    with hive_store.open(f"sqlite://{db_path}") as again:
        eventually(lambda: caught_up(again), "the next store's indexer finished the log")
        assert_in_step(again)
    assert set(indexer_threads()) == before


def test_no_indexer_without_the_plugin_tables(tmp_path: Path) -> None:
    path = tmp_path / "bare.db"
    without = Plugins()
    without.pm.set_blocked("memory")
    hive_store.open(f"sqlite://{path}", plugins=without.ensure_loaded()).close()
    before = set(indexer_threads())
    with hive_store.open(f"sqlite://{path}", migrate=False) as store:
        assert store.memory.indexer is None and set(indexer_threads()) == before
        store.knowledge_conversations.add(knowledge("q", "a"))  # no hook work, no error


# -- failures never reach the writers -------------------------------------------------------------


def test_a_failing_indexer_never_fails_a_write(db_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    def broken(conn: sqlite3.Connection, **kw: Any) -> ix.Applied:
        raise sqlite3.OperationalError("disk I/O error")

    with hive_store.open(f"sqlite://{db_path}") as store, \
            caplog.at_level(logging.DEBUG, logger="hive_store"):
        mem = store.memory
        monkeypatch.setattr(ix, "apply_log", broken)
        conv = store.conversations.add(Conversation())
        written = [store.knowledge_conversations.add(knowledge(f"secretword{i}", "answer",
                                                               conversation_id=conv.id))
                   for i in range(3)]  # every write commits
        store.record_consensus("another secretword?", [
            hive_store.StageOutput(stage=s, model="m", answer="fine")
            for s in ("generator", "refiner", "validator", "curator")])
        assert store.knowledge_conversations.count() == 4
        eventually(lambda: mem.last_error is not None, "the indexer recorded its failure")
        assert "disk I/O error" in (mem.last_error or "")
        # reads still work, on the index as it is, and say that it is behind
        hits = mem.search("secretword0")
        assert hits == [] and not hits.complete and hits.pending > 0
        [health] = [r for r in store.health() if r.name == "memory_index"]
        assert health.status == "warn" and "disk I/O error" in health.message
        assert health.details["indexer"]["last_error"]
        # logged with the error, never with the rows' text
        logged = [r for r in caplog.records if "memory" in r.getMessage()]
        assert logged and all("secretword" not in r.getMessage() for r in logged)
        assert not any(r.exc_info for r in logged)  # no traceback
        assert len([r for r in logged if r.levelno >= logging.WARNING]) == 1  # once a streak
        monkeypatch.undo()
        assert mem.wait_idle(timeout=DEADLINE)  # it recovers on its own
        assert mem.last_error is None
        assert [h.key for h in mem.search("secretword1")] == [written[1].id]
        [health] = [r for r in store.health() if r.name == "memory_index"]
        assert health.status == "ok", health.message
        assert_in_step(store)


def test_an_indexer_thread_that_raises_is_logged_and_keeps_running(
        db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def flaky(conn: sqlite3.Connection, **kw: Any) -> ix.Applied:
        calls.append(1)
        if len(calls) == 1:
            raise hive_store.DatabaseLocked("the database stayed locked")
        return real(conn, **kw)

    real = ix.apply_log
    with hive_store.open(f"sqlite://{db_path}") as store:
        monkeypatch.setattr(ix, "apply_log", flaky)
        store.knowledge_conversations.add(knowledge("q", "retried word"))
        eventually(lambda: len(calls) >= 2 and store.memory.last_error is None
                   and backlog(store).pending == 0, "the indexer retried after a failure")
        assert store.memory.indexer is not None and store.memory.indexer.failures >= 1
        assert store.memory.last_failure is not None


# -- concurrency ----------------------------------------------------------------------------------


def test_concurrent_writers_and_the_indexer(db_path: Path) -> None:
    errors: list[str] = []
    words: dict[str, str] = {}
    lock = threading.Lock()
    with hive_store.open(f"sqlite://{db_path}", busy_timeout=30) as store:
        store.memory.batch_size = 25  # many short indexer transactions between the writers'

        def writer(n: int) -> None:
            try:
                conv = store.conversations.add(Conversation())
                for i in range(40):
                    word = f"w{n}x{i}z"
                    with store.transaction():
                        k = store.knowledge_conversations.add(knowledge(
                            f"question {word}", f"answer {n} {i}", conversation_id=conv.id))
                        store.messages.add(Message(conversation_id=conv.id, role="user",
                                                   content=f"message {word}"))
                    with lock:
                        words[word] = k.id
                    if i % 10 == 0:
                        store.knowledge_conversations.update(k, final_answer=f"changed {n} {i}")
            except Exception:
                errors.append(traceback.format_exc())

        def reader() -> None:
            try:
                for _ in range(20):
                    store.memory.search("question")
            except Exception:
                errors.append(traceback.format_exc())

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        threads.append(threading.Thread(target=reader))
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE * 2)
        assert errors == []
        assert store.memory.wait_idle(timeout=DEADLINE)
        assert store.memory.last_error is None
        for word, key in words.items():
            assert [h.key for h in store.memory.search(word, kinds=["knowledge_conversations"])
                    ] == [key]
        assert_in_step(store)
        assert backlog(store).unassigned == 0


# -- other programs, adopted databases, read-only ------------------------------------------------


def test_rows_another_program_wrote_while_closed_are_indexed_in_the_background(
        db_path: Path) -> None:
    hive_store.open(f"sqlite://{db_path}").close()
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("INSERT INTO conversations (id) VALUES ('c-other')")
    other.execute("INSERT INTO knowledge_conversations (id, conversation_id, question, "
                  "final_answer, source_of_truth) VALUES ('k-other', 'c-other', 'from the app', "
                  "'otherprogramword', 'otherprogramword')")
    other.execute("INSERT INTO messages (id, conversation_id, role, content) "
                  "VALUES ('m-other', 'c-other', 'user', 'plain sqlite message')")
    other.execute("INSERT OR REPLACE INTO curator_truths (conversation_id, curator_output, "
                  "confidence_score) VALUES ('c-other', 'replaced truth', 0.8)")
    other.execute("INSERT OR REPLACE INTO curator_truths (conversation_id, curator_output, "
                  "confidence_score) VALUES ('c-other', 'final truth', 0.8)")
    other.close()
    with hive_store.open(f"sqlite://{db_path}") as store:  # it looks at the log when it opens
        eventually(lambda: caught_up(store), "the indexer applied what the other program logged")
        assert store.memory.theme_of("k-other") is not None
        assert [h.key for h in store.memory.search("otherprogramword")] == ["k-other"]
        assert [h.entity.curator_output for h in store.memory.search("truth")] == ["final truth"]
        assert_in_step(store)


def test_rows_another_program_writes_while_open_are_polled(
        db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_STORE_MEMORY_POLL", "0.05")
    with hive_store.open(f"sqlite://{db_path}") as store:
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("INSERT INTO knowledge_conversations (id, question, final_answer, "
                      "source_of_truth) VALUES ('k-poll', 'q', 'polledword', 'polledword')")
        other.execute("UPDATE knowledge_conversations SET final_answer = 'repolled', "
                      "source_of_truth = 'repolled' WHERE id = 'k-poll'")
        other.close()
        eventually(lambda: caught_up(store), "the indexer found the other program's rows")
        assert store.memory.search("polledword") == []
        assert [h.key for h in store.memory.search("repolled")] == ["k-poll"]


@pytest.mark.parametrize("name", ["hive-ai-v5.db", "hive-ai-v10.db"])
def test_an_adopted_legacy_database_is_indexed(tmp_path: Path, name: str) -> None:
    path = tmp_path / "hive-ai.db"
    shutil.copy(legacy_fixture(name), path)
    with hive_store.open(f"sqlite://{path}") as store:  # adoption, then the plugin's migrations
        st = store.memory.status()
        assert st.in_step and st.pending == 0 and st.rows == st.documents
        assert st.documents["knowledge_conversations"] == 60
        found = 0
        for entry in store.knowledge_conversations.find(order_by="id"):
            words = [w for w in f"{entry.question} {entry.final_answer}".split()
                     if len(w) >= 5 and w.isalnum()]
            if words:
                hits = store.memory.search(words[0], kinds=["knowledge_conversations"],
                                           limit=100)
                assert entry.id in {h.key for h in hits}
                found += 1
        assert found > 10
        # legacy rows keep waiting for `recluster`; new ones join themes on their own
        assert st.unassigned == 60
        new = store.knowledge_conversations.add(knowledge("a new question", "a new answer"))
        assert store.memory.wait_idle(timeout=DEADLINE)
        assert store.memory.theme_of(new.id) is not None
        assert store.memory.recluster().entries == 61
        assert_in_step(store)


def test_a_read_only_database_is_still_searchable(db_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_STORE_MEMORY_POLL", "0")
    with hive_store.open(f"sqlite://{db_path}") as store:
        store.knowledge_conversations.add(knowledge("indexed", "before readonly"))
        assert store.memory.wait_idle(timeout=DEADLINE)
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("INSERT INTO knowledge_conversations (id, question, final_answer, "
                  "source_of_truth) VALUES ('k-late', 'late', 'notyetindexed', 'x')")
    other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    other.close()
    with immutable(db_path), hive_store.open(f"sqlite://{db_path}") as store:
        hits = store.memory.search("readonly")
        assert [h.entity.question for h in hits] == ["indexed"]
        assert not hits.complete and hits.pending == 1
        assert store.memory.read_only
        assert store.memory.search("notyetindexed") == []
        ctx = store.memory.context_for("readonly")
        assert not ctx.complete and ctx.pending == 1
        [health] = [r for r in store.health() if r.name == "memory_index"]
        assert health.status == "warn" and "read-only" in health.message
    with hive_store.open(f"sqlite://{db_path}") as store:  # writable again
        assert [h.key for h in store.memory.search("notyetindexed")] == ["k-late"]


# -- the migration -------------------------------------------------------------------------------


def test_the_deferred_index_migration_goes_down_and_up(db_path: Path) -> None:
    with hive_store.open(f"sqlite://{db_path}") as store:
        conv = store.conversations.add(Conversation())
        store.knowledge_conversations.add_many(
            [knowledge(f"question {i}", f"before word{i}x", conversation_id=conv.id)
             for i in range(5)])
        assert store.memory.wait_idle(timeout=DEADLINE)
    without = Plugins()
    without.pm.set_blocked("memory")
    without.ensure_loaded()
    with hive_store.open(f"sqlite://{db_path}", plugins=without) as store:
        migrator = without.migrator(store.backend)
        assert migrator is not None
        sets = [*without.migration_sets(), migration_set()]
        # 0003 drops only what is rebuilt from the themes (topics, term counts): with --force
        steps = migrator.migrate_to(sets, 2, namespace="hive_store_memory", force=True)
        assert [(s.direction, s.migration.version) for s in steps] == [("down", 3)]
        steps = migrator.migrate_to(sets, 1, namespace="hive_store_memory")  # no --force needed
        assert [s.direction for s in steps] == ["down"]
        with store.backend.connection() as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "hive_store_memory_pending" in names and ix.LOG not in names
        # 0001's synchronous triggers work again, and leave work pending for the way up
        store.knowledge_conversations.add(knowledge("while down", "downword answer"))
        with store.backend.connection() as conn:
            conn.execute("INSERT OR REPLACE INTO curator_truths (conversation_id, "
                         "curator_output, confidence_score) VALUES (?, 'down truth', 0.5)",
                         (conv.id,))
            conn.execute("INSERT OR REPLACE INTO curator_truths (conversation_id, "
                         "curator_output, confidence_score) VALUES (?, 'replaced truth', 0.5)",
                         (conv.id,))
            assert conn.execute("SELECT count(*) FROM hive_store_memory_pending").fetchone()[0]
    with hive_store.open(f"sqlite://{db_path}", plugins=without) as store:  # `hive-store migrate`
        without.migrator(store.backend).upgrade(sets, lift_holds=True)  # lifts the hold at 0001
    with hive_store.open(f"sqlite://{db_path}") as store:  # up again: 0002 applied 0001's pending
        mem = store.memory
        assert {h.entity.question for h in mem.search("downword")} == {"while down"}
        assert [h.entity.curator_output for h in mem.search("truth")] == ["replaced truth"]
        assert [h.entity.question for h in mem.search("word3x")] == ["question 3"]
        assert_in_step(store)
        assert mem.topics()  # rebuilt
