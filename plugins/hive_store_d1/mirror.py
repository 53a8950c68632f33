"""The mirror of one store in one D1 database: capture, push, pull, verify, dead letters.

Push
    Runs in rounds. A round opens a read snapshot of the local database, takes every outbox
    entry up to the newest one (``hi``), coalesces them per row, and reads each row's current
    state (absent: a delete) and clock. Rows go out in foreign-key order (parents first; deletes
    after every upsert, children first), packed into requests of at most
    ``rows_per_request`` rows, ``statements_per_request`` statements and about
    ``bytes_per_request`` bytes, each request one D1 batch that begins with ``PRAGMA
    defer_foreign_keys = on``. When D1 acknowledges a request, the entries of its rows up to
    ``hi`` are deleted in one local transaction; a write made meanwhile keeps its newer entry.
    Reading the whole round from one snapshot matters: a row's parent is always in the same
    round or an earlier one, so D1's foreign keys hold at the end of every request.

    A request D1 refuses with an SQL error (a constraint, a too-big value, a trigger's RAISE)
    is split in halves until the refused row is alone; that row goes to the dead-letter table
    with the error and the rest go through: one bad row never blocks the queue.

    The first push to a database (and ``push --all``) first sends every existing row
    (backfill), table by table from one snapshot, resuming where a killed backfill stopped.
    Rows this device never saw written carry the base clock, older than any real write, and
    are only inserted (``ON CONFLICT(key) DO NOTHING``): a backfill never replaces a row D1
    already has, whoever sent it; the first backfill of a never-edited row wins.

Pull (when configured)
    Reads the remote change log after the local cursor, a page at a time, in one D1 batch: the
    page's bounds, the current state of each changed row of each table and the tombstones.
    Rows this device wrote last are skipped. Each row is applied if its clock is newer than the
    local one (last writer wins, ties broken by device id, see :mod:`hive_store_d1.clock`),
    through the repositories (other plugins see the changes), with the page's cursor and the
    clocks in the same local transaction. Applied rows are not captured again (no echo).

Resume
    Everything sent is idempotent, acknowledgements follow D1's answer, and cursors move in the
    transaction that applies what they cover: a process killed at any point leaves work that
    the next run repeats harmlessly.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from hive_store.changes import Change, Op
from hive_store.errors import ConfigurationError, HiveStoreError
from hive_store_d1 import schema
from hive_store_d1.client import (
    D1Client,
    D1Error,
    D1SchemaError,
    D1StatementError,
    Statement,
)
from hive_store_d1.clock import base_clock, format_clock, new_device_id, now_ms, parse_clock
from hive_store_d1.clock import receive as clock_receive
from hive_store_d1.clock import tick as clock_tick
from hive_store_d1.config import SECRET_TABLES, D1Config
from hive_store_d1.schema import TableInfo, literal, quote

if TYPE_CHECKING:
    import httpx

    from hive_store._converters import EntityCodec
    from hive_store.store import Store

log = logging.getLogger("hive_store.d1")

OUTBOX = "hive_store_d1_outbox"
CLOCK = "hive_store_d1_clock"
DEAD = "hive_store_d1_dead_letter"
STATE = "hive_store_d1_state"

Progress = Callable[[str, str, int, int | None], None]
"""``progress(phase, table, done, total)``; phase is ``backfill``, ``push``, ``pull`` or
``verify``; ``done`` counts rows (chunks for verify)."""

_READ_CHUNK = 500  # keys per local IN (...) read (below SQLite's 999 variables)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@attrs.define
class Item:
    """One row to send: its current values (``None``: delete) and clock."""

    table: TableInfo
    pk: Any
    hlc: str
    values: tuple[Any, ...] | None


@attrs.define
class DeadLetter:
    """A row D1 refused (push) or that could not be applied here (pull)."""

    table: str
    pk: Any
    direction: str
    op: str
    error: str
    status: int | None = None
    code: int | None = None


@attrs.define
class PushReport:
    """What a push did."""

    upserts: int = 0
    deletes: int = 0
    backfilled: int = 0
    requests: int = 0
    rounds: int = 0
    dead_lettered: list[DeadLetter] = attrs.field(factory=list)
    pending: int = 0
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return self.upserts + self.deletes + self.backfilled


@attrs.define
class PullReport:
    """What a pull did."""

    applied: int = 0
    deleted: int = 0
    skipped: int = 0
    pages: int = 0
    cursor: int = 0
    dead_lettered: list[DeadLetter] = attrs.field(factory=list)
    seconds: float = 0.0


@attrs.define
class TableDiff:
    """How one table differs between here and D1."""

    table: str
    local_count: int = 0
    remote_count: int = 0
    chunks: int = 0
    chunks_differing: int = 0
    missing_remote: list[Any] = attrs.field(factory=list)
    missing_local: list[Any] = attrs.field(factory=list)
    different: list[Any] = attrs.field(factory=list)
    explained: list[Any] = attrs.field(factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing_remote or self.missing_local or self.different) \
            and self.local_count == self.remote_count


@attrs.define
class VerifyReport:
    """The outcome of :meth:`Mirror.verify`."""

    tables: list[TableDiff] = attrs.field(factory=list)
    pending: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)


def default_tables(store: Store) -> list[str]:
    """The core Hive tables, without the ones holding secrets."""
    return sorted(t for t, cls in store.entities.items()
                  if cls.__module__ == "hive_store.entities" and t not in SECRET_TABLES)


@functools.lru_cache(maxsize=1024)
def _sizing(info: TableInfo, delete: bool) -> tuple[int, int, int]:
    """``(rows per statement, statements per run, JSON bytes of the SQL text)`` of the
    statements sending ``info``'s rows (upserts with bound clocks: the larger estimate)."""
    origin = "x" * 64
    if delete:
        per = schema.DELETE_ROWS_PER_STATEMENT
        text = schema.tombstone_sql(info.name, per, origin) + schema.delete_sql(info, per)
        return per, 2, len(json.dumps(text)) + 64
    per = schema.upsert_rows_per_statement(info)
    return per, 1, len(json.dumps(schema.upsert_sql(info, per, origin))) + 32


