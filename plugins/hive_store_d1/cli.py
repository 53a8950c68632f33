"""``hive-store d1 status | push [--all] | pull | verify | dead-letter [--retry]``.

Every command takes the global ``--json`` and ``--db`` (before or after it). Errors end in one
line on stderr (exit 1); ``verify`` exits 1 when it finds differences.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import attrs
import click

from hive_store.cli import CLIContext, escape, pass_ctx


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, stderr=stderr)


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    """A rich progress display on stderr, or ``None``."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[table]}"), console=_console(stderr=True),
                   transient=True)
    tasks: dict[str, Any] = {}

    def update(phase: str, table: str, done: int, total: int | None) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total, table=table)
        bar.update(tasks[phase], completed=done, total=total, table=table)

    with bar:
        yield update


def _mirror(store: Any) -> Any:
    from hive_store_d1 import mirror_of

    return mirror_of(store)


@click.group("d1")
def d1_group() -> None:
    """Mirror the store to Cloudflare D1 (configure with HIVE_STORE_D1_* settings)."""


@d1_group.command("status")
@pass_ctx
def status_command(obj: CLIContext) -> None:
    """Configuration (never the token), backlog, dead letters, last push and pull."""
    from hive_store_d1 import _mirrors, config_error

    with obj.open() as store:
        mirror = _mirrors.get(store)
        if mirror is None:
            problem = config_error(store)
            facts: dict[str, Any] = {
                "configured": False,
                "message": (f"D1 mirroring is off: {problem}" if problem else
                            "D1 mirroring is not configured: set HIVE_STORE_D1_ACCOUNT_ID, "
                            "HIVE_STORE_D1_DATABASE_ID and HIVE_STORE_D1_TOKEN (or "
                            "HIVE_STORE_D1_TOKEN_FILE); nothing is captured or sent"),
            }
        else:
            facts = mirror.status()

    def human() -> None:
        con = _console()
        if not facts["configured"]:
            con.print(escape(facts["message"]))
            return
        con.print(f"[bold]D1 mirror[/] database {escape(facts['database_id'])} (account "
                  f"{escape(facts['account_id'])}) at {escape(facts['url'])}; token "
                  f"{escape(facts['token'])}")
        con.print(f"device {escape(facts['device_id'])}; {len(facts['tables'])} tables; pull "
                  f"{'on' if facts['pull'] else 'off'} (cursor {escape(facts['pull_cursor'])})")
        out = facts["outbox"]
        age = out["oldest_age_s"]
        con.print(f"outbox: {out['rows']} rows waiting ({out['entries']} entries"
                  + (f", oldest {age:.0f} s" if age is not None else "") + ")")
        dead = facts["dead_letter"]
        con.print(f"dead letters: {dead['push']} refused by D1, {dead['pull']} not applied here")
        con.print(f"remote schema: {escape(facts['remote_schema'])}; backfill: "
                  f"{escape(facts['backfill'])}")
        for what in ("last_push", "last_pull"):
            last = facts[what]
            if last:
                outcome = "ok" if last.get("ok") else f"failed: {last.get('error')}"
                con.print(escape(f"{what.replace('_', ' ')}: {last.get('at')} {outcome}"))

    obj.emit(facts, human)


@d1_group.command("push")
@click.option("--all", "push_all", is_flag=True,
              help="Send every row of the mirrored tables again (a backfill), then the outbox.")
@pass_ctx
def push_command(obj: CLIContext, push_all: bool) -> None:
    """Send local writes (the first push also copies the existing rows)."""
    with obj.open() as store:
        mirror = _mirror(store)
        with _progress(not obj.json) as progress:
            report = mirror.push(all=push_all, progress=progress)
    data = attrs.asdict(report)
    data["rows"] = report.rows

    def human() -> None:
        con = _console()
        con.print(f"pushed {report.rows} rows ({report.upserts} upserts, {report.deletes} "
                  f"deletes, {report.backfilled} backfilled) in {report.requests} requests, "
                  f"{report.seconds:.2f} s; {report.pending} rows waiting")
        for d in report.dead_lettered:
            con.print(f"[yellow]refused[/] {escape(f'{d.op} {d.table} {d.pk!r}: {d.error}')}")

    obj.emit(data, human)


