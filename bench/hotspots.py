"""Profile one side of one benchmark scenario, on the benchmark's own loop.

    python bench/hotspots.py run SCENARIO [--side ours|raw] [--quick] [--pyinstrument] [--top N]
    python bench/hotspots.py peers SCENARIO [--system NAME] [--quick] [--pyinstrument] [--top N]

``run`` scenarios are those of bench/run.py (``add``, ``find``, ``iter``, ``concurrency`` …),
``peers`` scenarios those of bench/peers.py (``range``, ``stream`` …; systems ``hive-store``,
``sa-core``, ``sqlite-utils`` …). The trial is prepared exactly as the benchmark prepares it
(untimed), then its timed part runs under cProfile (default: functions sorted by own time,
with call counts, so the cost per call can be read off) or pyinstrument (``--pyinstrument``,
a call tree; in the bench extra). The numbers behind bench/README.md, "Where the time goes".
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
from collections.abc import Sequence
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("kind", choices=("run", "peers"))
    parser.add_argument("scenario")
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
