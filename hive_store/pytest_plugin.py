"""pytest fixtures for hive-store plugin authors.

hive-store registers this module as a ``pytest11`` entry point, so pytest loads it in every test
run of an environment where hive-store is installed; nothing needs to be configured. Every
fixture is function-scoped and prefixed ``hive_`` (so none shadows the ``hive_store`` package
or a project's own ``store`` fixture):

``hive_store_plugins``
    A fresh :class:`hive_store.plugins.Plugins` for the test (the installed entry-point plugins,
    loaded on first use). The process-wide plugin set is never touched. Override this fixture
    in a ``conftest.py`` to start from something else, e.g. ``Plugins(entry_points=False)``.
``hive_store_register``
    ``register(plugin, name=None) -> str``: registers a plugin object or module on
    ``hive_store_plugins`` for this test only, and unregisters it at teardown. A plugin that
    pluggy rejects (e.g. a misspelled hook) fails the test with a :class:`hive_store.PluginError`.
``hive_store_factory``
    ``open(url=None, **options) -> Store``: opens (creating and migrating) a store with
    ``hive_store_plugins``; by default a new file under the test's ``tmp_path``, or any URL
    (``":memory:"`` too). Keyword options go to :func:`hive_store.open`. Every store it opened
    is closed at teardown, so no pooled connection, file handle or ``-wal``/``-shm`` file
    outlives the test. ``factory.stores`` lists them; ``factory.path(name)`` gives a path under
    ``tmp_path``.
``hive_new_store``
    A fresh store on a new file under ``tmp_path``, closed after the test.
``hive_new_memory_store``
    A fresh in-memory store, closed after the test.

Example (a plugin's own test)::

    import hive_store
    from my_plugin import plugin

    def test_my_hook_runs(hive_store_register, hive_store_factory):
        hive_store_register(plugin)
        store = hive_store_factory()
        store.users.add(hive_store.entities.User())
        ...

Registered plugins also apply to stores opened *before* the registration (they share the
plugin set), but hooks that run at open time (migrations, ``store_opened``) only run for
stores opened after it: register first, then open.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from hive_store.plugins import Plugins
    from hive_store.store import Store


class StoreFactory:
    """Opens stores for one test and closes them all at its end (see ``hive_store_factory``)."""

    def __init__(self, tmp_path: Path, plugins: Plugins) -> None:
        self.tmp_path = tmp_path
        self.plugins = plugins
        self.stores: list[Store] = []
        self._names = itertools.count(1)

    def path(self, name: str | None = None) -> Path:
        """A path for a database file under the test's ``tmp_path`` (not created)."""
        return self.tmp_path / (name or f"hive-store-{next(self._names)}.db")

    def __call__(self, url: str | Path | None = None, **options: Any) -> Store:
        """Open a store; ``url`` defaults to a new file under ``tmp_path``."""
        from hive_store.store import open as open_store

        if url is None:
            url = f"sqlite://{self.path()}"
        store = open_store(str(url), plugins=options.pop("plugins", self.plugins), **options)
        self.stores.append(store)
        return store

    def close_all(self) -> None:
        """Close every store opened through the factory, newest first (idempotent)."""
        errors: list[BaseException] = []
        while self.stores:
            store = self.stores.pop()
            try:
                store.close()
            except Exception as exc:  # close the others anyway, then report
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def hive_store_plugins() -> Plugins:
    """A fresh plugin set for one test (entry-point plugins, loaded on first use)."""
    from hive_store.plugins import Plugins

    return Plugins()


@pytest.fixture
def hive_store_register(hive_store_plugins: Plugins) -> Iterator[Callable[..., str]]:
    """``register(plugin, name=None) -> str``: a plugin for this test only."""
    from hive_store.errors import PluginError

    names: list[str] = []

    def register(plugin: Any, name: str | None = None) -> str:
        hive_store_plugins.ensure_loaded()
        seen = len(hive_store_plugins.failures)
        registered = hive_store_plugins.register(plugin, name=name)
        if registered is None:
            why = "; ".join(f.error for f in hive_store_plugins.failures[seen:])
            label = name or getattr(plugin, "__name__", None) or repr(plugin)
            raise PluginError(f"plugin {label!r} was not registered: {why or 'rejected'}")
        names.append(registered)
        return registered

    yield register
    for registered in reversed(names):
        hive_store_plugins.unregister(registered)


@pytest.fixture
def hive_store_factory(tmp_path: Path, hive_store_plugins: Plugins,
                       hive_store_register: Callable[..., str]) -> Iterator[StoreFactory]:
    """``open(url=None, **options) -> Store``; every store opened is closed at teardown."""
    # Requesting hive_store_register makes it outlive the factory: stores close while the
    # plugins registered for the test are still there (their store_closing hooks run).
    factory = StoreFactory(tmp_path, hive_store_plugins)
    try:
        yield factory
    finally:
        factory.close_all()


@pytest.fixture
def hive_new_store(hive_store_factory: StoreFactory) -> Store:
    """A fresh, migrated store on a new file under ``tmp_path`` (closed after the test)."""
    return hive_store_factory()


@pytest.fixture
def hive_new_memory_store(hive_store_factory: StoreFactory) -> Store:
    """A fresh, migrated in-memory store (closed after the test)."""
    return hive_store_factory(":memory:")
