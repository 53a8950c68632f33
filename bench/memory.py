"""Benchmark: the memory plugin's full-text search vs the old ``LIKE`` scan, and what its index
costs the writes.

    python bench/memory.py [--entries 100000] [--queries 60] [--write-entries 10000]
                           [--repeat 3] [--json out.json]

Data: synthetic knowledge entries with topical structure (300 topics of 40 words each, plus a
20,000-word general vocabulary drawn with Zipf frequencies): a 12-word question and a ~110-word
curator answer (``source_of_truth`` = ``final_answer``, as ``record_consensus`` writes it).

Search (one WAL store of ``--entries`` entries, built with ``add_many``; themes off): single-word
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
median of ``--repeat``): **none** (the memory plugin blocked), **index** (the plugin, themes
off: triggers + the index flush before commit) and **index+themes** (also the post-commit
theme assignment), for short (25-word) and typical (110-word) answers; plus the latency of a
single ``record_consensus`` (7 indexed rows) with and without the plugin. Target: index <= 1.3x.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
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
    print(f"built {len(entries):,} entries in {build:.1f} s "
          f"({path.stat().st_size / 2**20:.0f} MiB)", flush=True)
    words = bands(entries, args.queries, random.Random(11))
    del entries
    results: dict[str, Any] = {"entries": args.entries, "build_s": round(build, 2), "bands": {}}
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

CONFIGS = {"none": (False, False), "index": (True, False), "index+themes": (True, True)}


def one_write_run(path: Path, entries: list[KnowledgeConversation], memory: bool,
                  themes: bool) -> float:
    with auto_assign(themes), hive_store.open(f"sqlite://{path}",
                                              plugins=plugins(memory)) as store:
        t = time.perf_counter()
        for i in range(0, len(entries), 1000):
            store.knowledge_conversations.add_many(entries[i:i + 1000])
        return time.perf_counter() - t


def bench_writes(args: argparse.Namespace, corpus: Corpus, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, words in (("short", 25), ("typical", 110)):
        entries = corpus.entries(args.write_entries, words)
        times: dict[str, list[float]] = {c: [] for c in CONFIGS}
        for rep in range(args.repeat):
            for config, (memory, themes) in CONFIGS.items():
                path = workdir / f"w-{label}-{config}-{rep}.db"
                times[config].append(one_write_run(path, entries, memory, themes))
        med = {c: statistics.median(v) for c, v in times.items()}
        per = {c: med[c] / len(entries) * 1e6 for c in med}
        out[label] = {
            "answer_words": words, "entries": len(entries),
            "us_per_entry": {c: round(v, 1) for c, v in per.items()},
            "index_ratio": round(med["index"] / med["none"], 2),
            "index_themes_ratio": round(med["index+themes"] / med["none"], 2),
            "runs_s": {c: [round(x, 3) for x in v] for c, v in times.items()},
        }
        r = out[label]
        print(f"add_many, {label} entries ({words}-word answers), {len(entries):,} entries: "
              f"none {per['none']:.0f} us/entry, index {per['index']:.0f} "
              f"({r['index_ratio']:.2f}x; target <= 1.3x), index+themes "
              f"{per['index+themes']:.0f} ({r['index_themes_ratio']:.2f}x)", flush=True)
    # One consensus run at a time, as Hive writes.
    lat: dict[str, list[float]] = {"none": [], "index+themes": []}
    stages = [StageOutput(stage=s, model="m", answer=corpus.entry(0, 110).final_answer)
              for s in ("generator", "refiner", "validator", "curator")]
    for config in lat:
        memory, themes = CONFIGS[config]
        with auto_assign(themes), hive_store.open(
                f"sqlite://{workdir / f'rc-{config}.db'}", plugins=plugins(memory)) as store:
            for i in range(args.consensus_runs):
                question = corpus.entry(i, 12).question
                t = time.perf_counter()
                store.record_consensus(question, stages)
                lat[config].append((time.perf_counter() - t) * 1000)
    out["record_consensus_p50_ms"] = {c: round(statistics.median(v), 3) for c, v in lat.items()}
    p50 = out["record_consensus_p50_ms"]
    print(f"record_consensus p50: without the plugin {p50['none']:.2f} ms, with index and "
          f"themes {p50['index+themes']:.2f} ms", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=60, help="queries per frequency band")
    parser.add_argument("--write-entries", type=int, default=10_000)
    parser.add_argument("--consensus-runs", type=int, default=200)
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
