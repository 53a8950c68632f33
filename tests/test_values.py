"""The value rules (hive_store.values): legacy shapes read, writes checked, the SQL comparison
keys agree with the Python readers, and the test strategies draw what they claim."""

from __future__ import annotations

import math
import pickle
import sqlite3
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hive_store_sqlite import timekeys
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hive_store
from hive_store import RawValue, values
from hive_store._converters import EntityCodec
from hive_store.entities import ROLES, STAGES, Message, Stage
from hive_store.testing import (
    SUBCLASSES,
    deep_json,
    extreme_datetimes,
    hostile_text,
    hostile_values,
    huge_ints,
    subclass_values,
    surrogate_text,
)

UTC_2025 = datetime(2025, 7, 14, 12, 50, 53, 589793, tzinfo=UTC)


@pytest.mark.parametrize(("stored", "instant"), [
    ("2025-07-14T12:50:53.589793+00:00", UTC_2025),            # hive-store's own
    ("2025-07-14T12:50:53.589793Z", UTC_2025),                 # RFC 3339 Z
    ("2025-07-14T12:50:53.589Z", UTC_2025.replace(microsecond=589000)),   # JavaScript
    ("2025-07-14 12:50:53.589793000 UTC", UTC_2025),           # chrono's display form
    ("2025-07-14 12:50:53.589793123+00:00", UTC_2025),         # rusqlite, nanoseconds
    ("2025-07-14T14:20:53.589793+01:30", UTC_2025),            # an offset
    ("2025-07-14T04:50:53.589793-08:00", UTC_2025),
    ("2025-07-14 12:50:53", UTC_2025.replace(microsecond=0)),  # SQLite CURRENT_TIMESTAMP
    ("2025-07-14 12:50", UTC_2025.replace(second=0, microsecond=0)),
    ("2025-07-14", datetime(2025, 7, 14, tzinfo=UTC)),
    ("1752497453", UTC_2025.replace(microsecond=0)),           # epoch seconds as text
    ("1752497453589", UTC_2025.replace(microsecond=589000)),   # epoch milliseconds as text
    ("1752497453.589793", UTC_2025),
    (1752497453, UTC_2025.replace(microsecond=0)),             # as numbers
    (1752497453589, UTC_2025.replace(microsecond=589000)),
    (1752497453.5, UTC_2025.replace(microsecond=500000)),
])
def test_every_timestamp_shape_with_a_meaning_is_read(stored: Any, instant: datetime) -> None:
    assert values.parse_timestamp(stored) == instant
    assert values.timestamp_key(stored) == values.format_timestamp(instant)


@pytest.mark.parametrize("stored", [
    "", "never", "null", "2025-13-01", "2025-02-30 10:00:00", "2025-07-14 24:00:00",
    "2025-07-14T12:50:53+15:00", "0000-01-01", "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:00:00-05:00", "2025-W28-1", "20250714T125053", "2025-07-14t12:00",
    " 2025-07-14", "-5", 10**14, -1, 1e300, b"2025-07-14", "2025-07-14T12:50:53,5Z",
])
def test_timestamps_without_a_meaning_are_not_read(stored: Any) -> None:
    with pytest.raises(ValueError):
        values.parse_timestamp(stored)
    assert values.timestamp_key(stored) is None


@pytest.mark.parametrize(("stored", "want"), [
    ("2025-07-14", date(2025, 7, 14)), (20250714, date(2025, 7, 14)),
    ("20250714", date(2025, 7, 14)), (20250714.0, date(2025, 7, 14)),
    (1752451200, date(2025, 7, 14)), (1752451200000, date(2025, 7, 14)),
])
def test_dates_in_every_shape(stored: Any, want: date) -> None:
    assert values.parse_date(stored) == want


@pytest.mark.parametrize("stored", ["2025-02-30", 20251301, 1752451201, "x", "", 2.5, b"x"])
def test_dates_without_a_meaning(stored: Any) -> None:
    with pytest.raises(ValueError):
        values.parse_date(stored)


@pytest.mark.parametrize(("stored", "want"), [
    (0, False), (1, True), (0.0, False), (1.0, True), ("true", True), ("FALSE", False),
    ("True", True)])
def test_booleans_in_every_shape(stored: Any, want: bool) -> None:
    assert values.parse_bool(stored) is want


@pytest.mark.parametrize("stored", [2, -1, 0.5, "yes", "1", "", b"\x01"])
def test_booleans_without_a_meaning(stored: Any) -> None:
    with pytest.raises(ValueError):
        values.parse_bool(stored)


def test_numbers_read_exactly_or_not_at_all() -> None:
    assert values.read_int(3.0) == 3 and values.read_int(3.0).__class__ is int
    assert values.read_float(3) == 3.0 and values.read_float(3).__class__ is float
    for bad in (3.5, "3", b"3"):
        with pytest.raises(ValueError):
            values.read_int(bad)
    with pytest.raises(ValueError):
        values.read_float(2**53 + 1)  # a float cannot hold it: reading it would round


