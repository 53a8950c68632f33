"""hive-store against raw ``sqlite3``: the performance suite of issue 7.

    python bench/run.py [--quick] [--json out.json] [--only SCENARIO[,SCENARIO…]]
                        [--repeats N] [--tmpdir DIR] [--no-memory] [--plugins core|default]

Every scenario runs the raw stdlib ``sqlite3`` reference and hive-store alternately (ABAB…
with the order flipped every repeat), on fresh database files made from one template that
``hive_store.open`` created, so both sides have the canonical Hive schema, its indexes and the
same per-connection PRAGMAs (checked by reading them back from both). Only the operation
itself is timed; opening, seeding and building inputs are not.

Each scenario reports the median of both sides in its unit (always a rate: higher is better),
the median of the per-repeat ratios hive-store ÷ raw with their min-max, the same ratio from
process CPU time (steadier on a shared machine, blind to I/O waits), the target, and the
peak Python memory of one extra, untimed run of each side under ``tracemalloc`` (allocations
made by Python code and the sqlite3 module's Python objects; SQLite's own page cache is not
included). See bench/README.md for what each scenario measures.

Plugins: by default (``--plugins core``) only the two plugins the storage core needs are loaded,
``sqlite`` (the backend) and ``migrate`` (the canonical schema); every other entry point of the
``hive_store`` group, built-in or third-party, is disabled through ``HIVE_STORE_DISABLE_PLUGINS``
and ``HIVE_STORE_LOAD_PLUGINS``. Plugins may add triggers to core tables (both sides then pay
them) and commit hooks (hive-store only); ``--plugins default`` keeps whatever the environment
loads, to measure that cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hive_store
from hive_store import StageOutput, aio
from hive_store._converters import format_timestamp
from hive_store.entities import Message
from hive_store.plugins import get_plugins

# -- settings shared by both sides -----------------------------------------------------------

BUSY_TIMEOUT_S = 30.0
# The per-connection PRAGMAs of the raw side: the same values hive-store applies (passed to
# hive_store.open explicitly below, so a change of hive-store's defaults cannot skew the
# comparison). verify_same_pragmas() reads both back.
RAW_PRAGMAS = (
    f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA cache_size = -32000",
    "PRAGMA mmap_size = 268435456",
    "PRAGMA temp_store = MEMORY",
    "PRAGMA wal_autocheckpoint = 1000",
)
STORE_OPTIONS: dict[str, Any] = {
    "busy_timeout": BUSY_TIMEOUT_S,
    "durability": "normal",
    "cache_size_kib": 32000,
    "mmap_size": 268435456,
    "wal_autocheckpoint": 1000,
}
CHECKED_PRAGMAS = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "cache_size",
                   "mmap_size", "temp_store", "wal_autocheckpoint", "auto_vacuum")

MSG_COLS = ("id", "conversation_id", "role", "content", "stage", "model_used", "timestamp")
MSG_COLUMNS = ", ".join(MSG_COLS)
SQL_INSERT_MSG = f"INSERT INTO messages ({MSG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
SQL_GET_MSG = f"SELECT {MSG_COLUMNS} FROM messages WHERE id = ?"
SQL_FIND_MSG = f"SELECT {MSG_COLUMNS} FROM messages WHERE conversation_id = ?"
SQL_ITER_MSG = f"SELECT {MSG_COLUMNS} FROM messages"
SQL_INSERT_CONV = "INSERT INTO conversations (id, created_at, updated_at) VALUES (?, ?, ?)"


def _insert(table: str, columns: str) -> str:
    n = len(columns.split(","))
    return f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * n)})"


# The hand-written INSERTs of one consensus run (autoincrement keys left to SQLite).
CONSENSUS_SQL = {
    "conversations": _insert(
        "conversations", "id, user_id, consensus_profile_id, total_cost, input_tokens, "
        "output_tokens, start_time, end_time, success_rate, quality_score, "
        "consensus_improvement, confidence_level, success, created_at, updated_at"),
    "messages": SQL_INSERT_MSG,
    "knowledge_conversations": _insert(
        "knowledge_conversations", "id, conversation_id, question, final_answer, "
        "source_of_truth, conversation_context, profile_id, created_at, last_updated"),
    "curator_truths": _insert(
        "curator_truths", "conversation_id, curator_output, confidence_score, topic_summary, "
        "created_at"),
    "usage_records": _insert(
        "usage_records", "id, user_id, conversation_id, action_type, cost, tokens_input, "
        "tokens_output, model_used, timestamp"),
    "conversation_usage": _insert(
        "conversation_usage", "conversation_id, user_id, timestamp, license_key, verified, "
        "conversation_token, question_hash, d1_verified_at"),
    "activity_log": _insert(
        "activity_log", "event_type, conversation_id, user_id, stage, model_used, "
        "provider_name, cost, duration_ms, tokens_used, error_message, metadata, created_at"),
}

STAGES = ("generator", "refiner", "validator", "curator")
MODELS = ("openai/gpt-4o", "anthropic/claude-3.5-sonnet", "google/gemini-1.5-pro",
          "meta/llama-3.1-70b")
MSGS_PER_CONVERSATION = 100
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


CORE_PLUGINS = ("sqlite", "migrate")


def use_plugins(mode: str) -> None:
    """``core``: disable every ``hive_store`` entry point but :data:`CORE_PLUGINS` (call before
    the first ``hive_store.open``); ``default``: leave the environment as it is."""
    if mode != "core":
        return
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="hive_store")}
    os.environ["HIVE_STORE_DISABLE_PLUGINS"] = ",".join(sorted(names - set(CORE_PLUGINS)))
    os.environ["HIVE_STORE_LOAD_PLUGINS"] = ""


# -- sizes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    add_many: int
    add: int
    read_rows: int  # rows of the database read by get / find / async / concurrency
    gets: int
    finds: int
    iter_rows: int
    concurrency_s: float
    async_gets: int
    consensus_runs: int
    repeats: int
    repeats_long: int  # iter and concurrency


FULL = Sizes(add_many=100_000, add=5_000, read_rows=100_000, gets=100_000, finds=2_000,
             iter_rows=1_000_000, concurrency_s=5.0, async_gets=20_000, consensus_runs=2_000,
             repeats=5, repeats_long=3)
QUICK = Sizes(add_many=10_000, add=1_000, read_rows=10_000, gets=10_000, finds=300,
              iter_rows=50_000, concurrency_s=1.0, async_gets=3_000, consensus_runs=300,
              repeats=3, repeats_long=2)


# -- results ----------------------------------------------------------------------------------


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


@dataclass
class Outcome:
    scenario: str
    unit: str
    raw: float
    ours: float
    ratio: float
    target: float | None
    met: bool | None
    repeats: int
    ratio_min: float
    ratio_max: float
    ratio_cpu: float  # the same ratio from CPU time (robust to other load; excludes I/O waits)
    raw_label: str
    ours_label: str
    memory: dict[str, Any]
    extra: dict[str, Any]
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("raw", "ours", "ratio", "ratio_min", "ratio_max", "ratio_cpu"):
            out[key] = _round(out[key])
        return out


def _round(x: float) -> float:
    return float(f"{x:.4g}")


# -- the workspace: template, fresh files, data ---------------------------------------------------


class Workspace:
    """Database files under one temporary folder; every file starts as a copy of a template
    that ``hive_store.open`` created (canonical schema, indexes, seed rows, WAL, auto_vacuum)."""

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


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def raw_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           timeout=BUSY_TIMEOUT_S)
    for pragma in RAW_PRAGMAS:
        conn.execute(pragma).fetchall()
    return conn


def open_store(path: Path) -> hive_store.Store:
    return hive_store.open(url(path), **STORE_OPTIONS)


def pragmas(conn: sqlite3.Connection) -> dict[str, Any]:
    return {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in CHECKED_PRAGMAS}


def verify_same_pragmas(ws: Workspace) -> dict[str, Any]:
    """Read the PRAGMAs back from a raw connection and a hive-store connection; exit if they
    differ (the comparison would be meaningless)."""
    path = ws.fresh("pragmas")
    raw = raw_connect(path)
    store = open_store(path)
    try:
        raw_p = pragmas(raw)
        with store.backend.connection() as conn:
            ours_p = pragmas(conn)
    finally:
        raw.close()
        store.close()
        ws.remove(path)
    if raw_p != ours_p:
        sys.exit(f"PRAGMAs differ: raw {raw_p} vs hive-store {ours_p}")
    return raw_p


class Data:
    """Rows for both sides: deterministic text and timestamps, fresh UUIDv7 ids (each set of
    rows is built once and given to both sides)."""

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
    starting state for both sides, not timed."""
    conn = raw_connect(path)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(SQL_INSERT_CONV, conv_rows)
    conn.executemany(SQL_INSERT_MSG, rows)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def steps(*fns: Callable[[], object]) -> Callable[[], None]:
    """A cleanup that runs each step in order."""

    def run() -> None:
        for fn in fns:
            fn()

    return run


