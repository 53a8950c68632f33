"""Test helpers for hive-store and its plugin authors (needs the ``test`` extra: hypothesis).

Strategies
----------
``entities(cls)`` is a hypothesis strategy of valid entities of any registered entity class
whose values are in their stored form (unicode text, NULLs, extreme numbers, UTC datetimes),
so a write returns them unchanged; ``accepted_entities(cls)`` also draws every other form a
write accepts (``str``/``int``/``float`` subclasses with and without ``__conform__``, ints for
floats, datetimes in any offset up to the edges of the range, tuples in JSON, enum values), and
``identical(a, b)`` compares what a write returned with what a read returns, types included.
``value_strategy(info)`` gives the values one field accepts; ``hostile_values()`` and
``hostile_text()`` give values and text that no field should accept, or that try to break out
of SQL (injection payloads, lone surrogates, NaN, huge numbers and strings, naive and
overflowing datetimes, 60,000-deep JSON, foreign enums …), built from ``surrogate_text()``,
``extreme_datetimes()``, ``huge_ints()``, ``deep_json()`` and ``subclass_values()``
(``tests/test_values.py`` checks that each really draws what it claims).
``counts_unchanged(store)`` is a context manager that fails if the block changed the row count
of any table (wrap a call that must be rejected without writing anything).

The conformance machine
-----------------------
:class:`RepositoryMachine` is a hypothesis ``RuleBasedStateMachine`` that drives a store through
the public repository API (``add``, ``add_many``, ``upsert``, ``update``, ``delete``, ``get``,
``get_many``, ``find``, ``count``), transactions that commit or roll back, nested savepoints and
(for persistent stores) closing and reopening, on five entities of the Hive schema: ``User``
(unique e-mail), ``Setting`` (text key), ``Conversation`` → ``User``, ``Message`` →
``Conversation`` and ``ConversationTopic`` → ``Conversation`` (an autoincrement key). After
every step it checks the store against a plain in-memory model: the rows, the counts, and which
calls must fail with :class:`~hive_store.NotFound`, :class:`~hive_store.Conflict` (duplicate
key or unique value) or :class:`~hive_store.IntegrityError` (a missing parent, or deleting a
row that others reference). A failure is shrunk by hypothesis to a minimal, replayable program.

A backend plugin author runs it against their backend with a few lines in their test suite::

    # tests/test_conformance.py of the plugin
    import hive_store
    from hypothesis import settings
    from hive_store.testing import RepositoryMachine

    class MyBackendMachine(RepositoryMachine):
        persistent = True          # enables the close-and-reopen rule

        def make_store(self) -> hive_store.Store:
            # a fresh, migrated, empty store for every example
            return hive_store.open(f"mydb:///{fresh_name()}")

        def dispose_store(self, store: hive_store.Store) -> None:
            store.close()          # and drop the database if it lives somewhere

    TestMyBackend = MyBackendMachine.TestCase
    TestMyBackend.settings = settings(max_examples=50, stateful_step_count=40, deadline=None)

(Without the last line the machine runs with hypothesis' settings in force, e.g. the ``ci``
profile that hypothesis loads itself when ``CI`` is set.) The fixtures in
:mod:`hive_store.pytest_plugin` give fresh stores and per-test plugin registration for the
rest of a plugin's tests.

or, with a factory function: ``TestMyBackend = machine_for(factory, name="MyBackend").TestCase``.
By default ``reopen_store`` reopens ``str(store.url)`` with the same plugin set; override it
when the URL alone cannot find the data again. The machine needs the five tables above with
the Hive schema's constraints (the core migrations create them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from hive_store._converters import EntityCodec
from hive_store._strategies import (  # re-exported: the public strategies
    EXTREME_OFFSETS,
    JSON,
    OFFSETS,
    SQL_INJECTIONS,
    SUBCLASSES,
    TEXT,
    ConformingFloat,
    ConformingInt,
    ConformingText,
    FloatSubclass,
    IntSubclass,
    TextSubclass,
    accepted_entities,
    accepted_value_strategy,
    deep_json,
    entities,
    extreme_datetimes,
    hostile_text,
    hostile_values,
    huge_ints,
    identical,
    subclass_values,
    surrogate_text,
    value_strategy,
)
from hive_store.entities import (
    Conversation,
    ConversationTopic,
    Message,
    Setting,
    User,
)
from hive_store.errors import Conflict, IntegrityError, NotFound

if TYPE_CHECKING:
    from hive_store.store import Store

E = TypeVar("E")

# -- the conformance machine -------------------------------------------------------------------

USER_IDS = ("u0", "u1", "u2", "u3")
EMAILS = ("a@example.com", "b@example.com", "c@example.com")
SETTING_KEYS = ("k0", "k1", "k2", "k3")
CONVERSATION_IDS = ("c0", "c1", "c2", "c3")
MESSAGE_IDS = ("m0", "m1", "m2", "m3", "m4", "m5")
TOPIC_IDS = (1, 2, 3, 4)

_ENTITY_CLASSES: tuple[type, ...] = (User, Setting, Conversation, Message, ConversationTopic)
_KEYS: dict[type, tuple[Any, ...]] = {
    User: USER_IDS, Setting: SETTING_KEYS, Conversation: CONVERSATION_IDS,
    Message: MESSAGE_IDS, ConversationTopic: TOPIC_IDS,
}
_user_ref = st.none() | st.sampled_from(USER_IDS)
_conv_ref = st.sampled_from(CONVERSATION_IDS)
_STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    User: entities(User, id=st.sampled_from(USER_IDS), email=st.none() | st.sampled_from(EMAILS)),
    Setting: entities(Setting, key=st.sampled_from(SETTING_KEYS)),
    Conversation: entities(Conversation, id=st.sampled_from(CONVERSATION_IDS), user_id=_user_ref,
                           consensus_profile_id=None),
    Message: entities(Message, id=st.sampled_from(MESSAGE_IDS), conversation_id=_conv_ref),
    ConversationTopic: entities(ConversationTopic, conversation_id=_conv_ref,
                                id=st.none() | st.sampled_from(TOPIC_IDS)),
}
_CHANGES: dict[type, st.SearchStrategy[dict[str, Any]]] = {
    User: st.fixed_dictionaries({}, optional={"email": st.none() | st.sampled_from(EMAILS),
                                              "tier": st.none() | TEXT}),
    Setting: st.fixed_dictionaries({}, optional={"value": TEXT, "description": st.none() | TEXT}),
    Conversation: st.fixed_dictionaries({}, optional={
        "user_id": _user_ref, "total_cost": st.none() | st.floats(allow_nan=False)}),
    Message: st.fixed_dictionaries({}, optional={"conversation_id": _conv_ref,
                                                 "content": TEXT}),
    ConversationTopic: st.fixed_dictionaries({}, optional={"conversation_id": _conv_ref,
                                                           "topic": TEXT}),
}
# (child class, foreign-key field, parent class)
_FOREIGN_KEYS: tuple[tuple[type, str, type], ...] = (
    (Conversation, "user_id", User),
    (Message, "conversation_id", Conversation),
    (ConversationTopic, "conversation_id", Conversation),
)
# (class, field): values must be unique among non-NULL ones
_UNIQUE: tuple[tuple[type, str], ...] = ((User, "email"),)

ENTITY_CLASS: st.SearchStrategy[type] = st.sampled_from(_ENTITY_CLASSES)
_FILTER_FIELDS: dict[type, tuple[str, ...]] = {
    User: ("email",), Setting: (), Conversation: ("user_id",),
    Message: ("conversation_id",), ConversationTopic: ("conversation_id",),
}


class _Rollback(Exception):
    """Raised into a transaction block to roll it back."""


Tables = dict[type, dict[Any, Any]]


class RepositoryMachine(RuleBasedStateMachine):
    """Checks a store against an in-memory model after every step (see the module docstring).

    Subclass it and implement :meth:`make_store`; set ``persistent = True`` if the data
    survives :meth:`Store.close` (adds the reopen rule).
    """

    persistent: ClassVar[bool] = False
    text_excludes: ClassVar[str] = ""
    """Characters the backend cannot store in text (PostgreSQL: ``"\\x00"``), left out of
    the text the machine draws; the backend must refuse them with a ValidationError (test
    that apart)."""

    def __init__(self) -> None:
        super().__init__()
        self.store: Store = self.make_store()
        self.codecs: dict[type, EntityCodec[Any]] = {cls: EntityCodec(cls)
                                                     for cls in _ENTITY_CLASSES}
        # The model starts from what the store holds (normally nothing).
        self.model: Tables = {cls: {self.codecs[cls].key_of(e): e for e in self._repo(cls).find()}
                              for cls in _ENTITY_CLASSES}
        self.transactions: list[tuple[AbstractContextManager[Any], Tables]] = []

    # -- what a subclass provides --------------------------------------------------------------

    def make_store(self) -> Store:
        """A fresh, migrated store for one example (called once per example)."""
        raise NotImplementedError("subclass RepositoryMachine and implement make_store()")

    def reopen_store(self, store: Store) -> Store:
        """Open the (already closed) ``store`` again; the default reopens its URL."""
        from hive_store.store import open as open_store

        return open_store(str(store.url), plugins=store.plugins)

    def dispose_store(self, store: Store) -> None:
        """Release ``store`` at the end of an example (the default closes it)."""
        store.close()

    # -- helpers -------------------------------------------------------------------------------

    def _repo(self, cls: type) -> Any:
        return self.store.repo(cls)

    def _key(self, entity: Any) -> Any:
        return self.codecs[type(entity)].key_of(entity)

    def _stored(self, entity: Any) -> Any:
        """The entity as a write stores and returns it (the core's value rules)."""
        return self.codecs[type(entity)].dump(entity)[1]

    def _copy(self) -> Tables:
        return {cls: dict(rows) for cls, rows in self.model.items()}

    def _problems(self, tables: Tables, entity: Any, replacing: Any = None) -> tuple[bool, bool]:
        """(breaks a unique constraint, lacks a parent) if ``entity`` were written into
        ``tables`` (``replacing`` is the key of the row it overwrites)."""
        cls = type(entity)
        key = self._key(entity)
        rows = tables[cls]
        duplicate = key is not None and key in rows and key != replacing
        for ucls, name in _UNIQUE:
            value = getattr(entity, name) if ucls is cls else None
            if value is not None:
                duplicate = duplicate or any(
                    getattr(other, name) == value for k, other in rows.items() if k != replacing)
        orphan = False
        for child, name, parent in _FOREIGN_KEYS:
            ref = getattr(entity, name) if child is cls else None
            if ref is not None and ref not in tables[parent]:
                orphan = True
        return duplicate, orphan

    def _referenced(self, cls: type, key: Any) -> bool:
        return any(parent is cls and any(getattr(e, name) == key
                                         for e in self.model[child].values())
                   for child, name, parent in _FOREIGN_KEYS)

    @staticmethod
    def _expected_error(duplicate: bool, orphan: bool) -> type[Exception] | None:
        if duplicate and not orphan:
            return Conflict
        if duplicate or orphan:
            return IntegrityError
        return None

    def _call(self, expected: type[Exception] | None, what: str,
              fn: Callable[[], Any]) -> Any:
        """Run ``fn``; it must raise ``expected`` (``None``: must not raise)."""
        if expected is None:
            return fn()
        try:
            result = fn()
        except expected as exc:
            return exc
        raise AssertionError(f"{what}: expected {expected.__name__}, got {result!r}")

    def _insert_key(self, tables: Tables, entity: Any, stored: Any) -> Any:
        """The key ``stored`` got; an autoincrement key must be new."""
        codec = self.codecs[type(entity)]
        key = codec.key_of(stored)
        if codec.autoincrement and codec.key_of(entity) is None:
            assert isinstance(key, int) and not isinstance(key, bool), f"assigned key {key!r}"
            assert key not in tables[type(entity)], f"assigned key {key} is already used"
            want = codec.evolve(self._stored(entity), **{codec.pk: key})
            assert stored == want, "add changed the entity"
        else:
            want = self._stored(entity)
            assert stored == want, f"add returned {stored!r} for {entity!r}"
        return key

    # -- drawing from the current state -------------------------------------------------------
    # Keys and foreign keys come mostly from rows that exist (so that updates, deletes and
    # children hit them) and sometimes from the fixed pools (missing rows, broken references).

    @staticmethod
    def _often(data: st.DataObject, label: str) -> bool:
        """True three times in four."""
        choice: int = data.draw(st.integers(0, 3), label=label)
        return choice != 0

    def _draw_key(self, data: st.DataObject, cls: type) -> Any:
        existing = sorted(self.model[cls], key=repr)
        if existing and self._often(data, "existing key?"):
            return data.draw(st.sampled_from(existing), label=f"{cls.__name__} key")
        return data.draw(st.sampled_from(_KEYS[cls]), label=f"{cls.__name__} key")

    def _draw_entity(self, data: st.DataObject, cls: type, **fixed: Any) -> Any:
        entity = data.draw(_STRATEGIES[cls], label=cls.__name__)
        changes = dict(fixed)
        for child, name, parent in _FOREIGN_KEYS:
            if (child is cls and name not in changes and self.model[parent]
                    and self._often(data, "existing parent?")):
                changes[name] = data.draw(st.sampled_from(sorted(self.model[parent], key=repr)),
                                          label=name)
        for info in self.codecs[cls].fields:
            value = changes.get(info.name, getattr(entity, info.name))
            if self.text_excludes and isinstance(value, str):
                changes[info.name] = self._storable(value)
        return self.codecs[cls].evolve(entity, **changes) if changes else entity

    def _storable(self, text: str) -> str:
        """``text`` without the characters the backend cannot store (:attr:`text_excludes`)."""
        for char in self.text_excludes:
            text = text.replace(char, "")
        return text

    # -- writes --------------------------------------------------------------------------------

    @rule(cls=ENTITY_CLASS, data=st.data())
    def add(self, cls: type, data: st.DataObject) -> None:
        entity = self._draw_entity(data, cls)
        expected = self._expected_error(*self._problems(self.model, entity))
        result = self._call(expected, f"add({entity!r})", lambda: self._repo(cls).add(entity))
        if expected is None:
            self.model[cls][self._insert_key(self.model, entity, result)] = result

    @rule(cls=ENTITY_CLASS, size=st.integers(0, 4), data=st.data())
    def add_many(self, cls: type, size: int, data: st.DataObject) -> None:
        codec = self.codecs[cls]
        # A batch of autoincrement rows has either no keys or only explicit ones: a key SQLite
        # assigns in the middle of a batch may equal an explicit key later in it.
        auto = codec.autoincrement and data.draw(st.booleans(), label="assigned keys?")
        batch = [self._draw_entity(data, cls, **(
            {codec.pk: None} if auto else {codec.pk: self._draw_key(data, cls)}
            if codec.autoincrement else {})) for _ in range(size)]
        if not batch:
            assert self._repo(cls).add_many([]) == []
            return
        after = self._copy()
        failing = False
        for entity in batch:
            duplicate, orphan = self._problems(after, entity)
            if duplicate or orphan:
                failing = True
                break
            if not auto:
                after[cls][self._key(entity)] = self._stored(entity)
        if failing:
            self._call(IntegrityError, f"add_many({batch!r})",
                       lambda: self._repo(cls).add_many(batch))
            return
        stored = self._repo(cls).add_many(batch)
        assert len(stored) == len(batch), "add_many returned a different number of entities"
        if auto:
            for entity, got in zip(batch, stored, strict=True):
                after[cls][self._insert_key(after, entity, got)] = got
        else:
            want = [self._stored(e) for e in batch]
            assert stored == want, f"add_many returned {stored!r} for {batch!r}"
            batch = want
        self.model = after

    @rule(cls=ENTITY_CLASS, data=st.data())
    def upsert(self, cls: type, data: st.DataObject) -> None:
        codec = self.codecs[cls]
        pinned = {codec.pk: self._draw_key(data, cls)} if data.draw(
            st.booleans(), label="key of a row?") else {}
        entity = self._draw_entity(data, cls, **pinned)
        key = self._key(entity)
        replacing = key if key in self.model[cls] else None
        duplicate, orphan = self._problems(self.model, entity, replacing)
        expected = self._expected_error(duplicate, orphan)
        result = self._call(expected, f"upsert({entity!r})", lambda: self._repo(cls).upsert(entity))
        if expected is None:
            if replacing is None:
                self.model[cls][self._insert_key(self.model, entity, result)] = result
            else:
                want = self._stored(entity)
                assert result == want, f"upsert returned {result!r} for {entity!r}"
                self.model[cls][key] = want

    @rule(cls=ENTITY_CLASS, data=st.data())
    def update_fields(self, cls: type, data: st.DataObject) -> None:
        key = self._draw_key(data, cls)
        changes = {name: self._storable(v) if isinstance(v, str) else v
                   for name, v in data.draw(_CHANGES[cls], label="changes").items()}
        for child, name, parent in _FOREIGN_KEYS:
            if child is cls and name in changes and self.model[parent] and data.draw(
                    st.booleans(), label="existing parent?"):
                changes[name] = data.draw(st.sampled_from(sorted(self.model[parent], key=repr)))
        old = self.model[cls].get(key)
        if old is None:
            self._call(NotFound, f"update({key!r}, **{changes!r})",
                       lambda: self._repo(cls).update(key, **changes))
            return
        new = self.codecs[cls].evolve(old, **changes)
        expected = self._expected_error(*self._problems(self.model, new, key))
        result = self._call(expected, f"update({key!r}, **{changes!r})",
                            lambda: self._repo(cls).update(key, **changes))
        if expected is None:
            want = self._stored(new)
            assert result == want, f"update returned {result!r}, expected {want!r}"
            self.model[cls][key] = want

    @rule(cls=ENTITY_CLASS, data=st.data())
    def update_entity(self, cls: type, data: st.DataObject) -> None:
        codec = self.codecs[cls]
        entity = self._draw_entity(data, cls, **{codec.pk: self._draw_key(data, cls)})
        key = self._key(entity)
        if key not in self.model[cls]:
            self._call(NotFound, f"update({entity!r})", lambda: self._repo(cls).update(entity))
            return
        expected = self._expected_error(*self._problems(self.model, entity, key))
        result = self._call(expected, f"update({entity!r})", lambda: self._repo(cls).update(entity))
        if expected is None:
            want = self._stored(entity)
            assert result == want, f"update returned {result!r} for {entity!r}"
            self.model[cls][key] = want

    @rule(cls=ENTITY_CLASS, data=st.data())
    def delete(self, cls: type, data: st.DataObject) -> None:
        key = self._draw_key(data, cls)
        by_entity = key in self.model[cls] and data.draw(st.booleans(), label="by entity?")
        arg = self.model[cls][key] if by_entity else key
        if key not in self.model[cls]:
            assert self._repo(cls).delete(arg) is False, f"delete({key!r}) of a missing row"
        elif self._referenced(cls, key):
            self._call(IntegrityError, f"delete({key!r}) of a referenced row",
                       lambda: self._repo(cls).delete(arg))
        else:
            assert self._repo(cls).delete(arg) is True, f"delete({key!r})"
            del self.model[cls][key]

    # -- reads ---------------------------------------------------------------------------------

    @rule(cls=ENTITY_CLASS, data=st.data())
    def get(self, cls: type, data: st.DataObject) -> None:
        key = self._draw_key(data, cls)
        if key in self.model[cls]:
            assert self._repo(cls).get(key) == self.model[cls][key], f"get({key!r})"
        else:
            self._call(NotFound, f"get({key!r})", lambda: self._repo(cls).get(key))
        keys = list(dict.fromkeys(self._draw_key(data, cls)
                                  for _ in range(data.draw(st.integers(0, 4)))))
        expected = [self.model[cls][k] for k in keys if k in self.model[cls]]
        assert self._repo(cls).get_many(keys) == expected, f"get_many({keys!r})"

    @rule(cls=ENTITY_CLASS, data=st.data())
    def find_and_count(self, cls: type, data: st.DataObject) -> None:
        codec = self.codecs[cls]
        rows = list(self.model[cls].values())
        kind = data.draw(st.sampled_from(["in", *_FILTER_FIELDS[cls], "isnull"]), label="filter")
        if kind == "in":
            keys = [self._draw_key(data, cls) for _ in range(data.draw(st.integers(0, 3)))]
            filters: dict[str, Any] = {f"{codec.pk}__in": keys}
            want = [e for e in rows if self._key(e) in keys]
        elif kind == "isnull":
            nullable = [f.name for f in codec.fields if f.nullable and f.kind != "json"]
            name = data.draw(st.sampled_from(nullable), label="field")
            flag = data.draw(st.booleans(), label="is null")
            filters = {f"{name}__isnull": flag}
            want = [e for e in rows if (getattr(e, name) is None) == flag]
        else:
            values = [*sorted({getattr(e, kind) for e in rows}, key=repr), None, "nobody"]
            value = data.draw(st.sampled_from(values), label=kind)
            filters = {kind: value}
            want = [e for e in rows if getattr(e, kind) == value]
        repo = self._repo(cls)
        got = repo.find(**filters)
        assert _by_key(got, self._key) == _by_key(want, self._key), f"find({filters!r})"
        assert len(got) == len(want), f"find({filters!r}) returned duplicates"
        assert repo.count(**filters) == len(want), f"count({filters!r})"
        first = repo.find_one(**filters)
        assert (first is None) == (not want) and (first is None or first in want)

    @rule(cls=ENTITY_CLASS, limit=st.none() | st.integers(0, 5), offset=st.integers(0, 5),
          descending=st.booleans())
    def find_page(self, cls: type, limit: int | None, offset: int, descending: bool) -> None:
        pk = self.codecs[cls].pk
        keys = sorted(self.model[cls], reverse=descending)
        stop = None if limit is None else offset + limit
        want = [self.model[cls][k] for k in keys[offset:stop]]
        got = self._repo(cls).find(order_by=f"-{pk}" if descending else pk, limit=limit,
                                   offset=offset)
        assert got == want, f"find(order_by={pk!r}, limit={limit}, offset={offset})"

    # -- transactions --------------------------------------------------------------------------

    @precondition(lambda self: len(self.transactions) < 3)
    @rule()
    def begin(self) -> None:
        """Open a transaction (a savepoint when one is open already)."""
        block = self.store.transaction()
        block.__enter__()
        self.transactions.append((block, self._copy()))

    @precondition(lambda self: bool(self.transactions))
    @rule()
    def commit(self) -> None:
        block, _ = self.transactions.pop()
        block.__exit__(None, None, None)

    @precondition(lambda self: bool(self.transactions))
    @rule()
    def rollback(self) -> None:
        block, before = self.transactions.pop()
        error = _Rollback()
        try:
            suppressed = block.__exit__(_Rollback, error, None)
        except _Rollback:
            suppressed = False
        assert not suppressed, "a transaction block swallowed the exception raised in it"
        self.model = before

    @precondition(lambda self: self.persistent and not self.transactions)
    @rule()
    def reopen(self) -> None:
        """Close the store and open it again: everything committed is still there."""
        old = self.store
        old.close()
        self.store = self.reopen_store(old)

    # -- the check -----------------------------------------------------------------------------

    @invariant()
    def store_matches_model(self) -> None:
        for cls in _ENTITY_CLASSES:
            repo = self._repo(cls)
            got = _by_key(repo.find(), self._key)
            want = _by_key(self.model[cls].values(), self._key)
            if got != want:
                missing = sorted(set(want) - set(got), key=repr)
                extra = sorted(set(got) - set(want), key=repr)
                changed = sorted((k for k in set(got) & set(want) if got[k] != want[k]), key=repr)
                raise AssertionError(
                    f"{cls.__name__}: missing {missing}, unexpected {extra}, differing "
                    + "; ".join(f"{k!r}: stored {got[k]!r} != model {want[k]!r}"
                                for k in changed))
            assert repo.count() == len(want), f"{cls.__name__}.count()"

    def teardown(self) -> None:
        try:
            while self.transactions:
                self.rollback()
        finally:
            self.dispose_store(self.store)


def _by_key(rows: Any, key: Callable[[Any], Any]) -> dict[Any, Any]:
    return {key(e): e for e in rows}


def machine_for(factory: Callable[[], Store], *, name: str = "Backend",
                persistent: bool = False,
                dispose: Callable[[Store], None] | None = None) -> type[RepositoryMachine]:
    """A :class:`RepositoryMachine` subclass whose stores come from ``factory()``; ``dispose``
    (default: close) releases each at the end of an example."""

    def make_store(self: RepositoryMachine) -> Store:
        return factory()

    def dispose_store(self: RepositoryMachine, store: Store) -> None:
        (dispose or (lambda s: s.close()))(store)

    return type(f"{name}Machine", (RepositoryMachine,), {
        "make_store": make_store, "dispose_store": dispose_store, "persistent": persistent,
        "__module__": __name__,
    })


@contextlib.contextmanager
def counts_unchanged(store: Store, tables: Sequence[str] | None = None) -> Iterator[None]:
    """Assert that the block leaves the row count of every table (or of ``tables``) as it
    was, e.g. around a call that must be rejected without writing anything."""
    before = store.backend.table_counts()
    yield
    after = store.backend.table_counts()
    if tables is not None:
        before = {t: before.get(t, 0) for t in tables}
        after = {t: after.get(t, 0) for t in tables}
    changed = {t: (before.get(t), n) for t, n in after.items() if before.get(t) != n}
    assert not changed, f"a rejected call wrote rows: {changed}"


__all__ = [
    "EXTREME_OFFSETS",
    "JSON",
    "OFFSETS",
    "SQL_INJECTIONS",
    "SUBCLASSES",
    "TEXT",
    "ConformingFloat",
    "ConformingInt",
    "ConformingText",
    "FloatSubclass",
    "IntSubclass",
    "RepositoryMachine",
    "TextSubclass",
    "accepted_entities",
    "accepted_value_strategy",
    "counts_unchanged",
    "deep_json",
    "entities",
    "extreme_datetimes",
    "hostile_text",
    "hostile_values",
    "huge_ints",
    "identical",
    "machine_for",
    "subclass_values",
    "surrogate_text",
    "value_strategy",
]
