"""The generated fast paths of an :class:`~hive_store._converters.EntityCodec` (private).

One function per entity and direction (and one per row list), with the common case of each
field inlined: a value already of the column's type, NULL, a timestamp in the form hive_store
writes. Anything else goes through the field's hook; any failure falls back to the codec's
checked path (reads: per field, with :class:`~hive_store.values.RawValue` for a value that has
no meaning; writes: a :class:`~hive_store.ValidationError` naming every bad field). The
fallback runs after the handler, so an error it raises carries no ``__context__`` that could
hold a rejected value.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from hive_store import values as V

if TYPE_CHECKING:
    from hive_store._converters import EntityCodec

_INT_RANGE = f"{V.INT64_MIN} <= {{x}} <= {V.INT64_MAX}"


def _plain(codec: EntityCodec[Any]) -> bool:
    """Whether instances can be built slot by slot, bypassing ``__init__``: a slotted attrs
    class whose ``__init__`` does nothing but store the values (no validators, converters or
    post-init). Then ``object.__new__`` + the slots' setters is the same object, built at a
    fraction of the cost."""
    import attrs

    cls: Any = codec.cls
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


def _from_row_exprs(codec: EntityCodec[Any], ns: dict[str, Any]) -> list[str]:
    ns["_fromiso"] = datetime.fromisoformat
    exprs = []
    for i, fi in enumerate(codec.fields):
        v = f"v{i}"
        ns[f"h{i}"] = codec._read_hooks[fi.name]
        if fi.enum_type is not None:
            ns[f"m{i}"] = fi.enum_type._value2member_map_
            expr = f"m{i}[{v}] if {v} in m{i} else h{i}({v})"
        elif fi.choices is not None:
            ns[f"C{i}"] = fi.choices
            expr = f"{v} if {v} in C{i} else h{i}({v})"
        elif fi.kind in ("str", "int", "float"):
            expr = f"{v} if {v}.__class__ is {fi.kind} else h{i}({v})"
        elif fi.kind == "bool":
            expr = f"({v} == 1) if {v}.__class__ is int and 0 <= {v} <= 1 else h{i}({v})"
        elif fi.kind == "datetime":
            # the shape hive_store writes (fromisoformat alone takes many more: week dates,
            # any separator, basic and comma forms, which the SQL comparison key does not
            # know); a value that is not text fails endswith and takes the checked path
            expr = (f"_fromiso({v}) if {v}.endswith('+00:00') and {v}[19] == '.' "
                    f"and {v}[10] == 'T' and {v}[7] == '-' else h{i}({v})")
        else:
            expr = f"h{i}({v})"
        if fi.nullable:
            # the hook of a NOT NULL field rejects None; a nullable one passes it through
            expr = f"None if {v} is None else ({expr})"
        exprs.append(f"({expr})")
    return exprs


def _compile_from_row(codec: EntityCodec[Any]) -> None:
    ns: dict[str, Any] = {"cls": codec.cls, "_new": object.__new__,
                          "_slow": codec._slow_from_row}
    exprs = _from_row_exprs(codec, ns)
    unpack = f"        {', '.join(f'v{i}' for i in range(len(exprs)))}, = row\n"
    if _plain(codec):
        body = "        e = _new(cls)\n"
        for i, (fi, expr) in enumerate(zip(codec.fields, exprs, strict=True)):
            ns[f"s{i}"] = getattr(codec.cls, fi.name).__set__
            body += f"        s{i}(e, {expr})\n"
        body += "        return e\n"
    else:
        args = ", ".join(f"{fi.name}={expr}" for fi, expr in zip(codec.fields, exprs,
                                                                 strict=True))
        body = f"        return cls({args})\n"
    guarded = (f"    try:\n{unpack}{body}"
               "    except (TypeError, ValueError, LookupError, AttributeError):\n"
               "        pass\n"
               "    return _slow(row)\n")
    src = f"def from_row(row):\n{guarded}\ndef row_factory(cursor, row):\n{guarded}"
    exec(compile(src, f"<hive_store from_row {codec.name}>", "exec"), ns)
    codec.from_row = ns["from_row"]
    codec.row_factory = ns["row_factory"]


def _to_row_exprs(codec: EntityCodec[Any], ns: dict[str, Any]) -> list[str]:
    from hive_store._converters import _utc_text

    ns.update(_datetime=datetime, _UTC=UTC, _utc_text=_utc_text)
    exprs = []
    for i, fi in enumerate(codec.fields):
        x = f"x{i}"
        ns[f"u{i}"] = codec._write_hooks[fi.name]
        if fi.enum_type is not None:
            ns[f"E{i}"] = fi.enum_type
            expr = f"{x}.value if {x}.__class__ is E{i} else u{i}({x})"
        elif fi.choices is not None:
            ns[f"C{i}"] = fi.choices
            expr = f"{x} if {x}.__class__ is str and {x} in C{i} else u{i}({x})"
        elif fi.kind == "str":
            expr = f"{x} if {x}.__class__ is str and {x}.isascii() else u{i}({x})"
        elif fi.kind == "int":
            expr = f"{x} if {x}.__class__ is int and {_INT_RANGE.format(x=x)} else u{i}({x})"
        elif fi.kind == "float":
            # zero (its sign) and NaN go through the hook
            expr = f"{x} if {x}.__class__ is float and ({x} > 0.0 or {x} < 0.0) else u{i}({x})"
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


def _stored_form(codec: EntityCodec[Any], ns: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Per field: a condition under which the value is already what a read of its stored
    form returns (same type, same value), and the SQL value then (no hook needed). A value
    that fails the condition makes the write return the entity built from its row."""
    from hive_store._converters import _utc_text

    ns.update(_datetime=datetime, _date=date, _UTC=UTC, _utc_text=_utc_text,
              _copysign=math.copysign, _encodable=V._encodable, _plain_json=V.plain_json,
              _json_text=V.json_text)
    conds, exprs = [], []
    for i, fi in enumerate(codec.fields):
        x = f"x{i}"
        if fi.enum_type is not None:
            ns[f"E{i}"] = fi.enum_type
            cond, expr = f"{x}.__class__ is E{i}", f"{x}.value"
        elif fi.choices is not None:
            ns[f"C{i}"] = fi.choices
            cond, expr = f"{x}.__class__ is str and {x} in C{i}", x
        elif fi.kind == "str":
            cond, expr = f"{x}.__class__ is str and ({x}.isascii() or _encodable({x}))", x
        elif fi.kind == "int":
            cond, expr = f"{x}.__class__ is int and {_INT_RANGE.format(x=x)}", x
        elif fi.kind == "float":
            cond = (f"{x}.__class__ is float and ({x} > 0.0 or {x} < 0.0 "
                    f"or ({x} == 0.0 and _copysign(1.0, {x}) == 1.0))")
            expr = x
        elif fi.kind == "bool":
            cond, expr = f"({x} is True or {x} is False)", f"(1 if {x} else 0)"
        elif fi.kind == "datetime":
            cond, expr = f"{x}.__class__ is _datetime and {x}.tzinfo is _UTC", f"_utc_text({x})"
        elif fi.kind == "date":
            cond, expr = f"{x}.__class__ is _date", f"{x}.isoformat()"
        else:  # JSON: plain JSON reads back identical; anything else is read back
            cond, expr = f"_plain_json({x})", f"_json_text({x})"
        if fi.nullable:
            cond, expr = f"({x} is None or ({cond}))", f"(None if {x} is None else {expr})"
        conds.append(f"({cond})")
        exprs.append(expr)
    return conds, exprs


