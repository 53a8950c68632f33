"""Transactions: atomicity, savepoints, rollback on any failure (property-based)."""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hive_store
from hive_store.entities import Conversation, Setting, User
from tests.conftest import BACKENDS


class Boom(Exception):
    pass


def snapshot(store: hive_store.Store) -> dict[str, list]:
    return {t: sorted(map(repr, store.repo(store.entities[t]).find()))
            for t in ("users", "settings", "conversations")}


OPS = st.lists(
    st.tuples(st.sampled_from(["add_user", "upsert_setting", "update_setting", "delete_setting",
                               "add_conv", "bad_fk", "nested_fail"]),
              st.integers(0, 5)),
    max_size=12,
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, fail_at=st.integers(0, 12))
def test_failed_transaction_leaves_db_exactly_as_before(any_store: hive_store.Store,
                                                        ops: list, fail_at: int) -> None:
    s = any_store
    s.settings.upsert(Setting(key="k0", value="start"))
    before = snapshot(s)
    with pytest.raises((Boom, hive_store.HiveStoreError)), s.transaction():
        for i, (op, n) in enumerate(ops):
            if i == fail_at:
                raise Boom
            apply(s, op, n)
        raise Boom
    assert snapshot(s) == before


@pytest.fixture(params=BACKENDS)
def empty_pair(request: pytest.FixtureRequest) -> Iterator[Any]:
    """``with empty_pair() as (a, b)``: two empty stores of one backend, for one example."""
    if request.param != "postgresql":
        def files() -> Iterator[str]:
            while True:
                if request.param == "sqlite-memory":
                    yield ":memory:"
                    continue
                path = request.getfixturevalue("tmp_path") / f"{hive_store.uuid7()}.db"
                shutil.copy(request.getfixturevalue("_migrated_template"), path)
                yield f"sqlite://{path}"

        names = files()

        @contextlib.contextmanager
        def pair() -> Iterator[tuple[hive_store.Store, hive_store.Store]]:
            with hive_store.open(next(names)) as a, hive_store.open(next(names)) as b:
                yield a, b

        yield pair
        return
    from tests import pg_support

    urls = [pg_support.new_database(), pg_support.new_database()]
    stores = [hive_store.open(url) for url in urls]

    @contextlib.contextmanager
    def pg_pair() -> Iterator[tuple[hive_store.Store, hive_store.Store]]:
        for store in stores:  # emptied, not made anew: a database per example takes 0.1 s
            with store.backend.connection() as conn:
                for table in ("conversations", "users", "settings"):
                    conn.execute(f"DELETE FROM {table}")
        yield stores[0], stores[1]

    yield pg_pair
    for store, url in zip(stores, urls, strict=True):
        store.close()
        pg_support.drop(url)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_committed_transaction_equals_the_same_ops_without_one(empty_pair: Any,
                                                                ops: list) -> None:
    """The model: ops in a transaction (failed ones as savepoints) == ops one by one."""
    with empty_pair() as (a, b):
        with a.transaction():
            for op, n in ops:
                try:
                    with a.transaction():
                        apply(a, op, n, ids="fixed")
                except (Boom, hive_store.HiveStoreError):
                    pass
        for op, n in ops:
            with contextlib.suppress(Boom, hive_store.HiveStoreError):
                apply(b, op, n, ids="fixed")
        assert snapshot(a) == snapshot(b)


def apply(s: hive_store.Store, op: str, n: int, ids: str = "") -> None:
    if op == "add_user":
        s.users.add(User(id=f"user-{n}" if ids else hive_store.uuid7(), email=None,
                         created_at=None, updated_at=None))
    elif op == "upsert_setting":
        s.settings.upsert(Setting(key=f"k{n}", value=f"v{n}", updated_at=None))
    elif op == "update_setting":
        s.settings.update(f"k{n}", value="changed")
    elif op == "delete_setting":
        s.settings.delete(f"k{n}")
    elif op == "add_conv":
        s.conversations.add(Conversation(id=f"c-{n}", user_id=None, created_at=None,
                                         updated_at=None))
    elif op == "bad_fk":
        s.conversations.add(Conversation(user_id="nobody"))
    elif op == "nested_fail":
        with s.transaction():
            s.settings.upsert(Setting(key="nested", value="x", updated_at=None))
            raise Boom


def test_nested_savepoint_rolls_back_only_inner(any_store: hive_store.Store) -> None:
    store = any_store
    with store.transaction():
        store.users.add(User(id="outer"))
        with pytest.raises(Boom), store.transaction():
            store.users.add(User(id="inner"))
            raise Boom
        store.users.add(User(id="after"))
    assert sorted(u.id for u in store.users.find()) == ["after", "outer"]


def test_a_failed_call_inside_a_transaction_keeps_the_transaction(
        any_store: hive_store.Store) -> None:
    store = any_store
    with store.transaction():
        store.users.add(User(id="a"))
        with pytest.raises(hive_store.Conflict):
            store.users.add(User(id="a"))
        store.users.add(User(id="b"))
    assert store.users.count() == 2


def test_transactions_are_per_thread(isolated_store: hive_store.Store) -> None:
    store = isolated_store
    seen: list[int] = []
    inside = threading.Event()
    release = threading.Event()

    def writer() -> None:
        with store.transaction():
            store.users.add(User(id="t1"))
            inside.set()
            release.wait(5)

    t = threading.Thread(target=writer)
    t.start()
    assert inside.wait(5)
    seen.append(store.users.count())  # another thread: does not see uncommitted rows
    release.set()
    t.join()
    seen.append(store.users.count())
    assert seen == [0, 1]


def test_keyboard_interrupt_rolls_back(any_store: hive_store.Store) -> None:
    store = any_store
    with pytest.raises(KeyboardInterrupt), store.transaction():
        store.users.add(User(id="x"))
        raise KeyboardInterrupt
    assert store.users.count() == 0
    store.users.add(User(id="y"))  # the writer is free again
    assert store.backend.pool_stats()["in_use"] == 0
