"""Crash safety through the façade: kill -9 loops against writes and migrations, and readers in
another process never seeing part of a consensus run.

The kill loop follows ``shared/reference/crash_sigkill_loop.py`` (sled / RocksDB "blackbox"
style) with one change to make hundreds of kills cheap: a *fork server* child (spawned with
``subprocess``, running :data:`FORK_SERVER`) imports hive_store and loads the plugins once, then
forks a fresh worker for every kill. The worker opens the store itself (no connection ever
crosses a fork), writes through ``hive_store`` and acknowledges each commit on stdout *after*
it returned; the parent SIGKILLs the worker at a random moment, reopens the database with
``hive_store.open`` (hot-WAL recovery every time) and checks:

* ``PRAGMA integrity_check`` is ok and ``PRAGMA foreign_key_check`` is empty;
* every acknowledged commit is there (no loss on a process crash);
* nothing partial is visible: each ``record_consensus`` run has all its rows (conversation,
  5 messages, knowledge, curator truth, usage record, conversation_usage, activity entry), each
  multi-row transaction has exactly the number of messages its conversation row announces, a
  counter updated in the same transactions agrees with the conversations and deletion markers,
  and a deleted conversation (deleted with all its rows, in one transaction that also writes a
  deletion marker) is gone completely;
* at most one commit per kill is durable but unacknowledged (the kill landed between COMMIT
  and the acknowledgement: callers must retry idempotently).

``bench/soak.py`` runs the same loop for longer (500 kills by default) and prints the numbers;
``HIVE_STORE_CRASH_KILLS`` raises the count of the test here.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import hive_store
from hive_store.entities import Setting
from hive_store.migrations import MigrationSet
from hive_store.plugins import Plugins

KILLS = int(os.environ.get("HIVE_STORE_CRASH_KILLS", "200"))
COUNTER_KEY = "crash:tx_counter"
DELETED_PREFIX = "crash:deleted:"
RC_TABLES = ("knowledge_conversations", "curator_truths", "usage_records", "conversation_usage",
             "activity_log")

# -- the crash migration: one long statement, run by a plugin migration set ----------------------

MIGRATION_ROWS = 120_000
MARK_EVERY = MIGRATION_ROWS // 10
MIGRATION_V1 = ("0001_base.sql",
                "CREATE TABLE crash_big (a INTEGER PRIMARY KEY, pad TEXT NOT NULL);")
MIGRATION_V2 = ("0002_fill.sql", f"""
CREATE TABLE crash_done (n INTEGER NOT NULL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {MIGRATION_ROWS})
INSERT INTO crash_big (a, pad) SELECT x, crash_mark(x) FROM c;
CREATE INDEX crash_big_pad ON crash_big (pad, a);
INSERT INTO crash_done (n) SELECT count(*) FROM crash_big;
""")

FORK_SERVER = r'''
# Fork server of tests/test_crash.py: `GO <seed> <mode> <url>` on stdin forks a worker.
# COUNTER_KEY, DELETED_PREFIX, MARK_EVERY, MIGRATIONS are defined above this line.
import os
import random
import signal
import sys
import time

import hive_store
from hive_store import StageOutput
from hive_store.entities import Conversation, Message, Setting
from hive_store.migrations import MigrationSet
from hive_store.plugins import Plugins, get_plugins

SIZES = (1, 2, 3, 5, 10, 25, 60, 150)
REFERRERS = []  # (repository, field) of every entity with a *conversation_id field


def emit(line):
    os.write(1, (line + "\n").encode())  # one write(2) per line: whole lines or nothing


def crash_mark(x):
    if x % MARK_EVERY == 0:
        emit(f"MARK {x // MARK_EVERY}")
    return "pad"


class CrashMigrations:
    @hive_store.hookimpl
    def hive_store_register_migrations(self):
        return [MigrationSet.from_sql("crashmig", MIGRATIONS)]

    @hive_store.hookimpl
    def hive_store_prepare_connection(self, connection):
        connection.create_function("crash_mark", 1, crash_mark)


def stages(rng):
    return [StageOutput(stage=s, model=f"model-{s}", answer=s * rng.randint(1, 200),
                        tokens_input=rng.randint(0, 999), tokens_output=rng.randint(0, 999),
                        cost=rng.random() / 100, duration_ms=rng.randint(1, 900))
            for s in ("generator", "refiner", "validator", "curator")]


def write(url, seed):
    rng = random.Random(seed)
    store = hive_store.open(url)
    REFERRERS[:] = [(store.repo(cls), name) for cls in store.entities.values()
                    for name in store.codec(cls).columns
                    if name.endswith("conversation_id") and cls.__table__ != "conversations"]
    emit("READY")
    signal.sigwait({signal.SIGUSR1})  # the parent may still be checking: write when told
    deadline = time.monotonic() + 30
    n = 0
    while time.monotonic() < deadline:
        n += 1
        r = rng.random()
        if r < 0.35:
            cid = f"rc-{seed}-{n}"
            emit(f"BEGIN {cid}")
            store.record_consensus(f"question {cid}? " + "q" * rng.randint(0, 1000), stages(rng),
                                   conversation_id=cid)
            emit(f"RC {cid}")
        elif r < 0.82:
            k = rng.choice(SIZES)
            cid = f"tx-{seed}-{n}"
            text = "m" * rng.randint(1, 400)
            emit(f"BEGIN {cid}")
            with store.transaction():
                store.conversations.add(Conversation(id=cid, consensus_improvement=k))
                store.messages.add_many(
                    Message(id=f"{cid}-{i}", conversation_id=cid, role="user", content=text)
                    for i in range(k))
                counter = store.settings.get(COUNTER_KEY)
                store.settings.update(counter, value=str(int(counter.value) + 1))
            emit(f"TX {cid} {k}")
        else:  # delete the oldest conversations with all their rows, and say so
            victims = store.conversations.find(order_by="created_at", limit=rng.randint(1, 6))
            if not victims:
                continue
            emit("BEGIN delete")
            with store.transaction():
                for conv in victims:
                    # every row that refers to it (plugins may derive rows, e.g. topics)
                    for repo, name in REFERRERS:
                        for row in repo.find(**{name: conv.id}):
                            repo.delete(row)
                    store.conversations.delete(conv.id)
                    store.settings.add(Setting(key=DELETED_PREFIX + conv.id, value="1"))
            emit("DEL " + " ".join(c.id for c in victims))
        if rng.random() < 0.03:
            with store.backend.connection() as conn:
                pragma = rng.choice(["wal_checkpoint(PASSIVE)", "incremental_vacuum(50)"])
                conn.execute(f"PRAGMA {pragma}").fetchall()


def migrate(url):
    plugins = Plugins()
    plugins.register(CrashMigrations(), name="crash-migrations")
    emit("OPENING")
    hive_store.open(url, plugins=plugins)
    emit("DONE")
    time.sleep(60)


def create(url):
    emit("OPENING")
    hive_store.open(url)
    emit("DONE")
    time.sleep(60)


def main():
    get_plugins()  # load (import) the plugins once; workers inherit them
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # workers sigwait() for it
    emit("SERVER")
    for line in sys.stdin:
        seed, mode, url = line.split()[1:4]
        pid = os.fork()
        if pid == 0:
            try:
                {"write": lambda: write(url, int(seed)), "migrate": lambda: migrate(url),
                 "create": lambda: create(url)}[mode]()
            except BaseException as exc:
                emit(f"ERR {type(exc).__name__}: {exc}".replace("\n", " "))
                os._exit(1)
            os._exit(0)
        emit(f"PID {pid}")
        _, status = os.waitpid(pid, 0)
        emit(f"DEAD {pid} {status}")


main()
'''


class ForkServer:
    """The child process that forks workers; lines of all of them arrive in one queue."""

    def __init__(self, folder: Path) -> None:
        script = folder / "crash_fork_server.py"
        constants = (f"COUNTER_KEY = {COUNTER_KEY!r}\nDELETED_PREFIX = {DELETED_PREFIX!r}\n"
                     f"MARK_EVERY = {MARK_EVERY!r}\n"
                     f"MIGRATIONS = [{MIGRATION_V1!r}, {MIGRATION_V2!r}]\n")
        script.write_text(constants + FORK_SERVER)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.backlog: list[str] = []  # lines read ahead, to be read again first
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.expect("SERVER", timeout=60)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout: float) -> str:
        if self.backlog:
            return self.backlog.pop(0)
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the fork server said nothing for {timeout} s") from None
        if line is None:
            raise AssertionError(f"the fork server exited (rc={self.proc.poll()})")
        return line

    def expect(self, prefix: str, timeout: float = 30,
               on_line: Callable[[str], None] | None = None) -> str:
        """Read lines (passing each to ``on_line``) until one starts with ``prefix``."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.next_line(max(0.01, deadline - time.monotonic()))
            if line.startswith("ERR "):
                raise AssertionError(f"worker failed: {line}")
            if line.startswith(prefix):
                return line
            if on_line is not None:
                on_line(line)

    def go(self, seed: int, mode: str, url: str) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"GO {seed} {mode} {url}\n")
        self.proc.stdin.flush()
        # The new worker may speak before the server has said its PID: keep those lines.
        early: list[str] = []
        pid = int(self.expect("PID ", on_line=early.append).split()[1])
        self.backlog[:0] = early
        return pid

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def sigkilled(dead_line: str) -> bool:
    status = int(dead_line.split()[2])
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


