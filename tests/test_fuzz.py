"""Bad input: hypothesis throws wrong types, NaN and infinities, huge numbers and strings,
foreign enums, unknown fields, SQL fragments, arbitrary filter and ``order_by`` names and path
tricks at the public API and the command line.

The contract checked everywhere: only :class:`hive_store.HiveStoreError` escapes (anything else
is a failure), its message says what was wrong, and a rejected call writes nothing. The command
exits 0, 1 or 2 with at most a one-line error and never a traceback.

The tests at the end of this module pin the bugs the fuzzing found (wrong-type order_by,
64-bit limits, non-iterables, late validation in record_consensus, infinite timeouts,
unhashable entities, unbounded excerpts in messages), now fixed.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import hive_store
from hive_store import StageOutput
from hive_store.cli import make_cli
from hive_store.entities import (
    ActivityLog,
    Configuration,
    ConsensusFact,
    Conversation,
    ConversationThread,
    DailyUsageSummary,
    License,
    Message,
    Setting,
    User,
)
from hive_store.plugins import Plugins
from hive_store.testing import (
    SQL_INJECTIONS,
    counts_unchanged,
    hostile_text,
    hostile_values,
    value_strategy,
)
from tests.conftest import BACKENDS

# max_examples comes from the profile in force (conftest: dev 50, CI 100, thorough 500)
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
USER, CONV = "fuzz-user", "fuzz-conv"
RC_TABLES = ("conversations", "messages", "knowledge_conversations", "curator_truths",
             "usage_records", "conversation_usage", "activity_log")


@pytest.fixture(scope="module", params=BACKENDS)
def fz(request: pytest.FixtureRequest,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[hive_store.Store]:
    """One store per backend for the whole module (hypothesis runs many examples per test)."""
    url = None
    if request.param == "sqlite-file":
        url = f"sqlite://{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
    elif request.param == "sqlite-memory":
        url = ":memory:"
    else:
        from tests import pg_support

        url = pg_support.new_database()
        request.addfinalizer(lambda: pg_support.drop(str(url)))
    with hive_store.open(url) as store:
        store.users.add(User(id=USER, email="fuzz@example.com"))
        store.conversations.add(Conversation(id=CONV, user_id=USER))
        store.messages.add(Message(conversation_id=CONV, role="user", content="hello"))
        yield store


def settle(store: hive_store.Store) -> None:
    """Let the memory plugin's background indexer finish what earlier writes logged (it writes
    its own tables and conversation_topics after their commits), so that row counts taken now
    change only with the writes that follow."""
    memory = store.__dict__.get("memory")
    if memory is not None:
        assert memory.wait_idle(timeout=60)


def call(fn: Callable[[], Any]) -> Any:
    """Run ``fn``: a result, or the HiveStoreError it raised; anything else fails the test."""
    try:
        result = fn()
    except hive_store.HiveStoreError as exc:
        check_message(exc)
        event(f"rejected: {type(exc).__name__}")
        return exc
    except Exception as exc:
        raise AssertionError(f"a non-hive_store exception escaped: {type(exc).__name__}: "
                             f"{str(exc)[:300]}") from exc
    event("accepted")
    return result


def check_message(exc: hive_store.HiveStoreError) -> None:
    """A message for people: not empty, and naming the entity/field where there is one."""
    text = str(exc)
    assert text.strip(), f"{type(exc).__name__} without a message"
    if isinstance(exc, hive_store.ValidationError):
        assert exc.entity and exc.errors and all(r for _, r in exc.errors), text
        assert text.startswith(f"invalid {exc.entity}: "), text
    if isinstance(exc, hive_store.NotFound):
        assert exc.entity in text and "not found" in text, text


# -- values for fields ----------------------------------------------------------------------------

WRITE_CLASSES = (User, Conversation, Message, Setting, License, Configuration, ActivityLog,
                 ConsensusFact, DailyUsageSummary, ConversationThread)
# writes of 1 MB strings that succeed would grow the module's database: 100 kB is enough
WRITE_HOSTILE = hostile_values(huge=100_000)


def _valid(cls: type, name: str) -> st.SearchStrategy[Any]:
    from hive_store._converters import EntityCodec

    info = EntityCodec(cls).field(name)
    if name in ("conversation_id", "child_conversation_id", "parent_conversation_id",
                "source_conversation_id"):
        return st.just(CONV)
    if name == "user_id":
        return st.just(USER) if not info.nullable else st.sampled_from([USER, None])
    if name == "email" and cls is User:
        return st.none()
    return value_strategy(info)


@st.composite
def wild_entities(draw: st.DrawFn) -> Any:
    """An entity of a random class with some fields replaced by hostile values (the classes
    have no validators, so anything can be put in; the codec must reject it on write)."""
    from hive_store._converters import EntityCodec

    cls = draw(st.sampled_from(WRITE_CLASSES))
    codec = EntityCodec(cls)
    values: dict[str, Any] = {}
    for info in codec.fields:
        if info.name == codec.pk and codec.autoincrement:
            values[info.name] = draw(st.none() | WRITE_HOSTILE)
        elif draw(st.integers(0, 3)) == 0:
            values[info.name] = draw(WRITE_HOSTILE)
        else:
            values[info.name] = draw(_valid(cls, info.name))
    return cls(**values)


@FUZZ
@given(entity=wild_entities(), op=st.sampled_from(["add", "upsert", "add_many", "add_many_2",
                                                    "update_entity", "update_fields"]),
       data=st.data())
def test_writes_with_wild_values_reject_cleanly_and_write_nothing(
        fz: hive_store.Store, entity: Any, op: str, data: st.DataObject) -> None:
    repo = fz.repo(type(entity))
    codec = fz.codec(type(entity))
    settle(fz)
    before = fz.backend.table_counts()
    if op == "update_fields":
        name = data.draw(st.sampled_from([f.name for f in codec.fields if f.name != codec.pk]))
        value = data.draw(WRITE_HOSTILE)
        target = data.draw(st.sampled_from([CONV, USER, "missing", 1]))
        row_before = repr(call(lambda: repo.get_many([target])))
        result = call(lambda: repo.update(target, **{name: value}))
        if isinstance(result, hive_store.HiveStoreError):
            assert repr(call(lambda: repo.get_many([target]))) == row_before, "an update wrote"
    else:
        fns: dict[str, Callable[[], Any]] = {
            "add": lambda: repo.add(entity),
            "upsert": lambda: repo.upsert(entity),
            "add_many": lambda: repo.add_many([entity]),
            "add_many_2": lambda: repo.add_many([entity, entity]),  # a duplicate, or an error
            "update_entity": lambda: repo.update(entity),
        }
        result = call(fns[op])
    after = fz.backend.table_counts()
    if isinstance(result, hive_store.HiveStoreError):
        assert after == before, f"{op} was rejected ({result}) but wrote rows"
    elif op in ("add", "upsert", "add_many", "add_many_2"):
        # accepted (the values happened to be valid): tidy up so the database stays small
        stored = result if isinstance(result, list) else [result]
        for e in stored:
            with contextlib.suppress(hive_store.HiveStoreError):
                repo.delete(codec.key_of(e))


FIELD_NAMES = st.one_of(
    st.sampled_from(["id", "content", "role", "stage", "timestamp", "conversation_id",
                     "model_used", "rowid", "oid", "_rowid_", "ID", "Content"]),
    st.tuples(st.sampled_from(["id", "content", "timestamp", "stage", "nosuch"]),
              st.sampled_from(["eq", "ne", "lt", "le", "gt", "ge", "in", "like", "contains",
                               "isnull", "regex", "", "eq__eq", "IN", "in "])
              ).map(lambda p: f"{p[0]}__{p[1]}"),
    hostile_text(max_size=30),
)
ORDER_BY = st.one_of(
    st.sampled_from(["id", "-timestamp", "+content", "--id", "-", "", "content desc",
                     "content; DROP TABLE messages", "random()", "1", "rowid"]),
    hostile_text(max_size=30),
    st.lists(st.one_of(hostile_text(max_size=20), hostile_values()), max_size=3),
    hostile_values(),
)
INTS = st.one_of(st.none(), st.integers(-5, 5), hostile_values())


@FUZZ
@given(filters=st.dictionaries(FIELD_NAMES, st.one_of(hostile_values(), st.just(CONV)),
                               max_size=3),
       order_by=ORDER_BY, limit=INTS, offset=INTS, how=st.sampled_from(
           ["find", "count", "find_one", "iter", "search"]))
def test_reads_with_arbitrary_filters_names_and_values(
        fz: hive_store.Store, filters: dict[str, Any], order_by: Any, limit: Any, offset: Any,
        how: str) -> None:
    repo = fz.messages
    kw = dict(filters)
    calls: dict[str, Callable[[], Any]] = {
        "find": lambda: repo.find(order_by=order_by, limit=limit, offset=offset or 0, **kw),
        "count": lambda: repo.count(**kw),
        "find_one": lambda: repo.find_one(order_by=order_by, **kw),
        "iter": lambda: list(repo.iter(order_by=order_by, batch_size=limit or 1, **kw)),
        "search": lambda: repo.search(
            next(iter(filters.values()), "x"), fields=list(filters) or ["content"],
            limit=limit, order_by=order_by),
    }
    settle(fz)
    with counts_unchanged(fz):
        result = call(calls[how])
    if not isinstance(result, hive_store.HiveStoreError):
        assert isinstance(result, int | list | Message | type(None))
        # whatever matched, a filter never returns more rows than the table has
        assert (result if isinstance(result, int) else 1) <= fz.messages.count() + 1


@FUZZ
@given(key=st.one_of(hostile_values(), st.sampled_from([CONV, USER, *SQL_INJECTIONS])),
       how=st.sampled_from(["get", "get_many", "get_many_raw", "delete", "update", "find_in"]),
       table=st.sampled_from(["messages", "conversations", "licenses", "settings",
                              "conversation_usage"]))
def test_keys_of_any_type(fz: hive_store.Store, key: Any, how: str, table: str) -> None:
    cls = fz.entities[table]
    repo = fz.repo(cls)
    pk = fz.codec(cls).pk
    calls: dict[str, Callable[[], Any]] = {
        "get": lambda: repo.get(key),
        "get_many": lambda: repo.get_many([key, key]),
        "get_many_raw": lambda: repo.get_many(key),
        "delete": lambda: repo.delete(key),
        "update": lambda: repo.update(key),
        "find_in": lambda: repo.find(**{f"{pk}__in": [key]}),
    }
    if how == "delete":  # deletes only a row that exists (fuzz-user/conv are referenced)
        existed = call(lambda: repo.get_many([key]))
        result = call(calls[how])
        assert result is not True or existed, f"delete({key!r}) deleted a missing row"
        if key in (CONV, USER):  # referenced rows: refused (or not this table's key type)
            assert isinstance(result, hive_store.IntegrityError | hive_store.ValidationError
                              | bool) and result is not True
        return
    settle(fz)
    with counts_unchanged(fz):
        call(calls[how])


def _stage_dicts(order: list[str]) -> st.SearchStrategy[list[Any]]:
    """Stage outputs with hostile text but well-typed numbers (see BUG-4)."""
    text = st.one_of(hostile_text(max_size=30, huge=20_000), st.just("answer"))
    one = st.fixed_dictionaries({
        "model": st.one_of(text, hostile_values(huge=20_000)),
        "answer": st.one_of(text, hostile_values(huge=20_000)),
        "tokens_input": st.integers(0, 2**40), "tokens_output": st.integers(0, 2**40),
        "cost": st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6,
                          max_value=1e6),
        "duration_ms": st.none() | st.integers(0, 10**9),
        "provider": st.none() | text,
    })
    return st.tuples(*[one.map(lambda d, s=s: {**d, "stage": s}) for s in order]).map(list)


STAGE_NAMES = ["generator", "refiner", "validator", "curator"]
STAGES = st.one_of(
    _stage_dicts(STAGE_NAMES),
    st.permutations(STAGE_NAMES).flatmap(_stage_dicts),
    st.lists(st.sampled_from([*STAGE_NAMES, "curator ", "GENERATOR", "other"]), max_size=5)
    .flatmap(_stage_dicts),
    st.lists(hostile_values(huge=20_000), max_size=4),
    hostile_values(huge=20_000),
)
AWARE = st.none() | st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                                 timezones=st.just(UTC))


@FUZZ
@given(question=st.one_of(hostile_values(huge=50_000), st.just("What is WAL?")),
       stages=STAGES, data=st.data())
def test_record_consensus_with_bad_input_writes_all_or_nothing(
        fz: hive_store.Store, question: Any, stages: Any, data: st.DataObject) -> None:
    kw = {
        "user_id": data.draw(st.one_of(st.none(), st.just(USER), hostile_values()), "user_id"),
        "profile_id": data.draw(st.none() | hostile_text(max_size=20), "profile_id"),
        "conversation_id": data.draw(st.one_of(st.none(), st.just(CONV), hostile_values()),
                                     "conversation_id"),
        "confidence": data.draw(st.one_of(st.floats(), hostile_values()), "confidence"),
        "topic_summary": data.draw(st.none() | hostile_text(max_size=20), "topic_summary"),
        "quality_score": data.draw(st.one_of(st.none(), st.floats(), hostile_values()),
                                   "quality_score"),
        "started_at": data.draw(AWARE, "started_at"),
        "completed_at": data.draw(AWARE, "completed_at"),
    }
    before = {t: fz.backend.table_counts()[t] for t in RC_TABLES}
    result = call(lambda: fz.record_consensus(question, stages, **kw))
    after = {t: fz.backend.table_counts()[t] for t in RC_TABLES}
    if isinstance(result, hive_store.HiveStoreError):
        assert after == before, f"rejected ({result}) but wrote: {before} -> {after}"
    else:
        assert {t: after[t] - before[t] for t in RC_TABLES} == {
            "conversations": 1, "messages": 5, "knowledge_conversations": 1,
            "curator_truths": 1, "usage_records": 1, "conversation_usage": 1,
            "activity_log": 1}


@FUZZ
@given(event_type=st.one_of(hostile_values(), st.sampled_from(["export", "query_start"])),
       fields=st.dictionaries(st.one_of(st.sampled_from(["cost", "stage", "metadata", "user_id",
                                                         "id", "created_at", "nosuch"]),
                                        hostile_text(max_size=10)),
                              hostile_values(), max_size=3),
       limit=INTS, since=st.one_of(st.none(), hostile_values()), text=hostile_values())
def test_domain_helpers_with_bad_input(fz: hive_store.Store, event_type: Any,
                                       fields: dict[str, Any], limit: Any, since: Any,
                                       text: Any) -> None:
    settle(fz)
    before = fz.backend.table_counts()
    logged = call(lambda: fz.log_activity(event_type, **fields))
    if isinstance(logged, hive_store.HiveStoreError):
        assert fz.backend.table_counts() == before
    with counts_unchanged(fz):
        call(lambda: fz.recent_activity(limit=limit if limit is not None else 5, since=since,
                                        user_id=text if isinstance(text, str) else None,
                                        event_type=event_type))
        call(lambda: fz.search_knowledge(text, limit=limit if limit is not None else 5))
    updated = call(lambda: fz.update_conversation_metrics(CONV, total_cost=since,
                                                          quality_score=text))
    if isinstance(updated, hive_store.HiveStoreError):
        assert fz.conversations.get(CONV).updated_at is not None
    call(lambda: fz.complete_conversation("missing-conversation", end_time=since))


# -- opening: URLs with path tricks and options ---------------------------------------------------

DEPTH = 6  # the working directory and HOME are this deep in the box; ".." never climbs out


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<tmp>/box`` with a deep working directory and a deep HOME; the test checks that
    ``<tmp>`` holds nothing but ``box`` afterwards."""
    box = tmp_path_factory.mktemp("open") / "box"
    box.joinpath(*[f"h{i}" for i in range(DEPTH)]).mkdir(parents=True)
    work = box.joinpath(*[f"d{i}" for i in range(DEPTH)])
    work.mkdir(parents=True)
    (work / "a-directory.db").mkdir()
    (work / "junk.db").write_bytes(b"not a database at all" * 300)
    (work / "empty.db").write_bytes(b"")
    return box