@pytest.mark.parametrize(("text", "reason"), [
    ("", "not JSON"), ("plain text", "not JSON"), ("NaN", "does not allow"),
    ('{"a": Infinity}', "does not allow"), ("1e400", "too large"),
    ('"\\ud800"', "surrogate"), ("[" * 150 + "]" * 150, "nested"),
    ("[" * 60_000 + "]" * 60_000, "nested"),
])
def test_json_without_one_meaning_is_unreadable(text: str, reason: str) -> None:
    with pytest.raises(values.Unreadable, match=reason):
        values.load_json(text)


def _nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def test_json_writes_are_checked() -> None:
    assert values.dump_json({"a": (1, 2), "ü": [None, True, 1.5]}) == (
        '{"a":[1,2],"ü":[null,true,1.5]}')
    for bad, reason in (({1: "a", "1": "b"}, "keys must be str"), ({True: 1}, "keys must be str"),
                        ({"a": math.nan}, "JSON-serialisable"), ({"a": "\ud800"}, "surrogate"),
                        (_nested(60_000), "nested"), (_nested(101), "nested")):
        with pytest.raises(ValueError, match=reason):
            values.dump_json(bad)
    nested = _nested(100)
    assert values.load_json(values.dump_json(nested)) == nested  # the limit itself is fine


def test_write_checks_store_the_plain_base_value() -> None:
    class S(str):
        def __conform__(self, protocol: Any) -> Any:
            return "other"

    class N(int):
        def __conform__(self, protocol: Any) -> Any:
            return "other"

    assert values.check_text(S("a")).__class__ is str
    assert values.check_int(N(5)).__class__ is int
    assert values.check_float(N(5)) == 5.0 and values.check_float(N(5)).__class__ is float
    assert values.check_float(-0.0).hex() == "0x0.0p+0"
    assert values.check_float(2**53) == 2.0**53
    for bad in (2**53 + 1, 10**400, True, "1", math.nan):
        with pytest.raises((TypeError, ValueError)):
            values.check_float(bad)
    for bad in (2**63, True, 1.0):
        with pytest.raises((TypeError, ValueError)):
            values.check_int(bad)
    with pytest.raises(ValueError, match="surrogate"):
        values.check_text("a\udc80b")


@given(extreme_datetimes())
def test_extreme_datetimes_are_stored_or_rejected_cleanly(dt: datetime) -> None:
    try:
        text = values.format_timestamp(dt)
    except ValueError as exc:
        assert "out of range" in str(exc)
        with pytest.raises(OverflowError):
            dt.astimezone(UTC)
        return
    assert values.parse_timestamp(text) == dt


def test_raw_values() -> None:
    raw = RawValue("never", "not a timestamp")
    assert raw == RawValue("never") and raw != RawValue(1) and RawValue(1) != RawValue(1.0)
    assert hash(raw) == hash(RawValue("never")) and raw.reason == "not a timestamp"
    assert repr(RawValue("x" * 500)).endswith("…)")
    assert pickle.loads(pickle.dumps(raw)) == raw
    with pytest.raises(AttributeError):
        raw.value = "other"  # type: ignore[misc]
    for bad in (object(), [1], 2**64, math.nan, "\ud800", True):
        with pytest.raises((TypeError, ValueError)):
            RawValue(bad)  # type: ignore[arg-type]


def test_message_role_and_stage_take_hive_values_only() -> None:
    codec = EntityCodec(Message)
    assert tuple(s.value for s in Stage) == STAGES and "user" in ROLES
    for bad in ({"role": "robot"}, {"stage": "final"}, {"stage": "Curator"}):
        with pytest.raises(hive_store.ValidationError, match="is not one of"):
            codec.to_row(Message(**{"conversation_id": "c", "role": "user", "content": "x",
                                    **bad}))
    # stored legacy values stay readable, as raw values
    row = codec.to_row(Message(conversation_id="c", role="user", content="x"))
    odd = codec.from_row((row[0], "c", "robot", "x", "Curator", None, row[6]))
    assert odd.role == RawValue("robot") and odd.stage == RawValue("Curator")


# -- the SQL comparison keys agree with the Python readers ------------------------------------

