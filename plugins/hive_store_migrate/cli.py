"""``hive-store migrate``: list and apply migrations."""

from __future__ import annotations

from typing import Any

import attrs
import click


@click.command()
@click.option("--list", "list_only", is_flag=True, help="Show applied and pending migrations only.")
@click.pass_obj
def migrate(obj: Any, list_only: bool) -> None:
    """Apply pending migrations (each atomically) and report what ran."""
    store = obj.open(migrate=False)
    try:
        migrator = obj.plugins.migrator(store.backend)
        if migrator is None:
            raise click.ClickException("no migration runner for this backend")
        sets = obj.plugins.migration_sets()
        pending = migrator.pending(sets)
        applied_now: list[Any] = [] if list_only else migrator.upgrade(sets)
        applied = migrator.applied()
    finally:
        store.close()
    data = {
        "applied": [attrs.asdict(a) for a in applied],
        "pending": [] if not list_only else [
            {"namespace": ns, "version": m.version, "name": m.name} for ns, m in pending],
        "ran": [{"namespace": ns, "version": m.version, "name": m.name}
                for ns, m in applied_now],
    }

    def human() -> None:
        for a in applied:
            click.echo(f"applied  {a.namespace} {a.version:04d} {a.name}  ({a.applied_at})")
        if list_only:
            for ns, m in pending:
                click.echo(f"pending  {ns} {m.version:04d} {m.name}")
        elif applied_now:
            click.echo(f"ran {len(applied_now)} migration(s): "
                       + ", ".join(f"{ns} {m.version:04d}" for ns, m in applied_now))
        else:
            click.echo("up to date")

    obj.emit(data, human)
