"""``hive-store memory …``: search, themes, context, status, reindex and recluster."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import click

from hive_store.cli import CLIContext, escape, pass_ctx
from hive_store_memory.index import KINDS, SearchHit


def _console(*, stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, stderr=stderr)


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date or time (e.g. 2025-01-31 or "
                                 "2025-01-31T12:00:00+00:00)", param_hint=name) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@contextlib.contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr when it is a terminal, else nothing."""
    console = _console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task(label, total=None)

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield report


def _marked(hit: SearchHit) -> str:
    out, pos = [], 0
    for start, end in hit.highlights:
        out += [escape(hit.snippet[pos:start]), "[bold yellow]",
                escape(hit.snippet[start:end]), "[/]"]
        pos = end
    out.append(escape(hit.snippet[pos:]))
    return "".join(out)


@click.group("memory")
def memory() -> None:
    """Hive's memory: full-text search, themes and context over the knowledge base."""


@memory.command("search")
@click.argument("text")
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(1, 1000),
              help="At most this many hits.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS),
              help="Only this table (repeatable; default all four).")
@click.option("--since", metavar="TIME", help="Only rows from this ISO date/time on (UTC).")
@click.option("--advanced", is_flag=True,
              help="TEXT is an FTS5 query (AND/OR/NOT, \"phrase\", prefix*, NEAR, title:).")
@click.option("--group", is_flag=True, help="One hit per conversation (its best).")
@pass_ctx
def search(obj: CLIContext, text: str, limit: int, kinds: tuple[str, ...], since: str | None,
           advanced: bool, group: bool) -> None:
    """Search the knowledge base for TEXT: documents with every word first, then those with
    its distinctive words (ranked by BM25)."""
    from hive_store_memory import memory_of

    start = _when(since, "--since")
    with obj.open() as store:
        hits = memory_of(store).search(text, limit=limit, since=start,
                                       kinds=list(kinds) or None, advanced=advanced,
                                       group=group)
    data = {"query": text, "advanced": advanced, "group": group, "complete": hits.complete,
            "pending": hits.pending, "hits": [h.to_dict() for h in hits]}

    def human() -> None:
        con = _console()
        if not hits.complete:
            con.print(f"[yellow]{hits.pending} recent changes are not searchable yet (the "
                      "indexer is catching up, or the database is read-only)[/]")
        if not hits:
            con.print("no matches")
            return
        for n, hit in enumerate(hits, 1):
            when = hit.created_at.strftime("%Y-%m-%d %H:%M") if hit.created_at else "-"
            con.print(f"[bold]{n}.[/] {escape(hit.kind)} [dim]{escape(hit.key)}[/]  score "
                      f"{hit.score:.3g}  {when}"
                      + (f"  conversation {escape(hit.conversation_id)}"
                         if hit.conversation_id else ""))
            con.print(f"   {_marked(hit)}")

    obj.emit(data, human)


@memory.command("themes")
@click.option("--limit", "-n", type=click.IntRange(1, 1_000_000),
              help="At most this many topics.")
@pass_ctx
def themes(obj: CLIContext, limit: int | None) -> None:
    """Topics of the knowledge base, largest first, with the themes inside each."""
    from hive_store_memory import memory_of

    with obj.open() as store:
        mem = memory_of(store)
        found = mem.topics(limit=limit)
        loose = [t for t in mem.themes() if t.topic_id is None]
        status = mem.status()
    data = {"topics": [t.to_dict() for t in found], "themes_without_topic":
            [t.to_dict() for t in loose], "unassigned": status.unassigned,
            "stale": status.themes_stale, "space": status.space or status.active_space}

    def human() -> None:
        from rich.table import Table

        con = _console()
        if not found and not loose:
            con.print("no themes yet")
        else:
            table = Table("id", "topic / theme", "entries", "last activity", "keywords",
                          box=None)
            for topic in found:
                table.add_row(str(topic.id), f"[bold]{escape(topic.name)}[/]",
                              str(topic.member_count), "", escape(", ".join(topic.keywords)))
                for t in topic.themes:
                    last = t.last_activity.strftime("%Y-%m-%d %H:%M") if t.last_activity else "-"
                    table.add_row(f"  {t.id}", f"  {escape(t.name)}", str(t.member_count), last,
                                  escape(", ".join(t.keywords[:5])))
            for t in loose:
                last = t.last_activity.strftime("%Y-%m-%d %H:%M") if t.last_activity else "-"
                table.add_row(str(t.id), f"{escape(t.name)} (no topic yet)",
                              str(t.member_count), last, escape(", ".join(t.keywords[:5])))
            con.print(table)
        if status.themes_stale:
            con.print(f"[yellow]the themes were built with {escape(status.space)}; the active "
                      f"space is {escape(status.active_space)}: run `hive-store memory "
                      "recluster`[/]")
        if status.unassigned:
            con.print(f"{status.unassigned} knowledge entries have no theme yet "
                      "(`hive-store memory recluster`)")

    obj.emit(data, human)


