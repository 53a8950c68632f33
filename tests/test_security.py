"""Secrets never leave the database: license keys, API keys and conversation tokens stored in
``users``, ``licenses``, ``configurations``, ``conversation_usage`` and ``pending_sync`` rows,
and a D1 token in the environment, never appear in log records (at DEBUG), exception messages
and tracebacks, reprs, or the output of the command line.

(Injection payloads as filter values, field names and ``order_by`` are covered by
``test_repository.py`` and fuzzed by ``test_fuzz.py``.)
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner

import hive_store
from hive_store import Change
from hive_store.cli import make_cli
from hive_store.entities import (
    Configuration,
    Conversation,
    ConversationUsage,
    License,
    PendingSync,
    User,
)
from hive_store.plugins import Plugins
from hive_store.url import parse_url

LICENSE_KEY = "HIVE-LIC-7f3a9c2e-SECRET-d41d8cd98f00"
USER_LICENSE_KEY = "HIVE-LIC-0b1e5a77-SECRET-99aa00ff1234"
API_KEY = "sk-or-v1-5ecre7-0penrouter-key-c0ffee"
CONVERSATION_TOKEN = "conv-tok-5ecre7-a1b2c3d4e5f6"
D1_TOKEN = "d1-api-token-5ecre7-Zx9Yw8Vu7Ts6"
SECRETS = (LICENSE_KEY, USER_LICENSE_KEY, API_KEY, CONVERSATION_TOKEN, D1_TOKEN)
# Where a D1 plugin may read its token from; all of them are set.
TOKEN_VARIABLES = ("CLOUDFLARE_API_TOKEN", "HIVE_D1_API_TOKEN", "HIVE_STORE_D1_TOKEN",
                   "D1_API_TOKEN")


def assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        # the whole secret, and its distinctive middle (in case of truncation or quoting)
        for needle in (secret, secret[8:-6]):
            assert needle not in text, f"a secret appears in {where}: ...{needle}..."


def exception_text(exc: BaseException) -> str:
    """Everything an exception shows: message, repr, args and the formatted traceback with
    its chained causes (what logging, pytest or an error reporter prints)."""
    parts = [str(exc), repr(exc), *map(repr, exc.args)]
    parts += traceback.format_exception(exc)
    return "\n".join(parts)


def hidden_context(exc: BaseException) -> str:
    """The exceptions ``raise ... from None`` hides from tracebacks but keeps reachable in
    ``__context__`` (debuggers and some error reporters walk them anyway)."""
    parts = []
    seen = exc.__context__
    while seen is not None:
        parts += [str(seen), repr(seen), *map(repr, seen.args)]
        seen = seen.__context__
    return "\n".join(parts)


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TOKEN_VARIABLES:
        monkeypatch.setenv(name, D1_TOKEN)


@pytest.fixture
def secret_store(store: hive_store.Store, token_env: None) -> hive_store.Store:
    """The conftest ``store`` with a secret in every secret column."""
    with store.transaction():
        store.users.add(User(id="u1", email="ada@example.com", license_key=USER_LICENSE_KEY))
        store.licenses.add(License(key=LICENSE_KEY, tier="pro", daily_limit=100, user_id="u1",
                                   email="ada@example.com", validated_at=datetime.now(UTC)))
        store.configurations.add(Configuration(key="openrouter_api_key", value=API_KEY,
                                               encrypted=False, user_id="u1"))
        store.conversations.add(Conversation(id="c1", user_id="u1"))
        store.conversation_usage.add(ConversationUsage(
            conversation_id="c1", user_id="u1", license_key=USER_LICENSE_KEY,
            conversation_token=CONVERSATION_TOKEN))
        store.pending_sync.add(PendingSync(conversation_id="c1", user_id="u1", question_hash="h",
                                           conversation_token=CONVERSATION_TOKEN))
    return store


class Spy:
    """Logs every change at DEBUG and keeps them (what a careless plugin would do)."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.log = logging.getLogger("hive_store.test_spy")

    @hive_store.hookimpl
    def hive_store_after_commit(self, changes: Sequence[Change]) -> None:
        self.changes.extend(changes)
        self.log.debug("committed %r", list(changes))
        for change in changes:
            self.log.debug("change %s of %s: %s", change.op, change.table, change.entity)


@pytest.fixture
def spied(db_path: Path, token_env: None) -> Iterator[tuple[hive_store.Store, Spy]]:
    spy = Spy()
    plugins = Plugins()
    plugins.ensure_loaded()
    plugins.register(spy, name="spy")
    with hive_store.open(f"sqlite://{db_path}", plugins=plugins) as s:
        yield s, spy


