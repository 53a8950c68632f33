"""Concurrency (threads and processes on one file) and post-commit change events."""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import queue as queue_mod
import random
import sqlite3
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hive_store
from hive_store import Change, Op, Stage, StageOutput
from hive_store.entities import ActivityLog, Conversation, EventType, Message
from hive_store.plugins import Plugins
from tests.conftest import isolated_plugins

SPAWN = multiprocessing.get_context("spawn")
TX_ROWS = 5  # messages per multi-row transaction


def chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def count_ids(store: hive_store.Store, ids: list[str]) -> int:
    return sum(store.messages.count(id__in=part) for part in chunks(ids))


# -- threads -------------------------------------------------------------------------------------


def test_threads_write_and_read_one_file_without_errors(isolated_url: str) -> None:
    """4 writer + 4 reader threads for ~2 s: no error of any kind, every acknowledged write
    present exactly once, and no reader ever sees part of a multi-row transaction."""
    duration = 2.0
    with hive_store.open(isolated_url) as store:
        stop = threading.Event()
        lock = threading.Lock()
        errors: list[str] = []
        acked: list[str] = []  # message ids whose write returned
        acked_tx: list[str] = []  # conversations written by multi-row transactions
        published: list[str] = []  # conversation ids announced *before* their transaction
        partial: list[str] = []
        reads = [0]

        def writer(w: int) -> None:
            try:
                conv = store.conversations.add(Conversation())
                for i in itertools.count():
                    if stop.is_set():
                        return
                    if i % 4 == 3:  # one multi-row transaction of TX_ROWS messages
                        c = Conversation()
                        with lock:
                            published.append(c.id)
                        msgs = [Message(conversation_id=c.id, role="assistant",
                                        content=f"w{w}-{i}-{k}") for k in range(TX_ROWS)]
                        if i % 8 == 3:
                            with store.transaction():
                                store.conversations.add(c)
                                stored = [store.messages.add(m) for m in msgs]
                        else:
                            with store.transaction():
                                store.conversations.add(c)
                                stored = store.messages.add_many(msgs)
                        with lock:
                            acked.extend(m.id for m in stored)
                            acked_tx.append(c.id)
                    else:
                        m = store.messages.add(Message(conversation_id=conv.id, role="user",
                                                       content=f"w{w}-{i}"))
                        with lock:
                            acked.append(m.id)
            except Exception:
                errors.append(f"writer {w}: {traceback.format_exc()}")

        def reader(r: int) -> None:
            rng = random.Random(r)
            last_total = 0
            try:
                while not stop.is_set():
                    with lock:
                        recent = published[-6:]
                    if recent:
                        cid = rng.choice(recent)
                        conv_seen = store.conversations.find_one(id=cid) is not None
                        n = store.messages.count(conversation_id=cid)
                        rows = store.messages.find(conversation_id=cid)
                        if n not in (0, TX_ROWS) or len(rows) not in (0, TX_ROWS):
                            partial.append(f"{cid}: count {n}, find {len(rows)}")
                        if conv_seen and (n != TX_ROWS or len(rows) != TX_ROWS):
                            partial.append(f"{cid}: conversation visible, {n} messages")
                    total = store.messages.count()
                    if total < last_total:
                        partial.append(f"count went back from {last_total} to {total}")
                    last_total = total
                    store.messages.find(order_by="-timestamp", limit=20)
                    reads[0] += 1
            except Exception:
                errors.append(f"reader {r}: {traceback.format_exc()}")

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        threads += [threading.Thread(target=reader, args=(r,)) for r in range(4)]
        for t in threads:
            t.start()
        time.sleep(duration)
        stop.set()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)

        assert errors == []
        assert partial == []
        assert reads[0] > 50 and len(acked_tx) > 10
        assert len(acked) == len(set(acked))
        assert count_ids(store, acked) == len(acked)  # each acknowledged write, once
        assert store.messages.count() == len(acked)  # and nothing else
        for cid in acked_tx:
            assert store.messages.count(conversation_id=cid) == TX_ROWS
        assert store.backend.pool_stats()["timeouts"] == 0
        assert store.backend.check_integrity()["ok"]


