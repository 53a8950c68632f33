"""hive-store against the libraries a user would pick instead, in the same run (issue 17).

    python bench/peers.py [--quick] [--json out.json] [--only SCENARIO[,…]]
                          [--systems NAME[,…]] [--rounds N] [--tmpdir DIR] [--no-memory]

Systems: raw ``sqlite3`` (the baseline of every ratio), hive-store, SQLAlchemy 2 Core,
SQLAlchemy 2 ORM, peewee and sqlite-utils (install the pinned versions with
``pip install -e '.[bench]'``), each written the way its documentation recommends
(``peer_systems.py`` cites the pages). All of them work on the real ``messages`` table of a
file ``hive_store.open`` created, with the same rows and the same PRAGMAs.

Scenarios: ``bulk`` (rows in one transaction), ``single`` (one transaction per row), ``get``
(by id), ``range`` (one conversation's ~100 messages, in rowid order), ``stream`` (every row
of a 1M-row table; peak Python memory of one extra run), ``concurrency`` (4 reader threads
getting by id + 1 writer thread adding single rows, for a fixed time; reads/s and writes/s).

Method: rounds are interleaved and rotated (round r runs every system once, starting with the
r-th), only the operation is timed. Before the timed rounds each system runs each scenario once,
untimed and traced: the PRAGMAs of every connection it used must equal everyone else's
and the statements it ran are counted per operation. The rows each system wrote are compared
with the input rows (values and SQLite types: identical digests), and every system's reads
must return the same values (typed systems: the same instant). Any mismatch stops the run
(exit 3).

Reported per scenario and system: the median rate and the median, min and max of the
per-round ratio to raw; hive-store ÷ best peer, ÷ SQLAlchemy Core, ÷ sqlite-utils and ÷ best
ORM per round (median, min-max) against the targets of issue 17 (≥ 1.0, ≥ 1.0, ≥ 2.0).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common import (
    MSG_COLUMNS,
    MSG_TABLE,
    TRACE,
    Data,
    Measured,
    MessageSet,
    Trial,
    Workspace,
    check_same,
    fail,
    fmt,
    machine,
    message_set,
    peak_kib,
    raw_connect,
    rows_digest,
    seed,
    shape,
    spread,
    timed,
    use_plugins,
    warn_if_loaded,
)
from peer_systems import ORMS, PEERS, SYSTEMS

SCENARIOS = ("bulk", "single", "get", "range", "stream", "concurrency")
LABELS = {"raw": "raw", "hive-store": "hive-store", "sa-core": "SA Core", "sa-orm": "SA ORM",
          "peewee": "peewee", "sqlite-utils": "sqlite-utils"}
TARGETS = {"best_peer": 1.0, "sa-core": 1.0, "sqlite-utils": 1.0, "best_orm": 2.0}


@dataclass(frozen=True)
class Sizes:
    bulk: int
    single: int
    read_rows: int
    gets: int
    ranges: int
    stream_rows: int
    concurrency_s: float
    rounds: int
    rounds_long: int  # stream and concurrency


FULL = Sizes(bulk=100_000, single=5_000, read_rows=100_000, gets=50_000, ranges=1_000,
             stream_rows=1_000_000, concurrency_s=5.0, rounds=5, rounds_long=3)
QUICK = Sizes(bulk=10_000, single=500, read_rows=10_000, gets=5_000, ranges=200,
              stream_rows=50_000, concurrency_s=1.0, rounds=3, rounds_long=2)


class Peers:
    def __init__(self, ws: Workspace, sizes: Sizes, systems: Sequence[str],
                 rounds: int | None) -> None:
        self.ws, self.sizes, self.systems, self.rounds = ws, sizes, list(systems), rounds
        self.data = Data()
        self.memory = True  # the tracemalloc run of ``stream``
        self._writes: MessageSet | None = None
        self._read: tuple[Path, MessageSet] | None = None

    def writes(self) -> MessageSet:
        if self._writes is None:
            self._writes = message_set(self.data, max(self.sizes.bulk, self.sizes.single))
        return self._writes

    def read_db(self) -> tuple[Path, MessageSet]:
        if self._read is None:
            ms = message_set(self.data, self.sizes.read_rows)
            path = self.ws.fresh("read")
            seed(path, ms.conv_rows, ms.rows)
            self._read = (path, ms)
        return self._read

    # -- trials: one system, one run -------------------------------------------------------------

    def write_trial(self, name: str, kind: str, checks: dict[str, Any]) -> Trial:
        ms = self.writes()
        n = self.sizes.bulk if kind == "bulk" else self.sizes.single
        rows = ms.rows[:n]
        path = self.ws.fresh(f"{kind}-{name}")
        seed(path, ms.conv_rows)
        system = SYSTEMS[name]()
        system.open(path)
        work = system.prepare_bulk(rows) if kind == "bulk" else system.prepare_single(rows)

        def cleanup() -> None:
            system.close()
            if name not in checks:
                checks[name] = stored_rows_check(path, rows, f"{kind}: {LABELS[name]}")
            self.ws.remove(path)

        return Trial(lambda: timed(work, n), cleanup)

    def read_trial(self, name: str, kind: str, path: Path, inputs: Sequence[Any],
                   work_units: int) -> Trial:
        system = SYSTEMS[name]()
        system.open(path)
        if kind == "get":
            def body() -> None:
                get = system.get
                for key in inputs:
                    get(key)
        elif kind == "range":
            def body() -> None:
                find = system.range
                for cid in inputs:
                    find(cid)
        else:
            def body() -> None:
                k = 0
                for _item in system.stream():
                    k += 1
                if k != work_units:
                    fail(f"stream: {LABELS[name]} read {k:,} rows, expected {work_units:,}")
        return Trial(lambda: timed(body, work_units), system.close)

    def concurrency_trial(self, name: str, checks: dict[str, Any]) -> Trial:
        read_path, ms = self.read_db()
        path = self.ws.fresh(f"conc-{name}", read_path)
        extra_rows = list(Data(seed=23).message_rows(int(self.sizes.concurrency_s * 15_000),
                                                     ms.conv_ids, start=len(ms.rows)))
        ids = [r[0] for r in ms.rows]
        system = SYSTEMS[name]()
        system.open(path)
        duration = self.sizes.concurrency_s
        written: list[int] = []

        def run() -> Measured:
            stop = threading.Event()
            results: list[tuple[str, int, int]] = []
            lock = threading.Lock()

            def reader(k: int) -> None:
                worker = system.worker()
                rng = random.Random(100 + k)
                ops = errors = 0
                try:
                    get, choice = worker.get, rng.choice
                    while not stop.is_set():
                        try:
                            get(choice(ids))
                            ops += 1
                        except Exception as exc:
                            if not _locked(exc):
                                raise
                            errors += 1
                finally:
                    worker.close()
                with lock:
                    results.append(("r", ops, errors))

            def writer() -> None:
                worker = system.worker()
                ops = errors = 0
                try:
                    for row in extra_rows:
                        if stop.is_set():
                            break
                        try:
                            worker.add(row)
                            ops += 1
                        except Exception as exc:
                            if not _locked(exc):
                                raise
                            errors += 1
                finally:
                    worker.close()
                with lock:
                    results.append(("w", ops, errors))

            threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
            threads.append(threading.Thread(target=writer))
            cpu = time.process_time()
            start = time.perf_counter()
            for t in threads:
                t.start()
            time.sleep(duration)
            stop.set()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - start
            if len(results) != 5:
                fail(f"concurrency: a thread of {LABELS[name]} died (see the traceback above)")
            writes = sum(o for k, o, _ in results if k == "w")
            written.append(writes)
            return Measured(sum(o for k, o, _ in results if k == "r"), elapsed,
                            {"writes_per_s": writes / elapsed,
                             "lock_errors": float(sum(e for _, _, e in results))},
                            cpu=time.process_time() - cpu)

        def cleanup() -> None:
            system.close()
            if name not in checks and written:
                checks[name] = stored_rows_check(
                    path, extra_rows[:written[-1]], f"concurrency: {LABELS[name]}",
                    where=f"WHERE rowid > {len(ms.rows)}")
            self.ws.remove(path)

        return Trial(run, cleanup)

    # -- scenarios --------------------------------------------------------------------------------

    def scenario(self, key: str) -> dict[str, Any]:
        s = self.sizes
        checks: dict[str, Any] = {}
        rounds = self.rounds or (s.rounds_long if key in ("stream", "concurrency") else s.rounds)
        stream_path: Path | None = None
        if key in ("bulk", "single"):
            units = s.bulk if key == "bulk" else s.single
            name = (f"bulk insert {units:,} rows, one transaction" if key == "bulk"
                    else f"single inserts {units:,}, one transaction each")
            unit = "rows/s"

            def make(sys_name: str) -> Trial:
                return self.write_trial(sys_name, key, checks)
        elif key in ("get", "range"):
            path, ms = self.read_db()
            rng = random.Random(11 if key == "get" else 12)
            if key == "get":
                inputs: list[Any] = [rng.choice(ms.rows)[0] for _ in range(s.gets)]
                name, unit = f"get by id x{s.gets:,} ({len(ms.rows):,} rows)", "reads/s"
            else:
                inputs = [rng.choice(ms.conv_ids) for _ in range(s.ranges)]
                name, unit = f"range read x{s.ranges:,} (~100 rows each)", "queries/s"
            self.read_check(path, ms)

            def make(sys_name: str) -> Trial:
                return self.read_trial(sys_name, key, path, inputs, len(inputs))
        elif key == "stream":
            stream_path = self.stream_db()
            name, unit = f"stream {s.stream_rows:,} rows", "rows/s"

            def make(sys_name: str) -> Trial:
                assert stream_path is not None
                return self.read_trial(sys_name, "stream", stream_path, (), s.stream_rows)
        else:
            name = f"4 readers (get) + 1 writer (single inserts), {s.concurrency_s:g} s"
            unit = "reads/s"

            def make(sys_name: str) -> Trial:
                return self.concurrency_trial(sys_name, checks)

        statements = self.traced(key, make)
        measured: dict[str, list[Measured]] = {n: [] for n in self.systems}
        for r in range(rounds):
            order = self.systems[r % len(self.systems):] + self.systems[:r % len(self.systems)]
            for sys_name in order:
                trial = make(sys_name)
                try:
                    measured[sys_name].append(trial.run())
                finally:
                    trial.cleanup()
                gc.collect()
        if key in ("bulk", "single", "concurrency"):
            check_same(f"{key}: digests of the rows each system wrote",
                       {LABELS[n]: c for n, c in checks.items()} if key != "concurrency" else
                       {LABELS[n]: True for n in checks})
        result = summarise(key, name, unit, self.systems, measured, statements)
        if key == "concurrency":
            result["writes"] = summarise_extra(measured, self.systems, "writes_per_s")
            result["lock_errors"] = {LABELS[n]: sum(m.extra["lock_errors"] for m in ms_)
                                     for n, ms_ in measured.items()}
        if key in ("bulk", "single"):
            result["digests"] = {LABELS[n]: c for n, c in checks.items()}
        if key == "stream" and self.memory:
            assert stream_path is not None
            result["peak_kib"] = {}
            for sys_name in self.systems:
                result["peak_kib"][LABELS[sys_name]] = round(peak_kib(
                    self.read_trial(sys_name, "stream", stream_path, (), s.stream_rows)))
        return result

    def traced(self, key: str, make: Callable[[str], Trial]) -> dict[str, dict[str, float]]:
        """One untimed, traced run per system: PRAGMAs of every connection, statements/op."""
        if key == "stream" and self.sizes.stream_rows > 100_000:
            return {}  # one SELECT per system; not worth another full pass
        seen: dict[str, Any] = {}
        per_op: dict[str, dict[str, float]] = {}
        with TRACE.tracing():
            for sys_name in self.systems:
                trial = make(sys_name)
                counter, found = TRACE.record(trial)
                for i, p in enumerate(found):
                    seen[f"{LABELS[sys_name]} connection {i + 1}"] = p
                work = {"bulk": self.sizes.bulk, "single": self.sizes.single,
                        "get": self.sizes.gets, "range": self.sizes.ranges,
                        "stream": 1}.get(key)
                if work:
                    per_op[LABELS[sys_name]] = statements_per_op(counter, work)
        check_same(f"{key}: PRAGMAs of every connection each system used", seen)
        return per_op

    def stream_db(self) -> Path:
        n = self.sizes.stream_rows
        conv_rows = self.data.conversation_rows(max(1, n // 100))
        path = self.ws.fresh("stream")
        print(f"  building the {n:,}-row database …", file=sys.stderr, flush=True)
        seed(path, conv_rows, self.data.message_rows(n, [r[0] for r in conv_rows]))
        return path

    def read_check(self, path: Path, ms: MessageSet) -> None:
        """Every system reads the same values (typed ones: the same instant) for a sample of
        ids and conversations; records what type each returns for the timestamp."""
        rng = random.Random(5)
        keys = [rng.choice(ms.rows)[0] for _ in range(20)]
        convs = [rng.choice(ms.conv_ids) for _ in range(3)]
        by_id = {r[0]: r for r in ms.rows}
        by_conv: dict[str, list[tuple[Any, ...]]] = {}
        for r in ms.rows:
            by_conv.setdefault(r[1], []).append(r)
        for sys_name in self.systems:
            system = SYSTEMS[sys_name]()
            system.open(path)
            try:
                got = [system.canonical(system.get(k)) for k in keys]
                want = [by_id[k] for k in keys]
                ranges = [[system.canonical(x) for x in system.range(c)] for c in convs]
                stamp = timestamp_of(system.get(keys[0]))
            finally:
                system.close()
            if got != want or ranges != [by_conv[c] for c in convs]:
                fail(f"{LABELS[sys_name]} read other values than were stored")
            TYPES[LABELS[sys_name]] = type(stamp).__name__ + (
                " (aware)" if getattr(stamp, "tzinfo", None) is not None else "")


TYPES: dict[str, str] = {}


def timestamp_of(item: Any) -> Any:
    if isinstance(item, dict):
        return item["timestamp"]
    if hasattr(item, "timestamp"):
        return item.timestamp
    return item[6]


def _locked(exc: BaseException) -> bool:
    low = f"{type(exc).__name__} {exc}".lower()
    return "locked" in low or "busy" in low or "pooltimeout" in low


def stored_rows_check(path: Path, rows: Sequence[tuple[Any, ...]], what: str,
                      where: str = "") -> tuple[int, str]:
    """The rows a system wrote must be the input rows, in order, with TEXT/NULL types:
    returns (count, digest) for the cross-system comparison."""
    conn = raw_connect(path)
    try:
        stored = conn.execute(f"SELECT {MSG_COLUMNS} FROM {MSG_TABLE} {where} "
                              "ORDER BY rowid").fetchall()
        types = {t for (t,) in conn.execute(
            f"SELECT DISTINCT typeof(\"timestamp\") FROM {MSG_TABLE} {where}")}
        digest = rows_digest(conn, where)
    finally:
        conn.close()
    if stored != list(rows):
        bad = next((i for i, (a, b) in enumerate(zip(stored, rows, strict=False)) if a != b),
                   min(len(stored), len(rows)))
        fail(f"{what} stored other rows than it was given ({len(stored):,} vs {len(rows):,} "
             f"rows; first difference at row {bad}: "
             f"{stored[bad] if bad < len(stored) else None!r:.200} vs "
             f"{rows[bad] if bad < len(rows) else None!r:.200})")
    if not types <= {"text", "null"}:
        fail(f"{what} stored timestamps of type {types}, not text")
    return digest


def statements_per_op(counter: Counter[str], work: int) -> dict[str, float]:
    kinds: Counter[str] = Counter()
    for stmt, n in counter.items():
        kinds[shape(stmt).lstrip().split(" ", 1)[0].upper()] += n
    return {k: round(v / work, 3) for k, v in kinds.most_common()}


def _ratio_spread(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    return spread([x / y for x, y in zip(a, b, strict=True)])


def summarise(key: str, name: str, unit: str, systems: Sequence[str],
              measured: dict[str, list[Measured]],
              statements: dict[str, dict[str, float]]) -> dict[str, Any]:
    rates = {n: [m.rate for m in measured[n]] for n in systems}
    cpu = {n: [m.cpu_rate for m in measured[n]] for n in systems}
    out: dict[str, Any] = {"key": key, "name": name, "unit": unit,
                           "rounds": len(next(iter(rates.values()))), "systems": {}}
    for n in systems:
        entry: dict[str, Any] = {"rate": spread(rates[n])}
        if "raw" in rates:
            entry["ratio_to_raw"] = _ratio_spread(rates[n], rates["raw"])
            entry["ratio_to_raw_cpu"] = _ratio_spread(cpu[n], cpu["raw"])
        entry["returns"] = TYPES.get(LABELS[n], "")
        if LABELS[n] in statements:
            entry["statements_per_op"] = statements[LABELS[n]]
        out["systems"][LABELS[n]] = entry
    if "hive-store" in rates:
        ours = rates["hive-store"]
        vs: dict[str, Any] = {}
        peers = [p for p in PEERS if p in rates]
        orms = [p for p in ORMS if p in rates]
        rounds = range(len(ours))
        if peers:
            vs["best_peer"] = spread([ours[i] / max(rates[p][i] for p in peers) for i in rounds])
        for p in ("sa-core", "sqlite-utils"):
            if p in rates:
                vs[p] = _ratio_spread(ours, rates[p])
        if orms:
            vs["best_orm"] = spread([ours[i] / max(rates[p][i] for p in orms) for i in rounds])
        out["hive_store_vs"] = vs
        out["met"] = {k: v["median"] >= TARGETS[k] for k, v in vs.items()}
        if peers:  # the same from CPU time: steadier on a loaded machine, blind to I/O waits
            c = cpu["hive-store"]
            out["hive_store_vs_cpu"] = {"best_peer": spread(
                [c[i] / max(cpu[p][i] for p in peers) for i in rounds])}
    return out


def summarise_extra(measured: dict[str, list[Measured]], systems: Sequence[str],
                    key: str) -> dict[str, Any]:
    rates = {n: [m.extra[key] for m in measured[n]] for n in systems}
    out: dict[str, Any] = {}
    for n in systems:
        out[LABELS[n]] = {"rate": spread(rates[n])}
        if "raw" in rates:
            out[LABELS[n]]["ratio_to_raw"] = _ratio_spread(rates[n], rates["raw"])
    return out


def print_table(results: Sequence[dict[str, Any]], systems: Sequence[str]) -> None:
    cols = [LABELS[n] for n in systems]
    head = f"{'scenario':<44} {'unit':<10}" + "".join(f"{c:>19}" for c in cols)
    head += f"  {'hive÷best peer':>20}"
    print(head)
    print("-" * len(head))
    for res in results:
        line = f"{res['name'][:44]:<44} {res['unit']:<10}"
        for c in cols:
            e = res["systems"][c]
            ratio = e.get("ratio_to_raw", {}).get("median", float("nan"))
            line += f"{fmt(e['rate']['median']):>11} ({ratio:4.2f})"
        vs = res.get("hive_store_vs", {}).get("best_peer")
        if vs:
            line += f"  {vs['median']:6.2f} ({vs['min']:.2f}-{vs['max']:.2f})"
            cpu = res.get("hive_store_vs_cpu", {}).get("best_peer")
            if cpu:
                line += f" cpu {cpu['median']:.2f}"
        print(line)
        if "writes" in res:
            line = f"{'  same runs: writes/s':<44} {'writes/s':<10}"
            for c in cols:
                e = res["writes"][c]
                ratio = e.get("ratio_to_raw", {}).get("median", float("nan"))
                line += f"{fmt(e['rate']['median']):>11} ({ratio:4.2f})"
            print(line)
    print("\ncells: median rate (median ratio to raw). hive-store ÷ peers per round, median "
          "(min-max), targets ≥ 1.0 vs SA Core and sqlite-utils, ≥ 2.0 vs the best ORM:")
    missed = []
    for res in results:
        vs = res.get("hive_store_vs", {})
        bits = [f"{k} {v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f})"
                f"{'' if res['met'][k] else ' NOT MET'}" for k, v in vs.items()]
        missed += [f"{res['key']} vs {k}" for k, ok in res.get("met", {}).items() if not ok]
        print(f"* {res['key']}: " + "; ".join(bits))
        if "peak_kib" in res:
            print("  peak KiB (tracemalloc): " + ", ".join(
                f"{k} {v:,}" for k, v in res["peak_kib"].items()))
        if "lock_errors" in res:
            print("  lock errors: " + ", ".join(f"{k} {v:g}" for k, v in
                                               res["lock_errors"].items()))
    print("\ntargets not met: " + (", ".join(missed) if missed else "none"))
    print("timestamps returned: " + ", ".join(f"{k}: {v}" for k, v in TYPES.items()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--only", help=f"comma-separated scenarios: {', '.join(SCENARIOS)}")
    parser.add_argument("--systems", help=f"comma-separated: {', '.join(SYSTEMS)} "
                                          "(raw and hive-store are always included)")
    parser.add_argument("--rounds", type=int, help="override the number of rounds")
    parser.add_argument("--tmpdir", help="where the database files go")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc run")
    args = parser.parse_args(argv)
    use_plugins("core")
    sizes = QUICK if args.quick else FULL
    wanted = SCENARIOS if not args.only else tuple(k.strip() for k in args.only.split(","))
    systems = list(SYSTEMS) if not args.systems else ["raw", "hive-store"] + [
        s.strip() for s in args.systems.split(",") if s.strip() not in ("raw", "hive-store")]
    for bad in [k for k in wanted if k not in SCENARIOS] + [s for s in systems
                                                              if s not in SYSTEMS]:
        parser.error(f"unknown scenario or system {bad!r}")
    load = warn_if_loaded()
    began = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="hive-store-peers-", dir=args.tmpdir))
    results = []
    try:
        ws = Workspace(tmp)
        peers = Peers(ws, sizes, systems, args.rounds)
        peers.memory = not args.no_memory
        for key in wanted:
            t0 = time.perf_counter()
            print(f"[{key}] …", file=sys.stderr, flush=True)
            results.append(peers.scenario(key))
            vs = results[-1].get("hive_store_vs", {}).get("best_peer", {})
            print(f"[{key}] hive-store ÷ best peer {vs.get('median', float('nan')):.2f} "
                  f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        info = machine(quick=args.quick, sizes=asdict(sizes), systems=systems,
                       loadavg_start=[round(x, 2) for x in load], returns=dict(TYPES))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = time.perf_counter() - began
    print()
    print_table(results, systems)
    print(f"\n{len(results)} scenarios in {total:.1f} s · Python {info['python']} · SQLite "
          f"{info['sqlite_version']} · {info['cpu_count']} CPUs · "
          + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v))
    if args.json:
        info["seconds"] = round(total, 1)
        Path(args.json).write_text(json.dumps(
            {"script": "peers", "machine": info, "scenarios": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
