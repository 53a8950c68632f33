"""Hypothesis strategies of :mod:`hive_store.testing` (private module; import them from
``hive_store.testing``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import attrs
from hypothesis import strategies as st

from hive_store._converters import EntityCodec, FieldInfo
from hive_store.entities import ContextType, EventType, Stage, ThreadType

E = TypeVar("E")

TEXT = st.text(st.characters(codec="utf-8"), max_size=200)
OFFSETS = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                           timezone(timedelta(hours=-8)), timezone(timedelta(hours=14))])
JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | TEXT)
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)


def value_strategy(info: FieldInfo) -> st.SearchStrategy[Any]:
    """Values a field of this kind accepts, in the form a read returns them (so an entity
    made of them is stored and returned unchanged)."""
    kinds: dict[str, st.SearchStrategy[Any]] = {
        "str": TEXT,
        "int": st.integers(-(2**63), 2**63 - 1),
        "float": st.floats(allow_nan=False).map(lambda f: f if f != 0.0 else 0.0),
        "bool": st.booleans(),
        "datetime": st.datetimes(timezones=st.just(UTC)),
        "date": st.dates(),
        "json": JSON.filter(lambda v: v is not None) if not info.nullable else JSON,
    }
    if info.enum_type:
        base = st.sampled_from(list(info.enum_type))
    elif info.choices is not None:
        base = st.sampled_from(sorted(info.choices))
    else:
        base = kinds[info.kind]
    if info.nullable and info.kind != "json":
        return st.none() | base
    return base


def _fits_utc(dt: Any) -> bool:
    try:
        dt.astimezone(UTC)
    except OverflowError:
        return False
    return True


def entities(cls: type[E], **fixed: Any) -> st.SearchStrategy[E]:
    """Valid entities of ``cls`` whose values are in their stored form (a write returns the
    entity unchanged); ``fixed`` pins fields (e.g. foreign keys) to values or strategies.
    :func:`accepted_entities` draws values in every form a write accepts."""
    return _entities(cls, value_strategy, fixed)


def _entities(cls: type[E], values: Callable[[FieldInfo], st.SearchStrategy[Any]],
              fixed: dict[str, Any]) -> st.SearchStrategy[E]:
    codec = EntityCodec(cls)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for info in codec.fields:
        if info.name in fixed:
            value = fixed[info.name]
            fields[info.name] = value if isinstance(value, st.SearchStrategy) else st.just(value)
        elif info.name == codec.pk and codec.autoincrement:
            fields[info.name] = st.none()
        else:
            fields[info.name] = values(info)
    return st.builds(cls, **fields)


# -- values in every accepted form, and values that must be rejected --------------------------


class TextSubclass(str):
    """A ``str`` subclass (stored as its plain value)."""


class ConformingText(str):
    """A ``str`` subclass whose ``__conform__`` would make ``sqlite3`` store something else."""

    def __conform__(self, protocol: Any) -> Any:
        return "conformed: not the value"


class IntSubclass(int):
    """An ``int`` subclass."""


class ConformingInt(int):
    """An ``int`` subclass whose ``__conform__`` returns text."""

    def __conform__(self, protocol: Any) -> Any:
        return "not an integer"


class FloatSubclass(float):
    """A ``float`` subclass."""


class ConformingFloat(float):
    """A ``float`` subclass whose ``__conform__`` returns text."""

    def __conform__(self, protocol: Any) -> Any:
        return "not a float"


SUBCLASSES: tuple[type, ...] = (TextSubclass, ConformingText, IntSubclass, ConformingInt,
                                FloatSubclass, ConformingFloat)


def subclass_values() -> st.SearchStrategy[Any]:
    """Instances of ``str``/``int``/``float`` subclasses, with and without ``__conform__``
    (a write must store their plain value)."""
    return st.one_of(
        TEXT.map(TextSubclass), TEXT.map(ConformingText),
        st.integers(-(2**63), 2**63 - 1).map(IntSubclass),
        st.integers(-(2**63), 2**63 - 1).map(ConformingInt),
        st.floats(allow_nan=False).map(FloatSubclass),
        st.floats(allow_nan=False).map(ConformingFloat),
    )


EXTREME_OFFSETS = st.sampled_from([
    UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-14)),
    timezone(timedelta(hours=23, minutes=59)), timezone(-timedelta(hours=23, minutes=59)),
    timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(seconds=1)),
])


def extreme_datetimes() -> st.SearchStrategy[datetime]:
    """Aware datetimes within a day of ``datetime.min``/``datetime.max`` in large offsets:
    some fall outside ``datetime``'s range once converted to UTC."""
    near_min = datetime.min + timedelta(days=1)
    near_max = datetime.max - timedelta(days=1)
    return st.one_of(
        st.datetimes(max_value=near_min, timezones=EXTREME_OFFSETS),
        st.datetimes(min_value=near_max, timezones=EXTREME_OFFSETS),
    )


