"""Soak: the kill -9 loop of tests/test_crash.py, for longer, with its numbers.

    python bench/soak.py [--kills 500] [--seed 1] [--max-delay-ms 50] [--db-dir DIR]
                         [--json out.json]

A fork server forks one writer per kill; each writer opens the store with ``hive_store.open``,
writes consensus runs, multi-row transactions and deletions, and acknowledges every commit on
stdout after it returned. The parent SIGKILLs it after a random delay (10% of the time while it
is still opening), reopens the database with ``hive_store.open`` and checks integrity, that
every acknowledged commit is present, that nothing partial is visible and that at most one
commit per kill is durable but unacknowledged. Exit status 1 on any violation.

Needs the ``test`` extra (pytest is imported by the test module this reuses).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_crash import KillLoop  # noqa: E402 - after the path set-up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-delay-ms", type=float, default=50.0,
                    help="kill up to this long after the writer is ready")
    ap.add_argument("--kills-per-server", type=int, default=50,
                    help="kills before the fork server itself is replaced")
    ap.add_argument("--db-dir", type=Path, default=None,
                    help="where to put crash.db (default: a temporary folder, removed after)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()

    folder = args.db_dir or Path(tempfile.mkdtemp(prefix="hive-soak-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        loop = KillLoop(folder, seed=args.seed, kills_per_server=args.kills_per_server,
                        max_delay=args.max_delay_ms / 1000)
        chunk = 50
        done = 0
        while done < args.kills:
            n = min(chunk, args.kills - done)
            stats = loop.run(n)
            done += n
            print(f"[{done}/{args.kills}] {stats.summary()}", flush=True)
        size = (folder / "crash.db").stat().st_size
        print(f"\nsoak: {stats.summary()} db={size / 1e6:.1f} MB")
        for problem in stats.problems[:20]:
            print("PROBLEM", problem)
        if args.json:
            args.json.write_text(json.dumps({**asdict(stats), "db_bytes": size}, indent=2))
        failed = bool(stats.problems or stats.lost or stats.partial or stats.integrity_failures
                      or stats.max_new_unacked > 1)
    finally:
        if args.db_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
