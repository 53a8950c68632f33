"""Test helpers for hive-store and its plugin authors (needs the ``test`` extra: hypothesis).

``entities(cls)`` is a hypothesis strategy of valid entities of any registered entity class,
covering unicode text, NULLs, extreme numbers and aware datetimes in any offset.
"""

from __future__ import annotations

from datetime import UTC, timedelta, timezone
from typing import Any, TypeVar

from hypothesis import strategies as st

from hive_store._converters import EntityCodec, FieldInfo

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
    """Values a field of this kind accepts."""
    kinds: dict[str, st.SearchStrategy[Any]] = {
        "str": TEXT,
        "int": st.integers(-(2**63), 2**63 - 1),
        "float": st.floats(allow_nan=False),
        "bool": st.booleans(),
        "datetime": st.datetimes(timezones=OFFSETS).filter(_fits_utc),
        "date": st.dates(),
        "json": JSON.filter(lambda v: v is not None) if not info.nullable else JSON,
    }
    base = st.sampled_from(list(info.enum_type)) if info.enum_type else kinds[info.kind]
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
    """Valid entities of ``cls``; ``fixed`` pins fields (e.g. foreign keys) to values or
    strategies."""
    codec = EntityCodec(cls)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for info in codec.fields:
        if info.name in fixed:
            value = fixed[info.name]
            fields[info.name] = value if isinstance(value, st.SearchStrategy) else st.just(value)
        elif info.name == codec.pk and codec.autoincrement:
            fields[info.name] = st.none()
        else:
            fields[info.name] = value_strategy(info)
    return st.builds(cls, **fields)
