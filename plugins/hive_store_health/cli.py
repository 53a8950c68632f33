"""``hive-store health|stats|vacuum|optimize|checkpoint|backup|restore``.

Every command takes the global ``--json`` and ``--db`` (before or after it). Errors are
one-line messages (the group turns ``hive_store`` exceptions into them).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from hive_store.cli import escape
from hive_store.errors import ConfigurationError, HiveStoreError
from hive_store.health import HealthResult
from hive_store.url import default_url, parse_url
from hive_store_health.checks import HealthOptions, HealthReport, run
from hive_store_health.maintenance import Maintenance, restore
from hive_store_health.stats import plot, stats, window


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, stderr=stderr)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _emit(obj: Any, data: Any, human: Callable[[], None]) -> None:
    obj.emit(data, human)


# What the SQLite-file commands say about a store on a server (PostgreSQL).
_ON_A_SERVER = {
    "backup": "a PostgreSQL store is backed up with pg_dump (a consistent dump taken by the "
              "server); `hive-store copy URL sqlite:FILE.db` makes a hive-store file of it",
    "restore": "a PostgreSQL store is restored with pg_restore, or from a hive-store file with "
               "`hive-store copy FILE.db URL` (into an empty database)",
    "vacuum": "PostgreSQL vacuums on its own (autovacuum); run VACUUM on the server if needed",
    "optimize": "PostgreSQL keeps its statistics on its own (autovacuum's ANALYZE)",
    "checkpoint": "PostgreSQL checkpoints on its own; there is no WAL file to truncate here",
}


def _db_path(obj: Any, command: str | None = None) -> Path | None:
    """The database file named by ``--db`` (``None`` for ``:memory:`` and for a store on a
    server; a SQLite-file ``command`` refuses a server store with what to do instead)."""
    url = parse_url(obj.db if obj.db is not None else default_url())
    if url.scheme != "sqlite":
        if command is not None:
            raise click.ClickException(_ON_A_SERVER.get(
                command, f"this command needs a sqlite database, not {url.scheme!r}"))
        return None
    return None if url.memory else Path(url.path)


@contextmanager
def _existing_store(obj: Any, command: str | None = None, **kwargs: Any) -> Iterator[Any]:
    """Open the store only if its file exists (maintenance never creates a database)."""
    path = _db_path(obj, command)
    if path is not None and not path.exists():
        raise click.ClickException(f"no database at {path} (create one with `hive-store init`)")
    if path is None:
        kwargs.pop("read_only", None)  # an in-memory database is new anyway
    store = obj.open(**kwargs)
    try:
        yield store
    finally:
        store.close()


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


# -- health ------------------------------------------------------------------------------------


_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


@click.command()
@click.option("--full", is_flag=True, help="integrity_check instead of quick_check (slow).")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Change a threshold, e.g. -o wal_warn_bytes=1048576 (repeatable).")
@click.pass_obj
def health(obj: Any, full: bool, options: tuple[str, ...]) -> None:
    """Run the health checks; exit 0 ok, 1 warn, 2 fail."""
    try:
        opts = HealthOptions.parse(options)
    except HiveStoreError as exc:
        raise click.BadParameter(str(exc), param_hint="'-o/--option'") from None
    try:
        path = _db_path(obj)
        if path is not None and not path.exists():
            raise ConfigurationError(f"no database at {path}")
        # read-only: a health check observes (pending migrations, drift, a backlog), never
        # changes a byte of the file (no WAL switch, no adoption, no checkpoint, no indexing).
        store = obj.open(read_only=True) if path is not None else obj.open(migrate=False)
    except HiveStoreError as exc:
        report = HealthReport("fail", (HealthResult(
            name="open", status="fail", message=f"cannot open the database: {exc}"),))
    else:
        try:
            report = run(store, full=full, options=opts)
        finally:
            store.close()

    def human() -> None:
        from rich.table import Table

        con = _console()
        table = Table("check", "status", "message", "ms", box=None)
        for c in report.checks:
            table.add_row(escape(c.name), f"[{_STYLE[c.status]}]{c.status}[/]",
                          escape(c.message), f"{c.duration_ms:.1f}")
        con.print(table)
        con.print(f"health: [{_STYLE[report.status]}]{report.status}[/]")

    _emit(obj, report.as_dict(), human)
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)


# -- stats ---------------------------------------------------------------------------------------


@click.command("stats")
@click.option("--since", metavar="DATE", help="First UTC day, YYYY-MM-DD (default: 29 days "
              "before --until).")
@click.option("--until", metavar="DATE", help="Last UTC day, included (default: today).")
@click.option("--plot", "plot_to", metavar="FILE.png", type=click.Path(dir_okay=False),
              help="Also draw cost and conversations per day (needs matplotlib).")
@click.pass_obj
def stats_command(obj: Any, since: str | None, until: str | None,
                  plot_to: str | None) -> None:
    """Row counts, sizes, and conversations, tokens and cost per day, model and stage."""
    try:
        window(since, until)
    except HiveStoreError as exc:
        raise click.BadParameter(str(exc), param_hint="'--since/--until'") from None
    with _existing_store(obj, read_only=True) as store:  # statistics never write
        data = stats(store, since=since, until=until)
    if plot_to:
        plot(data, plot_to)

    def human() -> None:
        from rich.table import Table

        con = _console()
        db = data["database"]
        w = data["window"]
        if "page_count" in db:
            con.print(f"[bold]{escape(db['path'])}[/]  size {_size(db['size_bytes'])}, WAL "
                      f"{_size(db['wal_bytes'])}, {db['page_count']} pages of "
                      f"{db['page_size']} B, {db['freelist_count']} free (auto_vacuum "
                      f"{db['auto_vacuum']})")
        else:  # a database on a server
            con.print(f"[bold]{escape(db['path'])}[/]  size {_size(db['size_bytes'])}, "
                      f"server {escape(db.get('server_version'))}")
        t = data["totals"]
        con.print(f"{w['since']} .. {w['until']} (UTC): {t['conversations']} conversations, "
                  f"{t['tokens_input'] + t['tokens_output']} tokens, ${t['cost']:.4f}")
        if data["daily"]:
            daily = Table("day", "conversations", "tokens", "cost", box=None)
            for r in data["daily"]:
                daily.add_row(escape(r["day"]), str(r["conversations"]),
                              str(r["tokens_input"] + r["tokens_output"]), f"${r['cost']:.4f}")
            con.print(daily)
        for key, label in (("by_model", "model"), ("by_stage", "stage")):
            if data[key]:
                table = Table(label, "messages", "runs", "tokens", "cost", box=None)
                for r in data[key]:
                    table.add_row(escape(r[label]), str(r["messages"]), str(r["runs"]),
                                  str(r["tokens_input"] + r["tokens_output"]),
                                  f"${r['cost']:.4f}")
                con.print(table)
        rows = Table("table", "rows", box=None)
        for name, count in data["row_counts"].items():
            if count:
                rows.add_row(escape(name), str(count))
        con.print(rows)
        if plot_to:
            con.print(f"plot written to {escape(plot_to)}")

    _emit(obj, data, human)


# -- maintenance -----------------------------------------------------------------------------


@click.command()
@click.option("--full", is_flag=True,
              help="A complete VACUUM that also enables incremental vacuum (blocks writers).")
@click.option("--max-pages", type=click.IntRange(min=1), help="Free at most this many pages.")
@click.pass_obj
def vacuum(obj: Any, full: bool, max_pages: int | None) -> None:
    """Return free pages to the filesystem (incremental vacuum)."""
    with _existing_store(obj, "vacuum") as store:
        result = Maintenance(store).vacuum(full=full, max_pages=max_pages)
    before, after = result["before"], result["after"]

    def human() -> None:
        click.echo(f"{result['mode']} vacuum: freed {result['freed_pages']} pages; "
                   f"free pages {before['freelist_count']} -> {after['freelist_count']}, file "
                   f"{_size(before['size_bytes'])} -> {_size(after['size_bytes'])}")
        if result["note"]:
            click.echo(result["note"])

    _emit(obj, result, human)


@click.command()
@click.option("--analyze", is_flag=True, help="A complete ANALYZE instead of PRAGMA optimize.")
@click.pass_obj
def optimize(obj: Any, analyze: bool) -> None:
    """Refresh the query planner's statistics (PRAGMA optimize / ANALYZE)."""
    with _existing_store(obj, "optimize") as store:
        result = Maintenance(store).optimize(analyze=analyze)
    _emit(obj, result, lambda: click.echo(
        f"{result['mode']}: statistics for {result['tables_with_statistics']} table(s) "
        f"({result['duration_ms']:.0f} ms)"))


