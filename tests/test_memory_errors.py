"""Errors by cause, never by words: SQLite errors are classified by exception type and result
code (a user's text that says "corrupt:" or "locked" is just text), every bad argument of the
memory's API is a ValidationError, and the indexer never loops on an error that stays."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hive_store_memory import common
from hive_store_sqlite.backend import is_busy, translate_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hive_store
from hive_store import StageOutput
from hive_store.entities import KnowledgeConversation
from tests.test_memory_cli import invoke

DEADLINE = 60.0
TRIGGER_WORDS = [
    "corrupt:", "corrupt: x", "malformed", "malformed:", "database disk image is malformed",
    "locked", "locked:", "database is locked", "busy", "busy:", "SQLITE_BUSY",
    "UNIQUE constraint failed: t.id", "PRIMARY KEY", "no such table: conversations",
    "no such column: x", "not a database", "file is not a database", "readonly",
    "attempt to write a readonly database", "disk I/O error", "database or disk is full",
    "constraint", "NOT NULL", "interrupted", "out of memory",
]
NOT_CAUSED_BY_WORDS = (hive_store.CorruptDatabase, hive_store.DatabaseLocked,
                       hive_store.IntegrityError)


def knowledge(question: str, answer: str, **kw: Any) -> KnowledgeConversation:
    return KnowledgeConversation(question=question, final_answer=answer, source_of_truth=answer,
                                 **kw)


def stages(answer: str) -> list[StageOutput]:
    return [StageOutput(stage=s, model="m", answer=answer)
            for s in ("generator", "refiner", "validator", "curator")]


# -- words are words ------------------------------------------------------------------------------


@pytest.mark.parametrize("word", TRIGGER_WORDS)
def test_trigger_words_in_queries_and_values(mem_store: hive_store.Store, word: str) -> None:
    run = mem_store.record_consensus(f"what does {word} mean?", stages(f"it says {word}"))
    mem = mem_store.memory
    assert any(h.conversation_id == run.conversation_id for h in mem.search(word))
    assert mem.context_for(word).question == word
    # a query FTS5 cannot parse is the caller's: never "damaged" or "locked"
    with contextlib.suppress(hive_store.ValidationError):
        mem.search(word, advanced=True)
    kc = mem_store.knowledge_conversations
    assert kc.find(question=f"what does {word} mean?")
    assert kc.search(word, fields=["question"])
    assert kc.find(final_answer__contains=word)
    assert mem_store.search_knowledge(word)


@pytest.mark.parametrize("query", ["corrupt: x", "malformed: y", "locked: z", "busy: q",
                                   "notadb: w"])
def test_a_column_filter_named_like_an_error_is_a_validation_error(
        mem_store: hive_store.Store, query: str) -> None:
    # SQLite answers "no such column: corrupt": that is the query's fault, whatever it says
    with pytest.raises(hive_store.ValidationError) as err:
        mem_store.memory.search(query, advanced=True)
    assert not isinstance(err.value, NOT_CAUSED_BY_WORDS)


def test_translate_error_uses_codes(tmp_path: Path) -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, u UNIQUE, n NOT NULL)")
    conn.execute("INSERT INTO t VALUES (1, 1, 1)")
    cases: list[tuple[str, type[Exception]]] = [
        ("INSERT INTO t VALUES (1, 2, 2)", hive_store.Conflict),
        ("INSERT INTO t VALUES (2, 1, 2)", hive_store.Conflict),
        ("INSERT INTO t VALUES (3, 3, NULL)", hive_store.IntegrityError),
        ("SELECT * FROM \"corrupt: malformed, locked and busy\"", hive_store.StorageError),
    ]
    for sql, expected in cases:
        with pytest.raises(sqlite3.Error) as raw:
            conn.execute(sql)
        error = translate_error(raw.value)
        assert type(error) is expected, sql
        assert error.sqlite_errorcode == raw.value.sqlite_errorcode  # type: ignore[attr-defined]
    # a message alone decides nothing (no code: raised by Python code, or a fake)
    for message in ("database is locked", "database disk image is malformed",
                    "file is not a database", "UNIQUE constraint failed: t.id"):
        assert type(translate_error(sqlite3.OperationalError(message))) is hive_store.StorageError
        assert not is_busy(sqlite3.OperationalError(message))
    # the real thing, by code
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError) as raw:
        other.execute("BEGIN IMMEDIATE")
    assert is_busy(raw.value)
    assert isinstance(translate_error(raw.value), hive_store.DatabaseLocked)
    assert isinstance(common.translate(raw.value, "x"), hive_store.DatabaseLocked)
    holder.execute("ROLLBACK")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database, nor corrupt, nor locked" * 200)
    with pytest.raises(sqlite3.DatabaseError) as raw:
        sqlite3.connect(junk).execute("SELECT * FROM sqlite_master")
    assert isinstance(translate_error(raw.value), hive_store.CorruptDatabase)
    assert isinstance(common.translate(raw.value, "x"), hive_store.CorruptDatabase)


# -- arguments ------------------------------------------------------------------------------------

HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True), st.text(max_size=5), st.binary(max_size=5),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "x" * 5000, Decimal(1), Decimal("nan"),
                     [], [1], ["\ud800"], {"a": 1}, object(), datetime(2025, 1, 1),
                     datetime.min.replace(tzinfo=timezone(timedelta(hours=5))),
                     datetime.max.replace(tzinfo=timezone(timedelta(hours=-5))),
                     datetime(2025, 1, 1, tzinfo=UTC), 10**30, -1, 0, True]))
CALLS = {
    "search": lambda m, v: m.search(v),
    "search.limit": lambda m, v: m.search("wal", limit=v),
    "search.kinds": lambda m, v: m.search("wal", kinds=v),
    "search.since": lambda m, v: m.search("wal", since=v),
    "search.advanced": lambda m, v: m.search(v if isinstance(v, str) else "x", advanced=True),
    "search.group": lambda m, v: m.search("wal", group=v),
    "context_for": lambda m, v: m.context_for(v),
    "context_for.now": lambda m, v: m.context_for("wal?", now=v),
    "context_for.conversation_id": lambda m, v: m.context_for("wal?", conversation_id=v),
    "context_for.record": lambda m, v: m.context_for("wal?", record=v, conversation_id="c"),
    "context_for.limit": lambda m, v: m.context_for("wal?", limit=v),
    "theme": lambda m, v: m.theme(v),
    "theme_of": lambda m, v: m.theme_of(v),
    "members": lambda m, v: m.members(v),
    "members.limit": lambda m, v: m.members(1, limit=v),
    "themes.limit": lambda m, v: m.themes(limit=v),
    "topics.limit": lambda m, v: m.topics(limit=v),
    "assign": lambda m, v: m.assign(v),
    "recluster": lambda m, v: m.recluster(threshold=v),
}


@pytest.fixture(scope="module")
def shared_store() -> Any:
    with hive_store.open(":memory:") as store:
        store.record_consensus("How does WAL work?", stages("WAL appends pages to a log."))
        yield store


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call=st.sampled_from(sorted(CALLS)), value=HOSTILE)
def test_only_hive_store_errors_from_any_argument(shared_store: hive_store.Store, call: str,
                                                  value: Any) -> None:
    with contextlib.suppress(hive_store.HiveStoreError):
        CALLS[call](shared_store.memory, value)


@pytest.mark.parametrize("call, value", [
    ("search", "\ud800"), ("context_for", "what \udfff?"), ("theme_of", "\ud800"),
    ("search.kinds", True), ("theme_of", Decimal(1)), ("theme", 10**30), ("theme", "1"),
    ("members", 2**64), ("search.limit", True), ("search.since", datetime(2025, 1, 1)),
    ("context_for.now", datetime.min.replace(tzinfo=timezone(timedelta(hours=5)))),
    ("search.group", "yes"), ("recluster", float("nan")), ("assign", "k1"),
])
def test_the_named_bad_arguments_are_validation_errors(shared_store: hive_store.Store,
                                                       call: str, value: Any) -> None:
    with pytest.raises(hive_store.ValidationError):
        CALLS[call](shared_store.memory, value)


def test_the_memory_of_a_closed_store_says_so() -> None:
    store = hive_store.open(":memory:")
    store.close()
    for call in (lambda: store.memory.search("x"), lambda: store.memory.topics(),
                 lambda: store.memory.theme_of("k"), lambda: store.memory.wait_idle()):
        with pytest.raises(hive_store.StoreClosed):
            call()


def test_cli_arguments_that_are_not_text(db_path: Path) -> None:
    db = str(db_path)
    for args in (["memory", "search", "\udcff"], ["memory", "context", "what \udcff?"],
                 ["memory", "search", "a" * 2000, "--advanced"]):
        result = invoke("--db", db, *args)
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


# -- errors that stay -----------------------------------------------------------------------------


def eventually(check: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {DEADLINE:g} s: {what}")
        time.sleep(0.01)


def test_a_full_key_space_stops_the_indexer_instead_of_looping(
        db_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_STORE_MEMORY_POLL", "0")  # only commits wake the indexer
    with hive_store.open(f"sqlite://{db_path}") as store, \
            caplog.at_level(logging.DEBUG, logger="hive_store"):
        mem = store.memory
        store.knowledge_conversations.add(knowledge("before", "indexed fine"))
        assert mem.wait_idle(timeout=DEADLINE)
        with store.backend.connection() as conn:  # the next document number cannot be made
            conn.execute("UPDATE sqlite_sequence SET seq = 9223372036854775807 "
                         "WHERE name = 'hive_store_memory_docs'")
        for i in range(5):  # the writes themselves are never refused
            store.knowledge_conversations.add(knowledge(f"after {i}", "cannot be indexed"))
        eventually(lambda: mem.stopped is not None, "the indexer stopped")
        assert mem.indexer is not None
        time.sleep(0.3)  # the wake-ups of the commits above
        passes = mem.indexer.passes
        time.sleep(1.0)  # no retry loop: nothing happens without a new commit
        assert mem.indexer.passes == passes
        assert not mem.wait_idle(timeout=1)
        hits = mem.search("after")
        assert not hits.complete and hits.pending > 0
        st = mem.status(flush=False)
        assert st.failed == 3 and st.indexer["stopped"]
        [health] = [r for r in store.health() if r.name == "memory_index"]
        assert health.status == "warn" and "set aside" in health.message
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors and not any(r.exc_info for r in caplog.records)
        assert all("cannot be indexed" not in r.getMessage() for r in caplog.records)
        with store.backend.connection() as conn:  # fixed: reindex tries everything again
            conn.execute("UPDATE sqlite_sequence SET seq = (SELECT max(doc_id) FROM "
                         "hive_store_memory_docs) WHERE name = 'hive_store_memory_docs'")
        st = mem.reindex()
        assert st.failed == 0 and st.in_step and mem.stopped is None
        assert len(mem.search("after", group=False, kinds=["knowledge_conversations"])) == 5


def test_a_row_the_index_cannot_take_is_set_aside(db_path: Path) -> None:
    with hive_store.open(f"sqlite://{db_path}") as store:
        mem = store.memory
        with store.backend.connection() as conn:
            conn.execute("CREATE TRIGGER test_refuse BEFORE INSERT ON hive_store_memory_docs "
                         "WHEN new.key = 'bad' BEGIN SELECT RAISE(ABORT, 'refused'); END")
        store.knowledge_conversations.add_many(
            [knowledge(f"good {i}", "findable words") for i in range(3)]
            + [knowledge("bad one", "findable words", id="bad")])
        assert mem.wait_idle(timeout=DEADLINE)
        assert mem.stopped is None
        assert len(mem.search("findable", kinds=["knowledge_conversations"])) == 3
        st = mem.status()
        assert st.failed == 1 and st.failed_rows[0][:2] == ("knowledge_conversations", "bad")
        [health] = [r for r in store.health() if r.name == "memory_index"]
        assert health.status == "warn" and "bad" in health.message
        with store.backend.connection() as conn:
            conn.execute("DROP TRIGGER test_refuse")
        assert mem.reindex().failed == 0
        assert len(mem.search("findable", kinds=["knowledge_conversations"])) == 4


def test_a_store_opened_read_only_writes_nothing(db_path: Path) -> None:
    with hive_store.open(f"sqlite://{db_path}") as store:
        store.memory.indexer.stop()  # type: ignore[union-attr]
        store.knowledge_conversations.add(knowledge("late", "not indexed yet"))
    with hive_store.open(f"sqlite://{db_path}", read_only=True) as store:
        mem = store.memory
        assert mem.indexer is None
        hits = mem.search("late")
        assert hits == [] and not hits.complete and hits.pending == 1
        ctx = mem.context_for("late?")
        assert not ctx.complete and ctx.pending == 1
        assert mem.topics() == [] and mem.status().pending == 1
        [health] = [r for r in store.health() if r.name == "memory_index"]
        assert health.status == "warn" and "read-only" in health.message
