"""Benchmark: adopting a large legacy Hive database vs a raw copy of its tables.

    python bench/adopt.py [--rows 1000000] [--json out.json]

Builds a legacy database with the v10 fixture's schema (the one the old runner left, with the
dangling consensus_profiles_backup foreign key, so adoption must rebuild ``conversations``)
and fills it with ``--rows`` rows: 20% conversations, 80% messages. Then, on two copies of it:

* raw:  the reference — ``CREATE TABLE copy AS SELECT`` / ``INSERT INTO … SELECT`` of every
        table with rows, in one transaction (SQLite copying the data once, nothing else);
* ours: ``hive_store.open()`` on the file, i.e. detection, the online backup, the rebuild,
        index fixes, the foreign-key check and the seed migration.

Prints both times, the ratio ours/raw (target <= 1.5) and peak memory (tracemalloc, Python
allocations) of the adoption, which must not grow with the row count.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import hive_store

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "legacy" / "hive-ai-v10.db"


def build(path: Path, rows: int) -> None:
    src = Path(FIXTURE)
    if not src.exists():
        sys.exit(f"legacy fixture not found at {src}")
    shutil.copy(src, path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    n_conv = rows // 5
    n_msg = rows - n_conv
    with conn:
        conn.executemany(
            "INSERT INTO conversations (id, user_id, total_cost, input_tokens, output_tokens, "
            "created_at, updated_at) VALUES (?, NULL, ?, ?, ?, ?, ?)",
            ((f"bench-c-{i:08d}", i * 0.001, i % 5000, i % 7000,
              "2025-07-03 12:00:00", "2025-07-03T12:00:00.000000+00:00") for i in range(n_conv)))
        conn.executemany(
            "INSERT INTO messages (id, conversation_id, role, content, stage, model_used, "
            "timestamp) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((f"bench-m-{i:08d}", f"bench-c-{i % n_conv:08d}", "assistant",
              f"stage output {i}; with text " * 3, "refiner", "openai/gpt-4o",
              "2025-07-03 12:00:01") for i in range(n_msg)))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def raw_copy(path: Path) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
    start = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    for t in tables:
        conn.execute(f'CREATE TABLE "copy_{t}" AS SELECT * FROM "{t}"')
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def adopt(path: Path) -> float:
    start = time.perf_counter()
    hive_store.open(f"sqlite://{path}").close()
    return time.perf_counter() - start


def adopt_peak_memory(path: Path) -> int:
    """Peak Python allocations of an adoption (a separate run: tracemalloc slows Python)."""
    tracemalloc.start()
    hive_store.open(f"sqlite://{path}").close()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.getLogger("hive_store").setLevel(logging.ERROR)
    from hive_store.plugins import get_plugins

    get_plugins()  # plugin discovery happens once per process; not part of the adoption
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "legacy.db"
        t0 = time.perf_counter()
        build(template, args.rows)
        print(f"built a {args.rows:,}-row legacy database "
              f"({template.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t0:.1f} s")
        results = []
        for i in range(args.repeats):
            raw_path, ours_path = Path(tmp) / f"raw{i}.db", Path(tmp) / f"ours{i}.db"
            shutil.copy(template, raw_path)
            shutil.copy(template, ours_path)
            raw = raw_copy(raw_path)
            ours = adopt(ours_path)
            shutil.copy(template, raw_path)
            for extra in Path(tmp).glob(f"raw{i}.db-*"):
                extra.unlink()
            peak = adopt_peak_memory(raw_path)
            results.append((raw, ours, peak))
            print(f"  run {i + 1}: raw copy {raw:.2f} s, adoption {ours:.2f} s "
                  f"(ratio {ours / raw:.2f}), peak Python memory {peak / 2**20:.1f} MiB")
            for p in Path(tmp).glob(f"*{i}.db*"):
                p.unlink()
        ratios = sorted(o / r for r, o, _ in results)
        median = ratios[len(ratios) // 2]
        peak = max(p for _, _, p in results)
        print(f"adoption / raw copy: median {median:.2f} (min {ratios[0]:.2f}, "
              f"max {ratios[-1]:.2f}); target <= 1.5: {'met' if median <= 1.5 else 'NOT met'}; "
              f"peak memory {peak / 2**20:.1f} MiB")
        if args.json:
            args.json.write_text(json.dumps({
                "scenario": "adopt_legacy", "rows": args.rows, "ratio": median,
                "ratio_min": ratios[0], "ratio_max": ratios[-1], "target": 1.5,
                "met": median <= 1.5, "peak_bytes": peak,
                "runs": [{"raw_s": r, "ours_s": o, "peak_bytes": p} for r, o, p in results],
            }, indent=2))


if __name__ == "__main__":
    main()
