"""Benchmark: the first open of a big legacy Hive history vs a raw copy of its tables.

    python bench/adopt.py                      # ~200 MB v9 and Electron files, 3 runs each
    python bench/adopt.py --size-mb 20 --runs 1 --quick   # a development reading (~1 min)
    python bench/adopt.py --json out.json      # also write the results as JSON
    python bench/adopt.py --workdir /var/tmp/hs-bench     # where the big files are kept

Builds (once, reused between runs: they are kept in ``--workdir``, outside the repository)
legacy files of about ``--size-mb`` by scaling the rows of two legacy fixtures with plain
``sqlite3`` — every row of the big tables copied again under new keys, foreign keys kept
consistent:

* ``v9``: ``tests/fixtures/legacy/hive-ai-v9.db``, Hive's real runner stuck at version 9 (the
  state most users' files are in);
* ``electron``: ``hive-ai-electron.db``, a v9 file the Electron app also opened (extra
  columns on ``messages``, its own tables).

Then, per run, on fresh copies of the built file (copying is not timed):

* **raw**: the reference, ``CREATE TABLE copy_x AS SELECT * FROM x`` of every table in one
  transaction (WAL, ``synchronous=NORMAL``: what hive-store runs with), then ``close()`` (its
  checkpoint; the first open's close checkpoints too) — SQLite copying the data once and
  nothing else;
* **first open**: ``hive_store.open()`` as a user's first command does it — detection, the
  backup, adoption, the core and plugin migrations (the memory plugin's first full-text index
  is built by its migration), then waiting for the memory indexer to be idle, and ``close()``.
  **adoption** is the part of it the adoption report times (backup included).

Prints per scenario the median and range of adoption/raw (target <= 1.5) and first-open/raw
(target <= 4), the time of each phase, and the file growth: the database (+ -wal) after the
first open against before, and the backup written next to it. Ratios are measured in the same
run on the same machine; absolute times depend on it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hive_store

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "legacy"
SCENARIOS = {"v9": "hive-ai-v9.db", "electron": "hive-ai-electron.db"}
BUILDER = 1  # bump when build() changes: built files are reused by name

# How one copy of a table's rows is made: column -> SQL expression over the original row
# (":s" is the copy's suffix). Keys get the suffix, so copies never collide and foreign keys
# between copies stay consistent; INTEGER keys are left to SQLite (NULL).
SCALE: dict[str, dict[str, str]] = {
    "conversations": {"id": "id || :s"},
    "messages": {"id": "id || :s", "conversation_id": "conversation_id || :s",
                 "parent_message_id": "parent_message_id || :s"},
    "knowledge_conversations": {"id": "id || :s", "conversation_id": "conversation_id || :s"},
    "curator_truths": {"id": "NULL", "conversation_id": "conversation_id || :s"},
    "conversation_usage": {"id": "NULL", "conversation_id": "conversation_id || :s"},
    "activity_log": {"id": "NULL", "conversation_id": "conversation_id || :s"},
    "stage_outputs": {"id": "NULL", "conversation_id": "conversation_id || :s"},
    "d1_usage_queue": {"id": "NULL", "conversation_id": "conversation_id || :s"},
}


def size_of(path: Path) -> int:
    """The database and its -wal."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal"))
               if p.exists())


