"""Many writers on one PostgreSQL store (issue 18, item 5): 8 processes x 4 threads recording
consensus runs and updating the same rows for 60 s, then the checks of tests/pg_soak.py.

    python bench/pg_soak.py [--seconds 60] [--processes 8] [--threads 4] [--url URL]
                            [--json out.json]

Without ``--url`` it starts a throwaway server (hive_store_postgres.server; fsync off, as in
the tests) and a fresh database. Exit status 1 if any check fails: an unhandled error, a read
that saw part of a run, an acknowledged run missing or duplicated, a lost increment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hive_store
from tests.pg_soak import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--url", help="a migrated PostgreSQL store (default: a throwaway one)")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    server = None
    url = args.url
    if url is None:
        from hive_store_postgres.server import TemporaryServer

        server = TemporaryServer().start()
        server.execute("CREATE DATABASE soak")
        url = server.url("soak")
        hive_store.open(url).close()
    try:
        figures = run(url, processes=args.processes, threads=args.threads,
                      seconds=args.seconds)
    finally:
        if server is not None:
            server.stop()
    figures["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    figures["cpu_count"] = os.cpu_count()
    errors, partial = figures.pop("errors"), figures.pop("partial_reads")
    figures["errors"], figures["partial_reads"] = len(errors), len(partial)
    print(json.dumps(figures, indent=2))
    for line in (errors + partial)[:10]:
        print(line, file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    ok = (not errors and not partial and figures["runs_missing"] == 0
          and figures["duplicates"] == 0 and figures["lost_increments"] == 0
          and figures["messages"] == figures["messages_expected"])
    print("all checks passed" if ok else "CHECKS FAILED", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