class _Request:
    """Items packed for one request within the configured limits (bytes approximate)."""

    __slots__ = ("_left", "_run", "bytes", "cfg", "items", "statements")

    def __init__(self, config: D1Config) -> None:
        self.cfg = config
        self.items: list[Item] = []
        self.bytes = 0
        self.statements = 1  # PRAGMA defer_foreign_keys
        self._run: tuple[str, bool] | None = None
        self._left = 0  # rows that still fit the current statement

    def add(self, item: Item) -> bool:
        """Add ``item`` if it fits (a first item always does); ``False`` when full."""
        values = item.values
        delete = values is None
        # repr() is one C call and close to the JSON text of the values (ASCII text)
        size = 8 + len(item.hlc) + len(repr(item.pk if values is None else values))
        new = 0
        run = (item.table.name, delete)
        if run != self._run or self._left == 0:
            per, new, text = _sizing(item.table, delete)
            size += text
        if self.items and (len(self.items) >= self.cfg.rows_per_request
                           or self.statements + new > self.cfg.statements_per_request
                           or self.bytes + size > self.cfg.bytes_per_request):
            return False
        if new:
            self._run, self._left = run, per
        self._left -= 1
        self.items.append(item)
        self.bytes += size
        self.statements += new
        return True


class _Sender:
    """Runs ``send(batch)`` for one batch at a time on a worker thread, in submission order.

    ``submit`` waits for the previous batch first (so requests never overlap) and re-raises
    its error; ``wait`` waits for the last one.
    """

    def __init__(self, send: Callable[[list[Item]], None]) -> None:
        self._send = send
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _run(self, batch: list[Item]) -> None:
        try:
            self._send(batch)
        except BaseException as exc:  # handed to the caller's thread
            self._error = exc

    def submit(self, batch: list[Item]) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(batch,),
                                        name="hive_store_d1-send", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def abandon(self) -> None:
        """Wait for the batch in flight and drop its outcome (the caller is failing)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._error = None


class Mirror:
    """Mirrors one open store to one D1 database (see the module docstring).

    Built by :func:`hive_store_d1.enable` (or when a store opens with the configuration in the
    environment). Thread-safe: pushes and pulls of one mirror run one at a time.
    """

    def __init__(self, store: Store, config: D1Config, *,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None,
                 wall_ms: Callable[[], int] = now_ms) -> None:
        backend = store.backend
        if getattr(backend, "dialect", None) != "sqlite":
            raise ConfigurationError("D1 mirroring needs a SQLite store")
        self.store = store
        self.config = config
        self._wall = wall_ms
        self._local = threading.local()
        self._lock = threading.RLock()
        names = list(config.tables) if config.tables else default_tables(store)
        known = store.entities
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigurationError(
                f"D1 mirror: unknown tables {', '.join(unknown)} (tables: "
                f"{', '.join(sorted(known))})")
        codecs: list[EntityCodec[Any]] = [store.codec(known[n]) for n in names]
        with backend.connection() as conn:
            try:
                self.tables: list[TableInfo] = schema.load_tables(conn, codecs)
            except sqlite3.Error as exc:
                raise ConfigurationError(f"D1 mirror: cannot read the schema ({exc})") from None
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (STATE,)).fetchone() \
                    is None:
                raise ConfigurationError(
                    "D1 mirror: this database lacks the D1 tables (open it with migrate=True "
                    "or run `hive-store migrate`)")
        self.by_name = {t.name: t for t in self.tables}
        self._codecs: dict[str, EntityCodec[Any]] = {
            t.name: store.codec(t.entity) for t in self.tables}
        pool = getattr(backend, "pool", None)
        max_size = getattr(getattr(pool, "config", None), "max_size", 1)
        # An in-memory store (one connection) cannot write while a snapshot is open: read each
        # round fully first.
        self._materialize = bool(getattr(backend, "memory", False)) or max_size < 2
        self.device_id = self._init_device(config.device_id)
        self.base_clock = base_clock(self.device_id)
        self.target = config.target
        self.client = D1Client(config, transport=transport, sleep=sleep, rng=rng)
        self._needs_backfill = False

    def __repr__(self) -> str:
        return (f"<hive_store_d1.Mirror {self.store.url} -> D1 {self.config.database_id} "
                f"({len(self.tables)} tables, device {self.device_id})>")

    def close(self) -> None:
        self.client.close()

    # -- local state ------------------------------------------------------------------------------

    def _init_device(self, wanted: str | None) -> str:
        with self.store.backend.transaction() as conn:
            row = conn.execute(f"SELECT value FROM {STATE} WHERE key = 'device_id'").fetchone()
            if row is not None and wanted is None:
                return str(row[0])
            device = wanted or new_device_id()
            if row is None:
                conn.execute(f"INSERT INTO {STATE} (key, value) VALUES ('device_id', ?)",
                             (device,))
            return device

    def _get(self, conn: sqlite3.Connection, key: str) -> Any:
        row = conn.execute(f"SELECT value FROM {STATE} WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    @staticmethod
    def _set(conn: sqlite3.Connection, key: str, value: Any) -> None:
        conn.execute(f"INSERT INTO {STATE} (key, value) VALUES (?, ?) ON CONFLICT (key) "
                     "DO UPDATE SET value = excluded.value", (key, json.dumps(value)))

    def _state(self, key: str) -> Any:
        with self.store.backend.connection() as conn:
            return self._get(conn, key)

    def _write_state(self, **values: Any) -> None:
        with self.store.backend.transaction() as conn:
            for key, value in values.items():
                self._set(conn, key, value)

    def _key(self, name: str) -> str:
        return f"{name}:{self.target}"

    # -- capture (inside the writer's transaction) -----------------------------------------------

    def capture(self, connection: sqlite3.Connection, changes: Sequence[Change]) -> None:
        """Record the transaction's writes to mirrored tables in the outbox (called by the
        ``hive_store_before_commit`` hook, inside the transaction)."""
        if getattr(self._local, "applying", False):
            return  # rows being pulled: never echo them back
        by_name = self.by_name
        rows: dict[tuple[str, Any], int] = {}
        for change in changes:
            table = change.table
            if table not in by_name:
                continue
            key = change.key
            if key.__class__ not in (str, int):
                key = self._codecs[table].to_sql(by_name[table].pk, key)
            rows[(table, key)] = 1 if change.op is Op.DELETE else 0
        if not rows:
            return
        hlc = self._tick(connection)
        connection.executemany(f"INSERT INTO {OUTBOX} (tbl, pk, hlc) VALUES (?, ?, ?)",
                               [(t, k, hlc) for t, k in rows])
        connection.executemany(
            f"INSERT INTO {CLOCK} (tbl, pk, hlc, deleted) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (tbl, pk) DO UPDATE SET hlc = excluded.hlc, deleted = excluded.deleted",
            [(t, k, hlc, d) for (t, k), d in rows.items()])

    def _tick(self, conn: sqlite3.Connection) -> str:
        last = self._get(conn, "clock") or [0, 0]
        ms, counter = clock_tick(int(last[0]), int(last[1]), self._wall())
        self._set(conn, "clock", [ms, counter])
        return format_clock(ms, counter, self.device_id)

    @contextlib.contextmanager
    def _applying(self) -> Iterator[None]:
        self._local.applying = True
        try:
            yield
        finally:
            self._local.applying = False

    # -- reads from one snapshot ------------------------------------------------------------------

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        with self.store.backend.connection() as conn:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

    def _streamed(self, produce: Callable[[sqlite3.Connection], Iterator[Any]],
                  consume: Callable[[Iterator[Any]], None]) -> None:
        """Feed what ``produce`` reads from one snapshot to ``consume`` (which may write)."""
        if self._materialize:
            with self._snapshot() as conn:
                items = list(produce(conn))
            consume(iter(items))
        else:
            with self._snapshot() as conn:
                consume(produce(conn))

    # -- the remote schema ------------------------------------------------------------------------

    def _fingerprint(self) -> str:
        text = "|".join([str(schema.LAYOUT_VERSION), *(t.fingerprint() for t in self.tables)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def ensure_schema(self, *, force: bool = False) -> bool:
        """Create or upgrade the remote schema if this device has not done it for the current
        local schema; returns whether it ran. Idempotent (``CREATE … IF NOT EXISTS``)."""
        fingerprint = self._fingerprint()
        if not force and self._state(self._key("schema")) == fingerprint:
            return False
        reads = [Statement(schema.bookkeeping_ddl()[0]),
                 Statement(f"SELECT key, value FROM {schema.META}")]
        reads += [Statement(f"SELECT name FROM pragma_table_info({literal(t.name)})")
                  for t in self.tables]
        results = self.client.batch(reads)
        meta = {r["key"]: r["value"] for r in results[1]}
        remote_layout = int(meta.get("layout_version", 0) or 0)
        if remote_layout > schema.LAYOUT_VERSION:
            raise D1Error(
                f"the D1 database uses hive_store_d1 layout {remote_layout}, newer than this "
                f"version's {schema.LAYOUT_VERSION}: upgrade hive-store on this device")
        statements = [Statement(s) for s in schema.bookkeeping_ddl()]
        with self.store.backend.connection() as conn:
            for info, rows in zip(self.tables, results[2:], strict=True):
                statements += [Statement(s) for s in schema.table_ddl(info)]
                have = {r["name"] for r in rows}
                if have:
                    local_cols = [r[1] for r in conn.execute(
                        f"PRAGMA table_info({quote(info.name)})").fetchall()]
                    for col in local_cols:
                        if col not in have:
                            statements.append(Statement(
                                schema.add_column_ddl(conn, info.name, col)))
                    for extra in schema.EXTRA_COLUMNS:
                        if extra not in have:
                            statements.append(Statement(
                                f"ALTER TABLE {quote(info.name)} ADD COLUMN {extra} TEXT "
                                "NOT NULL DEFAULT ''"))
        upsert_meta = (f"INSERT INTO {schema.META} (key, value) VALUES (?, ?) ON CONFLICT (key) "
                       "DO UPDATE SET value = excluded.value")
        statements.append(Statement(upsert_meta, ("layout_version",
                                                  str(schema.LAYOUT_VERSION))))
        statements += [Statement(upsert_meta, (f"table:{t.name}", t.fingerprint()))
                       for t in self.tables]
        per = max(2, self.config.statements_per_request)
        for start in range(0, len(statements), per):
            self.client.batch(statements[start:start + per])
        self._write_state(**{self._key("schema"): fingerprint})
        log.info("D1 schema ready (%d tables, layout %d)", len(self.tables),
                 schema.LAYOUT_VERSION)
        return True

    # -- sending ----------------------------------------------------------------------------------

    def _statements(self, items: Sequence[Item]) -> list[Statement]:
        """The batch for ``items``: deferred foreign keys, then per run of one table's
        upserts (or deletes) multi-row statements sized to D1's limits."""
        out = [Statement("PRAGMA defer_foreign_keys = on")]
        origin = self.device_id
        safe = schema.SAFE_INT
        for (_, is_delete), group_iter in itertools.groupby(
                items, key=lambda it: (it.table.name, it.values is None)):
            group = list(group_iter)
            info = group[0].table
            if is_delete:
                per = schema.DELETE_ROWS_PER_STATEMENT
                for start in range(0, len(group), per):
                    chunk = group[start:start + per]
                    tomb: list[Any] = []
                    for it in chunk:
                        tomb += [schema.to_json_value(it.pk), it.hlc]
                    out.append(Statement(schema.tombstone_sql(info.name, len(chunk), origin),
                                         tomb))
                    out.append(Statement(schema.delete_sql(info, len(chunk)),
                                         [schema.to_json_value(it.pk) for it in chunk]))
                continue
            bound = schema.upsert_rows_per_statement(info)
            shared = schema.upsert_rows_per_statement(info, True)
            ints = info.int_columns
            width = len(info.columns)
            start, n = 0, len(group)
            while start < n:
                # rows sharing one clock (a backfill, one transaction's rows) bind no clock
                clock: str | None = group[start].hlc
                end = start + 1
                limit = min(n, start + shared)
                while end < limit and group[end].hlc == clock:
                    end += 1
                if end - start < min(bound, n - start):
                    end, clock = min(n, start + bound), None
                chunk = group[start:end]
                params: list[Any] = []
                stride = width if clock is not None else width + 1
                for it in chunk:
                    assert it.values is not None
                    params.extend(it.values)
                    if clock is None:
                        params.append(it.hlc)
                if ints:  # integers beyond 2^53 travel as text (JSON numbers are doubles)
                    for base in range(0, len(params), stride):
                        for i in ints:
                            v = params[base + i]
                            if v.__class__ is int and not -safe <= v <= safe:
                                params[base + i] = str(v)
                out.append(Statement(schema.upsert_sql(
                    info, len(chunk), origin, clock, keep_existing=clock == self.base_clock),
                    params))
                start = end
        return out

    def _send(self, items: list[Item], ack: Callable[[list[Item]], None],
              report: PushReport, hi: int | None, *, schema_retry: bool = True) -> None:
        """Send ``items`` as one request; on an SQL refusal, bisect down to the refused row."""
        try:
            report.requests += 1
            self.client.batch(self._statements(items))
        except D1SchemaError:
            if not schema_retry:
                raise
            log.warning("D1 reports a missing table or column; re-creating the remote schema "
                        "(and sending every row again)")
            self.ensure_schema(force=True)
            self._needs_backfill = True
            self._send(items, ack, report, hi, schema_retry=False)
            return
        except D1StatementError as exc:
            if len(items) == 1:
                self._dead_letter_push(items[0], exc, hi, report)
                return
            mid = len(items) // 2
            self._send(items[:mid], ack, report, hi, schema_retry=schema_retry)
            self._send(items[mid:], ack, report, hi, schema_retry=schema_retry)
            return
        ack(items)

    def _dead_letter_push(self, item: Item, exc: D1Error, hi: int | None,
                          report: PushReport) -> None:
        op = "delete" if item.values is None else "upsert"
        letter = DeadLetter(item.table.name, item.pk, "push", op, str(exc), exc.status, exc.code)
        with self.store.backend.transaction() as conn:
            self._record_dead(conn, letter, item.hlc)
            if hi is not None:
                conn.execute(f"DELETE FROM {OUTBOX} WHERE tbl = ? AND pk = ? AND seq <= ?",
                             (item.table.name, item.pk, hi))
        report.dead_lettered.append(letter)
        log.warning("D1 refused %s %s %r: %s (moved to the dead-letter table)", op,
                    item.table.name, item.pk, str(exc)[:300])

    @staticmethod
    def _record_dead(conn: sqlite3.Connection, letter: DeadLetter, hlc: str) -> None:
        now = _now()
        conn.execute(
            f"INSERT INTO {DEAD} (tbl, pk, direction, op, hlc, error, status, code, attempts, "
            "first_failed_at, last_failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?) "
            "ON CONFLICT (tbl, pk, direction) DO UPDATE SET op = excluded.op, "
            "hlc = excluded.hlc, error = excluded.error, status = excluded.status, "
            "code = excluded.code, attempts = attempts + 1, "
            "last_failed_at = excluded.last_failed_at",
            (letter.table, letter.pk, letter.direction, letter.op, hlc, letter.error[:4000],
             letter.status, letter.code, now, now))

    def _has_dead(self, conn: sqlite3.Connection, direction: str) -> bool:
        return conn.execute(f"SELECT 1 FROM {DEAD} WHERE direction = ? LIMIT 1",
                            (direction,)).fetchone() is not None

    def _pack(self, items: Iterator[Item], send: Callable[[list[Item]], None]) -> None:
        """Pack ``items`` into requests and send them in order, one at a time. The next
        request is read and packed while the previous one is in flight (a sender thread);
        it is sent only after the previous one was answered and acknowledged."""
        sender = _Sender(send)
        request = _Request(self.config)
        try:
            for item in items:
                if not request.add(item):
                    sender.submit(request.items)
                    request = _Request(self.config)
                    request.add(item)
            if request.items:
                sender.submit(request.items)
        except BaseException:
            sender.abandon()
            raise
        sender.wait()

    # -- push -------------------------------------------------------------------------------------

    def push(self, *, all: bool = False, progress: Progress | None = None,
             max_rounds: int = 20) -> PushReport:
        """Send what the outbox holds (after a backfill on the first push to this database, or
        with ``all``); see the module docstring. Raises :class:`hive_store_d1.D1Error` when D1
        stays unavailable; nothing is lost then."""
        started = time.perf_counter()
        report = PushReport()
        with self._lock:
            try:
                self.ensure_schema()
                if all or self._state(self._key("backfill")) != {"done": True}:
                    self._backfill(report, progress, restart=all)
                for _ in range(max_rounds):
                    if not self._push_round(report, progress):
                        break
                if self._needs_backfill:
                    self._needs_backfill = False
                    self._backfill(report, progress, restart=True)
            except BaseException as exc:
                if isinstance(exc, Exception):
                    self._write_state(**{self._key("last_push"): {
                        "at": _now(), "ok": False, "error": str(exc)[:500],
                        "rows": report.rows, "requests": report.requests}})
                raise
            report.pending = self.pending()
            report.seconds = time.perf_counter() - started
            self._write_state(**{self._key("last_push"): {
                "at": _now(), "ok": True, "rows": report.rows, "requests": report.requests,
                "dead_lettered": len(report.dead_lettered),
                "seconds": round(report.seconds, 3)}})
        return report

    def pending(self) -> int:
        """Rows waiting in the outbox (distinct rows)."""
        with self.store.backend.connection() as conn:
            return int(conn.execute(
                f"SELECT count(*) FROM (SELECT DISTINCT tbl, pk FROM {OUTBOX})").fetchone()[0])

    def _push_round(self, report: PushReport, progress: Progress | None) -> bool:
        names = list(self.by_name)
        with self.store.backend.transaction() as conn:  # entries of tables no longer mirrored
            conn.execute(f"DELETE FROM {OUTBOX} WHERE tbl NOT IN "
                         f"({', '.join('?' for _ in names)})", names)
        done = 0
        total: list[int] = [0]
        hi_box: list[int | None] = [None]

        def produce(conn: sqlite3.Connection) -> Iterator[Item]:
            hi = conn.execute(f"SELECT max(seq) FROM {OUTBOX}").fetchone()[0]
            hi_box[0] = hi
            if hi is None:
                return iter(())
            total[0] = int(conn.execute(
                f"SELECT count(*) FROM (SELECT DISTINCT tbl, pk FROM {OUTBOX} WHERE seq <= ?)",
                (hi,)).fetchone()[0])
            return self._round_items(conn, hi)

        def consume(items: Iterator[Item]) -> None:
            nonlocal done
            hi = hi_box[0]
            if hi is None:
                return
            with self.store.backend.connection() as rconn:
                clear_dead = self._has_dead(rconn, "push")

            def ack(batch: list[Item]) -> None:
                nonlocal done
                rows = [(it.table.name, it.pk, hi) for it in batch]
                with self.store.backend.transaction() as conn:
                    conn.executemany(
                        f"DELETE FROM {OUTBOX} WHERE tbl = ? AND pk = ? AND seq <= ?", rows)
                    if clear_dead:
                        conn.executemany(f"DELETE FROM {DEAD} WHERE tbl = ? AND pk = ? AND "
                                         "direction = 'push'", [r[:2] for r in rows])
                for it in batch:
                    if it.values is None:
                        report.deletes += 1
                    else:
                        report.upserts += 1
                done += len(batch)
                if progress is not None:
                    progress("push", batch[-1].table.name, done, total[0])

            self._pack(items, lambda batch: self._send(batch, ack, report, hi))

        self._streamed(produce, consume)
        if hi_box[0] is None:
            return False
        report.rounds += 1
        return True

    def _round_items(self, conn: sqlite3.Connection, hi: int) -> Iterator[Item]:
        """The current state of every row with outbox entries up to ``hi``: upserts parents
        first, then deletes children first."""
        deletes: dict[str, list[Item]] = {}
        for info in self.tables:
            keys = [r[0] for r in conn.execute(
                f"SELECT DISTINCT pk FROM {OUTBOX} WHERE tbl = ? AND seq <= ? ORDER BY pk",
                (info.name, hi))]
            cols = ", ".join(quote(c) for c in info.columns)
            for chunk in schema.key_chunks(keys, _READ_CHUNK):
                marks = ", ".join("?" for _ in chunk)
                present = {row[info.pk_index]: row for row in conn.execute(
                    f"SELECT {cols} FROM {quote(info.name)} WHERE {quote(info.pk)} "
                    f"IN ({marks})", list(chunk))}
                clocks = dict(conn.execute(
                    f"SELECT pk, hlc FROM {CLOCK} WHERE tbl = ? AND pk IN ({marks})",
                    [info.name, *chunk]).fetchall())
                for key in chunk:
                    hlc = clocks.get(key) or self.base_clock
                    row = present.get(key)
                    if row is not None:
                        yield Item(info, key, hlc, tuple(row))
                    else:
                        deletes.setdefault(info.name, []).append(Item(info, key, hlc, None))
        for info in reversed(self.tables):
            yield from deletes.get(info.name, ())


    def _backfill(self, report: PushReport, progress: Progress | None, *,
                  restart: bool) -> None:
        key = self._key("backfill")
        saved = None if restart else self._state(key)
        start_table = saved.get("table") if isinstance(saved, dict) else None
        after = saved.get("after") if isinstance(saved, dict) else None
        order = [t.name for t in self.tables]
        if start_table not in order:
            start_table, after = None, None
        totals: dict[str, int] = {}
        done = 0
        snapshot_hi: list[int | None] = [None]

        def produce(conn: sqlite3.Connection) -> Iterator[Item]:
            snapshot_hi[0] = conn.execute(f"SELECT max(seq) FROM {OUTBOX}").fetchone()[0]
            skipping = start_table is not None
            for info in self.tables:
                totals[info.name] = int(conn.execute(
                    f"SELECT count(*) FROM {quote(info.name)}").fetchone()[0])
            for info in self.tables:
                if skipping and info.name != start_table:
                    continue
                resume = after if skipping else None
                skipping = False
                t, pk = quote(info.name), quote(info.pk)
                cols = ", ".join(f"t.{quote(c)}" for c in info.columns)
                sql = (f"SELECT {cols}, c.hlc FROM {t} AS t LEFT JOIN {CLOCK} AS c "
                       f"ON c.tbl = {literal(info.name)} AND c.pk = t.{pk}")
                params: list[Any] = []
                if resume is not None:
                    sql += f" WHERE t.{pk} > ?"
                    params.append(resume)
                cursor = conn.execute(sql + f" ORDER BY t.{pk}", params)
                base = self.base_clock
                width = len(info.columns)
                pk_index = info.pk_index
                while rows := cursor.fetchmany(1000):
                    for row in rows:
                        yield Item(info, row[pk_index], row[width] or base, row[:width])

        def consume(items: Iterator[Item]) -> None:
            saved_at = [0.0]

            def ack(batch: list[Item]) -> None:
                nonlocal done
                last = batch[-1]
                # The resume point, at most once a second: a restart sends at most a second
                # of rows again (idempotent), and the push pays no local commit per request.
                if time.monotonic() - saved_at[0] >= 1.0:
                    self._write_state(**{key: {"table": last.table.name, "after": last.pk}})
                    saved_at[0] = time.monotonic()
                report.backfilled += len(batch)
                done += len(batch)
                if progress is not None:
                    progress("backfill", last.table.name, done, sum(totals.values()))

            self._pack(items, lambda batch: self._send(batch, ack, report, None))

        self._streamed(produce, consume)
        # Outbox entries written before the snapshot are covered for rows that exist (the
        # backfill sent their state at the snapshot, or they have a newer entry); entries of
        # deleted rows stay (a backfill sends no tombstones). Only for tables sent entirely
        # from this snapshot (not the one a resumed backfill started in).
        covered = order[order.index(start_table) + 1:] if start_table else order
        with self.store.backend.transaction() as conn:
            if snapshot_hi[0] is not None:
                for name in covered:
                    info = self.by_name[name]
                    conn.execute(
                        f"DELETE FROM {OUTBOX} WHERE tbl = ? AND seq <= ? AND pk IN "
                        f"(SELECT {quote(info.pk)} FROM {quote(name)})", (name, snapshot_hi[0]))
            self._set(conn, key, {"done": True})

    # -- pull -------------------------------------------------------------------------------------

    def pull(self, *, progress: Progress | None = None, max_pages: int | None = None
             ) -> PullReport:
        """Apply other devices' writes from D1's change log (see the module docstring)."""
        if not self.config.pull:
            raise ConfigurationError(
                "pulling is off for this store: set HIVE_STORE_D1_PULL=1 (or pull = true in "
                "the D1 config file)")
        started = time.perf_counter()
        report = PullReport()
        with self._lock:
            try:
                self.ensure_schema()
                for page in itertools.count():
                    if max_pages is not None and page >= max_pages:
                        break
                    if not self._pull_page(report, progress):
                        break
            except BaseException as exc:
                if isinstance(exc, Exception):
                    self._write_state(**{self._key("last_pull"): {
                        "at": _now(), "ok": False, "error": str(exc)[:500]}})
                raise
            report.seconds = time.perf_counter() - started
            report.cursor = int(self._state(self._key("pull_cursor")) or 0)
            self._write_state(**{self._key("last_pull"): {
                "at": _now(), "ok": True, "applied": report.applied + report.deleted,
                "cursor": report.cursor, "seconds": round(report.seconds, 3)}})
        return report

    def _select_rows(self, info: TableInfo, where: str) -> str:
        exprs = _aliased(schema.select_list(info, "t"), len(info.columns))
        return (f"SELECT {exprs}, t._hlc AS h, t._origin AS o FROM {quote(info.name)} AS t "
                f"WHERE {where}")

    def _pull_page(self, report: PullReport, progress: Progress | None) -> bool:
        cursor = int(self._state(self._key("pull_cursor")) or 0)
        page = self.config.pull_page
        window = (f"SELECT seq FROM {schema.CHANGES} WHERE seq > ?1 ORDER BY seq LIMIT ?2")
        in_range = (f"seq > ?1 AND seq <= (SELECT coalesce(max(seq), ?1) FROM ({window}))")
        statements = [Statement(f"SELECT coalesce(max(seq), ?1) AS hi, count(*) AS n "
                                f"FROM ({window})", (cursor, page))]
        for info in self.tables:
            where = (f"t.{quote(info.pk)} IN (SELECT pk FROM {schema.CHANGES} WHERE tbl = "
                     f"{literal(info.name)} AND {in_range}) AND t._origin != ?3")
            statements.append(Statement(self._select_rows(info, where),
                                        (cursor, page, self.device_id)))
        statements.append(Statement(
            f"SELECT tb.tbl, tb.pk, tb.hlc FROM {schema.TOMBSTONES} AS tb WHERE (tb.tbl, tb.pk) "
            f"IN (SELECT tbl, pk FROM {schema.CHANGES} WHERE {in_range}) AND tb.origin != ?3",
            (cursor, page, self.device_id)))
        results = self.client.batch(statements, raw=True)
        head = results[0][1][0] if results[0][1] else [cursor, 0]
        hi, count = int(head[0]), int(head[1])
        if count == 0:
            return False
        candidates: dict[tuple[str, Any], tuple[str, tuple[Any, ...] | None]] = {}
        for info, (_, rows) in zip(self.tables, results[1:-1], strict=True):
            width = len(info.columns)
            for row in rows:
                values = tuple(schema.from_json_value(v, k)
                               for v, k in zip(row[:width], info.kinds, strict=True))
                candidates[(info.name, values[info.pk_index])] = (str(row[width]), values)
        for tbl, pk, hlc in results[-1][1]:
            owner = self.by_name.get(tbl)
            if owner is None:
                continue
            pk = schema.from_json_value(pk, owner.kinds[owner.pk_index])
            current = candidates.get((tbl, pk))
            if current is None or str(hlc) > current[0]:
                candidates[(tbl, pk)] = (str(hlc), None)
        self._apply(candidates, report, cursor_to=hi)
        report.pages += 1
        if progress is not None:
            progress("pull", "", report.applied + report.deleted + report.skipped, None)
        return count >= page

    def _apply(self, candidates: dict[tuple[str, Any], tuple[str, tuple[Any, ...] | None]],
               report: PullReport, *, cursor_to: int | None) -> list[tuple[str, Any]]:
        """Apply remote row versions newer than the local ones, in one local transaction with
        the cursor; returns the keys applied."""
        applied: list[tuple[str, Any]] = []
        by_table: dict[str, list[tuple[Any, str, tuple[Any, ...] | None]]] = {}
        for (tbl, pk), (hlc, values) in candidates.items():
            by_table.setdefault(tbl, []).append((pk, hlc, values))
        seen = ""
        with self._applying(), self.store.backend.transaction() as conn:
            clear_dead = self._has_dead(conn, "pull")
            local: dict[tuple[str, Any], str] = {}
            for tbl, entries in by_table.items():
                keys = [e[0] for e in entries]
                for chunk in schema.key_chunks(keys, _READ_CHUNK):
                    marks = ", ".join("?" for _ in chunk)
                    for pk, hlc in conn.execute(
                            f"SELECT pk, hlc FROM {CLOCK} WHERE tbl = ? AND pk IN ({marks})",
                            [tbl, *chunk]):
                        local[(tbl, pk)] = hlc
            upserts = [(t, e) for t in self.tables for e in by_table.get(t.name, ())
                       if e[2] is not None]
            deletes = [(t, e) for t in reversed(self.tables) for e in by_table.get(t.name, ())
                       if e[2] is None]
            for info, (pk, hlc, values) in [*upserts, *deletes]:
                seen = max(seen, hlc)
                if hlc <= local.get((info.name, pk), ""):
                    report.skipped += 1
                    continue
                try:
                    self._write_pulled(info, pk, values)
                except (HiveStoreError, sqlite3.Error) as exc:
                    op = "upsert" if values is not None else "delete"
                    letter = DeadLetter(info.name, pk, "pull", op, str(exc))
                    self._record_dead(conn, letter, hlc)
                    report.dead_lettered.append(letter)
                    log.warning("could not apply pulled %s %s %r: %s", op, info.name, pk,
                                str(exc)[:300])
                    continue
                conn.execute(
                    f"INSERT INTO {CLOCK} (tbl, pk, hlc, deleted) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (tbl, pk) DO UPDATE SET hlc = excluded.hlc, "
                    "deleted = excluded.deleted", (info.name, pk, hlc, int(values is None)))
                conn.execute(f"DELETE FROM {OUTBOX} WHERE tbl = ? AND pk = ?", (info.name, pk))
                if clear_dead:
                    conn.execute(f"DELETE FROM {DEAD} WHERE tbl = ? AND pk = ? AND "
                                 "direction = 'pull'", (info.name, pk))
                applied.append((info.name, pk))
                if values is None:
                    report.deleted += 1
                else:
                    report.applied += 1
            if seen:
                last = self._get(conn, "clock") or [0, 0]
                self._set(conn, "clock", list(clock_receive(int(last[0]), int(last[1]), seen)))
            if cursor_to is not None:
                key = self._key("pull_cursor")
                self._set(conn, key, max(int(self._get(conn, key) or 0), cursor_to))
        return applied

    def _write_pulled(self, info: TableInfo, pk: Any, values: tuple[Any, ...] | None) -> None:
        """Write one pulled row exactly as D1 holds it (a savepoint of the pull's transaction)
        and tell the other plugins, as a repository write would."""
        codec = self._codecs[info.name]
        with self.store.backend.transaction() as conn:
            if values is None:
                cur = conn.execute(f"DELETE FROM {quote(info.name)} WHERE {quote(info.pk)} = ?",
                                   (pk,))
                if cur.rowcount:
                    self.store.backend.record(Change(Op.DELETE, info.name, pk, None))
                return
            entity = codec.from_row(values)  # a row hive-store could not read is refused
            conn.execute(_local_upsert_sql(info), values)
            self.store.backend.record(Change(Op.UPSERT, info.name, pk, entity))

    # -- dead letters -----------------------------------------------------------------------------

    def dead_letters(self, direction: str | None = None) -> list[dict[str, Any]]:
        """The dead-letter table's rows (oldest first)."""
        sql = (f"SELECT tbl, pk, direction, op, hlc, error, status, code, attempts, "
               f"first_failed_at, last_failed_at FROM {DEAD}")
        params: list[Any] = []
        if direction is not None:
            sql += " WHERE direction = ?"
            params.append(direction)
        names = ("table", "pk", "direction", "op", "hlc", "error", "status", "code",
                 "attempts", "first_failed_at", "last_failed_at")
        with self.store.backend.connection() as conn:
            rows = conn.execute(sql + " ORDER BY first_failed_at, tbl, pk", params).fetchall()
        return [dict(zip(names, row, strict=True)) for row in rows]

    def retry_dead_letters(self, *, progress: Progress | None = None
                           ) -> tuple[PushReport, PullReport | None]:
        """Queue the refused rows again and push them (and re-fetch rows a pull could not
        apply); rows refused again return to the table."""
        with self._lock:
            with self.store.backend.transaction() as conn:
                rows = conn.execute(
                    f"SELECT d.tbl, d.pk, coalesce(c.hlc, d.hlc) FROM {DEAD} AS d LEFT JOIN "
                    f"{CLOCK} AS c ON c.tbl = d.tbl AND c.pk = d.pk "
                    "WHERE d.direction = 'push'").fetchall()
                # The letters stay until D1 takes the row (its ack removes them); refused
                # again, their attempts go up.
                conn.executemany(f"INSERT INTO {OUTBOX} (tbl, pk, hlc) VALUES (?, ?, ?)", rows)
                pulls = conn.execute(
                    f"SELECT tbl, pk FROM {DEAD} WHERE direction = 'pull'").fetchall()
            push_report = self.push(progress=progress)
            pull_report = self._refetch(pulls) if pulls else None
        return push_report, pull_report

    def _refetch(self, keys: Sequence[tuple[str, Any]]) -> PullReport:
        report = PullReport()
        grouped: dict[str, list[Any]] = {}
        for tbl, pk in keys:
            if tbl in self.by_name:
                grouped.setdefault(tbl, []).append(pk)
        candidates: dict[tuple[str, Any], tuple[str, tuple[Any, ...] | None]] = {}
        for tbl, pks in grouped.items():
            info = self.by_name[tbl]
            for chunk in schema.key_chunks(pks, 90):
                marks = ", ".join("?" for _ in chunk)
                params = [schema.to_json_value(k) for k in chunk]
                rows_res, tomb_res = self.client.batch([
                    Statement(self._select_rows(info, f"t.{quote(info.pk)} IN ({marks})"),
                              params),
                    Statement(f"SELECT pk, hlc FROM {schema.TOMBSTONES} WHERE tbl = "
                              f"{literal(tbl)} AND pk IN ({marks})", params),
                ], raw=True)
                width = len(info.columns)
                for row in rows_res[1]:
                    values = tuple(schema.from_json_value(v, k)
                                   for v, k in zip(row[:width], info.kinds, strict=True))
                    candidates[(tbl, values[info.pk_index])] = (str(row[width]), values)
                for pk, hlc in tomb_res[1]:
                    pk = schema.from_json_value(pk, info.kinds[info.pk_index])
                    if (tbl, pk) not in candidates or str(hlc) > candidates[(tbl, pk)][0]:
                        candidates[(tbl, pk)] = (str(hlc), None)
        self._apply(candidates, report, cursor_to=None)
        return report

    # -- verify -----------------------------------------------------------------------------------

    def verify(self, *, tables: Sequence[str] | None = None, chunk: int = 500,
               show: int = 20, progress: Progress | None = None) -> VerifyReport:
        """Compare every mirrored table here and in D1: row counts, then a digest per chunk
        of ``chunk`` keys; differing chunks are compared row by row. At most ``show`` keys
        are listed per kind of difference."""
        started = time.perf_counter()
        report = VerifyReport()
        names = list(tables) if tables else [t.name for t in self.tables]
        for name in names:
            if name not in self.by_name:
                raise ConfigurationError(f"{name!r} is not a mirrored table")
        with self._lock:
            self.ensure_schema()
            for name in names:
                report.tables.append(self._verify_table(self.by_name[name], chunk, show,
                                                        progress))
        report.pending = self.pending()
        report.seconds = time.perf_counter() - started
        return report

    def _verify_table(self, info: TableInfo, size: int, show: int,
                      progress: Progress | None) -> TableDiff:
        diff = TableDiff(info.name)
        t, pk = quote(info.name), quote(info.pk)
        exprs = schema.select_list(info)
        local_chunks: list[tuple[Any, Any, int, str]] = []  # (lo, hi, count, digest)
        with self._snapshot() as conn:
            diff.local_count = int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
            cursor = conn.execute(f"SELECT {exprs} FROM {t} ORDER BY {pk}")
            lo: Any = None
            while rows := cursor.fetchmany(size):
                hi = rows[-1][info.pk_index]
                local_chunks.append((lo, hi, len(rows), _digest(rows)))
                lo = hi
        ranges: list[tuple[Any, Any]] = [(c[0], c[1]) for c in local_chunks]
        tail_lo = local_chunks[-1][1] if local_chunks else None
        remote_rows: dict[int, list[list[Any]]] = {}
        select = f"SELECT {_aliased(schema.select_list(info), len(info.columns))} FROM {t}"
        count_stmt = Statement(f"SELECT count(*) AS n FROM {t}")
        per_request = 8
        first = True
        for start in range(0, len(ranges), per_request):
            batch = []
            if first:
                batch.append(count_stmt)
            for lo_, hi_ in ranges[start:start + per_request]:
                where, params = _range(pk, lo_, hi_)
                batch.append(Statement(f"{select} WHERE {where} ORDER BY {pk}", params))
            results = self.client.batch(batch, raw=True)
            if first:
                diff.remote_count = int(results[0][1][0][0])
                results = results[1:]
                first = False
            for offset, (_, rows) in enumerate(results):
                remote_rows[start + offset] = rows
            if progress is not None:
                progress("verify", info.name, min(start + per_request, len(ranges)),
                         len(ranges))
        if first:
            diff.remote_count = int(self.client.batch([count_stmt], raw=True)[0][1][0][0])
        extra: list[list[Any]] = []
        after = tail_lo
        while True:  # rows beyond the last local key (paged)
            where, params = _range(pk, after, None)
            rows = self.client.batch([Statement(
                f"{select} WHERE {where} ORDER BY {pk} LIMIT {size}", params)], raw=True)[0][1]
            extra.extend(rows)
            if len(rows) < size:
                break
            after = schema.from_json_value(rows[-1][info.pk_index], info.kinds[info.pk_index])
        diff.chunks = len(local_chunks) + (1 if extra else 0)
        pending, dead = self._explanations(info.name)

        def note(kind: list[Any], key: Any) -> None:
            if (key in pending or key in dead) and len(diff.explained) < show:
                diff.explained.append(key)
            if len(kind) < show:
                kind.append(key)

        for index, (lo_, hi_, count, digest) in enumerate(local_chunks):
            remote = [_normal(r, info) for r in remote_rows.get(index, [])]
            if len(remote) == count and _digest(remote) == digest:
                continue
            diff.chunks_differing += 1
            with self.store.backend.connection() as conn:
                where, params = _range(pk, lo_, hi_)
                local = conn.execute(f"SELECT {exprs} FROM {t} WHERE {where} ORDER BY {pk}",
                                     params).fetchall()
            self._diff_rows(info, local, remote, diff, note)
        if extra:
            diff.chunks_differing += 1
            self._diff_rows(info, [], [_normal(r, info) for r in extra], diff, note)
        return diff

    @staticmethod
    def _diff_rows(info: TableInfo, local: Sequence[Sequence[Any]],
                   remote: Sequence[Sequence[Any]], diff: TableDiff,
                   note: Callable[[list[Any], Any], None]) -> None:
        mine = {row[info.pk_index]: [schema.canonical(v) for v in row] for row in local}
        theirs = {row[info.pk_index]: list(row) for row in remote}
        for key in mine.keys() - theirs.keys():
            note(diff.missing_remote, key)
        for key in theirs.keys() - mine.keys():
            note(diff.missing_local, key)
        for key in mine.keys() & theirs.keys():
            if mine[key] != theirs[key]:
                note(diff.different, key)

    def _explanations(self, table: str) -> tuple[set[Any], set[Any]]:
        with self.store.backend.connection() as conn:
            pending = {r[0] for r in conn.execute(
                f"SELECT DISTINCT pk FROM {OUTBOX} WHERE tbl = ?", (table,))}
            dead = {r[0] for r in conn.execute(f"SELECT pk FROM {DEAD} WHERE tbl = ?",
                                               (table,))}
        return pending, dead

    # -- status -----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Local facts only (no request to D1): backlog, dead letters, last push and pull."""
        with self.store.backend.connection() as conn:
            rows, keys, oldest = conn.execute(
                f"SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT tbl, pk FROM "
                f"{OUTBOX})), (SELECT hlc FROM {OUTBOX} ORDER BY seq LIMIT 1) FROM "
                f"{OUTBOX}").fetchone()
            dead = dict(conn.execute(
                f"SELECT direction, count(*) FROM {DEAD} GROUP BY direction").fetchall())
            state = {k: self._get(conn, self._key(k)) for k in
                     ("schema", "backfill", "pull_cursor", "last_push", "last_pull")}
        oldest_age = None
        if oldest:
            with contextlib.suppress(ValueError):
                oldest_age = max(0.0, (self._wall() - parse_clock(oldest)[0]) / 1000)
        return {
            "configured": True,
            **self.config.describe(),
            "device_id": self.device_id,
            "tables": [t.name for t in self.tables],
            "outbox": {"entries": rows, "rows": keys, "oldest_age_s": oldest_age},
            "dead_letter": {"push": dead.get("push", 0), "pull": dead.get("pull", 0)},
            "remote_schema": "created" if state["schema"] else "not yet (first push)",
            "backfill": ("done" if state["backfill"] == {"done": True}
                         else "in progress" if state["backfill"] else "not yet (first push)"),
            "pull_cursor": state["pull_cursor"] or 0,
            "last_push": state["last_push"],
            "last_pull": state["last_pull"],
        }