# -- the write loop -------------------------------------------------------------------------------


@dataclass
class KillStats:
    """What a kill loop did and found."""

    kills: int = 0
    sigkilled: int = 0
    before_ready: int = 0  # killed while opening (during hot-WAL recovery, pool fill …)
    in_transaction: int = 0  # the last thing the worker said was "BEGIN": killed inside a write
    acked_commits: int = 0
    acked_runs: int = 0  # record_consensus
    acked_transactions: int = 0  # multi-row transactions
    acked_deletes: int = 0
    acked_rows: int = 0
    lost: int = 0
    partial: int = 0
    integrity_failures: int = 0
    committed_unacked: int = 0
    max_new_unacked: int = 0
    seconds: float = 0.0
    verify_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        rate = self.kills / self.seconds if self.seconds else 0.0
        return (f"kills={self.kills} (SIGKILLed {self.sigkilled}, while opening "
                f"{self.before_ready}, inside a write {self.in_transaction}) "
                f"acked commits={self.acked_commits} (consensus runs {self.acked_runs}, "
                f"transactions {self.acked_transactions}, deletes {self.acked_deletes}) "
                f"acked rows={self.acked_rows} lost={self.lost} partial={self.partial} "
                f"integrity failures={self.integrity_failures} "
                f"committed-but-unacked={self.committed_unacked} "
                f"(max {self.max_new_unacked} per kill) "
                f"time={self.seconds:.1f}s ({rate:.1f} kills/s, verifying "
                f"{self.verify_seconds:.1f}s)")


