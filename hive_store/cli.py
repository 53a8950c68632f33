"""The ``hive-store`` command.

Every error a user can cause ends in a one-line message on stderr and a non-zero exit code
(1 for hive_store errors, 2 for usage errors), never a traceback. Set ``HIVE_STORE_DEBUG=1``
to see the traceback of an unexpected error.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import attrs
import click

from hive_store.errors import HiveStoreError
from hive_store.plugins import Plugins, get_plugins


@attrs.define
class CLIContext:
    """Shared options of the command line, passed to plugin commands as ``ctx.obj``."""

    db: str | None
    json: bool
    plugins: Plugins

    def open(self, **kwargs: Any) -> Any:
        """Open the store named by ``--db`` (or the default). On a terminal, a write that
        waits for another process's lock says so on stderr after a second."""
        from hive_store.store import open as open_store

        if _stderr_is_terminal():
            kwargs.setdefault("on_wait", writer_wait_notice)
        return open_store(self.db, plugins=self.plugins, **kwargs)

    def emit(self, data: Any, human: Callable[[], None]) -> None:
        """Print ``data`` as JSON with ``--json``, else call ``human()``."""
        if self.json:
            click.echo(json.dumps(data, indent=2, sort_keys=True, default=str,
                                  ensure_ascii=False))
        else:
            human()


pass_ctx = click.make_pass_decorator(CLIContext)


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def writer_wait_notice(seconds: float | None) -> None:
    """``on_wait`` of stores the command opens: "waiting for another writer (N s)…" on one
    stderr line while a write waits for another process's lock; the line is cleared after."""
    if seconds is None:
        click.echo("\r\033[K", err=True, nl=False)
    else:
        click.echo(f"\rwaiting for another writer ({seconds:.0f} s)…", err=True, nl=False)


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


