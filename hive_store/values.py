"""The value rules of hive-store: what a field accepts on the way in, how every stored shape is
read on the way out, and what a value that cannot be typed becomes.

These rules belong to the core, not to a backend: a backend binds the SQL values they produce
and hands back the values it stored; every backend reads and writes the same way.

Writing (every public write goes through these checks; a bad value is a
:class:`hive_store.ValidationError` naming the field)
------------------------------------------------------------------------------------------------
========== ======================================================================================
kind       accepted, and stored as
========== ======================================================================================
text       ``str`` (subclasses stored as the plain ``str`` value), valid Unicode (no lone
           surrogates); fields with a fixed set of values (``Message.role``) check it
integer    ``int`` (not ``bool``; subclasses stored as the plain value) in SQLite's 64-bit range
float      ``float`` (not NaN; ``-0.0`` is stored as ``0.0``, as SQLite's REAL columns do), or an
           ``int`` that a float holds exactly (``2**53 + 1`` is rejected, not rounded)
boolean    ``True``/``False``, stored as 1/0
timestamp  an aware ``datetime`` whose instant fits ``datetime``'s range in UTC, stored as
           ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00`` (UTC, fixed width: text order is time order)
date       a ``date``, stored as ``YYYY-MM-DD``
enum       a member (or the value of one), stored as its value
JSON       ``None``, ``bool``, ``int``, finite ``float``, ``str``, ``list``/``tuple`` and ``dict``
           with ``str`` keys, nested at most :data:`MAX_JSON_DEPTH` deep; stored as compact
           UTF-8 JSON text. Tuples are stored as arrays and come back as lists; any other key
           type is rejected (``{1: "a", "1": "b"}`` would collide).
any        a :class:`RawValue`, written back exactly as it was read
========== ======================================================================================

A write returns the entity as stored: values given in another form (an ``int`` for a float,
a subclass, a tuple, a timestamp in another offset, a value for an enum) come back in the
form a read returns.

Reading what others wrote
-------------------------
Reads accept every shape the Hive apps, their SQLite defaults and hand edits leave, as long as
it has one meaning: timestamps as RFC 3339 with ``Z``/offsets and 0-9+ fraction digits,
SQLite's ``YYYY-MM-DD HH:MM:SS``, rusqlite's ``YYYY-MM-DD HH:MM:SS.fffffffff+00:00``,
chrono's display form ``… UTC``, a bare date, epoch seconds or milliseconds as numbers or
digits (:func:`parse_timestamp`); booleans as 0/1, 0.0/1.0 or ``'true'``/``'false'``;
integral REALs in integer fields; integers a float holds exactly in float fields; dates as
``YYYY-MM-DD``, ``YYYYMMDD`` or an epoch at midnight UTC (:func:`parse_date`). Only the
first six fraction digits of a timestamp are kept (``datetime`` holds microseconds).

A stored value with no such meaning (``'never'``, ``''``, a BLOB, plain text in a JSON
column, an integer 2 in a boolean column, text outside a field's fixed set, NULL in a NOT
NULL field …) is never dropped, changed or allowed to fail a listing: the entity holds a
:class:`RawValue` with the exact stored value in that field. Writing the entity back writes
that value back unchanged. Ask for strict reads (``hive_store.open(url, strict=True)``) to
get a :class:`hive_store.RawValueError` instead.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_JSON_DEPTH = 100
"""How deeply JSON values may nest (arrays and objects), on write and on read."""
MAX_AUTO_ID = 2**53 - 1
"""The largest key a caller may choose in an AUTOINCREMENT table. SQLite gives every later
row the largest key so far + 1 and fails with "database or disk is full" past 2**63-1, so one
row with a huge key would stop all future inserts; 2**53-1 is also the largest integer a
JavaScript number (the Electron app, D1) holds exactly."""
MAX_BATCH_SIZE = 1_000_000
"""The largest ``batch_size`` ``iter()`` takes."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECONDS_BELOW = 10**11  # epoch seconds below this (year 5138); milliseconds from here ...
_MILLIS_BELOW = 10**14  # ... to here (year 5138 again); larger numbers have no meaning here


