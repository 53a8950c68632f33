"""A throwaway PostgreSQL server for tests and benchmarks (not used by the backend itself).

:class:`TemporaryServer` finds the server programs, makes a new cluster in a temporary folder
and runs it on a Unix socket in that folder (no TCP port), as an unprivileged user when the
caller is root (PostgreSQL refuses to run as root). The server dies with the process that
started it:

* :meth:`TemporaryServer.stop` (also from ``atexit``) shuts it down and removes the folder;
* if that process is killed (``kill -9``, a crashed test runner), a small watcher process
  started with the server (the *reaper*, in a session of its own, so Ctrl-C in a terminal
  does not reach it) sees its parent gone within a fraction of a second, shuts the server
  down and removes the folder;
* :func:`reap_orphans`, run by every new :class:`TemporaryServer`, stops servers and removes
  folders that dead processes left behind all the same (a reaper killed too).

Where the programs come from, in order: ``$HIVE_STORE_PG_BINDIR``; ``pg_config --bindir``;
``/usr/lib/postgresql/<version>/bin`` (Debian, Ubuntu; the newest); ``initdb`` on ``PATH``.
:func:`find_bindir` returns ``None`` when there are none; :func:`install_server` installs the
OS package (``apt-get install -y postgresql``) when run as root on a Debian-like system.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

PREFIX = "hive-store-pg-"
"""Name prefix of the temporary folders (under the system's temporary directory)."""

_OWNER_FILE = "owner.pid"
_DEFAULT_SETTINGS = {
    # A test server: nothing it holds must survive a crash of the machine.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "64MB",
    "max_locks_per_transaction": "256",
}


class ServerUnavailable(RuntimeError):
    """No PostgreSQL server programs here and none could be installed (one line: what to do)."""


def _has_server(bindir: Path) -> bool:
    return (bindir / "initdb").is_file() and (bindir / "postgres").is_file()


def find_bindir() -> Path | None:
    """The folder of ``initdb`` and ``postgres`` (see the module docstring), or ``None``."""
    env = os.environ.get("HIVE_STORE_PG_BINDIR")
    if env:
        return Path(env) if _has_server(Path(env)) else None
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.strip()
            if out:
                candidates.append(Path(out))

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version,
                                           reverse=True)]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    return next((c for c in candidates if _has_server(c)), None)


def install_server() -> Path | None:
    """Install the OS package ``postgresql`` with apt-get (root only); the new bindir or
    ``None`` when this system cannot (not root, no apt-get, or the install failed)."""
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in ([apt, "install", "-y", "--no-install-recommends", "postgresql"],
                 [apt, "update"],
                 [apt, "install", "-y", "--no-install-recommends", "postgresql"]):
        result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        if result.returncode == 0 and args[1] == "install":
            break
    return find_bindir()


def unavailable_message() -> str:
    return ("PostgreSQL server programs not found: install them (Debian/Ubuntu: "
            "`apt-get install postgresql`; macOS: `brew install postgresql@15`) or set "
            "HIVE_STORE_PG_BINDIR to the folder holding initdb and postgres")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        first = path.read_text().split("\n", 1)[0].strip()
        return int(first)
    except (OSError, ValueError):
        return None


def reap_orphans(base: Path | None = None) -> list[Path]:
    """Stop the servers and remove the folders of earlier runs whose owner process is gone;
    returns the folders removed."""
    root = base or Path(tempfile.gettempdir())
    removed = []
    for folder in root.glob(f"{PREFIX}*"):
        owner = _read_pid(folder / _OWNER_FILE)
        if owner is not None and _alive(owner):
            continue
        postmaster = _read_pid(folder / "data" / "postmaster.pid")
        if postmaster is not None and _alive(postmaster):
            with contextlib.suppress(OSError):
                os.kill(postmaster, signal.SIGQUIT)  # immediate shutdown: it is an orphan
            deadline = time.monotonic() + 10
            while _alive(postmaster) and time.monotonic() < deadline:
                time.sleep(0.05)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


_REAPER = r"""
import os, shutil, signal, sys, time
owner, postmaster, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
while os.getppid() == owner and alive(postmaster):
    time.sleep(0.2)
if alive(postmaster):
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGQUIT, 5), (signal.SIGKILL, 5)):
        try:
            os.kill(postmaster, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while alive(postmaster) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not alive(postmaster):
            break
if os.getppid() != owner:
    shutil.rmtree(folder, ignore_errors=True)
"""


