"""``hive-store migrate`` and ``hive-store schema diff``.

``migrate --list``, ``--dry-run``, ``--verify`` and ``schema diff`` open the database read-only
(no journal-mode switch, no adoption, nothing written) and compute their report from reads;
``migrate`` and ``migrate --to`` are the commands that change a file.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import attrs
import click

from hive_store_migrate.adopt import AdoptionPlan, ProgressFn
from hive_store_migrate.schema import compare, describe


class ProgressView:
    """Renders the runner's progress callbacks as rich progress bars: phase, count, rate.

    Each phase (``"backup"``, ``"copying messages"``, ``"hive_store_memory 0001 memory"``…)
    gets a line with a bar when its total is known, ``done/total unit`` and the rate.
    """

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            ProgressColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.text import Text

        class Count(ProgressColumn):
            def render(self, task: Any) -> Text:
                total = f"/{int(task.total):,}" if task.total is not None else ""
                return Text(f"{int(task.completed):,}{total} {task.fields.get('unit', '')}")

        class Rate(ProgressColumn):
            def render(self, task: Any) -> Text:
                speed = task.finished_speed or task.speed
                unit = task.fields.get("unit", "")
                shown = speed and unit in ("rows", "pages")  # a rate of statements means little
                return Text(f"{speed:,.0f} {unit}/s" if shown else "")

        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
            Count(), Rate(), TimeElapsedColumn(),
            console=console or Console(stderr=True), transient=False)
        self.tasks: dict[str, Any] = {}
        self.last: str | None = None

    def __call__(self, phase: str, done: int, total: int | None, unit: str) -> None:
        task = self.tasks.get(phase)
        if task is None:
            if self.last is not None:
                self._finish(self.last)
            task = self.tasks[phase] = self.progress.add_task(phase, total=total, unit=unit)
            self.last = phase
        self.progress.update(task, completed=done, total=total)

    def _finish(self, phase: str) -> None:
        task = self.tasks[phase]
        info = self.progress.tasks[task]
        self.progress.update(task, total=info.completed if info.total is None else info.total,
                             completed=info.total or info.completed)

    def __enter__(self) -> ProgressView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.last is not None and not any(exc):
            self._finish(self.last)
        self.progress.stop()


def progress_view() -> ProgressView | None:
    """A progress view on a terminal (stderr), nothing otherwise."""
    return ProgressView() if sys.stderr.isatty() else None


def _missing_file(obj: Any) -> Path | None:
    """The database file ``--db`` names when it does not exist yet (``None`` otherwise)."""
    from hive_store.url import default_url, parse_url

    url = parse_url(obj.db or default_url())
    if url.scheme == "sqlite" and not url.memory and not Path(url.path).exists():
        return Path(url.path)
    return None


def _open_for_reading(obj: Any) -> Any:
    """The store, opened without changing a byte of it (an in-memory one as it is)."""
    from hive_store.url import default_url, parse_url

    url = parse_url(obj.db or default_url())
    if url.scheme == "sqlite" and url.memory:
        return obj.open(migrate=False)
    return obj.open(read_only=True, migrate=False)


class _EmptyDatabase:
    """A migrator over an empty in-memory database: what a file that does not exist yet gets."""

    def __init__(self, obj: Any) -> None:
        from hive_store.url import parse_url

        self.backend = obj.plugins.backend(parse_url(":memory:"), {})
        self.migrator = obj.plugins.migrator(self.backend)

    def close(self) -> None:
        self.backend.close()


def _step(s: Any, sql: bool = False) -> dict[str, Any]:
    out = {"set": s.namespace, "version": s.migration.version, "name": s.migration.name,
           "direction": s.direction}
    if sql:  # an "adopt" step runs the adoption plan's SQL (adoption_plan), not the file's
        out["sql"] = [] if s.direction == "adopt" else s.sql
    return out


@click.command()
@click.option("--list", "list_only", is_flag=True,
              help="Show applied (with time and duration), held and pending migrations per set; "
                   "changes nothing.")
@click.option("--dry-run", is_flag=True,
              help="Show what would run (adoption and migrations) with its SQL; changes nothing.")
@click.option("--verify", is_flag=True,
              help="Report drift (changed files), unknown, held and pending migrations; "
                   "exit 1 on drift. Changes nothing.")
@click.option("--to", "to", type=click.IntRange(min=0), metavar="VERSION",
              help="Go up or down to this version of a set (0: none of it) and hold it there.")
@click.option("--set", "namespace", metavar="NAME",
              help="The migration set --to applies to (default: hive_store); without --to, "
                   "bring only this set (and the sets it depends on) up to date.")
@click.option("--cascade", is_flag=True,
              help="With --to going down: take the sets that depend on it down to 0 first.")
@click.option("--force", is_flag=True, help="Allow down steps that drop data.")
@click.option("--allow-drift", is_flag=True, help="Go ahead although applied files changed.")
@click.pass_obj
def migrate(obj: Any, list_only: bool, to: int | None, namespace: str | None, force: bool,
            verify: bool, dry_run: bool, allow_drift: bool, cascade: bool) -> None:
    """Adopt a legacy Hive database, apply pending migrations, or go to a version.

    A set taken down with --to stays down when the database is opened again; `migrate`
    without --to lifts every hold (with --set: that set's) and applies what is pending.
    """
    if cascade and to is None:
        raise click.UsageError("--cascade goes with --to")
    if verify or list_only or dry_run:
        _read_only(obj, verify=verify, dry_run=dry_run, to=to, namespace=namespace,
                   allow_drift=allow_drift, cascade=cascade)
        return
    store = obj.open(migrate=False)
    try:
        migrator = obj.plugins.migrator(store.backend)
        if migrator is None:
            raise click.ClickException("no migration runner for this backend")
        sets = obj.plugins.migration_sets()
        holds_before = migrator.holds()
        view = progress_view()
        t0 = time.perf_counter()
        try:
            if view is not None:
                view.__enter__()
            if to is None:
                ran = [{"set": ns, "version": m.version, "name": m.name, "direction": "up"}
                       for ns, m in migrator.upgrade(sets, allow_drift=allow_drift,
                                                     progress=view, lift_holds=True,
                                                     namespace=namespace)]
            else:
                ran = [_step(s) for s in migrator.migrate_to(
                    sets, to, namespace=namespace or "hive_store", force=force,
                    allow_drift=allow_drift, cascade=cascade, progress=view)]
        finally:
            if view is not None:
                view.__exit__(*sys.exc_info())
        seconds = round(time.perf_counter() - t0, 3)
        held = migrator.holds()
        durations = {(a.namespace, a.version): a.duration_ms for a in migrator.applied()}
        adoption = migrator.adoption
    finally:
        store.close()
    for r in ran:
        r["duration_ms"] = durations.get((r["set"], r["version"])) if r["direction"] == "up" \
            else None
    lifted = sorted(set(holds_before) - set(held))
    data = {"ran": ran, "adoption": attrs.asdict(adoption) if adoption else None,
            "held": held, "lifted": lifted, "seconds": seconds}

    def human() -> None:
        if adoption is not None:
            click.echo(adoption.summary())
            for v in adoption.violations[:20]:
                click.echo(f"  {v['table']} {v['key'] or v['rowid']}: "
                           f"{', '.join(v['columns'])} -> missing {v['parent']} row")
            if len(adoption.violations) > 20:
                click.echo(f"  … and {len(adoption.violations) - 20} more (--json lists all)")
        for r in ran:
            click.echo(f"{r['direction']:>4}  {r['set']} {r['version']:04d} {r['name']}")
        for ns in lifted:
            click.echo(f"lifted the hold on {ns} (it was held at {holds_before[ns]})")
        for ns, version in sorted(held.items()):
            click.echo(f"held  {ns} at {version}: opening the database leaves it there until "
                       f"`hive-store migrate`{'' if namespace is None else ' --set ' + ns}")
        if not ran and adoption is None and not lifted:
            click.echo("up to date")

    obj.emit(data, human)


def _read_only(obj: Any, *, verify: bool, dry_run: bool, to: int | None,
               namespace: str | None, allow_drift: bool, cascade: bool) -> None:
    missing = _missing_file(obj)
    if missing is not None:
        empty = _EmptyDatabase(obj)
        try:
            _report(obj, empty.migrator, verify=verify, dry_run=dry_run, to=to,
                    namespace=namespace, allow_drift=allow_drift, cascade=cascade,
                    missing=missing)
        finally:
            empty.close()
        return
    store = _open_for_reading(obj)
    try:
        migrator = obj.plugins.migrator(store.backend)
        if migrator is None:
            raise click.ClickException("no migration runner for this backend")
        _report(obj, migrator, verify=verify, dry_run=dry_run, to=to, namespace=namespace,
                allow_drift=allow_drift, cascade=cascade, missing=None)
    finally:
        store.close()


def _report(obj: Any, migrator: Any, *, verify: bool, dry_run: bool, to: int | None,
            namespace: str | None, allow_drift: bool, cascade: bool,
            missing: Path | None) -> None:
    sets = obj.plugins.migration_sets()
    if verify:
        _verify(obj, migrator, sets)
        return
    plan: AdoptionPlan | None = migrator.adoption_plan(sets)
    steps = migrator.plan(sets, namespace=namespace, to=to, cascade=cascade,
                          allow_drift=allow_drift or not dry_run, lift_holds=to is None)
    on_open = {(s.namespace, s.migration.version) for s in steps}
    if not dry_run and to is None:  # what opening the database would apply (holds kept)
        on_open = {(s.namespace, s.migration.version) for s in migrator.plan(
            sets, namespace=namespace, allow_drift=True, lift_holds=False)}
    applied = migrator.applied()
    held = migrator.holds()
    versions: dict[str, int] = {}
    for a in applied:
        versions[a.namespace] = max(a.version, versions.get(a.namespace, 0))
    versions = dict(sorted(versions.items(), key=lambda kv: (kv[0] != "hive_store", kv[0])))
    data: dict[str, Any] = {
        "schema_versions": versions,
        "hive_schema_version": migrator.hive_schema_version(),
        "database": str(missing) if missing else None,
        "exists": missing is None,
        "legacy": plan.state.describe() if plan else None,
        "adoption_plan": plan.as_dict() if plan else None,
        "applied": [attrs.asdict(a) for a in applied],
        "held": held,
        "pending": [{**_step(s, sql=dry_run),
                     "held": (s.namespace, s.migration.version) not in on_open}
                    for s in steps],
    }
    if dry_run:
        data["nothing_would_run"] = not steps and plan is None

    def human() -> None:
        from hive_store.cli import describe_versions

        if missing is not None:
            click.echo(f"no database at {missing} yet: `hive-store migrate` (or the first open) "
                       "creates it and applies what is listed below")
        elif not dry_run:  # --list: the versions first (the README's "Versions")
            click.echo(describe_versions(versions, data["hive_schema_version"]))
        if plan is not None:
            click.echo(f"legacy Hive database ({plan.state.describe()}): it will be adopted "
                       "first (backup next to the file), in one transaction:")
            for line in plan.lines():
                click.echo(f"    {line}")
            if dry_run:
                for action in plan.actions:
                    for statement in action.sql:
                        click.echo("      " + statement.replace("\n", "\n      "))
        if not dry_run:
            for a in applied:
                click.echo(f"applied  {a.namespace} {a.version:04d} {a.name}  "
                           f"{a.applied_at}  {a.duration_ms:.1f} ms")
        for ns, version in sorted(held.items()):
            click.echo(f"held     {ns} at {version} (`hive-store migrate` lifts the hold)")
        for s in steps:
            label = {"up": "pending ", "down": "down    ", "adopt": "adopt   "}[s.direction]
            if (s.namespace, s.migration.version) not in on_open:
                label = "held    "
            click.echo(f"{label} {s.namespace} {s.migration.version:04d} {s.migration.name}"
                       + ("  (replaced by the adoption above)" if s.direction == "adopt"
                          else ""))
            if dry_run and s.direction != "adopt":
                for statement in s.sql:
                    click.echo("    " + statement.replace("\n", "\n    "))
        if not steps and plan is None:
            click.echo("nothing would run" if dry_run else "nothing pending")

    obj.emit(data, human)


def _verify(obj: Any, migrator: Any, sets: Any) -> None:
    problems = migrator.verify(sets)
    data = {"ok": not any(p.problem == "changed" for p in problems),
            "problems": [attrs.asdict(p) for p in problems]}

    def human() -> None:
        if not problems:
            click.echo("all applied migrations match their files; nothing pending")
        for p in problems:
            what = {"changed": "DRIFT: changed since it was applied",
                    "unknown": "applied, but no file knows it",
                    "pending": "pending",
                    "held": "held down (`hive-store migrate` lifts the hold)"}[p.problem]
            click.echo(f"{p.namespace} {p.version:04d} {p.name}: {what}")

    obj.emit(data, human)
    if not data["ok"]:
        raise click.exceptions.Exit(1)


@click.group()
def schema() -> None:
    """Inspect the database schema."""


@schema.command("diff")
@click.pass_obj
def schema_diff(obj: Any) -> None:
    """Compare the database with the canonical Hive schema (read-only).

    Exit 0 when every Hive table is as it should be; what other programs added (their tables,
    nullable columns, indexes) is listed as foreign and kept. Exit 1 on a real difference.
    """
    from hive_store_migrate import core_migrations
    from hive_store_migrate.schema import canonical

    missing = _missing_file(obj)
    if missing is not None:
        raise click.ClickException(f"no database file at {missing}")
    store = _open_for_reading(obj)
    try:
        connection = getattr(store.backend, "connection", None)
        dialect = getattr(store.backend, "dialect", None)
        if dialect not in ("sqlite", "postgresql") or connection is None:
            raise click.ClickException(f"schema diff knows SQLite and PostgreSQL databases, "
                                       f"not {dialect!r}")
        first = core_migrations().for_dialect(dialect).migrations[0].statements
        if dialect == "postgresql":
            from hive_store_migrate import schema_pg

            with connection() as conn:
                actual = schema_pg.describe(conn)
                expected = schema_pg.canonical(conn, first)
        else:
            with connection() as conn:
                actual = describe(conn)
            expected = canonical(first)
    finally:
        store.close()
    report = compare(actual, expected)

    def human() -> None:
        click.echo("\n".join(report.differences) if report.differences
                   else "identical to the canonical Hive schema")
        if report.foreign:
            click.echo("kept as other programs left them:")
            for item in report.foreign:
                click.echo(f"  {item}")

    obj.emit({"identical": not report.differences, "differences": report.differences,
              "foreign": report.foreign}, human)
    if report.differences:
        raise click.exceptions.Exit(1)


__all__ = ["ProgressFn", "ProgressView", "migrate", "progress_view", "schema"]