def timed(fn: Callable[[], object], work: float) -> Measured:
    cpu = time.process_time()
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    return Measured(work, elapsed, cpu=time.process_time() - cpu)


# -- running a scenario ----------------------------------------------------------------------


@dataclass
class Scenario:
    key: str
    name: str
    unit: str
    target: float | None
    raw_label: str
    ours_label: str
    raw: Prepare
    ours: Prepare
    repeats: int
    note: str = ""
    memory_extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    must_be_zero: tuple[str, ...] = ()  # extra keys (both sides) that must be 0 for ``met``
    verify: Callable[[], dict[str, Any]] | None = None  # after the timed runs; into ``extra``


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


def run_scenario(sc: Scenario, *, memory: bool) -> Outcome:
    raws: list[Measured] = []
    ours: list[Measured] = []
    sides: tuple[tuple[Prepare, list[Measured]], ...] = ((sc.raw, raws), (sc.ours, ours))
    for rep in range(sc.repeats):
        for prepare, out in (sides if rep % 2 == 0 else sides[::-1]):
            trial = prepare()
            try:
                out.append(trial.run())
            finally:
                trial.cleanup()
    ratios = [o.rate / r.rate for r, o in zip(raws, ours, strict=True)]
    cpu_ratios = [o.cpu_rate / r.cpu_rate for r, o in zip(raws, ours, strict=True)]
    mem: dict[str, Any] = {"method": "tracemalloc (Python allocations, one untimed run each)"}
    if memory:
        mem["raw_peak_kib"] = round(peak_kib(sc.raw()))
        mem["ours_peak_kib"] = round(peak_kib(sc.ours()))
        if sc.memory_extra is not None:
            mem.update(sc.memory_extra(mem))
    extra: dict[str, Any] = {}
    for side, runs in (("raw", raws), ("ours", ours)):
        for key in sorted({k for m in runs for k in m.extra}):
            extra[f"{side}_{key}"] = _round(statistics.median(m.extra.get(key, 0.0)
                                                              for m in runs))
    if sc.verify is not None:
        extra.update(sc.verify())
    ratio = statistics.median(ratios)
    met = None if sc.target is None else ratio >= sc.target
    if met and sc.must_be_zero:
        met = all(m.extra.get(k, 0.0) == 0 for m in (*raws, *ours) for k in sc.must_be_zero)
    return Outcome(
        scenario=sc.name, unit=sc.unit,
        raw=statistics.median(m.rate for m in raws), ours=statistics.median(m.rate for m in ours),
        ratio=ratio, target=sc.target, met=met,
        repeats=sc.repeats, ratio_min=min(ratios), ratio_max=max(ratios),
        ratio_cpu=statistics.median(cpu_ratios),
        raw_label=sc.raw_label, ours_label=sc.ours_label, memory=mem, extra=extra,
        note=sc.note,
    )


