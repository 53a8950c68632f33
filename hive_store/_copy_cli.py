"""``hive-store copy SRC_URL DST_URL``: the command over :mod:`hive_store.copy`."""

from __future__ import annotations

import sys
from typing import Any

import click

from hive_store.cli import escape, pass_ctx
from hive_store.errors import ConfigurationError

WRITE_HOOKS = ("hive_store_before_commit", "hive_store_after_commit", "hive_store_store_opened",
               "hive_store_services")


@click.command("copy")
@click.argument("source", metavar="SRC_URL")
@click.argument("destination", metavar="DST_URL")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 100_000),
              help="Rows per transaction of the destination.")
@click.option("--skip-invalid", is_flag=True,
              help="Leave out rows the destination refuses (a missing parent row, text "
                   "PostgreSQL cannot hold) and list them, instead of stopping.")
@pass_ctx
def copy_command(obj: Any, source: str, destination: str, batch_size: int,
                 skip_invalid: bool) -> None:
    """Copy a whole store to another one, e.g. a hive-ai.db to PostgreSQL and back.

    The source is read-only; the destination is created and migrated if needed and must be
    empty (or a copy of this source that was stopped: run the same command again to finish
    it). Every table is verified at the end (row counts, digests of the values).
    """
    from hive_store.copy import copy_store
    from hive_store.store import open as open_store
    from hive_store.url import parse_url

    if str(parse_url(source)) == str(parse_url(destination)) and source == destination:
        raise ConfigurationError("the source and the destination are the same store")
    # The destination is written without the plugins that act on writes or start services
    # (the memory index, the D1 outbox): rows are moved, not made; those plugins catch up
    # when the store is next opened with them (`hive-store memory reindex`).
    quiet = obj.plugins.without(WRITE_HOOKS)
    with open_store(source, plugins=obj.plugins, read_only=True) as src, open_store(
            destination, plugins=quiet) as dst:
        behind = _behind(src, dst)
        if behind:
            raise ConfigurationError(
                f"the source is at schema version {behind[0]} of {behind[1]}: bring it up "
                f"to date first (hive-store migrate --db SRC_URL), then copy")
        view = _progress()
        try:
            report = copy_store(src, dst, batch_size=batch_size, skip_invalid=skip_invalid,
                                progress=view.update if view is not None else None)
        finally:
            if view is not None:
                view.stop()
    data = report.as_dict()

    def human() -> None:
        for t in report.tables:
            if t.source_rows or t.deleted or t.skipped:
                extra = (f", {t.updated} updated" if t.updated else "") + (
                    f", {t.present} already there" if t.present else "") + (
                    f", {t.deleted} seed rows removed" if t.deleted else "")
                click.echo(f"{escape(t.table)}: {t.added} added{extra}"
                           f"{'' if t.verified else ' (NOT verified)'}")
                for row in t.skipped:
                    click.echo(f"  left out {escape(repr(row['key']))}: {escape(row['reason'])}")
        click.echo(f"copied {report.rows} rows of {len(report.tables)} tables in "
                   f"{report.seconds:.1f} s; verified: "
                   f"{'yes' if all(t.verified for t in report.tables) else 'no (rows left out)'}")

    obj.emit(data, human)


def _behind(src: Any, dst: Any) -> tuple[int, int] | None:
    have, want = src.schema_version(), dst.schema_version()
    return (have, want) if have < want else None


class _View:
    """A rich progress bar per table, on stderr (a terminal only)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                                 MofNCompleteColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True))
        self.tasks: dict[str, Any] = {}
        self.progress.start()

    def update(self, table: str, done: int, total: int | None) -> None:
        task = self.tasks.get(table)
        if task is None:
            task = self.tasks[table] = self.progress.add_task(table, total=total)
        self.progress.update(task, completed=done, total=total)

    def stop(self) -> None:
        self.progress.stop()


def _progress() -> _View | None:
    return _View() if sys.stderr.isatty() else None
