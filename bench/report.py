"""Turn the benchmark scripts' ``--json`` output into the tables of docs/benchmarks.md.

    python bench/report.py [--run run.json ...] [--peers peers.json] [--scale scale.json]
                           [--doc docs/benchmarks.md] [--check]

Each table replaces what stands between its marker comments in the document
(``<!-- bench:run -->`` … ``<!-- /bench:run -->``, likewise ``bench:peers`` and
``bench:scale``); nothing else in the document changes. Every table says where its numbers
come from (machine, versions, date, load, full or ``--quick`` run), shows the median and the
min-max of the repeats or rounds, and names the targets that are not met. Several ``--run``
files (full runs on different occasions) are combined: the median of their medians and the
min-max over all of them. ``--check`` exits 1 if the document differs from what it would write.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def num(x: float) -> str:
    if x != x:
        return "—"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def r2(x: float) -> str:
    return "—" if x != x else f"{x:.2f}"


def source(m: dict[str, Any], script: str, runs: int = 1, cpu: bool = True) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()
                         if v and k in ("SQLAlchemy", "peewee", "sqlite-utils"))
    kind = ("**`--quick` smoke run: not the project's numbers**" if m.get("quick")
            else "full run" if runs == 1 else f"{runs} full runs combined")
    load = m.get("loadavg_start", ["?"])[0], m.get("loadavg_end", ["?"])[0]
    cpus = m.get("cpu_count") or 1
    busy = max((x for x in load if isinstance(x, (int, float))), default=0) > cpus / 2
    warning = (" **Taken on a loaded machine (load average above half the CPUs): other work "
               "competed for the CPUs, so wall-time numbers are noisy and low"
               + ("; the cpu column is steadier.**" if cpu else ".**") if busy else "")
    return (f"`python bench/{script}.py`, {kind}, {m['date'][:10]}: hive-store {m['hive_store']}, "
            f"Python {m['python']}, SQLite {m['sqlite_version']}"
            + (f", {versions}" if versions else "")
            + f"; {m['cpu_count']} CPUs, {m['platform']}; load average {load[0]} at the start, "
            f"{load[1]} at the end.{warning}")


# -- run.py ---------------------------------------------------------------------------------------


def run_table(docs: Sequence[dict[str, Any]]) -> str:
    rows: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        for sc in doc["scenarios"]:
            rows.setdefault(sc.get("key", sc["scenario"]), []).append(sc)
    lines = [source(docs[0]["machine"], "run", len(docs)), "",
             "| scenario | raw | hive-store | ratio (min-max) | cpu | target | met |",
             "|---|---|---|---|---|---|---|"]
    missed = []
    for key, scs in rows.items():
        sc = scs[0]
        ratio = statistics.median(s["ratio"] for s in scs)
        lo, hi = min(s["ratio_min"] for s in scs), max(s["ratio_max"] for s in scs)
        cpu = statistics.median(s["ratio_cpu"] for s in scs)
        target = sc["target"]
        if target is None:
            met = "—"
        else:
            # a run that met the ratio but not the rest (lock errors) fails the row too
            ok = ratio >= target and all(s["met"] is not False or s["ratio"] < target
                                         for s in scs)
            met = "yes" if ok else "**no**"
            if not ok:
                missed.append(f"`{key}` ({r2(ratio)} < {target:.2f})" if ratio < target
                              else f"`{key}` (lock errors)")
        unit = sc["unit"].replace("_per_s", "/s").replace("_", " ")
        lines.append(
            f"| {sc['scenario']} | {num(statistics.median(s['raw'] for s in scs))} {unit} | "
            f"{num(statistics.median(s['ours'] for s in scs))} | {r2(ratio)} "
            f"({r2(lo)}-{r2(hi)}) | {r2(cpu)} | "
            f"{'—' if target is None else f'≥ {target:.2f}'} | {met} |")
    lines += ["", "Targets not met: " + (", ".join(missed) if missed else "none") + "."]
    return "\n".join(lines)


# -- peers.py -------------------------------------------------------------------------------------


def peers_table(doc: dict[str, Any]) -> str:
    scs = doc["scenarios"]
    systems = list(scs[0]["systems"])
    lines = [source(doc["machine"], "peers"), "",
             "Rates are medians over the rounds; (xraw) is the median per-round ratio to raw "
             "`sqlite3`. The last columns are hive-store ÷ the best peer, per round: median "
             "(min-max), and the same from process CPU time (steadier on a loaded machine, "
             "blind to I/O waits).", "",
             "| scenario | " + " | ".join(systems) + " | hive-store ÷ best peer | cpu |",
             "|---|" + "---|" * len(systems) + "---|---|"]
    missed = []
    for sc in scs:
        cells = []
        for s in systems:
            e = sc["systems"][s]
            cells.append(f"{num(e['rate']['median'])} ({r2(e['ratio_to_raw']['median'])}x)")
        vs = sc.get("hive_store_vs", {}).get("best_peer")
        best = (f"{r2(vs['median'])} ({r2(vs['min'])}-{r2(vs['max'])})" if vs else "—")
        cpu = sc.get("hive_store_vs_cpu", {}).get("best_peer")
        best += f" | {r2(cpu['median'])}" if cpu else " | —"
        lines.append(f"| {sc['name']} ({sc['unit']}) | " + " | ".join(cells) + f" | {best} |")
        if "writes" in sc:
            cells = [f"{num(sc['writes'][s]['rate']['median'])} "
                     f"({r2(sc['writes'][s]['ratio_to_raw']['median'])}x)" for s in systems]
            lines.append("| same runs: the writer (writes/s) | " + " | ".join(cells)
                         + " | — | — |")
        names = {"best_peer": "the best peer", "sa-core": "SQLAlchemy Core",
                 "sqlite-utils": "sqlite-utils", "best_orm": "2x the best ORM"}
        for k, ok in sc.get("met", {}).items():
            if not ok and k != "best_peer":
                v = sc["hive_store_vs"][k]["median"]
                missed.append(f"{sc['key']} vs {names[k]} ({r2(v)})")
    lines += ["", "Targets (issue 17): hive-store ≥ 1.0x SQLAlchemy Core and sqlite-utils, "
              "≥ 2x the best ORM, in every scenario. Not met: "
              + ("; ".join(missed) if missed else "none") + "."]
    returns = doc["machine"].get("returns", {})
    if returns:
        lines += ["", "Timestamps as returned: " + ", ".join(
            f"{k} `{v}`" for k, v in returns.items()) + "."]
    stream = next((s for s in scs if "peak_kib" in s), None)
    if stream:
        lines += ["", "Peak Python memory while streaming (tracemalloc, KiB): " + ", ".join(
            f"{k} {v:,}" for k, v in stream["peak_kib"].items()) + "."]
    return "\n".join(lines)


# -- scale.py -------------------------------------------------------------------------------------


def scale_table(doc: dict[str, Any]) -> str:
    sizes = [str(n) for n in doc["machine"]["sizes"]]

    def lab(n: str) -> str:
        v = int(n)
        return f"{v // 1_000_000}M" if v >= 1_000_000 else f"{v // 1_000}k"

    lines = [source(doc["machine"], "scale", cpu=False), "",
             "µs per operation (iter: per row; count_scan: one whole count), median (min-max) "
             "of the repeats; slope: log-log growth from each size to the next (0 flat, 1 "
             "linear).", "",
             "| operation | " + " | ".join(lab(n) for n in sizes) + " | slopes | grows faster "
             "than log n |",
             "|---|" + "---|" * len(sizes) + "---|---|"]
    flagged = []
    for op, per in doc["ops"].items():
        cells = [f"{num(per[n]['median'])} ({num(per[n]['min'])}-{num(per[n]['max'])})"
                 if n in per else "—" for n in sizes]
        g = doc["growth"].get(op, {})
        fast = g.get("faster_than_log_n")
        if fast:
            flagged.append(f"`{op}`")
        lines.append(f"| `{op}` | " + " | ".join(cells)
                     + f" | {', '.join(str(s) for s in g.get('slopes', []))} | "
                     + ("**yes**" if fast else "no" if g else "—") + " |")
    lines += ["", "Faster than log n: " + (", ".join(flagged) if flagged else "none")
              + " (see bench/README.md, \"Cost as the data grows\")."]
    return "\n".join(lines)


def replace_between(text: str, name: str, body: str) -> str:
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    if start not in text or end not in text:
        sys.exit(f"{DOC.name} has no {start} … {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--run", action="append", default=[], help="bench/run.py --json output")
    parser.add_argument("--peers", help="bench/peers.py --json output")
    parser.add_argument("--scale", help="bench/scale.py --json output")
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--check", action="store_true",
                        help="only compare: exit 1 if the document is not what it would write")
    args = parser.parse_args(argv)
    text = original = args.doc.read_text()
    if args.run:
        docs = [json.loads(Path(p).read_text()) for p in args.run]
        text = replace_between(text, "run", run_table(docs))
    if args.peers:
        text = replace_between(text, "peers", peers_table(json.loads(Path(args.peers)
                                                                     .read_text())))
    if args.scale:
        text = replace_between(text, "scale", scale_table(json.loads(Path(args.scale)
                                                                     .read_text())))
    if args.check:
        if text != original:
            print(f"{args.doc} is not what the JSON gives", file=sys.stderr)
            return 1
        return 0
    args.doc.write_text(text)
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
