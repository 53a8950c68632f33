"""D1 mirror configuration: environment, token file, config file, and the token never shown."""

from __future__ import annotations

import copy
import json
import logging
import pickle
from pathlib import Path
from typing import Any

import hive_store_d1
import pytest
from click.testing import CliRunner
from hive_store_d1 import D1Config, Secret
from hive_store_d1.fake import Fault

import hive_store
from hive_store.cli import make_cli
from hive_store.plugins import Plugins
from tests import d1_server

TOKEN = "sup3r-s3cret-t0ken-value"
ENV = ("ACCOUNT_ID", "DATABASE_ID", "TOKEN", "TOKEN_FILE", "CONFIG", "URL", "TABLES", "PULL",
       "DEVICE_ID", "ROWS_PER_REQUEST")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(f"HIVE_STORE_D1_{name}", raising=False)


def test_nothing_configured_means_none() -> None:
    assert D1Config.from_env({}) is None


def test_three_settings_are_enough() -> None:
    cfg = D1Config.from_env({"HIVE_STORE_D1_ACCOUNT_ID": "a" * 32,
                             "HIVE_STORE_D1_DATABASE_ID": "3f2b8c1e-0000-4000-8000-123456789abc",
                             "HIVE_STORE_D1_TOKEN": f"  {TOKEN}\n"})
    assert cfg is not None
    assert cfg.url == "https://api.cloudflare.com/client/v4" and cfg.pull is False
    assert cfg.token.reveal() == TOKEN and cfg.token.source == "HIVE_STORE_D1_TOKEN"
    assert cfg.endpoint == f"/accounts/{'a' * 32}/d1/database/3f2b8c1e-0000-4000-8000-123456789abc"
    assert TOKEN not in repr(cfg) and TOKEN not in json.dumps(cfg.describe())


def test_a_half_configuration_names_what_is_missing() -> None:
    with pytest.raises(hive_store.ConfigurationError,
                       match=r"missing HIVE_STORE_D1_DATABASE_ID, HIVE_STORE_D1_TOKEN\[_FILE\]"):
        D1Config.from_env({"HIVE_STORE_D1_ACCOUNT_ID": "acct"})


def test_token_file_and_config_file(tmp_path: Path) -> None:
    secret = tmp_path / "secrets" / "d1-token"
    secret.parent.mkdir()
    secret.write_text(TOKEN + "\n")
    conf = tmp_path / "d1.toml"
    conf.write_text('[d1]\naccount_id = "acct"\ndatabase_id = "db-1"\n'
                    'token_file = "secrets/d1-token"\npull = true\n'
                    'tables = ["users", "conversations", "messages"]\nrows_per_request = 500\n')
    cfg = D1Config.from_env({"HIVE_STORE_D1_CONFIG": str(conf)})
    assert cfg is not None and cfg.token.reveal() == TOKEN and cfg.pull
    assert cfg.tables == ("users", "conversations", "messages") and cfg.rows_per_request == 500
    # the environment wins over the file
    cfg = D1Config.from_env({"HIVE_STORE_D1_CONFIG": str(conf), "HIVE_STORE_D1_PULL": "0",
                             "HIVE_STORE_D1_TOKEN_FILE": str(secret),
                             "HIVE_STORE_D1_TABLES": "users, conversations"})
    assert cfg is not None and not cfg.pull and cfg.tables == ("users", "conversations")
    assert cfg.token.source == "HIVE_STORE_D1_TOKEN_FILE"


@pytest.mark.parametrize(("text", "message"), [
    ('account_id = "a"\ndatabase_id = "b"\ntoken = "inline"\n', "holds a token"),
    ('account_id = "a"\ndatabase_id = "b"\nshard = 3\n', "unknown settings shard"),
    ("account_id = [\n", "not valid TOML"),
])
def test_bad_config_files(tmp_path: Path, text: str, message: str) -> None:
    conf = tmp_path / "d1.toml"
    conf.write_text(text)
    with pytest.raises(hive_store.ConfigurationError, match=message) as info:
        D1Config.from_env({"HIVE_STORE_D1_CONFIG": str(conf)})
    assert "inline" not in str(info.value)


def test_a_missing_token_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(hive_store.ConfigurationError, match="cannot read the D1 token file"):
        D1Config.from_env({"HIVE_STORE_D1_ACCOUNT_ID": "a", "HIVE_STORE_D1_DATABASE_ID": "b",
                           "HIVE_STORE_D1_TOKEN_FILE": str(tmp_path / "nope")})


@pytest.mark.parametrize(("kw", "message"), [
    ({"url": "http://d1.example.org/client/v4"}, "plain http is only allowed"),
    ({"url": "ftp://127.0.0.1/x"}, "http"),
    ({"account_id": "a/../b"}, "account_id"),
    ({"database_id": ""}, "database_id"),
    ({"token": Secret("has space")}, "whitespace"),
    ({"device_id": "no spaces please"}, "device_id"),
    ({"rows_per_request": 0}, "rows_per_request"),
])
def test_invalid_settings(kw: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"account_id": "acct", "database_id": "db", "token": Secret(TOKEN)}
    values.update(kw)
    with pytest.raises(hive_store.ConfigurationError, match=message) as info:
        D1Config(**values)
    assert TOKEN not in str(info.value)