_DIGITS = st.text("0123456789", min_size=1, max_size=3)
_TIMESTAMP_LIKE = st.builds(
    lambda y, mo, d, sep, hh, mm, ss, frac, zone, cut: (
        f"{y}-{mo}-{d}" + (f"{sep}{hh}:{mm}" + (f":{ss}{frac}" if cut > 0 else "") + zone
                           if cut >= 0 else "")),
    st.sampled_from(["2025", "0001", "9999", "0000", "1970", "2024"]),
    st.sampled_from(["01", "02", "07", "12", "00", "13", "19"]),
    st.sampled_from(["01", "14", "28", "29", "30", "31", "00", "32", "39"]),
    st.sampled_from(["T", " ", "t", "", "  "]),
    st.sampled_from(["00", "12", "23", "24", "29"]),
    st.sampled_from(["00", "50", "59", "60"]),
    st.sampled_from(["00", "53", "59", "60"]),
    st.sampled_from(["", ".", ".5", ".589793", ".589793123", ".000000", ".9x"]) | _DIGITS.map(
        lambda d: "." + d),
    st.sampled_from(["", "Z", "z", " UTC", "UTC", "+00:00", "-00:00", "+05:30", "-08:00",
                     "+14:59", "+15:00", "+0530", "+5:30", "-14:00"]),
    st.integers(-1, 1),
)
_NUMBERS = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, 10**11 - 1, 10**11, 10**14 - 1, 10**14]),
    st.floats(allow_nan=False), st.floats(0, 1e14),
    st.integers(0, 10**14).map(str), st.decimals(0, 10**14, places=4).map(str),
    st.sampled_from(["1752497453", "1752497453589", "0001752497453", "12.", ".5", "1e5", "-5",
                     "99999999999999999999", "999999999999999999999"]),
)
STORED = st.one_of(_TIMESTAMP_LIKE, _NUMBERS, st.text(max_size=40), st.binary(max_size=40),
                   st.none(), _TIMESTAMP_LIKE.map(str.encode))


@pytest.fixture(scope="module")
def sql() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    yield conn
    conn.close()


def _sql_key(conn: sqlite3.Connection, expr: str, value: Any) -> Any:
    return conn.execute(f"SELECT {expr} FROM (SELECT ? AS v)", (value,)).fetchone()[0]


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(STORED)
def test_sql_timestamp_key_agrees_with_the_reader(sql: sqlite3.Connection, value: Any) -> None:
    assert _sql_key(sql, timekeys.timestamp_key('"v"'), value) == values.timestamp_key(value)


_DATES = st.one_of(
    st.dates().map(date.isoformat), st.integers(0, 10**15), st.integers(10000101, 99991231),
    st.integers(0, 10**8).map(lambda d: d * 86400),
    st.integers(0, 10**8).map(lambda d: d * 86400000),
    st.floats(allow_nan=False), st.text("0123456789-", max_size=12), STORED)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_DATES)
def test_sql_date_key_agrees_with_the_reader(sql: sqlite3.Connection, value: Any) -> None:
    assert _sql_key(sql, timekeys.date_key('"v"'), value) == values.date_key(value)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.integers(-3, 3), st.floats(allow_nan=False), st.text(max_size=6),
                 st.sampled_from(["true", "FALSE", "True", "tRuE", "false "]), st.binary(),
                 st.none()))
def test_sql_bool_key_agrees_with_the_reader(sql: sqlite3.Connection, value: Any) -> None:
    try:
        want: Any = int(values.parse_bool(value))
    except ValueError:
        want = None
    got = _sql_key(sql, timekeys.bool_key('"v"'), value)
    if want is None:
        assert got not in (0, 1) or got.__class__ not in (int, float) or value == got
        assert not (isinstance(value, str) and got in (0, 1))
    else:
        assert got == want


def test_migration_0004_is_the_generated_key_indexes() -> None:
    path = Path(__file__).parent.parent / "migrations" / "0004_time_keys.sql"
    assert path.read_text() == timekeys.migration_text(), (
        "regenerate: python -m hive_store_sqlite.timekeys > migrations/0004_time_keys.sql")


# -- the strategies of hive_store.testing draw what they claim ----------------------------------


def _share(strategy: st.SearchStrategy[Any], predicate: Any, n: int = 300) -> float:
    hits: list[bool] = []

    @settings(max_examples=n, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(value: Any) -> None:
        hits.append(bool(predicate(value)))

    run()
    return sum(hits) / max(1, len(hits))


def _has_surrogate(value: Any) -> bool:
    return isinstance(value, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in value)


def _overflows(value: Any) -> bool:
    try:
        value.astimezone(UTC)
    except OverflowError:
        return True
    return False


def test_strategies_draw_what_they_claim() -> None:
    assert _share(surrogate_text(), _has_surrogate) == 1.0
    assert _share(hostile_text(huge=20_000), _has_surrogate) > 0.1
    assert _share(hostile_values(huge=20_000), _has_surrogate) > 0.01
    assert _share(extreme_datetimes(), _overflows) > 0.05
    assert _share(extreme_datetimes(), lambda d: d.utcoffset() != timedelta(0)) > 0.3
    assert _share(huge_ints(), lambda n: not -(2**63) <= n < 2**63 or float(n) != n) == 1.0
    assert _share(deep_json(), lambda v: values.json_depth(v) > values.MAX_JSON_DEPTH,
                  n=60) > 0.5
    drawn = []
    _share(subclass_values(), lambda v: drawn.append(type(v)))
    assert set(drawn) == set(SUBCLASSES)
    assert _share(subclass_values(), lambda v: hasattr(v, "__conform__")) > 0.2


def test_timestamps_in_every_offset_compare_as_instants() -> None:
    a = datetime(2025, 1, 1, 23, 0, tzinfo=timezone(timedelta(hours=-5)))  # 04:00 UTC next day
    b = datetime(2025, 1, 2, 3, 0, tzinfo=UTC)
    assert (values.format_timestamp(a) > values.format_timestamp(b)) == (a > b)
