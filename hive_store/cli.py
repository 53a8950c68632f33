"""The ``hive-store`` command.

Every error a user can cause ends in a one-line message on stderr and a non-zero exit code
(1 for hive_store errors, 2 for usage errors), never a traceback. Set ``HIVE_STORE_DEBUG=1``
to see the traceback of an unexpected error.

One grammar for every command, plugins' too: the global options ``--db`` and ``--json`` are
accepted before the command or after it (and after a sub-command: ``hive-store memory search
wal --json``), with the same effect; the last ``--db`` given wins. :func:`make_cli` adds them to
every command a plugin registers, so a plugin command reads ``obj.db`` / ``obj.json`` (or calls
``obj.open()`` / ``obj.emit()``) and declares neither option itself.

Output from data goes through :func:`escape` (or :meth:`CLIContext.emit`'s JSON), so text such
as ``m/[x]`` or ``pip install 'hive-store[d1]'`` is printed as it is, never read as markup.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import click

from hive_store.errors import HiveStoreError
from hive_store.plugins import Plugins, get_plugins

VERSION_MESSAGE = (
    "%(prog)s %(version)s (the package; each database has its own schema versions, one per "
    "migration set: hive-store status, hive-store migrate --list)"
)


@attrs.define
class CLIContext:
    """Shared options of the command line, passed to every command as ``ctx.obj``.

    :ivar db: ``--db`` (or ``$HIVE_STORE_DB``); ``None`` for the default database
    :ivar json: ``--json`` was given (before or after the command)
    """

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


def console(*, stderr: bool = False) -> Any:
    """A rich console for command output (no highlighting, long lines kept whole). Markup in
    the strings printed is interpreted: pass every value that comes from data, a user or an
    error through :func:`escape`."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, stderr=stderr)


def escape(value: object) -> str:
    """``value`` as text that rich prints as it is (``[bold]`` stays ``[bold]``)."""
    from rich.markup import escape as markup_escape

    return markup_escape(str(value))


def describe_versions(schema_versions: Mapping[str, int],
                      hive_schema_version: int | None = None) -> str:
    """One line for people: each migration set's version, and the version in the old Hive
    apps' own record, ``schema_migrations`` (see the README's "Versions")."""
    sets = ", ".join(f"{ns} {v}" + (" (the Hive schema)" if ns == "hive_store" else "")
                     for ns, v in schema_versions.items()) or "none applied"
    line = f"schema versions: {sets}"
    if hive_schema_version is not None:
        line += (f"; Hive's own record: version {hive_schema_version} (schema_migrations, "
                 "what the old Hive apps read)")
    return line


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


# -- the global options, after any command ---------------------------------------------------

DB_HELP = "Database URL or file (default: $HIVE_STORE_DB or ~/.hive/hive-ai.db)."
JSON_HELP = "Machine-readable JSON output."


