"""The asyncio façade: same API, blocking work off the loop (point reads inline only when they
cannot wait), cancellation never half-applies."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import hive_store
import hive_store.aio
from hive_store import StageOutput
from hive_store.entities import Stage, User


def run(coro):  # no pytest-asyncio dependency: one loop per test
    return asyncio.run(coro)


def test_async_crud_and_domain(db_path: Path) -> None:
    async def main() -> None:
        async with await hive_store.aio.open(f"sqlite://{db_path}") as store:
            user = await store.users.add(User(email="a@b.c"))
            assert await store.users.get(user.id) == user
            assert await store.users.count() == 1
            assert await store.repo(User).find(email="a@b.c") == [user]
            run_ = await store.record_consensus(
                "q", [StageOutput(stage=s, model="m", answer=s.value) for s in Stage])
            assert len(await store.messages.find(conversation_id=run_.conversation_id)) == 5
            got = [m async for m in store.messages.iter(batch_size=2)]
            assert len(got) == 5
            with pytest.raises(hive_store.NotFound):
                await store.users.get("missing")

    run(main())


def test_calls_run_off_the_event_loop_thread(db_path: Path) -> None:
    async def main() -> None:
        store = await hive_store.aio.open(f"sqlite://{db_path}")
        loop_thread = threading.get_ident()
        seen: list[int] = []
        orig = store.sync.users.count

        def spy(**kw: object) -> int:
            seen.append(threading.get_ident())
            return orig(**kw)

        store.sync.__dict__["users"] = type("R", (), {"count": staticmethod(spy)})()
        store._repos.clear()
        await store.users.count()
        store.sync.__dict__["users"] = orig.__self__
        await store.close()
        assert seen and loop_thread not in seen

    run(main())


def spy_threads(store: hive_store.aio.AsyncStore) -> tuple[list[int], list[int]]:
    """Record the threads that run the users repository's get and get_nowait."""
    repo = store.sync.users
    threads: tuple[list[int], list[int]] = ([], [])
    get, nowait = repo.get, repo.get_nowait

    def spy_get(key: object) -> object:
        threads[0].append(threading.get_ident())
        return get(key)

    def spy_nowait(key: object) -> object:
        threads[1].append(threading.get_ident())
        return nowait(key)

    store.sync.__dict__["users"] = type("R", (), {"get": staticmethod(spy_get),
                                                  "get_nowait": staticmethod(spy_nowait)})()
    store._repos.clear()
    return threads


def test_point_reads_run_inline_only_when_they_cannot_wait(db_path: Path) -> None:
    async def main() -> None:
        store = await hive_store.aio.open(f"sqlite://{db_path}", max_size=1)
        user = await store.users.add(User(email="a@b.c"))
        loop_thread = threading.get_ident()
        via_thread, inline = spy_threads(store)
        assert await store.users.get(user.id) == user  # a connection is idle: on the loop
        assert inline == [loop_thread] and via_thread == []
        with pytest.raises(hive_store.NotFound):
            await store.users.get("missing")  # answered inline too

        # The only connection is busy in a worker: the read waits in a thread, not the loop.
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            with store.sync.backend.connection():
                holding.set()
                release.wait(10)

        held = asyncio.get_running_loop().run_in_executor(None, hold)
        await asyncio.get_running_loop().run_in_executor(None, holding.wait, 10)
        pending = asyncio.ensure_future(store.users.get(user.id))
        await asyncio.sleep(0.05)
        assert not pending.done()  # the loop is free meanwhile
        release.set()
        assert await pending == user and len(via_thread) == 1 and via_thread[0] != loop_thread
        await held
        await store.close()

    run(main())


def test_reads_inside_a_transaction_see_its_writes(db_path: Path) -> None:
    async def main() -> None:
        async with await hive_store.aio.open(f"sqlite://{db_path}") as store:
            loop_thread = threading.get_ident()
            async with store.transaction():
                await store.users.add(User(id="new"))
                via_thread, inline = spy_threads(store)
                assert (await store.users.get("new")).id == "new"  # on the transaction's thread
                assert inline == [] and via_thread and loop_thread not in via_thread
            store.sync.__dict__["users"] = store.sync.backend.repository(
                store.sync.codec(User))
            store._repos.clear()
            assert (await store.users.get("new")).id == "new"

    run(main())


def test_inline_reads_can_be_turned_off(db_path: Path) -> None:
    async def main() -> None:
        store = await hive_store.aio.open(f"sqlite://{db_path}", inline_reads=False)
        user = await store.users.add(User())
        via_thread, inline = spy_threads(store)
        assert await store.users.get(user.id) == user
        assert inline == [] and via_thread and threading.get_ident() not in via_thread
        await store.close()

    run(main())


