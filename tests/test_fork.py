"""A store used after ``os.fork()`` (issue 14.6): the child gets a clear error at once (no hang,
nothing written through the parent's connections), the parent goes on and loses nothing.

Real ``os.fork()`` while other threads of the parent read and write; every child reports what
each operation did through a pipe and is killed if it hangs.
"""

from __future__ import annotations

import json
import os
import select
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import hive_store
from hive_store.entities import Setting

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")

CHILD_SECONDS = 30.0


def _child(store: hive_store.Store, write_fd: int, inside: Any) -> None:
    """Runs in the child: try everything, report what happened, exit without cleanup."""
    outcome: dict[str, str] = {}

    def attempt(name: str, fn: Any) -> None:
        try:
            fn()
            outcome[name] = "ok"
        except hive_store.HiveStoreError as exc:
            outcome[name] = f"{type(exc).__name__}: {exc}"
        except BaseException as exc:  # anything else is a failure of the test
            outcome[name] = f"UNEXPECTED {type(exc).__name__}: {exc}"

    if inside is not None:
        attempt("inside", inside)
    attempt("get", lambda: store.settings.get("parent-0"))
    attempt("find", lambda: store.settings.find())
    attempt("add", lambda: store.settings.add(Setting(key="child", value="lost?")))
    attempt("iter", lambda: list(store.settings.iter()))
    attempt("transaction", lambda: store.transaction().__enter__())
    attempt("status", store.status)
    attempt("close", store.close)
    os.write(write_fd, json.dumps(outcome).encode())
    os.close(write_fd)
    os._exit(0)


def _fork_and_collect(store: hive_store.Store, inside: Any = None) -> dict[str, str]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        try:
            _child(store, write_fd, inside)
        finally:
            os._exit(3)
    os.close(write_fd)
    deadline = time.monotonic() + CHILD_SECONDS
    data = b""
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_fd], [], [], 0.5)
            if ready:
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    break
                data += chunk
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"the child hung for {CHILD_SECONDS} s")
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, data
    result: dict[str, str] = json.loads(data)
    return result


def _all_refused(outcome: dict[str, str]) -> None:
    for name, what in outcome.items():
        if name == "close":
            assert what == "ok", outcome  # closing the inherited store is allowed, and harmless
            continue
        assert what.startswith("ForkedStore: "), (name, what)
        assert "os.fork()" in what and "open its own store" in what


def test_a_store_used_after_fork_is_refused_in_the_child_while_threads_work(
        tmp_path: Path) -> None:
    path = tmp_path / "fork.db"
    acked: list[str] = []
    errors: list[str] = []
    stop = threading.Event()
    with hive_store.open(f"sqlite://{path}") as store:  # every installed plugin, threads too
        def writer(n: int) -> None:
            i = 0
            while not stop.is_set():
                key = f"w{n}-{i}"
                try:
                    store.settings.add(Setting(key=key, value="parent"))
                    acked.append(key)
                    store.settings.get(key)
                    for _ in store.settings.iter(batch_size=50):
                        pass
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                i += 1

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        try:
            for round_ in range(6):
                store.settings.upsert(Setting(key=f"parent-{round_}", value="x"))
                if round_ % 2:
                    _all_refused(_fork_and_collect(store))
                    continue
                # forked inside a transaction of the forking thread: the child must not write
                # into it (a write the parent never sees), nor commit it
                with store.transaction():
                    store.settings.upsert(Setting(key=f"tx-{round_}", value="parent"))
                    outcome = _fork_and_collect(
                        store, inside=lambda: store.settings.upsert(
                            Setting(key="child-in-tx", value="lost?")))
                    store.settings.upsert(Setting(key=f"tx-{round_}-after", value="parent"))
                _all_refused(outcome)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert errors == []
        keys = {s.key for s in store.settings.iter()}
        assert set(acked) <= keys  # every acknowledged write of the parent is there
        assert {f"tx-{r}" for r in (0, 2, 4)} | {f"tx-{r}-after" for r in (0, 2, 4)} <= keys
        assert not {"child", "child-in-tx"} & keys
        assert store.backend.check_integrity(full=True)["ok"]


def test_a_child_inside_an_inherited_transaction_gets_the_error_from_the_block(
        tmp_path: Path) -> None:
    """A child that ends the inherited ``with store.transaction()`` block: neither commit nor
    rollback reaches the parent's connection; the block raises."""
    path = tmp_path / "fork-tx.db"
    with hive_store.open(f"sqlite://{path}") as store:
        read_fd, write_fd = os.pipe()
        with store.transaction():
            store.settings.upsert(Setting(key="parent", value="in tx"))
            pid = os.fork()
            if pid == 0:
                try:
                    try:
                        with store.transaction():  # nested: a savepoint in the child
                            pass
                        outcome = "nested ok"
                    except hive_store.HiveStoreError as exc:
                        outcome = type(exc).__name__
                    os.write(write_fd, outcome.encode())
                finally:
                    os._exit(0)
            os.close(write_fd)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert os.read(read_fd, 100) == b"ForkedStore"
            os.close(read_fd)
            store.settings.upsert(Setting(key="parent-2", value="in tx"))
        assert {s.key for s in store.settings.find()} == {"parent", "parent-2"}
