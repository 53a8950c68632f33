"""The adversarial figures of docs/guarantees.md, from a script anyone can rerun.

    python bench/adversarial.py [--quick] [--json out.json] [--markdown out.md] [--seed 1]
                                [--values N] [--kills N] [--processes P] [--threads T]
                                [--seconds S] [--forks N]
    python bench/adversarial.py --from-json out.json --markdown out.md   # no new run

Needs the ``test`` extra (hypothesis draws the values). Loopback only: it never opens a network
connection (the D1 mirror is not configured for it); bounded in time (``--quick`` about a
minute on two cores, the default a few minutes). What it does, and counts:

1. **calls**: every public method of every table's repository (get, get_many, add, add_many,
   upsert, update, delete, find, find_one, count, iter, search), the store's domain operations
   and the memory plugin's, each called with hostile values drawn by hypothesis from
   :mod:`hive_store.testing` (wrong types, NaN, huge numbers, long and surrogate-laden text,
   naive and extreme datetimes, SQL fragments, containers, objects), as arguments, filter
   values, ``order_by``, limits and field values of entities. Errors are counted by type: only
   :class:`hive_store.HiveStoreError` subclasses are allowed; anything else is an *escape*.
   Every write that succeeds is read back: a *mismatch* is a stored row that differs from the
   entity the write returned. Foreign keys are switched off for this part (through a
   connection hook), so that values, not missing parents, decide what is stored.
2. **kills**: the kill -9 loop of ``tests/test_crash.py``: a writer is SIGKILLed again and
   again; acknowledged commits lost, partial commits seen, integrity failures.
3. **threads x processes**: P processes x T threads on one file for S seconds: writes,
   transactions, point reads checked against the row asked for, iterators started in one
   thread and finished in another or abandoned; errors by type, wrong rows, acknowledged
   writes missing afterwards.
4. **forks**: ``os.fork()`` while threads of the parent work; every use of the inherited store
   in the child must fail at once with a clear error (no hang), the parent loses nothing.

Exit status 1 if any escape, mismatch, lost or partial commit, wrong row, missing write, hang
or unexpected error was counted.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import platform
import queue
import random
import select
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for _name in list(os.environ):  # loopback only: no D1 mirror, whatever the environment says
    if _name.startswith("HIVE_STORE_D1") or _name.startswith("CLOUDFLARE_"):
        del os.environ[_name]

import attrs  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import hive_store  # noqa: E402
from hive_store.backend import LOOKUPS  # noqa: E402
from hive_store.entities import Setting  # noqa: E402
from hive_store.testing import entities, hostile_text, hostile_values  # noqa: E402

STAGES = ("generator", "refiner", "validator", "curator")
EXAMPLES = 5  # examples kept per kind of finding


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a hostile value's repr may fail too
        text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    return text if len(text) <= limit else text[:limit - 1] + "…"


# -- 1. calls -------------------------------------------------------------------------------------


class NoForeignKeys:
    """Values, not missing parent rows, decide what is stored in the calls section."""

    @hive_store.hookimpl(trylast=True)
    def hive_store_prepare_connection(self, connection: sqlite3.Connection) -> None:
        connection.execute("PRAGMA foreign_keys = OFF")


@attrs.define
class Calls:
    calls: int = 0
    ok: int = 0
    errors: collections.Counter[str] = attrs.field(factory=collections.Counter)
    escapes: collections.Counter[str] = attrs.field(factory=collections.Counter)
    by_method: collections.Counter[str] = attrs.field(factory=collections.Counter)
    writes_read_back: int = 0
    mismatches: int = 0
    escape_methods: collections.Counter[str] = attrs.field(factory=collections.Counter)
    mismatch_fields: collections.Counter[str] = attrs.field(factory=collections.Counter)
    escape_examples: list[dict[str, str]] = attrs.field(factory=list)
    mismatch_examples: list[dict[str, str]] = attrs.field(factory=list)
    tables: int = 0
    values: int = 0
    seconds: float = 0.0

    def call(self, method: str, table: str, value: Any, fn: Callable[[], Any]) -> Any:
        """Run one call; its outcome is counted. Returns the result, or ``_FAILED``."""
        self.calls += 1
        self.by_method[method] += 1
        try:
            result = fn()
        except hive_store.HiveStoreError as exc:
            self.errors[type(exc).__name__] += 1
            return _FAILED
        except Exception as exc:  # an escape: what this script is here to find
            name = type(exc).__name__
            self.escapes[name] += 1
            self.escape_methods[f"{method} ({name})"] += 1
            if sum(1 for e in self.escape_examples if e["type"] == name) < EXAMPLES:
                self.escape_examples.append({"type": name, "method": method, "table": table,
                                             "value": _short(value), "error": _short(str(exc))})
            return _FAILED
        self.ok += 1
        return result

    def read_back(self, table: str, method: str, repo: Any, codec: Any, written: Any,
                  value: Any) -> None:
        key = getattr(written, codec.pk, None)
        if key is None:
            return
        stored = self.call("get (read back)", table, value, lambda: repo.get(key))
        if stored is _FAILED:
            return
        self.writes_read_back += 1
        if stored != written:
            self.mismatches += 1
            diff = [f.name for f in attrs.fields(type(written))
                    if getattr(stored, f.name) != getattr(written, f.name)]
            for name in diff:
                self.mismatch_fields[f"{table}.{name}"] += 1
            if len(self.mismatch_examples) < EXAMPLES * 2:
                self.mismatch_examples.append({
                    "table": table, "method": method, "fields": ", ".join(diff),
                    "returned": _short({d: getattr(written, d) for d in diff}),
                    "stored": _short({d: getattr(stored, d) for d in diff})})


_FAILED: Any = object()


def _exercise_table(c: Calls, store: Any, table: str, cls: type, base: Any, value: Any,
                    turn: int) -> None:
    repo = store.__dict__[table]
    codec = store.codec(cls)
    names = [f.name for f in codec.fields]
    field = names[turn % len(names)]
    texts = [f.name for f in codec.fields if f.kind in ("str", "json")] or [field]
    text_field = texts[turn % len(texts)]
    lookup = LOOKUPS[turn % len(LOOKUPS)]
    call = c.call

    call("get", table, value, lambda: repo.get(value))
    call("get_many", table, value, lambda: repo.get_many([value]))
    call("get_many", table, value, lambda: repo.get_many(value))
    call("delete", table, value, lambda: repo.delete(value))
    call("find", table, value, lambda: repo.find(**{field: value}))
    call("find", table, value, lambda: repo.find(**{f"{field}__{lookup}": value}))
    call("find", table, value, lambda: repo.find(order_by=value))
    call("find", table, value, lambda: repo.find(limit=value))
    call("find", table, value, lambda: repo.find(offset=value, limit=1))
    call("find_one", table, value, lambda: repo.find_one(**{field: value}))
    call("count", table, value, lambda: repo.count(**{f"{field}__{lookup}": value}))
    call("iter", table, value, lambda: list(repo.iter(**{field: value})))
    call("iter", table, value, lambda: list(repo.iter(batch_size=value)))
    call("search", table, value, lambda: repo.search(value, fields=[text_field]))
    call("search", table, value, lambda: repo.search("a", fields=value))
    call("search", table, value, lambda: repo.search("a", fields=[text_field], limit=value))

    # writes: the valid entity, then with the hostile value in one field
    stored = call("add", table, None, lambda: repo.add(base))
    if stored is not _FAILED:
        c.read_back(table, "add", repo, codec, stored, None)
        key = getattr(stored, codec.pk)
        updated = call("update", table, value, lambda: repo.update(key, **{field: value}))
        if updated is not _FAILED:
            c.read_back(table, "update(key, field=value)", repo, codec, updated, value)
        call("delete", table, None, lambda: repo.delete(key))
    hostile = call("Entity(...)", table, value, lambda: attrs.evolve(base, **{field: value}))
    if hostile is _FAILED:
        return
    for method, fn in (("add", lambda: repo.add(hostile)),
                       ("upsert", lambda: repo.upsert(hostile)),
                       ("add_many", lambda: repo.add_many([hostile])[0]),
                       ("update", lambda: repo.update(hostile))):
        written = call(method, table, value, fn)
        if written is not _FAILED:
            c.read_back(table, method, repo, codec, written, value)
            if method == "add_many":
                key = getattr(written, codec.pk)
                call("delete", table, None, lambda key=key: repo.delete(key))


def _exercise_store(c: Calls, store: Any, value: Any) -> None:
    stages = [hive_store.StageOutput(stage=s, model="m", answer=f"{s} answer") for s in STAGES]
    call = c.call
    call("record_consensus", "-", value, lambda: store.record_consensus(value, stages))
    call("record_consensus", "-", value, lambda: store.record_consensus("q?", value))
    call("record_consensus", "-", value,
         lambda: store.record_consensus("q?", stages, conversation_id=value))
    call("record_consensus", "-", value, lambda: store.record_consensus("q?", stages,
                                                                         started_at=value))
    call("StageOutput(...)", "-", value,
         lambda: hive_store.StageOutput(stage="curator", model=value, answer="a", cost=value))
    call("log_activity", "-", value, lambda: store.log_activity(value))
    call("log_activity", "-", value, lambda: store.log_activity("export", metadata=value))
    call("search_knowledge", "-", value, lambda: store.search_knowledge(value))
    call("search_knowledge", "-", value, lambda: store.search_knowledge("a", limit=value))
    call("recent_activity", "-", value, lambda: store.recent_activity(since=value))
    call("recent_activity", "-", value, lambda: store.recent_activity(limit=value))
    call("update_conversation_metrics", "-", value,
         lambda: store.update_conversation_metrics(value))
    call("complete_conversation", "-", value, lambda: store.complete_conversation(value))
    call("repo", "-", value, lambda: store.repo(value))
    memory = store.__dict__.get("memory")
    if memory is not None:
        call("memory.search", "-", value, lambda: memory.search(value))
        call("memory.search", "-", value, lambda: memory.search("a", kinds=value))
        call("memory.search", "-", value, lambda: memory.search("a", since=value))
        call("memory.context_for", "-", value, lambda: memory.context_for(value))
        call("memory.theme_of", "-", value, lambda: memory.theme_of(value))
        call("memory.themes", "-", value, lambda: memory.themes(limit=value))


def run_calls(folder: Path, n_values: int, seed_value: int) -> Calls:
    import hive_store_memory

    from tests.conftest import isolated_plugins

    c = Calls()
    plugins = isolated_plugins(NoForeignKeys())
    plugins.register(hive_store_memory, name="memory", distribution="hive-store", builtin=True)
    store = hive_store.open(f"sqlite://{folder / 'calls.db'}", plugins=plugins)
    tables = sorted(store.entities.items())
    c.tables = len(tables)
    values = st.one_of(hostile_values(huge=20_000), hostile_text(max_size=40, huge=20_000))
    turn = [0]
    start = time.perf_counter()

    @seed(seed_value)
    @settings(max_examples=n_values, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def one_value(data: st.DataObject) -> None:
        value = data.draw(values, label="value")
        c.values += 1
        for table, cls in tables:
            base = data.draw(entities(cls), label=table)
            turn[0] += 1
            _exercise_table(c, store, table, cls, base, value, turn[0])
        _exercise_store(c, store, value)

    try:
        one_value()
    finally:
        store.close()
        c.seconds = round(time.perf_counter() - start, 1)
    return c


# -- 2. kills ------------------------------------------------------------------------------------


def run_kills(folder: Path, kills: int, seed_value: int) -> dict[str, Any]:
    from tests.test_crash import KillLoop

    loop = KillLoop(folder, seed=seed_value, kills_per_server=50, max_delay=0.05)
    stats = loop.run(kills)
    out = asdict(stats)
    out["problems"] = out["problems"][:EXAMPLES]
    return out


# -- 3. threads x processes ----------------------------------------------------------------------


def _process(url: str, p: int, threads: int, seconds: float, out: Any) -> None:
    store = hive_store.open(url)
    errors: collections.Counter[str] = collections.Counter()
    examples: list[str] = []
    acked: list[tuple[str, str]] = []
    wrong = [0]
    ops = [0]
    lock = threading.Lock()
    handoff: queue.Queue[Any] = queue.Queue()
    deadline = time.monotonic() + seconds

    def note(exc: BaseException) -> None:
        with lock:
            errors[type(exc).__name__] += 1
            if len(examples) < EXAMPLES:
                examples.append(f"{type(exc).__name__}: {_short(str(exc), 160)}")

    def work(t: int) -> None:
        rng = random.Random(p * 1000 + t)
        mine: list[tuple[str, str]] = []
        i = 0
        while time.monotonic() < deadline:
            i += 1
            try:
                key, value = f"p{p}-t{t}-{i}", f"v{rng.random()}"
                if i % 10 == 0:
                    with store.transaction():
                        for k in range(3):
                            store.settings.add(Setting(key=f"{key}-{k}", value=value))
                    done = [(f"{key}-{k}", value) for k in range(3)]
                else:
                    store.settings.add(Setting(key=key, value=value))
                    done = [(key, value)]
                mine.extend(done)
                with lock:
                    acked.extend(done)
                    ops[0] += 1
                for _ in range(3):
                    want_key, want_value = mine[rng.randrange(len(mine))]
                    got = store.settings.get(want_key)
                    with lock:
                        ops[0] += 1
                        if got.key != want_key or got.value != want_value:
                            wrong[0] += 1
                if i % 7 == 0:  # an iterator started here, finished elsewhere or abandoned
                    it = store.settings.iter(order_by="key", batch_size=7)
                    first = next(it, None)
                    if i % 14 == 0:
                        handoff.put((it, first))
                    else:
                        del it
                while not handoff.empty():
                    try:
                        it, first = handoff.get_nowait()
                    except queue.Empty:
                        break
                    last = first.key if first is not None else ""
                    for row in it:
                        if row.key <= last:
                            with lock:
                                wrong[0] += 1
                        last = row.key
                    with lock:
                        ops[0] += 1
            except Exception as exc:
                note(exc)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    store.close()
    out.put({"process": p, "acked": acked, "wrong": wrong[0], "ops": ops[0],
             "errors": dict(errors), "examples": examples})


def run_threads(folder: Path, processes: int, threads: int, seconds: float) -> dict[str, Any]:
    url = f"sqlite://{folder / 'threads.db'}"
    hive_store.open(url).close()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_process, args=(url, p, threads, seconds, out))
             for p in range(processes)]
    start = time.perf_counter()
    for proc in procs:
        proc.start()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for proc in procs:
        proc.join(60)
    errors: collections.Counter[str] = collections.Counter()
    for r in results:
        errors.update(r["errors"])
    acked = [kv for r in results for kv in r["acked"]]
    with hive_store.open(url, read_only=True) as store:
        stored = {s.key: s.value for s in store.settings.iter(batch_size=5000)}
        integrity = store.backend.check_integrity(full=True)["ok"]  # type: ignore[attr-defined]
    missing = sum(1 for k, v in acked if stored.get(k) != v)
    return {"processes": processes, "threads": threads, "seconds": seconds,
            "operations": sum(r["ops"] for r in results), "acknowledged_writes": len(acked),
            "missing": missing, "wrong_rows": sum(r["wrong"] for r in results),
            "errors": dict(errors), "error_examples": [e for r in results
                                                      for e in r["examples"]][:EXAMPLES],
            "integrity_ok": integrity, "wall_seconds": round(time.perf_counter() - start, 1)}


# -- 4. forks -------------------------------------------------------------------------------------


def run_forks(folder: Path, forks: int) -> dict[str, Any]:
    url = f"sqlite://{folder / 'fork.db'}"
    refused = hangs = unexpected = child_ops = 0
    examples: list[str] = []
    acked: list[str] = []
    stop = threading.Event()
    with hive_store.open(url) as store:
        def writer(n: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                store.settings.add(Setting(key=f"w{n}-{i}", value="parent"))
                acked.append(f"w{n}-{i}")
                store.settings.get(f"w{n}-{i}")

        workers = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
        for w in workers:
            w.start()
        try:
            for k in range(forks):
                inside = k % 2 == 0
                ctx = store.transaction() if inside else None
                if ctx is not None:
                    ctx.__enter__()
                read_fd, write_fd = os.pipe()
                pid = os.fork()
                if pid == 0:  # the child: every use of the inherited store must be refused
                    report = []
                    for op in (lambda: store.settings.get("w0-1"),
                               lambda: store.settings.add(Setting(key="child", value="x")),
                               lambda: list(store.settings.iter()),
                               lambda: store.transaction().__enter__()):
                        try:
                            op()
                            report.append("ok")
                        except hive_store.HiveStoreError as exc:
                            report.append(type(exc).__name__)
                        except BaseException as exc:
                            report.append(f"!{type(exc).__name__}")
                    os.write(write_fd, json.dumps(report).encode())
                    os._exit(0)
                os.close(write_fd)
                ready, _, _ = select.select([read_fd], [], [], 30)
                if not ready:
                    hangs += 1
                    os.kill(pid, signal.SIGKILL)
                    report = []
                else:
                    report = json.loads(os.read(read_fd, 65536) or b"[]")
                os.close(read_fd)
                os.waitpid(pid, 0)
                if ctx is not None:
                    store.settings.upsert(Setting(key=f"tx-{k}", value="parent"))
                    ctx.__exit__(None, None, None)
                    acked.append(f"tx-{k}")
                child_ops += len(report)
                refused += sum(1 for r in report if r == "ForkedStore")
                bad = [r for r in report if r != "ForkedStore"]
                unexpected += len(bad)
                if bad and len(examples) < EXAMPLES:
                    examples.append(f"fork {k}: {report}")
        finally:
            stop.set()
            for w in workers:
                w.join(30)
        keys = {s.key for s in store.settings.iter(batch_size=5000)}
    return {"forks": forks, "child_operations": child_ops, "refused": refused,
            "unexpected": unexpected, "hangs": hangs, "examples": examples,
            "parent_acknowledged": len(acked), "parent_missing": len(set(acked) - keys),
            "child_rows_written": int("child" in keys)}


# -- the figures for docs/guarantees.md ----------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    """The figures as the table of docs/guarantees.md (from a report as ``--json`` writes)."""
    c, k, t = report["calls"], report["kills"], report["threads"]
    f = report.get("forks")
    m = report["machine"]
    load = m.get("load_average")
    escapes = ", ".join(f"{n} {name}" for name, n in sorted(c["escapes"].items())) or "none"
    errors = ", ".join(f"{name} {n}" for name, n in
                       sorted(c["errors"].items(), key=lambda kv: -kv[1]))
    where = [f"{n} from {m_}" for m_, n in sorted(c.get("escape_methods", {}).items())]
    mismatched = sorted(c.get("mismatch_fields", {}))
    rows = [
        ("API calls", f"{c['calls']:,} over {c['tables']} tables x {c['values']} hostile values x "
                      f"{len(c['by_method'])} public entry points, in {c['seconds']:g} s"),
        ("errors by type (allowed: HiveStoreError)", errors),
        ("escapes (anything else)", escapes + (f": {', '.join(where)}" if where else "")),
        ("writes read back", f"{c['writes_read_back']:,}; mismatches {c['mismatches']}"
         + (f" ({', '.join(mismatched)})" if mismatched else "")),
        ("kill -9 runs", f"{k['kills']} kills ({k['in_transaction']} inside a write), "
                         f"{k['acked_commits']} acknowledged commits ({k['acked_rows']} rows): "
                         f"lost {k['lost']}, partial {k['partial']}, integrity failures "
                         f"{k['integrity_failures']}"),
        ("threads x processes", f"{t['processes']} x {t['threads']} for {t['seconds']:g} s: "
                                f"{t['operations']:,} operations, {t['acknowledged_writes']:,} "
                                f"writes acknowledged: missing {t['missing']}, wrong rows "
                                f"{t['wrong_rows']}, errors {sum(t['errors'].values())}, "
                                f"integrity {'ok' if t['integrity_ok'] else 'FAILED'}"),
    ]
    if f:
        rows.append(("fork() while threads work",
                     f"{f['forks']} forks, {f['child_operations']} uses of the inherited store "
                     f"in the child: {f['refused']} refused with ForkedStore, "
                     f"{f['unexpected']} otherwise, {f['hangs']} hangs; parent missing "
                     f"{f['parent_missing']} of {f['parent_acknowledged']:,} acknowledged"))
    lines = ["| what | figures |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    lines.append("")
    lines.append(f"Seed {report['settings']['seed']}; Python {m['python']}, SQLite {m['sqlite']}, "
                 f"{m['cpus']} CPUs, load average at the start "
                 f"{', '.join(f'{x:.1f}' for x in load) if load else 'unknown'}; "
                 f"{report['seconds']:g} s in all; exit status "
                 f"{'0 (every count that must be zero is zero)' if report['passed'] else '1'}.")
    return "\n".join(lines) + "\n"


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small numbers (about a minute)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--markdown", type=Path, help="also write the docs table here")
    ap.add_argument("--from-json", type=Path, help="make --markdown from an earlier --json")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--values", type=int, help="hostile values (default 150, quick 25)")
    ap.add_argument("--kills", type=int, help="kill -9 runs (default 100, quick 20)")
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--threads", type=int, default=3)
    ap.add_argument("--seconds", type=float, help="threads x processes (default 20, quick 5)")
    ap.add_argument("--forks", type=int, help="forks while threads work (default 20, quick 6)")
    args = ap.parse_args()
    if args.from_json:
        text = markdown(json.loads(args.from_json.read_text()))
        if args.markdown:
            args.markdown.write_text(text)
        print(text, end="")
        return
    q = args.quick
    n_values = args.values or (25 if q else 150)
    kills = args.kills if args.kills is not None else (20 if q else 100)
    seconds = args.seconds or (5.0 if q else 20.0)
    forks = args.forks if args.forks is not None else (6 if q else 20)

    folder = Path(tempfile.mkdtemp(prefix="hive-adversarial-"))
    started = time.perf_counter()
    report: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
                    "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg")
                    else None},
        "settings": {"seed": args.seed, "values": n_values, "kills": kills,
                     "processes": args.processes, "threads": args.threads,
                     "seconds": seconds, "forks": forks}}
    try:
        print(f"calls: {n_values} hostile values over every table and method …", flush=True)
        calls = run_calls(folder, n_values, args.seed)
        report["calls"] = {**attrs.asdict(calls), "errors": dict(calls.errors),
                           "escapes": dict(calls.escapes), "by_method": dict(calls.by_method),
                           "escape_methods": dict(calls.escape_methods),
                           "mismatch_fields": dict(calls.mismatch_fields)}
        print(f"  {calls.calls} calls ({calls.tables} tables x {calls.values} values), "
              f"{sum(calls.errors.values())} HiveStoreError, {sum(calls.escapes.values())} "
              f"escapes {dict(calls.escapes)}, {calls.writes_read_back} writes read back, "
              f"{calls.mismatches} mismatches, {calls.seconds} s", flush=True)
        kill_dir = folder / "kills"
        kill_dir.mkdir()
        print(f"kills: {kills} kill -9 runs …", flush=True)
        report["kills"] = run_kills(kill_dir, kills, args.seed)
        k = report["kills"]
        print(f"  {k['kills']} kills, {k['acked_commits']} acknowledged commits, lost "
              f"{k['lost']}, partial {k['partial']}, integrity failures "
              f"{k['integrity_failures']}", flush=True)
        print(f"threads x processes: {args.processes} x {args.threads} for {seconds:g} s …",
              flush=True)
        report["threads"] = run_threads(folder, args.processes, args.threads, seconds)
        t = report["threads"]
        print(f"  {t['operations']} operations, {t['acknowledged_writes']} writes acknowledged, "
              f"missing {t['missing']}, wrong rows {t['wrong_rows']}, errors {t['errors']}",
              flush=True)
        if hasattr(os, "fork") and forks:
            print(f"forks: {forks} while threads work …", flush=True)
            report["forks"] = run_forks(folder, forks)
            f = report["forks"]
            print(f"  {f['child_operations']} child operations, {f['refused']} refused "
                  f"clearly, {f['unexpected']} otherwise, {f['hangs']} hangs, parent missing "
                  f"{f['parent_missing']}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    c, k, t = report["calls"], report["kills"], report["threads"]
    f = report.get("forks", {})
    failed = bool(sum(c["escapes"].values()) or c["mismatches"] or k["lost"] or k["partial"]
                  or k["integrity_failures"] or t["missing"] or t["wrong_rows"] or t["errors"]
                  or not t["integrity_ok"] or f.get("hangs") or f.get("unexpected")
                  or f.get("parent_missing") or f.get("child_rows_written"))
    report["passed"] = not failed
    for e in c["escape_examples"]:
        print(f"ESCAPE {e['type']} from {e['method']} on {e['table']} with {e['value']}: "
              f"{e['error']}")
    for m in c["mismatch_examples"]:
        print(f"MISMATCH {m['table']} {m['method']} {m['fields']}: returned {m['returned']}, "
              f"stored {m['stored']}")
    print(f"{'passed' if not failed else 'FAILED'} in {report['seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
    if args.markdown:
        args.markdown.write_text(markdown(report))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