def _aliased(select_list: str, count: int) -> str:
    """Give each of ``count`` comma-separated expressions an alias ``c0 … cN``."""
    parts = _split_exprs(select_list)
    assert len(parts) == count, (len(parts), count)
    return ", ".join(f"{p} AS c{i}" for i, p in enumerate(parts))


def _split_exprs(text: str) -> list[str]:
    out, depth, start = [], 0, 0
    quote_char = ""
    for i, ch in enumerate(text):
        if quote_char:
            if ch == quote_char:
                quote_char = ""
            continue
        if ch in "'\"":
            quote_char = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
    out.append(text[start:].strip())
    return out


def _range(pk: str, lo: Any, hi: Any) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if lo is not None:
        clauses.append(f"{pk} > ?")
        params.append(schema.to_json_value(lo))
    if hi is not None:
        clauses.append(f"{pk} <= ?")
        params.append(schema.to_json_value(hi))
    return (" AND ".join(clauses) or "1"), params


def _normal(row: Sequence[Any], info: TableInfo) -> list[Any]:
    """A row read back from D1 in the form the local ``select_list`` gives (big integers
    stay TEXT on both sides)."""
    del info
    return [schema.canonical(v) for v in row]


def _digest(rows: Sequence[Sequence[Any]]) -> str:
    text = json.dumps([[schema.canonical(v) for v in row] for row in rows],
                      separators=(",", ":"), ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


_LOCAL_UPSERTS: dict[TableInfo, str] = {}


def _local_upsert_sql(info: TableInfo) -> str:
    sql = _LOCAL_UPSERTS.get(info)
    if sql is None:
        cols = ", ".join(quote(c) for c in info.columns)
        marks = ", ".join("?" for _ in info.columns)
        rest = [quote(c) for c in info.columns if c != info.pk]
        action = ("DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in rest)) if rest \
            else "DO NOTHING"
        sql = (f"INSERT INTO {quote(info.name)} ({cols}) VALUES ({marks}) "
               f"ON CONFLICT ({quote(info.pk)}) {action}")
        _LOCAL_UPSERTS[info] = sql
    return sql
