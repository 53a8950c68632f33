"""Services plugins attach to a store (the ``hive_store_services`` hook): ``store.<name>`` and
``astore.<name>``, name checks, isolation, the end of a service with its store."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import hive_store
import hive_store.aio
from hive_store.plugins import Plugins
from tests.conftest import isolated_plugins


class Counter:
    """A small service: a method that reads the store, one that blocks, a plain attribute."""

    label = "counter"

    def __init__(self, store: hive_store.Store) -> None:
        self.store = store
        self.closed = False
        self.threads: list[int] = []

    def users(self) -> int:
        self.threads.append(threading.get_ident())
        return self.store.users.count()

    def close(self) -> None:
        self.closed = True


class CounterPlugin:
    def __init__(self) -> None:
        self.made: list[Counter] = []
        self.opened_with: list[object] = []

    @hive_store.hookimpl
    def hive_store_services(self, store: hive_store.Store) -> dict[str, object]:
        self.made.append(Counter(store))
        return {"counter": self.made[-1]}

    @hive_store.hookimpl
    def hive_store_store_opened(self, store: hive_store.Store) -> None:
        # every service is attached before the opened hooks run
        self.opened_with.append(store.services.get("counter"))

    @hive_store.hookimpl
    def hive_store_store_closing(self, store: hive_store.Store) -> None:
        counter = store.services.get("counter")
        if isinstance(counter, Counter) and counter in self.made:
            counter.close()


def open_with(tmp_path: Path, *plugins: object) -> hive_store.Store:
    return hive_store.open(f"sqlite://{tmp_path / 's.db'}", plugins=isolated_plugins(*plugins))


def test_a_service_is_an_attribute_until_the_store_closes(tmp_path: Path) -> None:
    plugin = CounterPlugin()
    store = open_with(tmp_path, plugin)
    counter = plugin.made[0]
    assert store.counter is counter and store.services == {"counter": counter}
    assert plugin.opened_with == [counter]
    assert store.service("counter") is counter and store.service("counter", Counter) is counter
    assert "counter" in dir(store)
    assert store.counter.users() == 0
    with pytest.raises(hive_store.ConfigurationError, match="not a dict"):
        store.service("counter", dict)
    with pytest.raises(hive_store.ConfigurationError, match=r"no service 'nope'.*counter"):
        store.service("nope")
    with pytest.raises(AttributeError, match="services: counter"):
        _ = store.nope
    store.close()
    assert counter.closed  # its plugin closed it in hive_store_store_closing
    assert store.services == {} and "counter" not in store.__dict__
    with pytest.raises(hive_store.StoreClosed):
        _ = store.counter
    with pytest.raises(hive_store.StoreClosed):
        store.service("counter")
    with pytest.raises(hive_store.StoreClosed):
        counter.users()  # a reference kept past close() reaches a closed backend
    with pytest.raises(AttributeError):  # other names stay AttributeError (hasattr works)
        _ = store.never_attached
    assert not hasattr(store, "never_attached")


@pytest.mark.parametrize("name, why", [
    ("users", "taken by the store"),        # a table
    ("transaction", "taken by the store"),  # a method
    ("backend", "taken by the store"),      # an instance attribute
    ("_private", "identifier not starting"),
    ("not a name", "identifier"),
    ("class", "identifier"),
])
def test_a_taken_or_bad_name_is_a_plugin_failure(tmp_path: Path, name: str, why: str) -> None:
    intruder = object()

    class Bad:
        @hive_store.hookimpl
        def hive_store_services(self) -> dict[str, object]:
            return {name: intruder, "fine": "x"}

    plugins = isolated_plugins(Bad())
    with hive_store.open(f"sqlite://{tmp_path / 's.db'}", plugins=plugins) as store:
        assert store.fine == "x"  # the plugin's other services are attached
        assert name not in store.services
        if "taken" in why:  # the store's own attribute is intact
            assert getattr(store, name) is not intruder
    [failure] = plugins.failures
    assert failure.stage == "hive_store_services" and why in failure.error


def test_failing_and_malformed_service_hooks_are_isolated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Raises:
        @hive_store.hookimpl
        def hive_store_services(self) -> dict[str, object]:
            raise RuntimeError("no service today")

    class NotAMapping:
        @hive_store.hookimpl
        def hive_store_services(self) -> list[str]:
            return ["x"]

    plugin = CounterPlugin()
    plugins = isolated_plugins(Raises(), NotAMapping(), plugin)
    with hive_store.open(f"sqlite://{tmp_path / 's.db'}", plugins=plugins) as store:
        assert list(store.services) == ["counter"]
    assert sorted(f.error.split(":")[0] for f in plugins.failures) == [
        "RuntimeError", "hive_store_services returned list, not a mapping of names to services"]

    # Strict: the failure is an error, and the store closes what was opened (the service too;
    # pluggy calls the later registered plugin first).
    monkeypatch.setenv("HIVE_STORE_STRICT_PLUGINS", "1")
    plugin = CounterPlugin()
    with pytest.raises(hive_store.PluginError, match="no service today"):
        hive_store.open(f"sqlite://{tmp_path / 's.db'}", plugins=isolated_plugins(Raises(), plugin))
    assert [c.closed for c in plugin.made] == [True]


def test_two_plugins_cannot_take_the_same_name(tmp_path: Path) -> None:
    first, second = CounterPlugin(), CounterPlugin()
    plugins = isolated_plugins(first, second)
    with hive_store.open(f"sqlite://{tmp_path / 's.db'}", plugins=plugins) as store:
        assert store.counter in first.made + second.made
    assert ["already attached" in f.error for f in plugins.failures] == [True]


def test_attach_and_detach_while_open(tmp_path: Path) -> None:
    with open_with(tmp_path) as store:
        store.attach_service("later", [1])
        assert store.later == [1]
        with pytest.raises(hive_store.PluginError, match="already attached"):
            store.attach_service("later", [2])
        store.attach_service("later", [2], replace=True)
        assert store.detach_service("later") == [2] and store.detach_service("later") is None
        with pytest.raises(AttributeError, match="detached"):
            _ = store.later
    with pytest.raises(hive_store.StoreClosed):
        store.attach_service("too_late", 1)


def test_async_services_automatic_and_given(tmp_path: Path) -> None:
    given_views: list[object] = []

    class Given:
        @hive_store.hookimpl
        def hive_store_services(self) -> dict[str, object]:
            return {"plain": "sync value"}

        @hive_store.hookimpl
        def hive_store_async_services(self, store: hive_store.aio.AsyncStore) -> dict:
            given_views.append(("async of", store.sync.plain))
            return {"plain": given_views[-1], "orphan": 1}

    plugin = CounterPlugin()
    plugins = isolated_plugins(plugin, Given())

    async def main() -> None:
        astore = await hive_store.aio.open(f"sqlite://{tmp_path / 's.db'}", plugins=plugins)
        loop_thread = threading.get_ident()
        view = astore.counter
        assert isinstance(view, hive_store.aio.AsyncService) and view.sync is plugin.made[0]
        assert astore.counter is view and astore.service("counter", Counter) is view
        assert view.label == "counter"  # attributes as they are
        assert await view.users() == 0  # methods: coroutines in a worker thread
        assert plugin.made[0].threads and loop_thread not in plugin.made[0].threads
        async with astore.transaction():  # inside a transaction: the transaction's thread
            await astore.users.add(hive_store.entities.User(email="a@b.c"))
            assert await view.users() == 1
        assert astore.plain is given_views[0]  # a plugin's own async counterpart
        assert set(astore.services) == {"counter", "plain"}
        assert "counter" in dir(astore)
        astore.attach_service("later", Counter(astore.sync))
        assert await astore.later.users() == 1
        assert astore.detach_service("later") is not None
        await astore.close()
        with pytest.raises(hive_store.StoreClosed):
            _ = astore.counter
        with pytest.raises(hive_store.StoreClosed):
            await view.users()
        with pytest.raises(hive_store.StoreClosed):
            _ = view.label

    asyncio.run(main())
    assert [f.stage for f in plugins.failures] == ["hive_store_async_services"]
    assert "'orphan'" in plugins.failures[0].error


def test_memory_and_d1_through_the_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hive_store_d1
    from hive_store_memory import Memory

    for name, value in (("ACCOUNT_ID", "0123456789abcdef0123456789abcdef"),
                        ("DATABASE_ID", "01234567-89ab-4cde-8f01-23456789abcd"),
                        ("TOKEN", "tok")):
        monkeypatch.setenv(f"HIVE_STORE_D1_{name}", value)
    monkeypatch.setenv("HIVE_STORE_D1_URL", "http://127.0.0.1:9")  # never reached here

    async def main() -> None:
        plugins = Plugins()
        astore = await hive_store.aio.open(f"sqlite://{tmp_path / 's.db'}", plugins=plugins)
        store = astore.sync
        assert isinstance(store.memory, Memory) and store.service("memory", Memory)
        assert store.d1 is hive_store_d1.mirror_of(store)
        assert set(store.services) >= {"memory", "d1"}
        await astore.record_consensus("How does WAL work?", [
            hive_store.StageOutput(stage=s, model="m", answer=f"{s.value} wal answer")
            for s in hive_store.Stage])
        hits = await astore.memory.search("wal")
        assert hits and hits[0].kind
        assert (await astore.d1.status())["configured"]
        hive_store_d1.disable(store)  # a service can end while the store stays open
        assert "d1" not in store.services
        with pytest.raises(AttributeError):
            _ = astore.d1
        memory = store.memory
        await astore.close()
        with pytest.raises(hive_store.StoreClosed):
            _ = store.memory
        with pytest.raises(hive_store.StoreClosed):
            memory.search("wal")

    asyncio.run(main())


def test_no_service_without_its_plugin(tmp_path: Path) -> None:
    plugins = Plugins()
    plugins.pm.set_blocked("memory")
    with hive_store.open(f"sqlite://{tmp_path / 's.db'}", plugins=plugins.ensure_loaded()) as s:
        assert "memory" not in s.services
        with pytest.raises(AttributeError):
            _ = s.memory
        with pytest.raises(hive_store.ConfigurationError, match="no service 'memory'"):
            s.service("memory")
