"""Benchmark: the memory plugin's full-text search vs the old ``LIKE`` scan, and what its index
costs the writes.

    python bench/memory.py [--entries 100000] [--queries 60] [--write-entries 10000]
                           [--repeat 3] [--consensus-runs 200] [--think-runs 60]
                           [--think-ms 100] [--skip-search] [--skip-writes] [--json out.json]

Data: synthetic knowledge entries with topical structure (300 topics of 40 words each, plus a
20,000-word general vocabulary drawn with Zipf frequencies): a 12-word question and a ~110-word
curator answer (``source_of_truth`` = ``final_answer``, as ``record_consensus`` writes it).

Search (one WAL store of ``--entries`` entries, built with ``add_many`` and indexed by the
background indexer; themes off): single-word
queries in four document-frequency bands (unique: 1 entry; rare: 5-50; medium: 0.5-2%;
common: >= 10%), ``--queries`` per band, each timed as

* **fts**:  ``store.memory.search(word, limit=20, kinds=["knowledge_conversations"])`` — BM25
  ranking, highlighted snippets, the entities;
* **old**:  the old apps' ``KnowledgeConversation::search`` (hive-schema.md section 0):
  ``question LIKE '%word%' OR final_answer LIKE '%word%' ORDER BY created_at DESC``, every
  match (as raw rows: no entity conversion, which favours it);
* **like20**: ``store.search_knowledge(word, limit=20)`` — hive-store's LIKE over question,
  final_answer and source_of_truth, newest 20 (it stops at the 20th match, so it is quick
  for frequent words, and returns the newest matches rather than the most relevant).

and the ratios of the p50s over all queries (target: fts >= 50x faster than the old scan).
``LIKE`` matches substrings and FTS5 matches tokens, so hit sets can differ slightly.

Writes (fresh stores, the same entries, ``add_many`` in batches of 1,000, interleaved runs,
median of ``--repeat``): **none** (the memory plugin blocked), **triggers** (its tables and
triggers in the database, the plugin blocked: what logging the changes costs), **index** (the
plugin, themes off) and **index+themes** (also theme assignment), for short (25-word) and
typical (110-word) answers. Indexing is deferred to the plugin's background thread, so each
run reports two times:

* the **commit path**: the ``add_many`` calls (triggers, the post-commit wake-up); target
  index <= 1.3x none. The indexer waits for a pause in the writes, so it does not compete
  with a bulk write like this one;
* the **catch-up**: from the last commit until the indexer has indexed everything (and
  assigned the themes), with its throughput (entries/s), and commit path + catch-up against
  none: the cost is deferred, not gone.

Then ``record_consensus`` (7 indexed rows) one at a time, with and without the plugin: back to
back (``--consensus-runs``), and with ``--think-ms`` between runs (``--think-runs``), where the
indexer does its work in the gaps as it would between real consensus runs. Last, the triggers
in plain ``sqlite3``: their cost per row under ``executemany`` (what ``add_many`` does) and in
multi-row ``INSERT`` statements.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hive_store
from hive_store import StageOutput
from hive_store.entities import KnowledgeConversation
from hive_store.plugins import Plugins

CONSONANTS = "bcdfghjklmnprstvwz"
VOWELS = "aeiou"


class Corpus:
    """Deterministic synthetic knowledge entries."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        seen: set[str] = set()
        words: list[str] = []
        while len(words) < 20000 + 300 * 40:
            w = "".join(self.rng.choice(CONSONANTS) + self.rng.choice(VOWELS)
                        for _ in range(self.rng.randint(2, 4)))
            if w not in seen:
                seen.add(w)
                words.append(w)
        self.general = words[:20000]
        self.weights = [1.0 / (i + 1) for i in range(len(self.general))]
        rest = words[20000:]
        self.topics = [rest[i * 40:(i + 1) * 40] for i in range(300)]

    def entry(self, n: int, answer_words: int) -> KnowledgeConversation:
        rng = self.rng
        topic = rng.choice(self.topics)
        question = " ".join(rng.sample(topic, 4) + rng.choices(self.general, self.weights, k=8))
        words = (rng.choices(topic, k=answer_words // 4)
                 + rng.choices(self.general, self.weights, k=answer_words - answer_words // 4))
        rng.shuffle(words)
        answer = " ".join(words) + f" zq{n:x}."
        return KnowledgeConversation(question=question.capitalize() + "?", final_answer=answer,
                                     source_of_truth=answer)

    def entries(self, count: int, answer_words: int) -> list[KnowledgeConversation]:
        return [self.entry(n, answer_words) for n in range(count)]


def plugins(memory: bool) -> Plugins:
    p = Plugins()
    if not memory:
        p.pm.set_blocked("memory")
    return p.ensure_loaded()


def memory_of(store: hive_store.Store) -> Any:
    return store.__dict__["memory"]


@contextmanager
def auto_assign(on: bool) -> Iterator[None]:
    old = os.environ.get("HIVE_STORE_MEMORY_AUTO_ASSIGN")
    os.environ["HIVE_STORE_MEMORY_AUTO_ASSIGN"] = "1" if on else "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ["HIVE_STORE_MEMORY_AUTO_ASSIGN"]
        else:
            os.environ["HIVE_STORE_MEMORY_AUTO_ASSIGN"] = old


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- search ---------------------------------------------------------------------------------------


def bands(entries: list[KnowledgeConversation], per_band: int,
          rng: random.Random) -> dict[str, list[str]]:
    """Query words by how many entries contain them."""
    df: Counter[str] = Counter()
    for e in entries:
        df.update(set(f"{e.question} {e.final_answer}".lower().replace("?", " ")
                      .replace(".", " ").split()))
    n = len(entries)
    limits = {"rare": (5, 50), "medium": (n // 200, n // 50), "common": (n // 10, n + 1)}
    out: dict[str, list[str]] = {
        "unique": [f"zq{rng.randrange(n):x}" for _ in range(per_band)]}
    for band, (lo, hi) in limits.items():
        words = sorted(w for w, c in df.items() if lo <= c <= hi and not w.startswith("zq"))
        out[band] = [rng.choice(words) for _ in range(per_band)] if words else []
    return out


def time_calls(fn: Callable[[str], Any], words: list[str]) -> list[float]:
    times = []
    for w in words:
        t = time.perf_counter()
        fn(w)
        times.append((time.perf_counter() - t) * 1000)
    return times


def bench_search(args: argparse.Namespace, corpus: Corpus, workdir: Path) -> dict[str, Any]:
    path = workdir / "search.db"
    entries = corpus.entries(args.entries, 110)
    t = time.perf_counter()
    with auto_assign(False), hive_store.open(f"sqlite://{path}", plugins=plugins(True)) as store:
        for i in range(0, len(entries), 5000):
            store.knowledge_conversations.add_many(entries[i:i + 5000])
        build = time.perf_counter() - t
        t = time.perf_counter()
        memory_of(store).wait_idle(timeout=3600)
        indexing = time.perf_counter() - t
    print(f"built {len(entries):,} entries in {build:.1f} s, indexed {indexing:.1f} s after the "
          f"last commit ({path.stat().st_size / 2**20:.0f} MiB)", flush=True)
    words = bands(entries, args.queries, random.Random(11))
    del entries
    results: dict[str, Any] = {"entries": args.entries, "build_s": round(build, 2),
                               "index_catch_up_s": round(indexing, 2), "bands": {}}
    pooled: dict[str, list[float]] = {"fts": [], "old": [], "like20": []}
    old_sql = ("SELECT * FROM knowledge_conversations WHERE question LIKE ? OR final_answer "
               "LIKE ? ORDER BY created_at DESC")
    with hive_store.open(f"sqlite://{path}", plugins=plugins(True)) as store:
        mem = store.memory
        kinds = ["knowledge_conversations"]
        mem.search("warm", kinds=kinds)
        store.search_knowledge("warm", limit=20)

        def old(word: str) -> Any:
            with store.backend.connection() as conn:
                return conn.execute(old_sql, (f"%{word}%", f"%{word}%")).fetchall()

        runs: dict[str, Callable[[str], Any]] = {
            "fts": lambda w: mem.search(w, limit=20, kinds=kinds),
            "old": old,
            "like20": lambda w: store.search_knowledge(w, limit=20),
        }
        for band, ws in words.items():
            if not ws:
                continue
            row: dict[str, Any] = {}
            for name, fn in runs.items():
                times = time_calls(fn, ws)
                pooled[name] += times
                row[f"{name}_p50_ms"] = round(statistics.median(times), 3)
                row[f"{name}_p95_ms"] = round(pct(times, 0.95), 3)
            row["speedup_vs_old_p50"] = round(row["old_p50_ms"] / row["fts_p50_ms"], 1)
            row["speedup_vs_like20_p50"] = round(row["like20_p50_ms"] / row["fts_p50_ms"], 2)
            results["bands"][band] = row
            print(f"  {band:>7}: fts p50 {row['fts_p50_ms']:7.2f} ms (p95 {row['fts_p95_ms']:6.2f})"
                  f" | old scan p50 {row['old_p50_ms']:7.1f} ms: {row['speedup_vs_old_p50']:6.0f}x"
                  f" | like20 p50 {row['like20_p50_ms']:7.2f} ms: "
                  f"{row['speedup_vs_like20_p50']:.2f}x", flush=True)
    for name, times in pooled.items():
        results[f"{name}_p50_ms"] = round(statistics.median(times), 3)
        results[f"{name}_p95_ms"] = round(pct(times, 0.95), 3)
    results["speedup_vs_old_p50"] = round(results["old_p50_ms"] / results["fts_p50_ms"], 1)
    results["speedup_vs_like20_p50"] = round(results["like20_p50_ms"] / results["fts_p50_ms"], 2)
    print(f"search over {args.entries:,} entries, all {sum(len(w) for w in words.values())} "
          f"queries: fts p50 {results['fts_p50_ms']:.2f} ms (p95 {results['fts_p95_ms']:.2f}); "
          f"old LIKE scan p50 {results['old_p50_ms']:.1f} ms: {results['speedup_vs_old_p50']:.0f}x"
          f" (target >= 50x); like20 p50 {results['like20_p50_ms']:.2f} ms: "
          f"{results['speedup_vs_like20_p50']:.2f}x", flush=True)
    return results


# -- writes ---------------------------------------------------------------------------------------

# name: (plugin loaded, auto-assign themes, memory tables and triggers in the database)
CONFIGS = {"none": (False, False, False), "triggers": (False, False, True),
           "index": (True, False, True), "index+themes": (True, True, True)}


def one_write_run(path: Path, entries: list[KnowledgeConversation],
                  config: str) -> dict[str, float]:
    """One fresh store: ``add_many`` in batches of 1,000 (the commit path, timed), then the
    wait until the background indexer has caught up (the deferred cost, timed)."""
    memory, themes, tables = CONFIGS[config]
    if tables and not memory:  # the triggers alone: migrated by the plugin, then opened without
        hive_store.open(f"sqlite://{path}", plugins=plugins(True)).close()
    with auto_assign(themes), hive_store.open(f"sqlite://{path}",
                                              plugins=plugins(memory)) as store:
        t = time.perf_counter()
        for i in range(0, len(entries), 1000):
            store.knowledge_conversations.add_many(entries[i:i + 1000])
        commit = time.perf_counter() - t
        out = {"commit": commit}
        if memory:
            mem = memory_of(store)
            before = mem.applied
            t = time.perf_counter()
            if not mem.wait_idle(timeout=600):
                raise RuntimeError(f"the indexer did not catch up: {mem.last_error}")
            out["catch_up"] = time.perf_counter() - t
            out["applied_in_catch_up"] = mem.applied - before
            status = mem.status(flush=False)
            assert status.pending == 0 and status.documents["knowledge_conversations"] == len(
                entries), status
            if themes:
                assert status.unassigned == 0, status
        return out


def bench_writes(args: argparse.Namespace, corpus: Corpus, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, words in (("short", 25), ("typical", 110)):
        entries = corpus.entries(args.write_entries, words)
        runs: dict[str, list[dict[str, float]]] = {c: [] for c in CONFIGS}
        for rep in range(args.repeat):  # interleaved: machine noise hits every config alike
            for config in CONFIGS:
                path = workdir / f"w-{label}-{config}-{rep}.db"
                runs[config].append(one_write_run(path, entries, config))
        commit = {c: statistics.median(r["commit"] for r in v) for c, v in runs.items()}
        per = {c: commit[c] / len(entries) * 1e6 for c in commit}
        row: dict[str, Any] = {
            "answer_words": words, "entries": len(entries),
            "commit_us_per_entry": {c: round(v, 2) for c, v in per.items()},
            "commit_ratio": {c: round(commit[c] / commit["none"], 2) for c in CONFIGS},
            "commit_runs_s": {c: [round(r["commit"], 3) for r in v] for c, v in runs.items()},
        }
        for config in ("index", "index+themes"):
            catch = statistics.median(r["catch_up"] for r in runs[config])
            applied = statistics.median(r["applied_in_catch_up"] for r in runs[config])
            total = commit[config] + catch
            row[config] = {
                "catch_up_s": round(catch, 3),  # last commit -> index (and themes) caught up
                "applied_in_catch_up": int(applied),  # log rows the catch-up applied
                "docs_per_s": round(applied / catch) if catch > 0 else None,
                "total_ratio": round(total / commit["none"], 2),  # commit path + catch-up
                "catch_up_runs_s": [round(r["catch_up"], 3) for r in runs[config]],
            }
        out[label] = row
        ratio = row["commit_ratio"]
        print(f"add_many, {label} entries ({words}-word answers), {len(entries):,} entries, "
              f"commit path: none {per['none']:.1f} us/entry; triggers alone "
              f"{per['triggers']:.1f} ({ratio['triggers']:.2f}x); index {per['index']:.1f} "
              f"({ratio['index']:.2f}x; target <= 1.3x); index+themes {per['index+themes']:.1f}"
              f" ({ratio['index+themes']:.2f}x)", flush=True)
        for config in ("index", "index+themes"):
            r = row[config]
            print(f"    deferred, {config}: caught up {r['catch_up_s']:.2f} s after the last "
                  f"commit ({r['applied_in_catch_up']:,} entries at {r['docs_per_s']:,} "
                  f"entries/s); commit path + catch-up = {r['total_ratio']:.2f}x none",
                  flush=True)
    out["record_consensus"] = bench_consensus(args, corpus, workdir)
    out["triggers_in_sqlite3"] = bench_trigger_sql(args, corpus, workdir)
    return out


def bench_trigger_sql(args: argparse.Namespace, corpus: Corpus,
                      workdir: Path) -> dict[str, Any]:
    """The triggers in plain ``sqlite3``, without hive-store: the same rows inserted into a
    database with and without the plugin's tables and triggers, by ``executemany`` (what
    ``add_many`` does) and by multi-row ``INSERT … VALUES (…), (…)`` statements of 100 rows,
    1,000 rows per transaction, the store's PRAGMAs. With a trigger, SQLite gives every
    executed statement a statement journal, so the trigger costs more per row under
    ``executemany`` than in a statement that inserts many rows."""
    templates = {}
    for name, memory in (("plain", False), ("triggers", True)):
        templates[name] = workdir / f"tpl-{name}.db"
        hive_store.open(f"sqlite://{templates[name]}", plugins=plugins(memory)).close()
    out: dict[str, Any] = {}
    for label, words in (("short", 25), ("typical", 110)):
        entries = corpus.entries(args.write_entries, words)
        cols = ("id", "question", "final_answer", "source_of_truth", "created_at")
        rows = [(str(hive_store.uuid7()), e.question, e.final_answer, e.source_of_truth,
                 "2025-01-01T00:00:00+00:00") for e in entries]
        one = f"INSERT INTO knowledge_conversations ({', '.join(cols)}) VALUES (?, ?, ?, ?, ?)"
        times: dict[str, list[float]] = {}
        for rep in range(args.repeat):
            for name, template in templates.items():
                for how in ("executemany", "multi-row"):
                    path = workdir / f"sql-{label}-{name}-{how}-{rep}.db"
                    path.write_bytes(template.read_bytes())
                    conn = sqlite3.connect(path, isolation_level=None)
                    for pragma in ("journal_mode = WAL", "synchronous = NORMAL",
                                   "foreign_keys = ON", "temp_store = MEMORY",
                                   "cache_size = -32000"):
                        conn.execute(f"PRAGMA {pragma}")
                    t = time.perf_counter()
                    for i in range(0, len(rows), 1000):
                        chunk = rows[i:i + 1000]
                        conn.execute("BEGIN IMMEDIATE")
                        if how == "executemany":
                            conn.executemany(one, chunk)
                        else:
                            for j in range(0, len(chunk), 100):
                                part = chunk[j:j + 100]
                                conn.execute(one.rsplit(" VALUES ", 1)[0] + " VALUES " + ", ".join(
                                    ["(?, ?, ?, ?, ?)"] * len(part)), [v for r in part for v in r])
                        conn.execute("COMMIT")
                    times.setdefault(f"{name}/{how}", []).append(time.perf_counter() - t)
                    conn.close()
        med = {k: statistics.median(v) / len(rows) * 1e6 for k, v in times.items()}
        row = {"us_per_row": {k: round(v, 2) for k, v in med.items()},
               "trigger_ratio": {how: round(med[f"triggers/{how}"] / med[f"plain/{how}"], 2)
                                 for how in ("executemany", "multi-row")}}
        out[label] = row
        r = row["trigger_ratio"]
        print(f"plain sqlite3, {label} entries: the triggers cost {r['executemany']:.2f}x under "
              f"executemany ({med['plain/executemany']:.1f} -> {med['triggers/executemany']:.1f}"
              f" us/row), {r['multi-row']:.2f}x in 100-row INSERT statements "
              f"({med['plain/multi-row']:.1f} -> {med['triggers/multi-row']:.1f} us/row)",
              flush=True)
    return out


def bench_consensus(args: argparse.Namespace, corpus: Corpus, workdir: Path) -> dict[str, Any]:
    """``record_consensus`` (7 indexed rows) one at a time, as Hive writes: back to back (the
    indexer waits for a pause: its work is not in these numbers), and with ``--think-ms``
    between runs (the indexer works in the gaps, as with real consensus runs: what it costs
    the next commit is in these numbers)."""
    stages = [StageOutput(stage=s, model="m", answer=corpus.entry(0, 110).final_answer)
              for s in ("generator", "refiner", "validator", "curator")]
    out: dict[str, Any] = {}
    think = args.think_ms / 1000
    for mode, runs, pause in (("back_to_back", args.consensus_runs, 0.0),
                              ("with_think_time", args.think_runs, think)):
        lat: dict[str, list[float]] = {"none": [], "index+themes": []}
        for rep in range(2):  # interleaved
            for config in lat:
                memory, themes, _ = CONFIGS[config]
                path = workdir / f"rc-{mode}-{config}-{rep}.db"
                with auto_assign(themes), hive_store.open(
                        f"sqlite://{path}", plugins=plugins(memory)) as store:
                    for i in range(runs // 2):
                        question = corpus.entry(i, 12).question
                        if pause:
                            time.sleep(pause)
                        t = time.perf_counter()
                        store.record_consensus(question, stages)
                        lat[config].append((time.perf_counter() - t) * 1000)
                    if memory:
                        memory_of(store).wait_idle(timeout=600)
        row = {c: {"p50_ms": round(statistics.median(v), 3), "p95_ms": round(pct(v, 0.95), 3)}
               for c, v in lat.items()}
        row["ratio_p50"] = round(row["index+themes"]["p50_ms"] / row["none"]["p50_ms"], 2)
        out[mode] = row
        what = ("back to back" if not pause else
                f"with {args.think_ms:g} ms between runs (the indexer works in the gaps)")
        print(f"record_consensus, {what}: p50 without the plugin {row['none']['p50_ms']:.2f} ms "
              f"(p95 {row['none']['p95_ms']:.2f}), with index and themes "
              f"{row['index+themes']['p50_ms']:.2f} ms (p95 {row['index+themes']['p95_ms']:.2f})"
              f": {row['ratio_p50']:.2f}x", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=60, help="queries per frequency band")
    parser.add_argument("--write-entries", type=int, default=10_000)
    parser.add_argument("--consensus-runs", type=int, default=200)
    parser.add_argument("--think-runs", type=int, default=60,
                        help="record_consensus runs with --think-ms between them")
    parser.add_argument("--think-ms", type=float, default=100.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--skip-writes", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("hive_store.plugins").setLevel(logging.CRITICAL)  # test plugin noise
    print(f"SQLite {__import__('sqlite3').sqlite_version}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs", flush=True)
    corpus = Corpus()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hive-bench-memory-") as tmp:
        workdir = Path(tmp)
        if not args.skip_search:
            results["search"] = bench_search(args, corpus, workdir)
        if not args.skip_writes:
            results["writes"] = bench_writes(args, corpus, workdir)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