@d1_group.command("pull")
@pass_ctx
def pull_command(obj: CLIContext) -> None:
    """Apply other devices' writes from D1 (needs HIVE_STORE_D1_PULL=1)."""
    with obj.open() as store:
        mirror = _mirror(store)
        with _progress(not obj.json) as progress:
            report = mirror.pull(progress=progress)
    data = attrs.asdict(report)

    def human() -> None:
        con = _console()
        con.print(f"pulled {report.applied} rows and {report.deleted} deletes "
                  f"({report.skipped} older than the local version) in {report.pages} pages; "
                  f"cursor {escape(report.cursor)}")
        for d in report.dead_lettered:
            con.print(f"[yellow]not applied[/] "
                      f"{escape(f'{d.op} {d.table} {d.pk!r}: {d.error}')}")

    obj.emit(data, human)


@d1_group.command("verify")
@click.option("--table", "tables", multiple=True, help="Only this table (repeatable).")
@click.option("--chunk", default=500, show_default=True, help="Keys per compared chunk.")
@pass_ctx
def verify_command(obj: CLIContext, tables: tuple[str, ...], chunk: int) -> None:
    """Compare every mirrored table here and in D1 (counts, digests per chunk of keys)."""
    with obj.open() as store:
        mirror = _mirror(store)
        with _progress(not obj.json) as progress:
            report = mirror.verify(tables=tables or None, chunk=chunk, progress=progress)
    data = {"ok": report.ok, "pending": report.pending, "seconds": round(report.seconds, 3),
            "tables": [attrs.asdict(t) | {"ok": t.ok} for t in report.tables]}

    def human() -> None:
        from rich.table import Table

        con = _console()
        table = Table("table", "local", "D1", "chunks", "differing", "result", box=None)
        for t in report.tables:
            table.add_row(escape(t.table), str(t.local_count), str(t.remote_count),
                          str(t.chunks), str(t.chunks_differing),
                          "ok" if t.ok else "[red]differs[/]")
        con.print(table)
        for t in report.tables:
            for label, keys in (("missing in D1", t.missing_remote),
                                ("missing here", t.missing_local), ("different", t.different)):
                if keys:
                    con.print(escape(f"{t.table}: {label}: " + ", ".join(repr(k) for k in keys)))
            if t.explained:
                con.print(escape(f"{t.table}: waiting in the outbox or dead-lettered: "
                                 + ", ".join(repr(k) for k in t.explained)))
        con.print("the same" if report.ok else
                  f"differences found ({report.pending} rows still waiting to be pushed)")

    obj.emit(data, human)
    if not report.ok:
        raise click.exceptions.Exit(1)


@d1_group.command("dead-letter")
@click.option("--retry", is_flag=True, help="Queue the rows again and push (re-fetch pulls).")
@pass_ctx
def dead_letter_command(obj: CLIContext, retry: bool) -> None:
    """List the rows D1 refused (and pulled rows that could not be applied here)."""
    with obj.open() as store:
        mirror = _mirror(store)
        data: dict[str, Any] = {}
        if retry:
            with _progress(not obj.json) as progress:
                pushed, pulled = mirror.retry_dead_letters(progress=progress)
            data["retried"] = {"push": attrs.asdict(pushed),
                               "pull": attrs.asdict(pulled) if pulled else None}
        rows = mirror.dead_letters()
    data["dead_letters"] = rows

    def human() -> None:
        con = _console()
        if retry:
            con.print(f"retried: pushed {data['retried']['push']['upserts']} rows, "
                      f"{len(rows)} still refused")
        if not rows:
            con.print("no dead letters")
        for r in rows:
            con.print(escape(f"{r['direction']} {r['op']} {r['table']} {r['pk']!r} "
                             f"(x{r['attempts']}, {r['last_failed_at']}): {r['error']}"))

    obj.emit(data, human)
