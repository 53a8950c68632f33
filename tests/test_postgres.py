"""What is particular to the PostgreSQL backend: URLs and options, secrets, errors by SQLSTATE,
timeouts, read-only stores, the pool, identities, retries, values only SQLite can hold, and
entities that read back equal on both backends. (The shared contract runs on every backend in
test_repository, test_transactions, test_conformance, test_fuzz and test_concurrency.)"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hive_store
from hive_store.entities import (
    CORE_ENTITIES,
    Conversation,
    ConversationTopic,
    CuratorTruth,
    Message,
    User,
)
from hive_store.testing import accepted_entities, entities, identical
from hive_store.url import parse_url
from tests import pg_support


@pytest.fixture
def pg(pg_url: str) -> Iterator[hive_store.Store]:
    with hive_store.open(pg_url) as store:
        yield store


def _conninfo(url: str) -> str:
    from hive_store_postgres.options import parse

    _, params = parse(parse_url(url), {})
    return " ".join(f"{k}={v}" for k, v in params.items())


# -- URLs, options and secrets -----------------------------------------------------------------


def test_both_schemes_and_options_from_the_url_and_keywords(pg_url: str) -> None:
    alias = pg_url.replace("postgresql://", "postgres://", 1)
    with hive_store.open(f"{alias}&max_size=3&statement_timeout=5", min_idle=0,
                         lock_timeout=2.5) as store:
        facts = store.status()
        assert facts["backend"] == "postgresql" and facts["schema_version"] >= 3
        assert facts["pool"]["max_size"] == 3 and facts["pool"]["min_idle"] == 0
        assert facts["settings"]["statement_timeout"] == "5s"
        assert facts["settings"]["lock_timeout"] == "2500ms"
        assert facts["settings"]["TimeZone"] == "UTC"
        assert facts["settings"]["isolation"] == "REPEATABLE READ"


@pytest.mark.parametrize(("suffix", "options", "message"), [
    ("&nonsense=1", {}, "unknown parameter 'nonsense'"),
    ("", {"nonsense": 1}, "unknown postgresql option 'nonsense'"),
    ("&max_size=0", {}, "max_size must be an integer from 1"),
    ("", {"isolation": "chaos"}, "isolation must be one of"),
    ("&statement_timeout=-1", {}, "statement_timeout must be a number of seconds"),
    ("&retries=x", {}, "option retries is not a number"),
])
def test_bad_options_are_configuration_errors(pg_url: str, suffix: str, options: dict[str, Any],
                                              message: str) -> None:
    with pytest.raises(hive_store.ConfigurationError, match=message):
        hive_store.open(pg_url + suffix, **options)


SECRET = "s3cret-Pa55word-never-shown"


@pytest.fixture
def password_role(pg_server: Any) -> Iterator[str]:
    """A role that must give a password (scram), first in pg_hba.conf; removed after."""
    folder = pg_server.folder
    hba = folder / "data" / "pg_hba.conf"
    original = hba.read_text()
    # a superuser: it owns nothing in the test databases, so it can be dropped afterwards
    pg_server.execute(f"CREATE ROLE secretive LOGIN SUPERUSER PASSWORD '{SECRET}'")
    hba.write_text("local all secretive scram-sha-256\n" + original)
    pg_server.execute("SELECT pg_reload_conf()")
    time.sleep(0.2)
    try:
        yield "secretive"
    finally:
        hba.write_text(original)
        pg_server.execute("SELECT pg_reload_conf()")
        pg_server.execute("DROP ROLE secretive")


def test_passwords_never_appear_in_errors_reprs_status_or_logs(
        pg_url: str, password_role: str, caplog: pytest.LogCaptureFixture) -> None:
    base, query = pg_url.split("?", 1)
    query = query.replace("user=postgres", "user=secretive")
    wrong = "w0rong-" + SECRET
    with caplog.at_level(logging.DEBUG):
        for url in (f"{base}?{query}&password={wrong}",
                    base.replace("postgresql://", f"postgresql://secretive:{wrong}@", 1)
                    + f"?{query}"):
            with pytest.raises(hive_store.StorageError) as err:
                hive_store.open(url)
            text = str(err.value)
            assert "password authentication failed" in text and wrong not in text
            assert "\n" not in text
        good = f"{base}?{query}&password={SECRET}"
        with hive_store.open(good) as store:
            store.users.add(User(id="who"))
            shown = [str(store), repr(store), str(store.url), repr(store.url),
                     repr(store.backend.describe()), repr(store.status()),
                     repr(store.health())]
    for text in shown + [r.getMessage() for r in caplog.records]:
        assert SECRET not in text and wrong not in text
    assert "password" not in str(parse_url(good))


def test_a_server_that_is_not_there_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(hive_store.StorageError) as err:
        hive_store.open(f"postgresql:///nope?host={tmp_path}&connect_timeout=2")
    assert "cannot connect to postgresql:///nope" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_missing_database_says_so(pg_server: Any) -> None:
    url = pg_server.url("no_such_database")
    with pytest.raises(hive_store.StorageError, match='database "no_such_database" does not'):
        hive_store.open(url)


# -- errors by SQLSTATE, timeouts, retries ------------------------------------------------------


def test_a_held_row_lock_is_database_locked_after_lock_timeout(pg_url: str) -> None:
    with hive_store.open(pg_url, lock_timeout=0.2) as store:
        conv = store.conversations.add(Conversation())
        with psycopg.connect(_conninfo(pg_url)) as other:  # holds the row until rolled back
            other.execute("UPDATE conversations SET total_cost = 1 WHERE id = %s", (conv.id,))
            start = time.monotonic()
            with pytest.raises(hive_store.DatabaseLocked, match="lock_timeout"):
                store.conversations.update(conv.id, total_cost=2.0)
            assert time.monotonic() - start < 5
            other.rollback()
        assert store.conversations.update(conv.id, total_cost=2.0).total_cost == 2.0


def test_statement_timeout_cancels_with_a_storage_error(pg_url: str) -> None:
    with hive_store.open(pg_url, statement_timeout=0.2) as store:
        conv = store.conversations.add(Conversation())
        with psycopg.connect(_conninfo(pg_url)) as other:
            other.execute("LOCK TABLE conversations IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(hive_store.StorageError, match="cancelled"):
                store.conversations.get(conv.id)
            other.rollback()
        assert store.conversations.get(conv.id) == conv


def test_concurrent_blocks_that_update_one_row_lose_nothing(pg: hive_store.Store) -> None:
    """Read-modify-write in transaction() blocks from 4 threads: each block either commits
    or raises TransactionConflict (retried here by hand); the counter counts every commit.
    run_transaction does the retrying itself."""
    conv = pg.conversations.add(Conversation(input_tokens=0, output_tokens=0))
    conflicts = [0]
    errors: list[str] = []

    def by_hand() -> None:
        for _ in range(25):
            while True:
                try:
                    with pg.transaction():
                        now = pg.conversations.get(conv.id).input_tokens
                        pg.conversations.update(conv.id, input_tokens=now + 1)
                    break
                except hive_store.TransactionConflict:
                    conflicts[0] += 1
                except Exception as exc:
                    errors.append(repr(exc))
                    return

    def automatic() -> None:
        def bump() -> None:
            now = pg.conversations.get(conv.id).output_tokens
            pg.conversations.update(conv.id, output_tokens=now + 1)
        try:
            for _ in range(25):
                pg.run_transaction(bump)
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=fn) for fn in (by_hand, by_hand, automatic, automatic)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    stored = pg.conversations.get(conv.id)
    assert (stored.input_tokens, stored.output_tokens) == (50, 50)
    assert conflicts[0] + pg.backend.retries["serialization"] > 0  # they did collide


def test_a_deadlock_in_blocks_is_database_locked_and_run_transaction_retries(
        pg: hive_store.Store) -> None:
    a, b = pg.conversations.add(Conversation()), pg.conversations.add(Conversation())
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def cross(first: str, second: str, retry: bool) -> None:
        def work() -> None:
            pg.conversations.update(first, success_rate="x")
            barrier.wait(10)  # both hold their first row: the second updates cross
            pg.conversations.update(second, success_rate="y")
        try:
            if retry:
                pg.run_transaction(work)
            else:
                with pg.transaction():
                    work()
            outcomes.append("ok")
        except hive_store.DatabaseLocked as exc:
            assert "deadlock" in str(exc)
            outcomes.append("deadlock")
        except threading.BrokenBarrierError:
            outcomes.append("ok")  # the retry of the other thread's run

    threads = [threading.Thread(target=cross, args=(a.id, b.id, False)),
               threading.Thread(target=cross, args=(b.id, a.id, True))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) in (["deadlock", "ok"], ["ok", "ok"])


# -- read-only stores, the pool ----------------------------------------------------------------


def test_read_only_reads_and_refuses_every_write(pg_url: str) -> None:
    with hive_store.open(pg_url) as store:
        conv = store.conversations.add(Conversation())
    with hive_store.open(pg_url, read_only=True) as ro:
        assert ro.conversations.get(conv.id) == conv
        for write in (lambda: ro.conversations.add(Conversation()),
                      lambda: ro.conversations.update(conv.id, total_cost=1.0),
                      lambda: ro.conversations.delete(conv.id),
                      lambda: ro.messages.add_many([Message(conversation_id=conv.id,
                                                            role="user", content="x")])):
            with pytest.raises(hive_store.StorageError, match="read-only"):
                write()
        with pytest.raises(hive_store.StorageError, match="read-only"), ro.transaction():
            pass
        with ro.backend.connection() as conn, pytest.raises(  # the server refuses them too
                psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM conversations")
    with pytest.raises(hive_store.ConfigurationError, match="cannot be migrated"):
        hive_store.open(pg_url, read_only=True, migrate=True)


def test_the_pool_waits_then_times_out(pg_url: str) -> None:
    with hive_store.open(pg_url, max_size=1, connection_timeout=0.3) as store:
        inside, release = threading.Event(), threading.Event()

        def holder() -> None:
            with store.transaction():
                store.users.add(User())
                inside.set()
                release.wait(10)

        t = threading.Thread(target=holder)
        t.start()
        try:
            assert inside.wait(10)
            with pytest.raises(hive_store.PoolTimeout):
                store.users.count()
        finally:
            release.set()
            t.join(10)
        assert store.users.count() == 1
        stats = store.backend.pool_stats()
        assert stats["timeouts"] >= 1 and stats["in_use"] == 0
        pool = [h for h in store.health() if h.name == "pool"]
        assert pool and pool[0].status == "warn"


def test_a_closed_store_and_its_iterators(pg_url: str) -> None:
    store = hive_store.open(pg_url)
    conv = store.conversations.add(Conversation())
    store.messages.add_many([Message(conversation_id=conv.id, role="user", content=str(i))
                             for i in range(30)])
    it = store.messages.iter(batch_size=7)
    assert next(it).conversation_id == conv.id
    assert store.backend.pool_stats()["in_use"] == 1  # the iterator's own connection
    it.close()
    assert store.backend.pool_stats()["in_use"] == 0
    store.close()
    with pytest.raises(hive_store.StoreClosed):
        store.messages.count()
    with pytest.raises(hive_store.StoreClosed):
        store.messages.iter()


def test_iter_inside_a_transaction_sees_its_own_rows(pg: hive_store.Store) -> None:
    with pg.transaction():
        conv = pg.conversations.add(Conversation())
        pg.messages.add_many([Message(conversation_id=conv.id, role="user", content=str(i))
                              for i in range(25)])
        assert len(list(pg.messages.iter(batch_size=4, conversation_id=conv.id))) == 25
    assert pg.backend.pool_stats()["in_use"] == 0


# -- identities, values -------------------------------------------------------------------------


def test_assigned_keys_never_collide_with_keys_given_before(pg: hive_store.Store) -> None:
    conv = pg.conversations.add(Conversation())
    given = pg.conversation_topics.add(ConversationTopic(id=40, conversation_id=conv.id,
                                                         topic="given"))
    auto = pg.conversation_topics.add(ConversationTopic(conversation_id=conv.id, topic="auto"))
    assert given.id == 40 and auto.id == 41
    batch = pg.conversation_topics.add_many(
        [ConversationTopic(id=90 + i, conversation_id=conv.id, topic="b") for i in range(25)])
    assert [t.id for t in batch] == list(range(90, 115))
    mixed = pg.conversation_topics.add_many([
        ConversationTopic(conversation_id=conv.id, topic="m1"),
        ConversationTopic(id=500, conversation_id=conv.id, topic="m2"),
        ConversationTopic(conversation_id=conv.id, topic="m3")])
    assert mixed[1].id == 500 and mixed[0].id > 114 and mixed[2].id > 500
    upserted = pg.curator_truths.upsert(CuratorTruth(id=7000, conversation_id=conv.id,
                                                     curator_output="x",
                                                     confidence_score=0.5))
    after = pg.curator_truths.add(CuratorTruth(conversation_id=pg.conversations.add(
        Conversation()).id, curator_output="y", confidence_score=0.5))
    assert upserted.id == 7000 and after.id == 7001


def test_text_with_nul_is_refused_naming_the_field(pg: hive_store.Store,
                                                   mem_store: hive_store.Store) -> None:
    """PostgreSQL text cannot hold NUL; SQLite stores it. The difference is a clear
    ValidationError that writes nothing (the contract machine draws no NUL on PostgreSQL)."""
    for store in (pg, mem_store):
        conv = store.conversations.add(Conversation(id="c"))
        bad = Message(conversation_id=conv.id, role="user", content="a\x00b", model_used="m\x00")
        if store is mem_store:
            assert store.messages.add(bad).content == "a\x00b"
            continue
        for how in ("add", "add_many", "upsert"):
            with pytest.raises(hive_store.ValidationError) as err:
                if how == "add_many":
                    store.messages.add_many([bad] * 30)
                else:
                    getattr(store.messages, how)(bad)
            assert [f for f, _ in err.value.errors] == ["content", "model_used"]
        assert store.messages.count() == 0
        with store.transaction():  # refused inside a transaction: the transaction goes on
            with pytest.raises(hive_store.ValidationError):
                store.messages.add(bad)
            store.messages.add(Message(conversation_id=conv.id, role="user", content="ok"))
        assert store.messages.count() == 1


def test_json_text_ordering_and_like_as_sqlite_does(pg: hive_store.Store,
                                                    mem_store: hive_store.Store) -> None:
    """The places where PostgreSQL would answer differently by default: code point order
    of text (the database here sorts with ICU en-US), NULLs first ascending, LIKE folding
    ASCII only, JSON compared as its text."""
    words = ["b", "B", "a", "A", "é", "É", "_", "Z", None, "", "ab"]
    answers = []
    for store in (pg, mem_store):
        conv = store.conversations.add(Conversation(id="c"))
        for i, w in enumerate(words):
            store.messages.add(Message(id=f"m{i:02d}", conversation_id=conv.id, role="user",
                                       content=f"x{w}", model_used=w))
        answers.append((
            [m.model_used for m in store.messages.find(order_by="model_used")],
            [m.model_used for m in store.messages.find(order_by="-model_used")],
            store.messages.count(model_used__lt="a"), store.messages.count(model_used__gt="Z"),
            sorted(m.model_used or "" for m in store.messages.find(content__contains="É")),
            sorted(m.model_used or "" for m in store.messages.find(content__like="xa%")),
            store.messages.count(model_used__in=["a", "é", "nope"]),
            [m.id for m in store.messages.find(limit=3, offset=2)],
        ))
    assert answers[0] == answers[1]


def test_updates_and_deletes_of_missing_rows(pg: hive_store.Store) -> None:
    with pytest.raises(hive_store.NotFound):
        pg.conversations.update("missing", total_cost=1.0)
    with pytest.raises(hive_store.NotFound):
        pg.conversations.update(Conversation(id="missing"))
    assert pg.conversations.delete("missing") is False


# -- entities read back equal on both backends ---------------------------------------------------

PARENTS = {"user_id": "u", "conversation_id": "c", "referenced_conversation_id": "c",
           "child_conversation_id": "c", "parent_conversation_id": "c",
           "consensus_profile_id": "lightning-fast", "provider_id": "anthropic",
           "model_internal_id": 1, "generator_model_internal_id": 1,
           "refiner_model_internal_id": 2, "validator_model_internal_id": 3,
           "curator_model_internal_id": 4}


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    url = pg_support.new_database()
    sqlite_path = tmp_path_factory.mktemp("both") / "both.db"
    with hive_store.open(url) as pg_store, hive_store.open(f"sqlite://{sqlite_path}") as lite:
        for store in (pg_store, lite):
            store.users.add(User(id="u"))
            store.conversations.add(Conversation(id="c", user_id="u"))
        yield pg_store, lite
    pg_support.drop(url)


def _with_parents(cls: type, strategy: Any) -> st.SearchStrategy[Any]:
    codec = hive_store.store.codec_for(cls)
    fixed = {name: value for name, value in PARENTS.items()
             if name in codec.columns and name != codec.pk}
    if cls is User:
        fixed["email"] = st.none()
    return strategy(cls, **fixed)  # type: ignore[no-any-return]


@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_the_same_entities_read_back_equal_on_both_backends(both: tuple[Any, Any],
                                                            data: st.DataObject) -> None:
    pg_store, lite = both
    """Values in their stored form and in every form a write accepts (subclasses, ints for
    floats, tuples in JSON, other offsets): add, upsert and update return exactly what a read
    returns, and that is the same on both backends."""
    cls = data.draw(st.sampled_from(CORE_ENTITIES), label="entity")
    strategy = data.draw(st.sampled_from([entities, accepted_entities]), label="forms")
    entity = data.draw(_with_parents(cls, strategy), label=cls.__name__)
    codec = lite.codec(cls)
    results = []
    for store in (lite, pg_store):
        repo = store.repo(cls)
        try:
            stored = repo.add(entity)
        except hive_store.HiveStoreError as exc:
            results.append(exc)
            continue
        key = codec.key_of(stored)
        got = repo.get(key)
        found = repo.find(**{codec.pk: key})
        assert identical(got, stored), (store.url, got, stored)
        again = entity if codec.key_of(entity) is not None else stored
        assert identical(repo.upsert(again), got)
        assert identical(repo.update(got), got)
        results.append((stored, got, found))
        repo.delete(key)
    lite_result, pg_result = results
    if isinstance(lite_result, hive_store.HiveStoreError):
        # refused on SQLite (a unique value, say): refused on PostgreSQL the same way
        assert type(pg_result) is type(lite_result), (lite_result, pg_result)
        return
    if isinstance(pg_result, hive_store.ValidationError):  # the one documented difference
        assert all("NUL" in reason for _, reason in pg_result.errors)
        assert any("\x00" in str(getattr(entity, f)) for f, _ in pg_result.errors)
        return
    assert not isinstance(pg_result, Exception), pg_result
    (l_stored, l_got, l_found), (p_stored, p_got, p_found) = lite_result, pg_result
    assert l_stored == l_got and p_stored == p_got
    if codec.autoincrement and codec.key_of(entity) is None:  # each backend numbers its own
        p_got = codec.evolve(p_got, **{codec.pk: codec.key_of(l_got)})
        p_found = [codec.evolve(e, **{codec.pk: codec.key_of(l_got)}) for e in p_found]
    assert l_got == p_got and l_found == p_found == [l_got]
    assert identical(l_got, p_got)  # the same types too (timestamps in UTC, bools, JSON)


# -- the test server itself ----------------------------------------------------------------------

_RUNNER = """
import sys, time
from hive_store_postgres.server import TemporaryServer
server = TemporaryServer().start()
print(server.process.pid, server.folder, flush=True)
time.sleep(600)
"""


def test_a_runner_killed_with_sigkill_leaves_no_server_behind(pg_server: Any) -> None:
    """What a killed test run leaves: its reaper stops the postmaster and removes the folder."""
    import os
    import signal
    import subprocess
    import sys

    runner = subprocess.Popen([sys.executable, "-c", _RUNNER], stdout=subprocess.PIPE,
                              text=True)
    try:
        line = runner.stdout.readline() if runner.stdout else ""
        pid_text, folder = line.split()
        postmaster = int(pid_text)
        os.kill(postmaster, 0)  # it runs
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait(30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (Path(folder).exists() or _alive(postmaster)):
        time.sleep(0.1)
    assert not _alive(postmaster), "the postmaster outlived its runner"
    assert not Path(folder).exists(), "the server's folder was left behind"


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_folders_of_dead_runs_are_removed(tmp_path: Path) -> None:
    from hive_store_postgres.server import PREFIX, reap_orphans

    dead = tmp_path / f"{PREFIX}dead"
    (dead / "data").mkdir(parents=True)
    (dead / "owner.pid").write_text("999999999\n")  # no such process
    alive = tmp_path / f"{PREFIX}alive"
    alive.mkdir()
    (alive / "owner.pid").write_text(f"{__import__('os').getpid()}\n")
    assert reap_orphans(tmp_path) == [dead]
    assert not dead.exists() and alive.exists()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork()")
def test_a_store_used_after_fork_is_refused_in_the_child(pg: hive_store.Store) -> None:
    """The child gets StoreClosed at once and never touches the parent's connections; the
    parent's store goes on."""
    import os

    pg.users.add(User(id="before"))
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without cleanup
        outcome = []
        for op in (lambda: pg.users.count(), lambda: pg.users.add(User(id="child")),
                   lambda: pg.transaction().__enter__()):
            try:
                op()
                outcome.append("ok")
            except hive_store.StoreClosed as exc:
                outcome.append("refused" if "os.fork()" in str(exc) else str(exc))
            except BaseException as exc:
                outcome.append(f"UNEXPECTED {type(exc).__name__}")
        pg.close()  # in the child: touches nothing of the parent's
        os.write(write_fd, ",".join(outcome).encode())
        os._exit(0)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    report = os.read(read_fd, 1000).decode()
    os.close(read_fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report == "refused,refused,refused"
    pg.users.add(User(id="after"))  # the parent's connections still work
    assert sorted(u.id for u in pg.users.find()) == ["after", "before"]


# -- transactions held by generators, iterators bound to a transaction (as on SQLite:
# tests/test_ownership.py) ---------------------------------------------------------------------


def _in_thread(fn: Any) -> Any:
    out: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    assert not t.is_alive(), "the thread hung"
    if errors:
        raise errors[0]
    return out[0]


def test_a_write_while_a_generator_holds_the_transaction_is_refused(
        pg: hive_store.Store) -> None:
    from hive_store.entities import Setting

    store = pg

    def exporter() -> Any:
        with store.transaction():
            store.settings.upsert(Setting(key="gen", value="inside"))
            yield "suspended inside the transaction"
            store.settings.upsert(Setting(key="gen2", value="resumed"))

    gen = exporter()
    next(gen)
    with pytest.raises(hive_store.StorageError, match="suspended") as err:
        store.settings.upsert(Setting(key="later", value="would be lost"))
    assert "exporter()" in str(err.value)
    with pytest.raises(hive_store.StorageError, match="suspended"), store.transaction():
        pass
    assert store.settings.find_one(key="gen") is None  # reads: committed data only
    gen.close()  # rolls the generator's transaction back
    assert store.settings.find_one(key="gen") is None
    assert store.settings.find_one(key="later") is None
    store.settings.upsert(Setting(key="later", value="now it is written"))
    assert store.settings.get("later").value == "now it is written"
    gen = exporter()
    next(gen)
    with pytest.raises(StopIteration):
        next(gen)  # resumed: the generator's own writes commit together
    assert {store.settings.get(k).value for k in ("gen", "gen2")} == {"inside", "resumed"}
    assert store.backend.pool_stats()["in_use"] == 0


def test_a_generator_resumed_in_another_thread_cannot_use_its_transaction(
        pg: hive_store.Store) -> None:
    from hive_store.entities import Setting

    store = pg

    def gen() -> Any:
        with store.transaction():
            store.settings.upsert(Setting(key="a", value="1"))
            yield
            store.settings.upsert(Setting(key="b", value="2"))  # now on another thread
            yield

    g = gen()
    next(g)
    with pytest.raises(hive_store.StorageError, match="another thread"):
        _in_thread(lambda: next(g))
    assert store.settings.find_one(key="a") is None  # rolled back, nothing committed
    store.settings.upsert(Setting(key="c", value="3"))  # this thread is free again
    assert [s.key for s in store.settings.find()] == ["c"]
    assert store.backend.pool_stats()["in_use"] == 0


def test_an_iterator_inside_a_transaction_sees_it_and_ends_with_it(
        pg: hive_store.Store) -> None:
    from hive_store.entities import Setting

    store = pg
    store.settings.add_many([Setting(key=f"k{i}", value=str(i)) for i in range(5)])
    with store.transaction():
        store.settings.upsert(Setting(key="k0", value="in tx"))
        it = store.settings.iter(order_by="key", batch_size=1)
        assert next(it).value == "in tx"  # sees the transaction's own write
        with pytest.raises(hive_store.StorageError, match="another thread"):
            _in_thread(lambda: next(it))
        it2 = store.settings.iter(order_by="key", batch_size=100)
        next(it2)
    with pytest.raises(hive_store.StorageError, match="has ended"):
        next(it2)  # even its already fetched rows: the transaction is over
    assert store.backend.pool_stats()["in_use"] == 0


# -- what is stored is what is returned; writes change only what changed (docs/guarantees.md) ----


def test_updates_write_only_the_columns_that_changed(pg: hive_store.Store) -> None:
    from hive_store.entities import ActivityLog

    entry = pg.activity_log.add(ActivityLog(event_type="export", metadata={"k": 1}))
    with pg.backend.transaction() as conn:  # another client's spacing, and a counter of UPDATEs
        conn.execute("""UPDATE activity_log SET metadata = '{ "k" :1 }' WHERE id = %s""",
                     (entry.id,))
        conn.execute("CREATE TABLE updates (n int)")
        conn.execute("CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$ BEGIN INSERT INTO updates VALUES (1); RETURN NEW; END $$")
        conn.execute("CREATE TRIGGER count_update BEFORE UPDATE ON activity_log "
                     "FOR EACH ROW EXECUTE FUNCTION count_update()")

    def stored() -> tuple[int, str]:
        with pg.backend.connection() as conn:
            return (conn.execute("SELECT count(*) FROM updates").fetchone()[0],
                    conn.execute("SELECT metadata::text FROM activity_log").fetchone()[0])

    read = pg.activity_log.get(entry.id)
    assert read == entry
    assert pg.activity_log.update(read) == read  # nothing differs: nothing is written
    assert pg.activity_log.upsert(read) == read
    assert pg.activity_log.update(entry.id, metadata={"k": 1}) == read  # the same JSON
    assert stored() == (0, '{ "k" :1 }')
    changed = pg.activity_log.update(entry.id, model_used="m")
    assert changed == attrs.evolve(read, model_used="m") == pg.activity_log.get(entry.id)
    assert stored() == (1, '{ "k" :1 }')  # the JSON another client wrote keeps its text
    pg.activity_log.upsert(attrs.evolve(changed, metadata={"k": 2}))
    assert stored() == (2, '{"k":2}')


def test_raw_values_are_refused_by_typed_columns_and_filters(pg: hive_store.Store) -> None:
    """A RawValue (a value read from another app's SQLite file, e.g. 'now' in a timestamp
    column) is never stored as something else: PostgreSQL's columns are typed."""
    from hive_store import RawValue
    from hive_store.entities import OpenRouterProvider

    conv = pg.conversations.add(Conversation(id="c"))
    msg = Message(conversation_id="c", role="user", content="hi")
    provider = pg.openrouter_providers.add(OpenRouterProvider(
        id="p", name="p", display_name="P", last_updated=conv.created_at))
    cases = [(pg.messages, msg, "timestamp", RawValue("now", "not a timestamp")),
             (pg.openrouter_providers, attrs.evolve(provider, id="p2"), "is_active",
              RawValue(2, "not a boolean")),
             (pg.openrouter_providers, attrs.evolve(provider, id="p3"), "capabilities",
              RawValue("[1,", "not JSON"))]
    for target, entity, field, raw in cases:
        bad = attrs.evolve(entity, **{field: raw})
        for call in (target.add, target.upsert, target.add_many):
            with pytest.raises(hive_store.ValidationError, match="RawValue") as err:
                call([bad] if call == target.add_many else bad)
            assert err.value.field == field
    with pytest.raises(hive_store.ValidationError, match="RawValue"):
        pg.openrouter_providers.update("p", is_active=RawValue(2, "not a boolean"))
    assert pg.messages.count() == 0 and pg.openrouter_providers.get("p") == provider
    assert pg.openrouter_providers.get_many(["p2", "p3"]) == []
    # text in a text column is stored as it is (a role Hive does not know), as on SQLite
    odd = pg.messages.add(attrs.evolve(msg, role=RawValue("robot", "not a Hive role")))
    assert odd.role == RawValue("robot") and pg.messages.get(odd.id) == odd
    assert pg.messages.find(role=RawValue("robot")) == [odd]
    assert pg.messages.find(role__in=[RawValue("robot"), "user"]) == [odd]
    never = RawValue("never", "not a timestamp")
    assert pg.conversations.find(created_at=never) == []
    assert pg.conversations.find(created_at__ne=never) == [conv]
    assert pg.conversations.find(created_at__in=[never, conv.created_at]) == [conv]
    with pytest.raises(hive_store.ValidationError, match="RawValue"):
        pg.conversations.find(created_at__lt=never)
