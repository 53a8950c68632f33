"""Entity <-> row conversion (private; the cattrs preconf shape: :func:`make_converter`).

Every entity gets generated cattrs functions, one per direction, with a per-field hook chosen
once from the field's type. Nothing is looked up by reflection per row.

SQL representation of Python values
-----------------------------------
========================  ==================================================================
Python                    SQLite
========================  ==================================================================
``datetime`` (aware)      TEXT ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00`` (RFC 3339, always UTC,
                          fixed width, so text order is time order). Read: that form, any
                          RFC 3339 offset, and SQLite's ``YYYY-MM-DD HH:MM:SS`` (UTC).
``date``                  TEXT ``YYYY-MM-DD``
``bool``                  INTEGER 0/1
``Enum``                  its value (TEXT)
``Json`` (dict, list …)   TEXT, compact JSON, UTF-8 kept (``ensure_ascii=False``)
``None``                  NULL
========================  ==================================================================

Values are checked on the way in and on the way out; a bad one raises
:class:`hive_store.ValidationError` naming the entity, each bad field and why.
"""

from __future__ import annotations

import enum
import json
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Generic, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from hive_store.errors import ValidationError

E = TypeVar("E")
Hook = Callable[[Any], Any]

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


# -- timestamps ---------------------------------------------------------------------------------


_minutes: dict[tuple[int, int, int, int, int], str] = {}


def _utc_text(value: datetime) -> str:
    """``value.isoformat(timespec="microseconds")`` for a datetime in UTC, in less than half
    the time (that call costs ~0.8 µs on CPython 3.11, the largest part of turning a
    message into a row): the ``YYYY-MM-DDTHH:MM:`` prefix is cached per minute."""
    key = (value.year, value.month, value.day, value.hour, value.minute)
    prefix = _minutes.get(key)
    if prefix is None:
        if len(_minutes) >= 4096:
            _minutes.clear()
        prefix = _minutes[key] = "%04d-%02d-%02dT%02d:%02d:" % key  # noqa: UP031
    # %-formatting: measured faster than the f-string equivalent on 3.11
    return "%s%02d.%06d+00:00" % (prefix, value.second, value.microsecond)  # noqa: UP031