@contextlib.contextmanager
def inside(box: Path) -> Iterator[Path]:
    """cwd and HOME deep in the box and HIVE_STORE_DB in it: no file can land elsewhere."""
    work = box.joinpath(*[f"d{i}" for i in range(DEPTH)])
    env = {"HOME": str(box.joinpath(*[f"h{i}" for i in range(DEPTH)])),
           "HIVE_STORE_DB": str(work / "default.db")}
    with mock.patch.dict(os.environ, env), contextlib.chdir(work):
        yield work
    assert [p.name for p in box.parent.iterdir()] == ["box"], "a file escaped the sandbox"


SEGMENTS = st.sampled_from(["..", ".", "a", "%2e%2e", "%2E%2E", "%2F", "~", "db.sqlite", "con",
                            " ", "ü", "x.db", "a-directory.db", "junk.db", "empty.db", "//",
                            "\\", ":memory:", "%00", "%0a", "%", "%zz", "?", "#", ";", "'"])
QUERY = st.dictionaries(
    st.sampled_from(["max_size", "min_idle", "busy_timeout", "durability", "cache_size_kib",
                     "mmap_size", "wal_autocheckpoint", "idle_timeout", "max_lifetime",
                     "test_on_checkout", "cached_statements", "nosuch", "mode", "uri"]),
    st.sampled_from(["0", "1", "-1", "2", "abc", "", "none", "1e3", "nan", "inf", "-inf", "full",
                     "FULL", "normal", "ro", "99999999999999999999", "0.001", "true"]),
    max_size=2,
).map(lambda q: "&".join(f"{k}={v}" for k, v in q.items()))