class KillLoop:
    """kill -9 a writing worker again and again and check the database after each kill."""

    def __init__(self, folder: Path, *, seed: int = 1, kills_per_server: int = 50,
                 max_delay: float = 0.05, early_kill_rate: float = 0.1) -> None:
        self.folder = folder
        self.path = folder / "crash.db"
        self.url = f"sqlite://{self.path}"
        self.rng = random.Random(seed)
        self.kills_per_server = kills_per_server
        self.max_delay = max_delay
        self.early_kill_rate = early_kill_rate
        self.stats = KillStats()
        self.acked_runs: set[str] = set()
        self.acked_tx: dict[str, int] = {}
        self.acked_deleted: set[str] = set()
        self.known: set[str] = set()  # conversations and deletions seen committed so far
        self._early_next = False
        with hive_store.open(self.url) as store:
            store.settings.upsert(Setting(key=COUNTER_KEY, value="0"))

    def _on_line(self, line: str) -> None:
        kind, _, rest = line.partition(" ")
        s = self.stats
        if kind == "RC":
            self.acked_runs.add(rest)
            s.acked_runs += 1
            s.acked_rows += 11  # conversation + 5 messages + 5 rows in other tables
        elif kind == "TX":
            cid, k = rest.split()
            self.acked_tx[cid] = int(k)
            s.acked_transactions += 1
            s.acked_rows += int(k) + 2
        elif kind == "DEL":
            self.acked_deleted.update(rest.split())
            s.acked_deletes += 1
        else:
            return
        s.acked_commits += 1

    def run(self, kills: int) -> KillStats:
        start = time.perf_counter()
        server: ForkServer | None = None
        ahead: int | None = None
        try:
            for i in range(kills):
                if server is None or i % self.kills_per_server == 0:
                    if server is not None:
                        server.close()
                    server = ForkServer(self.folder)
                last_on_server = (i + 1) % self.kills_per_server == 0 or i + 1 == kills
                ahead = self._one_kill(server, ahead, prefork=not last_on_server)
        finally:
            if server is not None:
                server.close()
            self.stats.seconds += time.perf_counter() - start
        return self.stats

    def _one_kill(self, server: ForkServer, ahead: int | None, *, prefork: bool) -> int | None:
        """Kill a worker (``ahead``: one forked during the last check, opened and waiting)
        and check the database; returns the next worker if it was forked ahead."""
        s = self.stats
        last: list[str] = [""]

        def on_line(line: str) -> None:
            last[0] = line
            self._on_line(line)

        early = ahead is None and self._early_next
        self._early_next = self.rng.random() < self.early_kill_rate  # for the next kill
        if early:
            pid = server.go(self.rng.randrange(1 << 30), "write", self.url)
            time.sleep(self.rng.uniform(0, 0.03))  # while it opens the store
        else:
            pid = ahead if ahead is not None else server.go(self.rng.randrange(1 << 30),
                                                            "write", self.url)
            last[0] = server.expect("READY", on_line=on_line)
            os.kill(pid, signal.SIGUSR1)  # start writing
            time.sleep(self.rng.uniform(0, self.max_delay))
        kill(pid)
        dead = server.expect("DEAD ", on_line=on_line)
        s.kills += 1
        if sigkilled(dead):
            s.sigkilled += 1
        else:
            s.problems.append(f"worker was not killed but ended with {dead}")
        if last[0] == "":
            s.before_ready += 1
        elif last[0].startswith("BEGIN"):
            s.in_transaction += 1
        # The next worker opens the store (recovering the WAL, maybe) while this process
        # checks the database; it writes nothing until it gets SIGUSR1.
        following = None
        if prefork and not self._early_next:
            following = server.go(self.rng.randrange(1 << 30), "write", self.url)
        t0 = time.perf_counter()
        self.verify()
        s.verify_seconds += time.perf_counter() - t0
        return following

    def verify(self) -> None:
        """Reopen through hive_store and check everything (see the module docstring)."""
        s = self.stats
        problems: list[str] = []
        with hive_store.open(self.url, migrate=False) as store:
            integrity = store.backend.check_integrity(full=True)
            if not integrity["ok"]:
                s.integrity_failures += 1
                problems.append(f"integrity: {integrity}")
            counter = int(store.settings.get(COUNTER_KEY).value)
            deleted = {d.key.removeprefix(DELETED_PREFIX) for d in
                       store.settings.find(key__like=DELETED_PREFIX + "%")}
            with store.backend.connection() as conn:
                fk = conn.execute("PRAGMA foreign_key_check").fetchall()
                convs = dict(conn.execute(
                    "SELECT id, consensus_improvement FROM conversations"))
                messages = dict(conn.execute(
                    "SELECT conversation_id, count(*) FROM messages GROUP BY 1"))
                per_table = {t: dict(conn.execute(
                    f"SELECT conversation_id, count(*) FROM {t} GROUP BY 1")) for t in RC_TABLES}
        if fk:
            problems.append(f"foreign_key_check: {fk[:5]}")
        partial: set[str] = set()
        for cid, announced in convs.items():
            if cid.startswith("tx-") and messages.get(cid, 0) != announced:
                partial.add(cid)
                problems.append(f"partial transaction {cid}: {messages.get(cid, 0)} of "
                                f"{announced} messages")
            elif cid.startswith("rc-"):
                counts = [messages.get(cid, 0)] + [per_table[t].get(cid, 0) for t in RC_TABLES]
                if counts != [5, 1, 1, 1, 1, 1]:
                    partial.add(cid)
                    problems.append(f"partial consensus run {cid}: {counts}")
        orphans = {cid for rows in (messages, *per_table.values()) for cid in rows
                   if cid is not None and cid not in convs}
        if orphans:
            partial |= orphans
            problems.append(f"rows of missing conversations: {sorted(orphans)[:5]}")
        both = deleted & set(convs)
        if both:
            problems.append(f"deleted yet present: {sorted(both)[:5]}")
        tx_present = sum(1 for cid in convs if cid.startswith("tx-"))
        tx_deleted = sum(1 for cid in deleted if cid.startswith("tx-"))
        if counter != tx_present + tx_deleted:
            partial.add(COUNTER_KEY)
            problems.append(f"counter {counter} != {tx_present} transactions present + "
                            f"{tx_deleted} deleted")
        lost = [cid for cid in self.acked_runs if cid not in convs and cid not in deleted]
        lost += [cid for cid, k in self.acked_tx.items()
                 if cid not in deleted and convs.get(cid) != k]
        lost += [cid for cid in self.acked_deleted if cid not in deleted]
        if lost:
            problems.append(f"LOST acknowledged commits: {sorted(lost)[:5]}")
        committed = set(convs) | {DELETED_PREFIX + d for d in deleted}
        acked = (self.acked_runs | set(self.acked_tx)
                 | {DELETED_PREFIX + d for d in self.acked_deleted})
        new_unacked = (committed - acked) - self.known
        self.known |= committed - acked
        # one commit can be unacknowledged per kill (between COMMIT and the ack); a delete of
        # several conversations is one commit, so count commits, not rows
        commits = (len([c for c in new_unacked if not c.startswith(DELETED_PREFIX)])
                   + any(c.startswith(DELETED_PREFIX) for c in new_unacked))
        s.committed_unacked += commits
        s.max_new_unacked = max(s.max_new_unacked, commits)
        if commits > 1:
            problems.append(f"{commits} new committed-but-unacked commits: "
                            f"{sorted(new_unacked)}")
        s.lost += len(lost)
        s.partial += len(partial)
        if problems:
            s.problems.append(f"kill {s.kills}: " + "; ".join(problems))