def format_timestamp(value: datetime) -> str:
    """The one form hive_store writes: RFC 3339 in UTC with microseconds."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: give it a timezone (e.g. datetime.now(timezone.utc))")
    # not strftime: %Y is not zero-padded below year 1000 on glibc.
    return _utc_text(value if value.tzinfo is UTC else value.astimezone(UTC))


def parse_timestamp(value: str) -> datetime:
    """Read every timestamp form found in Hive databases; naive ones are UTC (SQLite's clock)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a timestamp: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


# -- field kinds ----------------------------------------------------------------------------------


@attrs.frozen
class FieldInfo:
    """What the converters know about one column."""

    name: str
    kind: str  # str | int | float | bool | datetime | date | enum | json
    nullable: bool
    enum_type: type[enum.Enum] | None = None


def _field_info(field: attrs.Attribute[Any]) -> FieldInfo:
    if field.metadata.get("json"):
        return FieldInfo(field.name, "json", bool(field.metadata.get("nullable", True)))
    tp = field.type
    nullable = False
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        nullable = len(args) != len(typing.get_args(tp))
        if len(args) != 1:
            raise TypeError(f"{field.name}: unsupported union type {tp!r}")
        tp = args[0]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return FieldInfo(field.name, "enum", nullable, tp)
    kinds: dict[Any, str] = {
        str: "str", int: "int", float: "float", bool: "bool", datetime: "datetime", date: "date",
    }
    if tp not in kinds:
        raise TypeError(f"{field.name}: unsupported column type {tp!r}")
    return FieldInfo(field.name, kinds[tp], nullable)


# Hooks from SQL/Python values to entity values ("structure") ------------------------------------


def _s_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    raise TypeError(f"expected text, got {type(v).__name__}")


def _s_int(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise TypeError(f"expected an integer, got {type(v).__name__}")


def _s_float(v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    raise TypeError(f"expected a number, got {type(v).__name__}")


def _s_bool(v: Any) -> bool:
    if v is True or v is False:
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise TypeError(f"expected a boolean (0/1), got {v!r:.40}")


def _s_datetime(v: Any) -> datetime:
    if isinstance(v, datetime):
        return v if v.tzinfo is not None else v.replace(tzinfo=UTC)
    if isinstance(v, str):
        return parse_timestamp(v)
    raise TypeError(f"expected a timestamp, got {type(v).__name__}")


def _s_date(v: Any) -> date:
    if isinstance(v, date) and not isinstance(v, datetime):
        return v
    if isinstance(v, str):
        try:
            return date.fromisoformat(v.strip()[:10])
        except ValueError:
            raise ValueError(f"not a date: {v[:40]!r}") from None
    raise TypeError(f"expected a date, got {type(v).__name__}")


def _s_json(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError as exc:
            raise ValueError(f"invalid JSON text ({exc})") from None
    return v


def _s_enum(enum_type: type[enum.Enum]) -> Hook:
    allowed = ", ".join(repr(m.value) for m in enum_type)

    def hook(v: Any) -> enum.Enum:
        try:
            return enum_type(v)
        except ValueError:
            raise ValueError(f"{v!r:.40} is not one of {allowed}") from None

    return hook


# Hooks from entity values to SQL values ("unstructure"); they check types strictly ------------


def _u_str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected str, got {type(v).__name__}")
    if not v.isascii():
        try:
            v.encode("utf-8")
            valid = True
        except UnicodeEncodeError:
            valid = False
        if not valid:  # raised outside the handler: the rejected text is not kept in __context__
            raise ValueError("text is not valid Unicode (lone surrogate)")
    return v


def _u_int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"expected int, got {type(v).__name__}")
    if not _INT_MIN <= v <= _INT_MAX:
        raise ValueError("integer out of the 64-bit range SQLite stores")
    return v


def _u_float(v: Any) -> float:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise TypeError(f"expected float, got {type(v).__name__}")
    f = float(v)
    if math.isnan(f):
        raise ValueError("NaN cannot be stored (SQLite turns it into NULL)")
    return f


def _u_bool(v: Any) -> int:
    if v is True:
        return 1
    if v is False:
        return 0
    raise TypeError(f"expected bool, got {type(v).__name__}")


def _u_datetime(v: Any) -> str:
    if not isinstance(v, datetime):
        raise TypeError(f"expected datetime, got {type(v).__name__}")
    return format_timestamp(v)


def _u_date(v: Any) -> str:
    if not isinstance(v, date) or isinstance(v, datetime):
        raise TypeError(f"expected date, got {type(v).__name__}")
    return v.isoformat()


def _u_json(v: Any) -> str:
    try:
        text = json.dumps(v, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not JSON-serialisable ({exc})") from None
    return _u_str(text)


def _u_enum(enum_type: type[enum.Enum]) -> Hook:
    structure = _s_enum(enum_type)

    def hook(v: Any) -> Any:
        if isinstance(v, enum_type):
            return v.value
        return structure(v).value

    return hook


_STRUCTURE: dict[str, Hook] = {
    "str": _s_str, "int": _s_int, "float": _s_float, "bool": _s_bool,
    "datetime": _s_datetime, "date": _s_date, "json": _s_json,
}
_UNSTRUCTURE: dict[str, Hook] = {
    "str": _u_str, "int": _u_int, "float": _u_float, "bool": _u_bool,
    "datetime": _u_datetime, "date": _u_date, "json": _u_json,
}


def _nullable(hook: Hook, name: str) -> Hook:
    def nullable_hook(v: Any) -> Any:
        return None if v is None else hook(v)

    nullable_hook.__name__ = f"nullable_{name}"
    return nullable_hook


def _not_null(hook: Hook) -> Hook:
    def not_null_hook(v: Any) -> Any:
        if v is None:
            raise ValueError("must not be None (the column is NOT NULL)")
        return hook(v)

    return not_null_hook


def _ignore_type(hook: Hook) -> Callable[[Any, Any], Any]:
    """cattrs structure hooks take ``(value, type)``; ours only need the value."""

    def struct(value: Any, _type: Any) -> Any:
        return hook(value)

    return struct


def structure_hook(info: FieldInfo) -> Hook:
    """The hook turning a stored or user-given value into the field's Python value."""
    hook = _s_enum(info.enum_type) if info.enum_type else _STRUCTURE[info.kind]
    return _nullable(hook, info.kind) if info.nullable else _not_null(hook)


def unstructure_hook(info: FieldInfo) -> Hook:
    """The hook turning a field's Python value into the value bound to SQLite."""
    hook = _u_enum(info.enum_type) if info.enum_type else _UNSTRUCTURE[info.kind]
    return _nullable(hook, info.kind) if info.nullable else _not_null(hook)


# -- converter and codecs -------------------------------------------------------------------------


def make_converter() -> cattrs.Converter:
    """A cattrs converter for hive_store values (timestamps, dates, enums, bools)."""
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=True)
    conv.register_structure_hook(datetime, lambda v, _: _s_datetime(v))
    conv.register_unstructure_hook(datetime, _u_datetime)
    conv.register_structure_hook(date, lambda v, _: _s_date(v))
    conv.register_unstructure_hook(date, _u_date)
    conv.register_structure_hook(bool, lambda v, _: _s_bool(v))
    conv.register_unstructure_hook(bool, _u_bool)
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


_codecs: dict[type, Any] = {}


def codec_for(cls: type[E]) -> EntityCodec[E]:
    """The (cached) codec of an entity class: building one generates code, so do it once."""
    codec: EntityCodec[E] | None = _codecs.get(cls)
    if codec is None:
        codec = _codecs[cls] = EntityCodec(cls)
    return codec


class EntityCodec(Generic[E]):
    """Generated row <-> entity functions and the table facts of one entity class."""

    __slots__ = (
        "_by_name",
        "_struct",
        "_struct_hooks",
        "_unstruct",
        "_unstruct_hooks",
        "autoincrement",
        "cls",
        "columns",
        "fields",
        "from_row",
        "name",
        "pk",
        "row_factory",
        "table",
        "to_row",
        "to_rows",
    )

    from_row: Callable[[Sequence[Any]], E]
    """Build the entity from a row whose values are in :attr:`columns` order (generated; a
    bad value raises :class:`ValidationError`)."""
    row_factory: Callable[[Any, Sequence[Any]], E]
    """:attr:`from_row` as a ``sqlite3`` ``row_factory`` (``cursor, row``)."""
    to_row: Callable[[Any], tuple[Any, ...]]
    """The SQL values of an entity in :attr:`columns` order; checks every field (generated;
    a bad value raises :class:`ValidationError` naming each bad field)."""
    to_rows: Callable[[list[Any]], list[tuple[Any, ...]]]
    """:attr:`to_row` over a list, in one call."""

    def __init__(self, cls: type[E]) -> None:
        if not attrs.has(cls):
            raise TypeError(f"{cls!r} is not an attrs class")
        attrs.resolve_types(cls)
        self.cls = cls
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
        self._struct_hooks = {fi.name: structure_hook(fi) for fi in self.fields}
        self._unstruct_hooks = {fi.name: unstructure_hook(fi) for fi in self.fields}
        struct_overrides: dict[str, Any] = {
            n: override(struct_hook=_ignore_type(h)) for n, h in self._struct_hooks.items()
        }
        unstruct_overrides: dict[str, Any] = {
            n: override(unstruct_hook=h) for n, h in self._unstruct_hooks.items()
        }
        generic_cls: Any = cls
        self._struct: Callable[[Mapping[str, Any], Any], Any] = make_dict_structure_fn(
            generic_cls, _converter, _cattrs_forbid_extra_keys=True,
            _cattrs_detailed_validation=True, **struct_overrides,
        )
        self._unstruct: Callable[[Any], dict[str, Any]] = make_dict_unstructure_fn(
            generic_cls, _converter, **unstruct_overrides,
        )

        self.from_row, self.row_factory = self._compile_from_row()
        self.to_row, self.to_rows = self._compile_to_row()

    # Generated fast paths: one function per entity and direction (and one per row list), with
    # the common case of each field inlined (a value already of the column's type, NULL, a
    # timestamp in the form hive_store writes). Anything else goes through the field's hook;
    # any failure falls back to the checked path, whose errors name every bad field.

    def _plain(self) -> bool:
        """Whether instances can be built slot by slot, bypassing ``__init__``: a slotted
        attrs class whose ``__init__`` does nothing but store the values (no validators,
        converters or post-init). Then ``object.__new__`` + the slots' setters is the same
        object, built at a fraction of the cost."""
        cls: Any = self.cls
        if "__slots__" not in cls.__dict__ or hasattr(cls, "__attrs_post_init__") or hasattr(
                cls, "__attrs_pre_init__"):
            return False
        for a in attrs.fields(cls):
            if a.validator is not None or a.converter is not None or not a.init:
                return False
            slot = getattr(cls, a.name, None)
            if type(slot).__name__ != "member_descriptor":
                return False
        return True

    def _from_row_exprs(self, ns: dict[str, Any]) -> list[str]:
        ns["_fromiso"] = datetime.fromisoformat
        exprs = []
        for i, fi in enumerate(self.fields):
            v = f"v{i}"
            ns[f"h{i}"] = self._struct_hooks[fi.name]
            if fi.enum_type is not None:
                ns[f"m{i}"] = fi.enum_type._value2member_map_
                expr = f"m{i}[{v}] if {v} in m{i} else h{i}({v})"
            elif fi.kind in ("str", "int", "float"):
                expr = f"{v} if {v}.__class__ is {fi.kind} else h{i}({v})"
            elif fi.kind == "bool":
                expr = f"({v} == 1) if {v}.__class__ is int and 0 <= {v} <= 1 else h{i}({v})"
            elif fi.kind == "datetime":
                expr = (f"_fromiso({v}) if {v}.__class__ is str and {v}.endswith('+00:00') "
                        f"else h{i}({v})")
            else:
                expr = f"h{i}({v})"
            if fi.nullable:
                # the hook of a NOT NULL field rejects None; a nullable one passes it through
                expr = f"None if {v} is None else ({expr})"
            exprs.append(f"({expr})")
        return exprs

    def _compile_from_row(self) -> tuple[Callable[[Any], E], Callable[[Any, Any], E]]:
        """``from_row(row)`` and its ``sqlite3`` row-factory twin ``(cursor, row)``."""
        ns: dict[str, Any] = {"cls": self.cls, "_new": object.__new__,
                              "_slow": self._slow_from_row}
        exprs = self._from_row_exprs(ns)
        unpack = f"        {', '.join(f'v{i}' for i in range(len(exprs)))}, = row\n"
        if self._plain():
            body = "        e = _new(cls)\n"
            for i, (fi, expr) in enumerate(zip(self.fields, exprs, strict=True)):
                ns[f"s{i}"] = getattr(self.cls, fi.name).__set__
                body += f"        s{i}(e, {expr})\n"
            body += "        return e\n"
        else:
            args = ", ".join(f"{fi.name}={expr}" for fi, expr in zip(self.fields, exprs,
                                                                     strict=True))
            body = f"        return cls({args})\n"
        # The fallback runs after the handler, so the error it raises carries no
        # __context__ (which could hold a rejected value).
        guarded = (f"    try:\n{unpack}{body}"
                   "    except (TypeError, ValueError, KeyError, AttributeError):\n"
                   "        pass\n"
                   "    return _slow(row)\n")
        src = f"def from_row(row):\n{guarded}\ndef row_factory(cursor, row):\n{guarded}"
        exec(compile(src, f"<hive_store from_row {self.name}>", "exec"), ns)
        return ns["from_row"], ns["row_factory"]

    def _to_row_exprs(self, ns: dict[str, Any]) -> list[str]:
        ns.update(_datetime=datetime, _UTC=UTC, _utc_text=_utc_text)
        exprs = []
        for i, fi in enumerate(self.fields):
            x = f"x{i}"
            ns[f"u{i}"] = self._unstruct_hooks[fi.name]
            if fi.enum_type is not None:
                ns[f"E{i}"] = fi.enum_type
                expr = f"{x}.value if {x}.__class__ is E{i} else u{i}({x})"
            elif fi.kind == "str":
                expr = f"{x} if {x}.__class__ is str and {x}.isascii() else u{i}({x})"
            elif fi.kind == "int":
                expr = (f"{x} if {x}.__class__ is int and -9223372036854775808 <= {x} "
                        f"<= 9223372036854775807 else u{i}({x})")
            elif fi.kind == "float":
                expr = f"{x} if {x}.__class__ is float and {x} == {x} else u{i}({x})"
            elif fi.kind == "bool":
                expr = f"1 if {x} is True else 0 if {x} is False else u{i}({x})"
            elif fi.kind == "datetime":
                expr = (f"_utc_text({x}) if {x}.__class__ is _datetime and {x}.tzinfo is _UTC "
                        f"else u{i}({x})")
            else:
                expr = f"u{i}({x})"
            if fi.nullable:
                expr = f"None if {x} is None else ({expr})"
            exprs.append(f"({expr})")
        return exprs

    def _compile_to_row(self) -> tuple[Callable[[Any], tuple[Any, ...]],
                                       Callable[[list[Any]], list[tuple[Any, ...]]]]:
        """``to_row(entity)`` and ``to_rows(entities)`` (one call for a whole batch)."""
        ns: dict[str, Any] = {"cls": self.cls, "_slow": self._slow_to_row}
        exprs = self._to_row_exprs(ns)
        getters = "".join(f"            x{i} = e.{fi.name}\n"
                          for i, fi in enumerate(self.fields))
        row = f"({', '.join(exprs)},)"
        src = (
            "def to_row(e):\n"
            "    if e.__class__ is cls:\n"
            "        try:\n"
            f"{getters}"
            f"            return {row}\n"
            "        except (TypeError, ValueError, AttributeError):\n"
            "            pass\n"
            "    return _slow(e)\n"
            "\n"
            "def to_rows(items):\n"
            "    out = []\n"
            "    append = out.append\n"
            "    try:\n"
            "        for e in items:\n"
            "            if e.__class__ is not cls:\n"
            "                raise TypeError\n"
            f"{getters}"
            f"            append({row})\n"
            "        return out\n"
            "    except (TypeError, ValueError, AttributeError):\n"
            "        pass\n"
            "    return [to_row(e) for e in items]\n"
        )
        exec(compile(src, f"<hive_store to_row {self.name}>", "exec"), ns)
        return ns["to_row"], ns["to_rows"]

    # rows -> entities
    def _slow_from_row(self, row: Any) -> E:
        """The checked path: a :class:`ValidationError` naming each bad value."""
        if len(row) != len(self.columns):
            raise ValidationError(self.name, [(
                "*", f"a row of {len(row)} values for {len(self.columns)} columns")])
        return self.structure(dict(zip(self.columns, row, strict=True)))

    def structure(self, data: Mapping[str, Any]) -> E:
        """Build the entity from a mapping of field names (missing fields take defaults)."""
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
        for name, hook in self._unstruct_hooks.items():
            try:
                out.append(hook(getattr(entity, name)))
            except (TypeError, ValueError, AttributeError) as exc:
                bad.append((name, str(exc)))
        if bad:
            raise ValidationError(self.name, bad)
        return tuple(out)

    def to_mapping(self, entity: E) -> dict[str, Any]:
        """Column name -> SQL value (the cattrs-generated unstructure function)."""
        try:
            return self._unstruct(entity)
        except (TypeError, ValueError, AttributeError):
            raise ValidationError(self.name, self.errors(entity)) from None

    def errors(self, entity: E) -> list[tuple[str, str]]:
        """Every (field, reason) that would stop this entity from being stored."""
        out = []
        for name, hook in self._unstruct_hooks.items():
            try:
                hook(getattr(entity, name))
            except (TypeError, ValueError, AttributeError) as exc:
                out.append((name, str(exc)))
        return out or [("?", "unknown conversion error")]

    def field(self, name: str) -> FieldInfo:
        """The named field; a :class:`ValidationError` for a name that is not a column."""
        try:
            return self._by_name[name]
        except KeyError:
            raise ValidationError(self.name, [(name, "no such field")]) from None

    def to_sql(self, name: str, value: Any) -> Any:
        """One field's value as bound to SQLite (for filters); checked like a write."""
        try:
            return self._unstruct_hooks[self.field(name).name](value)
        except (TypeError, ValueError) as exc:
            raise ValidationError(self.name, [(name, str(exc))]) from None

    def key_of(self, entity: Any) -> Any:
        """The primary key value of an entity."""
        return getattr(entity, self.pk)

    def evolve(self, entity: E, **changes: Any) -> E:
        """A copy of ``entity`` with ``changes`` (field names are checked)."""
        for name in changes:
            self.field(name)
        new: E = attrs.evolve(entity, **changes)  # type: ignore[misc]
        return new
