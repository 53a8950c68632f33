"""The connection pool (unit tests with plain ``sqlite3.connect`` connections, and a stateful
model), and the connections the SQLite backend pools: pragmas, files, ``:memory:``, options."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import hive_store_sqlite.pool as pool_mod
import pytest
from hive_store_sqlite.pool import Pool, PoolConfig
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import hive_store
from hive_store.entities import Conversation, Message

# -- helpers -------------------------------------------------------------------------------------


class TrackedConnection(sqlite3.Connection):
    """A stdlib connection that remembers whether it was closed."""

    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


class Factory:
    """A ``connect()`` for the pool: plain ``sqlite3.connect``, counting what it opened."""

    def __init__(self, target: str = ":memory:") -> None:
        self.target = target
        self.made: list[TrackedConnection] = []
        self.fail: Exception | None = None
        self._lock = threading.Lock()

    def __call__(self) -> sqlite3.Connection:
        if self.fail is not None:
            raise self.fail
        conn = sqlite3.connect(self.target, factory=TrackedConnection, check_same_thread=False)
        with self._lock:
            self.made.append(conn)
        return conn

    @property
    def open(self) -> list[TrackedConnection]:
        with self._lock:
            return [c for c in self.made if not c.closed]

    def close_all(self) -> None:
        for conn in self.made:
            conn.close()


class FakeClock:
    """Stands in for the ``time`` module inside the pool (only ``monotonic`` is used)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def factory() -> Iterator[Factory]:
    f = Factory()
    yield f
    f.close_all()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A controllable clock for the recycling tests (they never wait on the pool)."""
    fake = FakeClock()
    monkeypatch.setattr(pool_mod, "time", fake)
    return fake


def make_pool(factory: Factory, **config: Any) -> Pool:
    config.setdefault("min_idle", 0)
    return Pool(factory, PoolConfig(**config))


def pragma(conn: sqlite3.Connection, name: str) -> Any:
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [
    {"max_size": 0}, {"max_size": -1}, {"max_size": 2.5}, {"min_idle": 3, "max_size": 2},
    {"min_idle": -1}, {"connection_timeout": 0}, {"idle_timeout": 0}, {"max_lifetime": -1},
])
def test_pool_config_rejects_bad_values(config: dict[str, Any]) -> None:
    with pytest.raises(hive_store.ConfigurationError):
        PoolConfig(**config)


def test_pool_config_defaults() -> None:
    cfg = PoolConfig()
    assert (cfg.max_size, cfg.min_idle, cfg.test_on_checkout) == (10, 1, False)
    assert cfg.max_lifetime is None


# -- sizing --------------------------------------------------------------------------------------


def test_connections_are_opened_lazily_up_to_max_size(factory: Factory) -> None:
    pool = make_pool(factory, max_size=3, connection_timeout=0.2)
    assert factory.made == []
    assert pool.stats().size == 0

    a = pool.checkout()
    assert len(factory.made) == 1
    pool.checkin(a)
    assert pool.checkout() is a  # reused, not reopened
    assert len(factory.made) == 1

    b, c = pool.checkout(), pool.checkout()
    assert len({id(a), id(b), id(c)}) == 3
    assert len(factory.made) == 3
    s = pool.stats()
    assert (s.size, s.idle, s.in_use, s.created, s.checkouts) == (3, 0, 3, 3, 4)

    with pytest.raises(hive_store.PoolTimeout):
        pool.checkout(timeout=0.05)
    assert len(factory.made) == 3  # never more than max_size
    for conn in (a, b, c):
        pool.checkin(conn)
    s = pool.stats()
    assert (s.size, s.idle, s.in_use) == (3, 3, 0)
    pool.close()


def test_fill_opens_min_idle_connections(factory: Factory) -> None:
    pool = make_pool(factory, max_size=4, min_idle=2)
    assert factory.made == []  # nothing until fill()
    pool.fill()
    s = pool.stats()
    assert (s.size, s.idle, s.in_use, s.created) == (2, 2, 0, 2)
    pool.fill()  # already satisfied
    assert pool.stats().created == 2
    pool.close()


def test_fill_is_bounded_by_max_size(factory: Factory) -> None:
    pool = make_pool(factory, max_size=2, min_idle=2)
    held = pool.checkout()
    pool.fill()
    s = pool.stats()
    assert (s.size, s.idle, s.in_use) == (2, 1, 1)
    pool.checkout()
    pool.fill()  # full: opens nothing
    assert pool.stats().size == 2
    assert len(factory.made) == 2
    pool.checkin(held)
    pool.close()


def test_failed_connect_does_not_leak_a_slot(factory: Factory) -> None:
    pool = make_pool(factory, max_size=1, min_idle=1)
    factory.fail = sqlite3.OperationalError("unable to open database file")
    with pytest.raises(sqlite3.OperationalError):
        pool.fill()
    with pytest.raises(sqlite3.OperationalError):
        pool.checkout(timeout=0.1)
    s = pool.stats()
    assert (s.size, s.idle, s.in_use) == (0, 0, 0)
    factory.fail = None
    conn = pool.checkout(timeout=0.1)  # the slot is free again
    conn.execute("SELECT 1")
    pool.checkin(conn)
    pool.close()


# -- waiting -------------------------------------------------------------------------------------


def test_checkout_waits_then_raises_pool_timeout(factory: Factory) -> None:
    pool = make_pool(factory, max_size=2, connection_timeout=0.2)
    held = [pool.checkout(), pool.checkout()]
    start = time.monotonic()
    with pytest.raises(hive_store.PoolTimeout) as info:
        pool.checkout()
    elapsed = time.monotonic() - start
    assert 0.19 <= elapsed < 2.0
    assert isinstance(info.value, hive_store.StorageError)
    assert "max_size=2" in str(info.value)
    s = pool.stats()
    assert (s.waits, s.timeouts, s.in_use) == (1, 1, 2)

    for conn in held:
        pool.checkin(conn)
    pool.close()

    patient = make_pool(factory, max_size=1, connection_timeout=30)
    held = [patient.checkout()]
    start = time.monotonic()
    with pytest.raises(hive_store.PoolTimeout):
        patient.checkout(timeout=0.05)  # an explicit timeout wins over connection_timeout
    assert time.monotonic() - start < 5
    s = patient.stats()
    assert (s.waits, s.timeouts) == (1, 1)
    patient.checkin(held[0])
    patient.close()


def test_waiting_checkout_gets_the_returned_connection(factory: Factory) -> None:
    pool = make_pool(factory, max_size=1, connection_timeout=5)
    held = pool.checkout()
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(pool.checkout()))
    t.start()
    deadline = time.monotonic() + 5
    while pool.stats().waits == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    pool.checkin(held)
    t.join(5)
    assert got == [held]
    s = pool.stats()
    assert (s.waits, s.timeouts, s.created, s.in_use) == (1, 0, 1, 1)
    pool.checkin(got[0])
    pool.close()


def test_close_wakes_waiting_checkouts(factory: Factory) -> None:
    pool = make_pool(factory, max_size=1, connection_timeout=10)
    held = pool.checkout()
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            pool.checkout()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    deadline = time.monotonic() + 5
    while pool.stats().waits == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    start = time.monotonic()
    pool.close()
    t.join(5)
    assert time.monotonic() - start < 2
    assert len(errors) == 1 and isinstance(errors[0], hive_store.StoreClosed)
    pool.checkin(held)


def test_threads_never_share_a_connection_nor_exceed_max_size(factory: Factory) -> None:
    pool = make_pool(factory, max_size=3, connection_timeout=10)
    owners: dict[int, int] = {}
    problems: list[str] = []
    peak = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal peak
        me = threading.get_ident()
        for _ in range(150):
            with pool.connection() as conn:
                with guard:
                    if owners.get(id(conn)) is not None:
                        problems.append("a connection was handed to two threads")
                    owners[id(conn)] = me
                    peak = max(peak, len(factory.open))
                conn.execute("SELECT 1").fetchone()
                with guard:
                    owners[id(conn)] = None  # type: ignore[assignment]

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert problems == []
    assert peak <= 3
    s = pool.stats()
    assert s.in_use == 0 and s.size == s.idle <= 3
    assert s.checkouts == 6 * 150
    assert s.timeouts == 0
    pool.close()
    assert factory.open == []


# -- recycling -----------------------------------------------------------------------------------


def test_idle_timeout_recycles_idle_connections(factory: Factory, clock: FakeClock) -> None:
    pool = make_pool(factory, max_size=2, idle_timeout=10.0)
    a = pool.checkout()
    clock.advance(100)  # in use for long: idle_timeout only counts idle time
    pool.checkin(a)
    clock.advance(9)
    assert pool.checkout() is a
    pool.checkin(a)
    clock.advance(10.5)
    b = pool.checkout()
    assert b is not a
    assert a.closed
    s = pool.stats()
    assert (s.recycled, s.created, s.size, s.in_use) == (1, 2, 1, 1)
    pool.checkin(b)
    pool.close()


def test_max_lifetime_recycles_on_checkout_and_on_return(factory: Factory,
                                                          clock: FakeClock) -> None:
    pool = make_pool(factory, max_size=2, max_lifetime=30.0, idle_timeout=None)
    a = pool.checkout()
    pool.checkin(a)
    clock.advance(20)
    assert pool.checkout() is a  # young enough
    clock.advance(11)  # 31 s old while in use
    pool.checkin(a)  # recycled on return
    assert a.closed
    s = pool.stats()
    assert (s.recycled, s.size, s.idle) == (1, 0, 0)

    b = pool.checkout()
    pool.checkin(b)
    clock.advance(31)  # ages while idle
    c = pool.checkout()
    assert c is not b and b.closed
    s = pool.stats()
    assert (s.recycled, s.created, s.size) == (2, 3, 1)
    pool.checkin(c)
    pool.close()


def test_idle_timeout_none_and_max_lifetime_none_never_recycle(factory: Factory,
                                                               clock: FakeClock) -> None:
    pool = make_pool(factory, max_size=1, idle_timeout=None, max_lifetime=None)
    a = pool.checkout()
    pool.checkin(a)
    clock.advance(10**7)
    assert pool.checkout() is a
    assert pool.stats().recycled == 0
    pool.checkin(a)
    pool.close()


def test_expired_idle_connections_are_closed_at_the_next_checkout(factory: Factory,
                                                                  clock: FakeClock) -> None:
    pool = make_pool(factory, max_size=3, idle_timeout=10.0)
    a, b, c = pool.checkout(), pool.checkout(), pool.checkout()  # a burst
    for conn in (a, b, c):
        pool.checkin(conn)
    for _ in range(4):  # then light load: one connection every 6 s
        clock.advance(6)
        conn = pool.checkout()
        pool.checkin(conn)
    # a and b have been idle for 24 s > idle_timeout, with checkouts and returns since.
    assert a.closed and b.closed
    assert pool.stats().size == 1
    pool.close()


# -- reset on return, broken connections, test_on_checkout ---------------------------------------


def test_connection_returned_inside_a_transaction_is_rolled_back(tmp_path: Path) -> None:
    factory = Factory(str(tmp_path / "plain.db"))
    pool = make_pool(factory, max_size=2)
    try:
        conn = pool.checkout()
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.commit()
        conn.execute("INSERT INTO t VALUES (1)")  # implicit BEGIN (legacy isolation_level)
        assert conn.in_transaction
        pool.checkin(conn)
        assert not conn.in_transaction
        assert not conn.closed  # reset, kept
        other = factory()
        assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 0
        other.close()

        again = pool.checkout()
        assert again is conn
        again.execute("BEGIN IMMEDIATE")
        again.execute("INSERT INTO t VALUES (2)")
        pool.checkin(again)
        assert not again.in_transaction
        assert again.execute("SELECT count(*) FROM t").fetchone()[0] == 0
        assert pool.stats().recycled == 0
        pool.close()
    finally:
        factory.close_all()


def test_broken_connection_is_discarded(factory: Factory) -> None:
    pool = make_pool(factory, max_size=1)
    a = pool.checkout()
    pool.checkin(a, broken=True)
    assert a.closed
    s = pool.stats()
    assert (s.size, s.idle, s.in_use, s.recycled) == (0, 0, 0, 0)
    b = pool.checkout()
    assert b is not a
    pool.checkin(b)
    pool.close()


def test_connection_context_manager_discards_a_dead_connection(factory: Factory) -> None:
    pool = make_pool(factory, max_size=1)
    with pytest.raises(sqlite3.ProgrammingError), pool.connection() as conn:
        conn.close()
        conn.execute("SELECT 1")
    s = pool.stats()
    assert (s.size, s.idle, s.in_use) == (0, 0, 0)
    with pytest.raises(KeyError), pool.connection() as healthy:
        raise KeyError("not a database problem")
    assert pool.stats().idle == 1
    assert not healthy.closed  # kept: it still works
    pool.close()


def test_a_connection_closed_by_its_user_is_discarded_on_return(factory: Factory) -> None:
    pool = make_pool(factory, max_size=1, connection_timeout=0.1)
    with pool.connection() as conn:
        conn.close()  # e.g. a hook that closed the native connection
    s = pool.stats()
    assert (s.size, s.in_use) == (0, 0)
    fresh = pool.checkout()
    assert fresh is not conn
    pool.checkin(fresh)
    pool.close()


def test_test_on_checkout_replaces_a_dead_idle_connection(factory: Factory) -> None:
    pool = make_pool(factory, max_size=1, test_on_checkout=True)
    a = pool.checkout()
    pool.checkin(a)
    a.close()  # dies while idle (behind the pool's back)
    b = pool.checkout()
    assert b is not a
    assert b.execute("SELECT 1").fetchone() == (1,)
    s = pool.stats()
    assert (s.size, s.in_use, s.created) == (1, 1, 2)
    pool.checkin(b)
    pool.close()


def test_without_test_on_checkout_the_idle_connection_is_handed_out_as_is(
        factory: Factory) -> None:
    pool = make_pool(factory, max_size=1)
    a = pool.checkout()
    pool.checkin(a)
    with mock.patch.object(TrackedConnection, "execute",
                           side_effect=AssertionError("pinged")):
        assert pool.checkout() is a  # no SELECT 1 by default
    pool.checkin(a)
    pool.close()


# -- close ---------------------------------------------------------------------------------------


def test_close_closes_idle_now_and_in_use_on_return(factory: Factory) -> None:
    pool = make_pool(factory, max_size=3)
    a, b, c = pool.checkout(), pool.checkout(), pool.checkout()
    pool.checkin(a)
    pool.checkin(b)
    pool.close()
    assert a.closed and b.closed and not c.closed
    s = pool.stats()
    assert (s.size, s.idle, s.in_use) == (1, 0, 1)
    with pytest.raises(hive_store.StoreClosed):
        pool.checkout(timeout=0.05)
    pool.fill()  # no-op once closed
    assert len(factory.made) == 3
    pool.checkin(c)
    assert c.closed
    s = pool.stats()
    assert (s.size, s.idle, s.in_use, s.recycled) == (0, 0, 0, 0)
    assert factory.open == []
    pool.close()  # idempotent


# -- a stateful model ----------------------------------------------------------------------------


def test_a_connection_parked_for_one_thread_serves_another(factory: Factory) -> None:
    pool = make_pool(factory, max_size=1, min_idle=0)
    worker = threading.Thread(target=lambda: pool.checkin(pool.checkout()))
    worker.start()
    worker.join()
    assert pool.stats().idle == 1  # parked for the (finished) worker thread
    conn = pool.checkout(timeout=0.5)  # another thread takes it: no wait, no new connection
    s = pool.stats()
    assert (s.waits, s.created, s.in_use, s.idle) == (0, 1, 1, 0)
    pool.checkin(conn)
    pool.close()
    assert factory.made[0].closed


def test_a_returned_connection_goes_to_a_waiting_thread_not_to_parking(factory: Factory) -> None:
    pool = make_pool(factory, max_size=1, min_idle=0)
    held = pool.checkout()
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(pool.checkout(timeout=10)))
    waiter.start()
    deadline = time.monotonic() + 10
    while pool.stats().waits == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    pool.checkin(held)
    waiter.join(10)
    assert got == [held]
    pool.checkin(held)
    pool.close()


class PoolModel(RuleBasedStateMachine):
    """Checkout/checkin/fill/close/time sequences against a model of the pool.

    The model predicts exactly which connection a checkout returns (LIFO reuse, expired ones
    recycled on the way), and the counters after each step. One thread: the connection it
    returned last is parked for it (the top of the LIFO stack, reused without the pool lock);
    expired connections go at every step from the least recently used end, and a parked one
    as soon as it expires.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self._patch = mock.patch.object(pool_mod, "time", self.clock)
        self._patch.start()
        self.factory = Factory()
        self.pool: Pool | None = None

    @initialize(max_size=st.integers(1, 4), data=st.data(),
                idle_timeout=st.sampled_from([None, 5.0, 20.0]),
                max_lifetime=st.sampled_from([None, 10.0, 30.0]))
    def setup(self, max_size: int, data: st.DataObject, idle_timeout: float | None,
              max_lifetime: float | None) -> None:
        min_idle = data.draw(st.integers(0, max_size), label="min_idle")
        self.cfg = PoolConfig(max_size=max_size, min_idle=min_idle, idle_timeout=idle_timeout,
                              max_lifetime=max_lifetime, connection_timeout=0.01)
        self.pool = Pool(self.factory, self.cfg)
        self.idle: list[tuple[TrackedConnection, float, float]] = []  # (conn, born, returned)
        self.parked: tuple[TrackedConnection, float, float] | None = None
        self.held: list[tuple[TrackedConnection, float]] = []  # (conn, born)
        self.closed = False
        self.expect = {"created": 0, "recycled": 0, "timeouts": 0, "checkouts": 0}

    def teardown(self) -> None:
        self._patch.stop()
        if self.pool is not None:
            self.pool.close()
        self.factory.close_all()

    # model helpers
    def _expired(self, born: float, last: float | None) -> bool:
        now = self.clock.now
        if self.cfg.max_lifetime is not None and now - born > self.cfg.max_lifetime:
            return True
        return (last is not None and self.cfg.idle_timeout is not None
                and now - last > self.cfg.idle_timeout)

    @property
    def size(self) -> int:
        return len(self.idle) + len(self.held) + (self.parked is not None)

    def _unpark(self) -> None:
        if self.parked is not None:
            self.idle.append(self.parked)
            self.parked = None

    # rules
    @precondition(lambda self: self.pool is not None)
    @rule()
    def fill(self) -> None:
        before = len(self.factory.made)
        self.pool.fill()  # type: ignore[union-attr]
        new = self.factory.made[before:]
        self._unpark()
        want = 0 if self.closed else max(0, min(self.cfg.min_idle - len(self.idle),
                                                self.cfg.max_size - self.size))
        assert len(new) == want
        for conn in new:
            self.idle.append((conn, self.clock.now, self.clock.now))
        self.expect["created"] += len(new)

    def _sweep(self) -> list[TrackedConnection]:
        """The pool closes expired idle connections from the least recently used end."""
        gone = []
        while self.idle and self._expired(self.idle[0][1], self.idle[0][2]):
            gone.append(self.idle.pop(0)[0])
        if self.parked is not None and self._expired(self.parked[1], self.parked[2]):
            gone.append(self.parked[0])
            self.parked = None
        return gone

    @precondition(lambda self: self.pool is not None)
    @rule()
    def checkout(self) -> None:
        assert self.pool is not None
        if self.closed:
            with pytest.raises(hive_store.StoreClosed):
                self.pool.checkout(timeout=0)
            return
        expected: TrackedConnection | None = None
        recycled: list[TrackedConnection] = self._sweep()
        born = self.clock.now
        if self.parked is not None:
            expected, born = self.parked[0], self.parked[1]
            self.parked = None
        while self.idle and expected is None:
            conn, c_born, last = self.idle.pop()
            if self._expired(c_born, last):
                recycled.append(conn)
            else:
                expected, born = conn, c_born
        self.expect["recycled"] += len(recycled)
        if expected is None and self.size >= self.cfg.max_size:
            with pytest.raises(hive_store.PoolTimeout):
                self.pool.checkout(timeout=0)
            self.expect["timeouts"] += 1
        else:
            before = len(self.factory.made)
            got = self.pool.checkout(timeout=0)
            if expected is None:
                assert self.factory.made[before:] == [got]
                self.expect["created"] += 1
            else:
                assert got is expected
                assert len(self.factory.made) == before
            assert got.execute("SELECT 1").fetchone() == (1,)
            self.held.append((got, born))
            self.expect["checkouts"] += 1
        for conn in recycled:
            assert conn.closed

    @precondition(lambda self: self.pool is not None and self.held)
    @rule(data=st.data(), broken=st.booleans(), dirty=st.booleans())
    def checkin(self, data: st.DataObject, broken: bool, dirty: bool) -> None:
        assert self.pool is not None
        index = data.draw(st.integers(0, len(self.held) - 1), label="which")
        conn, born = self.held.pop(index)
        if dirty:
            conn.execute("BEGIN")
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS scratch (x)")
        self.pool.checkin(conn, broken=broken)
        swept = self._sweep()
        self.expect["recycled"] += len(swept)
        assert all(c.closed for c in swept)
        if broken or self.closed:
            assert conn.closed
        elif self._expired(born, None):
            assert conn.closed
            self.expect["recycled"] += 1
        else:
            assert not conn.closed
            assert not conn.in_transaction
            self._unpark()
            self.parked = (conn, born, self.clock.now)

    @precondition(lambda self: self.pool is not None)
    @rule(seconds=st.sampled_from([0.0, 1.0, 4.0, 5.0, 6.0, 10.0, 15.0, 25.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: self.pool is not None and not self.closed)
    @rule()
    def close(self) -> None:
        assert self.pool is not None
        self.pool.close()
        self._unpark()
        for conn, _, _ in self.idle:
            assert conn.closed
        for conn, _ in self.held:
            assert not conn.closed
        self.idle.clear()
        self.closed = True

    @invariant()
    def counters_match_the_model(self) -> None:
        if self.pool is None:
            return
        s = self.pool.stats()
        assert s.size == self.size == s.idle + s.in_use
        assert s.idle == len(self.idle) + (self.parked is not None)
        assert s.in_use == len(self.held)
        assert s.size <= self.cfg.max_size
        assert s.waits == 0  # timeout=0 never waits
        got = {k: getattr(s, k) for k in self.expect}
        assert got == self.expect

    @invariant()
    def open_connections_are_the_pools(self) -> None:
        if self.pool is None:
            return
        live = {id(c) for c in self.factory.open}
        mine = {id(c) for c, _, _ in [*self.idle, *filter(None, [self.parked])]} | {
            id(c) for c, _ in self.held}
        assert live == mine
        assert len(live) <= self.cfg.max_size
        assert len(self.held) == len({id(c) for c, _ in self.held})


PoolModel.TestCase.settings = settings(
    max_examples=400, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPoolModel = PoolModel.TestCase


# -- the backend's pooled connections ------------------------------------------------------------


EXPECTED_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": 1,
    "foreign_keys": 1,
    "busy_timeout": 30000,
    "cache_size": -32000,
    "mmap_size": 268435456,
    "temp_store": 2,
}


def checkout_all(store: hive_store.Store, n: int) -> list[sqlite3.Connection]:
    pool = store.backend.pool
    conns = [pool.checkout(timeout=5) for _ in range(n)]
    assert len({id(c) for c in conns}) == n
    return conns


def test_every_pooled_connection_has_the_pragmas(db_path: Path) -> None:
    with hive_store.open(f"sqlite://{db_path}", max_size=4) as store:
        conns = checkout_all(store, 4)
        try:
            for conn in conns:
                got = {name: pragma(conn, name) for name in EXPECTED_PRAGMAS}
                assert got == EXPECTED_PRAGMAS
                assert pragma(conn, "wal_autocheckpoint") == 1000
                assert conn.isolation_level is None  # autocommit; explicit BEGIN IMMEDIATE
            assert store.backend.pool.stats().size == 4
        finally:
            for conn in conns:
                store.backend.pool.checkin(conn)


def test_recycled_connections_get_the_pragmas_too(db_path: Path) -> None:
    with hive_store.open(f"sqlite://{db_path}", max_size=2, max_lifetime=0.05,
                         busy_timeout=7) as store:
        first = store.backend.pool.checkout()
        time.sleep(0.1)
        store.backend.pool.checkin(first)  # recycled on return
        conn = store.backend.pool.checkout()
        try:
            assert conn is not first
            assert store.backend.pool.stats().recycled >= 1
            assert pragma(conn, "busy_timeout") == 7000
            assert pragma(conn, "foreign_keys") == 1
            assert pragma(conn, "journal_mode") == "wal"
        finally:
            store.backend.pool.checkin(conn)


def test_durability_full_sets_synchronous_full(db_path: Path) -> None:
    with hive_store.open(f"sqlite://{db_path}", max_size=2, durability="full") as store:
        conns = checkout_all(store, 2)
        try:
            assert [pragma(c, "synchronous") for c in conns] == [2, 2]
        finally:
            for conn in conns:
                store.backend.pool.checkin(conn)


def test_new_file_is_incremental_auto_vacuum_wal_and_private(tmp_path: Path) -> None:
    path = tmp_path / "hive-ai.db"
    with hive_store.open(f"sqlite://{path}") as store:
        conv = store.conversations.add(Conversation())
        store.messages.add(Message(conversation_id=conv.id, role="user", content="x"))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        for suffix in ("-wal", "-shm"):
            side = Path(f"{path}{suffix}")
            if side.exists():
                assert stat.S_IMODE(side.stat().st_mode) == 0o600, suffix
        with store.backend.connection() as conn:
            assert pragma(conn, "auto_vacuum") == 2
    raw = sqlite3.connect(path)
    try:
        assert pragma(raw, "auto_vacuum") == 2
        assert pragma(raw, "journal_mode") == "wal"  # persistent in the file
        assert raw.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    finally:
        raw.close()


def test_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    hive_store.open(path).close()
    os.chmod(path, 0o640)
    hive_store.open(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_directory_is_not_a_database(tmp_path: Path) -> None:
    folder = tmp_path / "adir"
    folder.mkdir()
    with pytest.raises(hive_store.StorageError) as info:
        hive_store.open(f"sqlite://{folder}")
    assert not isinstance(info.value, sqlite3.Error)
    assert "\n" not in str(info.value)
    assert str(folder) in str(info.value)


@pytest.mark.parametrize("content", [os.urandom(4096), b"hello, I am a text file\n" * 100],
                         ids=["random-bytes", "text"])
def test_a_file_that_is_not_a_database(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(content)
    with pytest.raises(hive_store.CorruptDatabase) as info:
        hive_store.open(f"sqlite://{path}")
    err = info.value
    assert isinstance(err, hive_store.StorageError)
    assert not isinstance(err, sqlite3.Error)
    assert "\n" not in str(err)
    assert path.read_bytes() == content  # left untouched


def test_unwritable_parent_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(hive_store.StorageError) as info:
        hive_store.open(f"sqlite://{blocker}/sub/hive.db")
    assert "\n" not in str(info.value)


# -- :memory: ------------------------------------------------------------------------------------


def test_memory_store_is_one_database_shared_by_threads() -> None:
    with hive_store.open(":memory:") as store:
        assert store.backend.pool.config.max_size == 1
        written: list[str] = []
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                conv = store.conversations.add(Conversation())
                store.messages.add(Message(conversation_id=conv.id, role="user",
                                           content="from a thread"))
                written.append(conv.id)
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=writer)
        t.start()
        t.join(10)
        assert errors == [] and len(written) == 1

        seen: list[int] = []
        r = threading.Thread(target=lambda: seen.append(
            store.messages.count(conversation_id=written[0])))
        r.start()
        r.join(10)
        assert seen == [1]
        assert store.messages.find(conversation_id=written[0])[0].content == "from a thread"
        with store.backend.connection() as conn:
            assert pragma(conn, "foreign_keys") == 1


def test_memory_store_allows_nested_use_in_one_thread() -> None:
    with hive_store.open(":memory:", connection_timeout=0.3) as store:
        for _ in range(3):
            store.conversations.add(Conversation())
        for conv in store.conversations.iter():
            store.messages.add(Message(conversation_id=conv.id, role="user", content="x"))
            assert store.messages.count(conversation_id=conv.id) == 1
        assert store.messages.count() == 3


def test_file_store_allows_nested_use_in_one_thread(store: hive_store.Store) -> None:
    for _ in range(3):
        store.conversations.add(Conversation())
    for conv in store.conversations.iter():
        store.messages.add(Message(conversation_id=conv.id, role="user", content="x"))
        assert store.messages.count(conversation_id=conv.id) == 1
    assert store.messages.count() == 3


def test_two_memory_stores_are_separate_databases() -> None:
    with hive_store.open(":memory:") as a, hive_store.open(":memory:") as b:
        a.conversations.add(Conversation())
        assert a.conversations.count() == 1
        assert b.conversations.count() == 0


def test_memory_store_closes_cleanly() -> None:
    store = hive_store.open("sqlite:///:memory:")
    store.conversations.add(Conversation())
    store.close()
    assert store.backend.pool.stats().size == 0
    with pytest.raises(hive_store.StoreClosed):
        store.conversations.count()


# -- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [
    {"bogus": 1}, {"max_size": 0}, {"durability": "fast"}, {"min_idle": 5, "max_size": 2},
    {"connection_timeout": 0}, {"busy_timeout": 0}, {"pool_size": 3},
], ids=repr)
def test_bad_options_are_configuration_errors(tmp_path: Path, options: dict[str, Any]) -> None:
    path = tmp_path / "never.db"
    with pytest.raises(hive_store.ConfigurationError):
        hive_store.open(f"sqlite://{path}", **options)
    assert not path.exists()


@pytest.mark.parametrize("query", ["bogus=1", "max_size=0", "max_size=abc", "durability=fast"])
def test_bad_url_options_are_configuration_errors(tmp_path: Path, query: str) -> None:
    with pytest.raises(hive_store.ConfigurationError):
        hive_store.open(f"sqlite://{tmp_path}/never.db?{query}")


def test_url_query_options(tmp_path: Path) -> None:
    url = (f"sqlite://{tmp_path}/q.db?max_size=3&min_idle=2&connection_timeout=0.5"
           "&idle_timeout=none&test_on_checkout=true&durability=full&busy_timeout=2.5")
    with hive_store.open(url) as store:
        cfg = store.backend.pool.config
        assert (cfg.max_size, cfg.min_idle, cfg.connection_timeout) == (3, 2, 0.5)
        assert cfg.idle_timeout is None and cfg.test_on_checkout is True
        assert store.backend.pool.stats().idle >= 2  # min_idle filled at open
        with store.backend.connection() as conn:
            assert pragma(conn, "synchronous") == 2
            assert pragma(conn, "busy_timeout") == 2500


def test_keyword_options_override_the_url_query(tmp_path: Path) -> None:
    with hive_store.open(f"sqlite://{tmp_path}/q.db?max_size=3", max_size=5) as store:
        assert store.backend.pool.config.max_size == 5


def test_store_pool_timeout_when_all_connections_are_held(db_path: Path) -> None:
    with hive_store.open(f"sqlite://{db_path}", max_size=1, connection_timeout=0.2) as store:
        held = store.backend.pool.checkout()
        try:
            start = time.monotonic()
            with pytest.raises(hive_store.PoolTimeout):
                store.conversations.count()
            assert 0.19 <= time.monotonic() - start < 2
        finally:
            store.backend.pool.checkin(held)
        assert store.conversations.count() == 0
        s = store.backend.pool.stats()
        assert s.timeouts == 1 and s.waits >= 1
