"""The conformance kit for backend plugins (``hive_store.testing``) run against our SQLite
backend, proof that it catches broken backends, and the pytest fixtures for plugin authors
(``hive_store.pytest_plugin``)."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

import hive_store
from hive_store.entities import User
from hive_store.plugins import get_plugins
from hive_store.testing import RepositoryMachine, machine_for

pytest_plugins = ["pytester"]

MACHINE_SETTINGS = dict(max_examples=20, stateful_step_count=30, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def _template() -> Path:
    """A migrated database, made once per test process; examples start from copies of it."""
    folder = Path(tempfile.mkdtemp(prefix="hive-conformance-"))
    atexit.register(shutil.rmtree, folder, True)
    hive_store.open(f"sqlite://{folder / 'template.db'}").close()
    return folder / "template.db"


class SQLiteFileMachine(RepositoryMachine):
    """The SQLite backend on a file, with the close-and-reopen rule."""

    persistent = True

    def make_store(self) -> hive_store.Store:
        folder = Path(tempfile.mkdtemp(prefix="hive-conformance-"))
        shutil.copy(_template(), folder / "hive-ai.db")
        return hive_store.open(f"sqlite://{folder / 'hive-ai.db'}")

    def dispose_store(self, store: hive_store.Store) -> None:
        store.close()
        shutil.rmtree(Path(store.backend.path).parent, ignore_errors=True)  # type: ignore[attr-defined]


SQLiteMemoryMachine = machine_for(lambda: hive_store.open(":memory:"), name="SQLiteMemory")

MACHINE_TABLES = ("messages", "conversation_topics", "conversations", "users", "settings")


@functools.cache
def _pg_database() -> str:
    """One database per test process for the PostgreSQL machine; emptied for each example."""
    from tests import pg_support

    url = pg_support.new_database()
    atexit.register(pg_support.drop, url)
    return url


class PostgresMachine(RepositoryMachine):
    """The PostgreSQL backend, with the close-and-reopen rule. PostgreSQL text cannot hold
    NUL characters: the backend refuses them (tests/test_postgres.py), the machine draws none."""

    persistent = True
    text_excludes = "\x00"

    def make_store(self) -> hive_store.Store:
        from tests import pg_support

        url = _pg_database()
        pg_support.reset(url, MACHINE_TABLES)
        return hive_store.open(url)

TestSQLiteFile = SQLiteFileMachine.TestCase
TestSQLiteFile.settings = settings(**MACHINE_SETTINGS)  # type: ignore[arg-type]
TestSQLiteMemory = SQLiteMemoryMachine.TestCase
TestSQLiteMemory.settings = settings(**MACHINE_SETTINGS)  # type: ignore[arg-type]
TestPostgres = PostgresMachine.TestCase
TestPostgres.settings = settings(**MACHINE_SETTINGS)  # type: ignore[arg-type]


# -- the kit finds bugs: two sabotaged stores -----------------------------------------------------


class _LossyDelete:
    """A repository whose delete says it deleted but keeps the row."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def delete(self, entity_or_key: Any) -> bool:
        codec = self.inner.codec
        key = (codec.key_of(entity_or_key) if isinstance(entity_or_key, codec.cls)
               else entity_or_key)
        return self.inner.get_many([key]) != []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _lossy_delete_store() -> hive_store.Store:
    store = hive_store.open(":memory:")
    for table in ("users", "settings", "conversations", "messages", "conversation_topics"):
        store.__dict__[table] = _LossyDelete(store.__dict__[table])
    return store


def _leaky_rollback_store() -> hive_store.Store:
    """A store whose transactions commit what they did before an exception."""
    store = hive_store.open(":memory:")
    real = store.transaction

    @contextlib.contextmanager
    def leaky() -> Iterator[hive_store.Store]:
        failure: BaseException | None = None
        with real():
            try:
                yield store
            except BaseException as exc:
                failure = exc
        if failure is not None:
            raise failure

    store.transaction = leaky  # type: ignore[method-assign]
    return store


@pytest.mark.parametrize("factory", [_lossy_delete_store, _leaky_rollback_store],
                         ids=["lossy-delete", "leaky-rollback"])
