"""hive-store against raw ``sqlite3``: the performance suite of issues 7 and 17.

    python bench/run.py [--quick] [--json out.json] [--only SCENARIO[,SCENARIO…]]
                        [--repeats N] [--tmpdir DIR] [--no-memory] [--plugins core|default]
    python bench/run.py --backend postgresql [...]   (bench/postgres.py: against psycopg)

Every scenario runs the raw stdlib ``sqlite3`` reference and hive-store alternately (ABAB…
with the order flipped every repeat), on fresh database files made from one template that
``hive_store.open`` created, so both sides have the canonical Hive schema, its indexes and the
same per-connection PRAGMAs. Only the operation itself is timed; opening, seeding and building
inputs are not.

Fairness is checked, not assumed: before the timed repeats of a scenario, one untimed run of
each side is traced (``sqlite3``'s ``set_trace_callback`` on every connection either side
opens) and the run stops with exit status 3 if the sides ran different SQL where they must run
the same, or if any of their connections reports different PRAGMAs.

Each scenario reports the median of both sides in its unit (always a rate: higher is better),
the median of the per-repeat ratios hive-store ÷ raw with their min-max, the same ratio from
process CPU time (steadier on a shared machine, blind to I/O waits), the target, and the
peak Python memory of one extra, untimed run of each side under ``tracemalloc`` (allocations
made by Python code and the sqlite3 module's Python objects; SQLite's own page cache is not
included). See bench/README.md for what each scenario measures.

Plugins: by default (``--plugins core``) only the two plugins the storage core needs are loaded,
``sqlite`` (the backend) and ``migrate`` (the canonical schema); every other entry point of the
``hive_store`` group, built-in or third-party, is disabled through ``HIVE_STORE_DISABLE_PLUGINS``
and ``HIVE_STORE_LOAD_PLUGINS``. Plugins may add triggers to core tables (both sides then pay
them) and commit hooks (hive-store only); ``--plugins default`` keeps whatever the environment
loads, to measure that cost.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common import (
    TRACE,
    Measured,
    Workspace,
    check_same,
    compare_shapes,
    fmt,
    machine,
    open_store,
    peak_kib,
    pragmas,
    raw_connect,
    rnd,
    use_plugins,
    warn_if_loaded,
)
from hot import FULL, QUICK, Bench, Scenario


@dataclass
class Outcome:
    key: str
    scenario: str
    unit: str
    raw: float
    ours: float
    ratio: float
    target: float | None
    met: bool | None
    repeats: int
    ratio_min: float
    ratio_max: float
    ratio_cpu: float  # the same ratio from CPU time (robust to other load; excludes I/O waits)
    raw_label: str
    ours_label: str
    memory: dict[str, Any]
    extra: dict[str, Any]
    note: str = ""
    same_sql: str | None = None

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("raw", "ours", "ratio", "ratio_min", "ratio_max", "ratio_cpu"):
            out[key] = rnd(out[key])
        return out


def verify_same_pragmas(ws: Workspace) -> dict[str, Any]:
    """Read the PRAGMAs back from a raw connection and a hive-store connection; stop if they
    differ (the comparison would be meaningless)."""
    path = ws.fresh("pragmas")
    raw = raw_connect(path)
    store = open_store(path)
    try:
        raw_p = pragmas(raw)
        with store.backend.connection() as conn:
            ours_p = pragmas(conn)
    finally:
        raw.close()
        store.close()
        ws.remove(path)
    return dict(check_same("PRAGMAs", {"raw": raw_p, "hive-store": ours_p}))


def check_sql(sc: Scenario) -> dict[str, Any]:
    """One traced, untimed run of each side: the statements must match (``sc.same_sql``) and
    every connection either side used must report the same PRAGMAs."""
    shapes = {}
    seen: dict[str, Any] = {}
    with TRACE.tracing():
        for side, prepare in (("raw", sc.raw), ("hive-store", sc.ours)):
            counter, conn_pragmas = TRACE.record(prepare())
            shapes[side] = counter
            for i, p in enumerate(conn_pragmas):
                seen[f"{side} connection {i + 1}"] = p
    if seen:
        check_same(f"{sc.key}: PRAGMAs of the connections used", seen)
    out: dict[str, Any] = {"statements": {side: sum(c.values()) for side, c in shapes.items()},
                           "connections_checked": len(seen)}
    if sc.same_sql == "dml":
        dml = {side: Counter({s: n for s, n in c.items() if is_dml(s)})
               for side, c in shapes.items()}
        compare_shapes(sc.key, dml, counts=True)
        other = shapes["hive-store"] - shapes["raw"]
        if other:
            out["hive_store_only_statements"] = dict(other)
    elif sc.same_sql is not None:
        compare_shapes(sc.key, shapes, counts=sc.same_sql == "counts")
    return out


def is_dml(statement: str) -> bool:
    return statement.lstrip().split(" ", 1)[0].upper() in (
        "INSERT", "UPDATE", "DELETE", "SELECT", "REPLACE", "WITH")


def run_scenario(sc: Scenario, *, memory: bool) -> list[Outcome]:
    checked = check_sql(sc)
    raws: list[Measured] = []
    ours: list[Measured] = []
    sides = ((sc.raw, raws), (sc.ours, ours))
    for rep in range(sc.repeats):
        for prepare, out in (sides if rep % 2 == 0 else sides[::-1]):
            trial = prepare()
            try:
                out.append(trial.run())
            finally:
                trial.cleanup()
    ratios = [o.rate / r.rate for r, o in zip(raws, ours, strict=True)]
    cpu_ratios = [o.cpu_rate / r.cpu_rate for r, o in zip(raws, ours, strict=True)]
    mem: dict[str, Any] = {"method": "tracemalloc (Python allocations, one untimed run each)"}
    if memory:
        mem["raw_peak_kib"] = round(peak_kib(sc.raw()))
        mem["ours_peak_kib"] = round(peak_kib(sc.ours()))
        if sc.memory_extra is not None:
            mem.update(sc.memory_extra(mem))
    extra: dict[str, Any] = {"sql_checked": sc.same_sql or "no (meant to differ)", **checked}
    for side, runs in (("raw", raws), ("ours", ours)):
        for key in sorted({k for m in runs for k in m.extra}):
            extra[f"{side}_{key}"] = rnd(statistics.median(m.extra.get(key, 0.0) for m in runs))
    if sc.verify is not None:
        extra.update(sc.verify())
    ratio = statistics.median(ratios)
    met = None if sc.target is None else ratio >= sc.target
    if met and sc.must_be_zero:
        met = all(m.extra.get(k, 0.0) == 0 for m in (*raws, *ours) for k in sc.must_be_zero)
    if met and mem.get("ours_flat") is False:  # iter: the target includes flat memory
        met = False
    out = [Outcome(
        key=sc.key, scenario=sc.name, unit=sc.unit,
        raw=statistics.median(m.rate for m in raws), ours=statistics.median(m.rate for m in ours),
        ratio=ratio, target=sc.target, met=met,
        repeats=sc.repeats, ratio_min=min(ratios), ratio_max=max(ratios),
        ratio_cpu=statistics.median(cpu_ratios),
        raw_label=sc.raw_label, ours_label=sc.ours_label, memory=mem, extra=extra,
        note=sc.note, same_sql=sc.same_sql,
    )]
    if sc.secondary is not None:
        key, name = sc.secondary
        r2 = [o.extra[key] / r.extra[key] if r.extra.get(key) else float("nan")
              for r, o in zip(raws, ours, strict=True)]
        out.append(Outcome(
            key=f"{sc.key}_{key}", scenario=name, unit=key, ratio=statistics.median(r2),
            raw=statistics.median(m.extra[key] for m in raws),
            ours=statistics.median(m.extra[key] for m in ours), target=None, met=None,
            repeats=sc.repeats, ratio_min=min(r2), ratio_max=max(r2), ratio_cpu=float("nan"),
            raw_label=sc.raw_label, ours_label=sc.ours_label, memory={}, extra={},
            note="context: the writer's rate in the runs above", same_sql=sc.same_sql))
    return out


def print_table(outcomes: Sequence[Outcome]) -> None:
    head = (f"{'scenario':<62} {'unit':<9} {'raw':>10} {'ours':>10} {'ratio':>6} "
            f"{'min-max':>11} {'cpu':>5} {'target':>6} {'met':>4}  peak KiB raw/ours")
    print(head)
    print("-" * len(head))
    for o in outcomes:
        target = "—" if o.target is None else f"{o.target:.2f}"
        met = "—" if o.met is None else ("yes" if o.met else "NO")
        mem = o.memory
        peaks = (f"{mem['raw_peak_kib']:,} / {mem['ours_peak_kib']:,}"
                 if "raw_peak_kib" in mem else "—")
        print(f"{o.scenario:<62.62} {o.unit[:9]:<9} {fmt(o.raw):>10} {fmt(o.ours):>10} "
              f"{o.ratio:>6.2f} {o.ratio_min:>5.2f}-{o.ratio_max:<5.2f} {o.ratio_cpu:>5.2f} "
              f"{target:>6} {met:>4}  {peaks}")
    print()
    for o in outcomes:
        bits = [f"raw = {o.raw_label}; ours = {o.ours_label}"]
        bits += [f"{k}={v}" for k, v in o.extra.items()]
        bits += [f"{k}={v}" for k, v in o.memory.items()
                 if k not in ("method", "raw_peak_kib", "ours_peak_kib")]
        if o.note:
            bits.append(o.note)
        print(f"* {o.scenario}: " + "; ".join(str(b) for b in bits))
    missed = [o.key for o in outcomes if o.met is False]
    print("\ntargets not met: " + (", ".join(missed) if missed else "none"))
    print("ratio = median over repeats of ours/raw (rates; higher is better), min-max over "
          "repeats; cpu = the same from process CPU time\n(less sensitive to other load on the "
          "machine, blind to I/O waits). peak memory: tracemalloc peak of one extra untimed run "
          "per side\n(Python allocations; SQLite's page cache is not included).")


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--backend=postgresql" or (a == "--backend" and i + 1 < len(args_in)
                                           and args_in[i + 1] == "postgresql")
           for i, a in enumerate(args_in)):
        import postgres  # the PostgreSQL backend against raw psycopg (bench/postgres.py)

        return postgres.main(args_in)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite",
                        help="postgresql: bench/postgres.py, against raw psycopg")
    parser.add_argument("--quick", action="store_true", help="small sizes (whole run < 1 min)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--only", metavar="SCENARIO",
                        help="comma-separated scenario keys (see bench/README.md)")
    parser.add_argument("--repeats", type=int, help="override the number of repeats")
    parser.add_argument("--tmpdir", help="where the database files go (default: the system "
                                         "temp dir; use a disk, not tmpfs, for real numbers)")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc runs")
    parser.add_argument("--plugins", choices=("core", "default"), default="core",
                        help="core: only the sqlite and migrate plugins (default); default: "
                             "whatever the environment loads")
    args = parser.parse_args(argv)
    use_plugins(args.plugins)
    sizes = QUICK if args.quick else FULL
    load = warn_if_loaded()
    began = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="hive-store-bench-", dir=args.tmpdir))
    try:
        ws = Workspace(tmp)
        pragmas_in_force = verify_same_pragmas(ws)
        bench = Bench(ws, sizes, args.repeats)
        makers = bench.all()
        wanted = list(makers) if not args.only else [k.strip() for k in args.only.split(",")]
        unknown = [k for k in wanted if k not in makers]
        if unknown:
            parser.error(f"unknown scenario(s) {unknown}; choose from {', '.join(makers)}")
        outcomes: list[Outcome] = []
        for key in wanted:
            t0 = time.perf_counter()
            print(f"[{key}] …", file=sys.stderr, flush=True)
            scenario = makers[key]()
            if scenario is None:
                print(f"[{key}] skipped (sqlite-utils not installed)", file=sys.stderr)
                continue
            results = run_scenario(scenario, memory=not args.no_memory)
            outcomes += results
            print(f"[{key}] ratio {results[0].ratio:.2f} ({results[0].ratio_min:.2f}-"
                  f"{results[0].ratio_max:.2f}) in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
        info = machine(tmpdir=str(tmp), quick=args.quick, sizes=asdict(sizes),
                       pragmas=pragmas_in_force, plugin_mode=args.plugins,
                       loadavg_start=[round(x, 2) for x in load])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = time.perf_counter() - began
    print()
    print_table(outcomes)
    print(f"\n{len(outcomes)} rows in {total:.1f} s · Python {info['python']} · SQLite "
          f"{info['sqlite_version']} · {info['cpu_count']} CPUs · {info['platform']}")
    print(f"plugins ({args.plugins}): {', '.join(info['plugins'])}")
    if args.json:
        info["seconds"] = round(total, 1)
        doc = {"script": "run", "machine": info, "scenarios": [o.as_json() for o in outcomes]}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