def _dotdots(text: str) -> int:
    return text.replace("%2e", ".").replace("%2E", ".").count("..")


@st.composite
def urls(draw: st.DrawFn, box: Path) -> Any:
    root = box.joinpath(*[f"d{i}" for i in range(DEPTH)])
    segments = draw(st.lists(SEGMENTS, min_size=1, max_size=5))
    path = "/".join(segments)
    form = draw(st.sampled_from(["bare", "sqlite:", "sqlite:///abs", "SQLite://localhost/abs",
                                 "sqlite://host/", "other:", "memory", "weird"]))
    query = draw(QUERY)
    q = f"?{query}" if query else ""
    if form == "bare":
        url: Any = path
    elif form == "sqlite:":
        url = f"sqlite:{path}{q}"
    elif form == "sqlite:///abs":
        url = f"sqlite://{root}/{path}{q}"
    elif form == "SQLite://localhost/abs":
        url = f"SQLite://localhost{root}/{path}{q}"
    elif form == "sqlite://host/":
        url = f"sqlite://{draw(st.sampled_from(['host', 'user:pw@host', '..', '%2e']))}/{path}"
    elif form == "other:":
        url = f"{draw(st.sampled_from(['file', 'http', 'd1', 'x', 'c', 'sqlite3']))}:{path}"
    elif form == "memory":
        url = draw(st.sampled_from([":memory:", "sqlite:///:memory:", "sqlite::memory:"])) + q
    else:
        url = draw(st.one_of(hostile_values().filter(lambda v: not isinstance(v, str)),
                             st.sampled_from(["", " ", "sqlite:", "sqlite://", "sqlite:///",
                                              ":", "::", "C:\\hive.db", "~/hive.db",
                                              "~root/x.db"])))
    # never climb out of the sandbox, and keep HOME-relative paths inside it too
    assume(not isinstance(url, str) or (_dotdots(url) < DEPTH and "~root" not in url))
    return url