def test_reprs_hide_every_secret(secret_store: hive_store.Store) -> None:
    s = secret_store
    rows: list[Any] = [
        *s.users.find(), *s.licenses.find(), *s.configurations.find(),
        *s.conversation_usage.find(), *s.pending_sync.find(),
        s.licenses.find_one(key=LICENSE_KEY), s.users.get("u1"),
        s.configurations.get("openrouter_api_key"),
    ]
    assert len(rows) == 8 and all(r is not None for r in rows)
    for row in rows:
        assert_clean(repr(row), f"repr({type(row).__name__})")
        assert_clean(str(row), f"str({type(row).__name__})")
    # the secrets are really there: only their display is hidden
    assert rows[6].license_key == USER_LICENSE_KEY
    assert s.licenses.find_one(key=LICENSE_KEY).key == LICENSE_KEY  # type: ignore[union-attr]
    for thing in (s, s.licenses, s.configurations, s.backend, s.url):
        assert_clean(repr(thing), f"repr({type(thing).__name__})")


def test_changes_and_logs_at_debug_hide_secrets(spied: tuple[hive_store.Store, Spy],
                                                caplog: pytest.LogCaptureFixture) -> None:
    s, spy = spied
    caplog.set_level(logging.DEBUG)  # every logger, hive_store's and the spy's
    with s.transaction():
        s.users.add(User(id="u1", license_key=USER_LICENSE_KEY))
        lic = s.licenses.add(License(key=LICENSE_KEY, tier="pro", daily_limit=5, user_id="u1",
                                     validated_at=datetime.now(UTC)))
        s.configurations.upsert(Configuration(key="openrouter_api_key", value=API_KEY))
    s.licenses.update(lic.id, tier="team")
    s.licenses.update(lic, daily_limit=9)
    s.configurations.delete("openrouter_api_key")
    run = s.record_consensus("what is WAL?", [
        hive_store.StageOutput(stage=st, model="m", answer="a")
        for st in ("generator", "refiner", "validator", "curator")], user_id="u1")
    s.conversation_usage.update(run.conversation_usage.id, license_key=USER_LICENSE_KEY,
                                conversation_token=CONVERSATION_TOKEN)
    assert_clean(repr(run), "repr(ConsensusRun)")
    assert len(spy.changes) >= 8
    for change in spy.changes:
        assert_clean(repr(change), "repr(Change)")
    assert caplog.records, "the spy logged nothing"
    assert_clean(caplog.text, "the log at DEBUG")
    assert_clean("\n".join(repr(r.args) for r in caplog.records), "log record arguments")


def test_errors_about_secret_rows_do_not_echo_the_secrets(
        secret_store: hive_store.Store, caplog: pytest.LogCaptureFixture) -> None:
    s = secret_store
    caplog.set_level(logging.DEBUG)
    now = datetime.now(UTC)
    lic = s.licenses.find_one(key=LICENSE_KEY)
    assert lic is not None
    failures: list[tuple[type[Exception], Any]] = [
        # the same license key again: UNIQUE(licenses.key)
        (hive_store.Conflict, lambda: s.licenses.add(License(
            key=LICENSE_KEY, tier="pro", daily_limit=1, user_id="u1", validated_at=now))),
        (hive_store.Conflict, lambda: s.licenses.add_many([License(
            key=LICENSE_KEY, tier="pro", daily_limit=1, user_id="u1", validated_at=now)])),
        (hive_store.Conflict, lambda: s.licenses.add(lic)),  # the same row again
        (hive_store.Conflict, lambda: s.licenses.upsert(attrs.evolve(lic, id=None))),
        (hive_store.Conflict, lambda: s.configurations.add(
            Configuration(key="openrouter_api_key", value=API_KEY))),
        (hive_store.Conflict, lambda: s.conversation_usage.add(ConversationUsage(
            conversation_id="c1", license_key=USER_LICENSE_KEY,
            conversation_token=CONVERSATION_TOKEN))),
        # a bad field next to a secret
        (hive_store.ValidationError, lambda: s.licenses.add(License(
            key=LICENSE_KEY, tier="pro", daily_limit="lots", user_id="u1",  # type: ignore[arg-type]
            validated_at=now))),
        (hive_store.ValidationError, lambda: s.licenses.update(
            lic.id, key=LICENSE_KEY, daily_limit="lots")),
        (hive_store.ValidationError, lambda: s.configurations.add(Configuration(
            key="k", value=API_KEY, encrypted="yes"))),  # type: ignore[arg-type]
        (hive_store.ValidationError, lambda: s.users.add(User(
            license_key=USER_LICENSE_KEY, created_at=datetime(2025, 1, 1)))),  # naive
        # the secret itself is malformed
        (hive_store.ValidationError, lambda: s.licenses.add(License(
            key=LICENSE_KEY + "\ud800", tier="pro", daily_limit=1, user_id="u1",
            validated_at=now))),
        (hive_store.ValidationError, lambda: s.configurations.add(Configuration(
            key="k2", value=[API_KEY]))),  # type: ignore[arg-type]
        (hive_store.ValidationError, lambda: s.codec(License).structure(
            {"key": LICENSE_KEY, "tier": "pro", "daily_limit": "x", "user_id": "u1",
             "validated_at": now, "nosuch": 1})),
        # a missing parent for a row holding secrets
        (hive_store.IntegrityError, lambda: s.conversation_usage.add(ConversationUsage(
            conversation_id="no-such-conversation", license_key=USER_LICENSE_KEY,
            conversation_token=CONVERSATION_TOKEN))),
        (hive_store.IntegrityError, lambda: s.configurations.add(Configuration(
            key="k3", value=API_KEY, user_id="nobody"))),
        # filters on the secret columns
        (hive_store.ValidationError, lambda: s.licenses.find(key__in=LICENSE_KEY)),
        (hive_store.ValidationError, lambda: s.licenses.find(key__isnull=LICENSE_KEY)),
        (hive_store.ValidationError, lambda: s.licenses.find(key__like=[LICENSE_KEY])),
        (hive_store.ValidationError, lambda: s.users.find(license_key=[USER_LICENSE_KEY])),
    ]
    seen = 0
    for expected, fn in failures:
        with pytest.raises(expected) as err:
            fn()
        assert_clean(exception_text(err.value), f"{type(err.value).__name__}: {err.value}")
        seen += 1
    # a failed transaction carrying secrets
    with pytest.raises(hive_store.Conflict) as err, s.transaction():
        s.users.add(User(id="u2", license_key=USER_LICENSE_KEY))
        s.configurations.add(Configuration(key="openrouter_api_key", value=API_KEY))
    assert_clean(exception_text(err.value), "a failed transaction")
    assert s.users.count() == 1 and seen == len(failures)
    assert_clean(caplog.text, "the log at DEBUG")


