"""hive-store's PostgreSQL backend against raw psycopg: ``python bench/run.py --backend
postgresql`` (issue 18, item 8).

    python bench/run.py --backend postgresql [--quick] [--json out.json] [--only KEYS]
                        [--repeats N] [--pg-url URL]

The raw side is psycopg 3 written by hand with the statements hive-store's repository runs
(checked, not assumed: before any timing the hand-written SQL is compared with what the
repository generates, and the run stops with exit status 3 if they differ): ``COPY`` for
bulk inserts, prepared statements for point and range reads (psycopg prepares a statement
after its fifth execution on a connection, on both sides), a server-side cursor in a
read-only transaction for streaming. Both sides talk to the same server over the same Unix
socket; each scenario alternates the sides (ABAB…, order flipped every repeat) and reports
the median of the per-repeat ratios hive-store ÷ raw (rates: higher is better).

Scenarios and targets (issue 18):

``add_many``  messages in batches of 1 000 (one transaction each)               ≥ 0.8
``get``       point reads of random messages by key                              ≥ 0.6
``find``      ``find(conversation_id=…, order_by="timestamp")``, ~100 rows each  ≥ 0.7
``iter``      every message streamed, 1 000 rows per fetch                       ≥ 0.6

Without ``--pg-url`` a throwaway server is started (hive_store_postgres.server, fsync off:
the same for both sides, commits are not what is measured here).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import Data, Measured, fmt, machine, message_set, rnd, use_plugins, warn_if_loaded

import hive_store

TARGETS = {"add_many": 0.8, "get": 0.6, "find": 0.7, "iter": 0.6}
COLS = '"id", "conversation_id", "role", "content", "stage", "model_used", "timestamp"'
# what a read selects: the timestamp as the text SQLite would hold (the repository's row form)
READ = ('"id", "conversation_id", "role", "content", "stage", "model_used", '
        """to_char("timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')""")
RAW_SQL = {  # written by hand; compared with the repository's before anything is timed
    "copy": f'COPY "messages" ({COLS}) FROM STDIN',
    "get": f'SELECT {READ} FROM "messages" WHERE "id" = %s',
    "find": (f'SELECT {READ} FROM "messages" WHERE "conversation_id" = %s '
             'ORDER BY "timestamp" NULLS FIRST'),  # SQLite's NULL order: timestamp is nullable
    "iter": f'SELECT {READ} FROM "messages" ORDER BY "id"',
    "conv": 'INSERT INTO "conversations" ("id", "created_at", "updated_at") '
            "VALUES (%s, %s::timestamptz, %s::timestamptz)",
}


@dataclass
class Sizes:
    add_many: int
    gets: int
    finds: int
    read_rows: int
    repeats: int


FULL = Sizes(add_many=50_000, gets=20_000, finds=1_000, read_rows=100_000, repeats=5)
QUICK = Sizes(add_many=10_000, gets=3_000, finds=200, read_rows=20_000, repeats=3)


@dataclass
class Outcome:
    key: str
    unit: str
    raw: float
    ours: float
    ratio: float
    ratio_min: float
    ratio_max: float
    ratio_cpu: float
    target: float
    met: bool
    repeats: int
    extra: dict[str, Any] = field(default_factory=dict)


def fail(message: str) -> None:
    print(f"\nFAIRNESS CHECK FAILED: {message}\nNo numbers were reported.", file=sys.stderr)
    sys.exit(3)


class Server:
    """Databases on one server: a migrated template, fresh copies of it, one seeded copy."""

    def __init__(self, url: str | None) -> None:
        import psycopg

        self.temporary = None
        if url is None:
            from hive_store_postgres.server import TemporaryServer

            self.temporary = TemporaryServer().start()
            url = self.temporary.url("postgres")
        self.base = url
        self.admin = psycopg.connect(self._conninfo("postgres"), autocommit=True)
        self.n = 0
        self.admin.execute("DROP DATABASE IF EXISTS bench_template WITH (FORCE)")
        self.admin.execute("CREATE DATABASE bench_template")
        hive_store.open(self.url("bench_template")).close()

    def url(self, name: str) -> str:
        head, _, query = self.base.partition("?")
        return f"{head.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")

    def _conninfo(self, name: str) -> str:
        from hive_store_postgres.options import parse

        from hive_store.url import parse_url

        _, params = parse(parse_url(self.url(name)), {})
        return " ".join(f"{k}='{v}'" for k, v in params.items())

    def fresh(self) -> str:
        self.n += 1
        name = f"bench_{self.n}"
        self.admin.execute(f"CREATE DATABASE {name} TEMPLATE bench_template")
        return name

    def drop(self, name: str) -> None:
        self.admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def raw(self, name: str) -> Any:
        import psycopg

        return psycopg.connect(self._conninfo(name), autocommit=True)

    def close(self) -> None:
        self.admin.close()
        if self.temporary is not None:
            self.temporary.stop()


