"""``hive-store migrate`` and ``hive-store schema diff``."""

from __future__ import annotations

import sqlite3
import sys
from typing import Any

import attrs
import click

from hive_store_migrate.schema import describe, diff


def _progress() -> Any:
    """A progress callback for big table copies: a bar on a terminal, silence otherwise."""
    if not sys.stderr.isatty():
        return None, None
    from rich.progress import Progress

    bar = Progress(transient=True)
    tasks: dict[str, Any] = {}

    def update(table: str, done: int, total: int) -> None:
        if table not in tasks:
            tasks[table] = bar.add_task(f"copying {table}", total=total)
        bar.update(tasks[table], completed=done)

    return bar, update


@click.command()
@click.option("--list", "list_only", is_flag=True,
              help="Show applied (with time and duration) and pending migrations per set.")
@click.option("--to", "to", type=int, metavar="VERSION",
              help="Go up or down to this version of the set (default set: hive_store).")
@click.option("--set", "namespace", default="hive_store", show_default=True,
              help="The migration set --to applies to.")
@click.option("--force", is_flag=True, help="Allow down steps that drop data.")
@click.option("--verify", is_flag=True,
              help="Report drift (changed files), unknown and pending migrations; exit 1 on drift.")
@click.option("--dry-run", is_flag=True, help="Print the SQL that would run; change nothing.")
@click.option("--allow-drift", is_flag=True, help="Go ahead although applied files changed.")
@click.pass_obj
def migrate(obj: Any, list_only: bool, to: int | None, namespace: str, force: bool,
            verify: bool, dry_run: bool, allow_drift: bool) -> None:
    """Adopt a legacy Hive database, apply pending migrations, or go to a version."""
    store = obj.open(migrate=False)
    try:
        migrator = obj.plugins.migrator(store.backend)
        if migrator is None:
            raise click.ClickException("no migration runner for this backend")
        sets = obj.plugins.migration_sets()
        if verify:
            _verify(obj, migrator, sets)
            return
        if list_only or dry_run:
            _listing(obj, migrator, sets, to, namespace, dry_run, allow_drift)
            return
        bar, progress = _progress()
        if bar is not None:
            bar.start()
        try:
            if to is None:
                ran = [{"set": ns, "version": m.version, "name": m.name, "direction": "up"}
                       for ns, m in migrator.upgrade(sets, allow_drift=allow_drift,
                                                     progress=progress)]
            else:
                ran = [{"set": s.namespace, "version": s.migration.version,
                        "name": s.migration.name, "direction": s.direction}
                       for s in migrator.migrate_to(sets, to, namespace=namespace, force=force,
                                                    allow_drift=allow_drift)]
        finally:
            if bar is not None:
                bar.stop()
        adoption = migrator.adoption
    finally:
        store.close()
    data = {"ran": ran, "adoption": attrs.asdict(adoption) if adoption else None}

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
        if not ran and adoption is None:
            click.echo("up to date")

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
                    "pending": "pending"}[p.problem]
            click.echo(f"{p.namespace} {p.version:04d} {p.name}: {what}")

    obj.emit(data, human)
    if not data["ok"]:
        raise click.exceptions.Exit(1)


def _listing(obj: Any, migrator: Any, sets: Any, to: int | None, namespace: str,
             dry_run: bool, allow_drift: bool) -> None:
    applied = migrator.applied()
    steps = migrator.plan(sets, namespace=namespace, to=to, allow_drift=allow_drift or not dry_run)
    legacy = migrator.legacy_state()
    versions: dict[str, int] = {}
    for a in applied:
        versions[a.namespace] = max(a.version, versions.get(a.namespace, 0))
    versions = dict(sorted(versions.items(), key=lambda kv: (kv[0] != "hive_store", kv[0])))
    data = {
        "schema_versions": versions,
        "hive_schema_version": migrator.hive_schema_version(),
        "legacy": legacy.describe() if legacy else None,
        "applied": [attrs.asdict(a) for a in applied],
        "pending": [{"set": s.namespace, "version": s.migration.version,
                     "name": s.migration.name, "direction": s.direction,
                     **({"sql": s.sql} if dry_run else {})} for s in steps],
    }

    def human() -> None:
        from hive_store.cli import describe_versions

        # a legacy file's own version is in the adoption line below
        click.echo(describe_versions(versions, None if legacy else data["hive_schema_version"]))
        if legacy:
            click.echo(f"legacy Hive database ({legacy.describe()}): it will be adopted first "
                       "(backup next to the file)")
        for a in applied:
            click.echo(f"applied  {a.namespace} {a.version:04d} {a.name}  "
                       f"{a.applied_at}  {a.duration_ms:.1f} ms")
        for s in steps:
            label = "pending " if s.direction == "up" else "down    "
            click.echo(f"{label} {s.namespace} {s.migration.version:04d} {s.migration.name}")
            if dry_run:
                for statement in s.sql:
                    click.echo("    " + statement.replace("\n", "\n    "))

    obj.emit(data, human)


@click.group()
def schema() -> None:
    """Inspect the database schema."""


@schema.command("diff")
@click.pass_obj
def schema_diff(obj: Any) -> None:
    """Compare the database with the canonical Hive schema; exit 0 when identical."""
    from hive_store.url import default_url, parse_url
    from hive_store_migrate import core_migrations
    from hive_store_migrate.schema import canonical

    url = parse_url(obj.db or default_url())
    if url.scheme != "sqlite" or url.memory:
        raise click.ClickException("schema diff needs a SQLite database file")
    import pathlib

    path = pathlib.Path(url.path)
    if not path.is_file():
        raise click.ClickException(f"no database file at {path}")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            actual = describe(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    differences = diff(actual, canonical(core_migrations().migrations[0].statements))
    obj.emit({"identical": not differences, "differences": differences},
             lambda: click.echo("\n".join(differences) if differences
                                else "identical to the canonical Hive schema"))
    if differences:
        raise click.exceptions.Exit(1)
