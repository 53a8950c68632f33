"""The hive-store command through click's runner: output, JSON, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hive_store.cli import make_cli


def invoke(*args: str, env: dict | None = None):
    result = CliRunner().invoke(make_cli(), list(args), env=env, catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def test_quickstart_records_and_reads_back(tmp_path: Path) -> None:
    db = tmp_path / "hive-ai.db"
    result = invoke("--db", str(db), "quickstart")
    assert result.exit_code == 0, result.output
    assert "recorded consensus run" in result.output
    assert "curator" in result.output and "health: ok" in result.output
    assert db.exists() and oct(db.stat().st_mode & 0o777) == "0o600"
    data = json.loads(invoke("--db", str(db), "--json", "quickstart").output)
    assert data["messages"] == 5 and data["conversations_total"] == 2
    assert data["health"]["status"] == "ok" and data["schema_version"] >= 1
    assert {c["name"] for c in data["health"]["checks"]} >= {"integrity", "pragmas"}


def test_init_status_and_migrate(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    assert invoke("--db", str(db), "init").exit_code == 0
    status = json.loads(invoke("--db", str(db), "--json", "status").output)
    assert status["row_counts"]["conversations"] == 0
    assert status["pragmas"]["journal_mode"] == "wal"
    assert status["pool"]["max_size"] == 10
    human = invoke("--db", str(db), "status").output
    assert "schema version" in human and "conversations" in human
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
    result = invoke("--db", make_db(tmp_path), "status")
    assert result.exit_code == 1
    assert message in result.output
    assert result.output.strip().count("\n") == 0


def test_usage_error_exit_code() -> None:
    assert invoke("no-such-command").exit_code == 2


def test_installed_script_runs(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("hive-store")
    if not exe.exists():
        pytest.fail(f"the hive-store script is not installed next to {sys.executable}")
    proc = subprocess.run([str(exe), "--db", str(tmp_path / "s.db"), "quickstart"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "health: ok" in proc.stdout
    bad = subprocess.run([str(exe), "--db", str(tmp_path), "status"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("Error:")
