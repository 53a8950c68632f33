"""Plugin loading and the typed façade over pluggy's PluginManager.

Plugins come from the ``hive_store`` entry-point group (the built-in ones too, exactly like a
third-party plugin). Each is imported and registered **in isolation**: one that fails to import,
to register, or that implements a hook that does not exist is recorded in
:attr:`Plugins.failures` and the rest keep working.

Environment:

``HIVE_STORE_STRICT_PLUGINS=1``
    re-raise the first plugin failure as :class:`hive_store.PluginError`.
``HIVE_STORE_LOAD_PLUGINS=a,b``
    allow-list of third-party plugins by entry-point name (empty = load none of them); the
    plugins shipped with hive-store are always loaded unless disabled.
``HIVE_STORE_DISABLE_PLUGINS=a,b``
    block-list by entry-point name (applies to built-in plugins too).

Loading is lazy (on first use) and idempotent; importing hive_store loads nothing.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from hive_store import hookspecs
from hive_store.errors import PluginError

if TYPE_CHECKING:
    import click

    from hive_store.aio import AsyncStore
    from hive_store.backend import Backend
    from hive_store.changes import Change
    from hive_store.migrations import MigrationSet, Migrator
    from hive_store.store import Store
    from hive_store.url import StoreURL

log = logging.getLogger("hive_store.plugins")

ENTRY_POINT_GROUP = "hive_store"
OWN_DISTRIBUTION = "hive-store"


@attrs.frozen
class PluginFailure:
    """A plugin that could not be used.

    :ivar name: entry-point (or registration) name
    :ivar distribution: the installed distribution that provides it, if known
    :ivar error: one-line description of what went wrong
    :ivar stage: ``"load"``, ``"validate"`` or the hook that failed
    """

    name: str
    distribution: str | None
    error: str
    stage: str = "load"
    details: str = attrs.field(default="", repr=False)


@attrs.frozen
class PluginInfo:
    """A loaded plugin: its name, distribution, version and the hooks it implements."""

    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]
    builtin: bool


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _normalise(dist: str | None) -> str | None:
    return dist.lower().replace("_", "-") if dist else None


class _Manager(pluggy.PluginManager):
    """pluggy's manager, counting registrations (``generation``) so that facts derived from
    the registered hook implementations can be cached until the next change."""

    generation = 0

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        try:
            return super().register(plugin, name)
        finally:
            self.generation += 1

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        try:
            return super().unregister(plugin, name)
        finally:
            self.generation += 1


class Plugins:
    """The plugin manager façade: one typed method per hook."""

    def __init__(self, *, entry_points: bool = True) -> None:
        self.pm: pluggy.PluginManager = _Manager(hookspecs.PROJECT)
        # (generation, dialect) -> before/after-commit implementations of plugins that
        # support the dialect
        self._commit_impls: dict[tuple[int, str | None], tuple[list[Any], list[Any]]] = {}
        self._dialects: tuple[int, dict[str, tuple[str, ...]]] = (-1, {})
        self.pm.add_hookspecs(hookspecs)
        self._entry_points = entry_points
        self._loaded = False
        self._lock = threading.RLock()
        self.failures: list[PluginFailure] = []
        self._meta: dict[str, tuple[str | None, str | None, bool]] = {}

    # -- loading ----------------------------------------------------------------------------

    def ensure_loaded(self) -> Plugins:
        """Load the plugins once (thread-safe); later calls do nothing."""
        if self._loaded:
            return self
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True
        return self

    def _fail(self, failure: PluginFailure, exc: BaseException | None = None) -> None:
        self.failures.append(failure)
        log.warning("hive_store plugin %s failed (%s): %s", failure.name, failure.stage,
                    failure.error)
        if _truthy("HIVE_STORE_STRICT_PLUGINS"):
            raise PluginError(f"plugin {failure.name!r}: {failure.error}") from exc

    def _load(self) -> None:
        from hive_store import _builtin

        if not self.pm.has_plugin("hive_store.core"):  # a strict retry loads again
            self.register(_builtin, name="hive_store.core", builtin=True)
        if not self._entry_points:
            return
        allow = _env_list("HIVE_STORE_LOAD_PLUGINS")
        deny = _env_list("HIVE_STORE_DISABLE_PLUGINS") or set()
        eps = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
                     key=lambda ep: (_normalise(ep.dist.name if ep.dist else None)
                                     != OWN_DISTRIBUTION, ep.name))
        for ep in eps:
            dist = ep.dist.name if ep.dist else None
            version = ep.dist.version if ep.dist else None
            builtin = _normalise(dist) == OWN_DISTRIBUTION
            if ep.name in deny:
                self.pm.set_blocked(ep.name)
                continue
            if allow is not None and not builtin and ep.name not in allow:
                continue
            if self.pm.has_plugin(ep.name) or self.pm.is_blocked(ep.name):
                continue
            try:
                obj = ep.load()
            except BaseException as exc:
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                self._fail(PluginFailure(ep.name, dist, f"{type(exc).__name__}: {exc}", "load",
                                         traceback.format_exc()), exc)
                continue
            self.register(obj, name=ep.name, distribution=dist, version=version, builtin=builtin)

    def register(self, plugin: Any, *, name: str | None = None, distribution: str | None = None,
                 version: str | None = None, builtin: bool = False) -> str | None:
        """Register a plugin object or module now; validated at once (a misspelled hook
        implementation is a :class:`PluginFailure`, or a :class:`PluginError` when strict).
        Returns the registered name, or ``None`` if it was rejected."""
        label = name or getattr(plugin, "__name__", None) or repr(plugin)
        try:
            registered = self.pm.register(plugin, name=name)
            if registered is None:
                return None
            try:
                self.pm.check_pending()
            except pluggy.PluginValidationError as exc:
                self.pm.unregister(plugin)
                raise PluginError(
                    f"plugin {label!r} implements an unknown hook ({exc}); check the spelling "
                    "against hive_store.hookspecs"
                ) from None
        except (PluginError, pluggy.PluginValidationError, ValueError) as exc:
            self._fail(PluginFailure(label, distribution, str(exc), "validate"), exc)
            return None
        self._meta[registered] = (distribution, version, builtin)
        return registered

    def without(self, hooks: Sequence[str]) -> Plugins:
        """A new plugin set with this one's plugins except those that implement any of
        ``hooks`` (``hive-store copy`` writes without the plugins that act on writes)."""
        self.ensure_loaded()
        other = Plugins(entry_points=False)
        other._loaded = True
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None or other.pm.has_plugin(name):
                continue
            implemented = {c.name for c in self.pm.get_hookcallers(plugin) or []}
            if implemented & set(hooks):
                continue
            dist, version, builtin = self._meta.get(name, (None, None, False))
            other.register(plugin, name=name, distribution=dist, version=version,
                           builtin=builtin)
        return other

    def unregister(self, name: str) -> None:
        """Remove a registered plugin (e.g. at the end of a test)."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin, name=name)
        self._meta.pop(name, None)

    def info(self) -> list[PluginInfo]:
        """The loaded plugins with versions and the hooks each implements."""
        self.ensure_loaded()
        out = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:  # blocked (HIVE_STORE_DISABLE_PLUGINS)
                continue
            hooks = tuple(sorted(
                caller.name for caller in self.pm.get_hookcallers(plugin) or []
            ))
            dist, version, builtin = self._meta.get(name, (None, None, False))
            out.append(PluginInfo(name, dist, version, hooks, builtin))
        return sorted(out, key=lambda p: (not p.builtin, p.name))

    # -- isolated calls -------------------------------------------------------------------------

    # -- dialects --------------------------------------------------------------------------------

    def supported_dialects(self) -> dict[str, tuple[str, ...]]:
        """The dialects each plugin that implements ``hive_store_supported_dialects`` works
        with, by plugin name (a plugin not listed works with every backend)."""
        self.ensure_loaded()
        generation = getattr(self.pm, "generation", None)
        cached, found = self._dialects
        if generation is None or generation != cached:
            found = {}
            for name, dialects in self._each("hive_store_supported_dialects"):
                found[name] = tuple(str(d) for d in dialects)
            if generation is not None:
                self._dialects = (generation, found)
        return found

    def supports(self, plugin: str, dialect: str | None) -> bool:
        """Whether the plugin registered as ``plugin`` works with backends of ``dialect``
        (``None``: no backend in question, always true)."""
        if dialect is None:
            return True
        declared = self.supported_dialects().get(plugin)
        return declared is None or dialect in declared

    def skipped(self, dialect: str) -> list[tuple[str, tuple[str, ...]]]:
        """``(plugin, its dialects)`` for the loaded plugins that a backend of ``dialect``
        runs without."""
        return sorted((name, ds) for name, ds in self.supported_dialects().items()
                      if dialect not in ds and self.pm.get_plugin(name) is not None)

    @staticmethod
    def _dialect_of(kwargs: dict[str, Any]) -> str | None:
        """The dialect of the store or backend a hook is called for (``None``: neither)."""
        target = kwargs.get("store")
        backend = getattr(target, "backend", None) if target is not None else kwargs.get(
            "backend")
        if backend is None and target is not None:  # an AsyncStore
            backend = getattr(getattr(target, "sync", None), "backend", None)
        dialect = getattr(backend, "dialect", None)
        return dialect if isinstance(dialect, str) else None

    # -- isolated calls -------------------------------------------------------------------------

    def _each(self, hook: str, *, dialect: str | None = None,
              **kwargs: Any) -> Iterator[tuple[str, Any]]:
        """Call every implementation of ``hook`` separately; a raising one is recorded.
        Plugins that do not support the dialect (given, or of the ``store``/``backend``
        argument) are left out."""
        self.ensure_loaded()
        caller = getattr(self.pm.hook, hook)
        dialect = dialect or self._dialect_of(kwargs)
        for impl in reversed(caller.get_hookimpls()):
            if dialect is not None and not self.supports(impl.plugin_name, dialect):
                continue
            args = {k: kwargs[k] for k in impl.argnames}
            try:
                result = impl.function(**args)
            except Exception as exc:
                dist = self._meta.get(impl.plugin_name, (None,))[0]
                self._fail(PluginFailure(impl.plugin_name, dist, f"{type(exc).__name__}: {exc}",
                                         hook, traceback.format_exc()), exc)
                continue
            if result is not None:
                yield impl.plugin_name, result

    # -- one method per hook ------------------------------------------------------------------

    def backend(self, url: StoreURL, options: dict[str, Any]) -> Backend | None:
        self.ensure_loaded()
        result: Backend | None = self.pm.hook.hive_store_backend(
            url=url, options=options, plugins=self)
        return result

    def backend_schemes(self) -> list[str]:
        return sorted({s for _, schemes in self._each("hive_store_backend_schemes")
                       for s in schemes})

    def prepare_connection(self, connection: Any, backend: Backend) -> None:
        self.ensure_loaded()
        dialect = self._dialect_of({"backend": backend})
        args = {"connection": connection, "backend": backend}
        for impl in reversed(self.pm.hook.hive_store_prepare_connection.get_hookimpls()):
            if self.supports(impl.plugin_name, dialect):
                impl.function(**{k: args[k] for k in impl.argnames})

    def entities(self, dialect: str | None = None) -> list[type]:
        """The entity classes of the plugins (that support ``dialect``, if given)."""
        out: list[type] = []
        for _, classes in self._each("hive_store_register_entities", dialect=dialect):
            out.extend(c for c in classes if c not in out)
        return out

    def migration_sets(self) -> list[MigrationSet]:
        """Every plugin's migration sets; a plugin's ``hive_store_supported_dialects`` become
        the ``dialects`` of its sets that name none (see
        :func:`hive_store.migrations.for_dialect`)."""
        import attrs as _attrs

        declared = self.supported_dialects()
        out: list[MigrationSet] = []
        for name, sets in self._each("hive_store_register_migrations"):
            for s in sets:
                if name in declared and s.dialects is None:
                    s = _attrs.evolve(s, dialects=declared[name])
                out.append(s)
        return out

    def migrator(self, backend: Backend) -> Migrator | None:
        self.ensure_loaded()
        result: Migrator | None = self.pm.hook.hive_store_migrator(backend=backend)
        return result

    def health_checks(self, dialect: str | None = None) -> list[Callable[..., Any]]:
        """The health checks of the plugins (that support ``dialect``, if given)."""
        return [c for _, checks in self._each("hive_store_register_health_checks",
                                              dialect=dialect) for c in checks]

    def register_commands(self, cli: click.Group) -> None:
        for _ in self._each("hive_store_register_commands", cli=cli):
            pass

    def before_commit(self, store: Store, connection: Any, changes: Sequence[Change]) -> None:
        self.ensure_loaded()
        args = {"store": store, "connection": connection, "changes": changes}
        dialect = self._dialect_of(args)
        for impl in reversed(self.pm.hook.hive_store_before_commit.get_hookimpls()):
            if self.supports(impl.plugin_name, dialect):
                impl.function(**{k: args[k] for k in impl.argnames})

    def commit_hooks(self, store: Store | None = None) -> tuple[bool, bool]:
        """Whether any plugin listens before / after a commit of ``store``: implements
        ``hive_store_before_commit`` / ``hive_store_after_commit``, and its
        :func:`~hive_store.listens_when` predicate (if any) accepts the store. Asked at the
        start of each write, so a plugin registered or enabled later is seen by the next
        write; a predicate that raises counts as listening (the hook then runs and its error
        surfaces there)."""
        if not self._loaded:
            self.ensure_loaded()
        generation = getattr(self.pm, "generation", None)
        dialect = self._dialect_of({"store": store}) if store is not None else None
        found = self._commit_impls.get((generation, dialect)) if generation is not None else None
        if found is None:
            hook = self.pm.hook
            found = tuple(  # type: ignore[assignment]
                [i for i in caller.get_hookimpls() if self.supports(i.plugin_name, dialect)]
                for caller in (hook.hive_store_before_commit, hook.hive_store_after_commit))
            if generation is not None:
                if len(self._commit_impls) > 16:
                    self._commit_impls.clear()
                self._commit_impls[(generation, dialect)] = found  # type: ignore[assignment]
        assert found is not None
        before, after = found
        return (bool(before) and _listens(before, store),
                bool(after) and _listens(after, store))

    def after_commit(self, store: Store, changes: Sequence[Change]) -> None:
        self.ensure_loaded()
        caller = self.pm.hook.hive_store_after_commit
        dialect = self._dialect_of({"store": store})
        for impl in reversed(caller.get_hookimpls()):
            if not self.supports(impl.plugin_name, dialect):
                continue
            args = {"store": store, "changes": changes}
            try:
                impl.function(**{k: args[k] for k in impl.argnames})
            except Exception:
                log.exception("after_commit hook of plugin %s failed", impl.plugin_name)

    def _mappings(self, hook: str, **kwargs: Any) -> Iterator[tuple[str, str, object]]:
        """``(plugin, name, service)`` from a hook returning mappings; a result that is not a
        mapping of names is a plugin failure."""
        for plugin, result in self._each(hook, **kwargs):
            if not isinstance(result, Mapping) or not all(isinstance(k, str) for k in result):
                dist = self._meta.get(plugin, (None,))[0]
                self._fail(PluginFailure(plugin, dist, f"{hook} returned "
                                         f"{type(result).__name__}, not a mapping of names to "
                                         "services", hook))
                continue
            for name, service in result.items():
                yield plugin, name, service

    def attach_services(self, store: Store) -> None:
        """Attach what ``hive_store_services`` gives to ``store``; a name that is taken or not
        an identifier is a failure of the plugin that gave it."""
        for plugin, name, service in self._mappings("hive_store_services", store=store):
            try:
                store.attach_service(name, service)
            except PluginError as exc:
                dist = self._meta.get(plugin, (None,))[0]
                self._fail(PluginFailure(plugin, dist, str(exc), "hive_store_services"), exc)

    def async_services(self, store: AsyncStore) -> dict[str, object]:
        """The asyncio counterparts plugins give (``hive_store_async_services``), for names
        the sync store has."""
        out: dict[str, object] = {}
        for plugin, name, service in self._mappings("hive_store_async_services", store=store):
            if name not in store.sync.services:
                dist = self._meta.get(plugin, (None,))[0]
                self._fail(PluginFailure(
                    plugin, dist, f"an async service {name!r} without a sync service of that "
                    "name (return it from hive_store_services too)", "hive_store_async_services"))
                continue
            out[name] = service
        return out

    def store_opened(self, store: Store) -> None:
        for _ in self._each("hive_store_store_opened", store=store):
            pass

    def store_closing(self, store: Store) -> None:
        for _ in self._each("hive_store_store_closing", store=store):
            pass


def _listens(impls: Sequence[Any], store: Store | None) -> bool:
    for impl in impls:
        predicate = getattr(impl.function, "hive_store_listens", None)
        if predicate is None or store is None:
            return True
        try:
            if predicate(store):
                return True
        except Exception:
            log.exception("the listens_when predicate of plugin %s failed", impl.plugin_name)
            return True
    return False


_default: Plugins | None = None
_default_lock = threading.Lock()


def get_plugins() -> Plugins:
    """The process-wide plugin set (loaded on first use)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Plugins()
    return _default.ensure_loaded()


def reset_plugins() -> None:
    """Forget the process-wide plugin set (the next use loads again; for tests)."""
    global _default
    with _default_lock:
        _default = None
