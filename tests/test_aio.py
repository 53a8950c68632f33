"""The asyncio façade: same API, never blocks the loop, cancellation never half-applies."""

from __future__ import annotations

import asyncio
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
