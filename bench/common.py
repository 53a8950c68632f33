"""What the benchmark scripts share: settings, data, timing, fairness checks and reporting.

Not a script: ``run.py``, ``peers.py`` and ``scale.py`` import it (they run as
``python bench/NAME.py``, so this folder is on ``sys.path``).

The fairness checks fail loudly: :func:`fail` prints why and exits with status 3, so a run
whose sides used different PRAGMAs or SQL never produces numbers.
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import random
import re
import shutil
import sqlite3
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import hive_store
from hive_store._converters import format_timestamp
from hive_store.entities import Message
from hive_store.hookspecs import hookimpl
from hive_store.plugins import get_plugins

# -- settings shared by every side ----------------------------------------------------------------

BUSY_TIMEOUT_S = 30.0
# The per-connection PRAGMAs of the raw side (and of every peer): the values hive-store
# applies, passed to hive_store.open explicitly (STORE_OPTIONS), so a change of hive-store's
# defaults cannot skew the comparison. check_same() reads them back from every side.
PRAGMA_VALUES: dict[str, Any] = {
    "busy_timeout": int(BUSY_TIMEOUT_S * 1000),
    "journal_mode": "WAL",
    "synchronous": "NORMAL",
    "foreign_keys": "ON",
    "cache_size": -32000,
    "mmap_size": 268435456,
    "temp_store": "MEMORY",
    "wal_autocheckpoint": 1000,
}
RAW_PRAGMAS = tuple(f"PRAGMA {k} = {v}" for k, v in PRAGMA_VALUES.items())
STORE_OPTIONS: dict[str, Any] = {
    "busy_timeout": BUSY_TIMEOUT_S,
    "durability": "normal",
    "cache_size_kib": 32000,
    "mmap_size": 268435456,
    "wal_autocheckpoint": 1000,
}
CHECKED_PRAGMAS = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "cache_size",
                   "mmap_size", "temp_store", "wal_autocheckpoint", "auto_vacuum")


def q(name: str) -> str:
    """An identifier quoted the way hive-store's repository quotes it, so that the raw SQL
    below is the same text as hive-store's (checked by tracing both sides)."""
    return '"' + name.replace('"', '""') + '"'


MSG_COLS = ("id", "conversation_id", "role", "content", "stage", "model_used", "timestamp")
MSG_COLUMNS = ", ".join(q(c) for c in MSG_COLS)
MSG_TABLE = q("messages")
_MSG_VALUES = f"({', '.join('?' for _ in MSG_COLS)})"
SQL_INSERT_MSG = f"INSERT INTO {MSG_TABLE} ({MSG_COLUMNS}) VALUES {_MSG_VALUES}"
BATCH_ROWS = 100  # rows per multi-row INSERT, as hive-store's add_many (999 // 7 > 100)
SQL_INSERT_MSG_BATCH = (f"INSERT INTO {MSG_TABLE} ({MSG_COLUMNS}) VALUES "
                        + ", ".join([_MSG_VALUES] * BATCH_ROWS))
SQL_GET_MSG = f"SELECT {MSG_COLUMNS} FROM {MSG_TABLE} WHERE {q('id')} = ?"
SQL_FIND_MSG = (f"SELECT {MSG_COLUMNS} FROM {MSG_TABLE} WHERE {q('conversation_id')} = ? "
                "ORDER BY rowid")
SQL_ITER_MSG = f"SELECT {MSG_COLUMNS} FROM {MSG_TABLE} ORDER BY rowid"
SQL_INSERT_CONV = "INSERT INTO conversations (id, created_at, updated_at) VALUES (?, ?, ?)"

STAGES = ("generator", "refiner", "validator", "curator")
MODELS = ("openai/gpt-4o", "anthropic/claude-3.5-sonnet", "google/gemini-1.5-pro",
          "meta/llama-3.1-70b")
MSGS_PER_CONVERSATION = 100
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)

CORE_PLUGINS = ("sqlite", "migrate")