def check_sql(store: Any) -> dict[str, str]:
    """The hand-written statements must be the repository's."""
    repo = store.messages
    generated = {
        "copy": repo._sql_copy, "get": repo._sql_get,
        "find": repo._select({"conversation_id": "x"}, "timestamp", None, 0)[0],
        "iter": repo._select({}, "id", None, 0)[0],
    }
    for key, sql in generated.items():
        if sql != RAW_SQL[key]:
            fail(f"{key}: raw runs {RAW_SQL[key]!r}, hive-store runs {sql!r}")
    return {k: "same" for k in generated}


def seed(server: Server, name: str, conv_rows: Sequence[Any], rows: Sequence[Any]) -> None:
    with server.raw(name) as conn, conn.transaction():
        with conn.cursor() as cur:
            cur.executemany(RAW_SQL["conv"], conv_rows)
            with cur.copy(RAW_SQL["copy"]) as copy:
                for row in rows:
                    copy.write_row(row)
        conn.execute("ANALYZE messages")


def timed(fn: Callable[[], Any], work: float) -> Measured:
    cpu = time.process_time()
    start = time.perf_counter()
    fn()
    return Measured(work, time.perf_counter() - start, cpu=time.process_time() - cpu)


def run_pairs(key: str, unit: str, repeats: int, raw: Callable[[], Measured],
              ours: Callable[[], Measured]) -> Outcome:
    rs: list[Measured] = []
    os_: list[Measured] = []
    for rep in range(repeats):
        order = ((raw, rs), (ours, os_)) if rep % 2 == 0 else ((ours, os_), (raw, rs))
        for fn, out in order:
            out.append(fn())
    ratios = [o.rate / r.rate for r, o in zip(rs, os_, strict=True)]
    cpu = [o.cpu_rate / r.cpu_rate for r, o in zip(rs, os_, strict=True)]
    ratio = statistics.median(ratios)
    return Outcome(key, unit, statistics.median(m.rate for m in rs),
                   statistics.median(m.rate for m in os_), ratio, min(ratios), max(ratios),
                   statistics.median(cpu), TARGETS[key], ratio >= TARGETS[key], repeats)


def bench_add_many(server: Server, sizes: Sizes, repeats: int) -> Outcome:
    data = Data(11)
    sets = [message_set(data, sizes.add_many) for _ in range(2 * repeats)]
    batch = 1000
    it = iter(sets)

    def raw() -> Measured:
        ms = next(it)
        name = server.fresh()
        seed(server, name, ms.conv_rows, [])
        conn = server.raw(name)

        def work() -> None:
            for start in range(0, len(ms.rows), batch):
                with conn.transaction(), conn.cursor() as cur, cur.copy(RAW_SQL["copy"]) as cp:
                    for row in ms.rows[start:start + batch]:
                        cp.write_row(row)

        try:
            return timed(work, len(ms.rows))
        finally:
            conn.close()
            server.drop(name)

    def ours() -> Measured:
        ms = next(it)
        name = server.fresh()
        seed(server, name, ms.conv_rows, [])
        store = hive_store.open(server.url(name))

        def work() -> None:
            for start in range(0, len(ms.entities), batch):
                store.messages.add_many(ms.entities[start:start + batch])

        try:
            return timed(work, len(ms.entities))
        finally:
            store.close()
            server.drop(name)

    return run_pairs("add_many", "rows/s", repeats, raw, ours)


class Seeded:
    def __init__(self, server: Server, sizes: Sizes) -> None:
        data = Data(13)
        self.set = message_set(data, sizes.read_rows)
        self.name = server.fresh()
        seed(server, self.name, self.set.conv_rows, self.set.rows)
        self.server = server


