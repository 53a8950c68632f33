"""Profile one side of one benchmark scenario, on the benchmark's own loop.

    python bench/hotspots.py run SCENARIO [--side ours|raw] [--quick] [--pyinstrument] [--top N]
    python bench/hotspots.py peers SCENARIO [--system NAME] [--quick] [--pyinstrument] [--top N]
    python bench/hotspots.py rows

``run`` scenarios are those of bench/run.py (``add``, ``find``, ``iter``, ``concurrency`` …),
``peers`` scenarios those of bench/peers.py (``range``, ``stream`` …; systems ``hive-store``,
``sa-core``, ``sqlite-utils`` …). The trial is prepared exactly as the benchmark prepares it
(untimed), then its timed part runs under cProfile (default: functions sorted by own time,
with call counts, so the cost per call can be read off) or pyinstrument (``--pyinstrument``,
a call tree; in the bench extra). ``rows`` times what reading one message row costs along
each path (raw tuple, a Python row factory, hive-store's generated one and its parts,
SQLAlchemy Core's Row, sqlite-utils' dict), without a profiler's overhead. The numbers behind
bench/README.md, "Where the time goes".
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from common import Trial, Workspace, use_plugins


def trial_for(kind: str, scenario: str, who: str, ws: Workspace, quick: bool) -> Trial:
    if kind == "run":
        from hot import FULL, QUICK, Bench

        sc = Bench(ws, QUICK if quick else FULL, 1).all()[scenario]()
        if sc is None:
            sys.exit(f"{scenario}: not available")
        return (sc.ours if who == "ours" else sc.raw)()
    import peers

    p = peers.Peers(ws, peers.QUICK if quick else peers.FULL, [who], 1)
    checks: dict[str, object] = {}
    if scenario in ("bulk", "single"):
        return p.write_trial(who, scenario, checks)
    if scenario == "concurrency":
        return p.concurrency_trial(who, checks)
    if scenario == "stream":
        n = p.sizes.stream_rows
        return p.read_trial(who, "stream", p.stream_db(), (), n)
    import random

    path, ms = p.read_db()
    rng = random.Random(11)
    inputs = ([rng.choice(ms.rows)[0] for _ in range(p.sizes.gets)] if scenario == "get"
              else [rng.choice(ms.conv_ids) for _ in range(p.sizes.ranges)])
    return p.read_trial(who, scenario, path, inputs, len(inputs))


def row_costs(ws: Workspace) -> None:
    """ns per row of a 100-row range read along each path (best of 5 passes)."""
    import time
    from datetime import datetime

    from common import SQL_FIND_MSG, Data, message_set, open_store, raw_connect, seed
    from peer_systems import SQLAlchemyCore, SqliteUtils

    ms = message_set(Data(), 20_000)
    path = ws.fresh("rows")
    seed(path, ms.conv_rows, ms.rows)
    convs = ms.conv_ids * 5
    n_rows = 100 * len(convs)
    store = open_store(path)
    codec = store.messages.codec  # type: ignore[attr-defined]
    conn = raw_connect(path)
    cur = conn.cursor()
    new = object.__new__
    cls = codec.cls
    setters = [getattr(cls, c).__set__ for c in codec.columns]
    fromiso = datetime.fromisoformat

    def only_new(cursor: object, row: tuple[object, ...]) -> object:
        e = new(cls)
        for s, v in zip(setters, row, strict=True):
            s(e, v)
        return e

    def checks_only(cursor: object, row: tuple[object, ...]) -> object:
        v0, v1, v2, v3, v4, v5, v6 = row
        return (v0.__class__ is str, v1.__class__ is str, v2.__class__ is str,
                v3.__class__ is str, v4 is None or v4.__class__ is str,
                v5 is None or v5.__class__ is str,
                None if v6 is None else fromiso(v6) if v6.__class__ is str  # type: ignore
                and v6.endswith("+00:00") else None)  # type: ignore[attr-defined]

    def with_factory(factory: object) -> Callable[[], None]:
        def go() -> None:
            cur.row_factory = factory  # type: ignore[assignment]
            for cid in convs:
                cur.execute(SQL_FIND_MSG, (cid,)).fetchall()
        return go

    core, su = SQLAlchemyCore(), SqliteUtils()
    core.open(path)
    su.open(path)
    def each(fn: Callable[[str], object]) -> Callable[[], None]:
        def go() -> None:
            for cid in convs:
                fn(cid)  # the result is dropped, as in the with_factory loops
        return go

    find = store.messages.find

    # Design alternatives (not hive-store code): what an entity built in C would cost.
    from operator import itemgetter

    class TupleMessage(tuple):  # type: ignore[type-arg]
        __slots__ = ()
        id = property(itemgetter(0))
        content = property(itemgetter(3))

        @property
        def timestamp(self) -> datetime:  # parsed when read
            return fromiso(self[6])  # type: ignore[no-any-return]

    tnew = tuple.__new__

    def tuple_entities() -> None:
        cur.row_factory = None
        for cid in convs:
            rows = cur.execute(SQL_FIND_MSG, (cid,)).fetchall()
            list(map(tnew, [TupleMessage] * len(rows), rows))

    def tuple_entities_eager() -> None:
        cur.row_factory = None
        for cid in convs:
            rows = cur.execute(SQL_FIND_MSG, (cid,)).fetchall()
            list(map(tnew, [TupleMessage] * len(rows), rows))
            list(map(fromiso, [r[6] for r in rows]))

    paths: dict[str, Callable[[], object]] = {
        "raw tuples (fetchall)": with_factory(None),
        "row_factory = lambda c, r: r (the call alone)": with_factory(lambda c, r: r),
        "checks + timestamp, tuple out (no entity)": with_factory(checks_only),
        "object.__new__ + 7 slot setters (no checks)": with_factory(only_new),
        "hive-store codec.row_factory (entity)": with_factory(codec.row_factory),
        "hive-store messages.find": each(lambda c: find(conversation_id=c)),
        "alternative: tuple-subclass entity (C), lazy timestamp": tuple_entities,
        "alternative: same, timestamps parsed eagerly": tuple_entities_eager,
        "SQLAlchemy Core .all() (Row, datetime)": each(core.range),
        "sqlite-utils rows_where (dict, str)": each(su.range),
    }
    print(f"{'path':<50} {'ns/row':>8}")
    for name, fn in paths.items():
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        print(f"{name:<50} {best / n_rows * 1e9:>8.0f}")
    core.close()
    su.close()
    conn.close()
    store.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("kind", choices=("run", "peers", "rows"))
    parser.add_argument("scenario", nargs="?", default="")
    parser.add_argument("--side", default="ours", choices=("ours", "raw"), help="run.py side")
    parser.add_argument("--system", default="hive-store", help="peers.py system")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pyinstrument", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    use_plugins("core")
    tmp = Path(tempfile.mkdtemp(prefix="hive-store-profile-"))
    try:
        ws = Workspace(tmp)
        if args.kind == "rows":
            row_costs(ws)
            return 0
        who = args.side if args.kind == "run" else args.system
        trial = trial_for(args.kind, args.scenario, who, ws, args.quick)
        try:
            if args.pyinstrument:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.0005)
                profiler.start()
                measured = trial.run()
                profiler.stop()
                print(profiler.output_text(unicode=True, color=False, show_all=False))
            else:
                prof = cProfile.Profile()
                measured = prof.runcall(trial.run)
                stats = pstats.Stats(prof).strip_dirs().sort_stats("tottime")
                stats.print_stats(args.top)
        finally:
            trial.cleanup()
        print(f"{args.kind} {args.scenario} {who}: {measured.work:,.0f} units, "
              f"{measured.seconds * 1e6 / measured.work:.2f} µs per unit under the profiler")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
