"""The memory's time windows on an adopted legacy database: every stored form of a time (the
Electron app's RFC 3339 with Z, offsets and 0-9 fraction digits, rusqlite's ``YYYY-MM-DD
HH:MM:SS.fffffffff+00:00``, SQLite's ``YYYY-MM-DD HH:MM:SS``, epoch numbers) is compared as
the instant it means."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hive_store_memory import index as ix

import hive_store
from tests.conftest import legacy_fixture

_FORM = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
                   r"(Z|[+-]\d{2}:\d{2})?$")


def instant(value: Any) -> datetime:
    """What a stored time means, parsed independently of SQLite."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.isdigit()):
        number = float(value)
        return datetime.fromtimestamp(number / 1000 if number >= 1e11 else number, UTC)
    match = _FORM.match(value)
    assert match, value
    day, h, m, s, frac, zone = match.groups()
    when = datetime.fromisoformat(f"{day}T{h}:{m}:{s}").replace(tzinfo=UTC)
    when += timedelta(microseconds=int((frac or "0")[:6].ljust(6, "0")))
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        when -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return when


def julian(value: float) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=value - 2440587.5)


@pytest.fixture
def adopted(tmp_path: Path) -> Any:
    path = tmp_path / "hive-ai-electron.db"
    shutil.copy(legacy_fixture("hive-ai-electron.db"), path)
    with hive_store.open(f"sqlite://{path}") as store:
        assert store.memory.wait_idle(timeout=120)
        yield store


def test_documents_hold_the_instant_of_every_legacy_form(adopted: hive_store.Store) -> None:
    with adopted.backend.connection() as conn:
        conn.execute("UPDATE knowledge_conversations SET created_at = ? WHERE rowid = 1",
                     (1752540000,))  # epoch seconds, as a number
        conn.execute("UPDATE knowledge_conversations SET created_at = ? WHERE rowid = 2",
                     (1752540000123,))  # epoch milliseconds
        conn.execute("UPDATE knowledge_conversations SET created_at = '1752541000' "
                     "WHERE rowid = 3")  # epoch seconds as text
    adopted.memory.flush()
    with adopted.backend.connection() as conn:
        stored = dict(conn.execute("SELECT id, created_at FROM knowledge_conversations"))
        docs = dict(conn.execute(f"SELECT key, at FROM {ix.DOCS} WHERE kind = ?",
                                 (ix.KNOWLEDGE,)))
        truths = conn.execute(f"SELECT t.created_at, d.at FROM curator_truths AS t JOIN "
                              f"{ix.DOCS} AS d ON d.kind = 'curator_truths' AND d.key = t.id"
                              ).fetchall()
        messages = conn.execute(f"SELECT t.timestamp, d.at FROM messages AS t JOIN {ix.DOCS} "
                                "AS d ON d.kind = 'messages' AND d.key = t.id").fetchall()
    assert len(stored) == len(docs) > 10
    forms = {re.sub(r"\d", "9", str(v)) for v in stored.values()}
    assert len(forms) >= 6  # the fixture really mixes the forms
    pairs = [(stored[k], docs[k]) for k in stored] + truths + messages
    for value, at in pairs:
        if value is None:
            continue
        assert abs(julian(at) - instant(value)) < timedelta(milliseconds=1), value


def test_the_time_windows_follow_the_instants(adopted: hive_store.Store) -> None:
    with adopted.backend.connection() as conn:
        stored = {k: instant(v) for k, v, cid in conn.execute(
            "SELECT id, created_at, conversation_id FROM knowledge_conversations")}
        times = sorted(set(stored.values()))
        pivots = [times[len(times) // 4], times[len(times) // 2], times[-1]]
        for pivot in [p + timedelta(minutes=1) for p in pivots] + [
                p + timedelta(hours=13) for p in pivots]:
            for hours in (24, 72):
                got = adopted.memory.contexts._window(conn, pivot, hours, None)
                expected = sorted((k for k, t in stored.items()
                                   if pivot - timedelta(hours=hours) <= t <= pivot),
                                  key=lambda k: stored[k], reverse=True)
                assert [k for k, _, _ in got] == expected[:len(got)]
                assert len(got) == min(len(expected), 60)