def bench_reads(seeded: Seeded, sizes: Sizes, repeats: int) -> list[Outcome]:
    server, name = seeded.server, seeded.name
    rng = random.Random(5)
    ids = [r[0] for r in seeded.set.rows]
    convs = seeded.set.conv_ids
    raw_conn = server.raw(name)
    store = hive_store.open(server.url(name))
    check_sql(store)
    out = []
    try:
        get_keys = [rng.choice(ids) for _ in range(sizes.gets)]

        def raw_get() -> Measured:
            execute = raw_conn.execute
            sql = RAW_SQL["get"]
            return timed(lambda: [execute(sql, (k,)).fetchone() for k in get_keys], len(get_keys))

        def ours_get() -> Measured:
            get = store.messages.get
            return timed(lambda: [get(k) for k in get_keys], len(get_keys))

        out.append(run_pairs("get", "gets/s", repeats, raw_get, ours_get))
        find_keys = [rng.choice(convs) for _ in range(sizes.finds)]
        rows_found = [0, 0]

        def raw_find() -> Measured:
            sql = RAW_SQL["find"]

            def work() -> None:
                rows_found[0] = sum(len(raw_conn.execute(sql, (c,)).fetchall())
                                    for c in find_keys)
            return timed(work, len(find_keys))

        def ours_find() -> Measured:
            find = store.messages.find

            def work() -> None:
                rows_found[1] = sum(len(find(conversation_id=c, order_by="timestamp"))
                                    for c in find_keys)
            return timed(work, len(find_keys))

        out.append(run_pairs("find", "finds/s", repeats, raw_find, ours_find))
        if rows_found[0] != rows_found[1]:
            fail(f"find: raw found {rows_found[0]} rows, hive-store {rows_found[1]}")
        out[-1].extra["rows_per_find"] = rnd(rows_found[0] / len(find_keys))
        streamed = [0, 0]

        def raw_iter() -> Measured:
            def work() -> None:
                with raw_conn.transaction():
                    raw_conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, "
                                     "READ ONLY")
                    cur = raw_conn.cursor(name="bench_iter")
                    cur.itersize = 1000
                    cur.execute(RAW_SQL["iter"])
                    n = 0
                    while rows := cur.fetchmany(1000):
                        n += len(rows)
                    cur.close()
                streamed[0] = n
            return timed(work, len(ids))

        def ours_iter() -> Measured:
            def work() -> None:
                streamed[1] = sum(1 for _ in store.messages.iter(order_by="id",
                                                                 batch_size=1000))
            return timed(work, len(ids))

        out.append(run_pairs("iter", "rows/s", repeats, raw_iter, ours_iter))
        if streamed[0] != streamed[1] != len(ids):
            fail(f"iter: raw streamed {streamed[0]} rows, hive-store {streamed[1]}")
    finally:
        raw_conn.close()
        store.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backend", choices=("postgresql",), default="postgresql")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--only", metavar="KEYS", help="add_many,get,find,iter")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--pg-url", help="a server to use (default: a throwaway one)")
    args = parser.parse_args(argv)
    use_plugins("core", keep=("postgres",))
    sizes = QUICK if args.quick else FULL
    repeats = args.repeats or sizes.repeats
    wanted = args.only.split(",") if args.only else list(TARGETS)
    load = warn_if_loaded()
    began = time.perf_counter()
    server = Server(args.pg_url)
    outcomes: list[Outcome] = []
    try:
        with hive_store.open(server.url("bench_template")) as store:
            fairness = check_sql(store)
        if "add_many" in wanted:
            outcomes.append(bench_add_many(server, sizes, repeats))
        if {"get", "find", "iter"} & set(wanted):
            seeded = Seeded(server, sizes)
            outcomes += [o for o in bench_reads(seeded, sizes, repeats) if o.key in wanted]
        import psycopg

        with server.raw("postgres") as conn:
            server_version = conn.execute("SHOW server_version").fetchone()[0]
            fsync = conn.execute("SHOW fsync").fetchone()[0]
    finally:
        server.close()
    total = time.perf_counter() - began
    head = (f"{'scenario':<10} {'unit':<8} {'raw':>10} {'ours':>10} {'ratio':>6} {'min-max':>11} "
            f"{'cpu':>5} {'target':>6} {'met':>4}")
    print(head)
    print("-" * len(head))
    for o in outcomes:
        print(f"{o.key:<10} {o.unit:<8} {fmt(o.raw):>10} {fmt(o.ours):>10} {o.ratio:>6.2f} "
              f"{o.ratio_min:>5.2f}-{o.ratio_max:<5.2f} {o.ratio_cpu:>5.2f} {o.target:>6.2f} "
              f"{'yes' if o.met else 'NO':>4}")
    missed = [o.key for o in outcomes if not o.met]
    print("\ntargets not met: " + (", ".join(missed) if missed else "none"))
    info = machine(backend="postgresql", server_version=server_version, fsync=fsync,
                   psycopg=psycopg.__version__, quick=args.quick, sizes=asdict(sizes),
                   repeats=repeats, sql=fairness, loadavg_start=[round(x, 2) for x in load],
                   seconds=round(total, 1))
    print(f"PostgreSQL {server_version} (fsync {fsync}) · psycopg {psycopg.__version__} · "
          f"{info['cpu_count']} CPUs · loadavg {info['loadavg_end']} · {total:.0f} s")
    if args.json:
        doc = {"script": "run --backend postgresql", "machine": info,
               "scenarios": [{**asdict(o), **{k: rnd(getattr(o, k)) for k in (
                   "raw", "ours", "ratio", "ratio_min", "ratio_max", "ratio_cpu")}}
                   for o in outcomes]}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