def test_the_machine_catches_a_broken_backend(factory: Any) -> None:
    broken = machine_for(factory, name="Broken")
    with pytest.raises(AssertionError):
        run_state_machine_as_test(broken, settings=settings(
            max_examples=300, stateful_step_count=50, deadline=None, database=None,
            derandomize=True,
            phases=[Phase.generate], report_multiple_bugs=False,
            suppress_health_check=list(HealthCheck)))


def test_make_store_must_be_provided() -> None:
    with pytest.raises(NotImplementedError, match="make_store"):
        RepositoryMachine()


# -- the pytest plugin ----------------------------------------------------------------------------


def test_the_plugin_is_loaded_in_our_own_runs(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.has_plugin("hive_store")


def test_fixtures_give_fresh_migrated_stores(hive_new_store: hive_store.Store,
                                             hive_new_memory_store: hive_store.Store,
                                             tmp_path: Path) -> None:
    assert hive_new_store.backend.path.parent == tmp_path  # type: ignore[attr-defined]
    assert hive_new_memory_store.url.memory
    for s in (hive_new_store, hive_new_memory_store):
        assert s.schema_version() >= 1 and s.users.count() == 0
        s.users.add(User(id="only-here"))
    assert hive_new_store.plugins is not get_plugins()


def _fds_under(folder: Path) -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(folder)):
                out.append(target)
    return out


PLUGIN_TEST = '''
import attrs
import pytest
from typing import ClassVar

import hive_store
from hive_store.migrations import MigrationSet

EVENTS = []
OPENED = []


@attrs.frozen(kw_only=True)
class Note:
    __table__: ClassVar[str] = "plugin_notes"
    __pk__: ClassVar[str] = "id"
    id: str
    text: str


class NotesPlugin:
    @hive_store.hookimpl
    def hive_store_register_entities(self):
        return [Note]

    @hive_store.hookimpl
    def hive_store_register_migrations(self):
        return [MigrationSet.from_sql("plugin_notes", [
            ("0001_notes.sql",
             "CREATE TABLE plugin_notes (id TEXT PRIMARY KEY, text TEXT NOT NULL);")
        ], ("hive_store",))]

    @hive_store.hookimpl
    def hive_store_store_closing(self, store):
        EVENTS.append(("closing", str(store.url)))


class Misspelled:
    @hive_store.hookimpl
    def hive_store_register_entitys(self):
        return []


def test_a_plugin_for_one_test(hive_store_register, hive_store_factory, hive_new_memory_store):
    name = hive_store_register(NotesPlugin(), name="notes")
    assert name == "notes"
    on_file = hive_store_factory()
    on_file.repo(Note).add(Note(id="n1", text="hello"))
    assert on_file.repo(Note).get("n1").text == "hello"
    on_memory = hive_store_factory(":memory:", max_size=1)
    assert on_memory.repo(Note).count() == 0
    left_open = hive_store_factory(hive_store_factory.path("third.db"))
    OPENED.extend([on_file, on_memory, left_open, hive_new_memory_store])
    assert len(hive_store_factory.stores) == 4  # hive_new_memory_store came from it too


def test_every_store_of_the_previous_test_was_closed_with_its_plugin_present(
        hive_store_plugins):
    assert len(OPENED) == 4 and all(s.closed for s in OPENED)
    # closing happened while the plugin was still registered: its store_closing hook ran for
    # all four stores, including the one opened (by a fixture) before it was registered
    assert len(EVENTS) == 4
    # and this test has a fresh plugin set without it
    hive_store_plugins.ensure_loaded()
    assert hive_store_plugins.pm.get_plugin("notes") is None


def test_the_process_wide_plugins_never_saw_it():
    from hive_store.plugins import get_plugins
    assert get_plugins().pm.get_plugin("notes") is None


def test_a_rejected_plugin_fails_loudly(hive_store_register):
    with pytest.raises(hive_store.PluginError, match="unknown hook"):
        hive_store_register(Misspelled(), name="misspelled")
'''


def test_plugin_author_fixtures_register_open_and_close_everything(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plugin_author=PLUGIN_TEST)
    threads_before = {t.ident for t in threading.enumerate()}
    result = pytester.runpytest("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=4)
    # nothing the inner session opened is still open: no database file, WAL or shm handle
    assert _fds_under(pytester.path) == []
    leaked = [t for t in threading.enumerate() if t.ident not in threads_before]
    assert leaked == []
    assert get_plugins().pm.get_plugin("notes") is None