class RawValue:
    """A stored value that could not be read as its field's type, kept exactly as stored
    (``value``: ``None``, ``int``, ``float``, ``str`` or ``bytes``) with the reason.

    Entities read from the database hold one in any field whose stored value has no meaning
    of that field's type (see :mod:`hive_store.values`). Writing the entity back writes the
    value back unchanged; assigning a real value replaces it. Two raw values are equal when
    their stored values have the same type and value.
    """

    __slots__ = ("reason", "value")

    value: int | float | str | bytes | None
    reason: str

    def __init__(self, value: int | float | str | bytes | None, reason: str = "") -> None:
        if value is not None and value.__class__ not in (int, float, str, bytes):
            raise TypeError("a RawValue holds None, int, float, str or bytes as SQLite stores "
                            f"them, not {type(value).__name__}")
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise ValueError("a RawValue integer must fit SQLite's 64-bit range")
        if isinstance(value, float) and math.isnan(value):
            raise ValueError("SQLite does not store NaN")
        if isinstance(value, str) and not _encodable(value):
            raise ValueError("a RawValue text must be valid Unicode (no lone surrogates)")
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "reason", str(reason))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("RawValue is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RawValue):
            return NotImplemented
        return self.value.__class__ is other.value.__class__ and self.value == other.value

    def __hash__(self) -> int:
        return hash((RawValue, self.value.__class__, self.value))

    def __repr__(self) -> str:
        text = repr(self.value)
        return f"RawValue({text if len(text) <= 80 else text[:79] + '…'})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (RawValue, (self.value, self.reason))


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- writing: checks that turn a Python value into the SQL value stored ---------------------------


def check_text(value: Any) -> str:
    """``value`` as the exact ``str`` stored (a subclass becomes its plain value); raises
    :class:`TypeError`/:class:`ValueError` for anything else or for text with lone surrogates
    (SQLite stores UTF-8). Use it for text a caller passes to any query, too."""
    if value.__class__ is not str:
        if not isinstance(value, str):
            raise TypeError(f"expected str, got {type(value).__name__}")
        value = str.__str__(value)
    text: str = value
    if not _encodable(text):
        # raised outside any handler: the rejected text is not kept in __context__
        raise ValueError("text is not valid Unicode (lone surrogate)")
    return text


def check_int(value: Any) -> int:
    """``value`` as the exact ``int`` stored (not ``bool``; a subclass becomes its value),
    within SQLite's 64-bit range."""
    if value.__class__ is not int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"expected int, got {type(value).__name__}")
        value = int.__int__(value)
    number: int = value
    if not INT64_MIN <= number <= INT64_MAX:
        raise ValueError("integer out of the 64-bit range SQLite stores")
    return number


