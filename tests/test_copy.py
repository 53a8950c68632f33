"""``hive-store copy``: a user's Hive history to PostgreSQL and back, resumed after kill -9,
verified, never into a database that holds data of its own."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import hive_store
from hive_store.cli import make_cli
from hive_store.copy import CopyError, copy_store, digest
from hive_store.entities import CORE_ENTITIES, Conversation, Message, User
from tests.conftest import legacy_fixture


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(make_cli(), list(args), catch_exceptions=False,
                                prog_name="hive-store")
    assert "Traceback" not in result.output
    return result


def adopted(name: str, tmp_path: Path) -> str:
    """A legacy fixture, copied and adopted (hive-store's first open)."""
    path = tmp_path / name
    shutil.copy(legacy_fixture(name), path)
    logging.disable(logging.WARNING)
    try:
        hive_store.open(f"sqlite://{path}").close()
    finally:
        logging.disable(logging.NOTSET)
    return f"sqlite://{path}"


def digests(url: str) -> dict[str, tuple[int, str]]:
    with hive_store.open(url, read_only=True) as store:
        return {cls.__table__: digest(store, cls) for cls in CORE_ENTITIES}  # type: ignore[attr-defined]


def test_a_hive_history_to_postgresql_and_back(tmp_path: Path, pg_url: str) -> None:
    source = adopted("hive-ai-v10.db", tmp_path)
    there = invoke("--json", "copy", source, pg_url)
    assert there.exit_code == 0, there.output
    report = json.loads(there.output)
    assert report["rows"] == sum(n for n, _ in digests(source).values()) > 1000
    assert all(t["verified"] for t in report["tables"])
    back = tmp_path / "back.db"
    again = invoke("copy", pg_url, f"sqlite://{back}")
    assert again.exit_code == 0, again.output
    assert "verified: yes" in again.output
    assert digests(source) == digests(pg_url) == digests(f"sqlite://{back}")
    with hive_store.open(source, read_only=True) as a, hive_store.open(f"sqlite://{back}",
                                                                       read_only=True) as b:
        for cls in (Conversation, Message, User):  # (rows come back in key order)
            assert a.repo(cls).find(order_by="id") == b.repo(cls).find(order_by="id")
    # the same copy again: everything is there already, nothing is written
    twice = json.loads(invoke("--json", "copy", source, pg_url).output)
    assert sum(t["added"] + t["updated"] for t in twice["tables"]) == 0


def test_rows_the_destination_refuses_stop_the_copy_or_are_listed(tmp_path: Path,
                                                                  pg_url: str) -> None:
    """The Electron app's file has rows whose parent is missing (kept by adoption)."""
    source = adopted("hive-ai-electron.db", tmp_path)
    stopped = invoke("copy", source, pg_url)
    assert stopped.exit_code == 1
    assert "cannot be copied" in stopped.output and "--skip-invalid" in stopped.output
    listed = invoke("--json", "copy", "--skip-invalid", source, pg_url)
    assert listed.exit_code == 0, listed.output
    report = json.loads(listed.output)
    left_out = {t["table"]: t["skipped"] for t in report["tables"] if t["skipped"]}
    reasons = {row["reason"] for rows in left_out.values() for row in rows}
    # rows whose parent is missing, and one message with a NUL (PostgreSQL text has none)
    assert reasons and all("FOREIGN KEY constraint failed" in r or "NUL character" in r
                           for r in reasons)
    assert {"key": "msg_nul", "reason": "invalid Message: content: text with a NUL character "
            "(\\x00) cannot be stored in PostgreSQL"} in left_out["messages"]
    source_rows = {t: n for t, (n, _) in digests(source).items()}
    copied = {t: n for t, (n, _) in digests(pg_url).items()}
    for table, n in source_rows.items():
        assert copied[table] == n - len(left_out.get(table, []))


def test_raw_values_that_postgresql_cannot_type_are_named(tmp_path: Path, pg_url: str) -> None:
    """A value the old apps stored that is not of its field's type (a RawValue) cannot go
    into PostgreSQL's typed columns; text in a text column (an unknown role) can."""
    import sqlite3

    path = tmp_path / "odd.db"
    with hive_store.open(f"sqlite://{path}") as src:
        src.conversations.add(Conversation(id="c"))
    raw = sqlite3.connect(path)
    with raw:
        raw.execute("INSERT INTO messages (id, conversation_id, role, content, timestamp) "
                    "VALUES ('m-never', 'c', 'user', 'a', 'never'), "
                    "('m-robot', 'c', 'robot', 'b', '2025-07-14 12:50:53')")
    raw.close()
    stopped = invoke("copy", f"sqlite://{path}", pg_url)
    assert stopped.exit_code == 1 and "m-never" in stopped.output
    assert "RawValue" in stopped.output
    listed = json.loads(invoke("--json", "copy", "--skip-invalid", f"sqlite://{path}",
                               pg_url).output)
    skipped = {t["table"]: [r["key"] for r in t["skipped"]] for t in listed["tables"]}
    assert skipped["messages"] == ["m-never"]
    with hive_store.open(pg_url) as dst:
        robot = dst.messages.get("m-robot")
        assert robot.role == hive_store.RawValue("robot")
        assert robot.timestamp.isoformat() == "2025-07-14T12:50:53+00:00"


def test_a_destination_with_data_of_its_own_is_refused(tmp_path: Path, pg_url: str) -> None:
    source = adopted("hive-ai-v9.db", tmp_path)
    with hive_store.open(pg_url) as dst:
        dst.users.add(User(id="someone-elses"))
        before = dst.backend.table_counts()
    refused = invoke("copy", source, pg_url)
    assert refused.exit_code == 1 and "holds rows of its own in users" in refused.output
    with hive_store.open(pg_url) as dst:
        assert dst.backend.table_counts() == before


def test_a_source_behind_the_code_is_refused(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "legacy.db"
    shutil.copy(legacy_fixture("hive-ai-v5.db"), path)  # not adopted yet
    refused = invoke("copy", f"sqlite://{path}", pg_url)
    assert refused.exit_code == 1 and "hive-store migrate --db SRC_URL" in refused.output
    assert legacy_fixture("hive-ai-v5.db").read_bytes() == path.read_bytes()  # untouched


def test_bad_batch_sizes(mem_store: hive_store.Store) -> None:
    with pytest.raises(hive_store.ConfigurationError):
        copy_store(mem_store, mem_store, batch_size=0)


@pytest.mark.parametrize("direction", ["to-postgresql", "to-sqlite"])
def test_a_copy_killed_with_sigkill_is_finished_by_running_it_again(
        tmp_path: Path, pg_url: str, direction: str) -> None:
    rows = 6000
    filled = pg_url if direction == "to-sqlite" else f"sqlite://{tmp_path / 'src.db'}"
    with hive_store.open(filled) as src:
        conv = src.conversations.add(Conversation())
        for start in range(0, rows, 2000):
            src.messages.add_many([Message(conversation_id=conv.id, role="user",
                                           content=f"row {i}") for i in range(start,
                                                                               start + 2000)])
    target = f"sqlite://{tmp_path / 'dst.db'}" if direction == "to-sqlite" else pg_url
    source = filled
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from hive_store.cli import main; main(sys.argv[1:])",
         "copy", "--batch-size", "50", source, target],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "HIVE_STORE_LOAD_PLUGINS": ""})
    try:
        seen = 0
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with hive_store.open(target, read_only=True) as dst:
                    seen = dst.messages.count()
            except hive_store.HiveStoreError:
                seen = 0  # not created or migrated yet
            if seen > 0:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the copy ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    with hive_store.open(target, read_only=True) as dst:
        partial = dst.messages.count()
    assert 0 < partial < rows and partial % 50 == 0  # whole batches only
    finished = invoke("--json", "copy", "--batch-size", "50", source, target)
    assert finished.exit_code == 0, finished.output
    messages = next(t for t in json.loads(finished.output)["tables"]
                    if t["table"] == "messages")
    assert messages["present"] >= partial and messages["added"] == rows - messages["present"]
    assert messages["verified"]
    assert digests(source)["messages"] == digests(target)["messages"]


def test_copy_store_raises_copy_error_on_refused_rows(pg_url: str,
                                                      mem_store: hive_store.Store) -> None:
    mem_store.messages.add(Message(conversation_id=mem_store.conversations.add(
        Conversation()).id, role="user", content="NUL \x00 here"))
    with hive_store.open(pg_url) as dst, pytest.raises(CopyError, match="NUL"):
        copy_store(mem_store, dst)
