"""Entity <-> row conversion (private; the cattrs preconf shape: :func:`make_converter`).

Every entity gets generated functions, one per direction, with the common case of each field
inlined (a value already in its stored form) and every other case handed to the field's hook.
The value rules themselves (what a field accepts, which stored shapes it reads, what a value
that cannot be typed becomes) live in :mod:`hive_store.values`.

Reads never fail on a stored value (a tolerant codec): the generated fast path reads rows in
hive-store's own form; a row it cannot read goes through each field's hook, and a value that
hook cannot type becomes a :class:`~hive_store.values.RawValue` in the entity. A strict codec
(:func:`codec_for` with ``strict=True``) raises :class:`hive_store.RawValueError` instead.
Writes check every field (:class:`hive_store.ValidationError` naming each bad one).
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Generic, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from hive_store import values as V
from hive_store.errors import RawValueError, ValidationError, describe
from hive_store.values import RawValue, Unreadable, format_timestamp, parse_timestamp

E = TypeVar("E")
Hook = Callable[[Any], Any]

__all__ = ["EntityCodec", "FieldInfo", "codec_for", "format_timestamp", "parse_timestamp"]

# -- timestamps ---------------------------------------------------------------------------------

_minutes: dict[tuple[int, int, int, int, int], str] = {}


def _utc_text(value: datetime) -> str:
    """:func:`format_timestamp` of a datetime whose tzinfo is UTC, in less than half the time
    (``isoformat`` costs ~0.8 µs on CPython 3.11, the largest part of turning a message into
    a row): the ``YYYY-MM-DDTHH:MM:`` prefix is cached per minute."""
    key = (value.year, value.month, value.day, value.hour, value.minute)
    prefix = _minutes.get(key)
    if prefix is None:
        if len(_minutes) >= 4096:
            _minutes.clear()
        prefix = _minutes[key] = "%04d-%02d-%02dT%02d:%02d:" % key  # noqa: UP031
    # %-formatting: measured faster than the f-string equivalent on 3.11
    return "%s%02d.%06d+00:00" % (prefix, value.second, value.microsecond)  # noqa: UP031


# -- field kinds ----------------------------------------------------------------------------------


@attrs.frozen
class FieldInfo:
    """What the converters know about one column."""

    name: str
    kind: str  # str | int | float | bool | datetime | date | enum | json
    nullable: bool
    enum_type: type[enum.Enum] | None = None
    choices: frozenset[str] | None = None
    """The only values a text field takes (from Hive's schema or code), else ``None``."""
    secret: bool = False
    """Left out of reprs (``repr=False``): messages never quote its value."""


def _field_info(field: attrs.Attribute[Any]) -> FieldInfo:
    secret = field.repr is False
    if field.metadata.get("json"):
        return FieldInfo(field.name, "json", bool(field.metadata.get("nullable", True)),
                         secret=secret)
    tp = field.type
    nullable = False
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        nullable = len(args) != len(typing.get_args(tp))
        if len(args) != 1:
            raise TypeError(f"{field.name}: unsupported union type {tp!r}")
        tp = args[0]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return FieldInfo(field.name, "enum", nullable, tp, secret=secret)
    kinds: dict[Any, str] = {
        str: "str", int: "int", float: "float", bool: "bool", datetime: "datetime", date: "date",
    }
    if tp not in kinds:
        raise TypeError(f"{field.name}: unsupported column type {tp!r}")
    choices = field.metadata.get("choices")
    if choices is not None and tp is not str:
        raise TypeError(f"{field.name}: choices are for text fields")
    return FieldInfo(field.name, kinds[tp], nullable,
                     choices=frozenset(choices) if choices is not None else None, secret=secret)


def enum_member(enum_type: type[enum.Enum], value: Any) -> Any:
    """The member of ``enum_type`` with this value, or ``None`` (no ``enum_type(value)``: its
    error message takes the ``repr`` of any object it is given)."""
    if isinstance(value, enum_type):
        return value
    try:
        return enum_type._value2member_map_.get(value)
    except TypeError:  # unhashable
        return None


def _choice_list(choices: frozenset[str]) -> str:
    return ", ".join(repr(c) for c in sorted(choices))


# Hooks from stored values to entity values ("structure"): every shape with a meaning -------------


def _read_hook(info: FieldInfo) -> Hook:
    """The field's reader: the typed value of a stored value, or :class:`Unreadable`/
    :class:`TypeError` naming why it has none."""
    if info.enum_type is not None:
        enum_type = info.enum_type
        allowed = ", ".join(repr(m.value) for m in enum_type)

        def read_enum(v: Any) -> enum.Enum:
            member: enum.Enum | None = enum_member(enum_type, v)
            if member is None:
                raise Unreadable(f"not one of {allowed}")
            return member

        hook: Hook = read_enum
    elif info.kind == "json":
        return _json_reader(info.nullable)
    elif info.choices is not None:
        choices = info.choices
        allowed = _choice_list(choices)

        def read_choice(v: Any) -> str:
            if v.__class__ is str and v in choices:
                return v
            raise Unreadable(f"not one of {allowed}")

        hook = read_choice
    else:
        hook = _READERS[info.kind]
    return _nullable(hook) if info.nullable else _not_null_read(hook)


def _json_reader(nullable: bool) -> Hook:
    load = V.load_json

    if nullable:
        def read_json(v: Any) -> Any:
            return None if v is None else load(v)
        return read_json

    def read_json_not_null(v: Any) -> Any:
        if v is None:
            raise Unreadable("NULL in a NOT NULL field")
        loaded = load(v)
        if loaded is None:
            raise Unreadable("JSON null in a NOT NULL JSON field (None means SQL NULL)")
        return loaded

    return read_json_not_null


def _datetime_reader(v: Any) -> datetime:
    if v.__class__ is datetime or isinstance(v, datetime):  # structure() from Python values
        if v.tzinfo is None or v.utcoffset() is None:
            return v.replace(tzinfo=UTC)
        return v
    return parse_timestamp(v)


def _date_reader(v: Any) -> date:
    if isinstance(v, date) and not isinstance(v, datetime):
        return v
    return V.parse_date(v)


_READERS: dict[str, Hook] = {
    "str": V.read_text, "int": V.read_int, "float": V.read_float, "bool": V.parse_bool,
    "datetime": _datetime_reader, "date": _date_reader,
}


def _nullable(hook: Hook) -> Hook:
    def nullable_hook(v: Any) -> Any:
        return None if v is None else hook(v)

    return nullable_hook


def _not_null_read(hook: Hook) -> Hook:
    def not_null_hook(v: Any) -> Any:
        if v is None:
            raise Unreadable("NULL in a NOT NULL field")
        return hook(v)

    return not_null_hook


# Hooks from entity values to SQL values ("unstructure"): strict checks --------------------------


def _u_datetime(v: Any) -> str:
    if not isinstance(v, datetime):
        raise TypeError(f"expected datetime, got {type(v).__name__}")
    return format_timestamp(v)


_CHECKS: dict[str, Hook] = {
    "str": V.check_text, "int": V.check_int, "float": V.check_float, "bool": V.check_bool,
    "datetime": _u_datetime, "date": V.check_date, "json": V.dump_json,
}


def _enum_check(enum_type: type[enum.Enum]) -> Hook:
    allowed = ", ".join(repr(m.value) for m in enum_type)

    def check_enum(v: Any) -> Any:
        if isinstance(v, enum_type):
            return v.value
        member = enum_member(enum_type, v)
        if member is None:
            raise ValueError(f"{describe(v, 40)} is not one of {allowed}")
        return member.value

    return check_enum


def _choice_check(choices: frozenset[str]) -> Hook:
    allowed = _choice_list(choices)

    def check_choice(v: Any) -> str:
        text = V.check_text(v)
        if text not in choices:
            raise ValueError(f"{describe(text, 40)} is not one of {allowed}")
        return text

    return check_choice


def write_hook(info: FieldInfo, *, for_filter: bool = False) -> Hook:
    """The hook turning a field's Python value into the value bound to SQL (a filter value
    of a text field with fixed choices may be any text: it just matches nothing)."""
    if info.enum_type is not None:
        check = _enum_check(info.enum_type)
    elif info.choices is not None and not for_filter:
        check = _choice_check(info.choices)
    else:
        check = _CHECKS[info.kind]
    nullable = info.nullable

    def write(v: Any) -> Any:
        if v is None:
            if nullable:
                return None
            raise ValueError("must not be None (the column is NOT NULL)")
        if v.__class__ is RawValue:
            return v.value
        return check(v)

    return write


def _python_or_stored(info: FieldInfo, read: Hook) -> Hook:
    """:meth:`EntityCodec.structure`'s hook: a field's reader, plus (JSON fields) a Python
    value given as it is (the write checks it) rather than as stored JSON text."""
    if info.kind != "json":
        return read

    def structure_json(v: Any) -> Any:
        if v is None or isinstance(v, (str, bytes)):
            return read(v)
        return v

    return structure_json


def _ignore_type(hook: Hook) -> Callable[[Any, Any], Any]:
    """cattrs structure hooks take ``(value, type)``; ours only need the value."""

    def struct(value: Any, _type: Any) -> Any:
        return hook(value)

    return struct


# -- converter and codecs -------------------------------------------------------------------------


def make_converter() -> cattrs.Converter:
    """A cattrs converter for hive_store values (timestamps, dates, enums, bools)."""
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=True)
    conv.register_structure_hook(datetime, lambda v, _: _datetime_reader(v))
    conv.register_unstructure_hook(datetime, _u_datetime)
    conv.register_structure_hook(date, lambda v, _: _date_reader(v))
    conv.register_unstructure_hook(date, V.check_date)
    conv.register_structure_hook(bool, lambda v, _: V.parse_bool(v))
    conv.register_unstructure_hook(bool, V.check_bool)
    return conv


