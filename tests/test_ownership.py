"""Connections never cross threads (issue 14.1): iterators own their connection, transactions
belong to their thread (and to the generator that opened them), and every row a call returns
is the row asked for.

The state machine interleaves iterators (started in one thread, advanced and finished in
others, closed, abandoned to the garbage collector), transactions held open across steps,
gets, finds and writes from several threads and from asyncio tasks, on a file and on the
in-memory store, and checks every returned row against a model:

* an iterator outside a transaction on a file reads one snapshot, the committed state at its
  first step: the rows it returns are exactly that state, in key order;
* an in-memory store has one connection, so an iterator there (and one inside a transaction)
  sees changes made meanwhile on that connection: each row it returns must be a version of
  that key its connection could see at some moment of its life, in strictly increasing key
  order;
* an iterator opened inside a transaction can be advanced only by that transaction's thread
  and only while the transaction lasts: otherwise a clear ``StorageError``.
"""

from __future__ import annotations

import asyncio
import gc
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

import hive_store
from hive_store.aio import AsyncStore
from hive_store.entities import Setting
from tests.conftest import isolated_plugins

KEYS = [f"k{n}" for n in (1, 2, 3, 5, 8, 13, 21, 34, 1021, 1042)]
VALUES = st.text("abcxyz", min_size=1, max_size=4)
STEP_TIMEOUT = 20.0


class Stuck(AssertionError):
    pass


class Worker:
    """A thread that runs the calls given to it, one at a time."""

    def __init__(self, name: str) -> None:
        self.jobs: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            fn, done = job
            try:
                done.put((True, fn()))
            except BaseException as exc:  # handed to the caller
                done.put((False, exc))
            del fn, job

    def call(self, fn: Callable[[], Any]) -> Any:
        done: queue.Queue[Any] = queue.Queue()
        self.jobs.put((fn, done))
        try:
            ok, value = done.get(timeout=STEP_TIMEOUT)
        except queue.Empty:
            raise Stuck(f"{self.thread.name} did not finish a call in {STEP_TIMEOUT} s") from None
        if not ok:
            raise value
        return value

    def stop(self) -> None:
        self.jobs.put(None)
        self.thread.join(5)


@attrs.define(eq=False)
class It:
    """An iterator under test and what the model knows about it."""

    kind: str  # "sync" or "aio"
    gen: Any
    batch: int
    started: bool = False
    bound: bool = False  # opened inside the transaction that was open at its first step
    bound_tx: int = -1
    snapshot: dict[str, str] | None = None  # file, own connection: the state it reads
    start: dict[str, str] = attrs.field(factory=dict)  # what its connection saw at first step
    since: int = 0  # clock at its first step (later versions it may see are ticked after)
    last_key: str | None = None
    seen: list[tuple[str, str]] = attrs.field(factory=list)
    done: bool = False