@pytest.mark.slow
def test_kill_9_loop_loses_nothing_acknowledged_and_shows_nothing_partial(
        tmp_path: Path) -> None:
    loop = KillLoop(tmp_path, seed=20261126)
    stats = loop.run(KILLS)
    print(stats.summary())
    assert stats.problems == []
    assert stats.kills == KILLS and stats.sigkilled == KILLS
    assert stats.lost == 0 and stats.partial == 0 and stats.integrity_failures == 0
    assert stats.max_new_unacked <= 1
    # the loop exercised what it claims to: kills inside writes and while opening, and work
    assert stats.in_transaction >= KILLS // 10
    assert stats.before_ready >= 1
    assert stats.acked_runs > 0 and stats.acked_transactions > 0 and stats.acked_deletes > 0


# -- kills during migrations -----------------------------------------------------------------------


def _crash_plugins(*files: tuple[str, str]) -> Plugins:
    """The crash migration set (and its SQL function) for this process."""

    class CrashMigrations:
        @hive_store.hookimpl
        def hive_store_register_migrations(self) -> list[MigrationSet]:
            return [MigrationSet.from_sql("crashmig", list(files))]

        @hive_store.hookimpl
        def hive_store_prepare_connection(self, connection: Any) -> None:
            connection.create_function("crash_mark", 1, lambda x: "pad")

    plugins = Plugins()
    plugins.register(CrashMigrations(), name="crash-migrations")
    return plugins