_converter = make_converter()


def _reasons(exc: BaseException) -> list[tuple[str, str]]:
    """(field, reason) pairs from a cattrs detailed-validation error."""
    out: list[tuple[str, str]] = []
    if isinstance(exc, cattrs.ClassValidationError):
        for sub in exc.exceptions:
            if isinstance(sub, cattrs.ForbiddenExtraKeysError):
                out.append((", ".join(sorted(sub.extra_fields)), "unknown field"))
                continue
            notes = getattr(sub, "__notes__", [])
            field = "?"
            for note in notes:
                note_text = str(note)
                if note_text.startswith("Structuring class") and "@ attribute" in note_text:
                    field = note_text.rsplit("@ attribute", 1)[1].strip()
            if isinstance(sub, KeyError) and field == "?":
                field, reason = str(sub.args[0]) if sub.args else "?", "required field is missing"
            else:
                reason = str(sub) if not isinstance(sub, KeyError) else "required field is missing"
            out.append((field, reason))
        if exc.exceptions == () or not out:
            out.append(("?", str(exc)))
    elif isinstance(exc, cattrs.ForbiddenExtraKeysError):
        out.append((", ".join(sorted(exc.extra_fields)), "unknown field"))
    else:
        out.append(("?", str(exc)))
    return out


_codecs: dict[tuple[type, bool], Any] = {}