OPTIONS = st.dictionaries(
    st.sampled_from(["max_size", "min_idle", "busy_timeout", "connection_timeout", "durability",
                     "idle_timeout", "nosuch", "cache_size_kib"]),
    hostile_values().filter(lambda v: not (isinstance(v, str) and len(v) > 100)),
    max_size=2)


@FUZZ
@given(data=st.data(), options=OPTIONS)
def test_open_with_path_tricks_and_bad_options(sandbox: Path, data: st.DataObject,
                                               options: dict[str, Any]) -> None:
    url = data.draw(urls(sandbox), label="url")
    with inside(sandbox):
        result = call(lambda: hive_store.open(url, **options))
        if isinstance(result, hive_store.Store):
            try:
                call(lambda: result.users.count())
            finally:
                result.close()


# -- the command line -----------------------------------------------------------------------------

CLI_WORDS = st.sampled_from([
    *sorted(make_cli(Plugins()).commands),  # every command installed, plugins' ones too
    "init", "status", "quickstart", "plugins", "migrate", "schema", "diff", "--json", "--all",
    "--list", "--verify", "--dry-run", "--allow-drift", "--force", "--to", "--set", "--help",
    "-h", "--version", "--db", "0", "1", "-1", "99999999999999999999", "hive_store", "nosuch",
    "--", "-", "--nosuch", "''", "x" * 300, "ü", "'; DROP TABLE users; --",
])
DB_VALUES = st.sampled_from([
    "cli.db", "sub/dir/cli.db", "../cli.db", "%2e%2e/cli.db", "a-directory.db", "junk.db",
    "empty.db", ":memory:", "sqlite::memory:", "sqlite:cli.db", "sqlite:///{root}/abs.db",
    "sqlite://host/x.db", "nosuch:///x.db", "~/home.db", "", " ", ".", "..", "/", "./",
    "sqlite:", "sqlite:///", "x.db?max_size=0", "x.db?nosuch=1", "sqlite:y.db?busy_timeout=abc",
    "sqlite:z.db?durability=weird", "/proc/self/status", "/dev/null", "con", "ü.db",
])


