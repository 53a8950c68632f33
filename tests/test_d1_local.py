"""The D1 mirror against a real local D1 (Miniflare's workerd behind ``d1/serve.mjs``): push,
pull, verify and faults over real HTTP, the command line configured through the environment,
a pushing process killed with SIGKILL, and the server's process hygiene."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hive_store_d1
import pytest
from click.testing import CliRunner
from hive_store_d1 import Mirror
from hive_store_d1.mirror import OUTBOX

import hive_store
from hive_store.cli import make_cli
from hive_store.entities import Conversation, Message, Setting
from hive_store.plugins import Plugins
from hive_store.store import StageOutput
from tests import d1_server
from tests.d1_server import LocalD1, local_d1

__all__ = ["local_d1"]  # the fixture

STAGES = [StageOutput(stage=s, model="m/x", answer=f"{s} answer")
          for s in ("generator", "refiner", "validator", "curator")]
POISON = ("CREATE TRIGGER test_poison BEFORE INSERT ON messages WHEN NEW.content LIKE "
          "'POISON%' BEGIN SELECT RAISE(ABORT, 'poison row refused'); END")


@pytest.fixture
def device(tmp_path: Path, _migrated_template: Path, local_d1: LocalD1
           ) -> Iterator[Callable[..., tuple[hive_store.Store, Mirror]]]:
    stores: list[hive_store.Store] = []

    def make(name: str = "a", **kw: Any) -> tuple[hive_store.Store, Mirror]:
        path = tmp_path / f"{name}.db"
        if not path.exists():
            shutil.copy(_migrated_template, path)
        store = hive_store.open(f"sqlite://{path}")
        stores.append(store)
        memory = store.__dict__.get("memory")
        if memory is not None:
            memory.auto_assign = False
        sleep = kw.pop("sleep", lambda s: None)
        kw.setdefault("timeout", 2.0)
        mirror = hive_store_d1.enable(store, d1_server.d1_config(local_d1.api_url, **kw),
                                      sleep=sleep)
        return store, mirror

    yield make
    for s in stores:
        s.close()


def outbox_rows(store: hive_store.Store) -> int:
    with store.backend.connection() as conn:
        return int(conn.execute(f"SELECT count(*) FROM {OUTBOX}").fetchone()[0])


def test_push_pull_verify_through_every_fault(device: Any, local_d1: LocalD1) -> None:
    slept: list[float] = []
    a, ma = device("a", pull=True, rows_per_request=25, sleep=slept.append)
    b, mb = device("b", pull=True)
    for i in range(10):
        a.record_consensus(f"question {i}", STAGES)
    local_d1.fail({"kind": "status", "status": 429, "retry_after": 2},
                  {"kind": "status", "status": 503},
                  {"kind": "drop", "when": "before"},
                  {"kind": "drop", "when": "after"},
                  {"kind": "delay", "ms": 2600, "when": "after"},
                  {"kind": "status", "status": 500,
                   "message": "Network connection lost."})
    report = ma.push()
    assert report.dead_lettered == [] and outbox_rows(a) == 0
    assert ma.client.stats.failures == {"429": 1, "5xx": 2, "network": 2, "timeout": 1}
    assert slept[0] >= 2  # Retry-After honoured
    assert local_d1.stats()["faults"] == 6
    mb.push()
    pulled = mb.pull()
    assert pulled.applied >= 10 * 11 and pulled.dead_lettered == []
    assert ma.verify().ok and mb.verify().ok
    assert len(b.messages.find()) == len(a.messages.find()) == 50


def test_dead_letters_and_conflicts_on_real_d1(device: Any, local_d1: LocalD1) -> None:
    a, ma = device("a", pull=True, device_id="aaaa")
    b, mb = device("b", pull=True, device_id="bbbb")
    ma.push()
    mb.push()
    local_d1.query(POISON)
    conv = a.conversations.add(Conversation())
    a.messages.add_many([Message(id=f"m{i:03d}", conversation_id=conv.id, role="user",
                                 content="fine") for i in range(60)]
                        + [Message(id="poison", conversation_id=conv.id, role="user",
                                   content="POISON")])
    report = ma.push()
    assert [(d.pk, d.status, d.code) for d in report.dead_lettered] == [("poison", 400, 7500)]
    assert "poison row refused" in report.dead_lettered[0].error
    verify = ma.verify(tables=["messages"])
    assert verify.tables[0].missing_remote == ["poison"]
    # the same key written on both devices: the later clock wins on both
    a.settings.upsert(Setting(key="k", value="a"))
    time.sleep(0.01)
    b.settings.upsert(Setting(key="k", value="b"))
    ma.push()
    mb.push()
    ma.pull()
    mb.pull()
    assert a.settings.get("k").value == b.settings.get("k").value == "b"
    # deletes travel too
    b.settings.delete("k")
    mb.push()
    assert ma.pull().deleted == 1 and a.settings.find(key="k") == []
    local_d1.query("DROP TRIGGER test_poison")
    ma.retry_dead_letters()
    mb.pull()
    assert ma.dead_letters() == [] and ma.verify().ok and mb.verify().ok


def test_big_values_and_big_integers_on_real_d1(device: Any, local_d1: LocalD1) -> None:
    a, ma = device("a", pull=True)
    b, mb = device("b", pull=True)
    conv = a.conversations.add(Conversation(input_tokens=2**62 + 7))
    a.messages.add(Message(id="long", conversation_id=conv.id, role="assistant",
                           content="é" * 150_000))  # bound, so past the 100 KB SQL limit
    assert ma.push().dead_lettered == []
    assert local_d1.rows("SELECT CAST(input_tokens AS TEXT) FROM conversations WHERE id = ?",
                         [conv.id]) == [[str(2**62 + 7)]]
    mb.pull()
    assert b.conversations.get(conv.id).input_tokens == 2**62 + 7
    assert b.messages.get("long").content == "é" * 150_000
    assert ma.verify().ok and mb.verify().ok


@pytest.mark.slow
def test_random_writes_and_faults_converge_on_real_d1(device: Any, local_d1: LocalD1) -> None:
    """The property test's loop, shorter, over real HTTP against workerd's D1."""
    rnd = random.Random(5)
    a, ma = device("a", pull=True, rows_per_request=20, max_attempts=6)
    b, mb = device("b", pull=True, rows_per_request=20, max_attempts=6)
    ma.push()
    local_d1.query(POISON)
    kinds = [{"kind": "status", "status": 429, "retry_after": 0},
             {"kind": "status", "status": 502}, {"kind": "status", "status": 503},
             {"kind": "drop", "when": "before"}, {"kind": "drop", "when": "after"},
             {"kind": "status", "status": 400, "message": "Network connection lost."}]
    injected = 0
    poison: set[str] = set()
    for step in range(40):
        store = a if rnd.random() < 0.6 else b
        with store.transaction():
            cid = f"c{store is a}{step:03d}"
            store.conversations.add(Conversation(id=cid))
            for i in range(rnd.randint(1, 8)):
                bad = store is a and rnd.random() < 0.05
                store.messages.add(Message(id=f"{cid}-{i}", conversation_id=cid, role="user",
                                           content="POISON" if bad else f"m{i}"))
                if bad:
                    poison.add(f"{cid}-{i}")
        store.settings.upsert(Setting(key=rnd.choice("xyz"), value=str(step)))
        faults = [rnd.choice(kinds) for _ in range(rnd.randint(0, 3))]
        injected += len(faults)
        local_d1.fail(*faults)
        for mirror in (ma, mb):
            with contextlib.suppress(hive_store_d1.D1Unavailable):
                mirror.pull() if rnd.random() < 0.3 else mirror.push()
    local_d1.fail(clear=True)
    for _ in range(2):
        for mirror in (ma, mb):
            mirror.push()
        for mirror in (ma, mb):
            mirror.pull()
    assert injected >= 30
    assert outbox_rows(a) == outbox_rows(b) == 0
    assert {r["pk"] for r in ma.dead_letters()} == poison and mb.dead_letters() == []
    assert mb.verify().ok
    report = ma.verify()
    assert all(set(t.missing_remote) <= poison and not t.different and not t.missing_local
               for t in report.tables)


# -- the command line, configured through the environment ---------------------------------------


@pytest.fixture
def d1_env(monkeypatch: pytest.MonkeyPatch, local_d1: LocalD1, tmp_path: Path) -> Path:
    token = tmp_path / "token"
    token.write_text(d1_server.TOKEN + "\n")
    monkeypatch.setenv("HIVE_STORE_D1_ACCOUNT_ID", d1_server.ACCOUNT)
    monkeypatch.setenv("HIVE_STORE_D1_DATABASE_ID", d1_server.DATABASE)
    monkeypatch.setenv("HIVE_STORE_D1_TOKEN_FILE", str(token))
    monkeypatch.setenv("HIVE_STORE_D1_URL", local_d1.api_url)
    monkeypatch.setenv("HIVE_STORE_D1_PULL", "1")
    monkeypatch.setenv("HIVE_STORE_D1_BACKOFF_BASE", "0.01")
    monkeypatch.setenv("HIVE_STORE_MEMORY_AUTO_ASSIGN", "0")
    return tmp_path / "cli.db"


def test_cli_status_push_verify_dead_letter_pull(d1_env: Path, local_d1: LocalD1) -> None:
    runner = CliRunner()
    cli = make_cli(Plugins().ensure_loaded())
    db = ["--db", str(d1_env)]

    def run(*args: str, code: int = 0) -> Any:
        result = runner.invoke(cli, [*db, "--json", "d1", *args])
        assert result.exit_code == code, result.output
        assert d1_server.TOKEN not in result.output
        return json.loads(result.output)

    with hive_store.open(str(d1_env)) as store:
        for i in range(3):
            store.record_consensus(f"q{i}", STAGES)
    status = run("status")
    assert status["configured"] and status["backfill"] == "not yet (first push)"
    pushed = run("push")
    assert pushed["backfilled"] > 30 and pushed["dead_lettered"] == []
    assert run("verify")["ok"] is True
    local_d1.query(POISON)
    with hive_store.open(str(d1_env)) as store:
        conv = store.conversations.find()[0]
        store.messages.add(Message(id="p1", conversation_id=conv.id, role="user",
                                   content="POISON"))
    pushed = run("push")
    assert [d["pk"] for d in pushed["dead_lettered"]] == ["p1"]
    verify = run("verify", code=1)
    messages = next(t for t in verify["tables"] if t["table"] == "messages")
    assert messages["missing_remote"] == ["p1"] and messages["explained"] == ["p1"]
    letters = run("dead-letter")["dead_letters"]
    assert [(r["pk"], r["direction"]) for r in letters] == [("p1", "push")]
    local_d1.query("DROP TRIGGER test_poison")
    retried = run("dead-letter", "--retry")
    assert retried["retried"]["push"]["upserts"] == 1 and retried["dead_letters"] == []
    assert run("pull")["applied"] == 0
    human = runner.invoke(cli, [*db, "d1", "status"])
    assert human.exit_code == 0 and "outbox: 0 rows waiting" in human.output
    human = runner.invoke(cli, [*db, "d1", "verify"])
    assert human.exit_code == 0 and "the same" in human.output
    push_all = runner.invoke(cli, [*db, "d1", "push", "--all"])
    assert push_all.exit_code == 0 and "backfilled" in push_all.output


def test_cli_error_is_one_line_when_d1_is_unreachable(d1_env: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_STORE_D1_URL", "http://127.0.0.1:9/client/v4")
    monkeypatch.setenv("HIVE_STORE_D1_MAX_ATTEMPTS", "2")
    runner = CliRunner()
    result = runner.invoke(make_cli(Plugins().ensure_loaded()), ["--db", str(d1_env), "d1",
                                                                 "push"])
    assert result.exit_code == 1
    assert "D1 did not answer after 2 attempts" in result.output and "nothing was lost" in \
        result.output
    assert "Traceback" not in result.output and d1_server.TOKEN not in result.output


@pytest.mark.slow
def test_a_push_killed_with_sigkill_resumes(d1_env: Path, local_d1: LocalD1) -> None:
    with hive_store.open(str(d1_env)) as store:
        conv = store.conversations.add(Conversation())
        store.messages.add_many(Message(conversation_id=conv.id, role="user", content=f"{i}")
                                for i in range(1500))
    # every answer comes late, after D1 committed: the kill lands between commit and ack
    local_d1.fail(*[{"kind": "delay", "ms": 150, "when": "after"}] * 60)
    env = {**os.environ, "HIVE_STORE_D1_ROWS_PER_REQUEST": "40", "HIVE_STORE_DB": str(d1_env)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from hive_store.cli import main; main()", "d1", "push"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.1)
        done = local_d1.rows("SELECT count(*) FROM sqlite_master WHERE name = 'messages'")
        if done[0][0] and local_d1.rows("SELECT count(*) FROM messages")[0][0] >= 200:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    remote = local_d1.rows("SELECT count(*) FROM messages")[0][0]
    assert 0 < remote < 1500
    local_d1.fail(clear=True)
    with hive_store.open(str(d1_env)) as store:
        mirror = hive_store_d1.mirror_of(store)
        assert mirror.status()["backfill"] == "in progress"
        mirror.push()
        report = mirror.verify()
        assert report.ok, [t for t in report.tables if not t.ok]
    assert local_d1.rows("SELECT count(*), count(DISTINCT id) FROM messages") == [[1500, 1500]]


# -- process hygiene ------------------------------------------------------------------------------


def test_the_server_runs_in_its_own_group_and_stops_with_it() -> None:
    reason = d1_server.unavailable_reason()
    if reason is not None:
        (pytest.skip if reason[0] == "skip" else pytest.fail)(reason[1])
    server = d1_server.start()
    pgid = os.getpgid(server.proc.pid)
    assert pgid != os.getpgid(0) and pgid == server.proc.pid
    members = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True
                             ).stdout.split()
    assert len(members) >= 2  # node and workerd
    assert server.url.startswith("http://127.0.0.1:")
    os.kill(server.proc.pid, signal.SIGKILL)  # node alone: workerd would stay behind...
    server.proc.wait(timeout=10)
    assert d1_server.group_alive(pgid)
    server.stop()  # ...so the group is signalled
    assert not d1_server.group_alive(pgid)


def test_the_server_stops_when_its_parent_goes_away() -> None:
    reason = d1_server.unavailable_reason()
    if reason is not None:
        (pytest.skip if reason[0] == "skip" else pytest.fail)(reason[1])
    server = d1_server.start()
    pgid = os.getpgid(server.proc.pid)
    assert server.proc.stdin is not None
    server.proc.stdin.close()  # what happens when the test process dies
    try:
        server.proc.wait(timeout=20)
        deadline = time.monotonic() + 10
        while d1_server.group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not d1_server.group_alive(pgid)
    finally:
        server.stop()
