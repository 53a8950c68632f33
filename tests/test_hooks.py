"""Hooks that plugins use to extend the store: backends, connections, migrators, health
checks and the store's lifecycle."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import hive_store
from hive_store.health import HealthResult, worst
from hive_store.plugins import Plugins


def plugins_with(obj: Any, name: str = "test-plugin") -> Plugins:
    p = Plugins()
    p.ensure_loaded()
    assert p.register(obj, name=name) == name
    return p


def test_prepare_connection_runs_for_every_pooled_connection(tmp_path: Path) -> None:
    prepared: list[int] = []

    class Funcs:
        @hive_store.hookimpl
        def hive_store_prepare_connection(self, connection: sqlite3.Connection,
                                          backend: Any) -> None:
            connection.create_function("hive_double", 1, lambda x: 2 * x)
            prepared.append(id(connection))

    with hive_store.open(f"sqlite://{tmp_path / 'x.db'}", plugins=plugins_with(Funcs()),
                         max_size=3) as store:
        conns = [store.backend.pool.checkout() for _ in range(3)]
        assert [c.execute("SELECT hive_double(21)").fetchone()[0] for c in conns] == [42] * 3
        # our own pragmas ran first on each of them too
        assert [c.execute("PRAGMA foreign_keys").fetchone()[0] for c in conns] == [1, 1, 1]
        for c in conns:
            store.backend.pool.checkin(c)
    assert len(set(prepared)) >= 3


def test_a_third_party_backend_and_its_scheme(tmp_path: Path) -> None:
    opened: list[Any] = []

    class Alias:
        """A backend plugin for ``hivefile:`` URLs that delegates to SQLite."""

        @hive_store.hookimpl
        def hive_store_backend_schemes(self) -> list[str]:
            return ["hivefile"]

        @hive_store.hookimpl
        def hive_store_backend(self, url: Any, options: dict, plugins: Plugins) -> Any:
            if url.scheme != "hivefile":
                return None
            import attrs

            backend = plugins.backend(attrs.evolve(url, scheme="sqlite"), options)
            opened.append(backend)
            return backend

    p = plugins_with(Alias())
    assert p.backend_schemes() == ["hivefile", "postgres", "postgresql", "sqlite"]
    with hive_store.open(f"hivefile://{tmp_path / 'a.db'}", plugins=p) as store:
        assert store.users.count() == 0
    assert opened
    with pytest.raises(hive_store.ConfigurationError,
                       match="hivefile, postgres, postgresql, sqlite"):
        hive_store.open("nosuch:///x", plugins=p)


def test_a_backend_plugin_that_crashes_is_a_plugin_error(tmp_path: Path) -> None:
    class Crashy:
        @hive_store.hookimpl(tryfirst=True)
        def hive_store_backend(self, url: Any, options: dict) -> Any:
            raise ZeroDivisionError("oops")

    with pytest.raises(hive_store.PluginError, match="ZeroDivisionError: oops"):
        hive_store.open(f"sqlite://{tmp_path / 'c.db'}", plugins=plugins_with(Crashy()))


def test_custom_migrator_is_used(tmp_path: Path) -> None:
    calls: list[str] = []

    class NullMigrator:
        def applied(self) -> list:
            return []

        def pending(self, sets: Any) -> list:
            return []

        def upgrade(self, sets: Any, *, allow_drift: bool = False) -> list:
            calls.append("upgrade")
            return []

    class Plugin:
        @hive_store.hookimpl(tryfirst=True)
        def hive_store_migrator(self, backend: Any) -> NullMigrator:
            return NullMigrator()

    with hive_store.open(f"sqlite://{tmp_path / 'm.db'}", plugins=plugins_with(Plugin())) as s:
        assert calls == ["upgrade"]
        assert s.schema_version() == 0  # nothing was applied by the null migrator


def test_no_migrator_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_STORE_DISABLE_PLUGINS", "migrate")
    p = Plugins()
    with pytest.raises(hive_store.MigrationError, match="no migration plugin"):
        hive_store.open(f"sqlite://{tmp_path / 'n.db'}", plugins=p)
    with hive_store.open(f"sqlite://{tmp_path / 'n.db'}", plugins=p, migrate=False) as s:
        assert s.schema_version() == 0


def test_health_checks_from_plugins_and_broken_ones(mem_store: hive_store.Store) -> None:
    class Checks:
        @hive_store.hookimpl
        def hive_store_register_health_checks(self) -> list:
            def check_disk(store: Any) -> HealthResult:
                return HealthResult(name="disk", status="warn", message="90% full")

            def check_raises(store: Any) -> HealthResult:
                raise RuntimeError("sensor offline")

            def check_wrong_type(store: Any) -> str:
                return "fine"

            return [check_disk, check_raises, check_wrong_type]

    with hive_store.open(":memory:", plugins=plugins_with(Checks())) as store:
        results = {r.name: r for r in store.health()}
    assert results["integrity"].ok and results["pragmas"].ok
    assert results["disk"].status == "warn"
    assert results["raises"].status == "fail" and "sensor offline" in results["raises"].message
    assert results["wrong_type"].status == "fail"
    assert worst(results.values()) == "fail"
    assert all(r.duration_ms >= 0 for r in results.values())
    assert {"integrity", "pragmas"} <= {r.name for r in mem_store.health()}


def test_store_lifecycle_hooks(tmp_path: Path) -> None:
    events: list[str] = []

    class Lifecycle:
        @hive_store.hookimpl
        def hive_store_store_opened(self, store: hive_store.Store) -> None:
            events.append(f"opened v{store.schema_version()}")

        @hive_store.hookimpl
        def hive_store_store_closing(self, store: hive_store.Store) -> None:
            events.append(f"closing {store.users.count()}")

    with hive_store.open(f"sqlite://{tmp_path / 'l.db'}", plugins=plugins_with(Lifecycle())) as s:
        s.users.add(hive_store.entities.User())
    assert events == ["opened v4", "closing 1"]
