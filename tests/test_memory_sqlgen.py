"""SQL the memory plugin generates from one description of the indexed tables: the change-log
triggers (they must behave exactly like the ones migration 0002 wrote out), includes in
migration files, and times read as instants whatever form they are stored in. Applied
migration files never change: their checksums are pinned here."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hive_store_memory import index as ix
from hive_store_memory import migration_set
from hive_store_memory.sqlgen import (
    SOURCES,
    TRIGGERS,
    expand,
    instant_sql,
    trigger_statements,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import hive_store
from hive_store.entities import Conversation

# Released migrations of the memory set: a changed file breaks every database that applied it
# (hive-store refuses to open it as drifted). A change of shape is a new migration.
CHECKSUMS = {
    1: "22d885c206c2e616772149bb8b2d1973c4dd0bf8e21d39a5791d6c0626ab8afb",
    2: "5f77bee3c7b1afd503a026244b315850ccffe87854154567eba0d37e8075cc6c",
    3: "eb5e240ea69528320c6958bfc8cb6a647d69988865ee200635adb869e07c3a55",
}


def test_released_migrations_never_change() -> None:
    found = {m.version: m.checksum for m in migration_set().migrations}
    assert {v: found.get(v) for v in CHECKSUMS} == CHECKSUMS


def test_includes_are_expanded_and_unknown_ones_left_alone() -> None:
    text = "-- @name: x\nSELECT 1;\n-- @include: instants_v1\n-- @include: nope\n"
    out = expand(text)
    assert "-- @include: instants_v1" not in out and "-- @include: nope" in out
    assert out.count("UPDATE hive_store_memory_docs SET") == len(SOURCES)
    [m3] = [m for m in migration_set().migrations if m.version == 3]
    assert m3.up.count("UPDATE hive_store_memory_docs SET") == len(SOURCES)


def test_every_trigger_is_generated() -> None:
    statements = trigger_statements()
    assert tuple(statements) == TRIGGERS
    for name, sql in statements.items():
        assert sql.startswith(f"CREATE TRIGGER {name} ") or sql.startswith(
            f"CREATE TRIGGER {name}\n")
        assert sqlite3.complete_statement(sql + ";")


# -- the generated triggers behave like migration 0002's ------------------------------------------


def _twins(db_path: Path, tmp_path: Path) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """Two copies of a migrated database: one with the triggers as migrated, one with them
    dropped and created from the generator."""
    with hive_store.open(f"sqlite://{db_path}") as store:
        store.conversations.add_many([Conversation(id="c1"), Conversation(id="c2")])
    twin = tmp_path / "twin.db"
    shutil.copy(db_path, twin)
    a = sqlite3.connect(db_path, isolation_level=None)
    b = sqlite3.connect(twin, isolation_level=None)
    for name in TRIGGERS:
        b.execute(f"DROP TRIGGER {name}")
    for sql in trigger_statements().values():
        b.execute(sql)
    return a, b


WORDS = st.sampled_from(["alpha", "beta", "gamma", None, ""])
KEYS = st.sampled_from(["k1", "k2", "k3"])
OPS = st.one_of(
    st.tuples(st.just("kc_insert"), KEYS, WORDS, WORDS, st.booleans()),
    st.tuples(st.just("kc_update"), KEYS, st.sampled_from(
        ["question", "final_answer", "source_of_truth", "created_at", "conversation_id", "id",
         "profile_id"]), WORDS),
    st.tuples(st.just("kc_delete"), KEYS),
    st.tuples(st.just("ct_replace"), st.sampled_from(["c1", "c2"]), WORDS),
    st.tuples(st.just("ct_update"), st.sampled_from(["curator_output", "topic_summary"]), WORDS),
    st.tuples(st.just("cf_replace"), KEYS, st.sampled_from(["f1", "f2"]), WORDS),
    st.tuples(st.just("msg_insert"), KEYS, WORDS, st.booleans()),
    st.tuples(st.just("msg_delete"), KEYS),
    st.tuples(st.just("apply"),),
)


def _run(conn: sqlite3.Connection, op: tuple[Any, ...]) -> None:
    kind = op[0]
    try:
        if kind == "kc_insert":
            _, key, q, a, replace = op
            verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
            conn.execute(f"{verb} INTO knowledge_conversations (id, conversation_id, question, "
                         "final_answer, source_of_truth) VALUES (?, 'c1', ?, ?, ?)",
                         (key, q or "q", a or "a", a or "a"))
        elif kind == "kc_update":
            _, key, column, value = op
            if column == "id":
                value = f"{key}-moved"
            elif column in ("question", "final_answer", "source_of_truth"):
                value = value or "x"
            elif column == "conversation_id":
                value = "c2"
            conn.execute(f'UPDATE knowledge_conversations SET "{column}" = ? WHERE id = ?',
                         (value, key))
        elif kind == "kc_delete":
            conn.execute("DELETE FROM knowledge_conversations WHERE id = ?", (op[1],))
        elif kind == "ct_replace":
            conn.execute("INSERT OR REPLACE INTO curator_truths (conversation_id, curator_output, "
                         "confidence_score, topic_summary) VALUES (?, 'out', 0.5, ?)",
                         (op[1], op[2]))
        elif kind == "ct_update":
            _, column, value = op
            conn.execute(f'UPDATE curator_truths SET "{column}" = ?', (value or "v",))
        elif kind == "cf_replace":
            _, key, fingerprint, content = op
            conn.execute("INSERT OR REPLACE INTO consensus_facts (id, semantic_fingerprint, "
                         "content, source_question, created_at, last_accessed) "
                         "VALUES (?, ?, ?, 'sq', '2025-01-01', '2025-01-01')",
                         (key, fingerprint, content or "c"))
        elif kind == "msg_insert":
            _, key, content, replace = op
            verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
            conn.execute(f"{verb} INTO messages (id, conversation_id, role, content) "
                         "VALUES (?, 'c1', 'user', ?)", (key, content or "m"))
        elif kind == "msg_delete":
            conn.execute("DELETE FROM messages WHERE id = ?", (op[1],))
        elif kind == "apply":
            conn.execute("BEGIN IMMEDIATE")
            ix.apply_log(conn, limit=1000)
            conn.execute("COMMIT")
    except sqlite3.IntegrityError:
        pass  # the same refusal happens on both


@settings(max_examples=15, deadline=None)
@given(ops=st.lists(OPS, min_size=1, max_size=25))
def test_generated_triggers_log_exactly_what_0002_logs(tmp_path_factory: pytest.TempPathFactory,
                                                      _migrated_template: Path,
                                                      ops: list[tuple[Any, ...]]) -> None:
    tmp = tmp_path_factory.mktemp("twins")
    db = tmp / "a.db"
    shutil.copy(_migrated_template, db)
    a, b = _twins(db, tmp)
    try:
        for op in [*ops, ("apply",)]:
            _run(a, op)
            _run(b, op)
            log_a = a.execute(f"SELECT kind, key, title, body FROM {ix.LOG} ORDER BY seq")
            log_b = b.execute(f"SELECT kind, key, title, body FROM {ix.LOG} ORDER BY seq")
            assert log_a.fetchall() == log_b.fetchall(), op
        docs = f"SELECT kind, key, conversation_id FROM {ix.DOCS} ORDER BY doc_id"  # at: now()
        assert a.execute(docs).fetchall() == b.execute(docs).fetchall()
    finally:
        a.close()
        b.close()


# -- times ----------------------------------------------------------------------------------------

INSTANT = datetime(2025, 7, 14, 16, 21, 53, 589793, tzinfo=UTC)
FORMS = [
    "2025-07-14T16:21:53.589793+00:00", "2025-07-14T16:21:53.589Z",
    "2025-07-14T16:21:53.589793123+00:00", "2025-07-14 16:21:53.589793123+00:00",
    "2025-07-14T21:51:53.589793+05:30", "2025-07-14T09:21:53.589793123-07:00",
    "2025-07-14 16:21:53.589", "2025-07-14T16:21:53Z", "2025-07-14 16:21:53",
]


@pytest.mark.parametrize("value", [*FORMS, int(INSTANT.timestamp()),
                                   INSTANT.timestamp(), int(INSTANT.timestamp() * 1000),
                                   str(int(INSTANT.timestamp())),
                                   str(int(INSTANT.timestamp() * 1000))])
def test_every_stored_form_is_the_same_instant(value: Any) -> None:
    conn = sqlite3.connect(":memory:")
    jd = conn.execute(f"SELECT {instant_sql(':v')}", {"v": value}).fetchone()[0]
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=jd - 2440587.5)
    precise = isinstance(value, str) and "." in value
    assert abs(when - INSTANT) < timedelta(milliseconds=1 if precise else 1000)


@pytest.mark.parametrize("value", [None, "", "not a time", b"\x00\x01"])
def test_what_is_no_time_is_null(value: Any) -> None:
    conn = sqlite3.connect(":memory:")
    assert conn.execute(f"SELECT {instant_sql(':v')}", {"v": value}).fetchone()[0] is None
