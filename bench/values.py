"""What the value rules cost: time filters through the comparison keys, partial updates, and
the key indexes on writes — hive-store against raw ``sqlite3`` in the same run.

    python bench/values.py [--quick] [--json out.json]

Scenarios (each: raw and hive-store alternately, ``--repeats`` times, median ratio of rates):

* ``recent``: ``activity_log.find(created_at__ge=t, order_by=["-created_at", "-id"],
  limit=50)`` (what ``recent_activity`` runs; the key index ``hive_store_time_*``) against raw
  ``SELECT … WHERE created_at >= ? ORDER BY created_at DESC, id DESC LIMIT 50`` (Hive's raw
  index; raw text comparison, which is wrong on tables that mix timestamp forms: the speed
  reference, not a correct answer);
* ``scan``: ``messages.find(timestamp__ge=t)`` selecting the last 1 % of a table with no
  timestamp index (the key expression evaluated per row) against raw ``WHERE timestamp >= ?``;
* ``conversation``: ``messages.find(conversation_id=c, timestamp__ge=t, order_by="timestamp")``
  (an indexed lookup, the key on ~100 rows) against the raw equivalent;
* ``update``: ``conversations.update(id, quality_score=…)`` (read the row, write the changed
  columns) against raw ``UPDATE … SET quality_score = ? WHERE id = ?`` in autocommit;
* ``insert_indexed``: raw ``INSERT`` of activity_log rows with the key index against the same
  without it (what the index costs every writer, the old apps included).

Numbers vary with load: compare ratios from one run, not absolute rates between runs.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hive_store_sqlite.timekeys import index_name

import hive_store
from hive_store.values import format_timestamp

BASE = datetime(2025, 1, 1, tzinfo=UTC)
PRAGMAS = ("PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL", "PRAGMA foreign_keys = ON",
           "PRAGMA cache_size = -32000", "PRAGMA mmap_size = 268435456",
           "PRAGMA temp_store = MEMORY", "PRAGMA busy_timeout = 30000")


def raw_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for p in PRAGMAS:
        conn.execute(p)
    return conn


def build(folder: Path, rows: int) -> Path:
    """A migrated database with ``rows`` messages and activity entries (hive-store's forms)."""
    path = folder / "values.db"
    hive_store.open(f"sqlite://{path}").close()
    conn = raw_connect(path)
    conn.execute("BEGIN")
    convs = [f"c{i}" for i in range(max(1, rows // 100))]
    stamp = format_timestamp(BASE)
    conn.executemany("INSERT INTO conversations (id, created_at, updated_at) VALUES (?, ?, ?)",
                     [(c, stamp, stamp) for c in convs])
    conn.executemany(
        "INSERT INTO messages (id, conversation_id, role, content, timestamp) "
        "VALUES (?, ?, 'user', ?, ?)",
        [(f"m{i}", convs[i % len(convs)], "x" * 200,
          format_timestamp(BASE + timedelta(seconds=i))) for i in range(rows)])
    conn.executemany(
        "INSERT INTO activity_log (event_type, created_at) VALUES ('export', ?)",
        [(format_timestamp(BASE + timedelta(seconds=i)),) for i in range(rows)])
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


def rate(fn: Callable[[], Any], n: int) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def ab(raw: Callable[[], float], ours: Callable[[], float], repeats: int) -> dict[str, Any]:
    raws, oures = [], []
    for i in range(repeats):
        pair = (raw, ours) if i % 2 == 0 else (ours, raw)
        for fn in pair:
            (raws if fn is raw else oures).append(fn())
    ratios = [o / r for o, r in zip(oures, raws, strict=True)]
    return {"raw": round(statistics.median(raws)), "ours": round(statistics.median(oures)),
            "ratio": round(statistics.median(ratios), 3),
            "ratio_min": round(min(ratios), 3), "ratio_max": round(max(ratios), 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller tables, fewer repeats")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = 20_000 if args.quick else 200_000
    n = 200 if args.quick else 1000
    repeats = args.repeats or (3 if args.quick else 7)
    folder = Path(tempfile.mkdtemp(prefix="hive-values-bench-"))
    results: dict[str, Any] = {}
    try:
        path = build(folder, rows)
        store = hive_store.open(f"sqlite://{path}")
        conn = raw_connect(path)
        rng = random.Random(5)
        pivots = [BASE + timedelta(seconds=rng.randrange(rows)) for _ in range(n)]
        late = BASE + timedelta(seconds=int(rows * 0.99))

        def raw_recent() -> float:
            sql = ("SELECT * FROM activity_log WHERE created_at >= ? "
                   "ORDER BY created_at DESC, id DESC LIMIT 50")
            return rate(lambda: [conn.execute(sql, (format_timestamp(p),)).fetchall()
                                 for p in pivots], n)

        def ours_recent() -> float:
            find = store.activity_log.find
            return rate(lambda: [find(created_at__ge=p, order_by=["-created_at", "-id"], limit=50)
                                 for p in pivots], n)

        results["recent"] = ab(raw_recent, ours_recent, repeats)

        scans = max(5, n // 40)

        def raw_scan() -> float:
            sql = "SELECT * FROM messages WHERE timestamp >= ?"
            return rate(lambda: [conn.execute(sql, (format_timestamp(late),)).fetchall()
                                 for _ in range(scans)], scans)

        def ours_scan() -> float:
            return rate(lambda: [store.messages.find(timestamp__ge=late) for _ in range(scans)],
                        scans)

        results["scan"] = ab(raw_scan, ours_scan, repeats)
        convs = [f"c{rng.randrange(max(1, rows // 100))}" for _ in range(n)]

        def raw_conv() -> float:
            sql = ("SELECT * FROM messages WHERE conversation_id = ? AND timestamp >= ? "
                   "ORDER BY timestamp")
            return rate(lambda: [conn.execute(sql, (c, format_timestamp(BASE))).fetchall()
                                 for c in convs], n)

        def ours_conv() -> float:
            find = store.messages.find
            return rate(lambda: [find(conversation_id=c, timestamp__ge=BASE, order_by="timestamp")
                                 for c in convs], n)

        results["conversation"] = ab(raw_conv, ours_conv, repeats)
        ids = [f"c{rng.randrange(max(1, rows // 100))}" for _ in range(n)]

        def raw_update() -> float:
            def run() -> None:
                for i, c in enumerate(ids):
                    conn.execute("UPDATE conversations SET quality_score = ? WHERE id = ?",
                                 (i / n, c))
            return rate(run, n)

        def ours_update() -> float:
            def run() -> None:
                update = store.conversations.update
                for i, c in enumerate(ids):
                    update(c, quality_score=i / n + 0.5)
            return rate(run, n)

        results["update"] = ab(raw_update, ours_update, repeats)
        store.close()
        conn.close()

        # what the key index costs a writer: the same inserts with and without it
        bare = folder / "bare.db"
        shutil.copy(path, bare)
        with sqlite3.connect(bare) as c:
            c.execute(f"DROP INDEX {index_name('activity_log', 'created_at')}")
        inserts = [(format_timestamp(BASE + timedelta(seconds=rows + i)),) for i in range(n * 10)]

        def insert_into(p: Path) -> float:
            c = raw_connect(p)
            try:
                def run() -> None:
                    c.execute("BEGIN IMMEDIATE")
                    c.executemany("INSERT INTO activity_log (event_type, created_at) "
                                  "VALUES ('export', ?)", inserts)
                    c.execute("ROLLBACK")
                return rate(run, len(inserts))
            finally:
                c.close()

        results["insert_indexed"] = ab(lambda: insert_into(bare), lambda: insert_into(path),
                                       repeats)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    width = max(len(k) for k in results)
    print(f"{'scenario':{width}}  {'raw/s':>10} {'ours/s':>10}  ratio  (min-max)")
    for key, r in results.items():
        print(f"{key:{width}}  {r['raw']:>10,} {r['ours']:>10,}  {r['ratio']:.2f}  "
              f"({r['ratio_min']:.2f}-{r['ratio_max']:.2f})")
    print(f"\n{rows:,} rows, {repeats} repeats; insert_indexed: raw = without the key index, "
          "ours = with it", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "repeats": repeats, **results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
