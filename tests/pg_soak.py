"""Many writers on one PostgreSQL store (issue 18, item 5): processes x threads recording
consensus runs and updating the same rows, with readers checking that no run is ever seen in
part. Used by tests/test_postgres_soak.py (short) and bench/pg_soak.py (60 s, figures).

Each worker thread loops over three kinds of work until the time is up:

* ``record_consensus`` with a conversation id it chose (acknowledged ids are reported);
* a read-modify-write of one of a few shared "hot" conversations in ``run_transaction``
  (``input_tokens += 1``, counted per row when it returns) and a plain
  ``update_conversation_metrics`` of one (``repository.update``);
* reads: a run acknowledged by anyone so far must be whole (its conversation, 5 messages,
  knowledge, curator truth, usage and activity rows), and a conversation seen must never be
  missing its messages.

Any exception is an unhandled error. The parent checks: 0 errors, 0 partial reads, every
acknowledged run stored whole and exactly once, and every hot row's counter equal to the
number of acknowledged increments (0 lost writes).
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
import traceback
from typing import Any

HOT = [f"hot-{i}" for i in range(4)]
STAGES = ("generator", "refiner", "validator", "curator")


def prepare(url: str) -> None:
    import hive_store
    from hive_store.entities import Conversation

    with hive_store.open(url) as store:
        for cid in HOT:
            store.conversations.upsert(Conversation(id=cid, input_tokens=0))


def worker_process(url: str, tag: str, threads: int, seconds: float, out: Any) -> None:
    """One process: ``threads`` threads for ``seconds``; puts one result dict on ``out``."""
    import hive_store
    from hive_store import StageOutput

    result: dict[str, Any] = {"tag": tag, "runs": [], "increments": {c: 0 for c in HOT},
                              "updates": 0, "reads": 0, "errors": [], "partial": [],
                              "retries": {}}
    lock = threading.Lock()
    try:
        store = hive_store.open(url, max_size=threads, min_idle=1)
    except Exception:
        result["errors"].append(traceback.format_exc())
        out.put(result)
        return
    stop = time.monotonic() + seconds

    def stages(n: int) -> list[StageOutput]:
        return [StageOutput(stage=s, model=f"model-{i}", answer=f"{tag} {n} {s}",
                            tokens_input=10, tokens_output=20, cost=0.001, duration_ms=5)
                for i, s in enumerate(STAGES)]

    def whole(cid: str) -> str | None:
        conv = store.conversations.find_one(id=cid)
        if conv is None:
            return "acknowledged run missing"
        counts = (store.messages.count(conversation_id=cid),
                  store.knowledge_conversations.count(conversation_id=cid),
                  store.curator_truths.count(conversation_id=cid),
                  store.usage_records.count(conversation_id=cid),
                  store.activity_log.count(conversation_id=cid))
        return None if counts == (5, 1, 1, 1, 1) else f"counts {counts}"

    def work(t: int) -> None:
        rng = random.Random(f"{tag}-{t}")
        n = 0
        mine: list[str] = []
        try:
            while time.monotonic() < stop:
                kind = rng.random()
                if kind < 0.4:
                    cid = f"{tag}-{t}-{n}"
                    store.record_consensus(f"question {cid}", stages(n), conversation_id=cid)
                    mine.append(cid)
                    with lock:
                        result["runs"].append(cid)
                    n += 1
                elif kind < 0.7:
                    hot = rng.choice(HOT)

                    def bump(hot: str = hot) -> None:
                        now = store.conversations.get(hot).input_tokens or 0
                        store.conversations.update(hot, input_tokens=now + 1)

                    store.run_transaction(bump)
                    with lock:
                        result["increments"][hot] += 1
                elif kind < 0.8:
                    store.update_conversation_metrics(rng.choice(HOT),
                                                      quality_score=rng.random())
                    with lock:
                        result["updates"] += 1
                else:
                    with lock:
                        seen = result["runs"][-50:]
                    for cid in rng.sample(seen, min(3, len(seen))):
                        problem = whole(cid)
                        if problem:
                            with lock:
                                result["partial"].append(f"{cid}: {problem}")
                    # a run being written by another thread right now: all or nothing
                    other = f"{tag}-{(t + 1) % threads}-{rng.randrange(max(1, n))}"
                    if store.conversations.find_one(id=other) is not None:
                        problem = whole(other)
                        if problem:
                            with lock:
                                result["partial"].append(f"{other}: {problem} (in flight)")
                    with lock:
                        result["reads"] += 1
        except Exception:
            with lock:
                result["errors"].append(f"thread {t}: {traceback.format_exc()}")

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(seconds + 120)
    result["retries"] = dict(getattr(store.backend, "retries", {}))
    store.close()
    out.put(result)


def run(url: str, *, processes: int = 8, threads: int = 4, seconds: float = 60.0
        ) -> dict[str, Any]:
    """Run the soak against ``url`` (a migrated store) and check it; returns the figures."""
    import hive_store

    prepare(url)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=worker_process, args=(url, f"p{i}", threads, seconds, out))
             for i in range(processes)]
    began = time.monotonic()
    for p in procs:
        p.start()
    results = []
    deadline = time.monotonic() + seconds + 300
    for _ in procs:
        results.append(out.get(timeout=max(1.0, deadline - time.monotonic())))
    for p in procs:
        p.join(60)
    elapsed = time.monotonic() - began
    runs = [cid for r in results for cid in r["runs"]]
    increments = {c: sum(r["increments"][c] for r in results) for c in HOT}
    with hive_store.open(url, read_only=True) as store:
        stored_runs = store.conversations.count() - len(HOT)
        missing = [cid for cid in runs if store.conversations.find_one(id=cid) is None]
        messages = store.messages.count()
        counters = {c: store.conversations.get(c).input_tokens for c in HOT}
    retries: dict[str, int] = {}
    for r in results:
        for k, v in r["retries"].items():
            retries[k] = retries.get(k, 0) + v
    return {
        "processes": processes, "threads": threads, "seconds": round(elapsed, 1),
        "runs_acknowledged": len(runs), "runs_stored": stored_runs,
        "runs_missing": len(missing), "duplicates": len(runs) - len(set(runs)),
        "messages": messages, "messages_expected": 5 * len(runs),
        "increments_acknowledged": increments, "counters_stored": counters,
        "lost_increments": sum(increments[c] - (counters[c] or 0) for c in HOT),
        "metric_updates": sum(r["updates"] for r in results),
        "reads": sum(r["reads"] for r in results),
        "partial_reads": [p for r in results for p in r["partial"]],
        "errors": [e for r in results for e in r["errors"]],
        "reporting_processes": len(results),
        "retries": retries,
    }