def test_status_health_and_describe_hide_secrets(secret_store: hive_store.Store) -> None:
    s = secret_store
    assert_clean(json.dumps(s.status(), default=str), "Store.status()")
    assert_clean(repr(s.health()), "Store.health()")
    assert_clean(json.dumps(s.backend.describe(), default=str), "backend.describe()")


@pytest.mark.parametrize("args", [
    ["--json", "status"], ["status"], ["--json", "quickstart"], ["quickstart"],
    ["--json", "plugins", "--all"], ["plugins", "--all"], ["--json", "migrate", "--list"],
    ["migrate", "--verify"], ["init"],
])
def test_cli_output_hides_secrets(secret_store: hive_store.Store, args: list[str]) -> None:
    db = str(secret_store.backend.path)  # type: ignore[attr-defined]
    env = {name: D1_TOKEN for name in TOKEN_VARIABLES}
    result = CliRunner().invoke(make_cli(Plugins()), ["--db", db, *args], env=env)
    assert result.exit_code in (0, 1), result.output
    assert_clean(result.output, f"hive-store {' '.join(args)}")


def test_cli_errors_hide_secrets(tmp_path: Path, token_env: None) -> None:
    runner = CliRunner()
    (tmp_path / "junk.db").write_text(f"{API_KEY} is not a database " * 200)
    for args in (["--db", str(tmp_path / "junk.db"), "status"],
                 ["--db", str(tmp_path), "status"],
                 ["--db", f"nosuch://{tmp_path}/x.db", "status"]):
        result = runner.invoke(make_cli(Plugins()), args)
        assert result.exit_code == 1
        assert_clean(result.output, f"hive-store {' '.join(args)}")


def test_credentials_in_a_url_are_never_echoed(tmp_path: Path) -> None:
    url = f"sqlite://ada:{D1_TOKEN}@example.com/x.db"
    assert_clean(repr(parse_url(url)), "repr(StoreURL)")
    with pytest.raises(hive_store.ConfigurationError) as err:
        hive_store.open(url)
    assert_clean(exception_text(err.value), "the error for a URL with a password")
    result = CliRunner().invoke(make_cli(Plugins()), ["--db", url, "status"])
    assert result.exit_code == 1
    assert_clean(result.output, "hive-store --db <url with a password> status")


def test_rejected_secret_is_not_kept_in_the_hidden_exception_context(
        mem_store: hive_store.Store) -> None:
    with pytest.raises(hive_store.ValidationError) as err:
        mem_store.licenses.add(License(key=LICENSE_KEY + "\ud800", tier="pro", daily_limit=1,
                                       user_id="u1", validated_at=datetime.now(UTC)))
    assert_clean(exception_text(err.value), "the ValidationError")  # visible: clean
    assert_clean(hidden_context(err.value), "the ValidationError's hidden __context__")