def check_float(value: Any) -> float:
    """``value`` as the exact ``float`` stored: not NaN, ``-0.0`` as ``0.0``; an ``int`` only
    when a float holds it exactly."""
    if value.__class__ is not float:
        if isinstance(value, float):
            value = float.__float__(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            number = int.__int__(value)
            try:
                value = float(number)
            except OverflowError:
                value = math.inf
            if value != number:  # exact comparison of int and float
                raise ValueError("the integer cannot be stored exactly as a float")
        else:
            raise TypeError(f"expected float, got {type(value).__name__}")
    if value != value:
        raise ValueError("NaN cannot be stored (SQLite turns it into NULL)")
    return value if value != 0.0 else 0.0


def check_bool(value: Any) -> int:
    if value is True:
        return 1
    if value is False:
        return 0
    raise TypeError(f"expected bool, got {type(value).__name__}")


def format_timestamp(value: datetime) -> str:
    """The one form hive_store writes: RFC 3339 in UTC with microseconds (fixed width)."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected datetime, got {type(value).__name__}")
    try:
        offset = value.utcoffset()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the datetime's timezone failed: {exc}") from None
    if offset is None:
        raise ValueError("naive datetime: give it a timezone (e.g. datetime.now(timezone.utc))")
    try:
        utc = value - offset  # plain arithmetic: no tzinfo call, datetime range checked
    except OverflowError:
        utc = None
    if utc is None:
        raise ValueError("the datetime is out of range once converted to UTC")
    # not strftime: %Y is not zero-padded below year 1000 on glibc.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00" % (  # noqa: UP031
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond)


def check_date(value: Any) -> str:
    if not isinstance(value, date) or isinstance(value, datetime):
        raise TypeError(f"expected date, got {type(value).__name__}")
    return "%04d-%02d-%02d" % (value.year, value.month, value.day)  # noqa: UP031


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests lists/tuples/dicts (a scalar is 0)."""
    depth, level = 0, [value]
    while depth <= MAX_JSON_DEPTH:
        children: list[Any] = []
        found = False
        for v in level:
            if isinstance(v, dict):
                found = True
                children.extend(v.values())
            elif isinstance(v, (list, tuple)):
                found = True
                children.extend(v)
        if not found:
            break
        depth += 1
        level = children
    return depth


_JSON_SCALARS = frozenset((str, int, float, bool, type(None)))


def plain_json(value: Any) -> bool:
    """Whether ``value`` is JSON that a read returns identical: dicts with ``str`` keys,
    lists, and ``str``/``int``/``float``/``bool``/``None`` of exactly those types (then a write
    needs no read-back to return it as stored). Finite floats, valid text and depth are
    checked by :func:`json_text`."""
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        v = pop()
        cls = v.__class__
        if cls is dict:
            for k, x in v.items():
                if k.__class__ is not str:
                    return False
                c = x.__class__
                if c is dict or c is list:
                    push(x)
                elif c not in _JSON_SCALARS:
                    return False
        elif cls is list:
            for x in v:
                c = x.__class__
                if c is dict or c is list:
                    push(x)
                elif c not in _JSON_SCALARS:
                    return False
        elif cls not in _JSON_SCALARS:
            return False
    return True


def _bad_json_keys(value: Any) -> bool:
    """Whether a dict anywhere in ``value`` has a key that is not a ``str``."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if any(not isinstance(k, str) for k in v):
                return True
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return False


def json_text(value: Any) -> str:
    """The compact JSON text of ``value`` with every check but the key types (see
    :func:`dump_json`)."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        error = None
    except RecursionError:
        error = f"nested more than {MAX_JSON_DEPTH} levels deep"
    except (TypeError, ValueError) as exc:
        error = f"not JSON-serialisable ({exc})"
    if error is not None:
        raise ValueError(error)
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and json_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
    if not _encodable(text):
        raise ValueError("text is not valid Unicode (lone surrogate)")
    return text


def dump_json(value: Any) -> str:
    """The JSON text stored for ``value`` (see the module docstring for what is accepted)."""
    text = json_text(value)
    if '"' in text and not plain_json(value) and _bad_json_keys(value):
        raise ValueError("JSON object keys must be str (others would be stored as text and "
                         "could collide)")
    return text


# -- reading: every stored shape with a meaning -----------------------------------------------


class Unreadable(ValueError):
    """A stored value has no meaning of the field's type (the reason is the message)."""


def _reject_constant(name: str) -> Any:
    raise Unreadable(f"JSON holds {name}, which JSON does not allow")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise Unreadable("a JSON number is too large for a float")
    return value


_EXPONENT = re.compile(r"\d[eE]")


def load_json(value: Any) -> Any:
    """The JSON value of stored text; :class:`Unreadable` if it is not exactly one."""
    if value.__class__ is not str:
        raise Unreadable(f"a {_storage(value)} in a JSON field")
    # a float literal can only overflow to inf with an exponent or 309+ digits: only then
    # pay for a checked parse of every float
    checked = _finite_float if len(value) > 308 or _EXPONENT.search(value) else float
    try:
        loaded = json.loads(value, parse_constant=_reject_constant, parse_float=checked)
        error = None
    except Unreadable as exc:
        error = str(exc)
    except RecursionError:
        error = f"JSON nested more than {MAX_JSON_DEPTH} levels deep"
    except ValueError:
        error = "not JSON text"
    if error is not None:
        raise Unreadable(error)
    if (value.count("[") + value.count("{") > MAX_JSON_DEPTH
            and json_depth(loaded) > MAX_JSON_DEPTH):
        raise Unreadable(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    if "\\u" in value and not _encodable(json.dumps(loaded, ensure_ascii=False)):
        raise Unreadable("JSON text escapes a lone surrogate")
    return loaded


def _storage(value: Any) -> str:
    return {int: "INTEGER", float: "REAL", str: "TEXT", bytes: "BLOB (or non-UTF-8 TEXT)"}.get(
        value.__class__, type(value).__name__)


# Timestamps: the grammar hive-store reads, mirrored exactly by the SQLite backend's
# comparison key (hive_store_sqlite.timekeys): a test checks they agree.
_TS = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|z| UTC|[+-]\d{2}:\d{2})?)?\Z",
    re.ASCII,
)
_EPOCH_TEXT = re.compile(r"(\d{1,20})(?:\.(\d+))?\Z", re.ASCII)