# -- scenarios ---------------------------------------------------------------------------------


class Bench:
    def __init__(self, ws: Workspace, sizes: Sizes, repeats: int | None) -> None:
        self.ws = ws
        self.sizes = sizes
        self.repeats_override = repeats
        self.data = Data()
        self._writes: MessageSet | None = None
        self._read_db: tuple[Path, MessageSet] | None = None

    def reps(self, default: int) -> int:
        return self.repeats_override or default

    # shared inputs, built on first use ------------------------------------------------------

    def writes(self) -> MessageSet:
        if self._writes is None:
            self._writes = message_set(self.data, max(self.sizes.add_many, self.sizes.add))
        return self._writes

    def read_db(self) -> tuple[Path, MessageSet]:
        """A database with ``read_rows`` messages (100 per conversation), read by both sides."""
        if self._read_db is None:
            ms = message_set(self.data, self.sizes.read_rows)
            path = self.ws.fresh("read")
            seed(path, ms.conv_rows, ms.rows)
            self._read_db = (path, ms)
        return self._read_db

    def fresh_with_conversations(self, name: str, ms: MessageSet) -> Path:
        path = self.ws.fresh(name)
        seed(path, ms.conv_rows)
        return path

    # writes -----------------------------------------------------------------------------------

    def add_many(self) -> Scenario:
        n = self.sizes.add_many
        ms = self.writes()
        rows, entities = ms.rows[:n], ms.entities[:n]

        def raw() -> Trial:
            path = self.fresh_with_conversations("add_many-raw", ms)
            conn = raw_connect(path)

            def body() -> None:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(SQL_INSERT_MSG, rows)
                conn.execute("COMMIT")

            return Trial(lambda: timed(body, n), steps(conn.close, lambda: self.ws.remove(path)))

        def ours() -> Trial:
            path = self.fresh_with_conversations("add_many-ours", ms)
            store = open_store(path)
            return Trial(lambda: timed(lambda: store.messages.add_many(entities), n),
                         steps(store.close, lambda: self.ws.remove(path)))

        return Scenario("add_many", f"messages.add_many {n:,} in 1 transaction", "rows/s", 0.80,
                        "executemany(tuples) in BEGIN IMMEDIATE…COMMIT", "messages.add_many",
                        raw, ours, self.reps(self.sizes.repeats))

    def sqlite_utils_insert_all(self) -> Scenario | None:
        try:
            import sqlite_utils
        except ImportError:
            return None
        n = self.sizes.add_many
        ms = self.writes()
        rows = ms.rows[:n]
        dicts = [dict(zip(MSG_COLS, r, strict=True)) for r in rows]

        def raw() -> Trial:
            path = self.fresh_with_conversations("su-raw", ms)
            conn = raw_connect(path)

            def body() -> None:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(SQL_INSERT_MSG, rows)
                conn.execute("COMMIT")

            return Trial(lambda: timed(body, n),
                         steps(conn.close, lambda: self.ws.remove(path)))

        def ours() -> Trial:
            path = self.fresh_with_conversations("su-ours", ms)
            conn = raw_connect(path)
            db = sqlite_utils.Database(conn)

            def body() -> None:
                conn.execute("BEGIN IMMEDIATE")
                db.table("messages").insert_all(dicts, batch_size=1000)
                conn.execute("COMMIT")

            return Trial(lambda: timed(body, n),
                         steps(conn.close, lambda: self.ws.remove(path)))

        return Scenario(
            "sqlite_utils", f"context: sqlite-utils insert_all {n:,} dicts, 1 transaction",
            "rows/s", None, "executemany(tuples) in BEGIN IMMEDIATE…COMMIT",
            "sqlite-utils insert_all", raw, ours, self.reps(max(2, self.sizes.repeats - 2)),
            note="not a hive-store target; the 'ours' column is sqlite-utils "
                 "(batch_size=1000 is capped to 999 // 7 columns = 142 rows per INSERT)")

    def add_each(self) -> Scenario:
        n = self.sizes.add
        ms = self.writes()
        rows, entities = ms.rows[:n], ms.entities[:n]

        def raw() -> Trial:
            path = self.fresh_with_conversations("add-raw", ms)
            conn = raw_connect(path)

            def body() -> None:
                execute = conn.execute
                for row in rows:
                    execute(SQL_INSERT_MSG, row)

            return Trial(lambda: timed(body, n),
                         steps(conn.close, lambda: self.ws.remove(path)))

        def ours() -> Trial:
            path = self.fresh_with_conversations("add-ours", ms)
            store = open_store(path)

            def body() -> None:
                add = store.messages.add
                for entity in entities:
                    add(entity)

            return Trial(lambda: timed(body, n),
                         steps(store.close, lambda: self.ws.remove(path)))

        return Scenario("add", f"messages.add {n:,}, one transaction each", "rows/s", 0.90,
                        "autocommit INSERT", "messages.add", raw, ours,
                        self.reps(self.sizes.repeats))

    def record_consensus(self) -> Scenario:
        n = self.sizes.consensus_runs
        data = self.data
        inputs = [
            (data.text(20, 200), [
                StageOutput(stage=s, model=MODELS[k], answer=data.text(), tokens_input=100 + k,
                            tokens_output=400 + k, cost=0.001 * (k + 1), duration_ms=900 + k,
                            provider="openrouter")
                for k, s in enumerate(STAGES)])
            for _ in range(n)
        ]
        template = self.ws.fresh("consensus-template")
        sql = CONSENSUS_SQL
        counts: dict[str, dict[str, int]] = {}

        def count_rows(side: str, conn: sqlite3.Connection) -> None:
            counts.setdefault(side, {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                                     for t in sql})

        def raw() -> Trial:
            path = self.ws.fresh("consensus-raw", template)
            conn = raw_connect(path)

            def body() -> None:
                for question, stages in inputs:
                    _raw_record_consensus(conn, sql, question, stages)

            def cleanup() -> None:
                count_rows("raw", conn)
                conn.close()
                self.ws.remove(path)

            return Trial(lambda: timed(body, n), cleanup)

        def ours() -> Trial:
            path = self.ws.fresh("consensus-ours", template)
            store = open_store(path)

            def body() -> None:
                record = store.record_consensus
                for question, stages in inputs:
                    record(question, stages)

            def cleanup() -> None:
                with store.backend.connection() as conn:
                    count_rows("ours", conn)
                store.close()
                self.ws.remove(path)

            return Trial(lambda: timed(body, n), cleanup)

        def check() -> dict[str, Any]:
            if counts.get("raw") != counts.get("ours"):
                print(f"  WARNING: record_consensus rows differ: {counts}", file=sys.stderr)
            return {"rows_per_run": {t: c // max(1, n) for t, c in counts.get("ours", {}).items()}}

        return Scenario(
            "record_consensus", f"record_consensus x{n:,} (11 rows over 7 tables each)",
            "runs/s", 0.80, "the same 11 INSERTs in one BEGIN IMMEDIATE…COMMIT",
            "store.record_consensus", raw, ours, self.reps(self.sizes.repeats),
            note="both sides build ids, timestamps and the activity JSON inside the timed loop",
            verify=check)

    # reads ------------------------------------------------------------------------------------

    def get(self) -> Scenario:
        path, ms = self.read_db()
        n = self.sizes.gets
        rng = random.Random(11)
        ids = [rng.choice(ms.rows)[0] for _ in range(n)]

        def raw() -> Trial:
            conn = raw_connect(path)

            def body() -> None:
                execute = conn.execute
                for key in ids:
                    execute(SQL_GET_MSG, (key,)).fetchone()

            return Trial(lambda: timed(body, n), conn.close)

        def ours() -> Trial:
            store = open_store(path)

            def body() -> None:
                get = store.messages.get
                for key in ids:
                    get(key)

            return Trial(lambda: timed(body, n), store.close)

        return Scenario("get", f"messages.get x{n:,} random ids ({len(ms.rows):,} rows)",
                        "reads/s", 0.60, "PK SELECT + fetchone on a held connection",
                        "messages.get (checkout + structuring)", raw, ours,
                        self.reps(self.sizes.repeats))

    def find(self) -> Scenario:
        path, ms = self.read_db()
        n = self.sizes.finds
        rng = random.Random(12)
        convs = [rng.choice(ms.conv_ids) for _ in range(n)]

        def raw() -> Trial:
            conn = raw_connect(path)

            def body() -> None:
                execute = conn.execute
                for cid in convs:
                    execute(SQL_FIND_MSG, (cid,)).fetchall()

            return Trial(lambda: timed(body, n), conn.close)

        def ours() -> Trial:
            store = open_store(path)

            def body() -> None:
                find = store.messages.find
                for cid in convs:
                    find(conversation_id=cid)

            return Trial(lambda: timed(body, n), store.close)

        return Scenario("find", f"messages.find(conversation_id=…) x{n:,}, "
                                f"~{MSGS_PER_CONVERSATION} rows each", "queries/s", 0.70,
                        "indexed SELECT … WHERE conversation_id = ? + fetchall",
                        "messages.find", raw, ours, self.reps(self.sizes.repeats))

    def iter_all(self) -> Scenario:
        n = self.sizes.iter_rows
        data = self.data
        conv_rows = data.conversation_rows(max(1, n // MSGS_PER_CONVERSATION))
        path = self.ws.fresh("iter")
        conv_ids = [r[0] for r in conv_rows]
        print(f"  building the {n:,}-row database …", file=sys.stderr, flush=True)
        seed(path, conv_rows, data.message_rows(n, conv_ids))
        counted: dict[str, int] = {}

        def raw_loop(limit: int | None = None) -> int:
            conn = raw_connect(path)
            try:
                k = 0
                for _row in conn.execute(SQL_ITER_MSG):
                    k += 1
                    if k == limit:
                        break
                return k
            finally:
                conn.close()

        def ours_loop(store: hive_store.Store, limit: int | None = None) -> int:
            k = 0
            it = store.messages.iter()
            for _m in it:
                k += 1
                if k == limit:
                    break
            it.close()  # type: ignore[attr-defined]
            return k

        def raw() -> Trial:
            conn = raw_connect(path)

            def body() -> None:
                k = 0
                for _row in conn.execute(SQL_ITER_MSG):
                    k += 1
                counted["raw"] = k

            return Trial(lambda: timed(body, n), conn.close)

        def ours() -> Trial:
            store = open_store(path)

            def body() -> None:
                counted["ours"] = ours_loop(store)

            return Trial(lambda: timed(body, n), store.close)

        def flatness(mem: dict[str, Any]) -> dict[str, Any]:
            """Peak memory after a tenth of the rows vs all of them: flat means equal."""
            tenth = max(1, n // 10)
            store = open_store(path)
            try:
                out: dict[str, Any] = {
                    f"raw_peak_kib_first_{tenth}": round(peak_kib(Trial(
                        lambda: Measured(raw_loop(tenth), 1.0)))),
                    f"ours_peak_kib_first_{tenth}": round(peak_kib(Trial(
                        lambda: Measured(ours_loop(store, tenth), 1.0)))),
                }
            finally:
                store.close()
            # Flat: reading ten times the rows needs no more than 25% (+64 KiB) more memory.
            out["ours_flat"] = (mem.get("ours_peak_kib", 0)
                                <= 1.25 * out[f"ours_peak_kib_first_{tenth}"] + 64)
            return out

        def verify() -> dict[str, Any]:
            if counted.get("raw") != n or counted.get("ours") != n:
                print(f"  WARNING: iter counted {counted}, expected {n}", file=sys.stderr)
            return {}

        return Scenario("iter", f"messages.iter over {n:,} rows", "rows/s", 0.70,
                        "for row in cursor", "messages.iter (batch_size=1000)", raw, ours,
                        self.reps(self.sizes.repeats_long),
                        note="memory: peak over all rows vs over the first tenth (flat = equal)",
                        memory_extra=flatness, verify=verify)

    def concurrency(self) -> Scenario:
        read_path, ms = self.read_db()
        duration = self.sizes.concurrency_s
        readers = 4
        extra_rows = list(self.data.message_rows(int(duration * 12_000), ms.conv_ids,
                                                 start=len(ms.rows)))
        extra_entities = [to_message(r) for r in extra_rows]
        ids = [r[0] for r in ms.rows]

        def run_threads(reader: Callable[[random.Random, threading.Event], tuple[int, int]],
                        writer: Callable[[threading.Event], tuple[int, int]]) -> Measured:
            stop = threading.Event()
            results: list[tuple[str, int, int]] = []
            lock = threading.Lock()

            def wrap(kind: str, fn: Callable[[], tuple[int, int]]) -> None:
                ops, errors = fn()
                with lock:
                    results.append((kind, ops, errors))

            threads = [threading.Thread(target=wrap, args=(
                "r", lambda k=k: reader(random.Random(100 + k), stop))) for k in range(readers)]
            threads.append(threading.Thread(target=wrap, args=("w", lambda: writer(stop))))
            cpu = time.process_time()
            start = time.perf_counter()
            for t in threads:
                t.start()
            time.sleep(duration)
            stop.set()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - start
            reads = sum(o for k, o, _ in results if k == "r")
            writes = sum(o for k, o, _ in results if k == "w")
            errors = sum(e for _, _, e in results)
            if len(results) != readers + 1:
                errors += 10**6  # a thread died: make it impossible to miss
            return Measured(reads, elapsed, {"writes_per_s": writes / elapsed,
                                             "lock_errors": float(errors)},
                            cpu=time.process_time() - cpu)

        def raw() -> Trial:
            path = self.ws.fresh("conc-raw", read_path)

            def reader(rng: random.Random, stop: threading.Event) -> tuple[int, int]:
                conn = raw_connect(path)
                ops = errors = 0
                try:
                    execute = conn.execute
                    choice = rng.choice
                    while not stop.is_set():
                        try:
                            execute(SQL_GET_MSG, (choice(ids),)).fetchone()
                            ops += 1
                        except sqlite3.OperationalError as exc:
                            if not _locked(exc):
                                raise
                            errors += 1
                finally:
                    conn.close()
                return ops, errors

            def writer(stop: threading.Event) -> tuple[int, int]:
                conn = raw_connect(path)
                ops = errors = 0
                try:
                    execute = conn.execute
                    for row in extra_rows:
                        if stop.is_set():
                            break
                        try:
                            execute("BEGIN IMMEDIATE")
                            execute(SQL_INSERT_MSG, row)
                            execute("COMMIT")
                            ops += 1
                        except sqlite3.OperationalError as exc:
                            if conn.in_transaction:
                                execute("ROLLBACK")
                            if not _locked(exc):
                                raise
                            errors += 1
                finally:
                    conn.close()
                return ops, errors

            return Trial(lambda: run_threads(reader, writer), lambda: self.ws.remove(path))

        def ours() -> Trial:
            path = self.ws.fresh("conc-ours", read_path)
            store = open_store(path)

            def reader(rng: random.Random, stop: threading.Event) -> tuple[int, int]:
                ops = errors = 0
                get = store.messages.get
                choice = rng.choice
                while not stop.is_set():
                    try:
                        get(choice(ids))
                        ops += 1
                    except (hive_store.DatabaseLocked, hive_store.PoolTimeout):
                        errors += 1
                return ops, errors

            def writer(stop: threading.Event) -> tuple[int, int]:
                ops = errors = 0
                add = store.messages.add
                for entity in extra_entities:
                    if stop.is_set():
                        break
                    try:
                        add(entity)
                        ops += 1
                    except (hive_store.DatabaseLocked, hive_store.PoolTimeout):
                        errors += 1
                return ops, errors

            return Trial(lambda: run_threads(reader, writer),
                         steps(store.close, lambda: self.ws.remove(path)))

        return Scenario(
            "concurrency", f"{readers} reader threads (get) + 1 writer thread (add), "
                           f"{duration:g} s", "reads/s", 0.70,
            "own connection per thread; writer BEGIN IMMEDIATE/INSERT/COMMIT",
            "one shared store: messages.get / messages.add", raw, ours,
            self.reps(self.sizes.repeats_long),
            note="extra: writes/s and 'database is locked' errors per side; met needs 0 "
                 "errors in every run", must_be_zero=("lock_errors",))

    def async_get(self) -> Scenario:
        return self._async_get(inline=True)

    def async_get_threads(self) -> Scenario:
        return self._async_get(inline=False)

    def _async_get(self, *, inline: bool) -> Scenario:
        path, ms = self.read_db()
        n = self.sizes.async_gets
        rng = random.Random(13)
        ids = [rng.choice(ms.rows)[0] for _ in range(n)]

        def sync_side() -> Trial:
            store = open_store(path)

            def body() -> None:
                get = store.messages.get
                for key in ids:
                    get(key)

            return Trial(lambda: timed(body, n), store.close)

        def async_side() -> Trial:
            astore = aio.AsyncStore(open_store(path), inline_reads=inline)

            async def loop() -> Measured:
                get = astore.messages.get
                await get(ids[0])  # the worker thread exists before timing starts
                cpu = time.process_time()
                start = time.perf_counter()
                for key in ids:
                    await get(key)
                return Measured(n, time.perf_counter() - start, cpu=time.process_time() - cpu)

            return Trial(lambda: asyncio.run(loop()),
                         lambda: asyncio.run(astore.close()))

        if not inline:
            return Scenario(
                "async_get_threads",
                f"context: await aio messages.get x{n:,}, inline_reads=False", "reads/s", None,
                "sync store.messages.get", "await astore.messages.get (every call in a thread)",
                sync_side, async_side, self.reps(max(2, self.sizes.repeats - 2)),
                note="not a target: what each get costs when handed to a worker thread and "
                     "back (the default serves it on the loop when a connection is idle)")
        return Scenario(
            "async_get", f"await aio messages.get x{n:,}, one at a time", "reads/s", 0.667,
            "sync store.messages.get", "await astore.messages.get", sync_side, async_side,
            self.reps(self.sizes.repeats),
            note="both columns are hive-store; ratio = sync time / async time "
                 "(target: async time <= 1.5x sync); point reads run on the loop when a "
                 "pooled connection is idle (hive_store.aio docstring)")

    def all(self) -> dict[str, Callable[[], Scenario | None]]:
        return {
            "add_many": self.add_many,
            "sqlite_utils": self.sqlite_utils_insert_all,
            "add": self.add_each,
            "get": self.get,
            "find": self.find,
            "iter": self.iter_all,
            "concurrency": self.concurrency,
            "async_get": self.async_get,
            "async_get_threads": self.async_get_threads,
            "record_consensus": self.record_consensus,
        }


def _locked(exc: sqlite3.Error) -> bool:
    low = str(exc).lower()
    return "locked" in low or "busy" in low


def _raw_record_consensus(conn: sqlite3.Connection, sql: dict[str, str], question: str,
                          stages: Sequence[StageOutput]) -> None:
    """What a hand-written app does for one consensus run: the same values as
    ``Store.record_consensus`` (ids, timestamps, totals, activity JSON), 11 INSERTs, one txn."""
    uuid7 = hive_store.uuid7
    end = datetime.now(UTC)
    start = end
    curator = stages[-1]
    total_cost = sum(s.cost for s in stages)
    tokens_in = sum(s.tokens_input for s in stages)
    tokens_out = sum(s.tokens_output for s in stages)
    durations = [s.duration_ms for s in stages if s.duration_ms is not None]
    start_s = end_s = format_timestamp(end)
    cid = uuid7()
    messages: list[tuple[Any, ...]] = [(uuid7(), cid, "user", question, None, None, start_s)]
    stamp, elapsed = start, 0
    for s in stages:
        elapsed += s.duration_ms or 0
        at = min(start + timedelta(milliseconds=elapsed), end) if durations else end
        stamp = max(at, stamp + timedelta(microseconds=1))
        messages.append((uuid7(), cid, "assistant", s.answer, s.stage.value, s.model,
                         format_timestamp(stamp)))
    metadata = json.dumps(
        {"stages": [{"stage": s.stage.value, "model": s.model, "tokens_input": s.tokens_input,
                     "tokens_output": s.tokens_output, "cost": s.cost,
                     "duration_ms": s.duration_ms} for s in stages]},
        ensure_ascii=False, separators=(",", ":"))
    execute = conn.execute
    execute("BEGIN IMMEDIATE")
    try:
        execute(sql["conversations"], (cid, None, None, total_cost, tokens_in, tokens_out,
                                       start_s, end_s, "100", 0.95, 15, "High", 1, start_s,
                                       end_s))
        conn.executemany(sql["messages"], messages)
        execute(sql["knowledge_conversations"], (uuid7(), cid, question, curator.answer,
                                                 curator.answer, None, None, end_s, end_s))
        execute(sql["curator_truths"], (cid, curator.answer, 0.8, None, end_s))
        execute(sql["usage_records"], (uuid7(), None, cid, "conversation", total_cost,
                                       tokens_in, tokens_out, curator.model, end_s))
        execute(sql["conversation_usage"], (cid, None, end_s, None, 0, None, None, None))
        execute(sql["activity_log"], ("pipeline_complete", cid, None, None, curator.model,
                                      curator.provider, total_cost,
                                      sum(durations) if durations else None,
                                      tokens_in + tokens_out, None, metadata, end_s))
        execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            execute("ROLLBACK")
        raise


# -- report ---------------------------------------------------------------------------------------


def machine(tmp: Path, sizes: Sizes, quick: bool, pragmas_in_force: dict[str, Any],
            plugin_mode: str) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        su = version("sqlite-utils")
    except PackageNotFoundError:
        su = None
    plugins = sorted(p.name for p in get_plugins().info())
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "sqlite_version": sqlite3.sqlite_version,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hive_store": hive_store.__version__,
        "sqlite_utils": su,
        "plugins": plugins,
        "plugin_mode": plugin_mode,
        "tmpdir": str(tmp),
        "quick": quick,
        "sizes": asdict(sizes),
        "pragmas": pragmas_in_force,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }


def fmt(x: float) -> str:
    if x != x:
        return "nan"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def print_table(outcomes: Sequence[Outcome]) -> None:
    head = (f"{'scenario':<62} {'unit':<9} {'raw':>10} {'ours':>10} {'ratio':>6} "
            f"{'min-max':>11} {'cpu':>5} {'target':>6} {'met':>4}  peak KiB raw/ours")
    print(head)
    print("-" * len(head))
    for o in outcomes:
        target = "—" if o.target is None else f"{o.target:.2f}"
        met = "—" if o.met is None else ("yes" if o.met else "NO")
        mem = o.memory
        peaks = (f"{mem['raw_peak_kib']:,} / {mem['ours_peak_kib']:,}"
                 if "raw_peak_kib" in mem else "—")
        print(f"{o.scenario:<62.62} {o.unit:<9} {fmt(o.raw):>10} {fmt(o.ours):>10} "
              f"{o.ratio:>6.2f} {o.ratio_min:>5.2f}-{o.ratio_max:<5.2f} {o.ratio_cpu:>5.2f} "
              f"{target:>6} {met:>4}  "
              f"{peaks}")
    print()
    for o in outcomes:
        bits = [f"raw = {o.raw_label}; ours = {o.ours_label}"]
        bits += [f"{k}={v}" for k, v in o.extra.items()]
        bits += [f"{k}={v}" for k, v in o.memory.items()
                 if k not in ("method", "raw_peak_kib", "ours_peak_kib")]
        if o.note:
            bits.append(o.note)
        print(f"* {o.scenario}: " + "; ".join(str(b) for b in bits))
    print("\nratio = median over repeats of ours/raw (rates; higher is better), min-max over "
          "repeats; cpu = the same from process CPU time\n(less sensitive to other load on the "
          "machine, blind to I/O waits). peak memory: tracemalloc peak of one extra untimed run "
          "per side\n(Python allocations; SQLite's page cache is not included).")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (whole run < 30 s)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--only", metavar="SCENARIO",
                        help="comma-separated scenario keys: add_many, sqlite_utils, add, get, "
                             "find, iter, concurrency, async_get, async_get_threads, "
                             "record_consensus")
    parser.add_argument("--repeats", type=int, help="override the number of repeats")
    parser.add_argument("--tmpdir", help="where the database files go (default: the system "
                                         "temp dir; use a disk, not tmpfs, for real numbers)")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the tracemalloc runs")
    parser.add_argument("--plugins", choices=("core", "default"), default="core",
                        help="core: only the sqlite and migrate plugins (default); default: "
                             "whatever the environment loads")
    args = parser.parse_args(argv)
    use_plugins(args.plugins)
    sizes = QUICK if args.quick else FULL
    load = os.getloadavg()
    if load[0] > 0.5 * (os.cpu_count() or 1):
        print(f"note: load average {load[0]:.1f} on {os.cpu_count()} CPUs: other work is "
              "running; wall-time ratios will be noisy (see the cpu column)", file=sys.stderr)
    began = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="hive-store-bench-", dir=args.tmpdir))
    try:
        ws = Workspace(tmp)
        pragmas_in_force = verify_same_pragmas(ws)
        bench = Bench(ws, sizes, args.repeats)
        makers = bench.all()
        wanted = list(makers) if not args.only else [k.strip() for k in args.only.split(",")]
        unknown = [k for k in wanted if k not in makers]
        if unknown:
            parser.error(f"unknown scenario(s) {unknown}; choose from {', '.join(makers)}")
        outcomes: list[Outcome] = []
        for key in wanted:
            t0 = time.perf_counter()
            print(f"[{key}] …", file=sys.stderr, flush=True)
            scenario = makers[key]()
            if scenario is None:
                print(f"[{key}] skipped (sqlite-utils not installed)", file=sys.stderr)
                continue
            outcome = run_scenario(scenario, memory=not args.no_memory)
            outcomes.append(outcome)
            print(f"[{key}] ratio {outcome.ratio:.2f} ({outcome.ratio_min:.2f}-"
                  f"{outcome.ratio_max:.2f}) in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
        info = machine(tmp, sizes, args.quick, pragmas_in_force, args.plugins)
        info["loadavg_start"] = [round(x, 2) for x in load]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = time.perf_counter() - began
    print()
    print_table(outcomes)
    print(f"\n{len(outcomes)} scenarios in {total:.1f} s · Python {info['python']} · SQLite "
          f"{info['sqlite_version']} · {info['cpu_count']} CPUs · {info['platform']}")
    print(f"plugins ({args.plugins}): {', '.join(info['plugins'])}")
    if args.json:
        info["seconds"] = round(total, 1)
        doc = {"machine": info, "scenarios": [o.as_json() for o in outcomes]}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
