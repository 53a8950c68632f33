"""The hive-store command: quickstart's own database, the version story, markup never eaten,
one-line errors, exit codes. (Every documented command and option: test_cli_grammar.py.)"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import hive_store
from hive_store import Stage, StageOutput
from hive_store.cli import make_cli
from hive_store.entities import Conversation
from hive_store.health import HealthResult
from hive_store.plugins import Plugins
from tests.conftest import legacy_fixture


def invoke(*args: str, env: dict | None = None, plugins: Plugins | None = None):
    result = CliRunner(env=env).invoke(make_cli(plugins), list(args), catch_exceptions=False,
                                       prog_name="hive-store")
    if "--all" not in args:  # `plugins --all` shows the failures' tracebacks, on purpose
        assert "Traceback" not in result.output
    return result


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- quickstart ------------------------------------------------------------------------------


def test_quickstart_end_to_end_never_touches_the_hive_history(tmp_path: Path) -> None:
    """A new user with Hive installed: the installed script, HOME with a real history."""
    exe = Path(sys.executable).with_name("hive-store")
    if not exe.exists():
        pytest.fail(f"the hive-store script is not installed next to {sys.executable}")
    home = tmp_path / "home"
    (home / ".hive").mkdir(parents=True)
    history = home / ".hive" / "hive-ai.db"
    shutil.copy(legacy_fixture("hive-ai-v10.db"), history)
    os.chmod(history, 0o600)  # private, as it should be (a 0644 one gets a warning line too)
    before = sha(history)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_STORE_")}
    env.update(HOME=str(home), HIVE_STORE_LOAD_PLUGINS="")

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120,
                              env={**env, **extra}, cwd=tmp_path)

    first = run("quickstart")
    assert first.returncode == 0, first.stderr
    demo = home / ".hive" / "hive-store-demo.db"
    assert f"wrote to {demo}" in first.stdout and "its own demo database" in first.stdout
    for step in ("recorded a consensus run", "read back", "memory: ", "health: ok"):
        assert step in first.stdout, step
    assert first.stderr == ""
    again = json.loads(run("quickstart", "--json").stdout)  # the demo database is its own
    assert again["demo"] and again["path"] == str(demo)
    assert again["conversations_total"] == again["quickstart_conversations"] == 2
    assert again["health"]["status"] == "ok"

    # Pointed at the history: refused before anything is opened for writing.
    for args, extra in ((["--db", str(history), "quickstart"], {}),
                        (["quickstart", "--json"], {"HIVE_STORE_DB": str(history)})):
        refused = run(*args, **extra)
        assert refused.returncode == 1 and refused.stdout == ""
        assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("Error: ")
        assert "holds 60 conversation(s) quickstart did not write" in refused.stderr
        assert "--allow-existing" in refused.stderr and str(demo) in refused.stderr
    assert sha(history) == before
    assert sorted(p.name for p in history.parent.iterdir()
                  if p.name.startswith("hive-ai")) == ["hive-ai.db"]  # no -wal, no backup

    bad = run("--db", str(tmp_path), "status")  # a user error: one line, exit 1
    assert bad.returncode == 1 and bad.stderr.startswith("Error:") and "Traceback" not in (
        bad.stderr)


def test_quickstart_on_a_named_database(tmp_path: Path) -> None:
    db = tmp_path / "new.db"  # in an existing folder: a missing one is an error
    data = json.loads(invoke("--db", str(db), "--json", "quickstart").output)
    assert not data["demo"] and data["path"] == str(db)
    assert data["messages"] == 5 and data["conversations_total"] == 1
    assert data["health"]["status"] == "ok" and data["schema_versions"]["hive_store"] >= 1
    assert {c["name"] for c in data["health"]["checks"]} >= {"integrity", "pragmas"}
    assert data["curator_answer"].startswith("WAL gives") and data["memory_hits"] >= 1
    assert oct(db.stat().st_mode & 0o777) == "0o600"
    human = invoke("quickstart", "--db", str(db)).output
    assert "named by --db or $HIVE_STORE_DB" in human and "2 recorded by quickstart" in human

    # An empty database someone created is fine; one with a conversation of its own is not.
    empty = tmp_path / "empty.db"
    assert invoke("--db", str(empty), "init").exit_code == 0
    assert invoke("--db", str(empty), "quickstart").exit_code == 0
    with hive_store.open(f"sqlite://{db}") as store:
        store.conversations.add(Conversation())
    refused = invoke("--db", str(db), "quickstart")
    assert refused.exit_code == 1 and "holds 1 conversation(s)" in refused.output
    allowed = json.loads(invoke("--db", str(db), "quickstart", "--allow-existing",
                                "--json").output)
    assert allowed["conversations_total"] == 4 and allowed["quickstart_conversations"] == 3


def test_quickstart_allow_existing_adopts_a_legacy_history(tmp_path: Path) -> None:
    db = tmp_path / "hive-ai.db"
    shutil.copy(legacy_fixture("hive-ai-v10.db"), db)
    result = invoke("--db", str(db), "--json", "quickstart", "--allow-existing")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["conversations_total"] == 61 and data["quickstart_conversations"] == 1
    assert list(tmp_path.glob("hive-ai.db.pre-hive-store-*.bak"))  # adoption's backup


# -- the version story -----------------------------------------------------------------------


def test_one_version_story(tmp_path: Path) -> None:
    package = importlib.metadata.version("hive-store")
    assert hive_store.__version__ == package
    out = invoke("--version").output
    assert out.startswith(f"hive-store {package} (the package;") and "migrate --list" in out

    db = tmp_path / "new.db"
    core = json.loads(invoke("--db", str(db), "--json", "init").output)["schema_version"]
    hive = "Hive's own record: version 13 (schema_migrations, what the old Hive apps read)"
    line = f"schema versions: hive_store {core} (the Hive schema), hive_store_d1 1"
    for command in (["init"], ["status"], ["migrate", "--list"], ["quickstart"]):
        output = invoke("--db", str(db), *command).output
        assert line in output and hive in output, (command, output)
    status = json.loads(invoke("--db", str(db), "--json", "status").output)
    assert status["package_version"] == package and status["hive_schema_version"] == 13
    assert status["schema_version"] == status["schema_versions"]["hive_store"] == core
    assert status["schema_versions"]["hive_store_memory"] >= 1
    assert f"hive-store {package}; schema versions" in invoke("--db", str(db), "status").output

    legacy = tmp_path / "legacy.db"
    shutil.copy(legacy_fixture("hive-ai-v10.db"), legacy)
    listing = invoke("--db", str(legacy), "migrate", "--list").output
    assert listing.startswith("schema versions: none applied; Hive's own record: version 10")
    assert "legacy Hive database (Hive schema version 10)" in listing
    assert invoke("--db", str(legacy), "migrate").exit_code == 0
    data = json.loads(invoke("--db", str(legacy), "--json", "migrate", "--list").output)
    assert data["hive_schema_version"] == 13 and data["schema_versions"]["hive_store"] == core


# -- markup from data is printed as it is --------------------------------------------------


HOSTILE = "[bold]B[/bold] [/] [link=https://e.x]L[/link]"


class Hostile:
    """A plugin whose health check and failure carry markup."""

    @hive_store.hookimpl
    def hive_store_register_health_checks(self) -> list:
        def check(store: hive_store.Store) -> HealthResult:
            return HealthResult(name="[bold]hostile[/]", status="warn", message=f"m/[x] {HOSTILE}")

        return [check]

    @hive_store.hookimpl
    def hive_store_register_commands(self, cli: object) -> None:
        raise RuntimeError(f"broken {HOSTILE}")


def test_markup_in_data_and_hints_is_printed_as_is(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "dir [bold]x[/] [link=e.x]y[/link]"  # "/" makes sub-folders: fine
    folder.mkdir(parents=True)
    db = folder / "h.db"
    with hive_store.open(str(db)) as store:
        store.record_consensus(f"What is [bold]wal[/]? {HOSTILE}", [
            StageOutput(stage=s, model="m/[x]", answer=f"wal {s.value} {HOSTILE}")
            for s in Stage], topic_summary=HOSTILE)
    plugins = Plugins()
    plugins.register(Hostile(), name="hostile")
    expect = {
        ("init",): [str(db)],
        ("status",): [str(db)],
        ("quickstart", "--allow-existing"): [str(db), f"m/[x] {HOSTILE}"],
        ("health",): ["[bold]hostile[/]", f"m/[x] {HOSTILE}"],
        ("stats",): [str(db), "m/[x]"],
        ("memory", "search", "wal"): ["[bold]B[/bold]", "[/]", "[link=https://e.x]"],
        ("memory", "context", "tell me more about wal"): ["What is [bold]wal[/]?"],
        ("memory", "themes"): [],
        ("memory", "status"): [],
        ("plugins", "--all"): [f"broken {HOSTILE}"],
    }
    for command, literal in expect.items():
        result = invoke("--db", str(db), *command, plugins=plugins,
                        env={"COLUMNS": "500"})  # tables keep a message on one line
        assert result.exit_code == (1 if command == ("health",) else 0), (command, result.output)
        for text in literal:
            assert text in result.output, (command, text, result.output)
    # A hint with brackets: the D1 plugin without httpx.
    for name, value in (("ACCOUNT_ID", "0123456789abcdef0123456789abcdef"),
                        ("DATABASE_ID", "01234567-89ab-4cde-8f01-23456789abcd"), ("TOKEN", "t")):
        monkeypatch.setenv(f"HIVE_STORE_D1_{name}", value)
    monkeypatch.setitem(sys.modules, "httpx", None)
    d1 = invoke("--db", str(db), "d1", "status")
    assert d1.exit_code == 0 and "pip install 'hive-store[d1]'" in d1.output, d1.output


# -- errors and the rest -------------------------------------------------------------------------


def test_init_status_and_migrate(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    assert invoke("--db", str(db), "init").exit_code == 0
    status = json.loads(invoke("--db", str(db), "--json", "status").output)
    assert status["row_counts"]["conversations"] == 0
    assert status["pragmas"]["journal_mode"] == "wal"
    assert status["pool"]["max_size"] == 10
    human = invoke("--db", str(db), "status").output
    assert "schema versions" in human and "conversations" in human
    listing = json.loads(invoke("--db", str(db), "--json", "migrate", "--list").output)
    assert listing["pending"] == [] and listing["applied"][0]["namespace"] == "hive_store"
    assert "up to date" in invoke("--db", str(db), "migrate").output


def test_db_from_environment(tmp_path: Path) -> None:
    db = tmp_path / "env.db"
    result = invoke("init", env={"HIVE_STORE_DB": str(db)})
    assert result.exit_code == 0 and db.exists()


def test_plugins_listing() -> None:
    data = json.loads(invoke("--json", "plugins", "--all").output)
    names = {p["name"] for p in data["loaded"]}
    assert {"sqlite", "migrate", "hive_store.core"} <= names
    assert "sqlite" in invoke("plugins").output


@pytest.mark.parametrize("make_db, message", [
    (lambda p: str(p), "is a directory"),
    (lambda p: "nosuch:///x.db", "no installed backend handles 'nosuch'"),
    (lambda p: "sqlite://host/x.db", "not a host"),
    (lambda p: (p / "junk.db").write_bytes(os.urandom(8192)) and str(p / "junk.db"),
     "damaged or not SQLite"),
])
def test_user_errors_are_one_line(tmp_path: Path, make_db, message: str) -> None:
    for args in (("--db", make_db(tmp_path), "status"), ("status", "--db", make_db(tmp_path))):
        result = invoke(*args)
        assert result.exit_code == 1
        assert message in result.output
        assert result.output.strip().count("\n") == 0


def test_usage_errors_exit_2() -> None:
    assert invoke("no-such-command").exit_code == 2
    assert invoke("status", "--no-such-option").exit_code == 2
    assert invoke("memory", "search").exit_code == 2  # TEXT missing