@st.composite
def cli_args(draw: st.DrawFn, root: Path) -> list[str]:
    args = draw(st.lists(CLI_WORDS, max_size=5))
    if draw(st.booleans()):
        work = root.joinpath(*[f"d{i}" for i in range(DEPTH)])
        db = draw(DB_VALUES).replace("{root}", str(work))
        args = ["--db", db, *args] if draw(st.booleans()) else [*args, "--db", db]
    return args


def check_cli(result: Any, args: list[str]) -> None:
    where = f"hive-store {' '.join(args)!r}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{where} raised {type(result.exception).__name__}: {result.exception}")
    assert result.exit_code in (0, 1, 2), f"{where}: exit {result.exit_code}: {result.output}"
    assert "Traceback" not in result.output, f"{where} printed a traceback"
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    if result.exit_code == 1 and errors:
        assert len(errors) == 1 and errors[0].startswith("Error: "), (
            f"{where}: not a one-line error: {result.stderr!r}")
    if result.exit_code == 2 and errors and not (
            errors[0].startswith("Usage:") and not any(e.startswith("Error") for e in errors)):
        # (a usage error; exit 2 without any "Error:" is the help shown for no command)
        assert errors[-1].startswith("Error: ") and sum(
            e.startswith("Error: ") for e in errors) == 1, f"{where}: {result.stderr!r}"