def _compile_to_row(codec: EntityCodec[Any]) -> None:
    from hive_store._converters import codec_for

    # a write returns what a tolerant read of its row gives (a strict store refuses raw
    # values on reads, not the ones a caller writes back)
    read = codec_for(codec.cls).from_row if codec.strict else codec.from_row
    ns: dict[str, Any] = {"cls": codec.cls, "_slow": codec._slow_to_row, "from_row": read}
    exprs = _to_row_exprs(codec, ns)
    conds, stored = _stored_form(codec, ns)
    getters = "".join(f"            x{i} = e.{fi.name}\n" for i, fi in enumerate(codec.fields))
    row = f"({', '.join(exprs)},)"
    fast_row = f"({', '.join(stored)},)"
    all_stored = " and ".join(conds)
    src = (
        "def to_row(e):\n"
        "    if e.__class__ is cls:\n"
        "        try:\n"
        f"{getters}"
        f"            return {row}\n"
        "        except (TypeError, ValueError, AttributeError, OverflowError):\n"
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
        "    except (TypeError, ValueError, AttributeError, OverflowError):\n"
        "        pass\n"
        "    return [to_row(e) for e in items]\n"
        "\n"
        "def dump(e):\n"
        "    if e.__class__ is cls:\n"
        "        try:\n"
        f"{getters}"
        f"            if {all_stored}:\n"
        f"                return {fast_row}, e\n"
        "        except (AttributeError, TypeError, ValueError, OverflowError):\n"
        "            pass\n"
        "    r = to_row(e)\n"
        "    return r, from_row(r)\n"
        "\n"
        "def dump_many(items):\n"
        "    rows = []\n"
        "    stored = []\n"
        "    add_row = rows.append\n"
        "    add_stored = stored.append\n"
        "    for e in items:\n"
        "        if e.__class__ is cls:\n"
        "            try:\n"
        f"{getters.replace('            ', '                ')}"
        f"                if {all_stored}:\n"
        f"                    add_row({fast_row})\n"
        "                    add_stored(e)\n"
        "                    continue\n"
        "            except (AttributeError, TypeError, ValueError, OverflowError):\n"
        "                pass\n"
        "        r = to_row(e)\n"
        "        add_row(r)\n"
        "        add_stored(from_row(r))\n"
        "    return rows, stored\n"
    )
    exec(compile(src, f"<hive_store to_row {codec.name}>", "exec"), ns)
    codec.to_row = ns["to_row"]
    codec.to_rows = ns["to_rows"]
    codec.dump = ns["dump"]
    codec.dump_many = ns["dump_many"]


def compile_codec(codec: EntityCodec[Any]) -> None:
    """Generate and attach ``from_row``, ``row_factory``, ``to_row``, ``to_rows``, ``dump``
    and ``dump_many``."""
    _compile_from_row(codec)
    _compile_to_row(codec)
