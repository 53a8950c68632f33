"""The real local D1 for tests: ``d1/serve.mjs`` (Miniflare + workerd, pinned by
``d1/package-lock.json``) on 127.0.0.1 with a random port, in its own process group.

One server per test process, started on first use and stopped at exit by signalling its
process group (SIGTERM, then SIGKILL): killing node alone would orphan workerd. The server
also stops by itself when this process dies (its stdin, a pipe from us, closes).

When Node is missing the tests that need it are skipped with the reason; when
``d1/node_modules`` is missing they fail in CI (``CI=true``) and are skipped elsewhere, both with
the command that installs it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
D1_DIR = ROOT / "d1"
ACCOUNT = "0123456789abcdef0123456789abcdef"
DATABASE = "00000000-0000-4000-8000-00000000d1d1"
TOKEN = "local-d1-test-token-0123456789"


class LocalD1:
    """A running local D1 (see the module docstring)."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, startup_ms: int) -> None:
        self.proc = proc
        self.url = url.rstrip("/")
        self.startup_ms = startup_ms
        self.http = httpx.Client(base_url=self.url, timeout=30, trust_env=False)
        self.api_url = f"{self.url}/client/v4"

    # test hooks of serve.mjs
    def reset(self) -> None:
        self.http.post("/__fake/reset").raise_for_status()

    def fail(self, *faults: dict[str, Any], clear: bool = False) -> None:
        self.http.post("/__fake/fail", json={"faults": list(faults), "clear": clear}
                       ).raise_for_status()

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = self.http.get("/__fake/stats").json()
        return data

    def query(self, sql: str, params: list[Any] | None = None, *, raw: bool = True) -> Any:
        """One statement straight to the REST API (no faults are consumed: call it when none
        are queued)."""
        body: dict[str, Any] = {"sql": sql}
        if params:
            body["params"] = params
        resp = self.http.post(
            f"/client/v4/accounts/{ACCOUNT}/d1/database/{DATABASE}/{'raw' if raw else 'query'}",
            json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        data = resp.json()
        if not data.get("success"):
            raise AssertionError(f"local D1 refused {sql[:80]!r}: {data.get('errors')}")
        return data["result"][0]["results"]

    def rows(self, sql: str, params: list[Any] | None = None) -> list[list[Any]]:
        rows: list[list[Any]] = self.query(sql, params)["rows"]
        return rows

    def stop(self) -> None:
        self.http.close()
        stop_group(self.proc)


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left of it (also when node
    itself is already gone: workerd may still be running in the group)."""
    pgid = proc.pid  # started with start_new_session=True: it leads its own group
    if not group_alive(pgid):
        with _suppress_lookup():
            proc.wait(timeout=timeout)
        return
    with _suppress_lookup():
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    with _suppress_lookup():  # workerd too, even if node already went
        os.killpg(pgid, signal.SIGKILL)
    with _suppress_lookup():
        proc.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and group_alive(pgid):
        time.sleep(0.05)


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is still there."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        return kind is not None and issubclass(kind, (ProcessLookupError,
                                                      subprocess.TimeoutExpired))


def unavailable_reason() -> tuple[str, str] | None:
    """``("skip" | "fail", reason)`` when the local D1 cannot run here, else ``None``."""
    if shutil.which("node") is None:
        return "skip", ("Node.js is not installed: the real local D1 (Miniflare) tests need "
                        "node >= 18; the fake-D1 tests still ran")
    if not (D1_DIR / "node_modules" / "miniflare").is_dir():
        how = f"d1/node_modules is missing: run `npm ci --prefix {D1_DIR}`"
        ci = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
        return ("fail" if ci else "skip"), how
    return None


_lock = threading.Lock()
_server: LocalD1 | None = None


def start(timeout: float = 60.0, **env: str) -> LocalD1:
    """Start a new local D1 (the caller stops it)."""
    environ = {**os.environ, "PORT": "0", "DATABASE_ID": DATABASE, "API_TOKEN": TOKEN,
               "NODE_NO_WARNINGS": "1", "STOP_ON_STDIN_EOF": "1", **env}
    proc = subprocess.Popen(
        ["node", str(D1_DIR / "serve.mjs")], cwd=D1_DIR, env=environ, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line.startswith(b"{"):
                break
        if proc.poll() is not None:
            break
    if not line.startswith(b"{"):
        err = b""
        stop_group(proc)
        if proc.stderr is not None:
            err = proc.stderr.read() or b""
        raise RuntimeError(f"the local D1 did not start: {err.decode(errors='replace')[-2000:]}")
    info = json.loads(line)
    server = LocalD1(proc, info["ready"], int(info.get("startup_ms", 0)))
    _drain(proc)
    return server


def _drain(proc: subprocess.Popen[bytes]) -> None:
    """Keep reading the server's output so its pipes never fill up."""
    def pump(stream: Any) -> None:
        for _ in iter(stream.readline, b""):
            pass

    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            threading.Thread(target=pump, args=(stream,), daemon=True).start()


def server() -> LocalD1:
    """The process-wide local D1 (skip or fail the test if it cannot run here)."""
    global _server
    reason = unavailable_reason()
    if reason is not None:
        kind, text = reason
        if kind == "skip":
            pytest.skip(text)
        pytest.fail(text, pytrace=False)
    with _lock:
        if _server is None or _server.proc.poll() is not None:
            _server = start()
            atexit.register(_server.stop)
        return _server


@pytest.fixture
def local_d1() -> LocalD1:
    """A clean local D1 (reset before the test)."""
    d1 = server()
    d1.reset()
    return d1


def d1_config(url: str, **kw: Any) -> Any:
    """A mirror configuration for the test account, database and token at ``url``."""
    from hive_store_d1 import D1Config, Secret

    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("backoff_cap", 0.05)
    return D1Config(account_id=ACCOUNT, database_id=DATABASE, token=Secret(TOKEN, "test"),
                    url=url, **kw)


def new_fake(seed: int | None = 0) -> Any:
    """An in-process fake D1 for the test account, database and token."""
    from hive_store_d1.fake import FakeD1

    return FakeD1(account_id=ACCOUNT, database_id=DATABASE, token=TOKEN, seed=seed)