def build(scenario: str, size_mb: int, workdir: Path) -> Path:
    """The scaled legacy file (built once per scenario, size and builder version)."""
    path = workdir / f"{scenario}-{size_mb}mb-b{BUILDER}.db"
    if path.exists():
        return path
    src = FIXTURES / SCENARIOS[scenario]
    if not src.exists():
        sys.exit(f"legacy fixture not found at {src}")
    partial = path.with_name(path.name + ".building")
    shutil.copy(src, partial)
    t0 = time.perf_counter()
    conn = sqlite3.connect(partial, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # the file keeps its legacy journal mode
    conn.execute("PRAGMA foreign_keys = OFF")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    plans = []
    for table, rewrite in SCALE.items():
        if table not in tables:
            continue
        cols = [r[1] for r in conn.execute("SELECT * FROM pragma_table_info(?)", (table,))]
        conn.execute(f'CREATE TEMP TABLE "orig_{table}" AS SELECT * FROM "{table}"')
        exprs = [rewrite.get(c, f'"{c}"') for c in cols]
        names = ", ".join('"' + c.replace('"', '""') + '"' for c in cols)
        plans.append(f'INSERT INTO "{table}" ({names}) '
                     f'SELECT {", ".join(exprs)} FROM temp."orig_{table}"')
    copy = 0
    target = size_mb * 2**20
    while partial.stat().st_size < target:
        conn.execute("BEGIN")
        for _ in range(20):
            copy += 1
            for sql in plans:
                conn.execute(sql, {"s": f"~{copy}"})
        conn.execute("COMMIT")
    conn.close()
    os.replace(partial, path)
    print(f"  built {path.name}: {size_of(path) / 2**20:.0f} MiB, {copy} copies of the "
          f"fixture's rows, in {time.perf_counter() - t0:.1f} s", flush=True)
    return path


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
    conn.close()  # its checkpoint too: the first open's close() checkpoints as well
    return time.perf_counter() - start


def first_open(path: Path) -> dict[str, Any]:
    """``hive_store.open()`` on a legacy file until the memory index is idle, then close."""
    start = time.perf_counter()
    store = hive_store.open(f"sqlite://{path}")
    try:
        opened = time.perf_counter() - start
        memory = getattr(store, "memory", None)
        if memory is not None:
            memory.wait_idle()
        idle = time.perf_counter() - start
        migrator = store.plugins.migrator(store.backend)
        durations = {f"{a.namespace} {a.version:04d} {a.name}": a.duration_ms / 1000
                     for a in migrator.applied()
                     if (a.namespace, a.version) != ("hive_store", 1)}  # = the adoption
    finally:
        closing = time.perf_counter()
        store.close()
    total = time.perf_counter() - start
    with sqlite3.connect(path) as conn:
        report = json.loads(conn.execute("SELECT report FROM hive_store_adoption").fetchone()[0])
    backups = list(path.parent.glob(f"{path.name}.pre-hive-store-*.bak"))
    return {"total_s": total, "open_s": opened, "until_idle_s": idle,
            "close_s": total - (closing - start),
            "adoption_s": report["seconds"], "adoption_phases_s": report["phases"],
            "migrations_s": durations, "rebuilt_tables": report["rebuilt_tables"],
            "size_after": size_of(path), "backup_size": sum(b.stat().st_size for b in backups)}


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run_scenario(scenario: str, template: Path, runs: int, scratch: Path) -> dict[str, Any]:
    results = []
    for i in range(runs):
        raw_path, ours_path = scratch / f"raw{i}.db", scratch / f"ours{i}.db"
        shutil.copy(template, raw_path)
        raw = raw_copy(raw_path)
        for p in scratch.glob(f"raw{i}.db*"):
            p.unlink()
        shutil.copy(template, ours_path)
        ours = first_open(ours_path)
        for p in scratch.glob(f"ours{i}.db*"):
            p.unlink()
        results.append({"raw_s": raw, **ours})
        print(f"  run {i + 1}: raw copy {raw:.2f} s; first open {ours['total_s']:.2f} s "
              f"({ours['total_s'] / raw:.2f}x), adoption {ours['adoption_s']:.2f} s "
              f"({ours['adoption_s'] / raw:.2f}x)", flush=True)
    before = size_of(template)
    adoption = summary([r["adoption_s"] / r["raw_s"] for r in results])
    whole = summary([r["total_s"] / r["raw_s"] for r in results])
    phases: dict[str, float] = {}
    for key in results[0]["adoption_phases_s"]:
        phases[f"adoption: {key}"] = statistics.median(r["adoption_phases_s"][key]
                                                       for r in results)
    for key in results[0]["migrations_s"]:
        phases[f"migration {key}"] = statistics.median(r["migrations_s"][key] for r in results)
    phases["memory indexer until idle (after open)"] = statistics.median(
        r["until_idle_s"] - r["open_s"] for r in results)
    phases["close (checkpoint)"] = statistics.median(r["close_s"] for r in results)
    phases["rest of open (WAL switch, plugins' store_opened, ...)"] = statistics.median(
        r["open_s"] - r["adoption_s"] - sum(r["migrations_s"].values()) for r in results)
    return {
        "scenario": scenario, "size_before": before, "runs": results,
        "raw_s": summary([r["raw_s"] for r in results]),
        "first_open_s": summary([r["total_s"] for r in results]),
        "adoption_s": summary([r["adoption_s"] for r in results]),
        "adoption_ratio": adoption, "first_open_ratio": whole,
        "targets": {"adoption_ratio": 1.5, "first_open_ratio": 4.0},
        "met": {"adoption_ratio": adoption["median"] <= 1.5,
                "first_open_ratio": whole["median"] <= 4.0},
        "phases_median_s": phases,
        "growth": {"after_over_before": statistics.median(r["size_after"] for r in results)
                   / before,
                   "backup_bytes": statistics.median(r["backup_size"] for r in results)},
        "rebuilt_tables": results[0]["rebuilt_tables"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "hive-store-bench-adopt",
                        help="where the built legacy files are kept (reused between runs)")
    parser.add_argument("--quick", action="store_true",
                        help="a development reading: one run unless --runs says otherwise")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick and args.runs == 3:
        args.runs = 1
    logging.getLogger("hive_store").setLevel(logging.ERROR)
    from hive_store.plugins import get_plugins

    get_plugins()  # plugin discovery happens once per process; not part of the first open
    args.workdir.mkdir(parents=True, exist_ok=True)
    out = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for scenario in args.only or list(SCENARIOS):
            print(f"{scenario}:", flush=True)
            template = build(scenario, args.size_mb, args.workdir)
            result = run_scenario(scenario, template, args.runs, Path(tmp))
            out.append(result)
            a, w = result["adoption_ratio"], result["first_open_ratio"]
            print(f"  {scenario} ({result['size_before'] / 2**20:.0f} MiB, {args.runs} runs): "
                  f"adoption / raw copy: median {a['median']:.2f} ({a['min']:.2f}-{a['max']:.2f},"
                  f" target <= 1.5: {'met' if result['met']['adoption_ratio'] else 'NOT met'}); "
                  f"first open / raw copy: median {w['median']:.2f} "
                  f"({w['min']:.2f}-{w['max']:.2f}, target <= 4: "
                  f"{'met' if result['met']['first_open_ratio'] else 'NOT met'})")
            print(f"  raw copy median {result['raw_s']['median']:.2f} s; first open median "
                  f"{result['first_open_s']['median']:.2f} s; rebuilt tables: "
                  f"{', '.join(result['rebuilt_tables']) or 'none'}")
            g = result["growth"]
            print(f"  file growth: {g['after_over_before']:.2f}x the legacy file "
                  f"(database + -wal), plus a {g['backup_bytes'] / 2**20:.0f} MiB backup")
            for phase, seconds in result["phases_median_s"].items():
                print(f"    {phase:<55} {seconds:8.3f} s")
    if args.json:
        args.json.write_text(json.dumps({"benchmark": "adopt", "size_mb": args.size_mb,
                                         "scenarios": out}, indent=2))


if __name__ == "__main__":
    main()