class TemporaryServer:
    """A new PostgreSQL cluster on a Unix socket in a temporary folder (see the module
    docstring). ``with TemporaryServer() as server: server.url("postgres")``."""

    def __init__(self, bindir: Path | None = None, *, settings: dict[str, str] | None = None,
                 user: str = "nobody") -> None:
        found = bindir or find_bindir()
        if found is None:
            raise ServerUnavailable(unavailable_message())
        self.bindir = found
        self.settings = {**_DEFAULT_SETTINGS, **(settings or {})}
        self.run_as: str | None = user if os.geteuid() == 0 else None
        self.folder: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.reaper: subprocess.Popen[bytes] | None = None
        self.port = 5432

    # -- paths and URLs -------------------------------------------------------------------------

    @property
    def socket_dir(self) -> Path:
        assert self.folder is not None, "the server is not started"
        return self.folder

    def url(self, database: str = "postgres", **params: str) -> str:
        """A ``postgresql://`` URL of a database on this server (over the Unix socket)."""
        query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in
                         {"host": str(self.socket_dir), "port": str(self.port),
                          "user": "postgres", **params}.items())
        return f"postgresql:///{quote(database, safe='')}?{query}"

    def conninfo(self, database: str = "postgres") -> str:
        """The libpq connection string of a database on this server."""
        return (f"host={self.socket_dir} port={self.port} user=postgres "
                f"dbname={database}")

    # -- lifecycle ------------------------------------------------------------------------------

    def _popen_kw(self) -> dict[str, Any]:
        if self.run_as is None:
            return {}
        entry = pwd.getpwnam(self.run_as)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def start(self, timeout: float = 60.0) -> TemporaryServer:
        reap_orphans()
        folder = Path(tempfile.mkdtemp(prefix=PREFIX))
        self.folder = folder
        (folder / _OWNER_FILE).write_text(f"{os.getpid()}\n")
        data = folder / "data"
        data.mkdir()
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            folder.chmod(0o755)  # traversable by the server's user; the socket lives here
            os.chown(folder, entry.pw_uid, entry.pw_gid)
            os.chown(data, entry.pw_uid, entry.pw_gid)
        data.chmod(0o700)
        try:
            subprocess.run(
                [str(self.bindir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres",
                 "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"],
                capture_output=True, check=True, timeout=timeout, cwd=folder, **self._popen_kw())
        except subprocess.CalledProcessError as exc:
            self.stop()
            detail = exc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise ServerUnavailable(f"initdb failed: {detail[0]}") from None
        args = [str(self.bindir / "postgres"), "-D", str(data), "-k", str(folder),
                "-p", str(self.port), "-c", "listen_addresses="]
        for key, value in self.settings.items():
            args += ["-c", f"{key}={value}"]
        log = (folder / "server.log").open("wb")
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            os.chown(folder / "server.log", entry.pw_uid, entry.pw_gid)
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True,
            **self._popen_kw())
        log.close()
        self.reaper = subprocess.Popen(
            [sys.executable, "-c", _REAPER, str(os.getpid()), str(self.process.pid),
             str(folder)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise ServerUnavailable(f"the PostgreSQL server exited at start: {tail}")
            try:
                psycopg.connect(self.conninfo(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    tail = self.log_tail()
                    self.stop()
                    raise ServerUnavailable(
                        f"the PostgreSQL server did not accept connections: {tail}") from None
                time.sleep(0.05)

    def log_tail(self, lines: int = 3) -> str:
        if self.folder is None:
            return ""
        try:
            text = (self.folder / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        """Shut the server down (fast shutdown) and remove its folder; idempotent."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(OSError):
                process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        reaper, self.reaper = self.reaper, None
        if reaper is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                reaper.wait(5)  # it ends once the server is gone
        folder, self.folder = self.folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def __enter__(self) -> TemporaryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- administration -------------------------------------------------------------------------

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run one statement in autocommit mode (``CREATE DATABASE`` …) as the superuser."""
        import psycopg

        with psycopg.connect(self.conninfo(database), autocommit=True) as conn:
            conn.execute(sql.encode())  # no parameters: our own statements only