def codec_for(cls: type[E], *, strict: bool = False) -> EntityCodec[E]:
    """The (cached) codec of an entity class: building one generates code, so do it once.
    ``strict`` codecs raise :class:`hive_store.RawValueError` for a stored value that cannot
    be typed; the default puts a :class:`hive_store.RawValue` in the field."""
    codec: EntityCodec[E] | None = _codecs.get((cls, strict))
    if codec is None:
        codec = _codecs[(cls, strict)] = EntityCodec(cls, strict=strict)
    return codec


def same_sql(a: Any, b: Any) -> bool:
    """Whether two SQL values are the same value of the same storage class."""
    return a.__class__ is b.__class__ and a == b


class EntityCodec(Generic[E]):
    """Generated row <-> entity functions and the table facts of one entity class."""

    __slots__ = (
        "_by_name",
        "_filter_hooks",
        "_read_hooks",
        "_struct",
        "_unstruct",
        "_write_hooks",
        "autoincrement",
        "cls",
        "columns",
        "dump",
        "dump_many",
        "fields",
        "from_row",
        "name",
        "pk",
        "row_factory",
        "strict",
        "table",
        "to_row",
        "to_rows",
    )

    from_row: Callable[[Sequence[Any]], E]
    """Build the entity from a row whose values are in :attr:`columns` order (generated).
    Never fails on a stored value: see the module docstring (strict codecs raise)."""
    row_factory: Callable[[Any, Sequence[Any]], E]
    """:attr:`from_row` as a ``sqlite3`` ``row_factory`` (``cursor, row``)."""
    to_row: Callable[[Any], tuple[Any, ...]]
    """The SQL values of an entity in :attr:`columns` order; checks every field (generated;
    a bad value raises :class:`ValidationError` naming each bad field)."""
    to_rows: Callable[[list[Any]], list[tuple[Any, ...]]]
    """:attr:`to_row` over a list, in one call."""
    dump: Callable[[Any], tuple[tuple[Any, ...], E]]
    """``(row, stored)``: :attr:`to_row` and the entity as a read of that row returns it (the
    entity itself when every value is already in its stored form, the common case)."""
    dump_many: Callable[[list[Any]], tuple[list[tuple[Any, ...]], list[E]]]
    """:attr:`dump` over a list: ``(rows, stored entities)``."""

    def __init__(self, cls: type[E], *, strict: bool = False) -> None:
        if not attrs.has(cls):
            raise TypeError(f"{cls!r} is not an attrs class")
        attrs.resolve_types(cls)
        self.cls = cls
        self.strict = strict
        self.name: str = cls.__name__
        self.table: str = cls.__table__  # type: ignore[attr-defined]
        self.pk: str = cls.__pk__  # type: ignore[attr-defined]
        self.autoincrement: bool = bool(getattr(cls, "__autoincrement__", False))
        fields = attrs.fields(cls)
        self.fields: tuple[FieldInfo, ...] = tuple(_field_info(f) for f in fields)
        if self.autoincrement:
            # The key is None until SQLite assigns it.
            self.fields = tuple(
                attrs.evolve(fi, nullable=True) if fi.name == self.pk else fi for fi in self.fields
            )
        self.columns: tuple[str, ...] = tuple(f.name for f in fields)
        if self.pk not in self.columns:
            raise TypeError(f"{self.name}: primary key {self.pk!r} is not a field")
        self._by_name = {fi.name: fi for fi in self.fields}
        self._read_hooks = {fi.name: _read_hook(fi) for fi in self.fields}
        self._write_hooks = {fi.name: write_hook(fi) for fi in self.fields}
        self._filter_hooks = {fi.name: write_hook(fi, for_filter=True) for fi in self.fields}
        struct_overrides: dict[str, Any] = {
            fi.name: override(struct_hook=_ignore_type(_python_or_stored(
                fi, self._read_hooks[fi.name]))) for fi in self.fields
        }
        unstruct_overrides: dict[str, Any] = {
            n: override(unstruct_hook=h) for n, h in self._write_hooks.items()
        }
        generic_cls: Any = cls
        self._struct: Callable[[Mapping[str, Any], Any], Any] = make_dict_structure_fn(
            generic_cls, _converter, _cattrs_forbid_extra_keys=True,
            _cattrs_detailed_validation=True, **struct_overrides,
        )
        self._unstruct: Callable[[Any], dict[str, Any]] = make_dict_unstructure_fn(
            generic_cls, _converter, **unstruct_overrides,
        )
        from hive_store._codegen import compile_codec

        compile_codec(self)

    # rows -> entities
    def _slow_from_row(self, row: Any) -> E:
        """Every field through its reader; a value it cannot type becomes a
        :class:`RawValue` (or, strict, a :class:`RawValueError` naming each field)."""
        if len(row) != len(self.columns):
            raise ValidationError(self.name, [(
                "*", f"a row of {len(row)} values for {len(self.columns)} columns")])
        out: list[Any] = []
        bad: list[tuple[str, str]] = []
        for fi, v in zip(self.fields, row, strict=True):
            try:
                out.append(self._read_hooks[fi.name](v))
                continue
            except (TypeError, ValueError, OverflowError, RecursionError, KeyError,
                    AttributeError) as exc:
                reason = str(exc) or type(exc).__name__
            try:
                raw = RawValue(v, reason)
            except (TypeError, ValueError):
                raw = None
            if raw is None:  # not a value SQLite stores: the row did not come from a database
                raise ValidationError(self.name, [(fi.name, reason)])
            out.append(raw)
            bad.append((fi.name, reason if fi.secret else
                        f"{reason}: {describe(v, 60)}"))
        if bad and self.strict:
            key = row[self.columns.index(self.pk)]
            raise RawValueError(self.name, bad, key=key)
        return self.build(out)

    def build(self, values: Sequence[Any]) -> E:
        """An instance holding ``values`` (in :attr:`columns` order) as they are, without
        running the class's ``__init__`` checks (the values come from the database)."""
        entity: Any = object.__new__(self.cls)
        setattr_ = object.__setattr__
        for name, value in zip(self.columns, values, strict=True):
            setattr_(entity, name, value)
        built: E = entity
        return built

    def structure(self, data: Mapping[str, Any]) -> E:
        """Build the entity from a mapping of field names (missing fields take defaults);
        every value must have a meaning of its field's type."""
        try:
            entity: E = self._struct(data, self.cls)
            return entity
        except (cattrs.BaseValidationError, cattrs.ForbiddenExtraKeysError) as exc:
            reasons = _reasons(exc)
        except (TypeError, ValueError, KeyError) as exc:
            reasons = [("?", str(exc))]
        # raised outside the handlers: the error keeps no __context__ holding the values
        raise ValidationError(self.name, reasons)

    # entities -> rows
    def _slow_to_row(self, entity: Any) -> tuple[Any, ...]:
        """The checked path of :attr:`to_row`: every field through its hook, and a
        :class:`ValidationError` naming each bad one."""
        if type(entity) is not self.cls:
            raise ValidationError(
                self.name, [("*", f"expected a {self.name}, got {type(entity).__name__}")]
            )
        out, bad = [], []
        for name, hook in self._write_hooks.items():
            try:
                out.append(hook(getattr(entity, name)))
            except (TypeError, ValueError, AttributeError, OverflowError) as exc:
                bad.append((name, str(exc)))
        if bad:
            raise ValidationError(self.name, bad)
        return tuple(out)

    def to_mapping(self, entity: E) -> dict[str, Any]:
        """Column name -> SQL value (the cattrs-generated unstructure function)."""
        try:
            return self._unstruct(entity)
        except (TypeError, ValueError, AttributeError, OverflowError):
            raise ValidationError(self.name, self.errors(entity)) from None

    def errors(self, entity: E) -> list[tuple[str, str]]:
        """Every (field, reason) that would stop this entity from being stored."""
        out = []
        for name, hook in self._write_hooks.items():
            try:
                hook(getattr(entity, name))
            except (TypeError, ValueError, AttributeError, OverflowError) as exc:
                out.append((name, str(exc)))
        return out or [("?", "unknown conversion error")]

    def field(self, name: str) -> FieldInfo:
        """The named field; a :class:`ValidationError` for a name that is not a column."""
        if not isinstance(name, str):
            raise ValidationError(self.name, [(describe(name, 40), "field names are text")])
        try:
            return self._by_name[name]
        except KeyError:
            raise ValidationError(self.name, [(name, "no such field")]) from None

    def to_sql(self, name: str, value: Any) -> Any:
        """One field's value as bound to SQL for a filter; checked like a write (a text
        field with fixed choices takes any text)."""
        try:
            return self._filter_hooks[self.field(name).name](value)
        except (TypeError, ValueError, OverflowError) as exc:
            reason = str(exc)
        raise ValidationError(self.name, [(name, reason)])

    def key_of(self, entity: Any) -> Any:
        """The primary key value of an entity."""
        return getattr(entity, self.pk)

    def evolve(self, entity: E, **changes: Any) -> E:
        """A copy of ``entity`` with ``changes`` (field names are checked)."""
        for name in changes:
            self.field(name)
        new: E = attrs.evolve(entity, **changes)  # type: ignore[misc]
        return new

    def changed(self, stored: Sequence[Any], row: Sequence[Any]) -> list[int]:
        """The indexes of the columns where ``row`` (an entity's SQL values) differs from the
        stored row's values in the form hive-store writes them (see :meth:`canonical`)."""
        canon = self.canonical(stored)
        return [i for i, (a, b) in enumerate(zip(canon, row, strict=True))
                if not (a.__class__ is b.__class__ and a == b)]

    def canonical(self, stored: Sequence[Any]) -> tuple[Any, ...]:
        """A stored row's values as hive-store would write the values it reads from them: a
        legacy timestamp as its instant in hive-store's form, JSON re-serialised, a raw value
        as it is. Two rows that read as the same values have the same canonical form."""
        return self.to_row(self.from_row(stored))