def _micros_to_datetime(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def epoch_micros(value: Any) -> int | None:
    """Microseconds since 1970 of an epoch in seconds or milliseconds (a number, or digits
    with an optional fraction), by magnitude: below 10**11 seconds, below 10**14
    milliseconds; ``None`` for anything else (negative, larger, not a number)."""
    cls = value.__class__
    if cls is int:
        if 0 <= value < _SECONDS_BELOW:
            return int(value * 1_000_000)
        if _SECONDS_BELOW <= value < _MILLIS_BELOW:
            return int(value * 1000)
        return None
    if cls is float:
        if not 0.0 <= value < _MILLIS_BELOW:  # NaN fails too
            return None
        if value < _SECONDS_BELOW:
            return int(value * 1000000.0)
        return int(value * 1000.0)
    if cls is str:
        match = _EPOCH_TEXT.match(value)
        if match is None:
            return None
        whole = int(match.group(1))
        fraction = match.group(2) or ""
        if whole < _SECONDS_BELOW:
            return whole * 1_000_000 + int((fraction + "000000")[:6])
        if whole < _MILLIS_BELOW:
            return whole * 1000 + int((fraction + "000")[:3])
    return None


def parse_timestamp(value: Any) -> datetime:
    """The instant of a stored timestamp in any shape with a meaning (see the module
    docstring); naive text is UTC (SQLite's clock). Raises :class:`Unreadable` otherwise.
    The result always converts to UTC within ``datetime``'s range."""
    if value.__class__ is str:
        match = _TS.match(value)
        if match is not None:
            return _from_match(value, match)
    micros = epoch_micros(value)
    if micros is not None:
        return _micros_to_datetime(micros)
    if value.__class__ is str:
        raise Unreadable("not a timestamp")
    raise Unreadable(f"a {_storage(value)} in a timestamp field")


def _from_match(value: str, match: re.Match[str]) -> datetime:
    y, mo, d, h, mi, s, frac, zone = match.groups()
    tz: timezone = UTC
    if zone is not None and zone[0] in "+-":
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 14 or minutes > 59:
            raise Unreadable("not a timestamp (offset out of range)")
        if hours or minutes:
            delta = timedelta(hours=hours, minutes=minutes)
            tz = timezone(-delta if zone[0] == "-" else delta)
    try:
        parsed = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0),
                          int(((frac or "") + "000000")[:6]), tzinfo=tz)
        if tz is not UTC:
            _ = parsed - tz.utcoffset(None)  # in range once in UTC? (OverflowError if not)
    except (ValueError, OverflowError):
        parsed = None
    if parsed is None:
        raise Unreadable("not a timestamp (a date or time out of range)")
    return parsed


_OWN_LAYOUT = re.compile(r".{4}-.{2}-.{2}T.{2}:.{2}:.{2}\..{6}\+00:00\Z", re.DOTALL)