class HiveGroup(click.Group):
    """A click group that turns every error into a one-line message (for plugin commands too)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except HiveStoreError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}") from None
        except Exception as exc:
            if os.environ.get("HIVE_STORE_DEBUG"):
                raise
            raise InternalError(
                f"internal error: {type(exc).__name__}: {exc} "
                "(set HIVE_STORE_DEBUG=1 for the traceback)"
            ) from None


class InternalError(click.ClickException):
    exit_code = 3


def make_cli(plugins: Plugins | None = None) -> click.Group:
    """The command group, with the commands of every loaded plugin added."""

    @click.group(cls=HiveGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--db", "db", metavar="URL|PATH", envvar="HIVE_STORE_DB",
                  help="Database URL or file (default: $HIVE_STORE_DB or ~/.hive/hive-ai.db).")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
    @click.version_option(package_name="hive-store")
    @click.pass_context
    def cli(ctx: click.Context, db: str | None, as_json: bool) -> None:
        """hive-store: storage for Hive, the four-stage AI consensus tool."""
        ctx.obj = CLIContext(db=db, json=as_json, plugins=plugins or get_plugins())

    @cli.command()
    @pass_ctx
    def init(obj: CLIContext) -> None:
        """Create the database (or bring it up to date) and say where it is."""
        with obj.open() as store:
            facts = {"path": store.backend.describe().get("path"),
                     "schema_version": store.schema_version()}
        obj.emit(facts, lambda: click.echo(
            f"ready: {facts['path']} (schema version {facts['schema_version']})"))

    @cli.command()
    @pass_ctx
    def quickstart(obj: CLIContext) -> None:
        """Record a sample consensus run, read it back, and print a summary and health."""
        from hive_store.store import StageOutput

        t0 = time.perf_counter()
        with obj.open() as store:
            stages = [
                StageOutput(stage="generator", model="anthropic/claude-3-haiku",
                            answer="SQLite in WAL mode lets readers run while one writer commits.",
                            tokens_input=120, tokens_output=240, cost=0.00042, duration_ms=900),
                StageOutput(stage="refiner", model="openai/gpt-3.5-turbo",
                            answer="WAL: concurrent readers, one writer; "
                                   "checkpoints move pages back.",
                            tokens_input=260, tokens_output=180, cost=0.00031, duration_ms=700),
                StageOutput(stage="validator", model="google/gemini-flash",
                            answer="Correct; add that synchronous=NORMAL survives "
                                   "process crashes.",
                            tokens_input=200, tokens_output=90, cost=0.00005, duration_ms=400),
                StageOutput(stage="curator", model="anthropic/claude-3-haiku",
                            answer="WAL gives concurrent readers and one writer; with "
                                   "synchronous=NORMAL no commit is lost on a process crash.",
                            tokens_input=300, tokens_output=150, cost=0.00026, duration_ms=800),
            ]
            run = store.record_consensus(
                "How does SQLite's WAL mode handle concurrent access?", stages,
                profile_id="lightning-fast", topic_summary="sqlite concurrency",
                confidence=0.9,
            )
            conv = store.conversations.get(run.conversation_id)
            msgs = store.messages.find(conversation_id=conv.id, order_by="timestamp")
            checks = store.health()
            status = store.status()
        from hive_store.health import worst

        health = {"status": worst(checks), "checks": [attrs.asdict(c) for c in checks]}
        elapsed = time.perf_counter() - t0
        data = {
            "path": status.get("path"),
            "schema_version": status["schema_version"],
            "conversation_id": conv.id,
            "messages": len(msgs),
            "total_cost": conv.total_cost,
            "tokens": (conv.input_tokens or 0) + (conv.output_tokens or 0),
            "curator_answer": run.knowledge.final_answer,
            "conversations_total": status["row_counts"].get("conversations", 0),
            "health": health,
            "seconds": round(elapsed, 3),
        }

        def human() -> None:
            con = _console()
            con.print(f"[bold]hive-store quickstart[/] — {data['path']} "
                      f"(schema v{data['schema_version']})")
            con.print(f"recorded consensus run {conv.id}: {len(msgs)} messages "
                      f"(1 question + 4 stages), {data['tokens']} tokens, "
                      f"${conv.total_cost:.5f}")
            for m in msgs:
                label = m.stage or m.role
                con.print(f"  {label:>9}: {m.content[:70]}")
            con.print(f"read back: curator truth = {run.curator_truth.curator_output[:60]}…")
            con.print(f"conversations in the database: {data['conversations_total']}")
            con.print(f"health: {health['status']} ("
                      + "; ".join(f"{c.name}: {c.message}" for c in checks) + ")")
            con.print(f"done in {elapsed:.2f} s")

        obj.emit(data, human)
        if health["status"] == "fail":
            raise click.exceptions.Exit(2)

    @cli.command()
    @pass_ctx
    def status(obj: CLIContext) -> None:
        """Path, size, schema version, row counts and pool settings (changes nothing)."""
        with obj.open(read_only=True) as store:
            facts = store.status()

        def human() -> None:
            from rich.table import Table

            con = _console()
            con.print(f"[bold]{facts.get('path')}[/]  schema version {facts['schema_version']}")
            if facts.get("legacy"):
                con.print(f"a legacy Hive database ({facts['legacy']}) that hive-store has not "
                          "adopted yet: `hive-store migrate` adopts it (a backup first)")
            if facts.get("not_writable"):
                con.print(f"read-only here ({facts['not_writable']}): reads work, writes are "
                          "refused")
            if "size_bytes" in facts:
                con.print(f"size {_size(facts['size_bytes'])}, WAL {_size(facts['wal_bytes'])}, "
                          f"SQLite {facts.get('sqlite_version')}")
            pragmas = facts.get("pragmas", {})
            con.print("pragmas: " + ", ".join(f"{k}={v}" for k, v in pragmas.items()))
            pool = facts.get("pool", {})
            con.print("pool: " + ", ".join(f"{k}={v}" for k, v in pool.items()))
            table = Table("table", "rows", box=None)
            for name, count in facts["row_counts"].items():
                table.add_row(name, str(count))
            con.print(table)

        obj.emit(facts, human)

    @cli.command("plugins")
    @click.option("--all", "show_all", is_flag=True,
                  help="Also list the hooks each plugin implements and failure details.")
    @pass_ctx
    def plugins_command(obj: CLIContext, show_all: bool) -> None:
        """Loaded plugins with versions and hooks; failed ones with their error."""
        infos = obj.plugins.info()
        failures = obj.plugins.failures
        data = {
            "loaded": [attrs.asdict(p) for p in infos],
            "failed": [{k: v for k, v in attrs.asdict(f).items()
                        if show_all or k != "details"} for f in failures],
        }

        def human() -> None:
            from rich.table import Table

            con = _console()
            table = Table("plugin", "distribution", "version", "hooks", box=None)
            for p in infos:
                hooks = (", ".join(h.removeprefix("hive_store_") for h in p.hooks)
                         if show_all else str(len(p.hooks)))
                table.add_row(p.name, p.distribution or "-", p.version or "-", hooks)
            con.print(table)
            for f in failures:
                con.print(f"[red]failed[/] {f.name} ({f.distribution or 'unknown'}, {f.stage}): "
                          f"{f.error}")
                if show_all and f.details:
                    con.print(f.details)

        obj.emit(data, human)

    (plugins or get_plugins()).register_commands(cli)
    return cli


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``hive-store`` script."""
    try:
        cli = make_cli()
    except HiveStoreError as exc:  # e.g. HIVE_STORE_STRICT_PLUGINS with a broken plugin
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    cli.main(args=argv, prog_name="hive-store")
