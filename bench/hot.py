"""The scenarios of ``run.py``: hive-store against raw ``sqlite3`` on the hot paths.

Each scenario has a raw side and a hive-store side that do the same work on the same data and
(where they must) run the same SQL text: ``run.py`` traces one untimed run of each side and
stops if the statements differ. See bench/README.md for what each scenario measures.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import (
    MODELS,
    MSG_COLS,
    MSGS_PER_CONVERSATION,
    SQL_FIND_MSG,
    SQL_GET_MSG,
    SQL_INSERT_MSG,
    SQL_ITER_MSG,
    STAGES,
    Data,
    Measured,
    MessageSet,
    Prepare,
    Trial,
    Workspace,
    insert_batched,
    message_set,
    open_store,
    peak_kib,
    q,
    raw_connect,
    seed,
    steps,
    timed,
    to_message,
)

import hive_store
from hive_store import StageOutput, aio
from hive_store._converters import format_timestamp


def _insert(table: str, columns: str) -> str:
    """A hand-written INSERT, identifiers quoted as hive-store quotes them (so that the traced
    statements of both sides can be compared as text)."""
    names = [c.strip() for c in columns.split(",")]
    return (f"INSERT INTO {q(table)} ({', '.join(q(c) for c in names)}) "
            f"VALUES ({', '.join('?' * len(names))})")

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
    # The SQL both sides must run (checked on a traced, untimed run of each): "counts" = the
    # same statements the same number of times; "set" = the same statements (time-bound
    # runs); "dml" = the same INSERT/UPDATE/DELETE/SELECT statements the same number of times,
    # other statements (hive-store's savepoints) reported, not compared; None = not compared
    # (the sides are meant to differ).
    same_sql: str | None = "counts"
    # Another rate from ``Measured.extra`` reported as a row of its own: (extra key, name).
    secondary: tuple[str, str] | None = None


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
        return self._add_many(executemany=False)

    def add_many_executemany(self) -> Scenario:
        return self._add_many(executemany=True)

    def _add_many(self, *, executemany: bool) -> Scenario:
        n = self.sizes.add_many
        ms = self.writes()
        rows, entities = ms.rows[:n], ms.entities[:n]

        def raw() -> Trial:
            path = self.fresh_with_conversations("add_many-raw", ms)
            conn = raw_connect(path)

            def body() -> None:
                conn.execute("BEGIN IMMEDIATE")
                if executemany:
                    conn.executemany(SQL_INSERT_MSG, rows)
                else:
                    insert_batched(conn, rows)
                conn.execute("COMMIT")

            return Trial(lambda: timed(body, n), steps(conn.close, lambda: self.ws.remove(path)))

        def ours() -> Trial:
            path = self.fresh_with_conversations("add_many-ours", ms)
            store = open_store(path)
            return Trial(lambda: timed(lambda: store.messages.add_many(entities), n),
                         steps(store.close, lambda: self.ws.remove(path)))

        if executemany:
            return Scenario(
                "add_many_executemany", f"context: add_many {n:,} vs raw executemany",
                "rows/s", None, "executemany(tuples) in BEGIN IMMEDIATE…COMMIT",
                "messages.add_many", raw, ours, self.reps(max(2, self.sizes.repeats - 2)),
                note="not a target: the raw baseline of earlier rounds (one statement "
                     "execution per row), kept to compare with older numbers",
                same_sql=None)
        return Scenario("add_many", f"messages.add_many {n:,} in 1 transaction", "rows/s", 0.80,
                        "100-row INSERT … VALUES (…),(…) in BEGIN IMMEDIATE…COMMIT",
                        "messages.add_many", raw, ours, self.reps(self.sizes.repeats))

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
                insert_batched(conn, rows)
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
            "rows/s", None, "100-row INSERTs in BEGIN IMMEDIATE…COMMIT",
            "sqlite-utils insert_all", raw, ours, self.reps(max(2, self.sizes.repeats - 2)),
            note="not a hive-store target; the 'ours' column is sqlite-utils "
                 "(batch_size=1000 is capped to 999 // 7 columns = 142 rows per INSERT); "
                 "bench/peers.py compares the peers properly", same_sql=None)

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
            verify=check, same_sql="dml")

    # reads ------------------------------------------------------------------------------------

    def get(self) -> Scenario:
        path, ms = self.read_db()
        n = self.sizes.gets
        rng = random.Random(11)
        ids = [rng.choice(ms.rows)[0] for _ in range(n)]

        def raw() -> Trial:
            conn = raw_connect(path)
            cursor = conn.cursor()  # held, as hive-store holds one per connection

            def body() -> None:
                execute = cursor.execute
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
                        "reads/s", 0.70, "PK SELECT + fetchone on a held connection and cursor",
                        "messages.get (checkout + structuring)", raw, ours,
                        self.reps(self.sizes.repeats))

    def find(self) -> Scenario:
        path, ms = self.read_db()
        n = self.sizes.finds
        rng = random.Random(12)
        convs = [rng.choice(ms.conv_ids) for _ in range(n)]

        def raw() -> Trial:
            conn = raw_connect(path)
            cursor = conn.cursor()

            def body() -> None:
                execute = cursor.execute
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
                        "indexed SELECT … WHERE conversation_id = ? ORDER BY rowid + fetchall "
                        "(held cursor)",
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

        return Scenario("iter", f"messages.iter over {n:,} rows", "rows/s", 0.65,
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
                    execute = conn.cursor().execute
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
                            execute(SQL_INSERT_MSG, row)  # one autocommit statement, as add
                            ops += 1
                        except sqlite3.OperationalError as exc:
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
            "own connection and held cursor per thread; writer: one autocommit INSERT",
            "one shared store: messages.get / messages.add", raw, ours,
            self.reps(self.sizes.repeats_long),
            note="writes/s reported as the next row; met needs 0 'database is locked' "
                 "errors in every run", must_be_zero=("lock_errors",), same_sql="set",
            secondary=("writes_per_s", "concurrency: writes/s of the same runs (1 writer)"))

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
                     "back (the default serves it on the loop when a connection is idle)",
                same_sql="set")
        return Scenario(
            "async_get", f"await aio messages.get x{n:,}, one at a time", "reads/s", 0.667,
            "sync store.messages.get", "await astore.messages.get", sync_side, async_side,
            self.reps(self.sizes.repeats),
            note="both columns are hive-store; ratio = sync time / async time "
                 "(target: async time <= 1.5x sync); point reads run on the loop when a "
                 "pooled connection is idle (hive_store.aio docstring)",
            same_sql="set")  # the async side reads one id more, before the clock starts

    def all(self) -> dict[str, Callable[[], Scenario | None]]:
        return {
            "add_many": self.add_many,
            "add_many_executemany": self.add_many_executemany,
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