def timestamp_key(value: Any) -> str | None:
    """What the backends compare and sort timestamps by: the hive-store form of the stored
    value's instant, or ``None`` when the value is NULL or not a timestamp. Text in exactly
    hive-store's layout (``????-??-??T??:??:??.??????+00:00``) is its own key even when it is
    not a real timestamp (``2025-02-30``, hour 25, letters), which a read returns as a
    :class:`RawValue`: the one layout compared without reading it, so that rows in
    hive-store's form cost one pattern match in SQL."""
    if value is None:
        return None
    if value.__class__ is str and _OWN_LAYOUT.match(value):
        return value
    try:
        return format_timestamp(parse_timestamp(value))
    except ValueError:
        return None


_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})\Z", re.ASCII)


def parse_date(value: Any) -> date:
    """A stored date: ``YYYY-MM-DD``, or an integer (or its digits) ``YYYYMMDD``, or epoch
    seconds/milliseconds at exactly midnight UTC. Raises :class:`Unreadable` otherwise."""
    cls = value.__class__
    if cls is str:
        match = _DATE.match(value)
        if match is not None:
            try:
                return date(int(match[1]), int(match[2]), int(match[3]))
            except ValueError:
                raise Unreadable("not a date (out of range)") from None
        if not (value.isascii() and value.isdigit()) or len(value) > 20:
            raise Unreadable("not a date")
        number = int(value)
    elif cls is float and value.is_integer() and 0.0 <= value < _MILLIS_BELOW:
        number = int(value)
    elif cls is int:
        number = value
    else:
        raise Unreadable(f"a {_storage(value)} in a date field")
    if 10000101 <= number <= 99991231:
        try:
            return date(number // 10000, number // 100 % 100, number % 100)
        except ValueError:
            raise Unreadable("not a date (YYYYMMDD out of range)") from None
    micros = epoch_micros(number)
    if micros is None or micros % 86_400_000_000:
        raise Unreadable("not a date (a number that is neither YYYYMMDD nor a midnight epoch)")
    return _micros_to_datetime(micros).date()


def date_key(value: Any) -> str | None:
    """What the backends compare and sort dates by (``YYYY-MM-DD``), or ``None``."""
    if value is None:
        return None
    try:
        return parse_date(value).isoformat()
    except ValueError:
        return None


def parse_bool(value: Any) -> bool:
    """0/1, 0.0/1.0, or ``'true'``/``'false'`` in any case (and ``True``/``False`` given in
    Python); :class:`Unreadable` otherwise."""
    if value is True or value is False:
        return value
    if value.__class__ in (int, float) and (value == 0 or value == 1):
        return bool(value == 1)
    if value.__class__ is str and value.isascii():
        low = value.lower()
        if low == "true":
            return True
        if low == "false":
            return False
    raise Unreadable(f"not a boolean ({_storage(value)})")


def read_int(value: Any) -> int:
    """An INTEGER, or a REAL holding a whole number."""
    if value.__class__ is int:
        return value
    if value.__class__ is float and value.is_integer() and INT64_MIN <= value <= INT64_MAX:
        return int(value)
    raise Unreadable(f"a {_storage(value)} in an integer field" if value.__class__ is not float
                     else "a REAL that is not a whole number in an integer field")


def read_float(value: Any) -> float:
    """A REAL, or an INTEGER a float holds exactly."""
    if value.__class__ is float:
        return value
    if value.__class__ is int and float(value) == value:
        return float(value)
    raise Unreadable(f"a {_storage(value)} in a float field" if value.__class__ is not int
                     else "an INTEGER a float cannot hold exactly")


def read_text(value: Any) -> str:
    if value.__class__ is str:
        return value
    raise Unreadable(f"a {_storage(value)} in a text field")


__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_AUTO_ID",
    "MAX_BATCH_SIZE",
    "MAX_JSON_DEPTH",
    "RawValue",
    "Unreadable",
    "check_bool",
    "check_date",
    "check_float",
    "check_int",
    "check_text",
    "date_key",
    "dump_json",
    "epoch_micros",
    "format_timestamp",
    "json_depth",
    "load_json",
    "parse_bool",
    "parse_date",
    "parse_timestamp",
    "read_float",
    "read_int",
    "read_text",
    "timestamp_key",
]
