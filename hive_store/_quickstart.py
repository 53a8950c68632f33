"""``hive-store quickstart``: the main job, end to end, on a database of its own.

Without ``--db`` (or ``$HIVE_STORE_DB``) it works on a demo database, ``~/.hive/hive-store-demo.db``
(next to the Hive apps' ``hive-ai.db``, which it never opens). Whatever the target, it adds its
sample rows only where they hurt nobody: a new file, or one whose conversations are all its
own. A database that holds other conversations (a Hive history) is inspected read-only (not
a byte changes) and refused, unless ``--allow-existing`` says to add the sample run there.
The conversations quickstart recorded are listed in the ``settings`` row ``hive_store.quickstart``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import attrs
import click

from hive_store.cli import CLIContext, console, describe_versions, escape, pass_ctx
from hive_store.errors import NotFound, StorageError, ValidationError
from hive_store.url import parse_url

DEMO_NAME = "hive-store-demo.db"
MARKER = "hive_store.quickstart"
"""``settings`` key: a JSON list of the ids of the conversations quickstart recorded."""
QUESTION = "How does SQLite's WAL mode handle concurrent access?"


def demo_path() -> Path:
    """Where quickstart works unless told otherwise."""
    return Path("~/.hive").expanduser() / DEMO_NAME


def _stages() -> list[Any]:
    from hive_store.store import StageOutput

    return [
        StageOutput(stage="generator", model="anthropic/claude-3-haiku",
                    answer="SQLite in WAL mode lets readers run while one writer commits.",
                    tokens_input=120, tokens_output=240, cost=0.00042, duration_ms=900),
        StageOutput(stage="refiner", model="openai/gpt-3.5-turbo",
                    answer="WAL: concurrent readers, one writer; checkpoints move pages back.",
                    tokens_input=260, tokens_output=180, cost=0.00031, duration_ms=700),
        StageOutput(stage="validator", model="google/gemini-flash",
                    answer="Correct; add that synchronous=NORMAL survives process crashes.",
                    tokens_input=200, tokens_output=90, cost=0.00005, duration_ms=400),
        StageOutput(stage="curator", model="anthropic/claude-3-haiku",
                    answer="WAL gives concurrent readers and one writer; with "
                           "synchronous=NORMAL no commit is lost on a process crash.",
                    tokens_input=300, tokens_output=150, cost=0.00026, duration_ms=800),
    ]


def _own_ids(store: Any) -> list[str]:
    """The conversations quickstart recorded in this store (its ``settings`` marker)."""
    if "settings" not in store.backend.table_counts():
        return []
    try:
        value = json.loads(store.settings.get(MARKER).value)
    except (NotFound, ValidationError, StorageError, ValueError):
        return []  # no marker, or a legacy settings table that does not read as ours
    return [i for i in value if isinstance(i, str)] if isinstance(value, list) else []


def _foreign_conversations(obj: CLIContext, target: str) -> int:
    """How many conversations ``target`` holds that quickstart did not write; read-only."""
    url = parse_url(target)
    if url.memory or (url.scheme == "sqlite" and not Path(url.path).exists()):
        return 0
    with obj.open(read_only=True) as store:
        total = store.backend.table_counts().get("conversations", 0)
        if not total:
            return 0
        ids = _own_ids(store)
        ours = sum(store.conversations.count(id__in=ids[i:i + 500])
                   for i in range(0, len(ids), 500))
        return int(total) - int(ours)


@click.command()
@click.option("--allow-existing", is_flag=True,
              help="Add the sample run to a database that already holds conversations "
                   "quickstart did not write (a Hive history): never needed for the demo.")
@pass_ctx
def quickstart(obj: CLIContext, allow_existing: bool) -> None:
    """Record a sample consensus run, read it back and check health, on a demo database
    (~/.hive/hive-store-demo.db) unless --db names another."""
    demo = obj.db is None
    if demo:
        path = demo_path()
        path.parent.mkdir(mode=0o700, parents=False, exist_ok=True)
        obj.db = str(path)
    assert obj.db is not None
    target = obj.db
    foreign = _foreign_conversations(obj, target)
    if foreign and not allow_existing:
        raise click.ClickException(
            f"{target} already holds {foreign} conversation(s) quickstart did not write (a "
            "Hive history?); quickstart adds sample rows only to a database of its own. Run "
            f"it without --db and $HIVE_STORE_DB (it then uses {demo_path()}), or add "
            "--allow-existing to add one sample run to this database.")
    t0 = time.perf_counter()
    with obj.open() as store:
        data, human = _run(store, demo)
    data["seconds"] = round(time.perf_counter() - t0, 3)
    obj.emit(data, lambda: human(data["seconds"]))
    if data["health"]["status"] == "fail":
        raise click.exceptions.Exit(2)


def _run(store: Any, demo: bool) -> tuple[dict[str, Any], Any]:
    from hive_store.entities import Setting
    from hive_store.health import worst

    with store.transaction():  # the run and the marker that says it is quickstart's
        run = store.record_consensus(QUESTION, _stages(), profile_id="lightning-fast",
                                     topic_summary="sqlite concurrency", confidence=0.9)
        ids = [*_own_ids(store), run.conversation_id]
        store.settings.upsert(Setting(
            key=MARKER, value=json.dumps(ids),
            description="conversations recorded by hive-store quickstart (sample data)"))
    conv = store.conversations.get(run.conversation_id)  # read back, as stored
    msgs = store.messages.find(conversation_id=conv.id, order_by="timestamp")
    knowledge = store.knowledge_conversations.find_one(conversation_id=conv.id)
    memory = store.services.get("memory")  # the memory plugin's service, when installed
    hits = len(memory.search("WAL readers")) if hasattr(memory, "search") else None
    checks = store.health()
    facts = store.status()
    path = str(Path(facts["path"]).resolve()) if facts.get("path") else str(store.url)
    status = worst(checks)
    health = {"status": status, "checks": [attrs.asdict(c) for c in checks]}
    total = facts["row_counts"].get("conversations", 0)
    data: dict[str, Any] = {
        "path": path,
        "demo": demo,
        "conversation_id": conv.id,
        "messages": len(msgs),
        "total_cost": conv.total_cost,
        "tokens": (conv.input_tokens or 0) + (conv.output_tokens or 0),
        "curator_answer": knowledge.final_answer if knowledge else None,
        "memory_hits": hits,
        "conversations_total": total,
        "quickstart_conversations": len(ids),
        "package_version": facts["package_version"],
        "schema_version": facts["schema_version"],
        "schema_versions": facts["schema_versions"],
        "health": health,
    }

    def human(seconds: float) -> None:
        con = console()
        where = ("its own demo database; your Hive history (~/.hive/hive-ai.db) is not "
                 "touched; --db names another" if demo else "named by --db or $HIVE_STORE_DB")
        con.print(f"[bold]hive-store quickstart[/] wrote to {escape(path)}")
        con.print(f"  ({escape(where)})")
        con.print(f"recorded a consensus run, conversation {escape(conv.id)}: {len(msgs)} "
                  f"messages (the question + 4 stages), {data['tokens']} tokens, "
                  f"${conv.total_cost:.5f}")
        for m in msgs:
            label = m.stage or m.role
            con.print(f"  {escape(label):>9}: {escape(m.content[:70])}")
        con.print(f"read back: the knowledge entry holds the curator's answer: "
                  f"{escape((data['curator_answer'] or '')[:60])}…")
        if hits is not None:
            con.print(f"memory: a search for 'WAL readers' finds {hits} entries")
        con.print(f"conversations in this database: {total} ({len(ids)} recorded by quickstart)")
        con.print(escape(describe_versions(facts["schema_versions"],
                                           facts["hive_schema_version"])))
        style = {"ok": "green", "warn": "yellow", "fail": "bold red"}[status]
        con.print(f"health: [{style}]{status}[/] ({len(checks)} checks)")
        for c in checks:
            if c.status != "ok":
                con.print(f"  {escape(c.status)} {escape(c.name)}: {escape(c.message)}")
        con.print(f"next: hive-store --db {escape(_quoted(path))} status    "
                  f"(done in {seconds:.2f} s)")

    return data, human


def _quoted(path: str) -> str:
    import shlex

    return shlex.quote(path)


__all__ = ["DEMO_NAME", "MARKER", "demo_path", "quickstart"]
