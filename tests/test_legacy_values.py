"""Reading what others wrote, and writing back only what changed (issues 13.1, 13.2, 14.5):
the legacy fixtures after adoption, rows written by plain sqlite3 in every shape the Hive apps
leave, and arbitrary SQLite values in any column."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import hive_store
from hive_store import RawValue, values
from hive_store.changes import Change
from hive_store.entities import CORE_ENTITIES, Conversation, User
from hive_store.hookspecs import hookimpl
from hive_store.testing import entities
from tests.conftest import isolated_plugins, legacy_fixture, table_digest

FIXTURES = ["hive-ai-v5.db", "hive-ai-v10.db", "hive-ai-v9.db", "hive-ai-v13.db",
            "hive-ai-electron.db"]
LEGACY = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                       HealthCheck.too_slow])


def adopted(name: str, folder: Path) -> Path:
    """A copy of a legacy fixture, adopted (opened once by hive_store.open)."""
    path = folder / "hive-ai.db"
    shutil.copy(legacy_fixture(name), path)
    hive_store.open(f"sqlite://{path}", plugins=isolated_plugins()).close()
    return path


def digests(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: table_digest(conn, t) for t in tables}
    finally:
        conn.close()


def raw_rows(path: Path, table: str, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        cols = ", ".join(f'"{c}"' for c in columns)
        return conn.execute(f'SELECT {cols} FROM "{table}" ORDER BY rowid').fetchall()
    finally:
        conn.close()


def assert_faithful(codec: Any, entity: Any, row: tuple[Any, ...]) -> None:
    """Every field is a typed value whose stored form is the column's, or a RawValue holding
    exactly the stored value."""
    for name, stored in zip(codec.columns, row, strict=True):
        got = getattr(entity, name)
        if isinstance(got, RawValue):
            assert got.value.__class__ is stored.__class__ and got.value == stored, name


# -- 13.1: every row of every adopted fixture reads, through every repository -------------------


@pytest.mark.parametrize("name", FIXTURES)
def test_every_row_of_an_adopted_fixture_reads(tmp_path: Path, name: str) -> None:
    path = adopted(name, tmp_path)
    with hive_store.open(f"sqlite://{path}", plugins=isolated_plugins()) as store:
        for cls in CORE_ENTITIES:
            repo, codec = store.repo(cls), store.codec(cls)
            rows = raw_rows(path, codec.table, codec.columns)
            found = list(repo.iter(batch_size=7))
            assert len(found) == len(rows) == repo.count() == len(repo.find())
            for entity, row in zip(found, rows, strict=True):
                assert_faithful(codec, entity, row)
            keys = [codec.key_of(e) for e in found]
            assert repo.get_many(keys[:50]) == found[:50]
            if found:
                assert repo.get(keys[-1]) == found[-1]
            texts = [f.name for f in codec.fields if f.kind in ("str", "json")]
            if texts:
                assert len(repo.search("", fields=texts)) >= 0
            for f in codec.fields:  # ordering and filtering by every field works
                assert len(repo.find(order_by=f"-{f.name}", limit=5)) == min(5, len(rows))
        store.search_knowledge("the")
        store.recent_activity(since=datetime(2000, 1, 1, tzinfo=UTC))


# -- rows written by plain sqlite3 in the shapes the issue lists --------------------------------


def _plain(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = OFF")  # as the old runtime wrote most rows
    return conn


def test_odd_shapes_written_by_plain_sqlite3(db_path: Path) -> None:
    conn = _plain(db_path)
    conn.executemany(
        "INSERT INTO messages (id, conversation_id, role, content, stage, timestamp) "
        "VALUES (?, 'c', ?, 'x', ?, ?)", [
            ("s", "user", None, "1752497453"), ("ms", "assistant", "curator", "1752497453589"),
            ("chrono", "user", None, "2025-07-14 12:50:53.589793000 UTC"),
            ("rusqlite", "user", None, "2025-07-14 12:50:53.589793000+00:00"),
            ("sqlite", "user", None, "2025-07-14 12:50:53"), ("empty", "user", None, ""),
            ("never", "robot", "Curator", "never"), ("blob", "user", None, b"\x00\x01")])
    conn.execute("INSERT INTO openrouter_providers (id, name, display_name, capabilities, "
                 "last_updated, is_active) VALUES ('p1', 'p1', 'P', '', 1752497453, 'true'), "
                 "('p2', 'p2', 'P', 'plain text', '2025-07-14', 'false'), "
                 "('p3', 'p3', 'P', 'null', 'never', 2)")
    conn.execute("INSERT INTO consensus_metrics (conversation_id, baseline_model, "
                 "baseline_result, consensus_result, improvement_score, quality_metrics, "
                 "cost_comparison, time_comparison, question_complexity) VALUES "
                 "('c', 'm', 'r', 'r', 0.5, 'null', '{\"a\": 1}', '', 'basic')")
    conn.execute("INSERT INTO performance_metrics (timestamp, total_duration, openrouter_latency)"
                 " VALUES ('2025-07-14T12:50:53Z', 1234.0, 12.5)")
    conn.execute("INSERT INTO activity_log (event_type, duration_ms, metadata) "
                 "VALUES ('export', 1500.0, 'not json')")
    conn.execute("INSERT INTO daily_usage_summary (id, user_id, date, created_at, updated_at) "
                 "VALUES ('d1', 'u', 20250714, '2025-07-14 00:00:00', 1752451200000), "
                 "('d2', 'u', 1752451200, '', '')")
    conn.close()
    instant = datetime(2025, 7, 14, 12, 50, 53, tzinfo=UTC)
    with hive_store.open(f"sqlite://{db_path}", plugins=isolated_plugins()) as store:
        msgs = {m.id: m for m in store.messages.iter()}
        assert msgs["s"].timestamp == instant
        assert msgs["ms"].timestamp == instant.replace(microsecond=589000)
        for key in ("chrono", "rusqlite"):
            assert msgs[key].timestamp == instant.replace(microsecond=589793)
        assert msgs["sqlite"].timestamp == instant
        assert msgs["empty"].timestamp == RawValue("")
        assert (msgs["never"].timestamp, msgs["never"].role, msgs["never"].stage) == (
            RawValue("never"), RawValue("robot"), RawValue("Curator"))
        assert msgs["blob"].timestamp == RawValue(b"\x00\x01")
        providers = {p.id: p for p in store.openrouter_providers.find(id__in=["p1", "p2", "p3"])}
        assert providers["p1"].is_active is True and providers["p2"].is_active is False
        assert providers["p3"].is_active == RawValue(2)
        assert providers["p1"].capabilities == RawValue("")
        assert providers["p2"].capabilities == RawValue("plain text")
        assert providers["p3"].capabilities is None  # JSON null in a nullable column
        assert providers["p1"].last_updated == instant.replace(microsecond=0)
        assert providers["p3"].last_updated == RawValue("never")
        metric = store.consensus_metrics.find_one()
        assert metric.quality_metrics == RawValue("null")  # NOT NULL: JSON null has no place
        assert metric.cost_comparison == {"a": 1} and metric.time_comparison == RawValue("")
        perf = store.performance_metrics.find_one()
        assert perf.total_duration == 1234 and perf.total_duration.__class__ is int
        assert perf.openrouter_latency == RawValue(12.5)
        act = store.activity_log.find_one()
        assert act.duration_ms == 1500 and act.metadata == RawValue("not json")
        days = {d.id: d for d in store.daily_usage_summary.iter()}
        assert days["d1"].date == days["d2"].date == datetime(2025, 7, 14).date()
        assert days["d1"].updated_at == datetime(2025, 7, 14, tzinfo=UTC)
        # strict reads raise, naming the row and field, for the untypable ones only
    with hive_store.open(f"sqlite://{db_path}", plugins=isolated_plugins(),
                         strict=True) as strict:
        assert strict.messages.get("s").timestamp == instant
        with pytest.raises(hive_store.RawValueError) as err:
            strict.messages.get("never")
        assert err.value.key == "never" and {f for f, _ in err.value.errors} == {
            "role", "stage", "timestamp"}
        with pytest.raises(hive_store.RawValueError):
            list(strict.messages.iter())
        with pytest.raises(hive_store.RawValueError):
            strict.openrouter_providers.find()


# -- hypothesis: arbitrary SQLite values in any column never fail a read -------------------------

SQL_VALUES = st.one_of(
    st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
    st.text(max_size=30), st.binary(max_size=12),
    st.sampled_from(["", "never", "null", "true", "2", "[1", "{}", "1752497453",
                     "2025-07-14 12:50:53", "2025-02-30", "NaN", "[" * 200 + "]" * 200]),
)


@pytest.fixture(scope="module")
def hostile_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any, Any]]:
    path = tmp_path_factory.mktemp("hostile") / "hive-ai.db"
    hive_store.open(f"sqlite://{path}", plugins=isolated_plugins()).close()
    tolerant = hive_store.open(f"sqlite://{path}", plugins=isolated_plugins())
    strict = hive_store.open(f"sqlite://{path}", plugins=isolated_plugins(), strict=True)
    yield path, tolerant, strict
    tolerant.close()
    strict.close()


@LEGACY
@given(cls=st.sampled_from(CORE_ENTITIES), data=st.data())
def test_any_stored_value_in_any_column_reads(hostile_file: tuple[Path, Any, Any], cls: type,
                                              data: st.DataObject) -> None:
    path, store, strict = hostile_file
    codec = store.codec(cls)
    base = list(codec.to_row(data.draw(entities(cls), label="row")))
    if base[codec.columns.index(codec.pk)] is None:
        base[codec.columns.index(codec.pk)] = 77
    pk = base[codec.columns.index(codec.pk)]
    for i, name in enumerate(codec.columns):
        if name != codec.pk and data.draw(st.booleans(), label=f"odd {name}?"):
            base[i] = data.draw(SQL_VALUES, label=name)
    conn = _plain(path)
    try:
        cols = ", ".join(f'"{c}"' for c in codec.columns)
        try:
            conn.execute(f'INSERT INTO "{codec.table}" ({cols}) VALUES '
                         f'({", ".join("?" for _ in base)})', base)
        except sqlite3.IntegrityError:
            assume(False)  # a constraint of the schema refused it (NOT NULL, CHECK …)
        stored = conn.execute(f'SELECT {cols} FROM "{codec.table}" WHERE rowid = '
                              f'last_insert_rowid()').fetchone()
        repo = store.repo(cls)
        entity = repo.get(pk)
        assert_faithful(codec, entity, stored)
        assert repo.find(**{f"{codec.pk}__in": [pk]}) == [entity]
        assert [e for e in repo.iter(batch_size=3) if codec.key_of(e) == pk] == [entity]
        texts = [f.name for f in codec.fields if f.kind in ("str", "json")]
        # LIKE matches any value but NULL (and a zero-length BLOB, which SQLite's LIKE takes
        # for NULL)
        if any(stored[codec.columns.index(n)] not in (None, b"") for n in texts):
            assert entity in repo.search("", fields=texts)
        for f in codec.fields:  # every field orders and filters
            repo.find(order_by=f.name, limit=2)
            if f.kind == "datetime":
                repo.count(**{f"{f.name}__ge": datetime(2020, 1, 1, tzinfo=UTC)})
        # strict: the same entity, or the opt-in strict error
        try:
            assert strict.repo(cls).get(pk) == entity
            assert not any(isinstance(getattr(entity, n), RawValue) for n in codec.columns)
        except hive_store.RawValueError as exc:
            assert exc.key == pk
            assert any(isinstance(getattr(entity, n), RawValue) for n in codec.columns)
        # writing it back changes nothing
        before = conn.execute(f'SELECT {cols} FROM "{codec.table}" WHERE "{codec.pk}" = ?',
                              (pk,)).fetchone()
        assert repo.update(entity) == entity
        assert repo.upsert(entity) == entity
        after = conn.execute(f'SELECT {cols} FROM "{codec.table}" WHERE "{codec.pk}" = ?',
                             (pk,)).fetchone()
        assert [(type(v), v) for v in after] == [(type(v), v) for v in before]
    finally:
        conn.execute(f'DELETE FROM "{codec.table}" WHERE "{codec.pk}" = ?', (pk,))
        conn.close()


# -- 13.2: writing back unchanged changes nothing; updates write only what changed --------------


@pytest.mark.slow
@pytest.mark.parametrize("name", FIXTURES)
def test_writing_every_legacy_row_back_unchanged_changes_nothing(tmp_path: Path,
                                                                 name: str) -> None:
    path = adopted(name, tmp_path)
    before = digests(path)
    with hive_store.open(f"sqlite://{path}", plugins=isolated_plugins()) as store:
        for cls in CORE_ENTITIES:
            repo = store.repo(cls)
            for i, entity in enumerate(list(repo.iter())):
                assert repo.update(entity) == entity
                key = store.codec(cls).key_of(entity)
                assert repo.update(key) == entity
                if i % 3 == 0:
                    assert repo.upsert(entity) == entity
    assert digests(path) == before


class _Recorder:
    def __init__(self) -> None:
        self.changes: list[Change] = []

    @hookimpl
    def hive_store_after_commit(self, store: Any, changes: Any) -> None:
        self.changes.extend(changes)


def test_updates_write_only_changed_columns_even_with_a_dangling_key(tmp_path: Path) -> None:
    path = adopted("hive-ai-electron.db", tmp_path)
    conn = sqlite3.connect(path)
    cid, user = conn.execute(
        "SELECT c.id, c.user_id FROM conversations c LEFT JOIN users u ON u.id = c.user_id "
        "WHERE c.user_id IS NOT NULL AND u.id IS NULL LIMIT 1").fetchone()
    old = conn.execute("SELECT * FROM conversations WHERE id = ?", (cid,)).fetchone()
    cols = [r[1] for r in conn.execute("PRAGMA table_info(conversations)")]
    conn.close()
    recorder = _Recorder()
    with hive_store.open(f"sqlite://{path}", plugins=isolated_plugins(recorder)) as store:
        updated = store.update_conversation_metrics(cid, quality_score=0.25)
        assert updated.quality_score == 0.25 and updated.user_id == user
        done = store.complete_conversation(cid, success=False)
        assert done.success == 0 and done == store.conversations.get(cid)
        with pytest.raises(hive_store.IntegrityError):  # touching the key is still checked
            store.conversations.update(cid, user_id="another-ghost")
    conn = sqlite3.connect(path)
    new = conn.execute("SELECT * FROM conversations WHERE id = ?", (cid,)).fetchone()
    conn.close()
    changed = {c for c, a, b in zip(cols, old, new, strict=True) if a != b}
    assert changed <= {"quality_score", "updated_at", "end_time", "success"}
    assert [(c.op, c.columns) for c in recorder.changes] == [
        (hive_store.Op.UPDATE, ("quality_score", "updated_at")),
        (hive_store.Op.UPDATE, ("end_time", "success", "updated_at"))]
    assert recorder.changes[-1].entity == done


def test_an_unchanged_legacy_value_keeps_its_bytes(db_path: Path) -> None:
    conn = _plain(db_path)
    conn.execute("INSERT INTO activity_log (event_type, metadata, created_at, cost) VALUES "
                 "('export', '{\"b\": 1,  \"a\": [1.0, 2]}', '2025-07-14T10:17:53.589Z', 1)")
    conn.close()
    with hive_store.open(f"sqlite://{db_path}", plugins=isolated_plugins()) as store:
        entry = store.activity_log.find_one()
        assert entry.metadata == {"b": 1, "a": [1.0, 2]}
        store.activity_log.update(entry, model_used="m")
        changed = store.activity_log.update(entry.id, metadata={"b": 1, "a": [1, 2]})
        assert changed.metadata == {"b": 1, "a": [1, 2]}  # 1.0 -> 1 is a change: written
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT metadata, created_at, cost, typeof(cost), model_used "
                        "FROM activity_log").fetchone() == (
        '{"b":1,"a":[1,2]}', "2025-07-14T10:17:53.589Z", 1.0, "real", "m")
    conn.close()


def test_upsert_of_an_existing_row_writes_only_what_changed(db_path: Path) -> None:
    conn = _plain(db_path)
    conn.execute("INSERT INTO users (id, email, created_at, updated_at, tier) "
                 "VALUES ('u', 'a@b', '2025-07-14 12:50:53', 'never', 'FREE')")
    conn.close()
    with hive_store.open(f"sqlite://{db_path}", plugins=isolated_plugins()) as store:
        user = store.users.get("u")
        assert user.updated_at == RawValue("never")
        assert store.users.upsert(user) == user
        replaced = store.users.upsert(User(id="u", email="a@b", tier="PRO",
                                           created_at=user.created_at,
                                           updated_at=user.updated_at))
        assert replaced == store.users.get("u") and replaced.tier == "PRO"
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT created_at, updated_at, tier FROM users").fetchone() == (
        "2025-07-14 12:50:53", "never", "PRO")
    conn.close()


# -- 14.5: time filters and ordering compare instants, whatever forms a table mixes --------------


def _forms(instant: datetime) -> st.SearchStrategy[tuple[str | int | float, datetime]]:
    """Stored forms of ``instant`` (with the instant each one means: some forms hold less
    precision)."""
    s = instant.replace(microsecond=0)
    ms = instant.replace(microsecond=instant.microsecond // 1000 * 1000)
    epoch = int((s - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    local = timezone(timedelta(hours=5, minutes=30))
    return st.sampled_from([
        (values.format_timestamp(instant), instant),
        (s.strftime("%Y-%m-%d %H:%M:%S"), s),
        (ms.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms.microsecond // 1000:03d}Z", ms),
        (instant.astimezone(local).isoformat(), instant),
        (instant.strftime("%Y-%m-%d %H:%M:%S.%f") + "000 UTC", instant),
        (instant.strftime("%Y-%m-%d %H:%M:%S.%f") + "000+00:00", instant),
        (str(epoch), s), (epoch * 1000 + ms.microsecond // 1000, ms), (epoch, s),
    ])


INSTANTS = st.datetimes(min_value=datetime(2024, 12, 30), max_value=datetime(2025, 1, 3),
                        timezones=st.just(UTC))


def _model(stored: list[Any]) -> list[str | None]:
    return [values.timestamp_key(v) for v in stored]


@pytest.fixture(scope="module")
def mix_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    path = tmp_path_factory.mktemp("mix") / "hive-ai.db"
    with hive_store.open(f"sqlite://{path}", plugins=isolated_plugins()) as store:
        yield path, store


@LEGACY
@given(rows=st.lists(INSTANTS.flatmap(_forms) | st.sampled_from(
    [("never", None), ("", None), (None, None), ("2025-02-30 10:00:00", None)]),
    min_size=1, max_size=25), pivot=INSTANTS, data=st.data())
def test_time_filters_and_order_compare_instants(mix_store: tuple[Path, Any], rows: list[Any],
                                                 pivot: datetime, data: st.DataObject) -> None:
    path, store = mix_store
    conn = _plain(path)
    try:
        conn.executemany("INSERT INTO activity_log (id, event_type, created_at) "
                         "VALUES (?, 'export', ?)", [(i + 1, v) for i, (v, _) in enumerate(rows)])
        stored = [v for v, _ in rows]
        keys = _model(stored)
        for (_, meant), key in zip(rows, keys, strict=True):
            assert key == (None if meant is None else values.format_timestamp(meant))
        if data.draw(st.booleans(), label="pivot on a stored instant?"):
            pivot = data.draw(st.sampled_from([m for _, m in rows if m is not None] or [pivot]))
        p = values.format_timestamp(pivot)
        checks = {"lt": lambda k: k < p, "le": lambda k: k <= p, "gt": lambda k: k > p,
                  "ge": lambda k: k >= p, "eq": lambda k: k == p, "ne": lambda k: k != p}
        log = store.activity_log
        for op, test in checks.items():
            want = sorted(i + 1 for i, k in enumerate(keys) if k is not None and test(k))
            got = sorted(e.id for e in log.find(**{f"created_at__{op}": pivot}))
            assert got == want, f"created_at__{op}"
            assert log.count(**{f"created_at__{op}": pivot}) == len(want)
        got_keys = [keys[e.id - 1] for e in log.find(order_by=["created_at", "id"])]
        assert got_keys == sorted(keys, key=lambda k: (k is not None, k or ""))
        newest = [keys[e.id - 1] for e in store.recent_activity(since=pivot, limit=5)]
        assert newest == sorted((k for k in keys if k is not None and k >= p), reverse=True)[:5]
    finally:
        conn.execute("DELETE FROM activity_log")
        conn.close()


def test_time_filters_on_an_adopted_v10_file(tmp_path: Path) -> None:
    path = adopted("hive-ai-v10.db", tmp_path)
    with hive_store.open(f"sqlite://{path}", plugins=isolated_plugins()) as store:
        timed = [(cls, f.name) for cls in CORE_ENTITIES for f in store.codec(cls).fields
                 if f.kind == "datetime"]
        mixed = 0
        for cls, field in timed:
            codec = store.codec(cls)
            raw = raw_rows(path, codec.table, (codec.pk, field))
            keys = {pk: values.timestamp_key(v) for pk, v in raw}
            forms = {v[10:11] for _, v in raw if isinstance(v, str) and len(v) > 10}
            mixed += forms >= {"T", " "}
            instants = sorted({k for k in keys.values() if k is not None})
            if not instants:
                continue
            repo = store.repo(cls)
            for p in instants[:: max(1, len(instants) // 7)]:
                pivot = values.parse_timestamp(p)
                for op, test in (("ge", lambda k, p=p: k >= p), ("lt", lambda k, p=p: k < p)):
                    want = {pk for pk, k in keys.items() if k is not None and test(k)}
                    got = {codec.key_of(e) for e in repo.find(**{f"{field}__{op}": pivot})}
                    assert got == want, f"{cls.__name__}.{field}__{op}"
            ordered = [keys[codec.key_of(e)] for e in repo.find(order_by=f"-{field}")]
            assert ordered == sorted(keys.values(), key=lambda k: (k is not None, k or ""),
                                     reverse=True)
        assert mixed >= 5  # the file really mixes SQLite's and hive-store's forms


def test_time_filters_use_the_key_indexes(store: hive_store.Store) -> None:
    repo = store.activity_log
    sql, params = repo._select({"created_at__ge": datetime(2025, 1, 1, tzinfo=UTC)},
                               ["-created_at", "-id"], 50, 0)
    with store.backend.connection() as conn:
        plan = " ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    assert "hive_store_time_activity_log_created_at" in plan, plan


def test_text_that_is_not_utf8_reads_as_raw_bytes(db_path: Path) -> None:
    """TEXT holding invalid UTF-8 (another writer's CAST of bytes) makes the sqlite3 module
    refuse the whole row, quoting the text: reads retry with such text as bytes."""
    conn = _plain(db_path)
    conn.execute("INSERT INTO conversations (id) VALUES ('c')")
    conn.executemany("INSERT INTO messages (id, conversation_id, role, content, timestamp) "
                     "VALUES (?, 'c', 'user', CAST(? AS TEXT), ?)",
                     [(f"m{i}", b"secret \xff" if i == 5 else b"fine",
                       "2025-07-14 12:00:00") for i in range(9)])
    conn.close()
    raw = RawValue(b"secret \xff")
    with hive_store.open(f"sqlite://{db_path}", plugins=isolated_plugins()) as store:
        repo = store.messages
        assert repo.get("m5").content == raw and repo.get("m4").content == "fine"
        assert [m.id for m in repo.iter(batch_size=2)] == [f"m{i}" for i in range(9)]
        assert [m.content for m in repo.find()].count(raw) == 1
        assert len(repo.get_many([f"m{i}" for i in range(9)])) == 9
        assert len(repo.search("e", fields=["content"])) == 9
        assert repo.count(content="fine") == 8
        updated = repo.update("m5", role="assistant")
        assert updated.content == raw and updated.role == "assistant"
        assert repo.update(updated) == updated and repo.upsert(updated) == updated
        conv = store.conversations.get("c")
        assert conv.created_at is not None  # nothing else disturbed
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT typeof(content), CAST(content AS BLOB) FROM messages "
                        "WHERE id = 'm5'").fetchone() == ("text", b"secret \xff")
    conn.close()
    with hive_store.open(f"sqlite://{db_path}", plugins=isolated_plugins(),
                         strict=True) as strict:
        with pytest.raises(hive_store.RawValueError) as err:
            strict.messages.get("m5")
        assert err.value.key == "m5" and err.value.field == "content"


def test_odd_keys_and_raw_filters(db_path: Path) -> None:
    conn = _plain(db_path)
    conn.executemany("INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)",
                     [(None, "null key", "never"), (b"\x00k", "blob key", ""),
                      (5, "integer key", "2025-07-14"), ("k", 3, 1752497453)])
    conn.close()
    with hive_store.open(f"sqlite://{db_path}", plugins=isolated_plugins()) as store:
        rows = {s.value: s for s in store.settings.iter()}
        assert rows["null key"].key == RawValue(None) and rows["blob key"].key == RawValue(b"\0k")
        assert rows["integer key"].key == "5"  # TEXT affinity stored the integer as text
        assert rows["3"].updated_at == datetime(2025, 7, 14, 12, 50, 53, tzinfo=UTC)
        assert store.settings.find(updated_at=RawValue("never")) == [rows["null key"]]
        assert store.settings.find(updated_at__in=[RawValue(""), RawValue("never")]) == [
            rows["null key"], rows["blob key"]]
        assert store.settings.get(RawValue(b"\0k")) == rows["blob key"]  # a raw key finds it
        assert store.settings.update(rows["blob key"]) == rows["blob key"]
        with pytest.raises(hive_store.NotFound):  # a NULL key matches no key
            store.settings.update(rows["null key"])


@pytest.mark.parametrize("where", ["file", "memory", "transaction"])
def test_iter_reads_on_past_text_that_is_not_utf8(db_path: Path, where: str) -> None:
    url = ":memory:" if where == "memory" else f"sqlite://{db_path}"
    with hive_store.open(url, plugins=isolated_plugins()) as store:
        store.conversations.add(Conversation(id="c"))
        with store.backend.connection() as conn:
            conn.executemany("INSERT INTO messages (id, conversation_id, role, content) "
                             "VALUES (?, 'c', 'user', CAST(? AS TEXT))",
                             [(f"m{i}", b"\xff" if i in (2, 7) else b"ok") for i in range(10)])
        block = store.transaction() if where == "transaction" else contextlib.nullcontext()
        with block:
            got = [m.content for m in store.messages.iter(batch_size=3)]
        assert got == ["ok", "ok", RawValue(b"\xff"), "ok", "ok", "ok", "ok", RawValue(b"\xff"),
                       "ok", "ok"]
        assert [m.content for m in store.messages.iter()].count("ok") == 8  # text_factory reset