def huge_ints() -> st.SearchStrategy[int]:
    """Integers outside SQLite's 64-bit range, and ones a float cannot hold exactly."""
    return st.one_of(
        st.integers(min_value=2**63), st.integers(max_value=-(2**63) - 1),
        st.sampled_from([2**53 + 1, -(2**53) - 1, 2**63, -(2**63) - 1, 2**64, 10**400,
                         -(10**400)]),
        st.integers(2**53 + 1, 2**63 - 1).filter(lambda n: float(n) != n),
    )


def deep_json(min_depth: int = 2, max_depth: int = 60_000) -> st.SearchStrategy[Any]:
    """Lists and dicts nested ``min_depth`` to ``max_depth`` deep (built without recursion)."""

    def build(args: tuple[int, str]) -> Any:
        depth, shape = args
        value: Any = 1
        for i in range(depth):
            value = [value] if shape == "list" or (shape == "mixed" and i % 2) else {"k": value}
        return value

    return st.tuples(st.integers(min_depth, max_depth),
                     st.sampled_from(["list", "dict", "mixed"])).map(build)


def surrogate_text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Text with at least one lone surrogate (not valid Unicode: SQLite cannot store it)."""
    return st.builds(lambda a, s, b: a + s + b, st.text(max_size=max_size),
                     st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),
                     st.text(max_size=max_size))


def accepted_value_strategy(info: FieldInfo) -> st.SearchStrategy[Any]:
    """Values a write accepts in forms other than the stored one, mixed with
    :func:`value_strategy`: subclasses of the field's type, exact ints for floats, datetimes
    in any offset (up to the edges of the range), tuples and non-ASCII keys in JSON, enum
    values instead of members, ``-0.0``. A write stores them as the plain stored form and
    returns that form."""
    base = value_strategy(info)
    extra: list[st.SearchStrategy[Any]] = []
    if info.enum_type is not None:
        extra.append(st.sampled_from([m.value for m in info.enum_type]))
    elif info.choices is not None:
        extra.append(st.sampled_from(sorted(info.choices)).map(TextSubclass))
    elif info.kind == "str":
        extra += [TEXT.map(TextSubclass), TEXT.map(ConformingText)]
    elif info.kind == "int":
        extra += [st.integers(-(2**63), 2**63 - 1).map(IntSubclass),
                  st.integers(-(2**63), 2**63 - 1).map(ConformingInt)]
    elif info.kind == "float":
        extra += [st.integers(-(2**53), 2**53), st.just(-0.0),
                  st.floats(allow_nan=False).map(FloatSubclass),
                  st.floats(allow_nan=False).map(ConformingFloat)]
    elif info.kind == "datetime":
        extra += [st.datetimes(timezones=OFFSETS).filter(_fits_utc),
                  extreme_datetimes().filter(_fits_utc)]
    elif info.kind == "json":
        extra.append(st.recursive(
            JSON_SCALARS | TEXT.map(TextSubclass),
            lambda children: st.lists(children, max_size=3).map(tuple)
            | st.dictionaries(TEXT.map(TextSubclass), children, max_size=3),
            max_leaves=8).filter(lambda v: v is not None or info.nullable))
    return st.one_of(base, *extra)


def accepted_entities(cls: type[E], **fixed: Any) -> st.SearchStrategy[E]:
    """Valid entities of ``cls`` with values in every form a write accepts
    (:func:`accepted_value_strategy`); a write returns them in their stored form."""
    return _entities(cls, accepted_value_strategy, fixed)


def identical(a: Any, b: Any) -> bool:
    """Deep equality that also compares types (``1 != 1.0``, ``[1] != (1,)``, a subclass
    differs from its base), floats by their bits (``0.0 != -0.0``) and datetimes with their
    UTC offsets: what "returned exactly as stored" means."""
    if a.__class__ is not b.__class__:
        return False
    if isinstance(a, float):
        return a.hex() == b.hex() or (a != a and b != b)
    if isinstance(a, datetime):
        return bool(a == b and a.utcoffset() == b.utcoffset())
    if isinstance(a, dict):
        return list(a) == list(b) and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b, strict=True))
    if attrs.has(a.__class__):
        return all(identical(getattr(a, f.name), getattr(b, f.name))
                   for f in attrs.fields(a.__class__))
    return bool(a == b)


# -- hostile input ---------------------------------------------------------------------------

SQL_INJECTIONS: tuple[str, ...] = (
    "'; DROP TABLE messages; --",
    '" OR 1=1 --',
    "x' UNION SELECT key, value FROM configurations --",
    "1; DELETE FROM users",
    "id) VALUES (1); --",
    "rowid",
    "*",
    "sqlite_master",
    "\" FROM users; --",
    "`id`",
    "[id]",
    "id--",
    "id/*",
    "%",
    "_",
    "\\",
    "\x00",
    "'",
    '"',
    "🐝'); DELETE FROM conversations; --",
)
"""SQL fragments to feed as values, field names and ``order_by`` specs."""


def hostile_text(max_size: int = 60, huge: int = 1_000_000) -> st.SearchStrategy[str]:
    """Text that tries to break out of SQL or encodings: injection payloads, lone surrogates
    (:func:`surrogate_text`), NULs, mixtures of those, and very long strings (10 000 to
    ``huge`` characters)."""
    return st.one_of(
        st.sampled_from(SQL_INJECTIONS),
        st.builds(lambda a, b: a + b, st.sampled_from(SQL_INJECTIONS),
                  st.text(max_size=max_size)),
        st.text(max_size=max_size),
        surrogate_text(max_size),
        st.builds(lambda a, b: a + b, st.sampled_from(SQL_INJECTIONS), surrogate_text(8)),
        st.integers(min(10_000, huge), huge).map(lambda n: "x" * n),
    )


class _Opaque:
    """An object with no business in a database."""

    def __repr__(self) -> str:
        return "<opaque>"


def hostile_values(huge: int = 1_000_000) -> st.SearchStrategy[Any]:
    """Values of every Python type a caller might pass by mistake: wrong types, NaN and
    infinities, integers beyond 64 bits, naive and extreme datetimes, members of unrelated
    enums, containers, bytes, arbitrary objects, :func:`hostile_text` (``huge`` bounds its
    longest strings), :func:`huge_ints`, :func:`extreme_datetimes`, :func:`deep_json` and
    :func:`subclass_values` (some of these are valid for some fields)."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        huge_ints(),
        extreme_datetimes(),
        deep_json(),
        subclass_values(),
        st.floats(),  # NaN and the infinities included
        st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324]),
        st.complex_numbers(max_magnitude=10),
        st.decimals(allow_nan=True),
        hostile_text(huge=huge),
        st.binary(max_size=20),
        st.datetimes(),  # naive
        st.datetimes(timezones=OFFSETS),
        st.sampled_from([datetime.min, datetime.max,
                         datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)]),
        st.dates(),
        st.sampled_from([*Stage, *EventType, *ContextType, *ThreadType]),
        st.lists(st.integers() | st.text(max_size=5), max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
        st.tuples(st.integers()),
        st.frozensets(st.integers(), max_size=2),
        st.just(_Opaque()),
        st.just(object),
        st.just(Ellipsis),
    )
