"""Hook specifications of hive_store (pluggy project ``hive_store``).

A plugin is a module or object with functions marked ``@hive_store.hookimpl`` whose names are
the specs below. Register it under the ``hive_store`` entry-point group::

    [project.entry-points.hive_store]
    my_plugin = "my_package.plugin"

Hooks are called with keyword arguments; an implementation may accept any subset of a spec's
parameters. Unless a spec says ``firstresult``, every implementation is called and the results
are collected in a list (``None`` results are dropped).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

if TYPE_CHECKING:
    import click

    from hive_store.aio import AsyncStore
    from hive_store.backend import Backend
    from hive_store.changes import Change
    from hive_store.migrations import MigrationSet, Migrator
    from hive_store.plugins import Plugins
    from hive_store.store import Store
    from hive_store.url import StoreURL

PROJECT = "hive_store"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

_F = TypeVar("_F", bound=Callable[..., Any])


def listens_when(predicate: Callable[[Store], bool]) -> Callable[[_F], _F]:
    """Mark a ``hive_store_before_commit`` / ``hive_store_after_commit`` implementation as
    listening only to the stores for which ``predicate(store)`` is true (asked at the start
    of each write, so it may change while the store is open).

    Writes nobody listens to are cheaper: the backend builds no :class:`~hive_store.Change`
    records for them, and with no before-commit listener a single-statement write commits
    on its own instead of in ``BEGIN IMMEDIATE … COMMIT``. A plugin whose hooks only matter
    once enabled for a store (a mirror, an index) should say so::

        @hive_store.hookimpl
        @hive_store.listens_when(lambda store: store in _mirrors)
        def hive_store_before_commit(store, connection, changes): ...
    """

    def mark(fn: _F) -> _F:
        fn.hive_store_listens = predicate  # type: ignore[attr-defined]
        return fn

    return mark


@hookspec(firstresult=True)
def hive_store_backend(url: StoreURL, options: dict[str, Any], plugins: Plugins) -> Backend | None:
    """Open a backend for ``url`` if this plugin handles its scheme.

    firstresult: the first non-``None`` result is used.

    :param url: the parsed store URL (``url.scheme`` is e.g. ``"sqlite"``)
    :param options: backend options given to :func:`hive_store.open` (pool size, timeouts …);
        a backend must reject options it does not know with :class:`ConfigurationError`
    :param plugins: the plugin façade; call ``plugins.prepare_connection(conn, backend)`` for
        every connection the backend opens
    :return: a :class:`hive_store.backend.Backend`, or ``None`` if the scheme is not handled
    """
    return None


@hookspec
def hive_store_backend_schemes() -> Sequence[str]:
    """Name the URL schemes this plugin's backend handles (for listings and error messages).

    :return: scheme names such as ``["sqlite"]``
    """
    return ()


@hookspec
def hive_store_supported_dialects() -> Sequence[str]:
    """Name the backend dialects this plugin works with (``backend.dialect``: ``"sqlite"``,
    ``"postgresql"``). A plugin that does not implement this hook works with every backend.

    On a store whose backend speaks another dialect the plugin is *skipped*: none of its hooks
    run for that store (its entities, migration sets, services, health checks, commit hooks,
    ``store_opened``/``store_closing``, ``prepare_connection`` for that backend's
    connections); ``hive-store plugins --all`` and ``store.health()`` say so in one line.

    :return: dialect names such as ``["sqlite"]``
    """
    return ()


@hookspec
def hive_store_prepare_connection(connection: Any, backend: Backend) -> None:
    """Prepare each new database connection before it is used (pragmas, SQL functions).

    Called once per connection, for every connection a backend opens, in the thread that
    opened it. For the SQLite backend ``connection`` is a :class:`sqlite3.Connection` in
    autocommit mode; do not leave a transaction open.

    :param connection: the backend's native connection
    :param backend: the backend that opened it
    """


@hookspec
def hive_store_register_entities() -> Sequence[type]:
    """Name the entity classes (frozen attrs classes with ``__table__`` and ``__pk__``) whose
    tables this plugin owns. The store gets a repository for each, as ``store.repo(cls)`` and
    as ``store.<table>``. The plugin must also create the table (in its migrations).

    :return: entity classes
    """
    return ()


@hookspec
def hive_store_register_migrations() -> Sequence[MigrationSet]:
    """Name the migration sets this plugin owns. Each set has its own namespace and version
    sequence; the core schema is the set ``"hive_store"``.

    :return: :class:`hive_store.migrations.MigrationSet` objects
    """
    return ()


@hookspec(firstresult=True)
def hive_store_migrator(backend: Backend) -> Migrator | None:
    """Give the object that applies migration sets to ``backend``.

    firstresult: the first non-``None`` result is used.

    :param backend: the opened backend
    :return: a :class:`hive_store.migrations.Migrator`, or ``None``
    """
    return None


@hookspec
def hive_store_register_health_checks() -> Sequence[Callable[..., Any]]:
    """Name health checks. Each is a callable ``check(store) -> HealthResult``; a check that
    raises is reported as failed with its error.

    :return: check callables
    """
    return ()


@hookspec
def hive_store_register_commands(cli: click.Group) -> None:
    """Add commands to the ``hive-store`` command line.

    :param cli: the top-level click group; call ``cli.add_command(...)``
    """


@hookspec
def hive_store_before_commit(store: Store, connection: Any, changes: Sequence[Change]) -> None:
    """Called inside a write transaction, just before it commits, with every change it made.

    Use it to write derived rows in the same transaction (an outbox, an index). Raising
    rolls the whole transaction back; the error reaches the caller. Mark the implementation
    with :func:`listens_when` if it only matters for some stores.

    :param store: the store
    :param connection: the transaction's native connection (write through it, not the store)
    :param changes: the changes of the transaction, in order: a :class:`hive_store.Changes`
        (a sequence of :class:`hive_store.Change`, built on first use; its ``tables``, the
        tables written, costs nothing per row)
    """


@hookspec
def hive_store_after_commit(store: Store, changes: Sequence[Change]) -> None:
    """Post-commit change event: called once after a write transaction has committed.

    Never called for a rolled-back write. Errors raised here are logged and swallowed: the
    data is already committed. Mark the implementation with :func:`listens_when` if it only
    matters for some stores.

    :param store: the store
    :param changes: the committed changes, in order (a :class:`hive_store.Changes`, as for
        ``hive_store_before_commit``)
    """


@hookspec
def hive_store_services(store: Store) -> Mapping[str, object] | None:
    """Attach services to a store that is opening: each ``name: service`` of the result
    becomes ``store.<name>`` (and ``store.services[name]``), and ``astore.<name>`` on an
    asyncio store (see :func:`hive_store_async_services`).

    Called once per store, after migrations and before :func:`hive_store_store_opened`
    (start a service's threads there, when every service is attached). A name must be a
    Python identifier not starting with ``_`` and must not be taken (a table, a
    :class:`~hive_store.Store` attribute, another plugin's service): otherwise, or if the
    hook raises, the failure is recorded like any plugin failure and the store opens without
    that service. A service ends with its store: close it in
    :func:`hive_store_store_closing`; after :meth:`Store.close`, ``store.<name>`` raises
    :class:`hive_store.StoreClosed`. To attach or remove a service while the store is open
    (say, when a user enables a feature), use :meth:`Store.attach_service` and
    :meth:`Store.detach_service`.

    :param store: the new store (migrated unless opened with ``migrate=False``)
    :return: services by name, or ``None`` for none
    """
    return None


@hookspec
def hive_store_async_services(store: AsyncStore) -> Mapping[str, object] | None:
    """Give asyncio counterparts of this plugin's services: ``astore.<name>``.

    Optional: a service without a counterpart gets an automatic one,
    :class:`hive_store.aio.AsyncService`, whose methods are coroutines run on the store's
    worker threads. Name only services the sync store has (``store.sync.services``);
    called once when :func:`hive_store.aio.open` wraps the store.

    :param store: the :class:`hive_store.aio.AsyncStore` (its ``sync`` is the :class:`Store`)
    :return: async services by name, or ``None``
    """
    return None


@hookspec
def hive_store_store_opened(store: Store) -> None:
    """Called once when a store is open and migrated, before :func:`hive_store.open` returns.

    :param store: the new store
    """


@hookspec
def hive_store_store_closing(store: Store) -> None:
    """Called once when a store is closing, before its backend closes.

    :param store: the store
    """