def test_write_lock_wait_is_bounded_by_connection_timeout(tmp_path: Path) -> None:
    """A second writer thread waits for the first one, then gives up with PoolTimeout."""
    with hive_store.open(f"sqlite://{tmp_path}/w.db", connection_timeout=0.3) as store:
        inside = threading.Event()
        release = threading.Event()

        def long_writer() -> None:
            with store.transaction():
                store.conversations.add(Conversation())
                inside.set()
                release.wait(10)

        t = threading.Thread(target=long_writer)
        t.start()
        try:
            assert inside.wait(5)
            start = time.monotonic()
            with pytest.raises(hive_store.PoolTimeout):
                store.conversations.add(Conversation())
            assert 0.29 <= time.monotonic() - start < 3
            assert store.conversations.count() == 0  # readers are not blocked
        finally:
            release.set()
            t.join(10)
        store.conversations.add(Conversation())
        assert store.conversations.count() == 2


# -- processes -----------------------------------------------------------------------------------


def process_writer(url: str, tag: str, k: int, out: Any) -> None:
    """Runs in a spawned process: open an own store and write ``k`` messages."""
    ids: list[str] = []
    errors: list[str] = []
    try:
        with hive_store.open(url) as store:
            conv = store.conversations.add(Conversation())
            i = 0
            while i < k:
                try:
                    if i % 10 == 9 and i + TX_ROWS <= k:
                        with store.transaction():
                            batch = [store.messages.add(Message(
                                conversation_id=conv.id, role="user", content=f"{tag}-{i + j}"))
                                for j in range(TX_ROWS)]
                        ids.extend(m.id for m in batch)
                        i += TX_ROWS
                    else:
                        m = store.messages.add(Message(conversation_id=conv.id, role="user",
                                                       content=f"{tag}-{i}"))
                        ids.append(m.id)
                        i += 1
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    i += 1
    except Exception:
        errors.append(traceback.format_exc())
    out.put((tag, ids, errors))


def process_opener(url: str, tag: str, barrier: Any, out: Any) -> None:
    """Runs in a spawned process: open (create + migrate) the store at the barrier."""
    errors: list[str] = []
    conv_id = None
    try:
        # Load plugins and parse the migration files first, so both processes reach the
        # database at nearly the same instant after the barrier.
        hive_store.plugins.get_plugins().migration_sets()
        barrier.wait(60)
        with hive_store.open(url) as store:
            conv_id = store.conversations.add(Conversation()).id
    except Exception:
        errors.append(traceback.format_exc())
    out.put((tag, conv_id, errors))


def collect(out: Any, procs: list[Any], timeout: float = 60) -> list[Any]:
    results = []
    deadline = time.monotonic() + timeout
    for _ in procs:
        try:
            results.append(out.get(timeout=max(0.1, deadline - time.monotonic())))
        except queue_mod.Empty:
            break
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()
    return results


def test_processes_write_one_file_while_the_parent_reads(isolated_url: str) -> None:
    k = 150
    url = isolated_url
    with hive_store.open(url) as store:
        out = SPAWN.Queue()
        procs = [SPAWN.Process(target=process_writer, args=(url, f"p{n}", k, out))
                 for n in range(3)]
        for p in procs:
            p.start()
        read_errors: list[str] = []
        last = reads = 0
        while any(p.is_alive() for p in procs) and out.qsize() < len(procs):
            try:
                total = store.messages.count()
                store.messages.find(order_by="-timestamp", limit=20)
                assert total >= last
                last = total
                reads += 1
            except hive_store.HiveStoreError as exc:
                read_errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.001)
        results = collect(out, procs)

        assert len(results) == 3, "a writer process did not report"
        assert read_errors == []
        locked = [e for _, _, errs in results for e in errs if "locked" in e.lower()]
        assert locked == []
        assert [errs for _, _, errs in results] == [[], [], []]
        ids = [i for _, got, _ in results for i in got]
        assert len(ids) == 3 * k == len(set(ids))
        assert count_ids(store, ids) == 3 * k
        assert store.messages.count() == 3 * k
        assert store.backend.check_integrity()["ok"]


