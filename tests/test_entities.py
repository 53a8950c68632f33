"""Entities and converters: round trips, both timestamp forms, clear validation errors."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hive_store
from hive_store._converters import EntityCodec, format_timestamp, parse_timestamp
from hive_store.entities import (
    CORE_ENTITIES,
    ActivityLog,
    Configuration,
    ConversationUsage,
    EventType,
    License,
    Message,
    Stage,
    User,
)
from hive_store.testing import accepted_entities, entities, identical

CODECS = {cls: EntityCodec(cls) for cls in CORE_ENTITIES}


def test_every_table_has_an_entity() -> None:
    tables = {c.__table__ for c in CORE_ENTITIES}
    assert len(tables) == len(CORE_ENTITIES) == 34
    for cls in CORE_ENTITIES:
        assert attrs.has(cls)
        assert cls.__pk__ in attrs.fields_dict(cls)


@pytest.mark.parametrize("cls", CORE_ENTITIES, ids=lambda c: c.__name__)
@settings(max_examples=25)
@given(data=st.data())
def test_codec_round_trip(cls: type, data: st.DataObject) -> None:
    entity = data.draw(entities(cls))
    codec = CODECS[cls]
    row = codec.to_row(entity)
    assert len(row) == len(codec.columns)
    assert all(v is None or isinstance(v, (str, int, float)) for v in row)
    assert codec.from_row(row) == entity


@given(st.datetimes(timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=0)))
def test_reads_sqlite_current_timestamp_form(dt: datetime) -> None:
    text = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d} {dt:%H:%M:%S}"
    assert parse_timestamp(text) == dt


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(9000, 1, 1)),
       st.integers(-14 * 60, 14 * 60))
def test_reads_rfc3339_with_any_offset(naive: datetime, minutes: int) -> None:
    aware = naive.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    assert parse_timestamp(aware.isoformat()) == aware
    assert parse_timestamp(aware.astimezone(UTC).isoformat().replace("+00:00", "Z")) == aware


@given(st.datetimes(timezones=st.just(UTC)))
def test_written_form_is_fixed_width_utc_and_sorts_by_time(dt: datetime) -> None:
    text = format_timestamp(dt)
    assert len(text) == 32 and text.endswith("+00:00") and text[10] == "T"
    assert parse_timestamp(text) == dt


@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))])))
def test_generated_row_functions_write_what_format_timestamp_writes(dt: datetime) -> None:
    # to_row inlines a cached-prefix formatter for UTC datetimes; it must equal isoformat
    msg = Message(conversation_id="c", role="user", content="x", timestamp=dt)
    text = EntityCodec(Message).to_row(msg)[-1]
    assert text == format_timestamp(dt) == dt.astimezone(UTC).isoformat(timespec="microseconds")
    back = EntityCodec(Message).from_row(EntityCodec(Message).to_row(msg))
    assert back == attrs.evolve(msg, timestamp=dt.astimezone(UTC)) and back.timestamp == dt


def test_stored_values_that_do_not_fit_are_raw_values_or_strict_errors() -> None:
    codec, strict = EntityCodec(Message), EntityCodec(Message, strict=True)
    good = codec.to_row(Message(conversation_id="c", role="user", content="x"))
    with pytest.raises(hive_store.ValidationError, match="6 values for 7 columns"):
        codec.from_row(good[:-1])
    for bad, field, raw in (((*good[:-1], "not a time"), "timestamp", "not a time"),
                            ((good[0], 42, *good[2:]), "conversation_id", 42),
                            ((good[0], good[1], None, *good[3:]), "role", None)):
        for read in (codec.from_row, lambda row: codec.row_factory(None, row)):
            entity = read(bad)
            assert getattr(entity, field) == hive_store.RawValue(raw)
            assert codec.to_row(entity) == bad  # written back exactly as stored
        for read in (strict.from_row, lambda row: strict.row_factory(None, row)):
            with pytest.raises(hive_store.RawValueError) as info:
                read(bad)
            assert info.value.field == field and info.value.key == good[0]
            assert isinstance(info.value, hive_store.ValidationError)
            assert info.value.__context__ is None  # the rejected value is not kept


def test_written_timestamps_sort_as_times() -> None:
    a = datetime(2025, 1, 1, 23, 0, tzinfo=timezone(timedelta(hours=-5)))  # 04:00 UTC next day
    b = datetime(2025, 1, 2, 3, 0, tzinfo=UTC)
    assert (format_timestamp(a) > format_timestamp(b)) == (a > b)


def test_naive_datetime_is_rejected_on_write() -> None:
    msg = Message(conversation_id="c", role="user", content="x",
                  timestamp=datetime(2025, 1, 1))  # naive
    with pytest.raises(hive_store.ValidationError) as err:
        CODECS[Message].to_row(msg)
    assert err.value.entity == "Message"
    assert err.value.field == "timestamp"
    assert "naive" in str(err.value)


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"content": 123}, "content", "expected str"),
        ({"content": None}, "content", "NOT NULL"),
        ({"content": "\ud800"}, "content", "surrogate"),
        ({"stage": "final"}, "stage", "not one of"),
    ],
)
def test_bad_message_values_name_entity_field_reason(
    changes: dict, field: str, reason: str
) -> None:
    msg = attrs.evolve(Message(conversation_id="c", role="user", content="x"), **changes)
    codec = EntityCodec(ActivityLog) if field == "stage" else CODECS[Message]
    target = (ActivityLog(event_type=EventType.EXPORT, stage="final") if field == "stage"
              else msg)
    with pytest.raises(hive_store.ValidationError) as err:
        codec.to_row(target)
    assert err.value.field == field
    assert reason in str(err.value)
    assert isinstance(err.value, hive_store.HiveStoreError)


@pytest.mark.parametrize(
    ("value", "reason"),
    [(math.nan, "NaN"), (2**63, "64-bit"), (True, "expected float")],
)
def test_bad_numbers(value: object, reason: str) -> None:
    entity = ActivityLog(event_type=EventType.EXPORT, cost=value) if reason != "64-bit" else \
        ActivityLog(event_type=EventType.EXPORT, tokens_used=value)
    with pytest.raises(hive_store.ValidationError, match=reason):
        CODECS[ActivityLog].to_row(entity)


def test_every_bad_field_is_reported_at_once() -> None:
    bad = ActivityLog(event_type="nope", cost=math.nan, metadata={1j: 2})
    with pytest.raises(hive_store.ValidationError) as err:
        CODECS[ActivityLog].to_row(bad)
    assert {f for f, _ in err.value.errors} == {"event_type", "cost", "metadata"}


def test_structure_from_mapping_validates() -> None:
    codec = CODECS[ActivityLog]
    entry = codec.structure({"event_type": "stage_complete", "stage": "refiner",
                             "created_at": "2025-07-03 12:00:00", "metadata": '{"a": 1}'})
    assert entry.event_type is EventType.STAGE_COMPLETE
    assert entry.stage is Stage.REFINER
    assert entry.created_at == datetime(2025, 7, 3, 12, tzinfo=UTC)
    assert entry.metadata == {"a": 1}
    with pytest.raises(hive_store.ValidationError) as err:
        codec.structure({"event_type": "stage_complete", "surprise": 1})
    assert err.value.errors == [("surprise", "unknown field")]
    with pytest.raises(hive_store.ValidationError) as err:
        codec.structure({})
    assert err.value.errors == [("event_type", "required field is missing")]
    with pytest.raises(hive_store.ValidationError) as err:
        codec.structure({"event_type": "export", "metadata": "{not json"})
    assert err.value.field == "metadata"


def test_json_and_bool_and_date_forms() -> None:
    from hive_store.entities import DailyUsageSummary, OpenRouterProvider

    prov = OpenRouterProvider(id="p", name="p", display_name="P",
                              last_updated=datetime(2025, 1, 1, tzinfo=UTC),
                              capabilities=["chat", "ünï"], is_active=False)
    row = CODECS[OpenRouterProvider].to_row(prov)
    assert '["chat","ünï"]' in row and 0 in row
    day = DailyUsageSummary(user_id="u", date=date(2025, 7, 3))
    assert "2025-07-03" in CODECS[DailyUsageSummary].to_row(day)


def test_new_ids_are_time_ordered_uuid7() -> None:
    ids = [hive_store.uuid7() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 36 and i[14] == "7" and i[19] in "89ab" for i in ids)
    assert User().id != User().id


def test_secrets_stay_out_of_reprs() -> None:
    secret = "sk-or-v1-SECRET"
    texts = [
        repr(User(license_key=secret)),
        repr(Configuration(key="openrouter_api_key", value=secret)),
        repr(ConversationUsage(conversation_id="c", license_key=secret, conversation_token=secret)),
        repr(License(key=secret, tier="pro", daily_limit=1, user_id="u",
                     validated_at=datetime.now(UTC))),
    ]
    assert not any(secret in t for t in texts)


class _Rollback(Exception):
    pass


@pytest.fixture(scope="module")
def shared_store():
    with hive_store.open(":memory:") as s:
        yield s


@pytest.mark.parametrize("cls", CORE_ENTITIES, ids=lambda c: c.__name__)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_round_trip_through_sqlite(shared_store: hive_store.Store, cls: type,
                                   data: st.DataObject) -> None:
    """entity -> row -> SQLite -> row -> entity is the identity for every table (foreign
    keys off for the duration: the values are random)."""
    entity = data.draw(entities(cls))
    repo = shared_store.repo(cls)
    with pytest.raises(_Rollback), shared_store.backend.transaction(foreign_keys=False):
        stored = repo.add(entity)
        assert repo.get(CODECS[cls].key_of(stored)) == stored
        raise _Rollback


@pytest.mark.parametrize("cls", CORE_ENTITIES, ids=lambda c: c.__name__)
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_accepted_writes_return_what_is_stored(shared_store: hive_store.Store, cls: type,
                                               data: st.DataObject) -> None:
    """Values in every accepted form (subclasses with __conform__, ints for floats, tuples in
    JSON, other offsets, enum values): add/upsert/update return exactly what get returns."""
    entity = data.draw(accepted_entities(cls))
    repo, codec = shared_store.repo(cls), CODECS[cls]
    with pytest.raises(_Rollback), shared_store.backend.transaction(foreign_keys=False):
        stored = repo.add(entity)
        got = repo.get(codec.key_of(stored))
        assert identical(got, stored), f"stored {got!r}, returned {stored!r}"
        assert codec.dump(entity)[1] == codec.evolve(stored, **{codec.pk: codec.key_of(entity)})
        assert identical(repo.upsert(entity if codec.key_of(entity) is not None else stored),
                         got)
        assert identical(repo.update(got), got)
        raise _Rollback