def test_async_transaction_commit_and_rollback(db_path: Path) -> None:
    async def main() -> None:
        async with await hive_store.aio.open(f"sqlite://{db_path}") as store:
            async with store.transaction():
                await store.users.add(User(id="a"))
                await store.users.add(User(id="b"))
            with pytest.raises(RuntimeError):
                async with store.transaction():
                    await store.users.add(User(id="c"))
                    raise RuntimeError("boom")
            async with store.transaction():
                await store.users.add(User(id="d"))
                with pytest.raises(hive_store.Conflict):
                    async with store.transaction():
                        await store.users.add(User(id="e"))
                        await store.users.add(User(id="a"))
            assert sorted(u.id for u in await store.users.find()) == ["a", "b", "d"]

    run(main())


def test_cancelled_task_never_leaves_a_half_applied_transaction(db_path: Path) -> None:
    async def main() -> None:
        async with await hive_store.aio.open(f"sqlite://{db_path}") as store:
            started = asyncio.Event()

            async def writer() -> None:
                async with store.transaction():
                    await store.users.add(User(id="first"))
                    started.set()
                    await asyncio.sleep(10)  # cancelled here
                    await store.users.add(User(id="second"))

            task = asyncio.create_task(writer())
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await store.users.count() == 0
            await store.users.add(User(id="later"))  # the writer lock was released
            assert await store.users.count() == 1

            # a single call whose awaiting task is cancelled still completes atomically
            batch = [User(id=f"u{i}") for i in range(500)]
            t2 = asyncio.create_task(store.users.add_many(batch))
            await asyncio.sleep(0)
            t2.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t2
            await asyncio.sleep(0.5)
            assert (await store.users.count()) in (1, 501)

    run(main())


# -- the API surface: AsyncStore has everything Store has ---------------------------------------

ASYNC_ONLY = {"sync", "inline_reads"}  # the Store underneath; the point-read switch
SAME_ON_BOTH = {"repo", "codec", "service", "attach_service", "detach_service"}  # no I/O


def _public(obj: object) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")}


def _params(fn: object) -> list[tuple[str, object, object]]:
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in sig.parameters.values() if p.name != "self"]


def test_async_store_has_everything_store_has(db_path: Path) -> None:
    """A public name added to Store (or AsyncStore) fails here until the other has it: the
    same names, coroutines for what does I/O, the same parameters."""
    from hive_store.aio import AsyncRepository, AsyncService, AsyncStore
    from hive_store.store import Store

    async def main() -> None:
        async with await hive_store.aio.open(f"sqlite://{db_path}") as astore:
            store = astore.sync
            assert "memory" in store.services  # a plugin's service is part of the surface
            sync_names = _public(store) | set(Store.__annotations__)
            async_names = _public(astore) | set(AsyncStore.__annotations__)
            assert sync_names - async_names == set(), "AsyncStore lacks these"
            assert async_names - sync_names == ASYNC_ONLY, "Store lacks these"
            for name in sorted(sync_names):
                static = inspect.getattr_static(Store, name, None)
                astatic = inspect.getattr_static(AsyncStore, name, None)
                if name in store.entities:
                    repo = getattr(astore, name)
                    assert isinstance(repo, AsyncRepository) and repo._repo is getattr(store, name)
                    assert AsyncStore.__annotations__[name] == \
                        "Async" + Store.__annotations__[name], name
                elif name in store.services:
                    view = getattr(astore, name)
                    assert isinstance(view, AsyncService) and view.sync is store.services[name]
                elif static is None or isinstance(static, property):  # attributes
                    assert isinstance(astatic, property), name
                    if name == "services":
                        assert astore.services.keys() == store.services.keys()
                    else:
                        assert getattr(astore, name) == getattr(store, name), name
                elif name == "transaction":
                    assert inspect.isasyncgenfunction(astatic.__wrapped__)
                else:
                    assert inspect.isfunction(static) and inspect.isfunction(astatic), name
                    if name in SAME_ON_BOTH:
                        assert not inspect.iscoroutinefunction(astatic), name
                    else:
                        assert inspect.iscoroutinefunction(astatic), f"{name} must be a coroutine"
                    assert _params(static) == _params(astatic), name
                    assert inspect.getdoc(astatic), f"AsyncStore.{name} needs a docstring"

    run(main())


def test_async_repository_has_everything_a_repository_has() -> None:
    from hive_store.aio import AsyncRepository
    from hive_store.backend import Repository

    names = {n for n, v in vars(Repository).items()
             if not n.startswith("_") and inspect.isfunction(v)}
    assert names == _public(AsyncRepository)
    for name in names:
        method = getattr(AsyncRepository, name)
        kind = inspect.isasyncgenfunction if name == "iter" else inspect.iscoroutinefunction
        assert kind(method), name
        assert _params(getattr(Repository, name)) == _params(method), name


def test_aio_after_a_plain_import_loads_no_plugin() -> None:
    code = (
        "import sys, asyncio, hive_store\n"
        "assert 'hive_store.aio' not in sys.modules\n"
        "aio = hive_store.aio\n"
        "assert aio is sys.modules['hive_store.aio'] and 'aio' in hive_store.__all__\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('hive_store_'))\n"
        "assert loaded == [], loaded\n"
        "async def main():\n"
        "    async with await hive_store.aio.open(':memory:') as s:\n"
        "        return await s.conversations.count()\n"
        "assert asyncio.run(main()) == 0\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