class OwnershipMachine(RuleBasedStateMachine):
    memory = False
    path: Path | None = None

    iterators = Bundle("iterators")

    def __init__(self) -> None:
        super().__init__()
        self.workers = [Worker(f"worker-{i}") for i in range(3)]
        self.loop = asyncio.new_event_loop()
        self.loop_thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.loop_thread.start()
        url = ":memory:" if self.memory else f"sqlite://{self.path}"
        self.store = hive_store.open(url, plugins=isolated_plugins(), max_size=8,
                                     connection_timeout=STEP_TIMEOUT / 2)
        self.astore = AsyncStore(self.store, workers=2)
        self.repo = self.store.settings
        self.model: dict[str, str] = {}  # committed
        self.pending: dict[str, str] | None = None  # the open transaction's view
        self.tx_worker: int | None = None
        self.tx_cm: Any = None
        self.tx_serial = 0
        self.clock = 0
        # every value each key had on the in-memory connection / in a transaction, by clock
        self.views: dict[str, list[tuple[int, str | None]]] = {k: [(0, None)] for k in KEYS}
        self.live: list[It] = []

    # -- plumbing -------------------------------------------------------------------------------

    def aio(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(STEP_TIMEOUT)

    def tick(self, key: str, value: str | None) -> None:
        self.clock += 1
        self.views[key].append((self.clock, value))

    def visible(self) -> dict[str, str]:
        return self.pending if self.pending is not None else self.model

    def blocked(self, worker: int) -> bool:
        """Whether a call from ``worker`` would wait for the open transaction."""
        return self.tx_worker is not None and worker != self.tx_worker

    def teardown(self) -> None:
        try:
            for it in self.live:
                if it.kind == "sync":
                    self.workers[0].call(it.gen.close) if not it.bound else None
                else:
                    self.aio(it.gen.aclose())
            self.live.clear()
            if self.tx_cm is not None:
                cm = self.tx_cm
                self.workers[self.tx_worker or 0].call(lambda: cm.__exit__(None, None, None))
            self.aio(self.astore.close())
            assert self.store.closed
        finally:
            for w in self.workers:
                w.stop()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.loop_thread.join(5)
            self.loop.close()
            if not self.store.closed:
                self.store.close()

    # -- writes and reads ---------------------------------------------------------------------

    @rule(w=st.integers(0, 2), key=st.sampled_from(KEYS), value=VALUES)
    def put(self, w: int, key: str, value: str) -> None:
        if self.blocked(w):
            return
        self.workers[w].call(lambda: self.repo.upsert(Setting(key=key, value=value)))
        self.visible()[key] = value
        if self.pending is not None or self.memory:
            self.tick(key, value)

    @rule(w=st.integers(0, 2), key=st.sampled_from(KEYS))
    def delete(self, w: int, key: str) -> None:
        if self.blocked(w):
            return
        deleted = self.workers[w].call(lambda: self.repo.delete(key))
        view = self.visible()
        assert deleted == (key in view)
        view.pop(key, None)
        if self.pending is not None or self.memory:
            self.tick(key, None)

    @rule(w=st.integers(0, 2), key=st.sampled_from(KEYS))
    def get(self, w: int, key: str) -> None:
        if self.blocked(w) and self.memory:
            return
        view = self.pending if w == self.tx_worker else self.model
        assert view is not None

        def read() -> Any:
            try:
                return self.repo.get(key)
            except hive_store.NotFound:
                return None

        got = self.workers[w].call(read)
        if key in view:
            assert got is not None and got.key == key and got.value == view[key], (got, key)
        else:
            assert got is None

    @rule(w=st.integers(0, 2))
    def find_all(self, w: int) -> None:
        if self.blocked(w) and self.memory:
            return
        view = self.pending if w == self.tx_worker else self.model
        assert view is not None
        rows = self.workers[w].call(lambda: self.repo.find(order_by="key"))
        assert [(r.key, r.value) for r in rows] == sorted(view.items())

    @rule(key=st.sampled_from(KEYS))
    def aio_get(self, key: str) -> None:
        if self.tx_worker is not None and self.memory:
            return

        async def read() -> Any:
            try:
                return await self.astore.settings.get(key)
            except hive_store.NotFound:
                return None

        got = self.aio(read())
        if key in self.model:
            assert got is not None and got.key == key and got.value == self.model[key]
        else:
            assert got is None

    @rule(key=st.sampled_from(KEYS), value=VALUES)
    def aio_put(self, key: str, value: str) -> None:
        if self.tx_worker is not None:
            return
        self.aio(self.astore.settings.upsert(Setting(key=key, value=value)))
        self.model[key] = value
        if self.memory:
            self.tick(key, value)

    # -- transactions -----------------------------------------------------------------------------

    @precondition(lambda self: self.tx_worker is None)
    @rule(w=st.integers(0, 2))
    def begin(self, w: int) -> None:
        def enter() -> Any:
            cm = self.store.transaction()
            cm.__enter__()
            return cm

        self.tx_cm = self.workers[w].call(enter)
        self.tx_worker = w
        self.tx_serial += 1
        self.pending = dict(self.model)

    @precondition(lambda self: self.tx_worker is not None)
    @rule(commit=st.booleans())
    def end(self, commit: bool) -> None:
        cm, w = self.tx_cm, self.tx_worker
        assert w is not None and self.pending is not None

        class Rollback(Exception):
            pass

        def leave() -> None:
            if commit:
                cm.__exit__(None, None, None)
            else:
                err = Rollback()
                assert not cm.__exit__(Rollback, err, None)

        self.workers[w].call(leave)
        if commit:
            self.model = self.pending
        elif self.memory:
            for key in KEYS:  # the rollback restores the committed values on the connection
                if self.pending.get(key) != self.model.get(key):
                    self.tick(key, self.model.get(key))
        self.pending = None
        self.tx_worker = None
        self.tx_cm = None

    # -- iterators -------------------------------------------------------------------------------

    @precondition(lambda self: len(self.live) < 4)
    @rule(target=iterators, batch=st.integers(1, 4), aio=st.booleans(), w=st.integers(0, 2))
    def open_iterator(self, batch: int, aio: bool, w: int) -> It:
        if aio:
            it = It("aio", self.astore.settings.iter(order_by="key", batch_size=batch), batch)
        else:  # made on worker w; where it reads is decided by the thread of its first step
            it = It("sync", self.workers[w].call(
                lambda: self.repo.iter(order_by="key", batch_size=batch)), batch)
        self.live.append(it)
        return it

    def _first_step(self, it: It, w: int | None) -> None:
        it.started = True
        it.since = self.clock
        it.bound = it.kind == "sync" and w is not None and w == self.tx_worker
        it.bound_tx = self.tx_serial if it.bound else -1
        if not it.bound and not self.memory:
            it.snapshot = dict(self.model)  # its own connection's snapshot
        # what its connection sees: the transaction's view if it reads through it
        through_tx = it.bound or (self.memory and w is not None and w == self.tx_worker)
        it.start = dict(self.pending if through_tx and self.pending is not None else self.model)

    def _expect_refusal(self, it: It, w: int | None) -> bool:
        """A bound iterator advanced after its transaction, or from another thread."""
        if not it.bound:
            return False
        return it.bound_tx != self.tx_serial or self.tx_worker is None or w != self.tx_worker

    def _check_row(self, it: It, row: Any) -> None:
        key, value = row.key, row.value
        assert it.last_key is None or key > it.last_key, (it.last_key, key)
        it.last_key = key
        it.seen.append((key, value))
        if it.snapshot is not None:
            assert it.snapshot.get(key) == value, (key, value, it.snapshot.get(key))
            return
        # a version its connection could see between its first step and now
        allowed = {it.start.get(key)} | {v for c, v in self.views[key] if c > it.since}
        assert value in allowed, (key, value, self.views[key], it.since, it.start.get(key))

    def _finished(self, it: It) -> None:
        it.done = True
        if it.snapshot is not None:
            assert it.seen == sorted(it.snapshot.items())
        if it in self.live:
            self.live.remove(it)

    @rule(it=iterators, w=st.integers(0, 2), n=st.integers(1, 5))
    def advance(self, it: It, w: int, n: int) -> None:
        if it.done or it not in self.live:
            return
        if it.kind == "aio":
            if self.tx_worker is not None and self.memory:
                return  # its batches run on worker threads: they would wait for the writer
            if not it.started:
                self._first_step(it, None)

            async def take() -> list[Any]:
                out = []
                for _ in range(n):
                    try:
                        out.append(await it.gen.__anext__())
                    except StopAsyncIteration:
                        out.append(None)
                        break
                return out

            rows = self.aio(take())
        else:
            if it.started and self._expect_refusal(it, w):
                with pytest.raises(hive_store.StorageError, match="transaction"):
                    self.workers[w].call(lambda: next(it.gen))
                self.live.remove(it)
                it.done = True
                return
            if not it.bound and self.blocked(w) and self.memory:
                return  # the one connection is the transaction's: this would wait
            if not it.started:
                self._first_step(it, w)

            def take_sync() -> list[Any]:
                out = []
                for _ in range(n):
                    out.append(next(it.gen, None))
                    if out[-1] is None:
                        break
                return out

            rows = self.workers[w].call(take_sync)
        for row in rows:
            if row is None:
                self._finished(it)
                return
            self._check_row(it, row)

    @rule(it=consumes(iterators), w=st.integers(0, 2))
    def close(self, it: It, w: int) -> None:
        if it not in self.live:
            return
        if it.kind == "aio":
            self.aio(it.gen.aclose())  # never waits: closing returns or drops the connection
        else:
            self.workers[w].call(it.gen.close)
        self.live.remove(it)

    @rule(it=consumes(iterators), w=st.integers(0, 2))
    def abandon(self, it: It, w: int) -> None:
        """Drop the last reference: the garbage collector finishes it, on whatever thread."""
        if it not in self.live:
            return
        if it.kind == "aio" and it.started:
            self.live.remove(it)
            self.aio(it.gen.aclose())  # an async generator is finalised by its loop
            return
        self.live.remove(it)

        def drop() -> None:  # the last reference goes on the worker: finalised there
            it.gen = None
            gc.collect()

        self.workers[w].call(drop)

    @invariant()
    def pool_accounting(self) -> None:
        stats = self.store.backend.pool.stats()  # type: ignore[attr-defined]
        assert stats.in_use >= 0 and stats.idle >= 0
        assert stats.size <= self.store.backend.pool.config.max_size  # type: ignore[attr-defined]


class FileOwnership(OwnershipMachine):
    @initialize()
    def seed(self) -> None:
        self.put(0, "k1021", "first")
        self.put(1, "k1042", "second")


class MemoryOwnership(OwnershipMachine):
    memory = True

    @initialize()
    def seed(self) -> None:
        self.put(0, "k1021", "first")
        self.put(1, "k1042", "second")


SETTINGS = settings(max_examples=25, stateful_step_count=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


def test_connection_ownership_on_a_file(tmp_path_factory: pytest.TempPathFactory) -> None:
    counter = iter(range(10**6))

    class Machine(FileOwnership):
        def __init__(self) -> None:
            type(self).path = tmp_path_factory.mktemp("own") / f"s{next(counter)}.db"
            super().__init__()

    Machine.TestCase.settings = SETTINGS
    Machine.TestCase().runTest()


def test_connection_ownership_in_memory() -> None:
    MemoryOwnership.TestCase.settings = SETTINGS
    MemoryOwnership.TestCase().runTest()


# -- the cases of the issue, with real concurrency -------------------------------------------------


@pytest.fixture(params=["file", "memory"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    url = ":memory:" if request.param == "memory" else f"sqlite://{tmp_path / 'own.db'}"
    with hive_store.open(url, plugins=isolated_plugins(), connection_timeout=10) as store:
        store.settings.add_many(Setting(key=k, value=f"value of {k}") for k in KEYS)
        yield store


def _in_thread(fn: Callable[[], Any]) -> Any:
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


def test_an_iterator_finished_in_another_thread_leaves_its_thread_clean(any_store: Any) -> None:
    store = any_store
    for _ in range(20):
        it = store.settings.iter(order_by="key", batch_size=1)
        first = next(it)
        rest = _in_thread(lambda it=it: list(it))  # finished (and returned) elsewhere
        assert [s.key for s in [first, *rest]] == sorted(KEYS)
        for key in KEYS:  # this thread reads its own rows, never through that connection
            assert store.settings.get(key).value == f"value of {key}"
        _in_thread(lambda: store.settings.upsert(Setting(key="k1021", value="value of k1021")))
    assert store.backend.pool.stats().in_use == 0


def test_iterators_and_point_reads_from_many_threads_at_once(any_store: Any) -> None:
    """Iterators handed from thread to thread while others read and write: every row is the
    one asked for, and nothing but the rows (no "Recursive use of cursors", no crash)."""
    store = any_store
    errors: list[str] = []
    handoff: queue.Queue[Any] = queue.Queue()
    rounds = 150

    def iterate(n: int) -> None:
        for i in range(rounds):
            it = store.settings.iter(order_by="key", batch_size=2)
            got = [next(it).key]
            if i % 3 == 0:
                handoff.put((it, got))  # another thread finishes it
            elif i % 3 == 1:
                del it  # abandoned half-way
            else:
                got += [s.key for s in it]
                if got != sorted(KEYS):
                    errors.append(f"iterator {n} returned {got}")
            for key in KEYS[:3]:  # the thread that started an iterator reads on
                row = store.settings.get(key)
                if row.key != key:
                    errors.append(f"get({key!r}) after an iterator returned {row.key!r}")

    def finish() -> None:
        for _ in range(rounds // 3 * 2):
            it, got = handoff.get(timeout=30)
            got += [s.key for s in it]
            if got != sorted(KEYS):
                errors.append(f"handed-off iterator returned {got}")

    def read(n: int) -> None:
        for i in range(rounds * 4):
            key = KEYS[(i + n) % len(KEYS)]
            row = store.settings.get(key)
            if row.key != key or row.value != f"value of {key}":
                errors.append(f"get({key!r}) returned {row.key!r}")
            if i % 25 == 0:
                store.settings.upsert(Setting(key=key, value=f"value of {key}"))

    def guard(fn: Callable[..., None], *args: Any) -> threading.Thread:
        def run() -> None:
            try:
                fn(*args)
            except BaseException as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        return threading.Thread(target=run)

    threads = [guard(iterate, n) for n in range(2)] + [guard(finish)]
    threads += [guard(read, n) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive(), "a thread hung"
    assert errors == []
    gc.collect()
    assert store.backend.pool.stats().in_use == 0


def test_async_iter_runs_its_batches_anywhere_and_reads_stay_right(any_store: Any) -> None:
    store = any_store

    async def main() -> None:
        astore = AsyncStore(store, workers=4, inline_reads=False)  # gets on the workers too

        async def iterate() -> list[str]:
            return [s.key async for s in astore.settings.iter(order_by="key", batch_size=1)]

        async def reads() -> None:
            for i in range(150):
                key = KEYS[i % len(KEYS)]
                assert (await astore.settings.get(key)).key == key

        results = await asyncio.gather(*(iterate() for _ in range(4)), reads(), reads())
        for keys in results[:4]:
            assert keys == sorted(KEYS)
        astore._executor.shutdown(wait=True)

    asyncio.run(main())
    assert store.backend.pool.stats().in_use == 0


def test_a_collected_iterator_never_blocks_the_thread_that_collects_it(tmp_path: Path) -> None:
    """The garbage collector can finish an iterator while this very thread holds the pool's
    lock: returning the connection must not wait for it (it is queued, then handed back)."""
    with hive_store.open(f"sqlite://{tmp_path / 'gc.db'}", plugins=isolated_plugins()) as store:
        store.settings.add_many(Setting(key=k, value="v") for k in KEYS)
        pool = store.backend.pool  # type: ignore[attr-defined]
        it = store.settings.iter(batch_size=1)
        next(it)
        cycle: list[Any] = [it]
        cycle.append(cycle)  # only the cyclic collector can free it
        del it, cycle
        assert pool.stats().in_use == 1
        gc.disable()
        try:
            done = _in_thread(lambda: _collect_holding(pool._mutex))
        finally:
            gc.enable()
        assert done
        assert pool.stats().in_use == 0  # taken back by the next pool operation
        assert store.settings.count() == len(KEYS)


def _collect_holding(lock: Any) -> bool:
    with lock:
        gc.collect()
    return True


def test_the_async_iter_inside_an_async_transaction_reads_through_it(any_store: Any) -> None:
    async def main() -> None:
        astore = AsyncStore(any_store, workers=2)
        async with astore.transaction():
            await astore.settings.upsert(Setting(key="k0", value="in tx"))
            keys = [s.key async for s in astore.settings.iter(order_by="key", batch_size=2)]
            assert keys == sorted([*KEYS, "k0"])
        after = [s.key async for s in astore.settings.iter(order_by="key")]
        assert after == sorted([*KEYS, "k0"])  # committed
        astore._executor.shutdown(wait=True)

    asyncio.run(main())
    assert any_store.backend.pool.stats().in_use == 0


def test_an_iterator_inside_a_transaction_sees_it_and_ends_with_it(any_store: Any) -> None:
    store = any_store
    with store.transaction():
        store.settings.upsert(Setting(key="k0", value="in tx"))
        it = store.settings.iter(order_by="key", batch_size=1)
        assert next(it).key == "k0"  # sees the transaction's own write
        with pytest.raises(hive_store.StorageError, match="another thread"):
            _in_thread(lambda: next(it))
        it2 = store.settings.iter(order_by="key", batch_size=100)
        next(it2)
    with pytest.raises(hive_store.StorageError, match="has ended"):
        next(it2)  # even its already fetched rows: the transaction is over
    assert store.backend.pool.stats().in_use == 0


# -- generators suspended inside a transaction -----------------------------------------------------


def test_a_write_while_a_generator_holds_the_transaction_is_refused(any_store: Any) -> None:
    store = any_store

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
    # reads go past the suspended transaction: committed data only (file); the in-memory
    # store's one connection is the transaction's, so they wait for it (not tried here)
    if not store.backend.memory:
        assert store.settings.find_one(key="gen") is None
    gen.close()  # rolls the generator's transaction back
    assert store.settings.find_one(key="gen") is None
    assert store.settings.find_one(key="later") is None  # refused, never acknowledged
    store.settings.upsert(Setting(key="later", value="now it is written"))
    assert store.settings.get("later").value == "now it is written"

    gen = exporter()
    next(gen)
    with pytest.raises(StopIteration):
        next(gen)  # resumed: the generator's own writes commit together
    assert {store.settings.get(k).value for k in ("gen", "gen2")} == {"inside", "resumed"}


def test_context_manager_generators_keep_working(any_store: Any) -> None:
    import contextlib

    store = any_store

    @contextlib.contextmanager
    def unit_of_work() -> Any:
        with store.transaction():
            yield store

    with unit_of_work():
        store.settings.upsert(Setting(key="cm", value="1"))
        with unit_of_work():  # nested: a savepoint
            store.settings.upsert(Setting(key="cm2", value="2"))
    assert store.settings.get("cm2").value == "2"
    with pytest.raises(ZeroDivisionError), unit_of_work():
        store.settings.upsert(Setting(key="cm3", value="3"))
        raise ZeroDivisionError
    assert store.settings.find_one(key="cm3") is None
    with contextlib.ExitStack() as stack:
        stack.enter_context(store.transaction())
        store.settings.upsert(Setting(key="stack", value="4"))
    assert store.settings.get("stack").value == "4"


def test_a_coroutine_holding_a_sync_transaction_across_an_await(tmp_path: Path) -> None:
    with hive_store.open(f"sqlite://{tmp_path / 'co.db'}", plugins=isolated_plugins()) as store:
        async def holder(started: asyncio.Event, go: asyncio.Event) -> None:
            with store.transaction():
                store.settings.upsert(Setting(key="co", value="holder"))
                started.set()
                await go.wait()  # other tasks run on this thread meanwhile

        async def main() -> str:
            started, go = asyncio.Event(), asyncio.Event()
            task = asyncio.create_task(holder(started, go))
            await started.wait()
            try:
                store.settings.upsert(Setting(key="other", value="task"))
                outcome = "joined"
            except hive_store.StorageError as exc:
                outcome = str(exc)
            go.set()
            await task
            return outcome

        outcome = asyncio.run(main())
        assert "suspended" in outcome and "holder()" in outcome
        assert store.settings.get("co").value == "holder"
        assert store.settings.find_one(key="other") is None


def test_a_generator_resumed_in_another_thread_cannot_use_its_transaction(
        tmp_path: Path) -> None:
    with hive_store.open(f"sqlite://{tmp_path / 'g.db'}", plugins=isolated_plugins(),
                         connection_timeout=30) as store:
        def gen() -> Any:
            with store.transaction():
                store.settings.upsert(Setting(key="a", value="1"))
                yield
                store.settings.upsert(Setting(key="b", value="2"))  # now on another thread
                yield

        g = gen()
        next(g)
        with pytest.raises(hive_store.StorageError, match="another thread"):
            _in_thread(lambda: next(g))  # refused at once, no wait for the write lock
        assert store.settings.find_one(key="a") is None  # rolled back, nothing committed
        store.settings.upsert(Setting(key="c", value="3"))  # the writer is free again
        assert store.settings.count() == 1