def use_plugins(mode: str, keep: Sequence[str] = ()) -> None:
    """``core``: disable every ``hive_store`` entry point but :data:`CORE_PLUGINS` and ``keep``
    (call before the first ``hive_store.open``); ``default``: leave the environment as it is."""
    if mode != "core":
        return
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="hive_store")}
    os.environ["HIVE_STORE_DISABLE_PLUGINS"] = ",".join(
        sorted(names - set(CORE_PLUGINS) - set(keep)))
    os.environ["HIVE_STORE_LOAD_PLUGINS"] = ""


def fail(message: str) -> NoReturn:
    """Stop the run: the comparison would be meaningless (exit status 3)."""
    print(f"\nFAIRNESS CHECK FAILED: {message}\nNo numbers were reported.", file=sys.stderr)
    sys.exit(3)


# -- measurements ---------------------------------------------------------------------------------


@dataclass
class Measured:
    """What one run of one side produced: ``work`` units in ``seconds`` of wall time (rate =
    work/seconds) and ``cpu`` seconds of this process's CPU time (all threads)."""

    work: float
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)
    cpu: float = float("nan")

    @property
    def rate(self) -> float:
        return self.work / self.seconds if self.seconds > 0 else float("nan")

    @property
    def cpu_rate(self) -> float:
        return self.work / self.cpu if self.cpu > 0 else float("nan")


@dataclass
class Trial:
    """One prepared run: ``run`` does (and times) the work, ``cleanup`` closes what it opened."""

    run: Callable[[], Measured]
    cleanup: Callable[[], None] = lambda: None


Prepare = Callable[[], Trial]


def timed(fn: Callable[[], object], work: float) -> Measured:
    cpu = time.process_time()
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    return Measured(work, elapsed, cpu=time.process_time() - cpu)


def steps(*fns: Callable[[], object]) -> Callable[[], None]:
    """A cleanup that runs each step in order."""

    def run() -> None:
        for fn in fns:
            fn()

    return run


def peak_kib(trial: Trial) -> float:
    """Peak traced Python memory of one run (setup and cleanup outside the traced region)."""
    gc.collect()
    tracemalloc.start()
    try:
        trial.run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        trial.cleanup()
    return peak / 1024


def rnd(x: float) -> float:
    return float(f"{x:.4g}")


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of per-round values (what every table shows)."""
    return {"median": rnd(statistics.median(values)), "min": rnd(min(values)),
            "max": rnd(max(values))}


def fmt(x: float) -> str:
    if x != x:
        return "nan"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


# -- databases ------------------------------------------------------------------------------------


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def raw_connect(path: Path | str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           timeout=BUSY_TIMEOUT_S)
    for pragma in RAW_PRAGMAS:
        conn.execute(pragma).fetchall()
    TRACE.attach(conn)
    return conn


def open_store(path: Path) -> hive_store.Store:
    return hive_store.open(url(path), **STORE_OPTIONS)


def pragmas(conn: sqlite3.Connection) -> dict[str, Any]:
    return {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in CHECKED_PRAGMAS}


def check_same(what: str, sides: dict[str, Any]) -> Any:
    """Every side must report the same value (PRAGMAs read back, row digests): else fail."""
    values = list(sides.values())
    if any(v != values[0] for v in values[1:]):
        lines = "\n".join(f"  {name}: {value}" for name, value in sides.items())
        fail(f"{what} differ between the sides:\n{lines}")
    return values[0]


class Workspace:
    """Database files under one folder; every file starts as a copy of a template that
    ``hive_store.open`` created (canonical schema, indexes, seed rows, WAL, auto_vacuum)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.template = root / "template.db"
        self._n = 0
        hive_store.open(url(self.template), **STORE_OPTIONS).close()
        conn = raw_connect(self.template)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()

    def fresh(self, name: str, source: Path | None = None) -> Path:
        """A new file copied from ``source`` (default: the template); nothing has it open."""
        self._n += 1
        path = self.root / f"{name}-{self._n}.db"
        shutil.copyfile(source or self.template, path)
        return path

    def remove(self, path: Path) -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(f"{path}{suffix}")