def _late_db(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    obj = ctx.find_object(CLIContext)
    if value is not None and obj is not None:
        obj.db = value


def _late_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    obj = ctx.find_object(CLIContext)
    if value and obj is not None:
        obj.json = True


def add_global_options(command: click.Command) -> None:
    """Give ``command`` and every sub-command the options ``--db`` and ``--json`` (unless
    one declares an option of that name itself); they set the shared :class:`CLIContext`.
    Idempotent."""
    taken = {opt for param in command.params for opt in getattr(param, "opts", ())}
    if "--db" not in taken:
        command.params.append(click.Option(
            ["--db", "_global_db"], metavar="URL|PATH", expose_value=False,
            callback=_late_db, help=DB_HELP))
    if "--json" not in taken:
        command.params.append(click.Option(
            ["--json", "_global_json"], is_flag=True, expose_value=False,
            callback=_late_json, help=JSON_HELP))
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_global_options(sub)


# -- the core's commands ----------------------------------------------------------------------


def make_cli(plugins: Plugins | None = None) -> click.Group:
    """The command group, with the commands of every loaded plugin added."""
    from hive_store._quickstart import quickstart

    @click.group(cls=HiveGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--db", "db", metavar="URL|PATH", envvar="HIVE_STORE_DB", help=DB_HELP)
    @click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
    @click.version_option(package_name="hive-store", message=VERSION_MESSAGE)
    @click.pass_context
    def cli(ctx: click.Context, db: str | None, as_json: bool) -> None:
        """hive-store: storage for Hive, the four-stage AI consensus tool.

        --db and --json may also follow the command (hive-store status --json).
        """
        ctx.obj = CLIContext(db=db, json=as_json, plugins=plugins or get_plugins())

    @cli.command()
    @pass_ctx
    def init(obj: CLIContext) -> None:
        """Create the database (or bring it up to date) and say where it is."""
        with obj.open() as store:
            facts = store.status()
        data = {"path": facts.get("path"), "schema_version": facts["schema_version"],
                "schema_versions": facts["schema_versions"],
                "hive_schema_version": facts["hive_schema_version"]}
        obj.emit(data, lambda: click.echo(
            f"ready: {data['path']}\n"
            + describe_versions(facts["schema_versions"], facts["hive_schema_version"])))

    cli.add_command(quickstart)
    from hive_store._copy_cli import copy_command

    cli.add_command(copy_command)

    @cli.command()
    @pass_ctx
    def status(obj: CLIContext) -> None:
        """Path, size, versions, row counts and pool settings (changes nothing)."""
        with obj.open(read_only=True) as store:
            facts = store.status()

        def human() -> None:
            from rich.table import Table

            con = console()
            con.print(f"[bold]{escape(facts.get('path'))}[/]")
            con.print(f"hive-store {escape(facts['package_version'])}; " + escape(
                describe_versions(facts["schema_versions"], facts["hive_schema_version"])))
            if facts.get("legacy"):
                con.print(escape(f"a legacy Hive database ({facts['legacy']}) that hive-store "
                                 "has not adopted yet: `hive-store migrate` adopts it (a backup "
                                 "first)"))
            if facts.get("not_writable"):
                con.print(escape(f"read-only here ({facts['not_writable']}): reads work, "
                                 "writes are refused"))
            if facts.get("backend") == "postgresql":
                con.print(f"size {_size(facts.get('size_bytes') or 0)}, PostgreSQL "
                          f"{escape(facts.get('server_version'))}, database "
                          f"{escape(facts.get('database'))}, schema {escape(facts.get('schema'))}")
                settings = facts.get("settings", {})
                con.print(escape("settings: " + ", ".join(f"{k}={v}"
                                                          for k, v in settings.items())))
            elif "size_bytes" in facts:
                con.print(f"size {_size(facts['size_bytes'])}, "
                          f"WAL {_size(facts.get('wal_bytes') or 0)}, "
                          f"SQLite {escape(facts.get('sqlite_version'))}")
            pragmas = facts.get("pragmas")
            if pragmas:
                con.print(escape("pragmas: " + ", ".join(f"{k}={v}"
                                                         for k, v in pragmas.items())))
            pool = facts.get("pool", {})
            con.print(escape("pool: " + ", ".join(f"{k}={v}" for k, v in pool.items())))
            table = Table("table", "rows", box=None)
            for name, count in facts["row_counts"].items():
                table.add_row(escape(name), str(count))
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
        dialects = obj.plugins.supported_dialects()  # plugins that work with some backends
        data = {
            "loaded": [{**attrs.asdict(p), "dialects": list(dialects[p.name])
                        if p.name in dialects else None} for p in infos],
            "failed": [{k: v for k, v in attrs.asdict(f).items()
                        if show_all or k != "details"} for f in failures],
        }

        def human() -> None:
            from rich.table import Table

            con = console()
            table = Table("plugin", "distribution", "version", "hooks", box=None)
            for p in infos:
                hooks = (", ".join(h.removeprefix("hive_store_") for h in p.hooks)
                         if show_all else str(len(p.hooks)))
                table.add_row(escape(p.name), escape(p.distribution or "-"),
                              escape(p.version or "-"), escape(hooks))
            con.print(table)
            if show_all:
                for name, kinds in sorted(dialects.items()):
                    con.print(f"{escape(name)}: works with {escape(', '.join(kinds))} stores "
                              "only; skipped on others (its hooks, tables and commands' "
                              "services)")
            for f in failures:
                con.print(f"[red]failed[/] {escape(f.name)} "
                          f"({escape(f.distribution or 'unknown')}, {escape(f.stage)}): "
                          f"{escape(f.error)}")
                if show_all and f.details:
                    con.print(escape(f.details))

        obj.emit(data, human)

    (plugins or get_plugins()).register_commands(cli)
    for command in cli.commands.values():
        add_global_options(command)
    return cli


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``hive-store`` script."""
    try:
        cli = make_cli()
    except HiveStoreError as exc:  # e.g. HIVE_STORE_STRICT_PLUGINS with a broken plugin
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    cli.main(args=argv, prog_name="hive-store")
