"""Benchmark: the first push (backfill) of 100,000 messages to a real local D1, against a
minimal raw client sending the same rows in equally sized batches.

    python bench/d1_push.py [--messages 100000] [--rounds 3] [--json out.json]

Needs Node and ``npm ci --prefix d1`` (Miniflare + workerd: the real D1 engine, behind the
REST-shaped worker ``d1/worker.mjs``, started here on 127.0.0.1 with a random port).

Builds a hive-store database with ``--messages`` messages in conversations of 20, then, in
alternating rounds, each on a new (empty) local D1:

* ours: ``hive_store_d1`` enabled on the store and ``push()``: the remote schema (tables,
        change-log triggers, tombstone guard), then every row in foreign-key order as
        idempotent upserts guarded by the row clock (``INSERT … SELECT … FROM (VALUES …) WHERE
        NOT EXISTS tombstone … ON CONFLICT DO UPDATE … WHERE excluded._hlc > t._hlc``), with
        the local acknowledgement of each request;
* raw:  the same tables created from the local ``CREATE TABLE`` statements, then the same rows
        read with a plain SELECT and sent as multi-row ``INSERT … VALUES`` statements (as many
        rows per statement as 100 parameters allow) in requests of the same number of rows as
        ours used, over the same httpx client library — nothing else.

Prints rows/s of both (best round), the requests and rows per request, and the ratio
raw time / our time (target >= 0.8, and >= 500 rows per request).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hive_store_d1
import httpx
from hive_store_d1 import D1Config, Secret

import hive_store

ROOT = Path(__file__).resolve().parents[1]
D1_DIR = ROOT / "d1"
ACCOUNT = "0123456789abcdef0123456789abcdef"
DATABASE = "00000000-0000-4000-8000-0000000bench"
TOKEN = "bench-token-0123456789"


class LocalD1:
    """``d1/serve.mjs`` in its own process group, stopped by signalling the group."""

    def __init__(self) -> None:
        if shutil.which("node") is None:
            sys.exit("node is not installed: the benchmark needs the local D1 (Miniflare)")
        if not (D1_DIR / "node_modules" / "miniflare").is_dir():
            sys.exit(f"d1/node_modules is missing: run `npm ci --prefix {D1_DIR}`")
        env = {**os.environ, "PORT": "0", "DATABASE_ID": DATABASE, "API_TOKEN": TOKEN,
               "STOP_ON_STDIN_EOF": "1", "NODE_NO_WARNINGS": "1"}
        self.proc = subprocess.Popen(["node", str(D1_DIR / "serve.mjs")], cwd=D1_DIR, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        line = b""
        while time.monotonic() < deadline and not line.startswith(b"{"):
            if select.select([self.proc.stdout], [], [], 0.2)[0]:
                line = self.proc.stdout.readline()
            if self.proc.poll() is not None:
                break
        if not line.startswith(b"{"):
            self.stop()
            sys.exit("the local D1 did not start")
        self.url = json.loads(line)["ready"].rstrip("/")
        self.api_url = f"{self.url}/client/v4"

    def stop(self) -> None:
        pgid = self.proc.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                continue


def build(path: Path, messages: int) -> None:
    """A migrated store with ``messages`` messages, 20 per conversation (raw inserts: the
    rows exist before mirroring is enabled, as for a user turning it on)."""
    hive_store.open(f"sqlite://{path}").close()
    conn = sqlite3.connect(path)
    conversations = max(1, messages // 20)
    with conn:
        conn.executemany(
            "INSERT INTO conversations (id, total_cost, input_tokens, output_tokens, start_time, "
            "end_time, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ((f"bench-c-{i:07d}", i * 0.0001, 120 + i % 500, 300 + i % 900,
              "2026-07-03T12:00:00.000000+00:00", "2026-07-03T12:00:05.000000+00:00",
              "2026-07-03T12:00:00.000000+00:00", "2026-07-03T12:00:05.000000+00:00")
             for i in range(conversations)))
        conn.executemany(
            "INSERT INTO messages (id, conversation_id, role, content, stage, model_used, "
            "timestamp) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((f"bench-m-{i:08d}", f"bench-c-{i // 20:07d}", "assistant",
              f"stage output {i}: WAL gives concurrent readers and one writer. " * 3,
              "refiner", "openai/gpt-4o", "2026-07-03T12:00:01.000000+00:00")
             for i in range(messages)))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def config(d1: LocalD1) -> D1Config:
    return D1Config(account_id=ACCOUNT, database_id=DATABASE, token=Secret(TOKEN),
                    url=d1.api_url)


def run_ours(path: Path, d1: LocalD1) -> dict[str, Any]:
    with hive_store.open(f"sqlite://{path}") as store:
        with store.backend.transaction() as conn:  # a first push, every round
            conn.execute("DELETE FROM hive_store_d1_state WHERE key LIKE '%:%'")
        mirror = hive_store_d1.enable(store, config(d1))
        start = time.perf_counter()
        report = mirror.push()
        seconds = time.perf_counter() - start
        requests = mirror.client.stats.requests
        rows = report.rows
        assert report.dead_lettered == [], report.dead_lettered[:3]
        tables = [t.name for t in mirror.tables]
    data_requests = report.requests
    return {"seconds": seconds, "rows": rows, "requests": requests,
            "data_requests": data_requests, "rows_per_request": rows / max(1, data_requests),
            "tables": tables}


def run_raw(path: Path, d1: LocalD1, tables: list[str], rows_per_request: int
            ) -> dict[str, Any]:
    endpoint = f"/accounts/{ACCOUNT}/d1/database/{DATABASE}/query"
    client = httpx.Client(base_url=d1.api_url, timeout=60, trust_env=False,
                          headers={"Authorization": f"Bearer {TOKEN}"})
    local = sqlite3.connect(path)
    start = time.perf_counter()
    requests = rows_sent = 0

    def post(batch: list[dict[str, Any]]) -> None:
        nonlocal requests
        body = json.dumps({"batch": batch}, separators=(",", ":"), ensure_ascii=False)
        resp = client.post(endpoint, content=body.encode(),
                           headers={"Content-Type": "application/json"})
        data = resp.json()
        if not data.get("success"):
            raise SystemExit(f"raw client refused: {data.get('errors')}")
        requests += 1

    ddl = [{"sql": local.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND "
                                 "name = ?", (t,)).fetchone()[0]} for t in tables]
    post(ddl)
    pending: list[dict[str, Any]] = []
    in_request = 0
    for table in tables:
        cols = [r[1] for r in local.execute(f'PRAGMA table_info("{table}")')]
        per = 100 // len(cols)
        names = ", ".join(f'"{c}"' for c in cols)
        row_marks = "(" + ", ".join("?" for _ in cols) + ")"
        cursor = local.execute(f'SELECT {names} FROM "{table}"')
        while chunk := cursor.fetchmany(per):
            take = chunk
            while take:
                room = rows_per_request - in_request
                part, take = take[:room], take[room:]
                pending.append({"sql": f'INSERT INTO "{table}" ({names}) VALUES '
                                       + ", ".join(row_marks for _ in part),
                                "params": [v for row in part for v in row]})
                in_request += len(part)
                rows_sent += len(part)
                if in_request >= rows_per_request:
                    post(pending)
                    pending, in_request = [], 0
    if pending:
        post(pending)
    seconds = time.perf_counter() - start
    local.close()
    client.close()
    return {"seconds": seconds, "rows": rows_sent, "requests": requests,
            "rows_per_request": rows_sent / max(1, requests - 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("HIVE_STORE_LOAD_PLUGINS", "")
    os.environ["HIVE_STORE_MEMORY_AUTO_ASSIGN"] = "0"
    folder = Path(tempfile.mkdtemp(prefix="d1-bench-"))
    try:
        path = folder / "bench.db"
        t0 = time.perf_counter()
        build(path, args.messages)
        print(f"built {args.messages:,} messages in {time.perf_counter() - t0:.1f} s")
        ours: list[dict[str, Any]] = []
        raw: list[dict[str, Any]] = []
        for round_ in range(args.rounds):
            # an empty D1 for every run: a new local D1 (dropping 100k rows takes longer)
            d1 = LocalD1()
            try:
                ours.append(run_ours(path, d1))
            finally:
                d1.stop()
            d1 = LocalD1()
            try:
                raw.append(run_raw(path, d1, ours[-1]["tables"],
                                   round(ours[-1]["rows_per_request"])))
            finally:
                d1.stop()
            print(f"round {round_ + 1}: ours {ours[-1]['seconds']:.2f} s "
                  f"({ours[-1]['rows']:,} rows, {ours[-1]['requests']} requests), "
                  f"raw {raw[-1]['seconds']:.2f} s ({raw[-1]['rows']:,} rows, "
                  f"{raw[-1]['requests']} requests)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    best_ours = min(r["seconds"] for r in ours)
    best_raw = min(r["seconds"] for r in raw)
    result = {
        "messages": args.messages,
        "rows": ours[0]["rows"],
        "ours": {"best_s": round(best_ours, 3),
                 "median_s": round(statistics.median(r["seconds"] for r in ours), 3),
                 "rows_per_s": round(ours[0]["rows"] / best_ours),
                 "requests": ours[0]["requests"], "data_requests": ours[0]["data_requests"],
                 "rows_per_request": round(ours[0]["rows_per_request"], 1)},
        "raw": {"best_s": round(best_raw, 3),
                "median_s": round(statistics.median(r["seconds"] for r in raw), 3),
                "rows_per_s": round(raw[0]["rows"] / best_raw), "requests": raw[0]["requests"],
                "rows_per_request": round(raw[0]["rows_per_request"], 1)},
        "ratio_best": round(best_raw / best_ours, 3),
        "ratio_median": round(statistics.median(r["seconds"] for r in raw)
                              / statistics.median(r["seconds"] for r in ours), 3),
    }
    print(json.dumps(result, indent=2))
    verdict = ("ok" if result["ratio_best"] >= 0.8 and result["ours"]["rows_per_request"] >= 500
               else "BELOW TARGET")
    print(f"ours/raw speed: {result['ratio_best']:.2f}x (target >= 0.8), "
          f"{result['ours']['rows_per_request']:.0f} rows per request (target >= 500): {verdict}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