def insert_batched(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Raw bulk insert in hive-store's shape: 100-row ``INSERT … VALUES (…), (…)`` statements
    and ``executemany`` for the remainder (what ``add_many`` runs; checked by tracing)."""
    n = BATCH_ROWS
    if len(rows) < n:
        conn.executemany(SQL_INSERT_MSG, rows)
        return
    full = len(rows) - len(rows) % n
    execute = conn.execute
    for start in range(0, full, n):
        values: list[Any] = []
        for row in rows[start:start + n]:
            values += row
        execute(SQL_INSERT_MSG_BATCH, values)
    if full < len(rows):
        conn.executemany(SQL_INSERT_MSG, rows[full:])


# -- data -----------------------------------------------------------------------------------------


class Data:
    """Rows for every side: deterministic text and timestamps, fresh UUIDv7 ids (each set of
    rows is built once and given to all sides)."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        alphabet = "abcdefghijklmnopqrstuvwxyz      ABCDEFGHIJ.,0123456789\n"
        self.blob = "".join(self.rng.choice(alphabet) for _ in range(8192))

    def text(self, lo: int = 50, hi: int = 800) -> str:
        n = self.rng.randint(lo, hi)
        start = self.rng.randrange(len(self.blob) - n)
        return self.blob[start:start + n]

    def conversation_rows(self, n: int) -> list[tuple[str, str, str]]:
        stamp = format_timestamp(BASE_TIME)
        return [(hive_store.uuid7(), stamp, stamp) for _ in range(n)]

    def message_rows(self, n: int, conv_ids: Sequence[str], start: int = 0
                     ) -> Iterator[tuple[Any, ...]]:
        """Rows in the column order of ``messages`` (the TEXT timestamps hive-store writes)."""
        for i in range(start, start + n):
            yield (hive_store.uuid7(), conv_ids[i % len(conv_ids)],
                   "user" if i % 5 == 0 else "assistant", self.text(), STAGES[i % 4],
                   MODELS[i % 4], format_timestamp(BASE_TIME + timedelta(milliseconds=i)))


def to_message(row: tuple[Any, ...]) -> Message:
    """The entity of a raw message row (same id, text and instant)."""
    mid, cid, role, content, stage, model, stamp = row
    return Message(id=mid, conversation_id=cid, role=role, content=content, stage=stage,
                   model_used=model, timestamp=datetime.fromisoformat(stamp))


@dataclass
class MessageSet:
    conv_rows: list[tuple[str, str, str]]
    rows: list[tuple[Any, ...]]
    entities: list[Message]

    @property
    def conv_ids(self) -> list[str]:
        return [r[0] for r in self.conv_rows]


def message_set(data: Data, n: int, n_conv: int | None = None) -> MessageSet:
    conv_rows = data.conversation_rows(n_conv or max(1, n // MSGS_PER_CONVERSATION))
    rows = list(data.message_rows(n, [r[0] for r in conv_rows]))
    return MessageSet(conv_rows, rows, [to_message(r) for r in rows])


def seed(path: Path, conv_rows: Sequence[tuple[str, str, str]],
         rows: Iterable[tuple[Any, ...]] = ()) -> None:
    """Conversations (and optionally messages) written raw, then checkpointed: the same
    starting state for every side, not timed."""
    conn = raw_connect(path)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(SQL_INSERT_CONV, conv_rows)
    conn.executemany(SQL_INSERT_MSG, rows)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def rows_digest(conn: sqlite3.Connection, where: str = "") -> tuple[int, str]:
    """Row count and a digest of every stored message (values and their SQLite types), in id
    order: equal digests mean identical rows."""
    import hashlib

    h = hashlib.sha256()
    n = 0
    cols = ", ".join(f"{c}, typeof({c})" for c in MSG_COLUMNS.split(", "))
    for row in conn.execute(f"SELECT {cols} FROM {MSG_TABLE} {where} ORDER BY {q('id')}"):
        h.update(repr(row).encode())
        n += 1
    return n, h.hexdigest()[:16]


# -- SQL traces: which statements each side ran ---------------------------------------------------

_LITERAL = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b|\bNULL\b|X'[0-9A-F]*'")


def shape(sql: str) -> str:
    """A traced (expanded) statement with its bound values put back as ``?``."""
    return _LITERAL.sub("?", sql)


class StatementLog:
    """``sqlite3`` trace callbacks on every connection opened while :meth:`tracing` is active
    (raw connections through :func:`raw_connect`, hive-store's through its
    ``hive_store_prepare_connection`` hook); statements are kept only while ``recording``."""

    def __init__(self) -> None:
        self.installing = False
        self.recording = False
        self.statements: list[str] = []
        self.conns: list[sqlite3.Connection] = []

    def _callback(self, sql: str) -> None:
        if self.recording:
            self.statements.append(sql)

    def attach(self, conn: sqlite3.Connection) -> None:
        if self.installing:
            conn.set_trace_callback(self._callback)
            self.conns.append(conn)

    @hookimpl
    def hive_store_prepare_connection(self, connection: Any, backend: Any) -> None:
        if isinstance(connection, sqlite3.Connection):
            self.attach(connection)

    @contextlib.contextmanager
    def tracing(self) -> Iterator[None]:
        plugins = get_plugins()
        self.installing = True
        name = plugins.register(self, name="bench-trace")
        try:
            yield
        finally:
            self.installing = self.recording = False
            if name:
                plugins.unregister(name)

    def record(self, trial: Trial) -> tuple[Counter[str], list[dict[str, Any]]]:
        """Run ``trial`` once (untimed): the statement shapes it ran, and the PRAGMAs of every
        connection opened since :meth:`tracing` began that is still open after the run."""
        self.statements = []
        self.recording = True
        found: list[dict[str, Any]] = []
        try:
            trial.run()
            self.recording = False
            for conn in self.conns:
                with contextlib.suppress(sqlite3.ProgrammingError):  # closed already
                    found.append(pragmas(conn))
        finally:
            self.recording = False
            self.conns = []
            trial.cleanup()
        return Counter(shape(s) for s in self.statements), found


TRACE = StatementLog()


def compare_shapes(what: str, sides: dict[str, Counter[str]], *, counts: bool = True) -> None:
    """Fail unless every side ran the same statements (``counts``: as many times each; else
    the same set, for runs bounded by time)."""
    names = list(sides)
    first = sides[names[0]]
    for name in names[1:]:
        other = sides[name]
        same = other == first if counts else set(other) == set(first)
        if not same:
            lines = []
            for stmt in sorted(set(first) | set(other)):
                a, b = first.get(stmt, 0), other.get(stmt, 0)
                if (a != b) if counts else (bool(a) != bool(b)):
                    lines.append(f"  {names[0]} {a:>7} x / {name} {b:>7} x  {stmt[:160]}")
            fail(f"{what}: the sides ran different SQL ({names[0]} vs {name}):\n"
                 + "\n".join(lines[:20]))


def shapes_summary(counter: Counter[str], per: float) -> dict[str, float]:
    """Statements per unit of work, by shape (short text), for reports."""
    return {s[:90]: rnd(c / per) for s, c in counter.most_common(6)}


# -- the machine ----------------------------------------------------------------------------------


def versions(*dists: str) -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for dist in dists:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def machine(**more: Any) -> dict[str, Any]:
    plugins = sorted(p.name for p in get_plugins().info())
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "sqlite_version": sqlite3.sqlite_version,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hive_store": hive_store.__version__,
        "versions": versions("sqlite-utils", "SQLAlchemy", "peewee", "attrs", "cattrs"),
        "plugins": plugins,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        **more,
    }


def warn_if_loaded() -> tuple[float, float, float]:
    load = os.getloadavg()
    if load[0] > 0.5 * (os.cpu_count() or 1):
        print(f"note: load average {load[0]:.1f} on {os.cpu_count()} CPUs: other work is "
              "running; wall-time ratios will be noisy (see the cpu column)", file=sys.stderr)
    return load
