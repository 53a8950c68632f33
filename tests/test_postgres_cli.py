"""The command line, migrations, statistics and asyncio on a PostgreSQL store."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from hive_store_migrate import core_migrations

import hive_store
from hive_store import StageOutput
from hive_store.cli import make_cli
from hive_store.entities import Conversation, UsageRecord
from tests import pg_support

SPAWN = multiprocessing.get_context("spawn")


def invoke(url: str, *args: str) -> Any:
    result = CliRunner().invoke(make_cli(), ["--db", url, *args], catch_exceptions=False,
                                prog_name="hive-store")
    assert "Traceback" not in result.output
    return result


def _name(url: str) -> str:
    return url.split("?")[0].rsplit("/", 1)[1]


def test_init_status_plugins_and_health(pg_url: str) -> None:
    init = invoke(pg_url, "init")
    assert init.exit_code == 0 and init.output.startswith(f"ready: postgresql:///{_name(pg_url)}")
    status = invoke(pg_url, "--json", "status")
    facts = json.loads(status.output)
    assert facts["backend"] == "postgresql" and facts["schema_version"] >= 3
    assert facts["row_counts"]["openrouter_models"] == 13
    human = invoke(pg_url, "status")
    assert "PostgreSQL 1" in human.output and "isolation=REPEATABLE READ" in human.output
    listing = invoke(pg_url, "plugins", "--all")
    assert "memory: works with sqlite stores only; skipped on others" in listing.output
    loaded = json.loads(invoke(pg_url, "--json", "plugins").output)["loaded"]
    assert {p["name"]: p["dialects"] for p in loaded}["memory"] == ["sqlite"]
    health = invoke(pg_url, "--json", "health", "--full")
    report = json.loads(health.output)
    assert health.exit_code == 0, report
    names = [c["name"] for c in report["checks"]]
    assert {"postgresql", "integrity", "pool", "migrations", "plugin memory",
            "plugin d1"} <= set(names)
    skipped = [c for c in report["checks"] if c["name"] == "plugin memory"]
    assert skipped[0]["message"] == ("skipped: works with sqlite backends, this store is "
                                     "postgresql")


@pytest.mark.parametrize(("args", "says"), [
    (("backup", "x.dump"), "backed up with pg_dump"),
    (("restore", "x.db"), "pg_restore"),
    (("vacuum",), "autovacuum"),
    (("memory", "search", "x"), "the memory plugin needs a SQLite store"),
])
def test_sqlite_only_commands_say_what_to_do_instead(pg_url: str, args: tuple[str, ...],
                                                     says: str) -> None:
    result = invoke(pg_url, *args)
    assert result.exit_code == 1 and says in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_migrate_list_verify_dry_run_down_and_up(pg_url: str) -> None:
    listing = json.loads(invoke(pg_url, "--json", "migrate", "--list").output)
    assert [(a["namespace"], a["version"]) for a in listing["applied"]][:3] == [
        ("hive_store", 1), ("hive_store", 2), ("hive_store", 3)]
    assert listing["pending"] == []
    assert invoke(pg_url, "migrate", "--verify").exit_code == 0
    plan = invoke(pg_url, "migrate", "--to", "1", "--cascade", "--dry-run")
    assert "DELETE FROM consensus_settings" in plan.output and plan.exit_code == 0
    refused = invoke(pg_url, "migrate", "--to", "1", "--cascade")
    assert refused.exit_code == 1 and "going down would drop data" in refused.output
    assert "rows of openrouter_models (13 rows)" in refused.output
    down = invoke(pg_url, "migrate", "--to", "1", "--cascade", "--force")
    assert down.exit_code == 0, down.output
    held = json.loads(invoke(pg_url, "--json", "migrate", "--list").output)
    assert {(a["namespace"], a["version"]) for a in held["applied"]} == {("hive_store", 1)}
    with hive_store.open(pg_url) as store:  # held: opening leaves it at 1
        assert store.schema_version() == 1
        assert store.openrouter_models.count() == 0
    up = invoke(pg_url, "migrate")
    assert up.exit_code == 0 and "hive_store 0002 seed_catalog" in up.output
    with hive_store.open(pg_url) as store:
        assert store.schema_version() == core_migrations().latest
        assert store.openrouter_models.count() == 13
        # the identity continues after the seeded keys when they come back
        model = store.openrouter_models.find_one(order_by="-internal_id")
        assert model is not None and model.internal_id == 13


def test_drift_is_found_on_postgresql_too(pg_url: str) -> None:
    with psycopg.connect(pg_support.server().conninfo(_name(pg_url)), autocommit=True) as c:
        c.execute("UPDATE hive_store_migrations SET checksum = 'changed' WHERE version = 2 "
                  "AND namespace = 'hive_store'")
    result = invoke(pg_url, "migrate", "--verify")
    assert result.exit_code == 1 and "DRIFT" in result.output
    with pytest.raises(hive_store.MigrationError, match="has changed since"):
        hive_store.open(pg_url)


def test_schema_diff_is_identical_then_names_a_difference(pg_url: str) -> None:
    same = invoke(pg_url, "--json", "schema", "diff")
    assert same.exit_code == 0, same.output
    assert json.loads(same.output)["identical"] is True
    with psycopg.connect(pg_support.server().conninfo(_name(pg_url)), autocommit=True) as c:
        c.execute("DROP INDEX idx_messages_conversation")
        c.execute("ALTER TABLE users ALTER COLUMN tier SET DEFAULT 'PRO'")
        c.execute("CREATE TABLE someone_elses (x int)")
    diff = invoke(pg_url, "--json", "schema", "diff")
    report = json.loads(diff.output)
    assert diff.exit_code == 1
    assert "messages: missing index idx_messages_conversation" in report["differences"]
    assert any(d.startswith("users: column tier: default") for d in report["differences"])
    assert "foreign table someone_elses (kept)" in report["foreign"]
    with psycopg.connect(pg_support.server().conninfo(_name(pg_url)), autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE "
                         "'hive_store_canonical%'").fetchone()[0] == 0  # nothing left behind


def test_stats_are_the_same_numbers_on_both_backends(pg_url: str) -> None:
    from hive_store_health import stats

    answers = []
    for url in (pg_url, ":memory:"):
        with hive_store.open(url) as store:
            for d in range(3):
                t = datetime(2025, 3, 1 + d, 23, 30, tzinfo=UTC)
                store.record_consensus(f"q{d}", [
                    StageOutput(stage=s, model=f"m{i % 2}", answer="a", tokens_input=10 * i,
                                tokens_output=i, cost=0.01 * i)
                    for i, s in enumerate(("generator", "refiner", "validator", "curator"))],
                    started_at=t, completed_at=t + timedelta(minutes=45))
            store.usage_records.add(UsageRecord(action_type="sync", cost=1.5,
                                                timestamp=datetime(2025, 3, 2, tzinfo=UTC)))
            found = stats(store, since="2025-02-28", until="2025-03-05")
            answers.append({k: v for k, v in found.items() if k not in ("database",)})
    assert answers[0] == answers[1]
    assert answers[0]["totals"]["conversations"] == 3 and len(answers[0]["daily"]) == 3
    cli = invoke(pg_url, "stats", "--since", "2025-03-01", "--until", "2025-03-03")
    assert cli.exit_code == 0 and "3 conversations" in cli.output


def test_asyncio_on_postgresql(pg_url: str) -> None:
    async def main() -> tuple[int, int]:
        async with await hive_store.aio.open(pg_url) as store:
            conv = await store.conversations.add(Conversation())
            got = await store.conversations.get(conv.id)
            assert got == conv
            return await store.conversations.count(), len(await store.conversations.find())

    assert asyncio.run(main()) == (1, 1)


def _open_at_the_barrier(url: str, barrier: Any, out: Any) -> None:
    import traceback

    try:
        hive_store.plugins.get_plugins().migration_sets()
        barrier.wait(60)
        with hive_store.open(url) as store:
            out.put(store.conversations.add(Conversation()).id)
    except Exception:
        out.put(traceback.format_exc())


def test_two_processes_migrate_one_empty_database_at_once(pg_server: Any) -> None:
    """The migration runs wait for each other (an advisory lock, read committed): one
    applies everything, the other finds nothing left."""
    name = "race_empty"
    pg_server.execute(f"CREATE DATABASE {name}")
    url = pg_server.url(name)
    try:
        out, barrier = SPAWN.Queue(), SPAWN.Barrier(2)
        procs = [SPAWN.Process(target=_open_at_the_barrier, args=(url, barrier, out))
                 for _ in range(2)]
        for p in procs:
            p.start()
        results = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(30)
        assert all(len(r) == 36 for r in results), results  # two conversation ids
        with psycopg.connect(pg_server.conninfo(name)) as c:
            counts = c.execute("SELECT namespace, version, count(*) FROM "
                               "hive_store_migrations GROUP BY 1, 2").fetchall()
            assert counts and {n for _, _, n in counts} == {1}
            assert c.execute("SELECT count(*) FROM conversations").fetchone()[0] == 2
    finally:
        pg_server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