@click.command()
@click.option("--truncate", is_flag=True,
              help="Wait for readers and truncate the -wal file to zero bytes.")
@click.option("--timeout", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Seconds --truncate may wait (new writers wait meanwhile).")
@click.pass_obj
def checkpoint(obj: Any, truncate: bool, timeout: float) -> None:
    """Copy the WAL back into the database file."""
    with _existing_store(obj, "checkpoint") as store:
        result = Maintenance(store).checkpoint(truncate=truncate, timeout=timeout)

    def human() -> None:
        state = "complete" if result["complete"] else "incomplete (a reader or writer is busy)"
        click.echo(f"{result['mode']} checkpoint {state}: {result['checkpointed_frames']} of "
                   f"{result['log_frames']} frames; WAL {_size(result['wal_bytes_before'])} -> "
                   f"{_size(result['wal_bytes_after'])}")

    _emit(obj, result, human)


@click.command()
@click.argument("dest", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite DEST if it exists.")
@click.option("--no-verify", is_flag=True, help="Skip the quick_check of the copy.")
@click.pass_obj
def backup(obj: Any, dest: str, force: bool, no_verify: bool) -> None:
    """Copy the database to DEST while it is in use (SQLite's online backup)."""
    with _existing_store(obj, "backup") as store:
        if _stderr_is_terminal():  # a progress bar only for people watching
            from rich.progress import Progress

            with Progress(console=_console(stderr=True), transient=True) as bar:
                task = bar.add_task("backing up", total=None)

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                result = Maintenance(store).backup(dest, progress=progress, force=force,
                                                   verify=not no_verify)
        else:
            result = Maintenance(store).backup(dest, force=force, verify=not no_verify)
    _emit(obj, result, lambda: click.echo(
        f"backup written to {result['dest']} ({_size(result['bytes'])}, {result['pages']} pages"
        f"{', verified' if result['verified'] else ''}) in {result['seconds']:.2f} s"))


@click.command("restore")
@click.argument("src", type=click.Path(dir_okay=False))
@click.pass_obj
def restore_command(obj: Any, src: str) -> None:
    """Replace the database with the backup SRC (checked first; the old one is kept)."""
    path = _db_path(obj, "restore")
    if path is None:
        raise click.ClickException("restore needs a database file, not :memory:")
    result = restore(src, path)

    def human() -> None:
        click.echo(f"restored {result['target']} from {result['source']} "
                   f"({_size(result['bytes'])})")
        if result["replaced_copy"]:
            click.echo(f"the replaced database was kept as {result['replaced_copy']}")

    _emit(obj, result, human)


COMMANDS = (health, stats_command, vacuum, optimize, checkpoint, backup, restore_command)