@memory.command("context")
@click.argument("question")
@click.option("--now", metavar="TIME", help="Retrieve as of this ISO time (default: now).")
@click.option("--conversation", "conversation_id", metavar="ID",
              help="The conversation the question is in (left out of the context).")
@click.option("--record", is_flag=True,
              help="Write conversation_context/conversation_threads (needs --conversation).")
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(1, 1000))
@pass_ctx
def context(obj: CLIContext, question: str, now: str | None, conversation_id: str | None,
            record: bool, limit: int) -> None:
    """The context Hive's consensus engine would give QUESTION, layer by layer."""
    from hive_store_memory import memory_of

    when = _when(now, "--now")
    if record and not conversation_id:
        raise click.UsageError("--record needs --conversation")
    with obj.open() as store:
        ctx = memory_of(store).context_for(question, now=when, conversation_id=conversation_id,
                                           record=record, limit=limit)

    def human() -> None:
        con = _console()
        if ctx.follow_up:
            fu = ctx.follow_up
            con.print(f"follow-up: {escape(fu.rule)} ({escape(fu.thread_type.value)}, "
                      f"{fu.score:.1f}) "
                      f"on “{escape(fu.text)}”")
        if ctx.theme:
            con.print(f"theme: {escape(ctx.theme.name)} "
                      f"(similarity {ctx.theme_similarity:.2f})")
        if not ctx.items:
            con.print("no context")
        for n, item in enumerate(ctx.items, 1):
            con.print(f"[bold]{n}.[/] [cyan]{escape(item.layer)}[/] {escape(item.reason)}")
            from hive_store_memory.index import doc_text

            title, body = doc_text(item.kind, item.entity)
            text = " ".join((title or body).split())
            con.print(f"   {escape(text[:120])}")
        if ctx.recorded:
            con.print("recorded in conversation_context")

    obj.emit(ctx.to_dict(), human)


@memory.command("status")
@pass_ctx
def status(obj: CLIContext) -> None:
    """Rows, indexed documents, missing triggers, themes and unassigned entries (after
    applying the changes the background indexer has not applied yet)."""
    from hive_store_memory import memory_of

    with obj.open() as store:
        st = memory_of(store).status()

    def human() -> None:
        con = _console()
        for kind in KINDS:
            con.print(f"{kind:>24}: {st.rows.get(kind, 0)} rows, "
                      f"{st.documents.get(kind, 0)} documents")
        con.print(f"{'index':>24}: {st.indexed} documents "
                  + ("(in step)" if st.in_step else "[yellow](differs: run reindex)[/]"))
        if st.pending:
            why = ("the database is read-only" if st.indexer.get("read_only")
                   else st.indexer.get("last_error") or "the indexer is behind")
            con.print(f"[yellow]{st.pending} logged changes not indexed yet "
                      f"({escape(why)})[/]")
        if st.missing_triggers:
            con.print(f"[yellow]missing triggers: {escape(', '.join(st.missing_triggers))}[/]")
        con.print(f"{'themes':>24}: {st.themes} in {st.topics} topics "
                  f"({escape(st.space or st.active_space)}), {st.unassigned} entries unassigned")
        if st.failed:
            con.print(f"[yellow]{st.failed} rows could not be indexed (set aside; "
                      "`hive-store memory reindex` tries again)[/]")
        if st.indexer.get("stopped"):
            con.print(f"[yellow]the indexer stopped: {escape(str(st.indexer['stopped']))}[/]")

    obj.emit(st.to_dict(), human)


@memory.command("reindex")
@pass_ctx
def reindex(obj: CLIContext) -> None:
    """Rebuild the full-text index from the tables (and restore missing triggers)."""
    from hive_store_memory import memory_of

    with obj.open() as store, _progress("indexing") as progress:
        st = memory_of(store).reindex(progress=progress)
    total = sum(st.documents.values())
    obj.emit(st.to_dict(),
          lambda: click.echo(f"reindexed {total} documents "
                             f"({', '.join(f'{k}: {v}' for k, v in st.documents.items())})"))


@memory.command("recluster")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0, min_open=True),
              help="Similarity an entry needs to join a theme (default: the stored one).")
@pass_ctx
def recluster(obj: CLIContext, threshold: float | None) -> None:
    """Rebuild every theme from the knowledge entries (after changing settings or embedder)."""
    from hive_store_memory import memory_of

    with obj.open() as store, _progress("clustering") as progress:
        report = memory_of(store).recluster(threshold=threshold, progress=progress)
    obj.emit(report.to_dict(),
          lambda: click.echo(f"{report.entries} entries in {report.themes} themes, "
                             f"{report.topics} topics (space {report.params.space}, threshold "
                             f"{report.params.threshold:g})"))