@pytest.mark.parametrize("round_", [1, 2])
def test_two_processes_create_the_same_new_file_at_once(tmp_path: Path, round_: int) -> None:
    path = tmp_path / "race.db"
    url = f"sqlite://{path}"
    out = SPAWN.Queue()
    barrier = SPAWN.Barrier(2)
    procs = [SPAWN.Process(target=process_opener, args=(url, f"o{n}", barrier, out))
             for n in range(2)]
    for p in procs:
        p.start()
    results = collect(out, procs)
    assert len(results) == 2
    errors = [e for _, _, errs in results for e in errs]
    assert errors == []
    assert all(p.exitcode == 0 for p in procs)

    raw = sqlite3.connect(path)
    try:
        rows = raw.execute("SELECT namespace, version, count(*) FROM hive_store_migrations "
                           "GROUP BY 1, 2").fetchall()
        assert rows, "no migration was recorded"
        assert {count for _, _, count in rows} == {1}
        assert raw.execute("SELECT count(*) FROM conversations").fetchone()[0] == 2
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        raw.close()
    with hive_store.open(url) as store:  # and it opens normally afterwards
        assert store.schema_version() == max(v for ns, v, _ in rows if ns == "hive_store")


def test_opening_a_new_file_waits_for_a_connection_holding_it(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # as another open() does
    os.close(fd)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another process is initialising the file
    timer = threading.Timer(0.3, holder.execute, ("COMMIT",))
    timer.start()
    try:
        start = time.monotonic()
        with hive_store.open(f"sqlite://{path}", busy_timeout=10) as store:
            assert time.monotonic() - start >= 0.25
            assert store.conversations.count() == 0
            with store.backend.connection() as conn:
                assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        timer.join()
        holder.close()


@pytest.mark.slow
def test_soak_threads_with_a_small_churning_pool(isolated_url: str) -> None:
    """6 threads for ~6 s on a 3-connection pool whose connections live 0.3 s: waits and
    reconnects under load; every new connection still enforces foreign keys."""
    duration = 6.0
    with hive_store.open(isolated_url, max_size=3, min_idle=1,
                         max_lifetime=0.3, connection_timeout=30) as store:
        stop = threading.Event()
        errors: list[str] = []
        acked: list[str] = []
        lock = threading.Lock()

        def work(n: int) -> None:
            try:
                conv = store.conversations.add(Conversation())
                for i in itertools.count():
                    if stop.is_set():
                        return
                    if i % 3 == 0:
                        m = store.messages.add(Message(conversation_id=conv.id, role="user",
                                                       content=f"{n}-{i}"))
                        with lock:
                            acked.append(m.id)
                    elif i % 3 == 1:
                        try:
                            store.messages.add(Message(conversation_id="missing", role="user",
                                                       content="orphan"))
                            errors.append("a connection without foreign_keys=ON")
                        except hive_store.IntegrityError:
                            pass
                    else:
                        store.messages.count(conversation_id=conv.id)
                        store.messages.find(order_by="-timestamp", limit=10)
            except Exception:
                errors.append(traceback.format_exc())

        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        time.sleep(duration)
        stop.set()
        for t in threads:
            t.join(60)
        assert errors == []
        memory = store.__dict__.get("memory")
        if memory is not None:  # the memory plugin's indexer, behind the writers, holds one
            assert memory.wait_idle(timeout=60)
        stats = store.backend.pool_stats()
        assert stats["created"] > 5 and stats["timeouts"] == 0  # replaced, none timed out
        assert stats["size"] <= 3 and stats["in_use"] == 0
        assert count_ids(store, acked) == len(acked) == store.messages.count()
        assert store.backend.check_integrity()["ok"]


# -- post-commit events --------------------------------------------------------------------------


class Boom(Exception):
    pass


class Spy:
    """A plugin object that records the commit hooks it sees."""

    def __init__(self) -> None:
        self.before: list[list[Change]] = []
        self.after: list[tuple[Change, ...]] = []
        self.fail_before: BaseException | None = None
        self.fail_after: BaseException | None = None
        self.on_after: Any = None
        self.threads: list[int] = []

    @hive_store.hookimpl
    def hive_store_before_commit(self, store: hive_store.Store, connection: Any,
                                 changes: Any) -> None:
        assert store.backend.in_transaction()
        self.before.append(list(changes))
        if self.fail_before is not None:
            raise self.fail_before

    @hive_store.hookimpl
    def hive_store_after_commit(self, store: hive_store.Store, changes: Any) -> None:
        self.after.append(tuple(changes))
        self.threads.append(threading.get_ident())
        if self.on_after is not None:
            self.on_after(store, changes)
        if self.fail_after is not None:
            raise self.fail_after

    def reset(self) -> None:
        self.before.clear()
        self.after.clear()


@pytest.fixture
def spy() -> Spy:
    return Spy()


@pytest.fixture
def spy_plugins(spy: Spy) -> Plugins:
    p = Plugins()
    p.ensure_loaded()
    assert p.register(spy, name="spy") == "spy"
    return p


@pytest.fixture
def spy_store(backend_url: str, spy_plugins: Plugins) -> Iterator[hive_store.Store]:
    with hive_store.open(backend_url, plugins=spy_plugins) as s:
        yield s


def ins(entity: Any) -> Change:
    return Change(Op.INSERT, type(entity).__table__, entity.id, entity)


def test_one_event_per_single_write(spy_store: hive_store.Store, spy: Spy) -> None:
    c = spy_store.conversations.add(Conversation())
    assert spy.after == [(ins(c),)]
    assert spy.before == [[ins(c)]]
    m = spy_store.messages.add(Message(conversation_id=c.id, role="user", content="x"))
    assert spy.after == [(ins(c),), (ins(m),)]


class AfterOnly:
    """A listener with only the post-commit hook (single writes then run in autocommit)."""

    def __init__(self) -> None:
        self.after: list[tuple[Change, ...]] = []

    @hive_store.hookimpl
    def hive_store_after_commit(self, store: hive_store.Store, changes: Any) -> None:
        self.after.append(tuple(changes))


def test_single_writes_without_a_before_commit_listener(backend_url: str) -> None:
    spy = AfterOnly()
    with hive_store.open(backend_url, plugins=isolated_plugins(spy)) as s:
        assert s.plugins.commit_hooks(s) == (False, True)
        c = s.conversations.add(Conversation())
        a = s.activity_log.add(ActivityLog(event_type=EventType.QUERY_START))
        assert isinstance(a.id, int) and s.activity_log.get(a.id) == a
        assert s.messages.delete("no-such-message") is False  # changed nothing: no event
        m = s.messages.upsert(Message(conversation_id=c.id, role="user", content="x"))
        assert s.messages.delete(m.id) is True
        with pytest.raises(hive_store.Conflict):
            s.conversations.add(c)  # a failed write: no event, the writer is free again
        with pytest.raises(hive_store.IntegrityError):
            s.messages.add(Message(conversation_id="no-such", role="user", content="x"))
        c2 = s.conversations.add(Conversation())
        assert s.backend.pool_stats()["in_use"] == 0
    assert spy.after == [(ins(c),), (Change(Op.INSERT, "activity_log", a.id, a),),
                         (Change(Op.UPSERT, "messages", m.id, m),),
                         (Change(Op.DELETE, "messages", m.id, None),), (ins(c2),)]


class TablesOnly:
    def __init__(self) -> None:
        self.tables: list[frozenset[str]] = []

    @hive_store.hookimpl
    def hive_store_after_commit(self, changes: Any) -> None:
        self.tables.append(changes.tables)


def test_batch_changes_are_built_only_if_a_listener_reads_them(
        backend_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from hive_store.changes import Batch

    expanded: list[int] = []
    real = Batch.expand
    monkeypatch.setattr(Batch, "expand", lambda self: expanded.append(1) or real(self))
    tables, after = TablesOnly(), AfterOnly()
    with hive_store.open(backend_url, plugins=isolated_plugins(tables)) as s:
        c = s.conversations.add(Conversation())
        ms = s.messages.add_many([Message(conversation_id=c.id, role="user", content=str(i))
                                  for i in range(50)])
        assert tables.tables == [frozenset({"conversations"}), frozenset({"messages"})]
        assert expanded == []  # nobody read the rows: no Change objects were made
        s.plugins.register(after, name="after")
        with s.transaction():
            s.messages.add_many(ms2 := [Message(conversation_id=c.id, role="user",
                                                content="x")])
            s.conversations.update(c.id, total_cost=2.0)
    assert expanded == [1]
    assert after.after == [(*map(ins, ms2), Change(Op.UPDATE, "conversations", c.id,
                                                   attrs.evolve(c, total_cost=2.0),
                                                   ("total_cost",)))]
    assert tables.tables[-1] == frozenset({"messages", "conversations"})
    assert len(ms) == 50


class OnlyFor:
    """Listens (both hooks) only to the stores in ``self.stores``."""

    def __init__(self) -> None:
        self.stores: set[int] = set()
        self.seen: list[str] = []

    @hive_store.hookimpl
    @hive_store.listens_when(lambda store: id(store) in ONLY_FOR.stores)
    def hive_store_before_commit(self, changes: Any) -> None:
        self.seen.append("before")

    @hive_store.hookimpl
    @hive_store.listens_when(lambda store: id(store) in ONLY_FOR.stores)
    def hive_store_after_commit(self, changes: Any) -> None:
        self.seen.append("after")


ONLY_FOR = OnlyFor()


def test_listens_when_limits_a_listener_to_some_stores(backend_url: str) -> None:
    ONLY_FOR.stores.clear()
    ONLY_FOR.seen.clear()
    with hive_store.open(backend_url, plugins=isolated_plugins(ONLY_FOR)) as s:
        assert s.plugins.commit_hooks(s) == (False, False)
        with s.transaction():
            s.conversations.add(Conversation())
            assert not s.backend.recording()  # nobody listens: no Change records are built
        assert ONLY_FOR.seen == []
        ONLY_FOR.stores.add(id(s))  # enabled while open: the next write sees it
        assert s.plugins.commit_hooks(s) == (True, True)
        s.conversations.add(Conversation())
        assert ONLY_FOR.seen == ["before", "after"]
        ONLY_FOR.stores.clear()
        s.conversations.add(Conversation())
        assert ONLY_FOR.seen == ["before", "after"] and s.conversations.count() == 3


def test_one_event_per_transaction_with_all_changes_in_order(spy_store: hive_store.Store,
                                                             spy: Spy) -> None:
    seen_after_commit: list[int] = []
    spy.on_after = lambda store, changes: seen_after_commit.append(store.messages.count())
    with spy_store.transaction():
        c = spy_store.conversations.add(Conversation())
        m1 = spy_store.messages.add(Message(conversation_id=c.id, role="user", content="q"))
        ms = spy_store.messages.add_many(
            [Message(conversation_id=c.id, role="assistant", content=f"a{i}") for i in range(3)])
        c2 = spy_store.conversations.update(c.id, total_cost=1.5)
        spy_store.messages.delete(m1.id)
        with spy_store.transaction():  # a nested block that commits is part of the same event
            m5 = spy_store.messages.upsert(Message(conversation_id=c.id, role="user",
                                                   content="u"))
        assert spy.after == []  # nothing before the commit
    expected = (ins(c), ins(m1), *map(ins, ms),
                Change(Op.UPDATE, "conversations", c.id, c2, ("total_cost",)),
                Change(Op.DELETE, "messages", m1.id, None),
                Change(Op.UPSERT, "messages", m5.id, m5))
    assert spy.after == [expected]
    assert spy.before == [list(expected)]
    assert seen_after_commit == [4]  # after_commit sees the committed data


def test_no_event_for_a_rolled_back_transaction(spy_store: hive_store.Store, spy: Spy) -> None:
    with pytest.raises(Boom), spy_store.transaction():
        c = spy_store.conversations.add(Conversation())
        spy_store.messages.add(Message(conversation_id=c.id, role="user", content="x"))
        raise Boom
    assert spy.after == [] and spy.before == []
    assert spy_store.conversations.count() == 0

    spy_store.conversations.add(c)
    spy.reset()
    with pytest.raises(hive_store.Conflict):
        spy_store.conversations.add(c)  # a failed single write
    with pytest.raises(hive_store.IntegrityError):
        spy_store.messages.add(Message(conversation_id="no-such", role="user", content="x"))
    assert spy.after == [] and spy.before == []


def test_rolled_back_savepoint_drops_only_its_own_changes(spy_store: hive_store.Store,
                                                          spy: Spy) -> None:
    with spy_store.transaction():
        c = spy_store.conversations.add(Conversation())
        keep1 = spy_store.messages.add(Message(conversation_id=c.id, role="user", content="1"))
        with pytest.raises(Boom), spy_store.transaction():
            spy_store.messages.add(Message(conversation_id=c.id, role="user", content="lost"))
            with spy_store.transaction():
                spy_store.messages.add(Message(conversation_id=c.id, role="user",
                                               content="lost too"))
            raise Boom
        with pytest.raises(hive_store.Conflict):
            spy_store.messages.add(keep1)  # a failed write inside: its own savepoint
        with spy_store.transaction():
            keep2 = spy_store.messages.add(Message(conversation_id=c.id, role="user",
                                                   content="2"))
            with pytest.raises(Boom), spy_store.transaction():
                spy_store.conversations.update(c.id, total_cost=9.0)
                raise Boom
    assert spy.after == [(ins(c), ins(keep1), ins(keep2))]
    assert sorted(m.content for m in spy_store.messages.find(conversation_id=c.id)) == ["1", "2"]
    assert spy_store.conversations.get(c.id).total_cost == 0.0


def test_before_commit_error_rolls_back_and_reaches_the_caller(spy_store: hive_store.Store,
                                                               spy: Spy) -> None:
    spy.fail_before = Boom("vetoed")
    with pytest.raises(Boom, match="vetoed"), spy_store.transaction():
        c = spy_store.conversations.add(Conversation())
        spy_store.messages.add(Message(conversation_id=c.id, role="user", content="x"))
    with pytest.raises(Boom):
        spy_store.conversations.add(Conversation())
    assert len(spy.before) == 2
    assert spy.after == []
    assert spy_store.conversations.count() == 0
    assert spy_store.messages.count() == 0
    assert spy_store.backend.pool_stats()["in_use"] == 0

    spy.fail_before = None  # the writer is free and works again
    c = spy_store.conversations.add(Conversation())
    assert spy.after == [(ins(c),)]


def test_before_commit_writes_in_the_same_transaction(backend_url: str) -> None:
    class Outbox:
        @hive_store.hookimpl
        def hive_store_before_commit(self, store: Any, connection: Any, changes: Any) -> None:
            # the backend's native connection: its dialect's placeholders
            p = store.backend.sql.param
            connection.execute("CREATE TABLE IF NOT EXISTS test_outbox (tbl TEXT, op TEXT)")
            for ch in changes:
                connection.execute(f"INSERT INTO test_outbox VALUES ({p}, {p})",
                                   (ch.table, ch.op.value))

    p = Plugins()
    p.ensure_loaded()
    p.register(Outbox(), name="outbox")
    with hive_store.open(backend_url, plugins=p) as store:
        c = store.conversations.add(Conversation())
        with pytest.raises(Boom), store.transaction():
            store.messages.add(Message(conversation_id=c.id, role="user", content="x"))
            raise Boom
        with store.backend.connection() as conn:
            rows = conn.execute("SELECT tbl, op FROM test_outbox").fetchall()
        assert rows == [("conversations", "insert")]


def test_after_commit_error_is_logged_not_raised(spy_store: hive_store.Store, spy: Spy,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    spy.fail_after = Boom("mirror down")
    with caplog.at_level(logging.ERROR, logger="hive_store"):
        c = spy_store.conversations.add(Conversation())  # does not raise
        with spy_store.transaction():
            spy_store.messages.add(Message(conversation_id=c.id, role="user", content="x"))
    assert spy_store.conversations.count() == 1
    assert spy_store.messages.count() == 1
    assert len(spy.after) == 2
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert len(logged) == 2
    assert all(r.name.startswith("hive_store") for r in logged)
    assert all(isinstance(r.exc_info[1], Boom) for r in logged)  # type: ignore[index]
    assert "spy" in logged[0].getMessage()


def test_record_consensus_is_one_event(spy_store: hive_store.Store, spy: Spy) -> None:
    stages = [StageOutput(stage=s, model="m", answer=f"{s.value} answer")
              for s in (Stage.GENERATOR, Stage.REFINER, Stage.VALIDATOR, Stage.CURATOR)]
    run = spy_store.record_consensus("why?", stages)
    assert len(spy.after) == 1
    tables = [ch.table for ch in spy.after[0]]
    assert tables[0] == "conversations"
    assert tables.count("messages") == 5
    assert [ch.key for ch in spy.after[0] if ch.table == "messages"] == [
        m.id for m in run.messages]


def test_events_from_threads_are_one_per_transaction(spy_store: hive_store.Store,
                                                     spy: Spy) -> None:
    errors: list[str] = []

    def work(n: int) -> None:
        try:
            for _ in range(15):
                with spy_store.transaction():
                    c = spy_store.conversations.add(Conversation())
                    spy_store.messages.add(Message(conversation_id=c.id, role="user",
                                                   content=str(n)))
        except Exception:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(spy.after) == 60
    for changes in spy.after:  # never mixed between transactions
        conv, msg = changes
        assert conv.table == "conversations" and msg.table == "messages"
        assert msg.entity.conversation_id == conv.key
    assert len({ch[0].key for ch in spy.after}) == 60


# A block is a list of items; an item is "add" (one message) or a nested (block, fails) pair.
BLOCKS = st.recursive(
    st.just("add"),
    lambda inner: st.tuples(st.lists(inner, max_size=4), st.booleans()),
    max_leaves=12,
)


def run_block(store: hive_store.Store, items: list[Any], conv_id: str,
              counter: Iterator[int]) -> list[str]:
    """Run the items; returns the ids the model says survive."""
    kept: list[str] = []
    for item in items:
        if item == "add":
            m = store.messages.add(Message(conversation_id=conv_id, role="user",
                                           content=f"{next(counter):05d}"))
            kept.append(m.id)
        else:
            sub, fails = item
            try:
                with store.transaction():
                    inner = run_block(store, sub, conv_id, counter)
                    if fails:
                        raise Boom
            except Boom:
                continue
            kept.extend(inner)
    return kept


@pytest.fixture(params=("sqlite-memory", "postgresql"))
def spy_mem_store(request: pytest.FixtureRequest,
                  spy_plugins: Plugins) -> Iterator[hive_store.Store]:
    url = ":memory:" if request.param == "sqlite-memory" else str(
        request.getfixturevalue("pg_url"))
    with hive_store.open(url, plugins=spy_plugins) as s:
        yield s


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(BLOCKS, max_size=6), outer_fails=st.booleans())
def test_events_match_a_savepoint_model(spy_mem_store: hive_store.Store, spy: Spy,
                                        items: list[Any], outer_fails: bool) -> None:
    store = spy_mem_store
    conv = store.conversations.add(Conversation())
    spy.reset()
    kept: list[str] = []
    try:
        with store.transaction():
            kept = run_block(store, items, conv.id, itertools.count())
            if outer_fails:
                raise Boom
    except Boom:
        kept = []
    if kept:
        assert len(spy.after) == 1
        assert [(ch.op, ch.table, ch.key) for ch in spy.after[0]] == [
            (Op.INSERT, "messages", k) for k in kept]
    else:
        assert spy.after == []
    stored = store.messages.find(conversation_id=conv.id, order_by="content")
    assert [m.id for m in stored] == kept
