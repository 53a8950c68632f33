"""The D1 mirror against the in-process fake D1: capture, push, dead letters, retries, pull,
conflicts, verify, resume."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hive_store_d1
import httpx
import pytest
from hive_store_d1 import D1Config, Mirror
from hive_store_d1.fake import FakeD1, Fault, SimulatedCrash
from hive_store_d1.mirror import CLOCK, OUTBOX

import hive_store
from hive_store.entities import Conversation, Message, Setting, User
from hive_store.store import StageOutput
from tests import d1_server

STAGES = [StageOutput(stage=s, model="m/x", answer=f"{s} answer")
          for s in ("generator", "refiner", "validator", "curator")]


class Sleeps(list[float]):
    """Records the waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class Spy(httpx.BaseTransport):
    """Wraps a transport and keeps every request body."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.bodies: list[dict[str, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        return self.inner.handle_request(request)


@pytest.fixture
def fake() -> FakeD1:
    fake: FakeD1 = d1_server.new_fake()
    return fake


@pytest.fixture
def open_device(tmp_path: Path, _migrated_template: Path
                ) -> Iterator[Callable[..., tuple[hive_store.Store, Mirror]]]:
    """Open a store (a copy of the migrated template) and mirror it to a fake D1."""
    stores: list[hive_store.Store] = []

    def make(fake: FakeD1, name: str = "a", *, enable: bool = True,
             transport: httpx.BaseTransport | None = None, **kw: Any
             ) -> tuple[hive_store.Store, Mirror]:
        path = tmp_path / f"{name}.db"
        if not path.exists():
            shutil.copy(_migrated_template, path)
        store = hive_store.open(f"sqlite://{path}")
        stores.append(store)
        memory = store.__dict__.get("memory")
        if memory is not None:
            memory.auto_assign = False  # its tags bypass the repositories (see the report)
        options: dict[str, Any] = {"transport": transport or fake.transport,
                                   "sleep": kw.pop("sleep", Sleeps())}
        for name_ in ("wall_ms",):
            if name_ in kw:
                options[name_] = kw.pop(name_)
        mirror = hive_store_d1.enable(store, d1_server.d1_config(fake.url(), **kw), **options) \
            if enable else None
        return store, mirror  # type: ignore[return-value]

    yield make
    for s in stores:
        s.close()


def local_rows(store: hive_store.Store, table: str) -> dict[Any, tuple[Any, ...]]:
    codec = store.codec(store.entities[table])
    cols = ", ".join(f'"{c}"' for c in codec.columns)
    with store.backend.connection() as conn:
        return {r[codec.columns.index(codec.pk)]: tuple(r)
                for r in conn.execute(f'SELECT {cols} FROM "{table}"')}


def remote_rows(fake: FakeD1, store: hive_store.Store, table: str) -> dict[Any, tuple[Any, ...]]:
    codec = store.codec(store.entities[table])
    cols = ", ".join(f'"{c}"' for c in codec.columns)
    return {r[codec.columns.index(codec.pk)]: tuple(r)
            for r in fake.rows(f'SELECT {cols} FROM "{table}"')}


def outbox(store: hive_store.Store) -> list[tuple[Any, ...]]:
    with store.backend.connection() as conn:
        return conn.execute(f"SELECT tbl, pk, hlc FROM {OUTBOX} ORDER BY seq").fetchall()


def conversation_with_messages(store: hive_store.Store, n: int = 3,
                               content: str = "hello") -> Conversation:
    with store.transaction():
        conv = store.conversations.add(Conversation())
        store.messages.add_many(Message(conversation_id=conv.id, role="user",
                                        content=f"{content} {i}") for i in range(n))
    return conv


# -- off unless configured --------------------------------------------------------------------


def test_without_configuration_nothing_is_captured(open_device: Any, fake: FakeD1,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ACCOUNT_ID", "DATABASE_ID", "TOKEN", "TOKEN_FILE", "CONFIG"):
        monkeypatch.delenv(f"HIVE_STORE_D1_{var}", raising=False)
    store, _ = open_device(fake, enable=False)
    conversation_with_messages(store)
    assert outbox(store) == []
    with pytest.raises(hive_store.ConfigurationError, match="not configured"):
        hive_store_d1.mirror_of(store)
    check = [h for h in store.health() if h.name == "d1_mirror"]
    assert check and check[0].status == "ok" and "not configured" in check[0].message
    assert fake.requests == 0


# -- capture ----------------------------------------------------------------------------------


def test_capture_is_in_the_write_transaction(open_device: Any, fake: FakeD1) -> None:
    store, _ = open_device(fake)
    with pytest.raises(RuntimeError), store.transaction():
        store.conversations.add(Conversation(id="rolled-back"))
        raise RuntimeError("no")
    assert outbox(store) == []
    with store.transaction():
        store.conversations.add(Conversation(id="kept"))
        with pytest.raises(RuntimeError), store.transaction():  # a savepoint rolled back
            store.conversations.add(Conversation(id="inner"))
            raise RuntimeError("inner")
        store.messages.add(Message(id="m1", conversation_id="kept", role="user", content="x"))
    entries = outbox(store)
    assert [(t, k) for t, k, _ in entries] == [("conversations", "kept"), ("messages", "m1")]
    assert len({h for _, _, h in entries}) == 1  # one clock per transaction
    store.settings.upsert(Setting(key="k", value="v"))
    with store.backend.connection() as conn:
        clocks = dict(conn.execute(f"SELECT pk, hlc FROM {CLOCK}").fetchall())
    assert set(clocks) == {"kept", "m1", "k"} and clocks["k"] > clocks["kept"]


def test_configurations_and_licenses_are_not_mirrored_by_default(open_device: Any,
                                                                  fake: FakeD1) -> None:
    store, mirror = open_device(fake)
    assert "configurations" not in mirror.by_name and "licenses" not in mirror.by_name
    assert {"conversations", "messages", "users"} <= set(mirror.by_name)
    from hive_store.entities import Configuration

    store.configurations.add(Configuration(key="openrouter_api_key", value="sk-secret"))
    assert outbox(store) == []
    mirror.push()
    assert "sk-secret" not in json.dumps(fake.rows(
        "SELECT name FROM sqlite_master WHERE type = 'table'"))
    assert not fake.rows("SELECT name FROM sqlite_master WHERE name = 'configurations'")


# -- push ---------------------------------------------------------------------------------------


def test_first_push_backfills_then_verify_is_clean(open_device: Any, fake: FakeD1) -> None:
    store, _ = open_device(fake, enable=False)
    for i in range(5):
        store.record_consensus(f"question {i}", STAGES)
    mirror = hive_store_d1.enable(store, d1_server.d1_config(fake.url()),
                                  transport=fake.transport)
    assert outbox(store) == []  # written before mirroring was on
    report = mirror.push()
    assert report.backfilled > 5 * 7 and report.dead_lettered == []
    for table in ("conversations", "messages", "openrouter_models", "consensus_profiles"):
        assert remote_rows(fake, store, table) == local_rows(store, table)
    assert mirror.verify().ok
    meta = dict(fake.rows("SELECT key, value FROM _hive_meta"))
    assert meta["layout_version"] == "1" and "table:messages" in meta
    assert mirror.status()["backfill"] == "done"
    assert mirror.push().rows == 0  # nothing new


def test_repeated_changes_to_a_row_coalesce(open_device: Any, fake: FakeD1) -> None:
    store, mirror = open_device(fake)
    mirror.push()
    store.settings.add(Setting(key="theme", value="v0"))
    for i in range(1, 40):
        store.settings.update("theme", value=f"v{i}")
    assert len(outbox(store)) == 40
    report = mirror.push()
    assert (report.upserts, report.deletes) == (1, 0)
    assert fake.rows("SELECT value FROM settings WHERE key = 'theme'") == [("v39",)]
    assert outbox(store) == []


def test_requests_and_statements_stay_within_d1_limits(open_device: Any, fake: FakeD1) -> None:
    spy = Spy(fake.transport)
    store, mirror = open_device(fake, transport=spy, rows_per_request=250,
                                statements_per_request=40, bytes_per_request=60_000)
    for i in range(30):
        conversation_with_messages(store, n=20, content=f"m{i} " + "x" * 100)
    report = mirror.push()
    assert report.dead_lettered == []
    for body in spy.bodies:
        batch = body.get("batch", [body])
        assert len(batch) <= 40
        if batch[0]["sql"].startswith("PRAGMA defer_foreign_keys"):
            rows = sum(len(s.get("params", [])) for s in batch)
            assert rows > 0
        for stmt in batch:
            assert len(stmt.get("params", [])) <= 100
            assert len(stmt["sql"].encode()) <= 100_000
        assert len(json.dumps(body)) <= 60_000 + 2_000
    upserts = [b for b in spy.bodies if "batch" in b and "_hive_tombstones tb" in json.dumps(b)]
    assert upserts and all(len(b["batch"]) >= 2 for b in upserts)
    assert mirror.verify().ok


def test_wide_tables_use_fewer_rows_per_statement(open_device: Any, fake: FakeD1) -> None:
    from hive_store_d1 import schema

    _, mirror = open_device(fake)
    wide = mirror.by_name["pipeline_profiles"]  # 26 columns + clock = 27 parameters a row
    assert schema.upsert_rows_per_statement(wide) == 3
    assert schema.upsert_rows_per_statement(mirror.by_name["messages"]) == 12


def test_a_replayed_push_changes_nothing(open_device: Any, fake: FakeD1) -> None:
    store, mirror = open_device(fake)
    conversation_with_messages(store, n=5)
    captured = outbox(store)
    mirror.push()
    before = fake.rows("SELECT count(*) FROM _hive_changes")
    snapshot = remote_rows(fake, store, "messages")
    with store.backend.transaction() as conn:  # the same entries again, as after a crash
        conn.executemany(f"INSERT INTO {OUTBOX} (tbl, pk, hlc) VALUES (?, ?, ?)", captured)
    report = mirror.push()
    assert report.upserts == len({(t, k) for t, k, _ in captured})
    assert fake.rows("SELECT count(*) FROM _hive_changes") == before  # no row rewritten
    assert remote_rows(fake, store, "messages") == snapshot


def test_killed_between_commit_and_ack_then_resumed(open_device: Any, fake: FakeD1) -> None:
    store, mirror = open_device(fake)
    mirror.push()
    conversation_with_messages(store, n=4)
    fake.inject(Fault("crash"))
    with pytest.raises(SimulatedCrash):
        mirror.push()
    assert len(outbox(store)) == 5  # D1 has the rows, the ack never happened
    assert len(remote_rows(fake, store, "messages")) == 4
    log = fake.rows("SELECT count(*) FROM _hive_changes")
    # a new process: a new mirror on the same database
    store2 = hive_store.open(str(store.url))
    try:
        mirror2 = hive_store_d1.enable(store2, d1_server.d1_config(fake.url()),
                                       transport=fake.transport)
        assert mirror2.device_id == mirror.device_id
        report = mirror2.push()
        assert report.upserts == 5 and outbox(store2) == []
        assert fake.rows("SELECT count(*) FROM _hive_changes") == log  # no duplicate writes
        assert mirror2.verify().ok
    finally:
        store2.close()


def test_parents_go_before_children_across_requests(open_device: Any, fake: FakeD1) -> None:
    store, mirror = open_device(fake, rows_per_request=3)
    mirror.push()
    with store.transaction():  # children first in the outbox's order
        store.conversations.add(Conversation(id="c1"))
        store.messages.add_many(Message(id=f"m{i}", conversation_id="c1", role="user",
                                        content="x") for i in range(7))
    store.users.add(User(id="u1", email="u1@example.org"))
    store.conversations.update("c1", user_id="u1")
    report = mirror.push()
    assert report.dead_lettered == [] and report.requests >= 3
    assert mirror.verify().ok


def test_deletes_become_tombstones_and_stale_writes_do_not_resurrect(open_device: Any,
                                                                      fake: FakeD1) -> None:
    store, mirror = open_device(fake)
    conv = conversation_with_messages(store, n=2)
    mirror.push()
    old = outbox(store)  # empty now; keep the pushed clocks of the messages
    assert old == []
    with store.backend.connection() as conn:
        pushed = conn.execute(f"SELECT tbl, pk, hlc FROM {CLOCK} WHERE tbl = 'messages'"
                              ).fetchall()
    with store.transaction():
        for m in store.messages.find(conversation_id=conv.id):
            store.messages.delete(m.id)
        store.conversations.delete(conv.id)
    report = mirror.push()
    assert report.deletes == 3 and report.dead_lettered == []
    assert remote_rows(fake, store, "messages") == {}
    assert len(fake.rows("SELECT * FROM _hive_tombstones")) == 3
    # an old version arriving late (a replay of the first push) does not bring them back
    with store.backend.transaction() as conn:
        conn.executemany(f"INSERT INTO {OUTBOX} (tbl, pk, hlc) VALUES (?, ?, ?)", pushed)
        conn.executemany(f"UPDATE {CLOCK} SET hlc = ? WHERE tbl = ? AND pk = ?",
                         [(h, t, k) for t, k, h in pushed])
    mirror.push()
    assert remote_rows(fake, store, "messages") == {}


def test_a_backfill_never_replaces_a_row_d1_already_has(open_device: Any,
                                                        fake: FakeD1) -> None:
    a, _ = open_device(fake, "a", enable=False)
    b, _ = open_device(fake, "b", enable=False)
    a.settings.add(Setting(key="shared", value="from a"))  # before mirroring: base clocks
    b.settings.add(Setting(key="shared", value="from b"))
    ma = hive_store_d1.enable(a, d1_server.d1_config(fake.url(), device_id="zzzz", pull=True),
                              transport=fake.transport)
    mb = hive_store_d1.enable(b, d1_server.d1_config(fake.url(), device_id="aaaa", pull=True),
                              transport=fake.transport)
    mb.push()
    ma.push()  # a larger device id, but a backfill only inserts
    assert fake.rows("SELECT value FROM settings WHERE key = 'shared'") == [("from b",)]
    ma.pull()
    assert a.settings.get("shared").value == "from b"
    a.settings.update("shared", value="edited on a")  # a real write wins everywhere
    ma.push()
    mb.pull()
    assert b.settings.get("shared").value == "edited on a"
    assert ma.verify().ok and mb.verify().ok


def test_big_integers_survive_the_round_trip(open_device: Any, fake: FakeD1) -> None:
    store, mirror = open_device(fake, pull=True)
    conv = store.conversations.add(Conversation(input_tokens=2**60 + 1, output_tokens=-(2**55)))
    mirror.push()
    assert fake.rows("SELECT CAST(input_tokens AS TEXT), CAST(output_tokens AS TEXT) FROM "
                     "conversations WHERE id = ?", [conv.id]) == [
        (str(2**60 + 1), str(-(2**55)))]
    assert mirror.verify().ok
    other, mirror_b = open_device(fake, "b", pull=True)
    mirror_b.pull()
    got = other.conversations.get(conv.id)
    assert (got.input_tokens, got.output_tokens) == (2**60 + 1, -(2**55))


# -- dead letters ---------------------------------------------------------------------------


POISON_TRIGGER = ("CREATE TRIGGER test_poison BEFORE INSERT ON messages WHEN NEW.content "
                  "LIKE 'POISON%' BEGIN SELECT RAISE(ABORT, 'poison row refused'); END")


def test_a_refused_row_is_dead_lettered_and_does_not_block(open_device: Any,
                                                            fake: FakeD1) -> None:
    store, mirror = open_device(fake, rows_per_request=40)
    mirror.push()
    fake.execute(POISON_TRIGGER)
    conv = store.conversations.add(Conversation())
    store.messages.add_many([Message(id=f"ok{i:03d}", conversation_id=conv.id, role="user",
                                     content="fine") for i in range(100)]
                            + [Message(id="bad", conversation_id=conv.id, role="user",
                                       content="POISON pill")])
    report = mirror.push()
    assert [(d.table, d.pk, d.op) for d in report.dead_lettered] == [("messages", "bad",
                                                                      "upsert")]
    assert "poison row refused" in report.dead_lettered[0].error
    assert outbox(store) == []  # nothing waits behind it
    assert len(remote_rows(fake, store, "messages")) == 100
    letters = mirror.dead_letters()
    assert [(r["table"], r["pk"], r["direction"], r["status"], r["code"]) for r in letters] == [
        ("messages", "bad", "push", 400, 7500)]
    verify = mirror.verify(tables=["messages"])
    assert verify.tables[0].missing_remote == ["bad"] and verify.tables[0].explained == ["bad"]
    health = next(h for h in store.health() if h.name == "d1_mirror")
    assert health.status == "warn" and "dead-letter" in health.message
    # fixed remotely: the retry pushes it and empties the table
    fake.execute("DROP TRIGGER test_poison")
    pushed, _ = mirror.retry_dead_letters()
    assert pushed.upserts == 1 and mirror.dead_letters() == []
    assert mirror.verify().ok


def test_a_row_refused_again_returns_to_the_dead_letters(open_device: Any,
                                                          fake: FakeD1) -> None:
    store, mirror = open_device(fake)
    mirror.push()
    fake.execute(POISON_TRIGGER)
    conv = store.conversations.add(Conversation())
    store.messages.add(Message(id="bad", conversation_id=conv.id, role="user", content="POISON"))
    mirror.push()
    mirror.retry_dead_letters()
    assert [(r["pk"], r["attempts"]) for r in mirror.dead_letters()] == [("bad", 2)]
    # fixed locally: the new version goes through and the letter goes away
    store.messages.update("bad", content="fine now")
    assert mirror.push().dead_lettered == []
    assert mirror.dead_letters() == []


def test_unique_conflict_between_devices_is_dead_lettered(open_device: Any,
                                                           fake: FakeD1) -> None:
    a, ma = open_device(fake, "a")
    b, mb = open_device(fake, "b")
    a.users.add(User(id="ua", email="same@example.org"))
    b.users.add(User(id="ub", email="same@example.org"))
    ma.push()
    report = mb.push()
    assert [(d.table, d.pk) for d in report.dead_lettered] == [("users", "ub")]
    assert "UNIQUE constraint failed: users.email" in report.dead_lettered[0].error


def test_too_big_values_and_non_json_numbers_are_dead_lettered(open_device: Any,
                                                                fake: FakeD1) -> None:
    store, mirror = open_device(fake)
    mirror.push()
    conv = store.conversations.add(Conversation())
    store.messages.add(Message(id="huge", conversation_id=conv.id, role="user",
                               content="x" * 2_100_000))  # D1 refuses values over 2 MB
    store.conversations.add(Conversation(id="inf", total_cost=float("inf")))
    store.messages.add(Message(id="fine", conversation_id=conv.id, role="user", content="ok"))
    report = mirror.push()
    refused = {d.pk: d.error for d in report.dead_lettered}
    assert set(refused) == {"huge", "inf"}
    assert "too big" in refused["huge"] and "JSON" in refused["inf"]
    assert "fine" in remote_rows(fake, store, "messages")


# -- retries ----------------------------------------------------------------------------------


def test_retry_after_is_honoured_and_remembered(open_device: Any, fake: FakeD1) -> None:
    sleeps = Sleeps()
    store, mirror = open_device(fake, sleep=sleeps)
    mirror.push()
    conversation_with_messages(store)
    fake.inject(Fault("status", 429, retry_after=7))
    mirror.push()
    assert sleeps and sleeps[0] >= 7
    assert mirror.client.stats.failures == {"429": 1} and mirror.verify().ok


def test_every_fault_kind_is_retried(open_device: Any, fake: FakeD1) -> None:
    store, mirror = open_device(fake, max_attempts=12)
    mirror.push()
    conversation_with_messages(store, n=10)
    fake.inject(Fault("status", 500), Fault("status", 503), Fault("drop", when="before"),
                Fault("drop", when="after"), Fault("timeout", when="before"),
                Fault("timeout", when="after"),
                Fault("transient", message="D1 DB is overloaded. Too many requests queued."),
                Fault("status", 429, retry_after=0))
    report = mirror.push()
    assert report.dead_lettered == [] and outbox(store) == []
    assert mirror.client.stats.retries == 8
    assert mirror.verify().ok


def test_a_long_rate_limit_ends_the_push_without_loss(open_device: Any, fake: FakeD1) -> None:
    store, mirror = open_device(fake, max_retry_after=60)
    mirror.push()
    conversation_with_messages(store)
    fake.inject(Fault("status", 429, retry_after=300))
    with pytest.raises(hive_store_d1.D1RateLimited, match="300 s"):
        mirror.push()
    assert len(outbox(store)) == 4
    assert mirror.status()["last_push"]["ok"] is False
    assert mirror.push().upserts == 4 and mirror.status()["last_push"]["ok"] is True


def test_attempts_run_out_then_the_next_push_catches_up(open_device: Any, fake: FakeD1) -> None:
    store, mirror = open_device(fake, max_attempts=3)
    mirror.push()
    conversation_with_messages(store)
    fake.chaos(1.0, [(Fault("status", 503), 1)])
    with pytest.raises(hive_store_d1.D1Unavailable, match="3 attempts"):
        mirror.push()
    assert len(outbox(store)) == 4
    fake.chaos(0.0)
    assert mirror.push().upserts == 4 and mirror.verify().ok


def test_a_refused_token_stops_at_once(open_device: Any, fake: FakeD1) -> None:
    _, mirror = open_device(fake)
    fake.token = "rotated"
    with pytest.raises(hive_store_d1.D1AuthError, match="HTTP 401") as info:
        mirror.push()
    assert d1_server.TOKEN not in str(info.value) and fake.requests == 1


# -- remote schema ----------------------------------------------------------------------------


def test_a_newer_remote_layout_is_refused(open_device: Any, fake: FakeD1) -> None:
    _, mirror = open_device(fake)
    mirror.push()
    fake.execute("UPDATE _hive_meta SET value = '99' WHERE key = 'layout_version'")
    with pytest.raises(hive_store_d1.D1Error, match="layout 99"):
        mirror.ensure_schema(force=True)


def test_a_dropped_remote_schema_is_recreated_and_refilled(open_device: Any,
                                                            fake: FakeD1) -> None:
    store, mirror = open_device(fake)
    conversation_with_messages(store, n=3)
    mirror.push()
    fake.reset()  # someone emptied the D1 database
    store.settings.add(Setting(key="after", value="reset"))
    report = mirror.push()
    assert report.backfilled > 0 and report.dead_lettered == []
    assert mirror.verify().ok


# -- pull -------------------------------------------------------------------------------------


def test_pull_applies_other_devices_writes_without_echo(open_device: Any, fake: FakeD1) -> None:
    a, ma = open_device(fake, "a", pull=True)
    b, mb = open_device(fake, "b", pull=True)
    conv = conversation_with_messages(a, n=3)
    ma.push()
    mb.push()  # b's own first push (its seed rows lose to a's or win: same content)
    report = mb.pull()
    assert report.applied >= 4 and report.dead_lettered == []
    assert b.conversations.get(conv.id).id == conv.id
    assert len(b.messages.find(conversation_id=conv.id)) == 3
    assert outbox(b) == []  # pulled rows are not captured again
    assert mb.push().rows == 0
    assert mb.verify().ok and ma.verify().ok
    assert mb.pull().applied == 0  # the cursor moved


def test_last_writer_wins_by_clock_and_ties_by_device_id(open_device: Any,
                                                          fake: FakeD1) -> None:
    now = {"ms": 1_800_000_000_000}
    a, ma = open_device(fake, "a", pull=True, device_id="aaaa", wall_ms=lambda: now["ms"])
    b, mb = open_device(fake, "b", pull=True, device_id="bbbb", wall_ms=lambda: now["ms"])
    for m in (ma, mb):
        m.push()
    # b writes later than a: b wins everywhere, whatever the push order
    now["ms"] += 1000
    a.settings.upsert(Setting(key="later", value="from a"))
    now["ms"] += 1000
    b.settings.upsert(Setting(key="later", value="from b"))
    mb.push()
    ma.push()
    ma.pull()
    mb.pull()
    assert a.settings.get("later").value == b.settings.get("later").value == "from b"
    # the same clock on both devices: the larger device id wins
    now["ms"] += 1000
    a.settings.upsert(Setting(key="tie", value="from a"))
    b.settings.upsert(Setting(key="tie", value="from b"))
    ma.push()
    mb.push()
    ma.pull()
    mb.pull()
    assert a.settings.get("tie").value == b.settings.get("tie").value == "from b"
    # a local write after a pull is newer than everything pulled, even with a slow clock
    now["ms"] -= 60_000
    a.settings.upsert(Setting(key="later", value="a again"))
    ma.push()
    mb.pull()
    assert b.settings.get("later").value == "a again"
    assert ma.verify().ok and mb.verify().ok


def test_an_unpushed_newer_local_write_survives_a_pull(open_device: Any, fake: FakeD1) -> None:
    now = {"ms": 1_800_000_000_000}
    a, ma = open_device(fake, "a", pull=True, wall_ms=lambda: now["ms"])
    b, mb = open_device(fake, "b", pull=True, wall_ms=lambda: now["ms"])
    ma.push()
    mb.push()
    b.settings.upsert(Setting(key="k", value="older from b"))
    mb.push()
    now["ms"] += 5
    a.settings.upsert(Setting(key="k", value="newer from a, not pushed yet"))
    report = ma.pull()
    assert report.skipped >= 1
    assert a.settings.get("k").value == "newer from a, not pushed yet"
    ma.push()
    mb.pull()
    assert b.settings.get("k").value == "newer from a, not pushed yet"


def test_deletes_are_pulled_and_remote_wins_over_an_older_local_edit(open_device: Any,
                                                                      fake: FakeD1) -> None:
    now = {"ms": 1_800_000_000_000}
    a, ma = open_device(fake, "a", pull=True, wall_ms=lambda: now["ms"])
    b, mb = open_device(fake, "b", pull=True, wall_ms=lambda: now["ms"])
    a.settings.add(Setting(key="gone", value="x"))
    ma.push()
    mb.push()
    mb.pull()
    now["ms"] += 10
    b.settings.update("gone", value="edited by b (older)")
    now["ms"] += 10
    a.settings.delete("gone")
    ma.push()
    report = mb.pull()
    assert report.deleted == 1
    assert b.settings.find(key="gone") == [] and outbox(b) == []
    assert mb.verify().ok


def test_the_cursor_moves_with_the_applied_rows(open_device: Any, fake: FakeD1,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    a, ma = open_device(fake, "a", pull=True)
    b, mb = open_device(fake, "b", pull=True)
    conversation_with_messages(a, n=5)
    ma.push()
    calls = {"n": 0}
    real = Mirror._write_pulled

    def dying(self: Mirror, *args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise SimulatedCrash("killed while applying")
        real(self, *args)

    monkeypatch.setattr(Mirror, "_write_pulled", dying)
    with pytest.raises(SimulatedCrash):
        mb.pull()
    monkeypatch.setattr(Mirror, "_write_pulled", real)
    assert mb.status()["pull_cursor"] == 0
    assert b.messages.count() == 0 and b.conversations.count() == 0  # all or nothing
    mb.pull()
    assert mb.verify().ok


def test_a_pulled_row_that_conflicts_here_is_dead_lettered(open_device: Any,
                                                            fake: FakeD1) -> None:
    a, ma = open_device(fake, "a", pull=True)
    b, mb = open_device(fake, "b", pull=True)
    a.users.add(User(id="ua", email="taken@example.org"))
    ma.push()
    mb.push()
    b.users.add(User(id="ub", email="taken@example.org"))  # not pushed yet
    report = mb.pull()
    assert [(d.table, d.pk, d.direction) for d in report.dead_lettered] == [
        ("users", "ua", "pull")]
    assert [r["direction"] for r in mb.dead_letters()] == ["pull"]
    b.users.delete("ub")
    _, pulled = mb.retry_dead_letters()
    assert pulled is not None and pulled.applied == 1 and mb.dead_letters() == []
    assert b.users.get("ua").email == "taken@example.org"


def test_other_plugins_see_pulled_rows_as_changes(open_device: Any, fake: FakeD1) -> None:
    seen: list[Any] = []

    class Listener:
        @hive_store.hookimpl
        def hive_store_after_commit(self, store: Any, changes: Any) -> None:
            seen.extend(changes)

    a, ma = open_device(fake, "a", pull=True)
    b, mb = open_device(fake, "b", pull=True)
    b.plugins.register(Listener(), name="test-listener")
    try:
        conv = conversation_with_messages(a, n=2)
        ma.push()
        mb.pull()
    finally:
        b.plugins.unregister("test-listener")
    keys = {(c.table, c.key) for c in seen}
    assert ("conversations", conv.id) in keys
    assert all(c.entity is not None for c in seen if c.table == "messages")


def test_pull_is_off_unless_configured(open_device: Any, fake: FakeD1) -> None:
    _, mirror = open_device(fake)
    with pytest.raises(hive_store.ConfigurationError, match="HIVE_STORE_D1_PULL"):
        mirror.pull()


# -- verify -----------------------------------------------------------------------------------


def test_verify_lists_each_kind_of_difference(open_device: Any, fake: FakeD1) -> None:
    store, mirror = open_device(fake)
    conv = store.conversations.add(Conversation())
    store.messages.add_many(Message(id=f"m{i:04d}", conversation_id=conv.id, role="user",
                                    content=f"c{i}") for i in range(1200))
    mirror.push()
    assert mirror.verify(chunk=100).ok
    fake.execute("UPDATE messages SET content = 'tampered' WHERE id = 'm0500'")
    fake.execute("DELETE FROM messages WHERE id = 'm0007'")
    fake.execute("INSERT INTO messages (id, conversation_id, role, content) VALUES "
                 "('zz-extra', ?, 'user', 'only in D1')", [conv.id])
    store.messages.delete("m1100")  # not pushed yet: explained by the outbox
    report = mirror.verify(chunk=100)
    diff = {t.table: t for t in report.tables}["messages"]
    assert not report.ok and report.pending == 1
    assert diff.different == ["m0500"] and diff.missing_remote == ["m0007"]
    assert sorted(diff.missing_local) == ["m1100", "zz-extra"]
    assert diff.explained == ["m1100"]
    assert (diff.local_count, diff.remote_count) == (1199, 1200)
    assert diff.chunks_differing == 4 and diff.chunks == 13


# -- resume -----------------------------------------------------------------------------------


def test_a_killed_backfill_resumes_where_it_stopped(open_device: Any, fake: FakeD1) -> None:
    store, _ = open_device(fake, enable=False)
    conv = store.conversations.add(Conversation())
    store.messages.add_many(Message(conversation_id=conv.id, role="user", content=f"{i}")
                            for i in range(300))
    config = d1_server.d1_config(fake.url(), rows_per_request=50)
    mirror = hive_store_d1.enable(store, config, transport=fake.transport)
    crash_at = 4
    original = fake.handle

    def counting(request: httpx.Request) -> httpx.Response:
        counting.n += 1  # type: ignore[attr-defined]
        if counting.n == crash_at + 2:  # after the two schema requests
            fake.inject(Fault("crash"))
        return original(request)

    counting.n = 0  # type: ignore[attr-defined]
    mirror.client._http._transport = httpx.MockTransport(counting)
    with pytest.raises(SimulatedCrash):
        mirror.push()
    assert mirror.status()["backfill"] == "in progress"
    mirror2 = hive_store_d1.enable(store, config, transport=fake.transport)
    report = mirror2.push()
    total = sum(store.status()["row_counts"][t] for t in mirror2.by_name)
    assert 0 < report.backfilled < total
    assert mirror2.verify().ok and mirror2.status()["backfill"] == "done"


def test_a_memory_store_can_be_mirrored(fake: FakeD1) -> None:
    with hive_store.open(":memory:") as store:
        mirror = hive_store_d1.enable(store, d1_server.d1_config(fake.url()),
                                      transport=fake.transport)
        conversation_with_messages(store, n=3)
        assert mirror.push().dead_lettered == []
        store.messages.add(Message(conversation_id=store.conversations.find()[0].id,
                                   role="user", content="later"))
        assert mirror.push().upserts == 1
        assert mirror.verify().ok


def test_reprs_and_status_never_show_the_token(open_device: Any, fake: FakeD1) -> None:
    _, mirror = open_device(fake)
    texts = [repr(mirror), repr(mirror.config), str(mirror.config), repr(mirror.client),
             json.dumps(mirror.status(), default=str), repr(mirror.config.token)]
    assert all(d1_server.TOKEN not in t for t in texts)
    assert isinstance(mirror.config, D1Config)