@FUZZ
@given(data=st.data())
def test_cli_never_shows_a_traceback(sandbox: Path, data: st.DataObject) -> None:
    args = data.draw(cli_args(sandbox), label="args")
    with inside(sandbox) as work:
        result = CliRunner().invoke(make_cli(Plugins()), args, env={
            "HOME": str(sandbox / "home"), "HIVE_STORE_DB": str(work / "default.db"),
            "HIVE_STORE_DEBUG": None})
    check_cli(result, args)


def test_plugin_commands_fail_with_one_line_too(tmp_path: Path) -> None:
    """Errors of commands added through hive_store_register_commands are handled alike."""

    class Commands:
        @hive_store.hookimpl
        def hive_store_register_commands(self, cli: click.Group) -> None:
            @cli.command("fail-hive")
            def fail_hive() -> None:
                raise hive_store.NotFound("Conversation", "nope")

            @cli.command("fail-os")
            def fail_os() -> None:
                (tmp_path / "missing" / "file").read_text()

            @cli.command("fail-bug")
            def fail_bug() -> None:
                raise ZeroDivisionError("a plugin bug")

    plugins = Plugins()
    assert plugins.register(Commands(), name="commands") == "commands"
    cli = make_cli(plugins)
    runner = CliRunner()
    hive = runner.invoke(cli, ["fail-hive"], env={"HIVE_STORE_DEBUG": None})
    assert hive.exit_code == 1 and hive.stderr == "Error: Conversation 'nope' not found\n"
    oserr = runner.invoke(cli, ["fail-os"], env={"HIVE_STORE_DEBUG": None})
    assert oserr.exit_code == 1 and oserr.stderr.count("\n") == 1
    assert "No such file or directory" in oserr.stderr and "missing" in oserr.stderr
    bug = runner.invoke(cli, ["fail-bug"], env={"HIVE_STORE_DEBUG": None})
    assert bug.exit_code == 3 and bug.stderr.count("\n") == 1  # reported as an internal error
    assert "internal error: ZeroDivisionError: a plugin bug" in bug.stderr
    assert "Traceback" not in bug.output