def _migration_state(url: str) -> str:
    """``"old"`` or ``"new"`` when the record and the tables agree on one; fails otherwise."""
    plugins = _crash_plugins(MIGRATION_V1, MIGRATION_V2)
    with hive_store.open(url, plugins=plugins, migrate=False) as store:
        assert store.backend.check_integrity(full=True)["ok"]
        migrator = plugins.migrator(store.backend)
        assert migrator is not None
        versions = sorted(a.version for a in migrator.applied() if a.namespace == "crashmig")
        with store.backend.connection() as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            rows = conn.execute("SELECT count(*) FROM crash_big").fetchone()[0]
            done = (conn.execute("SELECT n FROM crash_done").fetchall()
                    if "crash_done" in names else None)
    if versions == [1]:
        assert rows == 0 and done is None and "crash_big_pad" not in names, (
            f"record says version 1 but crash_big has {rows} rows, crash_done={done}")
        return "old"
    assert versions == [1, 2], f"crashmig versions {versions}"
    assert rows == MIGRATION_ROWS and done == [(MIGRATION_ROWS,)] and "crash_big_pad" in names, (
        f"record says version 2 but crash_big has {rows} rows, crash_done={done}")
    return "new"


def _reset(template: Path, path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copy(template, path)


@pytest.mark.slow
def test_kill_9_during_a_migration_leaves_the_old_or_the_new_version(tmp_path: Path) -> None:
    template = tmp_path / "v1.db"
    hive_store.open(f"sqlite://{template}", plugins=_crash_plugins(MIGRATION_V1)).close()
    path = tmp_path / "migrating.db"
    url = f"sqlite://{path}"
    _reset(template, path)
    rng = random.Random(7)
    server = ForkServer(tmp_path)
    outcomes: Counter[str] = Counter()
    try:
        # calibrate: how long the migration takes here when nothing interrupts it
        pid = server.go(0, "migrate", url)
        server.expect("OPENING")
        t0 = time.perf_counter()
        server.expect("DONE", timeout=120)
        duration = time.perf_counter() - t0
        kill(pid)
        server.expect("DEAD ")
        assert _migration_state(url) == "new"
        _reset(template, path)
        for i in range(12):
            pid = server.go(rng.randrange(1 << 30), "migrate", url)
            server.expect("OPENING")
            if i % 3 != 2:  # in the middle of the long statement, at a known point
                server.expect(f"MARK {rng.randint(1, 9)}", timeout=120)
                how = "mid-statement"
            else:  # at any moment, until a while after the commit
                time.sleep(rng.uniform(0, duration * 1.6))
                how = "random"
            kill(pid)
            dead = server.expect("DEAD ", timeout=60)
            assert sigkilled(dead), dead
            state = _migration_state(url)
            outcomes[f"{how}:{state}"] += 1
            if how == "mid-statement":
                assert state == "old", "killed inside the migration yet it was applied"
            if state == "new":
                _reset(template, path)
    finally:
        server.close()
    print(f"migration {duration:.2f}s, outcomes after kill: {dict(outcomes)}")
    # and the interrupted migration completes on the next open
    with hive_store.open(url, plugins=_crash_plugins(MIGRATION_V1, MIGRATION_V2)):
        pass
    assert _migration_state(url) == "new"


@pytest.mark.slow
def test_kill_9_while_creating_a_new_database(tmp_path: Path) -> None:
    """Killed while ``open`` creates and migrates a new file: afterwards the file has the whole
    core schema or none of it, and opening it again finishes the job."""
    reference = tmp_path / "reference.db"
    hive_store.open(f"sqlite://{reference}").close()
    with hive_store.open(f"sqlite://{reference}", migrate=False) as store:
        with store.backend.connection() as conn:
            full = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        latest = store.schema_version()
    rng = random.Random(11)
    server = ForkServer(tmp_path)
    seen: Counter[str] = Counter()
    try:
        # calibrate: how long creating a database takes here
        pid = server.go(0, "create", f"sqlite://{tmp_path / 'calibrate.db'}")
        server.expect("OPENING")
        t0 = time.perf_counter()
        server.expect("DONE")
        duration = time.perf_counter() - t0
        kill(pid)
        server.expect("DEAD ")
        for i in range(8):
            path = tmp_path / f"new-{i}.db"
            pid = server.go(i, "create", f"sqlite://{path}")
            server.expect("OPENING")
            time.sleep(rng.uniform(0, duration * 1.5))
            kill(pid)
            server.expect("DEAD ", timeout=60)
            if not path.exists():
                seen["no file"] += 1
                continue
            with hive_store.open(f"sqlite://{path}", migrate=False) as store:
                assert store.backend.check_integrity(full=True)["ok"]
                with store.backend.connection() as conn:
                    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
                version = store.schema_version()
            if names == full:
                assert version == latest
                seen["complete"] += 1
            else:
                assert not names - {"hive_store_migrations"}, (
                    f"partial schema after a kill: {len(names)} of {len(full)} objects")
                assert version == 0
                seen["empty"] += 1
            with hive_store.open(f"sqlite://{path}") as store:
                assert store.schema_version() == latest
                assert store.backend.check_integrity(full=True)["ok"]
    finally:
        server.close()
    print(f"creating takes {duration:.2f}s; after a kill while creating: {dict(seen)}")


# -- readers in other processes -------------------------------------------------------------------

RC_WRITER = r"""
import sys, time
import hive_store
from hive_store import StageOutput
url, name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
stages = [StageOutput(stage=s, model="m", answer=s * 50, tokens_input=3, tokens_output=4,
                      cost=0.001) for s in ("generator", "refiner", "validator", "curator")]
n = 0
with hive_store.open(url) as store:
    print("READY", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        n += 1
        store.record_consensus(f"{name} question {n}", stages, conversation_id=f"{name}-{n}")
print(f"WROTE {n}", flush=True)
"""


def test_readers_never_see_part_of_a_consensus_run_written_by_other_processes(
        tmp_path: Path) -> None:
    """Two writer processes record consensus runs for ~1.5 s while this process reads through
    the façade: every conversation a reader can see already has all the rows of its run (a
    conversation is visible only together with its messages, knowledge, truth, usage and
    activity rows), and nobody gets a lock error."""
    url = f"sqlite://{tmp_path / 'shared.db'}"
    hive_store.open(url).close()
    script = tmp_path / "rc_writer.py"
    script.write_text(RC_WRITER)
    writers = [subprocess.Popen([sys.executable, str(script), url, f"w{n}", "1.5"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for n in range(2)]
    partial: list[str] = []
    checked = 0
    try:
        for w in writers:
            assert w.stdout is not None and w.stdout.readline().strip() == "READY"
        with hive_store.open(url) as store:
            while any(w.poll() is None for w in writers):
                for conv in store.conversations.find(order_by="-created_at", limit=10):
                    counts = (store.messages.count(conversation_id=conv.id),
                              store.knowledge_conversations.count(conversation_id=conv.id),
                              store.curator_truths.count(conversation_id=conv.id),
                              store.usage_records.count(conversation_id=conv.id),
                              store.conversation_usage.count(conversation_id=conv.id),
                              store.activity_log.count(conversation_id=conv.id))
                    checked += 1
                    if counts != (5, 1, 1, 1, 1, 1):
                        partial.append(f"{conv.id}: {counts}")
            total = store.conversations.count()
    finally:
        outputs = [w.communicate(timeout=60) for w in writers]
    errors = [err for _, err in outputs if err.strip()]
    assert errors == []
    wrote = sum(int(out.split()[-1]) for out, _ in outputs)
    assert partial == []
    assert wrote == total and wrote > 20 and checked > 20