def test_a_secret_does_not_show_itself() -> None:
    s = Secret(TOKEN, "HIVE_STORE_D1_TOKEN")
    for text in (repr(s), str(s), f"{s}", f"{s!r}", "%s" % (s,),  # noqa: UP031
                 "{}".format(s),  # noqa: UP032
                 repr([s]), repr({"t": s})):
        assert TOKEN not in text and "****" in text
    with pytest.raises(TypeError):
        pickle.dumps(s)
    with pytest.raises(TypeError):
        copy.deepcopy(s)
    assert s == Secret(TOKEN) and s != Secret("other") and bool(s)
    assert s.reveal() == TOKEN


def test_the_token_is_never_logged_or_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                             _migrated_template: Path) -> None:
    import shutil

    path = tmp_path / "x.db"
    shutil.copy(_migrated_template, path)
    fake = d1_server.new_fake()
    fake.token = TOKEN
    config = D1Config(account_id=d1_server.ACCOUNT, database_id=d1_server.DATABASE,
                      token=Secret(TOKEN), url=fake.url(), backoff_base=0.001,
                      backoff_cap=0.002, max_attempts=4)
    caplog.set_level(logging.DEBUG)  # httpx, httpcore and ours, everything
    errors: list[str] = []
    with hive_store.open(f"sqlite://{path}") as store:
        mirror = hive_store_d1.enable(store, config, transport=fake.transport)
        store.conversations.add(hive_store.entities.Conversation())
        fake.inject(Fault("status", 429, retry_after=0), Fault("drop", when="after"),
                    Fault("status", 502))
        mirror.push()
        store.conversations.add(hive_store.entities.Conversation())
        fake.chaos(1.0, [(Fault("status", 503), 1)])
        with pytest.raises(hive_store_d1.D1Unavailable) as unavailable:
            mirror.push()
        fake.chaos(0.0)
        fake.token = "rotated"
        with pytest.raises(hive_store_d1.D1AuthError) as refused:
            mirror.push()
        for exc in (unavailable.value, refused.value):
            errors += [str(exc), repr(exc), repr(exc.__cause__), repr(exc.__context__)]
        errors += [repr(mirror), repr(mirror.client), json.dumps(mirror.status(), default=str),
                   repr(mirror.__dict__), repr(vars(mirror.client))]
    assert "HTTP Request" in caplog.text or "retry" in caplog.text  # logging did happen
    for text in [caplog.text, *errors]:
        assert TOKEN not in text


def test_store_opened_reads_the_environment(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_STORE_D1_ACCOUNT_ID", "acct")
    monkeypatch.setenv("HIVE_STORE_D1_DATABASE_ID", "db")
    monkeypatch.setenv("HIVE_STORE_D1_TOKEN", TOKEN)
    monkeypatch.setenv("HIVE_STORE_D1_URL", "http://127.0.0.1:9/client/v4")
    with hive_store.open(f"sqlite://{tmp_path / 'e.db'}") as store:
        mirror = hive_store_d1.mirror_of(store)
        store.settings.add(hive_store.entities.Setting(key="k", value="v"))
        assert mirror.status()["outbox"]["rows"] == 1
        assert mirror.status()["token"] == "set (from HIVE_STORE_D1_TOKEN)"
    with hive_store.open(f"sqlite://{tmp_path / 'e.db'}") as store:  # another process
        assert hive_store_d1.mirror_of(store).device_id == mirror.device_id


def test_a_half_configuration_leaves_the_store_usable(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("HIVE_STORE_D1_ACCOUNT_ID", "acct")
    monkeypatch.setenv("HIVE_STORE_D1_TOKEN", TOKEN)
    with hive_store.open(f"sqlite://{tmp_path / 'h.db'}") as store:
        store.settings.add(hive_store.entities.Setting(key="k", value="v"))
        with pytest.raises(hive_store.ConfigurationError, match="half configured"):
            hive_store_d1.mirror_of(store)
        check = next(h for h in store.health() if h.name == "d1_mirror")
        assert check.status == "warn" and "DATABASE_ID" in check.message
    assert "half configured" in caplog.text and TOKEN not in caplog.text


def test_cli_status_when_not_configured(tmp_path: Path) -> None:
    runner = CliRunner()
    cli = make_cli(Plugins().ensure_loaded())
    result = runner.invoke(cli, ["--db", str(tmp_path / "s.db"), "d1", "status"])
    assert result.exit_code == 0 and "not configured" in result.output
    result = runner.invoke(cli, ["--db", str(tmp_path / "s.db"), "d1", "status", "--json"])
    assert json.loads(result.output)["configured"] is False
    result = runner.invoke(cli, ["--db", str(tmp_path / "s.db"), "d1", "push"])
    assert result.exit_code == 1 and "not configured" in result.output
    assert "Traceback" not in result.output


def test_cli_status_shows_the_setup_but_not_the_token(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    monkeypatch.setenv("HIVE_STORE_D1_ACCOUNT_ID", "acct")
    monkeypatch.setenv("HIVE_STORE_D1_DATABASE_ID", "db")
    monkeypatch.setenv("HIVE_STORE_D1_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("HIVE_STORE_D1_URL", "http://127.0.0.1:9/client/v4")
    runner = CliRunner()
    cli = make_cli(Plugins().ensure_loaded())
    for args in (["d1", "status"], ["--json", "d1", "status"]):
        result = runner.invoke(cli, ["--db", str(tmp_path / "s.db"), *args])
        assert result.exit_code == 0, result.output
        assert TOKEN not in result.output and "HIVE_STORE_D1_TOKEN_FILE" in result.output
    data = json.loads(result.output)
    assert data["configured"] and data["database_id"] == "db" and data["outbox"]["rows"] == 0