# -- known bugs (reported; see the module docstring) ----------------------------------------------


@pytest.mark.parametrize("order_by", [5, object(), 1.5])
def test_bug_order_by_of_a_wrong_type(mem_store: hive_store.Store, order_by: Any) -> None:
    with pytest.raises(hive_store.ValidationError):
        mem_store.messages.find(order_by=order_by)


@pytest.mark.parametrize("kw", [{"limit": 2**63}, {"offset": 2**64}])
def test_bug_limit_beyond_64_bits(mem_store: hive_store.Store, kw: dict[str, int]) -> None:
    with pytest.raises(hive_store.ValidationError):
        mem_store.messages.find(**kw)


@pytest.mark.parametrize("how", ["get_many", "add_many", "search"])
def test_bug_non_iterable_arguments(mem_store: hive_store.Store, how: str) -> None:
    calls = {"get_many": lambda: mem_store.users.get_many(5),
             "add_many": lambda: mem_store.users.add_many(None),
             "search": lambda: mem_store.messages.search("x", fields=5)}
    with pytest.raises(hive_store.ValidationError):
        calls[how]()


_STAGES = ["generator", "refiner", "validator", "curator"]


def _stages(**kw: Any) -> list[StageOutput]:
    return [StageOutput(stage=s, model="m", answer="a", **kw) for s in _STAGES]


@pytest.mark.parametrize("case", ["cost", "tokens", "duration", "huge-duration", "naive",
                                  "text-time", "max-time"])
def test_bug_record_consensus_validates_late(mem_store: hive_store.Store, case: str) -> None:
    calls: dict[str, Any] = {
        "cost": lambda: {"stages": _stages(cost="x")},
        "tokens": lambda: {"stages": _stages(tokens_input="x")},
        "duration": lambda: {"stages": _stages(duration_ms="x")},
        "huge-duration": lambda: {"stages": _stages(duration_ms=10**18)},
        "naive": lambda: {"started_at": datetime(2025, 1, 1)},
        "text-time": lambda: {"started_at": "2025-01-01"},
        "max-time": lambda: {"completed_at": datetime.max.replace(tzinfo=UTC)},
    }
    with counts_unchanged(mem_store), pytest.raises(hive_store.ValidationError):
        args = calls[case]()
        mem_store.record_consensus("q", args.pop("stages", _stages()), **args)


def test_bug_infinite_connection_timeout(tmp_path: Path) -> None:
    with pytest.raises(hive_store.ConfigurationError):
        hive_store.open(f"sqlite://{tmp_path / 'x.db'}", connection_timeout=math.inf)


def test_bug_repo_of_an_unhashable(mem_store: hive_store.Store) -> None:
    with pytest.raises(hive_store.ConfigurationError):
        mem_store.repo([])  # type: ignore[arg-type]


def test_bug_error_messages_quote_bounded_excerpts(mem_store: hive_store.Store) -> None:
    huge = "k" * 1_000_000
    for fn in (lambda: mem_store.users.get(huge), lambda: mem_store.users.find(**{huge: 1})):
        with pytest.raises(hive_store.HiveStoreError) as err:
            fn()
        assert len(str(err.value)) < 1000


