"""What each operation costs as the data grows (issue 17 item 4).

    python bench/scale.py [--sizes 10k,100k,1M] [--workdir DIR] [--json out.json]
                          [--plot out.png] [--quick] [--repeats N] [--memory-max 1M]

For each size (messages; 100 per conversation) one database is built once with the fastest
path (raw 100-row multi-VALUES INSERTs into a file ``hive_store.open`` created, synchronous
OFF while building) and kept under ``--workdir`` (default ``$XDG_CACHE_HOME/hive-store-bench``
or ``~/.cache/hive-store-bench``), outside the repository; later runs reuse it. The 10M size is
opt-in (``--sizes 10k,100k,1M,10M``): it took 8 minutes to build on the
loaded dev VM and holds 7.4 GB.

Operations, each through hive-store's public API (``--plugins core`` except the search):

* ``get``: ``messages.get(id)`` for random ids
* ``find``: ``messages.find(conversation_id=…)`` (100 rows)
* ``count``: ``messages.count(conversation_id=…)`` (indexed filter)
* ``count_scan``: ``messages.count(role="user")`` (a filter no index covers: a full scan)
* ``iter``: ``messages.iter()`` over the first 100k rows (µs per row)
* ``record_consensus``: one run (11 rows over 7 tables), deleted again after the measurement
  so the cached file keeps its size
* ``raw get``, ``raw find``, ``raw count_scan``: the same reads in raw ``sqlite3`` (growth
  that raw shows too comes from SQLite or the page cache, not from hive-store)
* ``memory.search``: two words of a random message (the memory plugin; its index is built
  once per size in a copy of the file, up to ``--memory-max`` rows)

Reported: µs per operation per size (median and min-max over repeats), and the growth from
each size to the next as a log-log slope (0 = flat, 1 = linear). An operation whose cost grows
faster than log n is flagged: cost(largest) / cost(smallest) above twice
log(n_largest) / log(n_smallest). Timings are wall time of one thread; the first pass over
each operation is a warm-up and not counted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common import (
    BATCH_ROWS,
    SQL_FIND_MSG,
    SQL_GET_MSG,
    SQL_INSERT_CONV,
    SQL_INSERT_MSG,
    SQL_INSERT_MSG_BATCH,
    STAGES,
    Data,
    machine,
    open_store,
    raw_connect,
    spread,
    use_plugins,
    warn_if_loaded,
)

import hive_store
from hive_store import StageOutput

BUILD_VERSION = 1  # bump when the generated data changes: cached files are rebuilt
OPS = ("get", "find", "count", "count_scan", "iter", "record_consensus", "memory.search",
       "raw get", "raw find", "raw count_scan")


def parse_size(text: str) -> int:
    text = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * mult)


def label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1_000}k"


def default_workdir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hive-store-bench"


# -- building the databases -----------------------------------------------------------------------


def build(workdir: Path, n: int) -> Path:
    """The cached ``n``-message database (built when missing or from another generator)."""
    path = workdir / f"scale-{label(n)}.db"
    meta = path.with_suffix(".json")
    want = {"rows": n, "build_version": BUILD_VERSION}
    if path.exists() and meta.exists() and json.loads(meta.read_text()) == want:
        return path
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    meta.unlink(missing_ok=True)
    print(f"  building {label(n)} messages in {path} …", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    hive_store.open(f"sqlite:///{path}").close()
    data = Data(seed=31)
    conv = data.conversation_rows(max(1, n // 100))
    conv_ids = [c[0] for c in conv]
    conn = raw_connect(path)
    conn.execute("PRAGMA synchronous = OFF")  # building only: a crash means a rebuild
    conn.execute("PRAGMA cache_size = -1000000")  # 1 GB while building: the indexes stay hot
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(SQL_INSERT_CONV, conv)
    chunk: list[Any] = []
    done = 0
    for row in data.message_rows(n, conv_ids):
        chunk += row
        if len(chunk) == BATCH_ROWS * 7:
            conn.execute(SQL_INSERT_MSG_BATCH, chunk)
            chunk = []
            done += BATCH_ROWS
            if done % 1_000_000 == 0:
                conn.execute("COMMIT")
                conn.execute("BEGIN IMMEDIATE")
                print(f"    {done:,} rows, {time.perf_counter() - t0:.0f} s", file=sys.stderr,
                      flush=True)
    for i in range(0, len(chunk), 7):
        conn.execute(SQL_INSERT_MSG, chunk[i:i + 7])
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.close()
    meta.write_text(json.dumps(want))
    print(f"  built in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return path


def build_memory(path: Path) -> Path:
    """A copy of ``path`` with the memory plugin's index (built by its migration)."""
    mpath = path.with_name(path.stem + "-memory.db")
    meta = mpath.with_suffix(".json")
    want = json.loads(path.with_suffix(".json").read_text())
    if mpath.exists() and meta.exists() and json.loads(meta.read_text()) == want:
        return mpath
    print(f"  indexing {mpath.name} for memory.search …", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    src = raw_connect(path)
    dst = raw_connect(mpath)
    src.backup(dst)
    src.close()
    dst.close()
    with hive_store.open(f"sqlite:///{mpath}") as store:
        store.memory.flush()
    meta.write_text(json.dumps(want))
    print(f"  indexed in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return mpath


# -- measuring ------------------------------------------------------------------------------------


def sample(path: Path, n_ids: int, n_conv: int, seed_: int) -> tuple[list[str], list[str],
                                                                    list[str]]:
    """Random message ids, conversation ids and two-word queries from the file."""
    rng = random.Random(seed_)
    conn = raw_connect(path)
    try:
        top = conn.execute("SELECT max(rowid) FROM messages").fetchone()[0]
        rowids = [rng.randint(1, top) for _ in range(n_ids)]
        ids = [r[0] for r in conn.execute(
            f"SELECT id FROM messages WHERE rowid IN ({','.join(map(str, rowids))})")]
        rng.shuffle(ids)
        convs = [r[0] for r in conn.execute(
            "SELECT id FROM conversations ORDER BY random() LIMIT ?", (n_conv,))]
        texts = [r[0] for r in conn.execute(
            f"SELECT content FROM messages WHERE rowid IN ({','.join(map(str, rowids[:50]))})")]
    finally:
        conn.close()
    queries = []
    for text in texts:
        words = [w for w in text.split() if len(w) >= 4]
        if len(words) >= 2:
            queries.append(" ".join(words[:2]))
    return ids, convs, queries


def per_op(fn: Callable[[], int], repeats: int) -> dict[str, float]:
    """µs per operation: ``fn`` runs a batch and returns how many operations it did."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        k = fn()
        times.append((time.perf_counter() - t0) / k * 1e6)
    return spread(times)


def measure_core(path: Path, repeats: int, quick: bool) -> dict[str, dict[str, float]]:
    ids, convs, _ = sample(path, 2_000 if quick else 10_000, 200 if quick else 1_000, 1)
    out: dict[str, dict[str, float]] = {}
    data = Data(seed=41)
    with open_store(path) as store:
        m = store.messages

        def gets() -> int:
            for key in ids:
                m.get(key)
            return len(ids)

        def finds() -> int:
            for cid in convs:
                m.find(conversation_id=cid)
            return len(convs)

        def counts() -> int:
            for cid in convs:
                m.count(conversation_id=cid)
            return len(convs)

        def count_scan() -> int:
            m.count(role="user")
            return 1

        def iterate() -> int:
            k = 0
            it = m.iter()
            for _ in it:
                k += 1
                if k == 100_000:
                    break
            it.close()  # type: ignore[attr-defined]
            return k

        runs: list[str] = []

        def consensus() -> int:
            k = 20 if quick else 100
            for _ in range(k):
                run = store.record_consensus(data.text(20, 200), [
                    StageOutput(stage=s, model="openai/gpt-4o", answer=data.text(),
                                tokens_input=100, tokens_output=400, cost=0.001)
                    for s in STAGES])
                runs.append(run.conversation_id)
            return k

        # The same reads in raw sqlite3: growth that raw shows too is SQLite's (or the page
        # cache's), not hive-store's.
        raw = raw_connect(path)
        cur = raw.cursor()

        def raw_gets() -> int:
            for key in ids:
                cur.execute(SQL_GET_MSG, (key,)).fetchall()
            return len(ids)

        def raw_finds() -> int:
            for cid in convs:
                cur.execute(SQL_FIND_MSG, (cid,)).fetchall()
            return len(convs)

        def raw_count_scan() -> int:
            cur.execute("SELECT count(*) FROM messages WHERE role = ?", ("user",)).fetchall()
            return 1

        try:
            out["raw get"] = per_op(raw_gets, repeats)
            out["raw find"] = per_op(raw_finds, repeats)
            out["raw count_scan"] = per_op(raw_count_scan, max(2, repeats - 2))
        finally:
            raw.close()
        out["get"] = per_op(gets, repeats)
        out["find"] = per_op(finds, repeats)
        out["count"] = per_op(counts, repeats)
        out["count_scan"] = per_op(count_scan, max(2, repeats - 2))
        out["iter"] = per_op(iterate, max(2, repeats - 2))
        try:
            out["record_consensus"] = per_op(consensus, repeats)
        finally:
            forget_runs(store, runs)
    return out


def forget_runs(store: hive_store.Store, conv_ids: Sequence[str]) -> None:
    """Delete what the record_consensus measurements wrote (the cached file stays as built)."""
    with store.transaction(), store.backend.connection() as conn:  # the transaction's
        for table in ("activity_log", "conversation_usage", "usage_records", "curator_truths",
                      "knowledge_conversations", "messages"):
            conn.executemany(f"DELETE FROM {table} WHERE conversation_id = ?",
                             [(c,) for c in conv_ids])
        conn.executemany("DELETE FROM conversations WHERE id = ?", [(c,) for c in conv_ids])


def measure_search(path: Path, repeats: int, quick: bool) -> dict[str, float]:
    _, _, queries = sample(path, 200, 1, 2)
    with hive_store.open(f"sqlite:///{path}") as store:
        memory = store.memory

        def searches() -> int:
            for text in queries:
                memory.search(text, limit=20)
            return len(queries)

        return per_op(searches, repeats)


def growth(sizes: Sequence[int], costs: dict[int, dict[str, float]]) -> dict[str, Any]:
    have = [n for n in sizes if n in costs]
    if len(have) < 2:
        return {}
    med = [costs[n]["median"] for n in have]
    slopes = [round(math.log(med[i + 1] / med[i]) / math.log(have[i + 1] / have[i]), 3)
              for i in range(len(have) - 1)]
    ratio = med[-1] / med[0]
    log_ratio = math.log(have[-1]) / math.log(have[0])
    return {"slopes": slopes, "cost_ratio": round(ratio, 3),
            "log_n_ratio": round(log_ratio, 3), "faster_than_log_n": ratio > 2 * log_ratio}


def plot(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for op, per_size in result["ops"].items():
        xs = [int(n) for n in per_size]
        ys = [per_size[n]["median"] for n in per_size]
        lo = [per_size[n]["median"] - per_size[n]["min"] for n in per_size]
        hi = [per_size[n]["max"] - per_size[n]["median"] for n in per_size]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=op,
                    linestyle="--" if op.startswith("raw") else "-")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("messages in the table")
    ax.set_ylabel("µs per operation (iter: per row)")
    ax.set_title(f"hive-store: cost per operation as the data grows "
                 f"({result['machine']['date'][:10]})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default="10k,100k,1M",
                        help="comma-separated table sizes (10M is opt-in: 7.4 GB, minutes)")
    parser.add_argument("--workdir", type=Path, default=default_workdir(),
                        help="where the built databases are kept between runs")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--plot", metavar="PNG", help="write a log-log plot")
    parser.add_argument("--quick", action="store_true", help="fewer operations and repeats")
    parser.add_argument("--repeats", type=int, help="repeats per operation (default 5; 3 quick)")
    parser.add_argument("--memory-max", default="1M",
                        help="largest size memory.search is measured on (its index is built "
                             "once per size; 0 = skip the search)")
    parser.add_argument("--rebuild", action="store_true", help="delete the cached files first")
    args = parser.parse_args(argv)
    sizes = sorted(parse_size(s) for s in args.sizes.split(","))
    memory_max = parse_size(args.memory_max) if args.memory_max != "0" else 0
    repeats = args.repeats or (3 if args.quick else 5)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.rebuild:
        for f in args.workdir.glob("scale-*"):
            f.unlink()
    load = warn_if_loaded()
    began = time.perf_counter()
    use_plugins("core")
    paths = {n: build(args.workdir, n) for n in sizes}
    ops: dict[str, dict[int, dict[str, float]]] = {op: {} for op in OPS}
    for n in sizes:
        print(f"[{label(n)}] core operations …", file=sys.stderr, flush=True)
        for op, cost in measure_core(paths[n], repeats, args.quick).items():
            ops[op][n] = cost
    if memory_max:
        from hive_store.plugins import reset_plugins

        reset_plugins()
        use_plugins("core", keep=("memory",))
        for n in [n for n in sizes if n <= memory_max]:
            mpath = build_memory(paths[n])
            print(f"[{label(n)}] memory.search …", file=sys.stderr, flush=True)
            ops["memory.search"][n] = measure_search(mpath, repeats, args.quick)
    result: dict[str, Any] = {
        "script": "scale",
        "machine": machine(sizes=sizes, workdir=str(args.workdir), quick=args.quick,
                           repeats=repeats, loadavg_start=[round(x, 2) for x in load]),
        "ops": {op: {str(n): c for n, c in per.items()} for op, per in ops.items() if per},
        "growth": {op: growth(sizes, per) for op, per in ops.items() if per},
    }
    result["machine"]["seconds"] = round(time.perf_counter() - began, 1)
    print_table(result, sizes)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        plot(result, Path(args.plot))
        print(f"plot: {args.plot}")
    return 0


def print_table(result: dict[str, Any], sizes: Sequence[int]) -> None:
    head = f"{'operation':<18}" + "".join(f"{label(n):>22}" for n in sizes) + "   slopes"
    print()
    print(head)
    print("-" * len(head))
    for op, per in result["ops"].items():
        cells = ""
        for n in sizes:
            c = per.get(str(n))
            cells += (f"{c['median']:>10.4g} ({c['min']:.3g}-{c['max']:.3g})".rjust(22)
                      if c else f"{'—':>22}")
        g = result["growth"].get(op, {})
        flag = "  FASTER THAN log n" if g.get("faster_than_log_n") else ""
        print(f"{op:<18}{cells}   {g.get('slopes', '')}{flag}")
    print("\nµs per operation (iter: per row; count_scan: one full count), median (min-max); "
          "slopes: log-log growth from each size to the next (0 flat, 1 linear)")


if __name__ == "__main__":
    sys.exit(main())
